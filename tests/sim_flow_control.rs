//! Flow control: a burst of 3,000 sends to one peer never has more than the
//! window (128 by default) of unacknowledged fragments in flight, the
//! receiver never has to drop a fragment for want of room, and every message
//! arrives once, in order.

mod common;

use common::{Sim, for_seeds, secs};
use udpchat::client::ClientEvent;

const BURST: usize = 3_000;

#[test]
fn a_burst_of_3000_sends_respects_the_window() {
    for_seeds(50, |seed| {
        let mut sim = Sim::new(seed);
        let alice = sim.add_client("Alice");
        let bob = sim.add_client("Bob");
        sim.wait_signed_in(&["Alice", "Bob"], secs(10));
        let window = udpchat::ClientConfig::new("x", common::SERVER_ADDR, [0; 32]).window;

        let texts: Vec<String> = (0..BURST).map(|i| format!("burst {i}")).collect();
        for t in &texts {
            sim.send("Alice", "Bob", t);
        }
        // Right after the burst, at most a window's worth is on the wire.
        let flow = sim.flow(alice, bob);
        assert!(flow.unacked <= window, "seed {seed}: {}", flow.unacked);

        sim.run_until("every message of the burst settled", secs(300), |s| {
            s.settled_count("Alice") >= BURST
        });
        sim.run_for(secs(5));

        let flow = sim.flow(alice, bob);
        assert!(
            flow.max_unacked <= window,
            "seed {seed}: {} fragments unacknowledged at once (window {window})",
            flow.max_unacked
        );
        assert!(
            flow.max_unacked >= window / 2,
            "seed {seed}: the window was never used"
        );
        assert_eq!(
            flow.fragments as usize, BURST,
            "seed {seed}: one fragment per message"
        );
        assert_eq!(
            sim.client("Bob").stats().dropped,
            0,
            "seed {seed}: Bob dropped fragments for want of room: the sender ran {} sequence \
             numbers ahead of its oldest unacknowledged fragment",
            flow.max_span
        );
        let shown: Vec<String> = sim.received("Bob").into_iter().map(|(_, _, t)| t).collect();
        assert!(
            shown == texts,
            "seed {seed}: not every message once and in order"
        );
        let delivered = sim.count("Alice", |e| matches!(e, ClientEvent::Delivered { .. }));
        assert_eq!(
            delivered,
            BURST,
            "seed {seed}: failures {:?}",
            sim.events("Alice")
                .iter()
                .filter(|e| matches!(e.event, ClientEvent::DeliveryFailed { .. }))
                .take(3)
                .collect::<Vec<_>>()
        );
    });
}
