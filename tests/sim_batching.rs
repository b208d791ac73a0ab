//! Batching: what a burst of sends (a pasted block, piped input) and a
//! drained socket produce goes out packed. Short messages share datagrams,
//! and the receiver acknowledges each batch with ranges, so a burst costs a
//! small fraction of a datagram per message each way. Under loss the ranges
//! say exactly what arrived: every message is still shown once, in order,
//! and reported delivered.

mod common;

use common::{Sim, for_seeds, secs};
use udpchat::codec::{Packet, PacketType};

const BURST: usize = 2_000;

/// Sealed datagrams sent from `from` to `to` so far.
fn datagrams(sim: &Sim, from: std::net::SocketAddr, to: std::net::SocketAddr) -> usize {
    sim.captured()
        .iter()
        .filter(|c| c.from == from && c.to == to && !c.injected)
        .filter(|c| c.payload.first() == Some(&(PacketType::Sealed as u8)))
        .count()
}

#[test]
fn a_burst_goes_out_packed_and_is_acknowledged_in_ranges() {
    let mut sim = Sim::clean(1);
    sim.capture();
    let alice = sim.add_client("Alice");
    let bob = sim.add_client("Bob");
    sim.wait_signed_in(&["Alice", "Bob"], secs(10));
    // A first message makes the session, so the burst is all data.
    let first = sim.send("Alice", "Bob", "hello");
    sim.wait_delivered("Alice", first, secs(10));
    let (to_bob, to_alice) = (datagrams(&sim, alice, bob), datagrams(&sim, bob, alice));

    let texts: Vec<String> = (0..BURST).map(|i| format!("line {i}")).collect();
    let ids = sim.send_batch("Alice", "Bob", &texts);
    sim.run_until("the burst is delivered", secs(60), |s| {
        ids.iter().all(|id| s.delivered("Alice", *id))
    });
    let shown: Vec<String> = sim.received("Bob").into_iter().map(|(_, _, t)| t).collect();
    assert_eq!(shown[1..], texts[..], "every message once, in order");

    let sent = datagrams(&sim, alice, bob) - to_bob;
    let acks = datagrams(&sim, bob, alice) - to_alice;
    // "line 1234" is a 33-byte Message frame: 35 fit in one datagram. What
    // an acknowledgement frees goes out at once, so a full datagram is
    // often followed by a short one.
    assert!(
        sent <= BURST / 10,
        "{sent} datagrams carried {BURST} messages"
    );
    // One acknowledgement datagram for each datagram of messages, give or
    // take a keep-alive.
    assert!(
        acks <= sent + 2,
        "{acks} acknowledgement datagrams for {sent}"
    );
    // Sealed peer datagrams are sealed frames, never one per message.
    let packed = sim
        .captured()
        .iter()
        .filter(|c| c.from == alice && c.to == bob)
        .filter(|c| matches!(Packet::decode(&c.payload), Ok(Packet::Sealed { .. })))
        .map(|c| c.payload.len())
        .max()
        .unwrap_or(0);
    assert!(packed > 500, "the largest datagram was {packed} bytes");
}

#[test]
fn under_loss_and_duplication_every_message_is_shown_once_in_order_and_delivered() {
    for_seeds(30, |seed| {
        let mut sim = Sim::clean_or_lossy(seed, 0.3);
        sim.add_client("Alice");
        sim.add_client("Bob");
        sim.wait_signed_in(&["Alice", "Bob"], secs(10));
        let texts: Vec<String> = (0..300).map(|i| format!("seed {seed} line {i}")).collect();
        // Both ways at once: acknowledgements ride beside messages.
        let back: Vec<String> = (0..100).map(|i| format!("back {i}")).collect();
        let ids = sim.send_batch("Alice", "Bob", &texts);
        let back_ids = sim.send_batch("Bob", "Alice", &back);
        sim.run_until("both bursts are delivered", secs(120), |s| {
            ids.iter().all(|id| s.settled("Alice", *id))
                && back_ids.iter().all(|id| s.settled("Bob", *id))
        });
        for (who, ids) in [("Alice", &ids), ("Bob", &back_ids)] {
            for id in ids {
                assert!(
                    sim.delivered(who, *id),
                    "seed {seed}: {who}'s {id:?}: {:?}",
                    sim.delivery_failure(who, *id)
                );
            }
        }
        let shown = |who: &str| -> Vec<String> {
            sim.received(who).into_iter().map(|(_, _, t)| t).collect()
        };
        assert_eq!(shown("Bob"), texts, "seed {seed}");
        assert_eq!(shown("Alice"), back, "seed {seed}");
    });
}
