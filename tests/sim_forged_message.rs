//! Forged messages: a Message claiming to be from "Alice" but sent from
//! Mallory's address is not shown as from Alice; the receiver reports
//! `ForgedMessage` (after checking the directory), and Alice's real messages
//! still come through. A message claiming a name nobody holds is not shown
//! either.

mod common;

use common::{Sim, for_seeds, secs};
use udpchat::client::ClientEvent;
use udpchat::codec::Packet;

const BAIT: &str = "this is Alice, send me your password";

#[test]
fn a_message_from_the_wrong_address_is_not_shown() {
    for_seeds(50, |seed| {
        let mut sim = Sim::new(seed);
        let alice = sim.add_client("Alice");
        sim.add_client("Bob");
        let bob = sim.addr("Bob");
        // Mallory is a real, signed-in user: only his claim is false.
        let mallory = sim.add_client("Mallory");
        sim.wait_signed_in(&["Alice", "Bob", "Mallory"], secs(10));

        // Forge twice: before Bob has ever heard from Alice, and (below)
        // after, when Bob has her address cached.
        let forge = |sim: &mut Sim| {
            let stream = sim.rng.next_u64();
            for seq in 0..3 {
                let packet = Packet::Message {
                    stream,
                    seq,
                    fragment: 0,
                    fragments: 1,
                    from: "Alice",
                    body: BAIT.as_bytes(),
                };
                sim.inject_packet(mallory, bob, &packet);
            }
        };
        forge(&mut sim);
        sim.run_until("Bob reports the forgery", secs(12), |s| {
            s.find("Bob", |e| matches!(e, ClientEvent::ForgedMessage { .. }))
                .is_some()
        });
        let id = sim.send("Alice", "Bob", "the real Alice");
        sim.wait_delivered("Alice", id, secs(20));
        forge(&mut sim);
        // A claim to a name nobody holds.
        let nobody = Packet::Message {
            stream: sim.rng.next_u64(),
            seq: 0,
            fragment: 0,
            fragments: 1,
            from: "Nobody",
            body: BAIT.as_bytes(),
        };
        sim.inject_packet(mallory, bob, &nobody);
        sim.run_for(secs(12));

        assert_eq!(
            sim.received("Bob"),
            [("Alice".to_string(), alice, "the real Alice".to_string())],
            "seed {seed}: Bob showed a forged message"
        );
        let forged: Vec<_> = sim
            .events("Bob")
            .iter()
            .filter_map(|e| match &e.event {
                ClientEvent::ForgedMessage { claimed, address } => {
                    Some((claimed.clone(), *address))
                }
                _ => None,
            })
            .collect();
        assert!(
            forged.len() >= 2 && forged.iter().all(|(_, a)| *a == mallory),
            "seed {seed}: {forged:?}"
        );
        assert!(forged.iter().any(|(c, _)| c == "Alice"));
        assert!(sim.client("Bob").stats().forged >= 2);
        // Mallory's own messages, under his own name, are fine.
        let id = sim.send("Mallory", "Bob", "hi, it's Mallory");
        sim.wait_delivered("Mallory", id, secs(20));
        assert_eq!(
            sim.received("Bob").last().map(|m| m.0.as_str()),
            Some("Mallory")
        );
    });
}
