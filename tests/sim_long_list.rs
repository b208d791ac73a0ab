//! A long list: 5,000 users are signed in (straight into the server, with
//! real SignIn / Retry / SignIn-with-cookie exchanges at fresh addresses);
//! Alice's `list` over a lossy network gathers every page and returns all
//! 5,000 names (and her own) exactly once, in the server's order, every page
//! a datagram of at most 1200 bytes.

mod common;

use std::collections::BTreeSet;

use common::{SERVER_ADDR, Sim, for_seeds, secs};
use udpchat::codec::{MAX_DATAGRAM, PacketType};
use udpchat::name::fold;

const USERS: usize = 5_000;

/// Distinct (case-insensitively), valid names of assorted lengths and scripts.
fn user_names() -> Vec<String> {
    (0..USERS)
        .map(|i| match i % 5 {
            0 => format!("user{i}"),
            1 => format!("Zoë_{i}"),
            2 => format!("名前{i}"),
            3 => format!("a_rather_long_user_name_{i:08}"),
            _ => format!("U{i}"),
        })
        .collect()
}

#[test]
fn list_of_5000_users_is_paged_and_complete() {
    let names = user_names();
    for n in &names {
        udpchat::name::validate(n).unwrap_or_else(|e| panic!("{n}: {e}"));
        assert!(n.chars().count() <= 32);
    }
    // Each seed signs 5,000 users in with real handshakes: two seeds.
    for_seeds(2, |seed| {
        // The directly signed-in users never send keep-alives: keep them.
        let mut sim = Sim::with_server(seed, |c| c.session_timeout = secs(3600));
        for n in &names {
            let addr = sim.fresh_addr();
            sim.sign_in_directly(addr, n);
        }
        assert_eq!(sim.server().user_count(), USERS);
        sim.capture();
        let alice = sim.add_client("Alice");
        sim.wait_signed_in(&["Alice"], secs(10));

        let id = sim.list("Alice");
        let listed = sim.wait_list("Alice", id, secs(120));

        let mut expected: Vec<String> = names.clone();
        expected.push("Alice".into());
        let unique: BTreeSet<&str> = listed.iter().map(String::as_str).collect();
        assert_eq!(
            unique.len(),
            listed.len(),
            "seed {seed}: a name listed twice"
        );
        assert_eq!(
            unique,
            expected.iter().map(String::as_str).collect::<BTreeSet<_>>(),
            "seed {seed}: names missing or extra"
        );
        assert!(
            listed.windows(2).all(|w| fold(&w[0]) < fold(&w[1])),
            "seed {seed}: not in the server's (case-insensitive) order"
        );

        // Paged: several sealed datagrams to Alice, each at most 1200 bytes.
        let pages: Vec<_> = sim
            .captured()
            .iter()
            .filter(|c| c.from == SERVER_ADDR && c.to == alice)
            .filter(|c| c.payload.first() == Some(&(PacketType::Sealed as u8)))
            .collect();
        let total: usize = expected.iter().map(|n| 1 + n.len()).sum();
        assert!(
            pages.len() >= total / MAX_DATAGRAM,
            "seed {seed}: {} pages",
            pages.len()
        );
        assert!(pages.iter().all(|p| p.payload.len() <= MAX_DATAGRAM));
    });
}
