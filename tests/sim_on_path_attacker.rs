//! An attacker on the path between Alice, Bob and the server, who reads
//! every datagram and can inject: each datagram is replayed at once (from its
//! real source and from the attacker's address), replayed with one bit
//! flipped, and replayed again after the sessions were rekeyed and after
//! they were rejected. A forged directory answer (in the clear, from the
//! server's address) names the attacker as Bob. Nothing changes what Alice
//! and Bob see: every message exactly once, in order, unaltered, and no
//! message text in any datagram.
//!
//! (0.1 showed `pay Carole 100` as `pay Carole 999` when a byte was changed
//! on the path, showed replays, and believed lookups by source address.)

mod common;

use bytes::Bytes;
use common::{SERVER_ADDR, Sim, for_seeds, secs};
use udpchat::client::{ClientEvent, CommandId};
use udpchat::codec::Packet;

/// Every datagram seen so far between the three, and a mutated copy of each.
fn seen(
    sim: &Sim,
    nodes: &[std::net::SocketAddr],
) -> Vec<(std::net::SocketAddr, std::net::SocketAddr, Bytes)> {
    sim.captured()
        .iter()
        .filter(|c| !c.injected && nodes.contains(&c.from) && nodes.contains(&c.to))
        .map(|c| (c.from, c.to, c.payload.clone()))
        .collect()
}

/// Replays everything in `log`: as is from its source, as is from
/// `attacker`, and with one bit flipped (a different one each).
fn attack(
    sim: &mut Sim,
    attacker: std::net::SocketAddr,
    log: &[(std::net::SocketAddr, std::net::SocketAddr, Bytes)],
) {
    for (i, (from, to, payload)) in log.iter().enumerate() {
        sim.inject(*from, *to, payload.clone());
        sim.inject(attacker, *to, payload.clone());
        let mut flipped = payload.to_vec();
        let bit = i * 7 % (flipped.len() * 8);
        flipped[bit / 8] ^= 1 << (bit % 8);
        sim.inject(*from, *to, flipped);
        if i % 50 == 49 {
            sim.run_for(secs(1) / 10);
        }
    }
}

fn send_all(sim: &mut Sim, from: &str, to: &str, texts: &[String]) -> Vec<CommandId> {
    texts.iter().map(|t| sim.send(from, to, t)).collect()
}

#[test]
fn an_observer_who_alters_and_replays_changes_nothing() {
    for_seeds(20, |seed| {
        let mut sim = Sim::new(seed);
        sim.capture();
        let short = |c: &mut udpchat::ClientConfig| {
            c.rekey_after = secs(5);
            c.reject_after = secs(15);
        };
        let alice = sim.add_client_as("Alice", "Alice", short);
        let bob = sim.add_client_as("Bob", "Bob", short);
        sim.wait_signed_in(&["Alice", "Bob"], secs(10));
        let attacker = sim.fresh_addr();
        sim.add_raw("Mallory", attacker);
        let nodes = [alice, bob, SERVER_ADDR];

        let to_bob: Vec<String> = (0..10).map(|i| format!("pay Carole {}00", i + 1)).collect();
        let to_alice: Vec<String> = (0..5).map(|i| format!("received payment {i}")).collect();
        let mut ids = send_all(&mut sim, "Alice", "Bob", &to_bob[..5]);
        let mut back = send_all(&mut sim, "Bob", "Alice", &to_alice[..3]);
        sim.run_until("the first messages settle", secs(30), |s| {
            ids.iter().all(|id| s.settled("Alice", *id))
                && back.iter().all(|id| s.settled("Bob", *id))
        });
        let first = seen(&sim, &nodes);
        attack(&mut sim, attacker, &first);
        // A directory answer in the clear from the server's address: "Bob is
        // at the attacker's (his only host candidate too), with the
        // attacker's key".
        let lie_hosts = [attacker];
        let lie = Packet::LookupReply {
            request: 1,
            name: "Bob",
            address: Some(attacker),
            key: &[0x66; 32],
            candidates: udpchat::AddrList::Addrs(&lie_hosts),
        };
        sim.inject_packet(SERVER_ADDR, alice, &lie);
        sim.run_for(secs(6));

        // After a rekey: more messages, and everything replayed again.
        ids.extend(send_all(&mut sim, "Alice", "Bob", &to_bob[5..]));
        back.extend(send_all(&mut sim, "Bob", "Alice", &to_alice[3..]));
        sim.run_until("all messages settle", secs(40), |s| {
            ids.iter().all(|id| s.settled("Alice", *id))
                && back.iter().all(|id| s.settled("Bob", *id))
        });
        let all = seen(&sim, &nodes);
        attack(&mut sim, attacker, &all);
        sim.run_for(secs(2));
        // After the sessions were rejected: once more.
        sim.run_for(secs(16));
        attack(&mut sim, attacker, &all);
        sim.run_for(secs(12));

        let shown = |who: &str| -> Vec<String> {
            sim.received(who).into_iter().map(|(_, _, t)| t).collect()
        };
        assert_eq!(shown("Bob"), to_bob, "seed {seed}: Bob's view was changed");
        assert_eq!(
            shown("Alice"),
            to_alice,
            "seed {seed}: Alice's view was changed"
        );
        for (who, ids) in [("Alice", &ids), ("Bob", &back)] {
            for id in ids.iter() {
                assert!(
                    sim.delivered(who, *id),
                    "seed {seed}: {who}'s {id}: {:?}",
                    sim.delivery_failure(who, *id)
                );
            }
        }
        assert!(
            sim.client("Alice").stats().handshakes >= 2,
            "seed {seed}: the sessions were never replaced"
        );
        assert!(
            sim.client("Bob").stats().forged > 0,
            "seed {seed}: nothing was refused?"
        );
        for who in ["Alice", "Bob"] {
            assert!(
                sim.find(who, |e| matches!(
                    e,
                    ClientEvent::SignInFailed(_) | ClientEvent::Reconnected
                ))
                .is_none(),
                "seed {seed}: {who} was disturbed: {:?}",
                sim.events(who)
            );
        }
        // No word of any message in the clear, anywhere.
        for c in sim.captured() {
            for text in to_bob.iter().chain(&to_alice) {
                assert!(
                    !c.payload.windows(text.len()).any(|w| w == text.as_bytes()),
                    "seed {seed}: {text:?} in the clear"
                );
            }
        }
    });
}
