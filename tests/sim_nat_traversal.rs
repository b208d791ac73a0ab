//! NAT traversal, first contact: every pair of places the issue lists,
//! either side writing first, finds a direct path, and the first message
//! is shown once, soon, at a bounded cost (PeerInits paced, one
//! introduction per lookup).
//!
//! * two homes (two different NATs), over a matrix of their policies:
//!   endpoint-independent mapping with endpoint-independent,
//!   address-dependent or address-and-port-dependent filtering;
//! * two hosts behind one NAT: without hairpinning only the LAN path works
//!   and is used; with it both work and the LAN path wins;
//! * a home and a public host.
//!
//! Strict (endpoint-dependent mapping) NATs are in `sim_nat_strict.rs`,
//! quiet spells in `sim_nat_quiet.rs`, a mapping change in
//! `sim_nat_rebinding.rs`. `costs` prints the figures of each scenario:
//! `cargo test --test sim_nat_traversal costs -- --nocapture`.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::nat::{Filtering, NatPolicy};
use common::{NodeTraffic, Place, Sim, for_seeds, millis, secs};
use udpchat::client::DeliveryFailure;
use udpchat::codec::PacketType;

fn network(seed: u64) -> Sim {
    Sim::clean_or_lossy(seed, 0.10)
}

fn is_clean(sim: &Sim) -> bool {
    sim.is_clean()
}

/// Alice and Bob at their places (different homes when both are at home),
/// signed in.
fn pair(seed: u64, alice: Place, bob: Place) -> Sim {
    let mut sim = network(seed);
    sim.add_client_in("Alice", alice);
    sim.add_client_in("Bob", bob);
    sim.wait_signed_in(&["Alice", "Bob"], secs(30));
    sim
}

/// Alice and Bob behind one NAT with this policy, signed in.
fn housemates(seed: u64, policy: NatPolicy) -> Sim {
    let mut sim = network(seed);
    let nat = sim.add_nat(policy);
    sim.add_client_behind(nat, "Alice", "Alice");
    sim.add_client_behind(nat, "Bob", "Bob");
    sim.wait_signed_in(&["Alice", "Bob"], secs(30));
    sim
}

/// What a first contact cost and took.
#[derive(Debug, Clone)]
struct Contact {
    /// From the writer's `send` to the reader showing it.
    first: Duration,
    /// From the reader's answer to the writer showing it.
    reply: Duration,
    /// Where the reader saw the first message come from.
    first_from: SocketAddr,
    /// Where the writer saw the answer come from.
    reply_from: SocketAddr,
    /// PeerInits both emitted, from the first send until both messages were
    /// delivered and 6 s more (any handshake still under way has given up).
    peer_inits: u64,
    /// PeerInits handed to either (after loss, duplication, filtering).
    peer_inits_in: u64,
    /// PeerResps both emitted, the same while.
    peer_resps: u64,
    /// Introductions the server sent, and withheld.
    introductions: u64,
    introductions_limited: u64,
    /// Lookups both made.
    lookups: u64,
    /// Requests both sent again for want of an answer (lookups among them).
    request_retries: u64,
    /// Handshakes both completed.
    handshakes: u64,
}

