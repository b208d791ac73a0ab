//! Server restart: the server comes back with a new secret and an empty
//! directory. Its clients are told their sessions are unknown, sign in again
//! by themselves (`Reconnected`) within seconds of virtual time, and list and
//! send work again.

mod common;

use common::{Sim, for_seeds, secs};
use udpchat::client::ClientEvent;

#[test]
fn clients_reconnect_after_a_server_restart() {
    for_seeds(50, |seed| {
        let mut sim = Sim::new(seed);
        let alice = sim.add_client("Alice");
        let bob = sim.add_client("Bob");
        sim.wait_signed_in(&["Alice", "Bob"], secs(10));
        let id = sim.send("Alice", "Bob", "before the restart");
        sim.wait_delivered("Alice", id, secs(20));
        sim.run_for(secs(1));

        sim.restart_server();
        assert_eq!(sim.server().user_count(), 0);
        let restarted = sim.now();
        let reconnected = |s: &Sim, who: &str| {
            s.events(who)
                .iter()
                .any(|e| e.at >= restarted && e.event == ClientEvent::Reconnected)
        };
        // A keep-alive (every 3 s) meets "unknown session", then a sign-in
        // (two round trips) on a lossy link.
        let took = sim.run_until("both clients reconnected", secs(15), |s| {
            reconnected(s, "Alice") && reconnected(s, "Bob")
        });
        assert!(took <= secs(15), "seed {seed}: {took:?}");
        assert_eq!(sim.server().lookup("Alice").map(|(a, _)| a), Some(alice));
        assert_eq!(sim.server().lookup("Bob").map(|(a, _)| a), Some(bob));
        for who in ["Alice", "Bob"] {
            assert!(sim.client(who).is_signed_in());
            assert!(
                sim.find(who, |e| matches!(e, ClientEvent::SignInFailed(_)))
                    .is_none(),
                "seed {seed}: {who} gave up: {:?}",
                sim.events(who)
            );
        }

        // List and send work again, both ways.
        let list = sim.list("Alice");
        let names = sim.wait_list("Alice", list, secs(15));
        assert!(
            names.iter().any(|n| n == "Bob"),
            "seed {seed}: Bob missing from {names:?}"
        );
        let a = sim.send("Alice", "Bob", "after the restart");
        let b = sim.send("Bob", "Alice", "welcome back");
        sim.wait_delivered("Alice", a, secs(20));
        sim.wait_delivered("Bob", b, secs(20));
        let texts = |who: &str| -> Vec<String> {
            sim.received(who).into_iter().map(|(_, _, t)| t).collect()
        };
        assert_eq!(texts("Bob"), ["before the restart", "after the restart"]);
        assert_eq!(texts("Alice"), ["welcome back"]);
    });
}

/// A restart while a conversation is going on: nothing already shown is
/// shown again, nothing sent is lost.
#[test]
fn restart_mid_conversation() {
    for_seeds(50, |seed| {
        let mut sim = Sim::new(seed);
        sim.add_client("Alice");
        sim.add_client("Bob");
        sim.wait_signed_in(&["Alice", "Bob"], secs(10));
        let texts: Vec<String> = (0..20).map(|i| format!("line {i}")).collect();
        let mut ids = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            ids.push(sim.send("Alice", "Bob", t));
            if i == 10 {
                sim.restart_server();
            }
            sim.run_for(secs(1) / 4);
        }
        sim.run_until("every send settled", secs(40), |s| {
            ids.iter().all(|id| s.settled("Alice", *id))
        });
        sim.run_for(secs(5));
        let shown: Vec<String> = sim.received("Bob").into_iter().map(|(_, _, t)| t).collect();
        assert_eq!(shown, texts, "seed {seed}");
    });
}
