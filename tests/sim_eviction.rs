//! Presence: a client that crashes is dropped from the directory after the
//! server's session timeout (`SignedOut { reason: TimedOut }`), while a live
//! client on the same lossy network stays; a client that signs out is
//! removed at once.

mod common;

use common::{Sim, for_seeds, secs};
use udpchat::client::ClientEvent;
use udpchat::server::{ServerEvent, SignOutReason};

fn signed_out(sim: &Sim, name: &str) -> Option<(std::time::Instant, SignOutReason)> {
    sim.server_events().iter().find_map(|e| match &e.event {
        ServerEvent::SignedOut {
            name: n, reason, ..
        } if n == name => Some((e.at, *reason)),
        _ => None,
    })
}

#[test]
fn crashed_client_is_evicted_after_the_session_timeout() {
    for_seeds(50, |seed| {
        let mut sim = Sim::new(seed);
        let session_timeout = sim.server_config.session_timeout;
        let sweep = sim.server_config.sweep_interval;
        let alice = sim.add_client("Alice");
        let bob = sim.add_client("Bob");
        sim.wait_signed_in(&["Alice", "Bob"], secs(10));
        sim.run_for(secs(4));
        assert_eq!(sim.server().lookup("Bob").map(|(a, _)| a), Some(bob));

        sim.remove("Bob");
        let crashed = sim.now();
        sim.run_until(
            "the server drops Bob",
            session_timeout + sweep + secs(1),
            |s| signed_out(s, "Bob").is_some(),
        );
        let (at, reason) = signed_out(&sim, "Bob").expect("checked");
        assert_eq!(reason, SignOutReason::TimedOut, "seed {seed}");
        let after = at - crashed;
        // Bob was last heard at most one keep-alive interval (3 s, plus the
        // link's delay) before he crashed.
        assert!(
            after >= session_timeout - secs(4) && after <= session_timeout + sweep + secs(1) / 10,
            "seed {seed}: evicted {after:?} after the crash"
        );
        assert_eq!(sim.server().lookup("Bob").map(|(a, _)| a), None);
        // Alice, alive on the same network, is still there.
        assert_eq!(
            sim.server().lookup("Alice").map(|(a, _)| a),
            Some(alice),
            "seed {seed}"
        );
        assert!(signed_out(&sim, "Alice").is_none(), "seed {seed}");
        // And she is told Bob is gone.
        let id = sim.send("Alice", "Bob", "still there?");
        sim.run_until("Alice's send settles", secs(25), |s| s.settled("Alice", id));
        assert!(sim.delivery_failure("Alice", id).is_some(), "seed {seed}");
    });
}

#[test]
fn live_clients_stay_for_a_long_time() {
    for_seeds(50, |seed| {
        let mut sim = Sim::new(seed);
        let names = ["Alice", "Bob", "Carole"];
        for n in names {
            sim.add_client(n);
        }
        sim.wait_signed_in(&names, secs(10));
        sim.run_for(secs(120));
        for n in names {
            assert_eq!(
                sim.server().lookup(n).map(|(a, _)| a),
                Some(sim.addr(n)),
                "seed {seed}: {n}"
            );
            assert!(
                signed_out(&sim, n).is_none(),
                "seed {seed}: {n} was dropped"
            );
        }
    });
}

#[test]
fn sign_out_removes_at_once() {
    for_seeds(50, |seed| {
        let mut sim = if seed % 2 == 0 {
            Sim::clean(seed)
        } else {
            Sim::new(seed)
        };
        sim.add_client("Alice");
        sim.add_client("Bob");
        sim.wait_signed_in(&["Alice", "Bob"], secs(10));
        sim.run_for(secs(1));
        sim.sign_out("Alice");
        let took = sim.run_until("Alice signed out", secs(10), |s| {
            s.find("Alice", |e| *e == ClientEvent::SignedOut).is_some()
        });
        let (at, reason) = signed_out(&sim, "Alice")
            .unwrap_or_else(|| panic!("seed {seed}: the server did not drop Alice"));
        assert_eq!(reason, SignOutReason::Requested);
        assert_eq!(sim.server().lookup("Alice").map(|(a, _)| a), None);
        assert!(sim.client("Alice").is_closed());
        if seed % 2 == 0 {
            // Clean network: one round trip (5 ms each way).
            assert!(took <= secs(1) / 50, "seed {seed}: sign-out took {took:?}");
            assert!(at - sim.start <= sim.elapsed());
        }
        // Bob sees she is gone.
        let list = sim.list("Bob");
        let names = sim.wait_list("Bob", list, secs(10));
        assert!(
            !names.iter().any(|n| n == "Alice"),
            "seed {seed}: {names:?}"
        );
        assert_eq!(
            sim.server().lookup("Bob").map(|(a, _)| a),
            Some(sim.addr("Bob"))
        );
    });
}
