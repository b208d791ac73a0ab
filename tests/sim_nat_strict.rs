//! Strict NATs (endpoint-dependent mapping: a new external port for every
//! destination, "symmetric"). The port a strict NAT gives the server is not
//! the one it gives the peer, so the peer's handshakes to the address the
//! directory knows are dropped, and only the strict side's own handshakes,
//! from a port nobody knew in advance, can open the path. What is expected:
//!
//! | Alice (strict) with Bob at                      | result        |
//! |-------------------------------------------------|---------------|
//! | a public address                                | works         |
//! | home, endpoint-independent filtering (full cone)| works         |
//! | home, address-dependent filtering               | works (Bob's handshakes to Alice's server port open his NAT to her IP, any port) |
//! | home, address-and-port-dependent (port-restricted) | `NoDirectPath` |
//! | strict too                                      | `NoDirectPath` |
//!
//! Either side writing first. A failure comes at the message timeout
//! (10 s) after the send, nothing is shown, and the handshakes that could
//! not get through were paced, not a flood.

mod common;

use std::time::Duration;

use common::nat::{Filtering, NatPolicy};
use common::{Place, Sim, for_seeds, secs};
use udpchat::client::DeliveryFailure;
use udpchat::codec::PacketType;

fn pair(seed: u64, alice: Place, bob: Place) -> Sim {
    let mut sim = Sim::clean_or_lossy(seed, 0.10);
    sim.add_client_in("Alice", alice);
    sim.add_client_in("Bob", bob);
    sim.wait_signed_in(&["Alice", "Bob"], secs(30));
    sim
}

fn home(filtering: Filtering) -> Place {
    Place::Home(NatPolicy::home().filtering(filtering))
}

fn strict() -> Place {
    Place::Home(NatPolicy::strict())
}

/// `writer` writes to `reader`, who answers: both shown once, within the
/// message timeout (and soon on a clean network).
fn works(seed: u64, alice: Place, bob: Place, what: &str) {
    for (writer, reader) in [("Alice", "Bob"), ("Bob", "Alice")] {
        let mut sim = pair(seed, alice, bob);
        let bound = if sim.is_clean() {
            Duration::from_millis(500)
        } else {
            secs(10)
        };
        let first = format!("{writer} first");
        let (_, took) = sim.exchange(writer, reader, &first, secs(30));
        let (_, back) = sim.exchange(reader, writer, "the answer", secs(30));
        assert!(
            took <= bound && back <= bound,
            "seed {seed}: {what}, {writer} first: shown after {took:?}, answered after {back:?}"
        );
        sim.run_for(secs(5));
        assert_eq!(sim.received_count(reader), 1, "seed {seed}: {what}");
        assert_eq!(sim.received_count(writer), 1, "seed {seed}: {what}");
        // The strict side is seen at a port of its own for the peer, not
        // the one the server sees (that is why it is hard).
        if alice == strict() {
            let shown_from = sim.shown_at(
                "Bob",
                if writer == "Alice" {
                    &first
                } else {
                    "the answer"
                },
            );
            let reflexive = sim.client("Alice").reflexive_address();
            assert!(
                shown_from.is_some_and(|(_, from)| Some(from) != reflexive),
                "seed {seed}: {what}: Bob heard Alice at the server's port {reflexive:?}"
            );
        }
    }
}

/// `writer` writes to `reader`: no path can be found; the send fails with
/// `NoDirectPath` at the message timeout, nothing is shown, and the
/// handshakes both made were paced.
fn fails_without_a_direct_path(seed: u64, alice: Place, bob: Place, what: &str) {
    let mut costs = Vec::new();
    let mut clean = false;
    for (writer, reader) in [("Alice", "Bob"), ("Bob", "Alice")] {
        let mut sim = pair(seed, alice, bob);
        clean = sim.is_clean();
        let before = (sim.traffic("Alice"), sim.traffic("Bob"));
        let id = sim.send(writer, reader, "lost in the NATs");
        let took = sim.run_until(&format!("{what}: {writer}'s send settles"), secs(30), |s| {
            s.settled(writer, id)
        });
        assert_eq!(
            sim.delivery_failure(writer, id),
            Some(DeliveryFailure::NoDirectPath),
            "seed {seed}: {what}, {writer} first: {:?}",
            sim.events(writer)
        );
        // At the message timeout (10 s), not before, and not much later.
        assert!(
            took >= secs(10) && took <= secs(11),
            "seed {seed}: {what}, {writer} first: failed {took:?} after the send"
        );
        sim.run_for(secs(10));
        assert_eq!(
            sim.received_count(reader),
            0,
            "seed {seed}: {what}: shown without a path?"
        );
        // Paced: at most 10 at once and 20 a second per handshake, each
        // resent from 250 ms doubling to 1 s for 5 s; the writer's, a new
        // one every 3 s of silence, and the reader's on each introduction.
        // What matters is that it is tens, not thousands.
        for (label, b) in [("Alice", &before.0), ("Bob", &before.1)] {
            let inits = sim.traffic(label).since(b).out_of(PacketType::PeerInit);
            assert!(
                inits <= 40,
                "seed {seed}: {what}, {writer} first: {label} sent {inits} PeerInits"
            );
        }
        let (w, r) = (sim.client(writer).stats(), sim.client(reader).stats());
        let intros = sim.server().stats().introductions;
        costs.push((
            writer,
            intros,
            w.lookups,
            r.lookups + w.request_retries + r.request_retries,
        ));
    }
    // One introduction per lookup request the server got: the first, and
    // the re-lookups while no session forms (1, 3 and 6 s after the send;
    // docs/sessions.md), so four lookups on a clean network; a retry under
    // loss can cost one more introduction each.
    for (writer, intros, lookups, others) in costs {
        assert!(
            intros <= lookups + others,
            "seed {seed}: {what}, {writer} first: {intros} introductions for {} requests",
            lookups + others
        );
        assert!(
            lookups <= 4 || !clean,
            "seed {seed}: {what}, {writer} first: {lookups} lookups ({intros} introductions) \
             for one failed send"
        );
    }
}

#[test]
fn strict_and_public_works() {
    for_seeds(30, |seed| {
        works(seed, strict(), Place::Public, "strict/public")
    });
}

#[test]
fn strict_and_full_cone_home_works() {
    for_seeds(30, |seed| {
        works(
            seed,
            strict(),
            home(Filtering::EndpointIndependent),
            "strict/home with endpoint-independent filtering",
        )
    });
}

#[test]
fn strict_and_address_restricted_home_works() {
    for_seeds(30, |seed| {
        works(
            seed,
            strict(),
            home(Filtering::AddressDependent),
            "strict/home with address-dependent filtering",
        )
    });
}

#[test]
fn strict_and_port_restricted_home_has_no_direct_path() {
    for_seeds(20, |seed| {
        fails_without_a_direct_path(
            seed,
            strict(),
            home(Filtering::AddressAndPortDependent),
            "strict/port-restricted home",
        )
    });
}

#[test]
fn two_strict_nats_have_no_direct_path() {
    for_seeds(20, |seed| {
        fails_without_a_direct_path(seed, strict(), strict(), "strict/strict")
    });
}