/// `writer` writes to `reader` first, and `reader` answers; both must be
/// shown exactly once.
fn first_contact(sim: &mut Sim, writer: &str, reader: &str) -> Contact {
    let traffic = |sim: &Sim| (sim.traffic(writer), sim.traffic(reader));
    // Lookups, handshakes, retried requests, of both.
    let counts = |sim: &Sim| {
        let (w, r) = (sim.client(writer).stats(), sim.client(reader).stats());
        [
            w.lookups + r.lookups,
            w.handshakes + r.handshakes,
            w.request_retries + r.request_retries,
        ]
    };
    let (t0, c0) = (traffic(sim), counts(sim));
    let s0 = sim.server().stats();
    let text = format!("{writer} writes first to {reader}");
    let (_, first) = sim.exchange(writer, reader, &text, secs(30));
    let answer = format!("{reader} answers {writer}");
    let (_, reply) = sim.exchange(reader, writer, &answer, secs(30));
    sim.run_for(secs(6));
    let (t1, c1) = (traffic(sim), counts(sim));
    let s1 = sim.server().stats();
    let (w, r) = (t1.0.since(&t0.0), t1.1.since(&t0.1));
    for (at, text) in [(reader, &text), (writer, &answer)] {
        let times = sim.received(at).iter().filter(|m| m.2 == *text).count();
        assert_eq!(times, 1, "seed {}: {text:?} shown {times} times", sim.seed);
    }
    Contact {
        first,
        reply,
        first_from: sim.shown_at(reader, &text).expect("shown").1,
        reply_from: sim.shown_at(writer, &answer).expect("shown").1,
        peer_inits: w.out_of(PacketType::PeerInit) + r.out_of(PacketType::PeerInit),
        peer_inits_in: w.in_of(PacketType::PeerInit) + r.in_of(PacketType::PeerInit),
        peer_resps: w.out_of(PacketType::PeerResp) + r.out_of(PacketType::PeerResp),
        introductions: s1.introductions - s0.introductions,
        introductions_limited: s1.introductions_limited - s0.introductions_limited,
        lookups: c1[0] - c0[0],
        handshakes: c1[1] - c0[1],
        request_retries: c1[2] - c0[2],
    }
}

/// The bounds every first contact keeps, whatever the places.
fn check_costs(sim: &Sim, what: &str, c: &Contact) {
    let seed = sim.seed;
    // Soon: a lookup, a handshake and the message, a few round trips on a
    // clean network; within the message timeout on a lossy one.
    let (first_bound, reply_bound) = if is_clean(sim) {
        (millis(500), millis(500))
    } else {
        (secs(10), secs(10))
    };
    assert!(
        c.first <= first_bound && c.reply <= reply_bound,
        "seed {seed}: {what}: first shown after {:?}, the answer after {:?}",
        c.first,
        c.reply
    );
    // Paced, not a flood: each side makes a handshake or two, to at most
    // two addresses, resent at 250 ms doubling; on a clean network the
    // first answer ends them.
    let inits_bound = if is_clean(sim) { 10 } else { 40 };
    assert!(
        c.peer_inits <= inits_bound,
        "seed {seed}: {what}: {} PeerInits for one first contact",
        c.peer_inits
    );
    assert!(
        c.peer_resps <= c.peer_inits_in,
        "seed {seed}: {what}: {} PeerResps for {} PeerInits received",
        c.peer_resps,
        c.peer_inits_in
    );
    // One introduction per lookup request the server gets (it cannot tell
    // a retry from a new request), and at least one: the writer's first
    // lookup introduces it. (On a clean network exactly one of each: see
    // `a_first_contact_takes_one_lookup_and_one_introduction`.)
    assert!(
        c.introductions >= 1 && c.introductions <= c.lookups + c.request_retries,
        "seed {seed}: {what}: {} introductions for {} lookups and {} retried requests",
        c.introductions,
        c.lookups,
        c.request_retries
    );
    assert_eq!(
        c.introductions_limited, 0,
        "seed {seed}: {what}: two users' first contact ran out of introductions"
    );
    assert!(
        c.handshakes >= 2,
        "seed {seed}: {what}: no handshake completed on both sides"
    );
}

fn either_side_first(seed: u64, setup: impl Fn(u64) -> Sim, what: &str) -> [(Sim, Contact); 2] {
    [("Alice", "Bob"), ("Bob", "Alice")].map(|(writer, reader)| {
        let mut sim = setup(seed);
        let c = first_contact(&mut sim, writer, reader);
        check_costs(&sim, &format!("{what}, {writer} first"), &c);
        (sim, c)
    })
}

/// The address `label`'s traffic reaches a public host from: its
/// reflexive address.
fn reflexive(sim: &Sim, label: &str) -> SocketAddr {
    sim.client(label)
        .reflexive_address()
        .expect("signed in, so the reflexive address is known")
}

fn eim(filtering: Filtering) -> NatPolicy {
    NatPolicy::home().filtering(filtering)
}

