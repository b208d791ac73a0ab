//! A holder that crashed without signing out does not block its name for
//! long from its own key: Alice's client started again (same identity, new
//! address) gets the name within a few seconds (the server probes the old
//! session, which does not answer), far sooner than the session timeout.

mod common;

use common::{Sim, for_seeds, secs};
use udpchat::server::{ServerEvent, SignOutReason};

fn reclaim(sim: &mut Sim, patience: std::time::Duration) -> std::time::Duration {
    let seed = sim.seed;
    let old = sim.add_client("Alice");
    sim.wait_signed_in(&["Alice"], secs(10));
    sim.run_for(secs(1));
    sim.remove("Alice");
    sim.run_for(secs(1));

    // Her client again, with her identity (the same key file).
    let identity = sim.identity_of("Alice");
    let new = sim.add_client_as("Alice again", "Alice", |c| c.identity = identity);
    let took = sim.wait_signed_in(&["Alice again"], patience);
    assert_eq!(
        sim.server().lookup("Alice").map(|(a, _)| a),
        Some(new),
        "seed {seed}"
    );
    assert_ne!(old, new);
    let dropped = sim.server_events().iter().find_map(|e| match &e.event {
        ServerEvent::SignedOut {
            name,
            address,
            reason,
        } if name == "Alice" => Some((*address, *reason)),
        _ => None,
    });
    // Unresponsive to the probe; or, when the server had not yet heard a
    // sealed packet from the old session (its keys may never have reached
    // the client), replaced at once and quietly.
    assert!(
        match dropped {
            Some((a, reason)) => a == old && reason == SignOutReason::Unresponsive,
            None => true,
        },
        "seed {seed}: {:?}",
        sim.server_events()
    );
    took
}

#[test]
fn crashed_holder_frees_its_name_on_a_clean_network() {
    for_seeds(50, |seed| {
        let mut sim = Sim::clean(seed);
        let took = reclaim(&mut sim, secs(4));
        // Probe timeout (2 s) plus a retry of the sign-in.
        assert!(took <= secs(4), "seed {seed}: {took:?}");
    });
}

#[test]
fn crashed_holder_frees_its_name_on_a_bad_network() {
    for_seeds(50, |seed| {
        let mut sim = Sim::new(seed);
        let session_timeout = sim.server_config.session_timeout;
        let took = reclaim(&mut sim, secs(10));
        assert!(took < session_timeout, "seed {seed}: {took:?}");
    });
}
