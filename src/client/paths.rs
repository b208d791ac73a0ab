//! Where a peer can be reached, and which of its addresses to try.
//!
//! The directory knows two kinds of address for a user (a *candidate*, in
//! ICE's words): the **reflexive** address its server session comes from
//! (its router's public address and port, checked by the server), and the
//! **host** candidates it registered (its own interface addresses with its
//! port, which only hosts on the same network can reach). A [`Reach`] holds
//! both, as a lookup or an introduction gave them.
//!
//! Which to probe ([`Reach::targets`]): the reflexive address always (the
//! server has checked it: the peer receives there); host candidates only
//! where they can work and cannot be aimed elsewhere: private addresses
//! (RFC 1918, shared 100.64/10, IPv6 ULA) when both sides appear at the
//! same public IP (the same home, behind one router that may not hairpin),
//! and global IPv6 addresses in the same /64 as the peer's reflexive IPv6
//! address (another address of the same host or network). Never a peer's
//! addresses from another network: besides being useless, probing whatever
//! a stranger registered would let it aim our handshakes at a third party.
//!
//! Which path wins (the `peers` module keeps it): a host candidate (a LAN
//! path) beats the reflexive one when both answer.

use std::net::{IpAddr, SocketAddr};

use crate::codec::MAX_CANDIDATES;

/// Where a peer can be reached (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reach {
    /// The address the server sees the peer at.
    pub(crate) reflexive: SocketAddr,
    /// The peer's own interface addresses with its port, at most
    /// [`MAX_CANDIDATES`], each once.
    pub(crate) hosts: Vec<SocketAddr>,
}

impl Reach {
    /// A peer at `reflexive` with these host candidates (the excess and
    /// repeats dropped).
    pub(crate) fn new(reflexive: SocketAddr, hosts: impl IntoIterator<Item = SocketAddr>) -> Self {
        let mut kept: Vec<SocketAddr> = Vec::new();
        for h in hosts {
            if kept.len() < MAX_CANDIDATES && !kept.contains(&h) {
                kept.push(h);
            }
        }
        Reach {
            reflexive,
            hosts: kept,
        }
    }

    /// Whether the peer seems to be behind a NAT: the server sees it at an
    /// address that is none of its own. (One that registered no addresses
    /// counts as behind one: that is the common case.)
    pub(crate) fn behind_nat(&self) -> bool {
        !self.hosts.contains(&self.reflexive)
    }

    /// The addresses to probe to reach this peer from a client whose own
    /// reach is `me` (unknown before signing in): the reflexive address
    /// first, then the host candidates that can work (see the module docs).
    pub(crate) fn targets(&self, me: Option<&Reach>) -> Vec<SocketAddr> {
        let mut targets = vec![self.reflexive];
        let same_home = me.is_some_and(|me| me.reflexive.ip() == self.reflexive.ip())
            && !self.reflexive.ip().is_loopback();
        let we_have_v6 = me.is_some_and(|me| {
            is_global_v6(me.reflexive.ip()) || me.hosts.iter().any(|h| is_global_v6(h.ip()))
        });
        for &h in &self.hosts {
            let lan = same_home && is_private(h.ip());
            let beside = we_have_v6 && is_global_v6(h.ip()) && same_64(h.ip(), self.reflexive.ip());
            if (lan || beside) && !targets.contains(&h) {
                targets.push(h);
            }
        }
        targets
    }
}

/// A global unicast IPv6 address (2000::/3): one that needs no NAT.
fn is_global_v6(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => (v6.segments()[0] & 0xe000) == 0x2000,
        IpAddr::V4(_) => false,
    }
}

/// An address only a local network routes: RFC 1918, shared address space
/// (100.64/10), IPv6 unique local (fc00::/7).
fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            v4.is_private() || (a == 100 && (64..128).contains(&b))
        }
        IpAddr::V6(v6) => (v6.segments()[0] & 0xfe00) == 0xfc00,
    }
}

/// Whether two IPv6 addresses share their first 64 bits.
fn same_64(a: IpAddr, b: IpAddr) -> bool {
    match (a, b) {
        (IpAddr::V6(a), IpAddr::V6(b)) => a.segments()[..4] == b.segments()[..4],
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_peer_in_another_home_is_probed_at_its_router_only() {
        let bob = Reach::new(a("203.0.113.102:4000"), [a("192.168.2.10:5000")]);
        let me = Reach::new(a("203.0.113.101:4000"), [a("192.168.1.10:5000")]);
        assert!(bob.behind_nat());
        assert_eq!(bob.targets(Some(&me)), vec![a("203.0.113.102:4000")]);
        assert_eq!(bob.targets(None), vec![a("203.0.113.102:4000")]);
    }

    #[test]
    fn a_peer_in_the_same_home_is_probed_on_the_lan_too() {
        let bob = Reach::new(a("203.0.113.101:4001"), [a("192.168.1.11:5000")]);
        let me = Reach::new(a("203.0.113.101:4000"), [a("192.168.1.10:5000")]);
        assert_eq!(
            bob.targets(Some(&me)),
            vec![a("203.0.113.101:4001"), a("192.168.1.11:5000")]
        );
    }

    #[test]
    fn a_public_peer_is_not_behind_a_nat_and_its_own_v6_network_is_tried_by_v6_hosts() {
        let reflexive = a("[2001:db8:1:2::7]:5000");
        let temporary = a("[2001:db8:1:2:aaaa::1]:5000");
        let elsewhere = a("[2001:db8:9:9::1]:5000");
        let bob = Reach::new(reflexive, [reflexive, temporary, elsewhere]);
        assert!(!bob.behind_nat());
        let me_v4 = Reach::new(a("203.0.113.1:6000"), [a("10.0.0.2:6000")]);
        assert_eq!(bob.targets(Some(&me_v4)), vec![reflexive]);
        let me_v6 = Reach::new(a("[2001:db8:5::1]:6000"), [a("[2001:db8:5::1]:6000")]);
        assert_eq!(
            bob.targets(Some(&me_v6)),
            vec![reflexive, temporary],
            "never an address outside the peer's own /64"
        );
    }

    #[test]
    fn a_stranger_cannot_aim_our_handshakes_at_a_third_party() {
        // Mallory shares our public IP (a campus, a carrier-grade NAT) and
        // registers a public server's address and our own loopback: only
        // private addresses are tried on a shared network.
        let mallory = Reach::new(
            a("203.0.113.1:4001"),
            [
                a("198.51.100.80:80"),
                a("127.0.0.1:22"),
                a("[2001:db8:dead::1]:53"),
                a("100.64.3.4:5000"),
            ],
        );
        let me = Reach::new(a("203.0.113.1:4000"), [a("100.64.1.2:4000")]);
        assert_eq!(
            mallory.targets(Some(&me)),
            vec![a("203.0.113.1:4001"), a("100.64.3.4:5000")]
        );
    }

    #[test]
    fn on_one_machine_the_loopback_path_is_enough() {
        let bob = Reach::new(a("127.0.0.1:4001"), [a("10.0.0.5:4001")]);
        let me = Reach::new(a("127.0.0.1:4000"), [a("10.0.0.5:4000")]);
        assert_eq!(bob.targets(Some(&me)), vec![a("127.0.0.1:4001")]);
    }

    #[test]
    fn candidates_are_capped_and_kept_once() {
        let hosts = (1..=20).map(|i| SocketAddr::from(([10, 0, 0, i % 12], 1)));
        let r = Reach::new(a("203.0.113.1:1"), hosts);
        assert_eq!(r.hosts.len(), MAX_CANDIDATES);
    }
}
