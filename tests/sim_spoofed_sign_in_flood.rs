//! Memory stays bounded under a flood of hellos, half-handshakes and sealed
//! junk from many (spoofed)
//! addresses: cookies are stateless and the per-source rate-limit table is
//! capped, so the server's heap stops growing however many addresses the
//! flood claims, no session is created for an address that never echoed a
//! cookie, and honest clients still sign in afterwards.
//!
//! This binary counts heap bytes in use with a global allocator; it holds
//! one test so the count is the test's own.

mod common;
#[path = "common/heap.rs"]
mod heap;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use common::{Sim, for_seeds, secs};
use udpchat::codec::Packet;

fn heap() -> isize {
    heap::in_use()
}

/// Feeds the server `n` datagrams, each from a new spoofed address, straight
/// (the simulator's per-pair counters would otherwise be what grows), and
/// throws its replies away: nobody is at those addresses. In turn: a Hello, a
/// half-handshake (made-up cookie, junk message 1), and sealed junk under a
/// guessed session index.
fn flood(sim: &mut Sim, from: u32, n: u32) {
    let junk = [0x5au8; 120];
    let datagrams = [
        Packet::Hello { request: 7 },
        Packet::ServerInit {
            cookie: &junk[..16],
            sender: 9,
            handshake: &junk,
        },
        Packet::Sealed {
            receiver: 0x0000_0100,
            counter: 1,
            sealed: &junk[..48],
        },
    ]
    .map(|p| p.to_bytes().expect("encodes"));
    let now = sim.now();
    let server = sim.server_mut();
    for i in from..from + n {
        let [_, a, b, c] = i.to_be_bytes();
        let addr = SocketAddr::new(
            IpAddr::V4(Ipv4Addr::new(100, a, b, c)),
            1024 + (i % 60_000) as u16,
        );
        server.handle_datagram(now, addr, &datagrams[i as usize % datagrams.len()]);
        while server.poll_transmit().is_some() {}
    }
}

#[test]
fn a_sign_in_flood_from_many_addresses_stays_bounded() {
    for_seeds(3, |seed| {
        // A small rate-limit table keeps the test fast; the default (16,384)
        // behaves the same, only larger.
        let mut sim = Sim::with_server(seed, |c| c.max_rate_sources = 1024);
        sim.add_client("Alice");
        sim.wait_signed_in(&["Alice"], secs(10));
        let cap = sim.server_config.max_rate_sources as u32;

        let before = heap();
        flood(&mut sim, 0, 2 * cap);
        let after_some = heap() - before;
        flood(&mut sim, 2 * cap, 10 * cap);
        let after_many = heap() - before;
        eprintln!(
            "seed {seed}: heap +{after_some} after {} spoofed sign-ins, +{after_many} after {}",
            2 * cap,
            12 * cap
        );
        // Six times the addresses, no more memory (a little slack for a
        // table that happens to rehash).
        assert!(
            after_many <= after_some + after_some / 4 + 64 * 1024,
            "seed {seed}: heap keeps growing with the number of spoofed addresses"
        );
        // About the rate-limit table's size, not the flood's.
        assert!(
            after_many <= 1024 * isize::try_from(cap).expect("small"),
            "seed {seed}: {after_many} bytes for a capped table"
        );
        assert_eq!(sim.server().user_count(), 1, "no session without a cookie");
        let stats = sim.server().stats();
        assert!(stats.received >= u64::from(12 * cap), "{stats:?}");

        // Honest clients still get in.
        sim.add_client("Bob");
        sim.wait_signed_in(&["Bob"], secs(10));
        assert_eq!(
            sim.server().lookup("Alice").map(|(a, _)| a),
            Some(sim.addr("Alice"))
        );
    });
}