const FILTERINGS: [Filtering; 3] = [
    Filtering::EndpointIndependent,
    Filtering::AddressDependent,
    Filtering::AddressAndPortDependent,
];

/// On a clean network a first contact takes one lookup (the writer's; the
/// reader knows the writer from the introduction) and one introduction,
/// whatever the places: introductions are budgeted per user (a burst of
/// 8), so each one spent twice halves how many new people one can write to
/// at once.
#[test]
fn a_first_contact_takes_one_lookup_and_one_introduction() {
    let home = NatPolicy::home();
    let places = [
        ("home/home", Place::Home(home), Place::Home(home)),
        ("home/public", Place::Home(home), Place::Public),
        ("public/public", Place::Public, Place::Public),
        (
            "strict/public",
            Place::Home(NatPolicy::strict()),
            Place::Public,
        ),
    ];
    for_seeds(32, |seed| {
        if !seed.is_multiple_of(4) {
            return; // Only the clean ones.
        }
        for (what, a, b) in places {
            for (writer, reader) in [("Alice", "Bob"), ("Bob", "Alice")] {
                let mut sim = pair(seed, a, b);
                assert!(is_clean(&sim));
                let c = first_contact(&mut sim, writer, reader);
                assert_eq!(
                    (c.lookups, c.introductions),
                    (1, 1),
                    "seed {seed}: {what}, {writer} first: (lookups, introductions)"
                );
            }
        }
        let mut sim = housemates(seed, home);
        let c = first_contact(&mut sim, "Alice", "Bob");
        assert_eq!(
            (c.lookups, c.introductions),
            (1, 1),
            "seed {seed}: one home"
        );
    });
}

#[test]
fn two_homes_reach_each_other_directly_either_side_first() {
    for_seeds(30, |seed| {
        let setup = |seed| {
            pair(
                seed,
                Place::Home(NatPolicy::home()),
                Place::Home(NatPolicy::home()),
            )
        };
        for (sim, c) in either_side_first(seed, setup, "home to home") {
            // Each shown from the other's router: the direct path.
            let (writer, reader) = if c.first_from.ip() == reflexive(&sim, "Alice").ip() {
                ("Alice", "Bob")
            } else {
                ("Bob", "Alice")
            };
            assert_eq!(c.first_from, reflexive(&sim, writer), "seed {seed}");
            assert_eq!(c.reply_from, reflexive(&sim, reader), "seed {seed}");
        }
    });
}

#[test]
fn two_homes_over_a_matrix_of_filtering() {
    for_seeds(12, |seed| {
        for a in FILTERINGS {
            for b in FILTERINGS {
                let what = format!("home ({a:?}) to home ({b:?})");
                let setup = |seed| pair(seed, Place::Home(eim(a)), Place::Home(eim(b)));
                for (sim, c) in either_side_first(seed, setup, &what) {
                    for from in [c.first_from, c.reply_from] {
                        assert!(
                            [reflexive(&sim, "Alice"), reflexive(&sim, "Bob")].contains(&from),
                            "seed {seed}: {what}: shown from {from}, no router of theirs"
                        );
                    }
                }
            }
        }
    });
}

#[test]
fn a_home_and_a_public_host_either_side_first() {
    for_seeds(30, |seed| {
        let setup = |seed| pair(seed, Place::Home(NatPolicy::home()), Place::Public);
        for (sim, c) in either_side_first(seed, setup, "home to public") {
            let shown = [c.first_from, c.reply_from];
            assert!(
                shown.contains(&reflexive(&sim, "Alice")) && shown.contains(&sim.addr("Bob")),
                "seed {seed}: shown from {shown:?}"
            );
            assert_eq!(reflexive(&sim, "Bob"), sim.addr("Bob"), "seed {seed}");
        }
    });
}

