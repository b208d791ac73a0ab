//! Forged messages: a handshake claiming to be from "Alice" but made with
//! Mallory's key, from his address or spoofing hers, is refused: the receiver
//! checks the directory's key for the name and reports `ForgedMessage`.
//! Sealed packets made up under guessed session indices open to nothing.
//! Alice's real messages still come through; a claim to a name nobody holds
//! is dropped too.

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
        // after, when Bob has her key cached. Mallory's handshakes carry
        // his own key (he has no other) and claim Alice's name; once from
        // his address, once spoofing hers (off the path: he knows her
        // address from a lookup).
        let mallory_key = sim.identity_of("Mallory");
        let bob_key = sim.client("Bob").public_key();
        let forge = |sim: &mut Sim, from_label: &str| {
            sim.raw_peer_init(from_label, mallory_key, bob, bob_key, "Alice");
        };
        // Sent again each second, as a real client resends its handshake:
        // one datagram can be lost (the link loses up to 30 %).
        let reported = |s: &Sim| {
            s.find("Bob", |e| matches!(e, ClientEvent::ForgedMessage { .. }))
                .is_some()
        };
        for _ in 0..10 {
            forge(&mut sim, "Mallory");
            sim.run_for(secs(1));
            if reported(&sim) {
                break;
            }
        }
        sim.run_until("Bob reports the forgery", secs(12), reported);
        let id = sim.send("Alice", "Bob", "the real Alice");
        sim.wait_delivered("Alice", id, secs(20));
        forge(&mut sim, "Mallory");
        forge(&mut sim, "Alice");
        // Sealed packets he made up, under every session index he saw go by
        // to Bob (he is on no path here, so he guesses small numbers).
        for receiver in 0..64u32 {
            let junk = Packet::Sealed {
                receiver,
                counter: 0,
                sealed: BAIT.as_bytes(),
            };
            sim.inject_packet(alice, bob, &junk);
        }
        // A claim to a name nobody holds.
        sim.raw_peer_init("Mallory", mallory_key, bob, bob_key, "Nobody");
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
            forged.len() >= 2 && forged.iter().all(|(c, _)| c == "Alice"),
            "seed {seed}: {forged:?}"
        );
        assert!(forged.iter().any(|(_, a)| *a == mallory));
        assert!(sim.client("Bob").stats().forged >= 64);
        // Mallory's own messages, under his own name, are fine.
        let id = sim.send("Mallory", "Bob", "hi, it's Mallory");
        sim.wait_delivered("Mallory", id, secs(20));
        assert_eq!(
            sim.received("Bob").last().map(|m| m.0.as_str()),
            Some("Mallory")
        );
    });
}
