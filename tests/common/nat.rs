//! A home router's NAT, after RFC 4787, for the simulated network.
//!
//! Hosts behind a [`Nat`] have private addresses; what they send out leaves
//! from the NAT's public address and a mapped port, and what comes in to that
//! port is let through or dropped by the filtering rule. The behaviours that
//! decide whether UDP hole punching works are all here:
//!
//! * **mapping**: endpoint-independent (one external port per internal
//!   address:port, whatever the destination), address-dependent, or
//!   address-and-port-dependent (a new port per destination: "symmetric");
//! * **filtering**: endpoint-independent (anyone may send to a mapped port),
//!   address-dependent (only addresses the host has sent to), or
//!   address-and-port-dependent (only the exact address:port);
//! * **hairpinning**: whether a host may reach another host behind the same
//!   NAT through the NAT's public address;
//! * **timeout**: a mapping nobody sent out on for this long is forgotten
//!   (inbound traffic does not refresh it, as on most home routers), and so
//!   is each destination's permission to answer: traffic to the server keeps
//!   the mapping, not a peer's right to send in;
//! * **rebinding**: [`Nat::rebind`] forgets every mapping and moves the port
//!   allocator on, as a router reboot does.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

/// How a NAT chooses the external port for outgoing datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mapping {
    /// One external port per internal address and port.
    EndpointIndependent,
    /// A new external port per destination address.
    AddressDependent,
    /// A new external port per destination address and port.
    AddressAndPortDependent,
}

/// Which incoming datagrams a NAT lets through to a mapped port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filtering {
    /// Any.
    EndpointIndependent,
    /// From addresses the host has sent to through this mapping.
    AddressDependent,
    /// From the exact addresses and ports it has sent to.
    AddressAndPortDependent,
}

/// A NAT's behaviour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatPolicy {
    /// How ports are mapped.
    pub mapping: Mapping,
    /// What gets in.
    pub filtering: Filtering,
    /// Whether hosts behind it can reach each other through its public address.
    pub hairpin: bool,
    /// An idle mapping is forgotten after this long.
    pub timeout: Duration,
}

impl NatPolicy {
    /// The common home router: endpoint-independent mapping,
    /// address-and-port-dependent filtering, no hairpinning, 30 s mappings.
    pub fn home() -> Self {
        NatPolicy {
            mapping: Mapping::EndpointIndependent,
            filtering: Filtering::AddressAndPortDependent,
            hairpin: false,
            timeout: Duration::from_secs(30),
        }
    }

    /// This policy with hairpinning on or off.
    pub fn hairpin(self, hairpin: bool) -> Self {
        NatPolicy { hairpin, ..self }
    }

    /// This policy with this filtering.
    pub fn filtering(self, filtering: Filtering) -> Self {
        NatPolicy { filtering, ..self }
    }

    /// A strict ("symmetric") NAT: a new port per destination.
    pub fn strict() -> Self {
        NatPolicy {
            mapping: Mapping::AddressAndPortDependent,
            ..Self::home()
        }
    }

    /// The most permissive: a full-cone NAT with hairpinning.
    pub fn full_cone() -> Self {
        NatPolicy {
            mapping: Mapping::EndpointIndependent,
            filtering: Filtering::EndpointIndependent,
            hairpin: true,
            ..Self::home()
        }
    }
}

#[derive(Debug)]
struct Binding {
    internal: SocketAddr,
    /// The destination this mapping is for (dependent mappings only).
    scope: Option<SocketAddr>,
    external_port: u16,
    /// Destinations sent to through this mapping, each with when it was
    /// last sent to: like a conntrack entry per flow, each lets replies in
    /// only until it times out, even while the mapping itself lives on
    /// (kept by traffic to somewhere else).
    contacted: BTreeMap<SocketAddr, Instant>,
    last_out: Instant,
}

/// One NAT (see the module docs).
#[derive(Debug)]
pub struct Nat {
    /// The address the world sees.
    pub public_ip: IpAddr,
    /// How it behaves.
    pub policy: NatPolicy,
    bindings: Vec<Binding>,
    next_port: u16,
    /// Endpoint-independent mappings keep the host's port when free, until a
    /// rebind: then every mapping gets a fresh port.
    preserve_ports: bool,
    /// Datagrams dropped by filtering or for want of a mapping.
    pub filtered: u64,
}

