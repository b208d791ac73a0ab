//! Right after a server restart, the directory fills up again as clients
//! notice and sign in anew. A client that is back already must not call a
//! peer that is still on its way back absent: for a short grace after its own
//! `Reconnected`, a "nobody" answer is asked again, and the message goes
//! through once the peer is back. A user who really is absent is still
//! reported `NoSuchUser`, within the grace and a lookup.

mod common;

use common::{Sim, for_seeds, millis, secs};
use udpchat::client::{ClientEvent, DeliveryFailure};

fn reconnected_since(sim: &Sim, who: &str, since: std::time::Instant) -> bool {
    sim.events(who)
        .iter()
        .any(|e| e.at >= since && e.event == ClientEvent::Reconnected)
}

#[test]
fn a_peer_still_signing_in_again_is_waited_for_not_called_absent() {
    for_seeds(30, |seed| {
        let mut sim = Sim::clean(seed);
        // Alice notices the restart within a second, Carole within three.
        sim.add_client_as("Alice", "Alice", |c| c.keepalive_interval = secs(1));
        sim.add_client("Carole");
        sim.wait_signed_in(&["Alice", "Carole"], secs(10));
        let offset = millis(sim.rng.range(0, 3000));
        sim.run_for(offset);

        sim.restart_server();
        let restarted = sim.now();
        sim.run_until("Alice is back", secs(10), |s| {
            reconnected_since(s, "Alice", restarted)
        });
        if reconnected_since(&sim, "Carole", restarted) {
            // This seed's timing brought Carole back first: nothing to race.
            return;
        }
        let id = sim.send("Alice", "Carole", "are you back?");
        sim.wait_delivered("Alice", id, secs(20));
        assert_eq!(sim.received("Carole").len(), 1, "seed {seed}");
    });
}

#[test]
fn a_user_who_really_is_absent_is_still_reported_soon() {
    for_seeds(10, |seed| {
        let mut sim = Sim::clean(seed);
        sim.add_client("Alice");
        sim.wait_signed_in(&["Alice"], secs(10));
        sim.restart_server();
        let restarted = sim.now();
        sim.run_until("Alice is back", secs(10), |s| {
            reconnected_since(s, "Alice", restarted)
        });
        let sent = sim.now();
        let id = sim.send("Alice", "Nobody", "hello?");
        sim.run_until("the send settles", secs(15), |s| s.settled("Alice", id));
        assert_eq!(
            sim.delivery_failure("Alice", id),
            Some(DeliveryFailure::NoSuchUser),
            "seed {seed}"
        );
        let took = sim.now() - sent;
        let grace =
            udpchat::client::ClientConfig::new("x", common::SERVER_ADDR, [0; 32]).settle_grace;
        assert!(took <= grace + secs(2), "seed {seed}: {took:?}");
    });
}