/// Two hosts behind one router that does not hairpin: their public
/// addresses do not reach each other, so the LAN path (the host candidates
/// they registered) is the only one, and every datagram between them goes
/// by it.
#[test]
fn one_home_without_hairpinning_talks_over_the_lan() {
    for_seeds(30, |seed| {
        let setup = |seed| housemates(seed, NatPolicy::home().hairpin(false));
        for (sim, c) in either_side_first(seed, setup, "one home, no hairpin") {
            let (alice, bob) = (sim.addr("Alice"), sim.addr("Bob"));
            assert!(
                [c.first_from, c.reply_from] == [alice, bob]
                    || [c.first_from, c.reply_from] == [bob, alice],
                "seed {seed}: shown from {:?}, {:?}",
                c.first_from,
                c.reply_from
            );
            // Sealed packets (messages, acknowledgements) only ever went
            // on the LAN; what went to the routers' address was PeerInits
            // (dropped: no hairpin).
            for (from, to, to_label) in [(alice, bob, "Bob"), (bob, alice, "Alice")] {
                let to_router = sim.end_pair(from, reflexive(&sim, to_label));
                assert_eq!(
                    to_router.sent_of(PacketType::Sealed).datagrams,
                    0,
                    "seed {seed}: sealed packets sent to the router"
                );
                assert!(sim.end_pair(from, to).sent_of(PacketType::Sealed).datagrams > 0);
            }
        }
    });
}

/// Two hosts behind one router that hairpins: both paths work; the LAN one
/// wins, at once or as soon as it answers.
#[test]
fn one_home_with_hairpinning_ends_on_the_lan() {
    for_seeds(30, |seed| {
        let setup = |seed| housemates(seed, NatPolicy::home().hairpin(true));
        for (mut sim, _) in either_side_first(seed, setup, "one home, hairpin") {
            // A few more messages each way: by now both are on the LAN.
            for i in 0..3 {
                sim.exchange("Alice", "Bob", &format!("Alice, later {i}"), secs(15));
                sim.exchange("Bob", "Alice", &format!("Bob, later {i}"), secs(15));
            }
            let (alice, bob) = (sim.addr("Alice"), sim.addr("Bob"));
            let last_from = |at: &str| {
                sim.received(at)
                    .last()
                    .map(|m| m.1)
                    .expect("a message was shown")
            };
            assert_eq!(
                last_from("Bob"),
                alice,
                "seed {seed}: Bob hears Alice on the LAN"
            );
            assert_eq!(
                last_from("Alice"),
                bob,
                "seed {seed}: Alice hears Bob on the LAN"
            );
        }
    });
}

/// After a first contact: Alice's traffic in a minute while the
/// conversation is in use and in a minute after it went out of use, then
/// the writer writing again after 5 minutes of quiet.
struct Later {
    in_use: NodeTraffic,
    idle: NodeTraffic,
    /// From the send after 5 minutes of quiet to the message shown.
    again: Duration,
    /// PeerInits both sent, and introductions, for that message.
    again_inits: u64,
    again_intros: u64,
}

fn later(sim: &mut Sim, writer: &str, reader: &str) -> Later {
    // The conversation is in use for 2 minutes after its last message
    // (answered 6 s before now): a minute inside that, from 30 s after the
    // answer, and a minute after it.
    sim.run_for(secs(24));
    let a0 = sim.traffic("Alice");
    sim.run_for(secs(60));
    let in_use = sim.traffic("Alice").since(&a0);
    sim.run_for(secs(60));
    let b0 = sim.traffic("Alice");
    sim.run_for(secs(60));
    let idle = sim.traffic("Alice").since(&b0);
    sim.run_for(secs(96));
    let before = (sim.traffic(writer), sim.traffic(reader));
    let intros = sim.server().stats().introductions;
    let (_, again) = sim.exchange(writer, reader, "after 5 minutes of quiet", secs(30));
    // The lookup that brokers the path again may still be on its way (lost
    // and retried) when the message, by a handshake of its own, is shown.
    sim.run_for(secs(3));
    let inits = sim
        .traffic(writer)
        .since(&before.0)
        .out_of(PacketType::PeerInit)
        + sim
            .traffic(reader)
            .since(&before.1)
            .out_of(PacketType::PeerInit);
    Later {
        in_use,
        idle,
        again,
        again_inits: inits,
        again_intros: sim.server().stats().introductions - intros,
    }
}

