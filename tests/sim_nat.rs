//! The simulator's NAT model (tests/common/nat.rs) behaves as RFC 4787 says
//! home routers do, and clients behind one work the way they do today: they
//! sign in through it, and a user at home who writes first to a public user
//! is answered.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::nat::{Filtering, Mapping, Nat, NatPolicy};
use common::{SERVER_ADDR, Sim, for_seeds, secs};

fn a(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const HOST: &str = "172.16.0.10:50000";
const PUBLIC: &str = "203.0.113.100";

fn nat(policy: NatPolicy) -> Nat {
    Nat::new(PUBLIC.parse().unwrap(), policy)
}

#[test]
fn endpoint_independent_mapping_keeps_one_port_for_every_destination() {
    let now = Instant::now();
    let mut n = nat(NatPolicy::home());
    let x = n.outbound(now, a(HOST), a("198.51.100.1:9090"));
    let y = n.outbound(now, a(HOST), a("198.51.100.2:7000"));
    assert_eq!(x, y);
    assert_eq!(
        x,
        a("203.0.113.100:50000"),
        "the host's port is kept when free"
    );
    // Another host with the same port gets another.
    let z = n.outbound(now, a("172.16.0.11:50000"), a("198.51.100.1:9090"));
    assert_ne!(z.port(), 50000);
}

#[test]
fn strict_mapping_gives_each_destination_its_own_port() {
    let now = Instant::now();
    let mut n = nat(NatPolicy::strict());
    let x = n.outbound(now, a(HOST), a("198.51.100.1:9090"));
    let y = n.outbound(now, a(HOST), a("198.51.100.1:9091"));
    let z = n.outbound(now, a(HOST), a("198.51.100.2:9090"));
    assert!(x != y && y != z && x != z);
    assert_eq!(n.outbound(now, a(HOST), a("198.51.100.1:9090")), x);
    let mut ad = nat(NatPolicy {
        mapping: Mapping::AddressDependent,
        ..NatPolicy::home()
    });
    let p = ad.outbound(now, a(HOST), a("198.51.100.1:9090"));
    assert_eq!(ad.outbound(now, a(HOST), a("198.51.100.1:9091")), p);
    assert_ne!(ad.outbound(now, a(HOST), a("198.51.100.2:9090")), p);
}

#[test]
fn filtering_lets_in_only_what_the_rule_allows() {
    let now = Instant::now();
    let peer = a("198.51.100.1:9090");
    let same_ip_other_port = a("198.51.100.1:9999");
    let stranger = a("198.51.100.7:9090");
    for (filtering, expected) in [
        (Filtering::AddressAndPortDependent, [true, false, false]),
        (Filtering::AddressDependent, [true, true, false]),
        (Filtering::EndpointIndependent, [true, true, true]),
    ] {
        let mut n = nat(NatPolicy {
            filtering,
            ..NatPolicy::home()
        });
        let ext = n.outbound(now, a(HOST), peer);
        let got =
            [peer, same_ip_other_port, stranger].map(|src| n.inbound(now, src, ext).is_some());
        assert_eq!(got, expected, "{filtering:?}");
    }
    // Nothing gets in where there is no mapping at all.
    let mut n = nat(NatPolicy::full_cone());
    assert_eq!(n.inbound(now, peer, a("203.0.113.100:50000")), None);
    assert_eq!(n.filtered, 1);
}

#[test]
fn idle_mappings_expire_and_inbound_traffic_does_not_refresh_them() {
    let now = Instant::now();
    let peer = a("198.51.100.1:9090");
    let mut n = nat(NatPolicy::home());
    let ext = n.outbound(now, a(HOST), peer);
    let later = now + Duration::from_secs(29);
    assert_eq!(n.inbound(later, peer, ext), Some(a(HOST)));
    assert_eq!(n.inbound(now + Duration::from_secs(30), peer, ext), None);
    // Outbound traffic does refresh.
    let ext = n.outbound(now + Duration::from_secs(40), a(HOST), peer);
    n.outbound(now + Duration::from_secs(65), a(HOST), peer);
    assert_eq!(
        n.inbound(now + Duration::from_secs(90), peer, ext),
        Some(a(HOST))
    );
}

#[test]
fn a_rebind_moves_the_mapping_to_a_new_port() {
    let now = Instant::now();
    let peer = a("198.51.100.1:9090");
    let mut n = nat(NatPolicy::home());
    let before = n.outbound(now, a(HOST), peer);
    n.rebind();
    assert_eq!(n.inbound(now, peer, before), None);
    let after = n.outbound(now, a(HOST), peer);
    assert_ne!(before, after);
    assert_eq!(n.mapped_port(a(HOST), peer), Some(after.port()));
}

#[test]
fn clients_sign_in_through_a_nat_and_home_writes_first_to_public() {
    for_seeds(20, |seed| {
        let mut sim = Sim::new(seed);
        let home = sim.add_nat(NatPolicy::home());
        let alice = sim.add_client_behind(home, "Alice", "Alice");
        let bob = sim.add_client("Bob");
        sim.wait_signed_in(&["Alice", "Bob"], secs(30));
        // The directory knows Alice by her router's public address.
        let seen = sim
            .server()
            .lookup("Alice")
            .map(|(a, _)| a)
            .expect("Alice is signed in");
        assert_eq!(seen.ip().to_string(), "203.0.113.100", "seed {seed}");
        assert_ne!(seen, alice);

        let id = sim.send("Alice", "Bob", "Hello from home");
        sim.wait_delivered("Alice", id, secs(30));
        let got = sim.received("Bob");
        assert_eq!(got.len(), 1, "seed {seed}: {got:?}");
        assert_eq!(got[0].1, seen, "seed {seed}: shown from where it came");

        let id = sim.send("Bob", "Alice", "Hello back");
        sim.wait_delivered("Bob", id, secs(30));
        let got = sim.received("Alice");
        assert_eq!(
            got,
            vec![("Bob".to_string(), bob, "Hello back".to_string())]
        );
        assert!(sim.is_up(SERVER_ADDR));
    });
}
