//! A live user's name cannot be taken from another address: while Alice is
//! signed in and answering, Mallory signing in as "alice" (or "ALICE") from
//! his own address is refused with `NameInUse`, and Alice keeps her name
//! and her session.

mod common;

use common::{Link, Rng, Sim, for_seeds, secs};
use udpchat::client::{ClientEvent, SignInError};
use udpchat::server::ServerEvent;

fn hijack_attempt(mut sim: Sim) {
    let seed = sim.seed;
    let alice = sim.add_client("Alice");
    sim.wait_signed_in(&["Alice"], secs(10));
    sim.run_for(secs(1));

    let claimed = if seed.is_multiple_of(2) {
        "alice"
    } else {
        "ALICE"
    };
    sim.add_client_as("Mallory", claimed, |_| {});
    sim.run_until("Mallory's sign-in is answered", secs(12), |s| {
        !s.events("Mallory").is_empty()
    });
    let events: Vec<ClientEvent> = sim
        .events("Mallory")
        .iter()
        .map(|e| e.event.clone())
        .collect();
    assert_eq!(
        events,
        [ClientEvent::SignInFailed(SignInError::NameInUse(
            claimed.into()
        ))],
        "seed {seed}: Mallory was not refused"
    );
    assert!(sim.client("Mallory").is_closed());
    assert_eq!(
        SignInError::NameInUse(claimed.into()).to_string(),
        format!("name {claimed} is in use")
    );

    sim.run_for(secs(5));
    assert_eq!(
        sim.server().lookup("Alice").map(|(a, _)| a),
        Some(alice),
        "seed {seed}"
    );
    assert!(
        !sim.server_events()
            .iter()
            .any(|e| matches!(&e.event, ServerEvent::SignedOut { name, .. } if name == "Alice")),
        "seed {seed}: Alice lost her session: {:?}",
        sim.server_events()
    );
    assert!(sim.client("Alice").is_signed_in());
    assert_eq!(
        sim.count("Alice", |e| matches!(e, ClientEvent::Reconnected)),
        0,
        "seed {seed}: {:?}",
        sim.events("Alice")
    );
}

#[test]
fn a_live_name_cannot_be_taken() {
    for_seeds(50, |seed| hijack_attempt(Sim::new(seed)));
}

/// The same at a steady 30 % loss, where a live holder can miss every probe.
#[test]
fn a_live_name_cannot_be_taken_at_30_percent_loss() {
    for_seeds(50, |seed| {
        let mut sim = Sim::empty(seed, Link::random_with_loss(&mut Rng::new(seed), 0.30));
        sim.start_server(|_| {});
        hijack_attempt(sim);
    });
}