/// The figures of each scenario, 3 clean seeds (exact) and 3 lossy ones,
/// each side writing first: time from `send` to the message shown (mean and
/// worst), PeerInits and PeerResps, introductions and lookups per first
/// contact; Alice's datagrams per minute while idle, to the server and to
/// the peer, while the conversation is in use and after; the time to show
/// a message after 5 minutes of quiet, and its PeerInits and
/// introductions. Then two strict NATs: the time to `NoDirectPath`. Printed
/// (`cargo test --test sim_nat_traversal costs -- --nocapture`), then held
/// to the same bounds as the scenarios.
#[test]
fn costs() {
    type Setup = Box<dyn Fn(u64) -> Sim>;
    let home = NatPolicy::home();
    let scenarios: Vec<(&str, Setup)> = vec![
        (
            "home/home",
            Box::new(move |s| pair(s, Place::Home(home), Place::Home(home))),
        ),
        (
            "home(EI)/home(AD)",
            Box::new(|s| {
                pair(
                    s,
                    Place::Home(eim(Filtering::EndpointIndependent)),
                    Place::Home(eim(Filtering::AddressDependent)),
                )
            }),
        ),
        (
            "home/public",
            Box::new(move |s| pair(s, Place::Home(home), Place::Public)),
        ),
        (
            "public/public",
            Box::new(|s| pair(s, Place::Public, Place::Public)),
        ),
        (
            "one home, no hairpin",
            Box::new(move |s| housemates(s, home.hairpin(false))),
        ),
        (
            "one home, hairpin",
            Box::new(move |s| housemates(s, home.hairpin(true))),
        ),
        (
            "strict/home(EI)",
            Box::new(|s| {
                pair(
                    s,
                    Place::Home(NatPolicy::strict()),
                    Place::Home(eim(Filtering::EndpointIndependent)),
                )
            }),
        ),
    ];
    eprintln!(
        "{:<30} {:>4} {:>7} {:>7} {:>7} {:>5} {:>5} {:>5} {:>6} {:>7} {:>8} {:>8} {:>8} {:>6} {:>6}",
        "scenario",
        "runs",
        "first",
        "worst",
        "reply",
        "inits",
        "resps",
        "intro",
        "lookup",
        "srv/min",
        "peer/min",
        "idle/min",
        "quiet5m",
        "inits",
        "intro"
    );
    // Every run is checked once the whole table is printed.
    let mut checks = Vec::new();
    let mut verdicts = Vec::new();
    for (name, setup) in &scenarios {
        for clean in [true, false] {
            let seeds = (0..16u64).filter(|s| s.is_multiple_of(4) == clean).take(3);
            let mut rows = Vec::new();
            for seed in seeds {
                for (writer, reader) in [("Alice", "Bob"), ("Bob", "Alice")] {
                    let mut sim = setup(seed);
                    let c = first_contact(&mut sim, writer, reader);
                    let l = later(&mut sim, writer, reader);
                    rows.push((c, l));
                    checks.push((format!("{name}, {writer} first"), sim));
                }
            }
            let n = rows.len() as f64;
            let avg = |f: &dyn Fn(&(Contact, Later)) -> f64| rows.iter().map(f).sum::<f64>() / n;
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            let worst = rows.iter().map(|r| r.0.first).max().unwrap_or_default();
            eprintln!(
                "{:<30} {:>4} {:>7.1} {:>7.1} {:>7.1} {:>5.1} {:>5.1} {:>5.1} {:>6.1} {:>7.1} {:>8.1} {:>8.1} {:>8.1} {:>6.1} {:>6.1}",
                format!("{name}{}", if clean { "" } else { " (lossy)" }),
                rows.len(),
                avg(&|r| ms(r.0.first)),
                ms(worst),
                avg(&|r| ms(r.0.reply)),
                avg(&|r| r.0.peer_inits as f64),
                avg(&|r| r.0.peer_resps as f64),
                avg(&|r| r.0.introductions as f64),
                avg(&|r| r.0.lookups as f64),
                avg(&|r| r.1.in_use.to_server.datagrams as f64),
                avg(&|r| r.1.in_use.to_peers.datagrams as f64),
                avg(&|r| r.1.idle.to_peers.datagrams as f64),
                avg(&|r| ms(r.1.again)),
                avg(&|r| r.1.again_inits as f64),
                avg(&|r| r.1.again_intros as f64),
            );
            let runs = std::mem::take(&mut checks);
            verdicts.extend(runs.into_iter().zip(rows));
        }
    }
    // Two strict NATs: no path; how long until the writer is told.
    let mut failed = Vec::new();
    for seed in 0..8 {
        let mut sim = pair(
            seed,
            Place::Home(NatPolicy::strict()),
            Place::Home(NatPolicy::strict()),
        );
        let id = sim.send("Alice", "Bob", "lost in the NATs");
        let took = sim.run_until("the send settles", secs(30), |s| s.settled("Alice", id));
        let inits = sim.traffic("Alice").out_of(PacketType::PeerInit)
            + sim.traffic("Bob").out_of(PacketType::PeerInit);
        failed.push((sim.delivery_failure("Alice", id), took, inits));
    }
    eprintln!(
        "strict/strict, 8 seeds: {:?} after {:.2}-{:.2} s, {:.1} PeerInits",
        failed[0].0,
        failed
            .iter()
            .map(|f| f.1)
            .min()
            .unwrap_or_default()
            .as_secs_f64(),
        failed
            .iter()
            .map(|f| f.1)
            .max()
            .unwrap_or_default()
            .as_secs_f64(),
        failed.iter().map(|f| f.2 as f64).sum::<f64>() / failed.len() as f64
    );
    // Each run out of bounds is reported (by the panic hook), then the test
    // fails once.
    let out_of_bounds: Vec<&str> = verdicts
        .iter()
        .filter(|((what, sim), (c, l))| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                check_costs(sim, what, c);
                check_later(sim, what, l);
            }))
            .is_err()
        })
        .map(|((what, _), _)| what.as_str())
        .collect();
    assert!(
        out_of_bounds.is_empty(),
        "{} of {} runs out of bounds: {out_of_bounds:?}",
        out_of_bounds.len(),
        verdicts.len()
    );
    for (reason, took, inits) in failed {
        assert_eq!(reason, Some(DeliveryFailure::NoDirectPath));
        assert!(took >= secs(10) && took <= secs(11), "{took:?}");
        assert!(inits <= 80, "{inits} PeerInits");
    }
}

