//! Failure is reported: a message to a name nobody holds fails with
//! `NoSuchUser`; a message to a peer that crashed (still in the directory)
//! fails with `NoAnswer` within the deadline, after exactly one more lookup.

mod common;

use common::{Sim, for_seeds, secs};
use udpchat::client::{ClientEvent, DeliveryFailure};
use udpchat::codec::PacketType;

#[test]
fn no_such_user() {
    for_seeds(50, |seed| {
        let mut sim = Sim::new(seed);
        sim.add_client("Alice");
        sim.wait_signed_in(&["Alice"], secs(10));
        let id = sim.send("Alice", "Nobody", "is anyone there?");
        sim.run_until("Alice's send to Nobody settles", secs(12), |s| {
            s.settled("Alice", id)
        });
        assert_eq!(
            sim.delivery_failure("Alice", id),
            Some(DeliveryFailure::NoSuchUser),
            "seed {seed}: {:?}",
            sim.events("Alice")
        );
        assert!(
            sim.find(
                "Alice",
                |e| matches!(e, ClientEvent::DeliveryFailed { to, .. } if to == "Nobody")
            )
            .is_some()
        );
    });
}

#[test]
fn crashed_peer_gets_no_answer_after_at_most_two_more_lookups() {
    for_seeds(50, |seed| {
        // Keep the crashed peer in the directory for the whole scenario.
        let mut sim = Sim::with_server(seed, |c| c.session_timeout = secs(300));
        sim.capture();
        let alice = sim.add_client("Alice");
        let bob = sim.add_client("Bob");
        sim.wait_signed_in(&["Alice", "Bob"], secs(10));
        let first = sim.send("Alice", "Bob", "hello Bob");
        sim.wait_delivered("Alice", first, secs(15));
        // Lookups are sealed: Alice's own count says how many she made.
        let before = sim.client("Alice").stats().lookups;

        sim.remove("Bob");
        let crashed_at = sim.now();
        let second = sim.send("Alice", "Bob", "are you there?");
        let third = sim.send("Alice", "Bob", "hello?");
        let took = sim.run_until("Alice's sends to the crashed Bob settle", secs(30), |s| {
            s.settled("Alice", second) && s.settled("Alice", third)
        });
        for id in [second, third] {
            assert_eq!(
                sim.delivery_failure("Alice", id),
                Some(DeliveryFailure::NoAnswer),
                "seed {seed}: {:?}",
                sim.events("Alice")
            );
        }
        // Within the message timeout (10 s by default) and a little slack.
        assert!(
            took <= secs(12),
            "seed {seed}: failure reported {took:?} after the crash at {:?}",
            crashed_at - sim.start
        );
        // Looked up again at 3 s and 6 s of silence (each asks the server
        // to introduce her again, in case Bob's NAT forgot the path), no
        // more; the second is not made while the first is still being
        // answered (its reply lost and retried).
        let relooks = sim.client("Alice").stats().lookups - before;
        assert!(
            (1..=2).contains(&relooks),
            "seed {seed}: {relooks} re-lookups of the silent peer"
        );
        // Between them, new handshakes tried the old address, paced.
        let tries = sim
            .captured()
            .iter()
            .filter(|c| {
                c.from == alice
                    && c.to == bob
                    && c.packet()
                        .is_some_and(|p| p.packet_type() == PacketType::PeerInit)
            })
            .count();
        assert!(
            tries <= 40,
            "seed {seed}: {tries} handshakes to the crashed Bob"
        );
        assert_eq!(
            sim.server().lookup("Bob").map(|(a, _)| a),
            Some(bob),
            "Bob is still in the directory"
        );
    });
}