impl Nat {
    /// A NAT at `public_ip`.
    pub fn new(public_ip: IpAddr, policy: NatPolicy) -> Self {
        Nat {
            public_ip,
            policy,
            bindings: Vec::new(),
            next_port: 20_000,
            preserve_ports: true,
            filtered: 0,
        }
    }

    fn expire(&mut self, now: Instant) {
        let timeout = self.policy.timeout;
        self.bindings
            .retain(|b| now.saturating_duration_since(b.last_out) < timeout);
    }

    fn scope_of(&self, dst: SocketAddr) -> Option<SocketAddr> {
        match self.policy.mapping {
            Mapping::EndpointIndependent => None,
            // The port is irrelevant: keep only the address.
            Mapping::AddressDependent => Some(SocketAddr::new(dst.ip(), 0)),
            Mapping::AddressAndPortDependent => Some(dst),
        }
    }

    fn port_in_use(&self, port: u16) -> bool {
        self.bindings.iter().any(|b| b.external_port == port)
    }

    /// `internal` sends to `dst`: the source address the datagram leaves with.
    pub fn outbound(&mut self, now: Instant, internal: SocketAddr, dst: SocketAddr) -> SocketAddr {
        self.expire(now);
        let scope = self.scope_of(dst);
        let index = match self
            .bindings
            .iter()
            .position(|b| b.internal == internal && b.scope == scope)
        {
            Some(i) => i,
            None => {
                // Keep the host's port where it is free and the mapping is
                // endpoint-independent (as Linux masquerade does); otherwise
                // the next free port.
                let preserve =
                    self.preserve_ports && scope.is_none() && !self.port_in_use(internal.port());
                let port = if preserve {
                    internal.port()
                } else {
                    while self.port_in_use(self.next_port) {
                        self.next_port = self.next_port.wrapping_add(1).max(1024);
                    }
                    let p = self.next_port;
                    self.next_port = self.next_port.wrapping_add(1).max(1024);
                    p
                };
                self.bindings.push(Binding {
                    internal,
                    scope,
                    external_port: port,
                    contacted: BTreeMap::new(),
                    last_out: now,
                });
                self.bindings.len() - 1
            }
        };
        let b = &mut self.bindings[index];
        b.last_out = now;
        b.contacted.insert(dst, now);
        SocketAddr::new(self.public_ip, b.external_port)
    }

    /// A datagram from `src` reaches the NAT's `external` address: the
    /// internal address it goes on to, or `None` when it is dropped.
    pub fn inbound(
        &mut self,
        now: Instant,
        src: SocketAddr,
        external: SocketAddr,
    ) -> Option<SocketAddr> {
        self.expire(now);
        let filtering = self.policy.filtering;
        let timeout = self.policy.timeout;
        let live = |at: &Instant| now.saturating_duration_since(*at) < timeout;
        let found = self.bindings.iter().find(|b| {
            b.external_port == external.port()
                && match filtering {
                    Filtering::EndpointIndependent => true,
                    Filtering::AddressDependent => b
                        .contacted
                        .iter()
                        .any(|(c, at)| c.ip() == src.ip() && live(at)),
                    Filtering::AddressAndPortDependent => b.contacted.get(&src).is_some_and(live),
                }
        });
        match found {
            Some(b) => Some(b.internal),
            None => {
                self.filtered += 1;
                None
            }
        }
    }

    /// Forgets every mapping (a router reboot); the next ones get new ports.
    pub fn rebind(&mut self) {
        self.bindings.clear();
        self.preserve_ports = false;
        self.next_port = self.next_port.wrapping_add(1000).max(1024);
    }

    /// Mappings alive at `now`.
    pub fn mappings(&self, now: Instant) -> usize {
        self.bindings
            .iter()
            .filter(|b| now.saturating_duration_since(b.last_out) < self.policy.timeout)
            .count()
    }

    /// The external port of `internal`'s mapping toward `dst`, if any.
    pub fn mapped_port(&self, internal: SocketAddr, dst: SocketAddr) -> Option<u16> {
        let scope = self.scope_of(dst);
        self.bindings
            .iter()
            .find(|b| b.internal == internal && b.scope == scope)
            .map(|b| b.external_port)
    }
}
