//! A NAT mapping changes mid-conversation (the router reboots, or gives the
//! host a new port: `Nat::rebind`): what either side sends after it goes to
//! or comes from a port the other side's NAT does not know. Messages keep
//! flowing both ways: every one is shown exactly once, in order, within a
//! few seconds of its send (the client notices at its next keep-alive to
//! the server or when its peer goes silent, and brokers the path again),
//! none fails, and the conversation ends up on the new port.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::nat::NatPolicy;
use common::{NatId, Place, Sim, for_seeds, millis, secs};
use udpchat::client::{ClientEvent, CommandId};

/// Every message is shown within this long of its send on a clean network
/// (a keep-alive to the server every 3 s reveals the new port; then a
/// lookup, an introduction and a handshake, a few round trips), and
/// within the message timeout on a lossy one.
fn bound(sim: &Sim) -> Duration {
    if sim.is_clean() { secs(5) } else { secs(10) }
}

struct Sent {
    from: &'static str,
    to: &'static str,
    text: String,
    id: CommandId,
    at: std::time::Instant,
}

/// Alice and Bob write to each other in turn every 400 ms for 20 s; at 5 s
/// `rebind` changes the mappings. Returns what was sent.
fn conversation(sim: &mut Sim, rebind: impl Fn(&mut Sim)) -> Vec<Sent> {
    let mut sent = Vec::new();
    for i in 0..50 {
        if i == 12 {
            rebind(sim);
        }
        let (from, to) = if i % 2 == 0 {
            ("Alice", "Bob")
        } else {
            ("Bob", "Alice")
        };
        let text = format!("{from} to {to}, message {i}");
        let at = sim.now();
        let id = sim.send(from, to, &text);
        sent.push(Sent {
            from,
            to,
            text,
            id,
            at,
        });
        sim.run_for(millis(400));
    }
    sim.run_until("every message settles", secs(30), |s| {
        sent.iter().all(|m| s.settled(m.from, m.id))
    });
    sim.run_for(secs(15));
    sent
}

fn check(sim: &Sim, sent: &[Sent], what: &str) -> Duration {
    let seed = sim.seed;
    let mut slowest = Duration::ZERO;
    for m in sent {
        assert!(
            sim.delivered(m.from, m.id),
            "seed {seed}: {what}: {:?} not delivered: {:?}",
            m.text,
            sim.delivery_failure(m.from, m.id)
        );
        let (shown, _) = sim
            .shown_at(m.to, &m.text)
            .unwrap_or_else(|| panic!("seed {seed}: {what}: {:?} never shown", m.text));
        slowest = slowest.max(shown - m.at);
    }
    assert!(
        slowest <= bound(sim),
        "seed {seed}: {what}: a message took {slowest:?} to be shown"
    );
    // Exactly once, in order, each way.
    for (from, to) in [("Alice", "Bob"), ("Bob", "Alice")] {
        let expected: Vec<&str> = sent
            .iter()
            .filter(|m| m.from == from)
            .map(|m| m.text.as_str())
            .collect();
        let got: Vec<String> = sim
            .received(to)
            .into_iter()
            .filter(|m| m.0 == from)
            .map(|m| m.2)
            .collect();
        assert_eq!(
            got, expected,
            "seed {seed}: {what}: {to}'s messages from {from}"
        );
    }
    for label in ["Alice", "Bob"] {
        assert_eq!(
            sim.count(label, |e| matches!(e, ClientEvent::DeliveryFailed { .. })),
            0,
            "seed {seed}: {what}"
        );
    }
    slowest
}

/// Where `label`'s datagrams to `to` leave its NAT from now.
fn mapped(sim: &Sim, nat: NatId, label: &str, to: SocketAddr) -> Option<SocketAddr> {
    let n = sim.nat(nat);
    n.mapped_port(sim.addr(label), to)
        .map(|port| SocketAddr::new(n.public_ip, port))
}

#[test]
fn a_mapping_change_mid_conversation_between_two_homes() {
    for_seeds(30, |seed| {
        let mut sim = Sim::clean_or_lossy(seed, 0.10);
        let homes = [NatPolicy::home(), NatPolicy::home()].map(|p| sim.add_nat(p));
        sim.add_client_in("Alice", Place::Behind(homes[0]));
        sim.add_client_in("Bob", Place::Behind(homes[1]));
        sim.wait_signed_in(&["Alice", "Bob"], secs(30));
        // Alice's router, Bob's, or both.
        let which: &[usize] = match seed % 3 {
            0 => &[0],
            1 => &[1],
            _ => &[0, 1],
        };
        let before: Vec<SocketAddr> = ["Alice", "Bob"]
            .iter()
            .map(|l| sim.client(l).reflexive_address().expect("signed in"))
            .collect();
        let sent = conversation(&mut sim, |sim| {
            for &i in which {
                sim.nat_mut(homes[i]).rebind();
            }
        });
        let what = format!("rebinding {which:?}");
        check(&sim, &sent, &what);
        // The last messages came by the new ports, straight from the
        // other's router.
        for (label, peer, home, old) in [
            ("Alice", "Bob", homes[0], before[0]),
            ("Bob", "Alice", homes[1], before[1]),
        ] {
            let last = sim
                .received(peer)
                .into_iter()
                .rev()
                .find(|m| m.0 == label)
                .map(|m| m.1);
            let now = mapped(&sim, home, label, common::SERVER_ADDR);
            assert_eq!(
                last, now,
                "seed {seed}: {what}: {peer} hears {label} at {last:?}"
            );
            if which.contains(&(home.0)) {
                assert_ne!(last, Some(old), "seed {seed}: {what}: not rebound?");
            }
        }
    });
}

#[test]
fn a_mapping_change_mid_conversation_between_home_and_public() {
    for_seeds(30, |seed| {
        let mut sim = Sim::clean_or_lossy(seed, 0.10);
        let home = sim.add_nat(NatPolicy::home());
        sim.add_client_in("Alice", Place::Behind(home));
        sim.add_client_in("Bob", Place::Public);
        sim.wait_signed_in(&["Alice", "Bob"], secs(30));
        let sent = conversation(&mut sim, |sim| sim.nat_mut(home).rebind());
        check(&sim, &sent, "rebinding the home");
        let last = sim.received("Bob").last().map(|m| m.1);
        assert_eq!(
            last,
            mapped(&sim, home, "Alice", sim.addr("Bob")),
            "seed {seed}"
        );
    });
}
