//! Quiet spells longer than the NAT mapping timeout (30 s), between two
//! homes behind port-restricted NATs that forget each flow 30 s after the
//! host last sent on it. A conversation in use (a message or
//! acknowledgement either way in the last 2 minutes) is kept open by an
//! empty sealed packet every 10 s each way; after that nothing goes to the
//! peer, the NATs forget the path, and the next message, from either side,
//! has the path brokered again (a lookup that introduces the writer, a
//! handshake from both sides). Every message is shown once, and soon.
//!
//! The keep-alive rates while idle: to the server one every 3 s (20 a
//! minute); to the peer 6 a minute while the conversation is in use,
//! nothing once it is not.

mod common;

use std::time::Duration;

use common::nat::NatPolicy;
use common::{NodeTraffic, Place, Sim, for_seeds, secs};
use udpchat::client::ClientEvent;

fn two_homes(seed: u64) -> Sim {
    let mut sim = Sim::clean_or_lossy(seed, 0.10);
    sim.add_client_in("Alice", Place::Home(NatPolicy::home()));
    sim.add_client_in("Bob", Place::Home(NatPolicy::home()));
    sim.wait_signed_in(&["Alice", "Bob"], secs(30));
    sim
}

fn other(label: &str) -> &'static str {
    if label == "Alice" { "Bob" } else { "Alice" }
}

/// Soon: a few round trips on a clean network (a lookup, a handshake, the
/// message); within the message timeout on a lossy one.
fn bound(sim: &Sim) -> Duration {
    if sim.is_clean() {
        Duration::from_millis(500)
    } else {
        secs(10)
    }
}

#[test]
fn quiet_spells_longer_than_the_mapping_timeout_lose_nothing() {
    for_seeds(20, |seed| {
        let mut sim = two_homes(seed);
        sim.exchange("Alice", "Bob", "hello Bob", secs(30));
        sim.exchange("Bob", "Alice", "hello Alice", secs(30));
        let mut texts = 0;
        // Inside the conversation's use (kept alive), past it with the
        // session still alive (its path forgotten by the NATs), and past the
        // session's life (5 minutes).
        for (round, quiet) in [secs(45), secs(150), secs(300)].into_iter().enumerate() {
            let before = (sim.traffic("Alice"), sim.traffic("Bob"));
            sim.run_for(quiet);
            let during = (
                sim.traffic("Alice").since(&before.0),
                sim.traffic("Bob").since(&before.1),
            );
            // Nothing but keep-alives went to the peer while quiet: one every
            // 10 s while the conversation was in use (2 minutes), and, when
            // the session would have expired before the use ended, one new
            // handshake (resent when lost) and its confirmation.
            for (label, t) in [("Alice", &during.0), ("Bob", &during.1)] {
                let most = quiet.min(secs(120)).as_secs() / 10 + 1;
                let rekey = if sim.is_clean() { 2 } else { 6 };
                assert!(
                    t.to_peers.datagrams <= most + 2 + rekey,
                    "seed {seed}: {label} sent {} datagrams to the peer in {quiet:?} of quiet",
                    t.to_peers.datagrams
                );
            }
            let lookups =
                |sim: &Sim| sim.client("Alice").stats().lookups + sim.client("Bob").stats().lookups;
            let looked_up = lookups(&sim);
            let first = if (seed + round as u64).is_multiple_of(2) {
                "Alice"
            } else {
                "Bob"
            };
            for writer in [first, other(first)] {
                let text = format!("{writer} after {quiet:?} of quiet");
                let (_, took) = sim.exchange(writer, other(writer), &text, secs(30));
                texts += 1;
                assert!(
                    took <= bound(&sim),
                    "seed {seed}: {writer}'s message after {quiet:?} of quiet shown after {took:?}"
                );
            }
            // Kept alive, the path needed nothing new; past the
            // conversation's use, it was brokered again.
            let relooked = lookups(&sim) - looked_up;
            if quiet > secs(120) {
                assert!(
                    relooked >= 1,
                    "seed {seed}: no lookup after {quiet:?} of quiet"
                );
            } else if sim.is_clean() {
                assert_eq!(relooked, 0, "seed {seed}: lookups after {quiet:?} of quiet");
            }
        }
        // Both at once, after five more minutes.
        sim.run_for(secs(300));
        let a = sim.send("Alice", "Bob", "both at once: Alice");
        let b = sim.send("Bob", "Alice", "both at once: Bob");
        let started = sim.now();
        sim.run_until("both settle", secs(30), |s| {
            s.settled("Alice", a) && s.settled("Bob", b)
        });
        texts += 2;
        for (label, id, text) in [
            ("Alice", a, "both at once: Alice"),
            ("Bob", b, "both at once: Bob"),
        ] {
            assert!(sim.delivered(label, id), "seed {seed}: {label}'s failed");
            let (at, _) = sim.shown_at(other(label), text).expect("shown");
            assert!(
                at - started <= bound(&sim),
                "seed {seed}: {text:?} shown after {:?}",
                at - started
            );
        }
        sim.run_for(secs(15));
        // Exactly once each.
        let shown = sim.received_count("Alice") + sim.received_count("Bob");
        assert_eq!(
            shown,
            texts + 2,
            "seed {seed}: a message shown twice or never"
        );
        for label in ["Alice", "Bob"] {
            assert_eq!(
                sim.count(label, |e| matches!(e, ClientEvent::DeliveryFailed { .. })),
                0,
                "seed {seed}: {label}: {:?}",
                sim.events(label)
            );
        }
    });
}

