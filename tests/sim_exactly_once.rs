//! Exactly once and in order: Alice sends Bob 100 messages over a network
//! that loses (0-30 %), duplicates and reorders datagrams. Bob shows every
//! one exactly once, in the order sent; Alice hears `Delivered` for every one
//! and `DeliveryFailed` for none.

mod common;

use common::{Sim, for_seeds, secs};
use udpchat::client::ClientEvent;

const MESSAGES: usize = 100;

#[test]
fn every_message_once_and_in_order() {
    for_seeds(50, |seed| {
        let mut sim = Sim::new(seed);
        let alice = sim.add_client("Alice");
        sim.add_client("Bob");
        sim.wait_signed_in(&["Alice", "Bob"], secs(10));

        let texts: Vec<String> = (0..MESSAGES)
            .map(|i| format!("message {i} from Alice, {}", "x".repeat(i % 17)))
            .collect();
        let ids: Vec<_> = texts.iter().map(|t| sim.send("Alice", "Bob", t)).collect();

        sim.run_until(
            "Bob shows every message, Alice hears of each",
            secs(60),
            |s| s.received_count("Bob") >= MESSAGES && ids.iter().all(|id| s.settled("Alice", *id)),
        );
        // Let retransmissions and duplicates still in flight land.
        sim.run_for(secs(15));

        let got = sim.received("Bob");
        let shown: Vec<&str> = got.iter().map(|(_, _, t)| t.as_str()).collect();
        assert_eq!(
            shown, texts,
            "seed {seed}: Bob's messages are not exactly the ones sent, once each, in order"
        );
        assert!(
            got.iter()
                .all(|(from, addr, _)| from == "Alice" && *addr == alice),
            "seed {seed}: wrong sender on some message"
        );
        for id in &ids {
            assert_eq!(
                sim.count(
                    "Alice",
                    |e| matches!(e, ClientEvent::Delivered { id: i, to } if i == id && to == "Bob")
                ),
                1,
                "seed {seed}: Delivered {id} not reported exactly once"
            );
        }
        assert_eq!(
            sim.count("Alice", |e| matches!(e, ClientEvent::DeliveryFailed { .. })),
            0,
            "seed {seed}: a delivery failed: {:?}",
            sim.events("Alice")
        );
    });
}