/// The bounds on [`Later`]: idle rates, and the message after 5 minutes.
fn check_later(sim: &Sim, what: &str, l: &Later) {
    let seed = sim.seed;
    // To the server: a keep-alive every 3 s (lost ones retried).
    for t in [&l.in_use, &l.idle] {
        let n = t.to_server.datagrams;
        let bound = if is_clean(sim) { 20..=21 } else { 19..=40 };
        assert!(
            bound.contains(&n),
            "seed {seed}: {what}: {n} datagrams to the server in an idle minute"
        );
    }
    // To the peer: a keep-alive every 10 s while in use (on a lossy link a
    // path may have to be brokered again: a handshake or two more),
    // nothing after.
    let n = l.in_use.to_peers.datagrams;
    let bound = if is_clean(sim) { 6..=6 } else { 5..=12 };
    assert!(
        bound.contains(&n),
        "seed {seed}: {what}: {n} datagrams to the peer in a minute of the conversation in use"
    );
    assert_eq!(
        l.idle.to_peers.datagrams, 0,
        "seed {seed}: {what}: datagrams to the peer after the conversation went out of use"
    );
    let (again, inits) = if is_clean(sim) {
        (millis(500), 10)
    } else {
        (secs(10), 40)
    };
    assert!(
        l.again <= again && l.again_inits <= inits,
        "seed {seed}: {what}: after 5 minutes of quiet, shown after {:?} with {} PeerInits",
        l.again,
        l.again_inits
    );
    assert!(
        l.again_intros >= 1,
        "seed {seed}: {what}: the path was not brokered again after 5 minutes of quiet"
    );
}