/// Datagrams a client sends while idle, a minute at a time: to the server
/// a keep-alive every 3 s; to the peer one every 10 s while the
/// conversation is in use (2 minutes after its last message), none after.
#[test]
fn keepalives_per_minute_while_idle() {
    for_seeds(20, |seed| {
        let mut sim = two_homes(seed);
        sim.exchange("Alice", "Bob", "hello Bob", secs(30));
        sim.exchange("Bob", "Alice", "hello Alice", secs(30));
        let mut minutes: Vec<[NodeTraffic; 2]> = Vec::new();
        for _ in 0..5 {
            let before = [sim.traffic("Alice"), sim.traffic("Bob")];
            sim.run_for(secs(60));
            minutes.push([
                sim.traffic("Alice").since(&before[0]),
                sim.traffic("Bob").since(&before[1]),
            ]);
        }
        for (minute, pair) in minutes.iter().enumerate() {
            for (label, t) in ["Alice", "Bob"].iter().zip(pair) {
                let server = t.to_server.datagrams;
                let ok = if sim.is_clean() {
                    (20..=21).contains(&server)
                } else {
                    (19..=40).contains(&server)
                };
                assert!(
                    ok,
                    "seed {seed}: {label} sent {server} datagrams to the server in idle minute {minute}"
                );
                let peer = t.to_peers.datagrams;
                // Minutes 0 and 1: in use; a keep-alive every 10 s (one
                // lost and a new handshake may add a few on a lossy link).
                // Minute 2 holds the end of the use; minutes 3 and 4:
                // nothing.
                match minute {
                    0 | 1 if sim.is_clean() => assert_eq!(
                        peer, 6,
                        "seed {seed}: {label}: {peer} datagrams to the peer in minute {minute}"
                    ),
                    0 | 1 => assert!(
                        (5..=12).contains(&peer),
                        "seed {seed}: {label}: {peer} datagrams to the peer in minute {minute}"
                    ),
                    2 => assert!(
                        peer <= 2,
                        "seed {seed}: {label}: {peer} datagrams to the peer in minute {minute}"
                    ),
                    _ => assert_eq!(
                        peer, 0,
                        "seed {seed}: {label}: {peer} datagrams to the peer in minute {minute}"
                    ),
                }
            }
        }
    });
}

/// A conversation in use whose path goes dead for a while (every datagram
/// between the two lost; the server still reachable): both sides find it
/// quiet 25 s after they last heard each other and broker it again, with
/// new handshakes (through once the path is back) but no message. The conversation is still in use (its last message was under
/// 2 minutes ago), so the keep-alives go on, on the new path, until then.
#[test]
fn keepalives_outlive_a_path_brokered_again() {
    for_seeds(20, |seed| {
        let mut sim = Sim::clean_or_lossy(seed, 0.05);
        sim.add_client_in("Alice", Place::Home(NatPolicy::home()));
        sim.add_client_in("Bob", Place::Public);
        sim.wait_signed_in(&["Alice", "Bob"], secs(30));
        sim.exchange("Alice", "Bob", "hello Bob", secs(30));
        sim.exchange("Bob", "Alice", "hello Alice", secs(30));
        let last_message = sim.now();
        sim.run_for(secs(5));
        let (alice, bob) = (
            sim.client("Alice").reflexive_address().expect("signed in"),
            sim.addr("Bob"),
        );
        let link = sim.link;
        sim.set_link_between(alice, bob, link.with_loss(1.0));
        let handshakes = sim.client("Alice").stats().handshakes;
        // Back 2 s after both found it quiet.
        sim.run_for(last_message + secs(27) - sim.now());
        sim.set_link_between(alice, bob, link);
        sim.run_for(secs(13));
        assert!(
            sim.client("Alice").stats().handshakes > handshakes,
            "seed {seed}: the dead path was not brokered again"
        );
        // From 55 s to 115 s after the last message: still in use.
        sim.run_for(last_message + secs(55) - sim.now());
        let before = [sim.traffic("Alice"), sim.traffic("Bob")];
        sim.run_for(secs(60));
        for (label, b) in ["Alice", "Bob"].iter().zip(&before) {
            let n = sim.traffic(label).since(b).to_peers.datagrams;
            assert!(
                (5..=12).contains(&n),
                "seed {seed}: {label} sent {n} datagrams to the peer in the minute before \
                 the conversation went out of use (a keep-alive every 10 s expected)"
            );
        }
    });
}
