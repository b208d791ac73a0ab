//! A simulated network for the sans-IO state machines, after quinn-proto's
//! `src/tests/util.rs` `Pair`.
//!
//! One [`ServerState`] and any number of [`ClientState`]s (and "raw" nodes that
//! only record what reaches them) are keyed by their [`SocketAddr`]. Datagrams
//! in flight wait in a queue ordered by arrival time (ties broken by a sequence
//! number). There is one virtual clock: it starts at a real `Instant` captured
//! once and is only ever advanced. [`Sim::step`] moves the clock to the
//! earliest of the next arrival and every node's `poll_timeout()`, delivers the
//! datagram or fires the timers, then drains every node's `poll_transmit()`
//! into the queue through the link model (loss, duplication, delay plus jitter,
//! which reorders), all drawn from seeded random number generators, and every
//! node's `poll_event()` into its event log.
//!
//! The link model draws from one generator per (source, destination) pair, so
//! the order in which a node emits datagrams to *different* destinations does
//! not change what happens to any of them.
//!
//! Every datagram a state machine emits is checked: it must be at most
//! [`MAX_DATAGRAM`] bytes and decode. After `handle_timeout(now)` a node's
//! `poll_timeout()` must be `None` or later than `now`. A run that reaches
//! neither its condition nor its deadline within a bounded number of steps, or
//! whose clock stops advancing, panics with the seed.
//!
//! [`for_seeds`] runs a scenario over many seeds and prints the failing one;
//! `SEED=N cargo test --test sim_...` replays just seed N.
#![allow(dead_code)]

pub mod nat;
pub mod raw;

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::time::{Duration, Instant};

use bytes::Bytes;
use udpchat::client::{ClientConfig, ClientEvent, ClientState, CommandId, DeliveryFailure};
use udpchat::codec::{MAX_DATAGRAM, Packet, PacketType};
use udpchat::server::{ServerConfig, ServerEvent, ServerState};

use nat::{Nat, NatPolicy};

/// The directory server's address in every simulation.
pub const SERVER_ADDR: SocketAddr =
    SocketAddr::new(IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1)), 9090);

/// Steps one `run_until` / `run_for` may take before it is called a livelock.
pub const DEFAULT_MAX_STEPS: u64 = 3_000_000;

/// Steps at one virtual instant before the clock is called stuck.
const MAX_STEPS_AT_ONE_INSTANT: u64 = 200_000;

/// `n` seconds.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// `n` milliseconds.
pub fn millis(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---- randomness ---------------------------------------------------------

/// SplitMix64: tiny, fast, and good enough for a link model.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose whole output follows from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && self.unit() < p
    }

    /// Uniform in `0..n` (`0` when `n == 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }

    /// Uniform in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// A duration uniform in `[0, max]`, to the nanosecond.
    pub fn duration(&mut self, max: Duration) -> Duration {
        let nanos = u64::try_from(max.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(self.range(0, nanos))
    }

    /// Picks one element.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// 32 bytes that follow from `seed`: keys and seeds for the machines.
pub fn bytes32(seed: u64) -> [u8; 32] {
    let mut r = Rng::new(seed ^ 0xB7E5);
    let mut out = [0u8; 32];
    for chunk in out.chunks_mut(8) {
        chunk.copy_from_slice(&r.next_u64().to_be_bytes());
    }
    out
}

/// FNV-1a, for deriving per-link and per-node seeds without `RandomState`.
fn fnv(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01B3)
    })
}

fn addr_key(a: SocketAddr) -> Vec<u8> {
    let mut v = match a.ip() {
        IpAddr::V4(ip) => ip.octets().to_vec(),
        IpAddr::V6(ip) => ip.octets().to_vec(),
    };
    v.extend_from_slice(&a.port().to_be_bytes());
    v
}

// ---- the link model -----------------------------------------------------

/// What a link does to each datagram.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// Probability a datagram is lost.
    pub loss: f64,
    /// Probability a (surviving) datagram arrives twice.
    pub duplicate: f64,
    /// Every datagram takes at least this long.
    pub delay: Duration,
    /// Plus a uniform extra in `[0, jitter]`, which reorders datagrams.
    pub jitter: Duration,
}

impl Link {
    /// No loss, no duplication, a fixed 5 ms: datagrams arrive in order.
    pub fn clean() -> Self {
        Link {
            loss: 0.0,
            duplicate: 0.0,
            delay: millis(5),
            jitter: Duration::ZERO,
        }
    }

    /// A bad network: loss 0–30 %, duplication 0–10 %, delay 1–50 ms,
    /// jitter 0–40 ms.
    pub fn random(rng: &mut Rng) -> Self {
        let loss = rng.unit() * 0.30;
        Self::random_with_loss(rng, loss)
    }

    /// Like [`Link::random`], with this loss.
    pub fn random_with_loss(rng: &mut Rng, loss: f64) -> Self {
        Link {
            loss,
            duplicate: rng.unit() * 0.10,
            delay: millis(rng.range(1, 50)),
            jitter: millis(rng.range(0, 40)),
        }
    }

    /// Sets the loss.
    pub fn with_loss(mut self, loss: f64) -> Self {
        self.loss = loss;
        self
    }
}

// ---- counters -----------------------------------------------------------

/// A count of datagrams and their bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Datagrams.
    pub datagrams: u64,
    /// Their bytes.
    pub bytes: u64,
}

impl Tally {
    fn add(&mut self, len: usize) {
        self.datagrams += 1;
        self.bytes += len as u64;
    }
}

/// What went from one address to another.
#[derive(Debug, Clone, Default)]
pub struct PairStats {
    /// Emitted by the source (or injected claiming it), before the link.
    pub sent: Tally,
    /// Handed to the destination (or found no node there).
    pub delivered: Tally,
    /// Of `sent`, how many were injected by the test.
    pub injected: Tally,
    /// Dropped by the link.
    pub lost: u64,
    /// Extra copies made by the link.
    pub duplicated: u64,
    /// Delivered to an address with no node.
    pub undeliverable: u64,
    /// `sent`, by type byte (byte 0 of the datagram; 0 for an empty one).
    pub sent_by_type: BTreeMap<u8, Tally>,
    /// `delivered`, by type byte.
    pub delivered_by_type: BTreeMap<u8, Tally>,
}

impl PairStats {
    /// Datagrams of this type sent.
    pub fn sent_of(&self, ty: PacketType) -> Tally {
        self.sent_by_type
            .get(&(ty as u8))
            .copied()
            .unwrap_or_default()
    }

    /// Datagrams of this type delivered.
    pub fn delivered_of(&self, ty: PacketType) -> Tally {
        self.delivered_by_type
            .get(&(ty as u8))
            .copied()
            .unwrap_or_default()
    }
}

/// What one node put out and took in, as the node itself sees addresses:
/// before its NAT (if any) translates what it sends, after the NAT lets in
/// what it receives. A datagram lost on a link or dropped by a NAT is in the
/// sender's `to_*` and in nobody's `from_*`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeTraffic {
    /// Emitted to the server.
    pub to_server: Tally,
    /// Handed to the node from the server.
    pub from_server: Tally,
    /// Emitted to anywhere else (peers, their candidates).
    pub to_peers: Tally,
    /// Handed to the node from anywhere else.
    pub from_peers: Tally,
    /// Emitted, by type byte.
    pub out_by_type: BTreeMap<u8, Tally>,
    /// Handed in, by type byte.
    pub in_by_type: BTreeMap<u8, Tally>,
}

impl NodeTraffic {
    /// Datagrams of this type emitted.
    pub fn out_of(&self, ty: PacketType) -> u64 {
        self.out_by_type.get(&(ty as u8)).map_or(0, |t| t.datagrams)
    }

    /// Datagrams of this type handed in.
    pub fn in_of(&self, ty: PacketType) -> u64 {
        self.in_by_type.get(&(ty as u8)).map_or(0, |t| t.datagrams)
    }

    /// Everything emitted.
    pub fn out(&self) -> u64 {
        self.to_server.datagrams + self.to_peers.datagrams
    }

    /// Everything handed in.
    pub fn r#in(&self) -> u64 {
        self.from_server.datagrams + self.from_peers.datagrams
    }

    /// What happened after `earlier` (a snapshot of the same node): the
    /// traffic of a time window.
    pub fn since(&self, earlier: &NodeTraffic) -> NodeTraffic {
        fn minus(a: Tally, b: Tally) -> Tally {
            Tally {
                datagrams: a.datagrams - b.datagrams,
                bytes: a.bytes - b.bytes,
            }
        }
        fn minus_map(a: &BTreeMap<u8, Tally>, b: &BTreeMap<u8, Tally>) -> BTreeMap<u8, Tally> {
            a.iter()
                .map(|(ty, t)| (*ty, minus(*t, b.get(ty).copied().unwrap_or_default())))
                .filter(|(_, t)| t.datagrams > 0)
                .collect()
        }
        NodeTraffic {
            to_server: minus(self.to_server, earlier.to_server),
            from_server: minus(self.from_server, earlier.from_server),
            to_peers: minus(self.to_peers, earlier.to_peers),
            from_peers: minus(self.from_peers, earlier.from_peers),
            out_by_type: minus_map(&self.out_by_type, &earlier.out_by_type),
            in_by_type: minus_map(&self.in_by_type, &earlier.in_by_type),
        }
    }
}

/// Message fragments a sender has sent to one peer and not had
/// acknowledged, as its [`ClientState::flows`] says after each of its steps
/// (the wire shows only sealed bytes).
#[derive(Debug, Clone, Default)]
pub struct Flow {
    /// Fragments unacknowledged now.
    pub unacked: usize,
    /// The most ever unacknowledged at once.
    pub max_unacked: usize,
    /// Fragments ever sent (first transmissions).
    pub fragments: u64,
    /// The widest span of sequence numbers from the oldest unacknowledged
    /// fragment to the next to send (what the receiver must buffer if the
    /// oldest is lost).
    pub max_span: usize,
}

/// A datagram as the network saw it.
#[derive(Debug, Clone)]
pub struct Captured {
    /// When it was emitted.
    pub at: Instant,
    /// Claimed source.
    pub from: SocketAddr,
    /// Destination.
    pub to: SocketAddr,
    /// The bytes.
    pub payload: Bytes,
    /// Injected by the test rather than emitted by a node.
    pub injected: bool,
    /// Copies the link let through: 0 (lost), 1, or 2 (duplicated).
    pub copies: u8,
}

impl Captured {
    /// The decoded packet, if it decodes.
    pub fn packet(&self) -> Option<Packet<'_>> {
        Packet::decode(&self.payload).ok()
    }
}

/// Something logged at a virtual time.
#[derive(Debug, Clone)]
pub struct Timed<E> {
    /// When (virtual).
    pub at: Instant,
    /// What.
    pub event: E,
}

/// A client's events, indexed as they come so that queries stay cheap in
/// long runs.
#[derive(Debug, Default)]
struct ClientLog {
    events: Vec<Timed<ClientEvent>>,
    /// The first outcome of each send: `None` delivered, `Some` failed.
    outcomes: BTreeMap<CommandId, Option<DeliveryFailure>>,
    /// Each list's answer: the index of its `UserList` event, or `None` failed.
    lists: BTreeMap<CommandId, Option<usize>>,
    received: usize,
    signed_in: bool,
    sign_in_failed: bool,
}

impl ClientLog {
    fn push(&mut self, event: Timed<ClientEvent>) {
        match &event.event {
            ClientEvent::SignedIn => self.signed_in = true,
            ClientEvent::SignInFailed(_) => self.sign_in_failed = true,
            ClientEvent::MessageReceived { .. } => self.received += 1,
            ClientEvent::Delivered { id, .. } => {
                self.outcomes.entry(*id).or_insert(None);
            }
            ClientEvent::DeliveryFailed { id, reason, .. } => {
                self.outcomes.entry(*id).or_insert(Some(*reason));
            }
            ClientEvent::UserList { id, .. } => {
                self.lists.entry(*id).or_insert(Some(self.events.len()));
            }
            ClientEvent::ListFailed { id, .. } => {
                self.lists.entry(*id).or_insert(None);
            }
            _ => {}
        }
        self.events.push(event);
    }
}

// ---- nodes --------------------------------------------------------------

/// What sits at an address.
pub enum Node {
    /// The directory server.
    Server(Box<ServerState>),
    /// A chat client.
    Client {
        /// Its label in the simulation ("Alice").
        label: String,
        /// The state machine.
        state: Box<ClientState>,
    },
    /// An address that only records what reaches it (an attacker's, say).
    Raw {
        /// Its label.
        label: String,
        /// (arrival, claimed source, bytes)
        inbox: Vec<(Instant, SocketAddr, Bytes)>,
    },
}

impl Node {
    fn poll_timeout(&self) -> Option<Instant> {
        match self {
            Node::Server(s) => s.poll_timeout(),
            Node::Client { state, .. } => state.poll_timeout(),
            Node::Raw { .. } => None,
        }
    }

    fn label(&self) -> &str {
        match self {
            Node::Server(_) => "server",
            Node::Client { label, .. } | Node::Raw { label, .. } => label,
        }
    }
}

#[derive(Debug)]
struct InFlight {
    arrival: Instant,
    seq: u64,
    from: SocketAddr,
    to: SocketAddr,
    payload: Bytes,
    injected: bool,
}

impl PartialEq for InFlight {
    fn eq(&self, other: &Self) -> bool {
        (self.arrival, self.seq) == (other.arrival, other.seq)
    }
}
impl Eq for InFlight {}
impl PartialOrd for InFlight {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for InFlight {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.arrival, self.seq).cmp(&(other.arrival, other.seq))
    }
}

// ---- the simulation -----------------------------------------------------

/// The simulated network. See the module docs.
pub struct Sim {
    /// The seed everything random follows from.
    pub seed: u64,
    /// The virtual time the simulation started at.
    pub start: Instant,
    now: Instant,
    /// Randomness for the scenario itself (texts, choices); not used by links.
    pub rng: Rng,
    /// The link every pair uses unless overridden.
    pub link: Link,
    overrides: BTreeMap<(SocketAddr, SocketAddr), Link>,
    link_rngs: BTreeMap<(SocketAddr, SocketAddr), Rng>,
    queue: BinaryHeap<Reverse<InFlight>>,
    next_seq: u64,
    nodes: BTreeMap<SocketAddr, Node>,
    labels: BTreeMap<String, SocketAddr>,
    /// The configuration the server was (re)started with last.
    pub server_config: ServerConfig,
    server_starts: u32,
    client_logs: BTreeMap<String, ClientLog>,
    server_log: Vec<Timed<ServerEvent>>,
    pairs: BTreeMap<(SocketAddr, SocketAddr), PairStats>,
    /// As the nodes see addresses (see [`NodeTraffic`]): `sent` is what
    /// node `from` emitted addressed to `to`, `delivered` what node `to` was
    /// handed claiming `from`.
    ends: BTreeMap<(SocketAddr, SocketAddr), PairStats>,
    flows: BTreeMap<(SocketAddr, SocketAddr), Flow>,
    capture: Option<Vec<Captured>>,
    steps: u64,
    /// Steps one `run_until` / `run_for` may take.
    pub max_steps: u64,
    next_host: u32,
    /// Home routers; hosts behind `nats[i]` have addresses 172.16.i.N.
    nats: Vec<Nat>,
    /// Each host behind a NAT, and which.
    behind: BTreeMap<SocketAddr, usize>,
}

/// Where [`Sim::add_client_in`] puts a client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// At a public address of its own.
    Public,
    /// Behind a new NAT with this policy (a home of its own).
    Home(NatPolicy),
    /// Behind this NAT (a home it shares).
    Behind(NatId),
}

/// A NAT in the simulation, from [`Sim::add_nat`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatId(pub usize);

impl Sim {
    /// A server on a bad network ([`Link::random`] from the seed).
    pub fn new(seed: u64) -> Self {
        Self::with_server(seed, |_| {})
    }

    /// A server configured by `tweak` on a bad network.
    pub fn with_server(seed: u64, tweak: impl FnOnce(&mut ServerConfig)) -> Self {
        let mut sim = Self::empty(seed, Self::random_link(seed));
        sim.start_server(tweak);
        sim
    }

    /// The bad link [`Sim::new`] uses for `seed`.
    pub fn random_link(seed: u64) -> Link {
        Link::random(&mut Rng::new(seed ^ 0x11))
    }

    /// A server on a clean network.
    pub fn clean(seed: u64) -> Self {
        let mut sim = Self::empty(seed, Link::clean());
        sim.start_server(|_| {});
        sim
    }

    /// A server on a clean network for one seed in four (the figures are
    /// exact there), on a lossy one for the others: loss up to `max_loss`,
    /// duplication up to 10 %, delay 1-50 ms plus up to 40 ms of jitter.
    pub fn clean_or_lossy(seed: u64, max_loss: f64) -> Self {
        if seed.is_multiple_of(4) {
            Self::clean(seed)
        } else {
            let mut rng = Rng::new(seed ^ 0x4A7);
            let loss = rng.unit() * max_loss;
            Self::on_link(seed, Link::random_with_loss(&mut rng, loss))
        }
    }

    /// Whether every pair has the clean link (no loss, 5 ms).
    pub fn is_clean(&self) -> bool {
        self.link == Link::clean() && self.overrides.is_empty()
    }

    /// A server on a network where every pair has `link`.
    pub fn on_link(seed: u64, link: Link) -> Self {
        let mut sim = Self::empty(seed, link);
        sim.start_server(|_| {});
        sim
    }

    /// No nodes at all; `link` between every pair.
    pub fn empty(seed: u64, link: Link) -> Self {
        let start = Instant::now();
        Sim {
            seed,
            start,
            now: start,
            rng: Rng::new(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ 0x22),
            link,
            overrides: BTreeMap::new(),
            link_rngs: BTreeMap::new(),
            queue: BinaryHeap::new(),
            next_seq: 0,
            nodes: BTreeMap::new(),
            labels: BTreeMap::new(),
            server_config: ServerConfig::new(bytes32(seed ^ 0x5E_4E_4E), [0; 32]),
            server_starts: 0,
            client_logs: BTreeMap::new(),
            server_log: Vec::new(),
            pairs: BTreeMap::new(),
            ends: BTreeMap::new(),
            flows: BTreeMap::new(),
            capture: None,
            steps: 0,
            max_steps: DEFAULT_MAX_STEPS,
            next_host: 10,
            nats: Vec::new(),
            behind: BTreeMap::new(),
        }
    }

    // ---- time ---------------------------------------------------------

    /// The virtual now.
    pub fn now(&self) -> Instant {
        self.now
    }

    /// Virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    // ---- nodes --------------------------------------------------------

    /// Starts the server at [`SERVER_ADDR`] with the default configuration
    /// as changed by `tweak`, an identity and randomness drawn from the seed.
    pub fn start_server(&mut self, tweak: impl FnOnce(&mut ServerConfig)) {
        let entropy = self.next_entropy();
        let mut config = ServerConfig::new(bytes32(self.seed ^ 0x5E_4E_4E), entropy);
        tweak(&mut config);
        self.server_config = config.clone();
        self.server_starts += 1;
        self.nodes.insert(
            SERVER_ADDR,
            Node::Server(Box::new(ServerState::new(config, self.now))),
        );
        self.labels.insert("server".into(), SERVER_ADDR);
    }

    /// The server crashes and comes back at once with its identity (its key
    /// file), new randomness and an empty directory (the same configuration
    /// otherwise).
    pub fn restart_server(&mut self) {
        let old = self.server_config.clone();
        let mut config = ServerConfig::new(old.identity, self.next_entropy());
        config.max_users = old.max_users;
        config.session_timeout = old.session_timeout;
        config.probe_timeout = old.probe_timeout;
        config.rate_per_second = old.rate_per_second;
        config.rate_burst = old.rate_burst;
        config.max_rate_sources = old.max_rate_sources;
        config.cookie_lifetime = old.cookie_lifetime;
        config.restore_grace = old.restore_grace;
        assert_ne!(old.secret, config.secret);
        self.server_starts += 1;
        self.server_config = config.clone();
        self.nodes.insert(
            SERVER_ADDR,
            Node::Server(Box::new(ServerState::new(config, self.now))),
        );
    }

    /// The server crashes and stays down.
    pub fn crash_server(&mut self) {
        self.nodes.remove(&SERVER_ADDR);
    }

    fn next_entropy(&mut self) -> [u8; 32] {
        bytes32(self.seed ^ 0x5EC2E7 ^ u64::from(self.server_starts) << 32)
    }

    /// The identity a client labelled `label` has in this simulation: the
    /// same each time it starts, another for every label.
    pub fn identity_of(&self, label: &str) -> [u8; 32] {
        bytes32(self.seed ^ fnv(label.as_bytes()) ^ 0x1D)
    }

    /// The server's public key.
    pub fn server_key(&self) -> udpchat::PublicKey {
        udpchat::StaticKeypair::from_secret(self.server_config.identity).public()
    }

    /// A fresh address no node has used: 192.0.2.N:40000+N.
    pub fn fresh_addr(&mut self) -> SocketAddr {
        let n = self.next_host;
        self.next_host += 1;
        let [_, a, b, c] = n.to_be_bytes();
        let ip = if a == 0 && b == 0 {
            Ipv4Addr::new(192, 0, 2, c)
        } else {
            Ipv4Addr::new(10, a, b, c)
        };
        SocketAddr::new(IpAddr::V4(ip), 40_000 + (n % 20_000) as u16)
    }

    /// A client labelled and named `name`, at a fresh address, with the
    /// default configuration. It starts signing in at once.
    pub fn add_client(&mut self, name: &str) -> SocketAddr {
        self.add_client_as(name, name, |_| {})
    }

    /// A client labelled `label` signing in as `name`, with its configuration
    /// changed by `tweak`, at a fresh address.
    pub fn add_client_as(
        &mut self,
        label: &str,
        name: &str,
        tweak: impl FnOnce(&mut ClientConfig),
    ) -> SocketAddr {
        let addr = self.fresh_addr();
        self.add_client_at(label, name, addr, tweak);
        addr
    }

    /// A client at `addr`.
    pub fn add_client_at(
        &mut self,
        label: &str,
        name: &str,
        addr: SocketAddr,
        tweak: impl FnOnce(&mut ClientConfig),
    ) {
        assert!(
            !self.nodes.contains_key(&addr),
            "address {addr} already has a node"
        );
        let mut config = ClientConfig::new(name, SERVER_ADDR, self.identity_of(label));
        // Its own interface address, as the run loop registers a real
        // client's (a private one behind a NAT).
        config.host_candidates = vec![addr];
        tweak(&mut config);
        let seed = self.seed.rotate_left(17)
            ^ fnv(label.as_bytes())
            ^ fnv(&addr_key(addr))
            ^ u64::from(self.server_starts).rotate_left(40)
            ^ self.steps.rotate_left(20);
        let state = ClientState::new(config, self.now, bytes32(seed))
            .unwrap_or_else(|e| panic!("client {label} ({name:?}): {e}"));
        self.nodes.insert(
            addr,
            Node::Client {
                label: label.to_owned(),
                state: Box::new(state),
            },
        );
        self.labels.insert(label.to_owned(), addr);
        self.client_logs.entry(label.to_owned()).or_default();
        self.flush();
    }

    /// A home router with this policy, at public address 203.0.113.(100+i).
    pub fn add_nat(&mut self, policy: NatPolicy) -> NatId {
        let i = self.nats.len();
        let octet = u8::try_from(100 + i).expect("at most 155 NATs");
        let public = IpAddr::V4(Ipv4Addr::new(203, 0, 113, octet));
        self.nats.push(Nat::new(public, policy));
        NatId(i)
    }

    /// The NAT `id`, to inspect or rebind.
    pub fn nat_mut(&mut self, id: NatId) -> &mut Nat {
        &mut self.nats[id.0]
    }

    /// The NAT `id`.
    pub fn nat(&self, id: NatId) -> &Nat {
        &self.nats[id.0]
    }

    /// A client behind NAT `nat`, at the next private address of its home.
    pub fn add_client_behind(&mut self, nat: NatId, label: &str, name: &str) -> SocketAddr {
        self.add_client_behind_as(nat, label, name, |_| {})
    }

    /// [`Sim::add_client_behind`], its configuration changed by `tweak`
    /// (after its host candidate is set to its private address).
    pub fn add_client_behind_as(
        &mut self,
        nat: NatId,
        label: &str,
        name: &str,
        tweak: impl FnOnce(&mut ClientConfig),
    ) -> SocketAddr {
        let hosts = self.behind.values().filter(|n| **n == nat.0).count();
        let host = u8::try_from(10 + hosts).expect("at most 245 hosts a home");
        let home = u8::try_from(nat.0).expect("at most 255 homes");
        let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(172, 16, home, host)), 50_000);
        self.behind.insert(addr, nat.0);
        self.add_client_at(label, name, addr, tweak);
        addr
    }

    /// A client labelled and named `label` at `place`: a public address, or
    /// behind a NAT of its own (a new one) or an existing one. Returns its
    /// address (a private one behind a NAT).
    pub fn add_client_in(&mut self, label: &str, place: Place) -> SocketAddr {
        match place {
            Place::Public => self.add_client(label),
            Place::Home(policy) => {
                let nat = self.add_nat(policy);
                self.add_client_behind(nat, label, label)
            }
            Place::Behind(nat) => self.add_client_behind(nat, label, label),
        }
    }

    /// The NAT the node at `addr` is behind, if any.
    pub fn nat_of(&self, addr: SocketAddr) -> Option<NatId> {
        self.behind.get(&addr).map(|&i| NatId(i))
    }

    /// Where a datagram from `from` to `to` leaves from and goes to once
    /// through `from`'s NAT, if any; `None` when it cannot get there.
    fn translate_out(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
    ) -> Option<(SocketAddr, SocketAddr)> {
        let Some(&home) = self.behind.get(&from) else {
            // A public host cannot reach a private address.
            return (!self.behind.contains_key(&to)).then_some((from, to));
        };
        let now = self.now;
        match self.behind.get(&to) {
            Some(&other) if other == home => return Some((from, to)),
            Some(_) => return None,
            None => {}
        }
        let nat = &mut self.nats[home];
        if to.ip() == nat.public_ip {
            if !nat.policy.hairpin {
                nat.filtered += 1;
                return None;
            }
            let external = nat.outbound(now, from, to);
            let internal = nat.inbound(now, external, to)?;
            return Some((external, internal));
        }
        Some((nat.outbound(now, from, to), to))
    }

    /// A node at `addr` that only records what reaches it.
    pub fn add_raw(&mut self, label: &str, addr: SocketAddr) {
        self.nodes.insert(
            addr,
            Node::Raw {
                label: label.to_owned(),
                inbox: Vec::new(),
            },
        );
        self.labels.insert(label.to_owned(), addr);
    }

    /// The node labelled `label` crashes: it disappears with its state; what
    /// is in flight to it is lost on arrival. Its event log stays readable.
    pub fn remove(&mut self, label: &str) {
        let addr = self.addr(label);
        self.nodes.remove(&addr);
    }

    /// Whether a node is at `addr`.
    pub fn is_up(&self, addr: SocketAddr) -> bool {
        self.nodes.contains_key(&addr)
    }

    /// The address of the node labelled `label`.
    pub fn addr(&self, label: &str) -> SocketAddr {
        *self
            .labels
            .get(label)
            .unwrap_or_else(|| panic!("no node labelled {label:?}"))
    }

    /// The client labelled `label`.
    pub fn client(&self, label: &str) -> &ClientState {
        match self.nodes.get(&self.addr(label)) {
            Some(Node::Client { state, .. }) => state,
            _ => panic!("{label:?} is not a live client"),
        }
    }

    /// The client labelled `label`, to give it commands. Prefer the helpers
    /// ([`Sim::send`], [`Sim::list`]), which also route what it emits; after
    /// using this, call [`Sim::flush`].
    pub fn client_mut(&mut self, label: &str) -> &mut ClientState {
        let addr = self.addr(label);
        match self.nodes.get_mut(&addr) {
            Some(Node::Client { state, .. }) => state,
            _ => panic!("{label:?} is not a live client"),
        }
    }

    /// The server.
    pub fn server(&self) -> &ServerState {
        match self.nodes.get(&SERVER_ADDR) {
            Some(Node::Server(s)) => s,
            _ => panic!("the server is down"),
        }
    }

    /// The server, to drive directly; call [`Sim::flush`] afterwards.
    pub fn server_mut(&mut self) -> &mut ServerState {
        match self.nodes.get_mut(&SERVER_ADDR) {
            Some(Node::Server(s)) => s,
            _ => panic!("the server is down"),
        }
    }

    /// What reached the raw node labelled `label`.
    pub fn inbox(&self, label: &str) -> &[(Instant, SocketAddr, Bytes)] {
        match self.nodes.get(&self.addr(label)) {
            Some(Node::Raw { inbox, .. }) => inbox,
            _ => panic!("{label:?} is not a raw node"),
        }
    }

    /// Uses `link` both ways between `a` and `b` instead of the default.
    pub fn set_link_between(&mut self, a: SocketAddr, b: SocketAddr, link: Link) {
        self.overrides.insert((a, b), link);
        self.overrides.insert((b, a), link);
    }

    fn link_for(&self, from: SocketAddr, to: SocketAddr) -> Link {
        self.overrides
            .get(&(from, to))
            .copied()
            .unwrap_or(self.link)
    }

    // ---- commands -----------------------------------------------------

    /// `label` sends `text` to `to`; panics if the client refuses outright.
    pub fn send(&mut self, label: &str, to: &str, text: &str) -> CommandId {
        self.try_send(label, to, text)
            .unwrap_or_else(|e| panic!("seed {}: {label} send to {to}: {e}", self.seed))
    }

    /// `label` sends `text` to `to`.
    pub fn try_send(
        &mut self,
        label: &str,
        to: &str,
        text: &str,
    ) -> Result<CommandId, udpchat::client::SendError> {
        let now = self.now;
        let r = self.client_mut(label).send(now, to, text);
        self.flush();
        r
    }

    /// `label` sends each of `texts` to `to` in one batch (as a pasted
    /// block is): the datagrams are polled once, after the last.
    pub fn send_batch(&mut self, label: &str, to: &str, texts: &[String]) -> Vec<CommandId> {
        let now = self.now;
        let seed = self.seed;
        let client = self.client_mut(label);
        let ids = texts
            .iter()
            .map(|text| {
                client
                    .send(now, to, text)
                    .unwrap_or_else(|e| panic!("seed {seed}: {label} send to {to}: {e}"))
            })
            .collect();
        self.flush();
        ids
    }

    /// `label` asks for the user list.
    pub fn list(&mut self, label: &str) -> CommandId {
        let now = self.now;
        let id = self.client_mut(label).list(now);
        self.flush();
        id
    }

    /// `label` signs out.
    pub fn sign_out(&mut self, label: &str) {
        let now = self.now;
        self.client_mut(label).sign_out(now);
        self.flush();
    }

    /// Puts `payload` on the wire from `from` (any address, claimed or real)
    /// to `to`. Injected datagrams are never lost or duplicated; they take
    /// the link's base delay.
    pub fn inject(&mut self, from: SocketAddr, to: SocketAddr, payload: impl Into<Bytes>) {
        let payload = payload.into();
        let delay = self.link_for(from, to).delay;
        self.count_sent(from, to, &payload, true);
        self.push(from, to, payload, self.now + delay, true);
    }

    /// Encodes `packet` and injects it.
    pub fn inject_packet(&mut self, from: SocketAddr, to: SocketAddr, packet: &Packet<'_>) {
        let bytes = packet.to_bytes().expect("injected packet encodes");
        self.inject(from, to, bytes);
    }

    /// Signs `name` in at `addr` by feeding the server directly (Hello,
    /// Retry, then a Noise handshake with a key of its own) at the current
    /// time, bypassing the network. Returns the key it signed in with, or
    /// panics if refused. Replies to `addr` are consumed; anything else the
    /// server emits is routed. The session is not kept: nothing more is sent
    /// under it.
    pub fn sign_in_directly(&mut self, addr: SocketAddr, name: &str) -> udpchat::PublicKey {
        let now = self.now;
        let hello = Packet::Hello { request: 1 }.to_bytes().expect("encodes");
        let reply = self.server_exchange(now, addr, &hello);
        let (cookie, server_key) = match Packet::decode(&reply) {
            Ok(Packet::Retry { cookie, key, .. }) => (
                cookie.to_vec(),
                udpchat::PublicKey(key.try_into().expect("a 32-byte key")),
            ),
            other => panic!("sign-in of {name}: expected Retry, got {other:?}"),
        };
        let secret = self.identity_of(name);
        let seed = bytes32(fnv(name.as_bytes()));
        let (initiator, init) = raw::server_init(secret, &server_key, name, &cookie, 1, seed);
        let reply = self.server_exchange(now, addr, &init);
        let Ok(Packet::ServerResp { handshake, .. }) = Packet::decode(&reply) else {
            panic!("sign-in of {name}: expected ServerResp");
        };
        let (answer, _) = initiator.finish(handshake).expect("handshake finishes");
        match Packet::decode(&answer) {
            Ok(Packet::SignInAccepted { .. }) => {
                udpchat::StaticKeypair::from_secret(secret).public()
            }
            other => panic!("sign-in of {name}: expected SignInAccepted, got {other:?}"),
        }
    }

    /// Feeds `datagram` from `from` straight to the server and returns its
    /// (last) reply to `from`; routes anything else it emits.
    fn server_exchange(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) -> Bytes {
        let server = self.server_mut();
        server.handle_datagram(now, from, datagram);
        let mut reply = None;
        let mut others = Vec::new();
        while let Some(t) = server.poll_transmit() {
            if t.destination == from {
                reply = Some(t.payload);
            } else {
                others.push(t);
            }
        }
        for t in others {
            self.route(SERVER_ADDR, t.destination, t.payload);
        }
        self.drain_events();
        reply.unwrap_or_else(|| panic!("the server did not answer {from} directly"))
    }

    // ---- stepping -----------------------------------------------------

    /// The earliest of the next arrival and every node's timer.
    fn next_time(&self) -> Option<Instant> {
        let arrival = self.queue.peek().map(|d| d.0.arrival);
        let timer = self.nodes.values().filter_map(Node::poll_timeout).min();
        match (arrival, timer) {
            (Some(a), Some(t)) => Some(a.min(t)),
            (a, t) => a.or(t),
        }
    }

    /// One step: advance the clock to the next arrival or timer, deliver the
    /// datagram (arrivals first at equal times) or fire every due timer,
    /// then route what the nodes emit and log their events. `false` when
    /// nothing is left to happen.
    pub fn step(&mut self) -> bool {
        let Some(t) = self.next_time() else {
            return false;
        };
        self.now = self.now.max(t);
        self.steps += 1;
        let now = self.now;
        if self.queue.peek().is_some_and(|d| d.0.arrival <= now) {
            let Some(Reverse(d)) = self.queue.pop() else {
                unreachable!()
            };
            self.deliver(d);
        } else {
            let due: Vec<SocketAddr> = self
                .nodes
                .iter()
                .filter(|(_, n)| n.poll_timeout().is_some_and(|t| t <= now))
                .map(|(a, _)| *a)
                .collect();
            for addr in due {
                let Some(node) = self.nodes.get_mut(&addr) else {
                    continue;
                };
                match node {
                    Node::Server(s) => s.handle_timeout(now),
                    Node::Client { state, .. } => state.handle_timeout(now),
                    Node::Raw { .. } => {}
                }
                if let Some(next) = node.poll_timeout() {
                    assert!(
                        next > now,
                        "seed {}: {} at {addr}: poll_timeout() is {:?} after handle_timeout(now = \
                         {:?}); the contract says strictly later (replay with SEED={})",
                        self.seed,
                        node.label(),
                        next - self.start,
                        now - self.start,
                        self.seed
                    );
                }
            }
        }
        self.flush();
        true
    }

    fn deliver(&mut self, d: InFlight) {
        let now = self.now;
        let len = d.payload.len();
        let ty = d.payload.first().copied().unwrap_or(0);
        let stats = self.pairs.entry((d.from, d.to)).or_default();
        stats.delivered.add(len);
        stats.delivered_by_type.entry(ty).or_default().add(len);
        let to = match self.nats.iter_mut().find(|n| n.public_ip == d.to.ip()) {
            Some(nat) => match nat.inbound(now, d.from, d.to) {
                Some(internal) => internal,
                None => return,
            },
            None => d.to,
        };
        if self.nodes.contains_key(&to) {
            let ends = self.ends.entry((d.from, to)).or_default();
            ends.delivered.add(len);
            ends.delivered_by_type.entry(ty).or_default().add(len);
        }
        match self.nodes.get_mut(&to) {
            Some(Node::Server(s)) => s.handle_datagram(now, d.from, &d.payload),
            Some(Node::Client { state, .. }) => state.handle_datagram(now, d.from, &d.payload),
            Some(Node::Raw { inbox, .. }) => inbox.push((now, d.from, d.payload)),
            None => {
                if let Some(s) = self.pairs.get_mut(&(d.from, d.to)) {
                    s.undeliverable += 1;
                }
            }
        }
    }

    /// Routes everything every node wants to send and logs every event.
    pub fn flush(&mut self) {
        let mut out = Vec::new();
        for (addr, node) in &mut self.nodes {
            match node {
                Node::Server(s) => {
                    while let Some(t) = s.poll_transmit() {
                        out.push((*addr, t.destination, t.payload));
                    }
                }
                Node::Client { state, .. } => {
                    while let Some(t) = state.poll_transmit() {
                        out.push((*addr, t.destination, t.payload));
                    }
                    for f in state.flows() {
                        let Some(&to) = self.labels.get(&f.to) else {
                            continue;
                        };
                        let flow = self.flows.entry((*addr, to)).or_default();
                        flow.unacked = f.unacked;
                        flow.max_unacked = flow.max_unacked.max(f.unacked);
                        flow.fragments = f.sent;
                        flow.max_span = flow.max_span.max(f.span);
                    }
                }
                Node::Raw { .. } => {}
            }
        }
        for (from, to, payload) in out {
            self.route(from, to, payload);
        }
        self.drain_events();
    }

    fn drain_events(&mut self) {
        let now = self.now;
        for node in self.nodes.values_mut() {
            match node {
                Node::Server(s) => {
                    while let Some(event) = s.poll_event() {
                        self.server_log.push(Timed { at: now, event });
                    }
                }
                Node::Client { label, state } => {
                    let log = self.client_logs.entry(label.clone()).or_default();
                    while let Some(event) = state.poll_event() {
                        log.push(Timed { at: now, event });
                    }
                }
                Node::Raw { .. } => {}
            }
        }
    }

    /// A datagram a node emitted: check it, count it, and put it through
    /// the link.
    fn route(&mut self, from: SocketAddr, to: SocketAddr, payload: Bytes) {
        let label = self.nodes.get(&from).map_or("?", Node::label).to_owned();
        assert!(
            payload.len() <= MAX_DATAGRAM,
            "seed {}: {label} at {from} emitted a {}-byte datagram (max {MAX_DATAGRAM})",
            self.seed,
            payload.len()
        );
        let packet = Packet::decode(&payload).unwrap_or_else(|e| {
            panic!(
                "seed {}: {label} at {from} emitted a datagram that does not decode: {e}",
                self.seed
            )
        });
        let ends = self.ends.entry((from, to)).or_default();
        ends.sent.add(payload.len());
        ends.sent_by_type
            .entry(payload.first().copied().unwrap_or(0))
            .or_default()
            .add(payload.len());
        // Through the sender's NAT, if it has one: the link and every
        // counter below see the translated addresses, as the wire would.
        let Some((from, to)) = self.translate_out(from, to) else {
            return;
        };
        let _ = packet;
        self.count_sent(from, to, &payload, false);
        let link = self.link_for(from, to);
        let link_seed = self.seed ^ fnv(&[addr_key(from), addr_key(to)].concat());
        let rng = self
            .link_rngs
            .entry((from, to))
            .or_insert_with(|| Rng::new(link_seed));
        let lost = rng.chance(link.loss);
        let copies: u8 = if !lost && rng.chance(link.duplicate) {
            2
        } else {
            1
        };
        let arrivals = [
            self.now + link.delay + rng.duration(link.jitter),
            self.now + link.delay + rng.duration(link.jitter),
        ];
        if lost {
            self.pairs.entry((from, to)).or_default().lost += 1;
            self.set_copies(0);
            return;
        }
        self.set_copies(copies);
        if copies == 2 {
            self.pairs.entry((from, to)).or_default().duplicated += 1;
            self.push(from, to, payload.clone(), arrivals[1], false);
        }
        self.push(from, to, payload, arrivals[0], false);
    }

    /// Records the link's verdict on the datagram just captured.
    fn set_copies(&mut self, copies: u8) {
        if let Some(last) = self.capture.as_mut().and_then(|c| c.last_mut()) {
            last.copies = copies;
        }
    }

    fn count_sent(&mut self, from: SocketAddr, to: SocketAddr, payload: &Bytes, injected: bool) {
        let len = payload.len();
        let ty = payload.first().copied().unwrap_or(0);
        let stats = self.pairs.entry((from, to)).or_default();
        stats.sent.add(len);
        stats.sent_by_type.entry(ty).or_default().add(len);
        if injected {
            stats.injected.add(len);
        }
        if let Some(c) = &mut self.capture {
            c.push(Captured {
                at: self.now,
                from,
                to,
                payload: payload.clone(),
                injected,
                copies: 1,
            });
        }
    }

    fn push(
        &mut self,
        from: SocketAddr,
        to: SocketAddr,
        payload: Bytes,
        at: Instant,
        injected: bool,
    ) {
        self.next_seq += 1;
        self.queue.push(Reverse(InFlight {
            arrival: at,
            seq: self.next_seq,
            from,
            to,
            payload,
            injected,
        }));
    }

    /// Steps until `cond` holds; returns the virtual time it took. Panics
    /// with the seed if `deadline` (virtual, from now) passes first, if
    /// nothing is left to happen, or after [`Sim::max_steps`] steps.
    pub fn run_until(
        &mut self,
        what: &str,
        deadline: Duration,
        mut cond: impl FnMut(&Sim) -> bool,
    ) -> Duration {
        let began = self.now;
        let until = began + deadline;
        let first_step = self.steps;
        let mut instant_steps = 0u64;
        let mut last = self.now;
        loop {
            if cond(self) {
                return self.now - began;
            }
            if self.now > until {
                self.fail(&format!(
                    "`{what}` did not happen within {deadline:?} of virtual time"
                ));
            }
            if self.steps - first_step >= self.max_steps {
                self.fail(&format!(
                    "`{what}`: livelock, {} steps without reaching it",
                    self.max_steps
                ));
            }
            if !self.step() {
                self.fail(&format!(
                    "`{what}` did not happen and nothing is left to happen"
                ));
            }
            if self.now == last {
                instant_steps += 1;
                if instant_steps > MAX_STEPS_AT_ONE_INSTANT {
                    self.fail(&format!(
                        "`{what}`: livelock, {instant_steps} steps without the clock moving"
                    ));
                }
            } else {
                last = self.now;
                instant_steps = 0;
            }
        }
    }

    /// Lets `d` of virtual time pass, handling everything that happens.
    pub fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        let first_step = self.steps;
        loop {
            match self.next_time() {
                Some(t) if t <= until => {
                    if self.steps - first_step >= self.max_steps {
                        self.fail(&format!(
                            "run_for({d:?}): livelock, {} steps",
                            self.max_steps
                        ));
                    }
                    self.step();
                }
                _ => break,
            }
        }
        self.now = self.now.max(until);
    }

    /// Panics with `why`, the seed and a summary of the state.
    pub fn fail(&self, why: &str) -> ! {
        panic!(
            "simulation seed {seed}: {why}\n  at virtual t={t:?}, step {steps}, link {link:?}\n{state}  \
             replay with SEED={seed}",
            seed = self.seed,
            t = self.elapsed(),
            steps = self.steps,
            link = self.link,
            state = self.describe(),
        )
    }

    /// A few lines on each node and its last events.
    pub fn describe(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "  {} datagrams in flight", self.queue.len());
        for (label, addr) in &self.labels {
            match self.nodes.get(addr) {
                None => {
                    let _ = writeln!(s, "  {label} at {addr}: down");
                }
                Some(Node::Server(srv)) => {
                    let _ = writeln!(
                        s,
                        "  server at {addr}: {} users, {:?}",
                        srv.user_count(),
                        srv.stats()
                    );
                }
                Some(Node::Client { state, .. }) => {
                    let _ = writeln!(
                        s,
                        "  {label} at {addr}: signed in {}, closed {}, {:?}",
                        state.is_signed_in(),
                        state.is_closed(),
                        state.stats()
                    );
                }
                Some(Node::Raw { inbox, .. }) => {
                    let _ = writeln!(s, "  {label} at {addr}: raw, {} received", inbox.len());
                }
            }
            if let Some(log) = self.client_logs.get(label) {
                for e in log.events.iter().rev().take(4).rev() {
                    let mut text = format!("{:?}", e.event);
                    if text.len() > 160 {
                        let mut cut = 160;
                        while !text.is_char_boundary(cut) {
                            cut -= 1;
                        }
                        text.truncate(cut);
                        text.push('…');
                    }
                    let _ = writeln!(s, "      t={:?} {text}", e.at - self.start);
                }
            }
        }
        s
    }

    // ---- event logs ---------------------------------------------------

    /// Everything client `label` has reported, in order.
    pub fn events(&self, label: &str) -> &[Timed<ClientEvent>] {
        self.client_logs
            .get(label)
            .map_or(&[], |l| l.events.as_slice())
    }

    /// Everything the server (every incarnation) has reported, in order.
    pub fn server_events(&self) -> &[Timed<ServerEvent>] {
        &self.server_log
    }

    /// The first event of `label` that matches.
    pub fn find(
        &self,
        label: &str,
        pred: impl Fn(&ClientEvent) -> bool,
    ) -> Option<&Timed<ClientEvent>> {
        self.events(label).iter().find(|e| pred(&e.event))
    }

    /// How many events of `label` match.
    pub fn count(&self, label: &str, pred: impl Fn(&ClientEvent) -> bool) -> usize {
        self.events(label).iter().filter(|e| pred(&e.event)).count()
    }

    /// Whether `label` has reported `SignedIn`.
    pub fn has_signed_in(&self, label: &str) -> bool {
        self.client_logs.get(label).is_some_and(|l| l.signed_in)
    }

    /// Whether `label` has reported `SignInFailed`.
    pub fn sign_in_failed(&self, label: &str) -> bool {
        self.client_logs
            .get(label)
            .is_some_and(|l| l.sign_in_failed)
    }

    /// The messages `label` has shown: (from, address, text), in order.
    pub fn received(&self, label: &str) -> Vec<(String, SocketAddr, String)> {
        self.events(label)
            .iter()
            .filter_map(|e| match &e.event {
                ClientEvent::MessageReceived {
                    from,
                    address,
                    text,
                    ..
                } => Some((from.clone(), *address, text.clone())),
                _ => None,
            })
            .collect()
    }

    /// When `label` showed the message `text` (the first time), and from
    /// which address.
    pub fn shown_at(&self, label: &str, text: &str) -> Option<(Instant, SocketAddr)> {
        self.events(label).iter().find_map(|e| match &e.event {
            ClientEvent::MessageReceived {
                address, text: t, ..
            } if t == text => Some((e.at, *address)),
            _ => None,
        })
    }

    /// How many messages `label` has shown.
    pub fn received_count(&self, label: &str) -> usize {
        self.client_logs.get(label).map_or(0, |l| l.received)
    }

    /// The names of list `id`, once gathered.
    pub fn user_list(&self, label: &str, id: CommandId) -> Option<&[String]> {
        let log = self.client_logs.get(label)?;
        let index = (*log.lists.get(&id)?)?;
        match &log.events[index].event {
            ClientEvent::UserList { names, .. } => Some(names),
            _ => None,
        }
    }

    /// Whether list `id` has an answer (a list, or a failure).
    pub fn list_settled(&self, label: &str, id: CommandId) -> bool {
        self.client_logs
            .get(label)
            .is_some_and(|l| l.lists.contains_key(&id))
    }

    /// Whether send `id` was reported delivered (first outcome).
    pub fn delivered(&self, label: &str, id: CommandId) -> bool {
        self.client_logs
            .get(label)
            .and_then(|l| l.outcomes.get(&id))
            .is_some_and(Option::is_none)
    }

    /// How send `id` failed, if it did (first outcome).
    pub fn delivery_failure(&self, label: &str, id: CommandId) -> Option<DeliveryFailure> {
        self.client_logs
            .get(label)
            .and_then(|l| l.outcomes.get(&id))
            .copied()
            .flatten()
    }

    /// Whether send `id` has an outcome (delivered or failed).
    pub fn settled(&self, label: &str, id: CommandId) -> bool {
        self.client_logs
            .get(label)
            .is_some_and(|l| l.outcomes.contains_key(&id))
    }

    /// How many of `label`'s sends have an outcome.
    pub fn settled_count(&self, label: &str) -> usize {
        self.client_logs.get(label).map_or(0, |l| l.outcomes.len())
    }

    // ---- waiting helpers -------------------------------------------------

    /// Runs until every one of `labels` has reported `SignedIn`; panics if
    /// one reports `SignInFailed` or the deadline passes.
    pub fn wait_signed_in(&mut self, labels: &[&str], deadline: Duration) -> Duration {
        let what = format!("{labels:?} signed in");
        let took = self.run_until(&what, deadline, |s| {
            labels
                .iter()
                .all(|l| s.has_signed_in(l) || s.sign_in_failed(l))
        });
        for l in labels {
            if !self.has_signed_in(l) {
                self.fail(&format!("{l} did not sign in: {:?}", self.events(l)));
            }
        }
        took
    }

    /// Runs until list `id` of `label` is answered; returns the names or
    /// fails if it failed.
    pub fn wait_list(&mut self, label: &str, id: CommandId, deadline: Duration) -> Vec<String> {
        self.run_until(&format!("{label}'s list {id} answered"), deadline, |s| {
            s.list_settled(label, id)
        });
        match self.user_list(label, id) {
            Some(names) => names.to_vec(),
            None => self.fail(&format!("{label}'s list {id} failed")),
        }
    }

    /// Runs until send `id` of `label` is settled; fails unless delivered.
    pub fn wait_delivered(&mut self, label: &str, id: CommandId, deadline: Duration) -> Duration {
        let took = self.run_until(&format!("{label}'s send {id} settled"), deadline, |s| {
            s.settled(label, id)
        });
        if let Some(reason) = self.delivery_failure(label, id) {
            self.fail(&format!("{label}'s send {id} failed: {reason}"));
        }
        took
    }

    /// `from` sends `text` (unique in the run) to `to`; runs until `to`
    /// shows it and `from` hears it delivered. Returns the send's id and
    /// the virtual time from the send to the showing; fails if it is not
    /// shown and delivered within `deadline`.
    pub fn exchange(
        &mut self,
        from: &str,
        to: &str,
        text: &str,
        deadline: Duration,
    ) -> (CommandId, Duration) {
        let sent = self.now;
        let id = self.send(from, to, text);
        self.run_until(
            &format!("{to} shows {text:?} from {from}, {from} hears it delivered"),
            deadline,
            |s| {
                s.settled(from, id)
                    && (s.shown_at(to, text).is_some() || s.delivery_failure(from, id).is_some())
            },
        );
        if let Some(reason) = self.delivery_failure(from, id) {
            self.fail(&format!("{from}'s {text:?} to {to} failed: {reason}"));
        }
        let (shown, _) = self.shown_at(to, text).expect("shown");
        (id, shown - sent)
    }

    // ---- counters -----------------------------------------------------

    /// What went from `from` to `to`.
    pub fn pair(&self, from: SocketAddr, to: SocketAddr) -> PairStats {
        self.pairs.get(&(from, to)).cloned().unwrap_or_default()
    }

    /// Every (source, destination) pair that carried anything.
    pub fn pairs(&self) -> impl Iterator<Item = (&(SocketAddr, SocketAddr), &PairStats)> {
        self.pairs.iter()
    }

    /// What went from `from` to `to` as the nodes see it (see
    /// [`NodeTraffic`]): `sent` is what node `from` emitted addressed to
    /// `to` (before its NAT), `delivered` what node `to` was handed
    /// claiming `from` (after its NAT).
    pub fn end_pair(&self, from: SocketAddr, to: SocketAddr) -> PairStats {
        self.ends.get(&(from, to)).cloned().unwrap_or_default()
    }

    /// Everything the node labelled `label` has emitted and been handed so
    /// far; take two snapshots and [`NodeTraffic::since`] for a time window.
    pub fn traffic(&self, label: &str) -> NodeTraffic {
        let me = self.addr(label);
        let mut t = NodeTraffic::default();
        for (&(from, to), p) in &self.ends {
            if from == me {
                let side = if to == SERVER_ADDR {
                    &mut t.to_server
                } else {
                    &mut t.to_peers
                };
                side.datagrams += p.sent.datagrams;
                side.bytes += p.sent.bytes;
                for (ty, n) in &p.sent_by_type {
                    let e = t.out_by_type.entry(*ty).or_default();
                    e.datagrams += n.datagrams;
                    e.bytes += n.bytes;
                }
            }
            if to == me {
                let side = if from == SERVER_ADDR {
                    &mut t.from_server
                } else {
                    &mut t.from_peers
                };
                side.datagrams += p.delivered.datagrams;
                side.bytes += p.delivered.bytes;
                for (ty, n) in &p.delivered_by_type {
                    let e = t.in_by_type.entry(*ty).or_default();
                    e.datagrams += n.datagrams;
                    e.bytes += n.bytes;
                }
            }
        }
        t
    }

    /// Pairs that delivered at least one datagram of type `ty`, with the tally.
    pub fn delivered_of_type(&self, ty: PacketType) -> Vec<(SocketAddr, SocketAddr, Tally)> {
        self.pairs
            .iter()
            .filter_map(|(&(f, t), s)| {
                let tally = s.delivered_of(ty);
                (tally.datagrams > 0).then_some((f, t, tally))
            })
            .collect()
    }

    /// Pairs that sent at least one datagram of type `ty`, with the tally.
    pub fn sent_of_type(&self, ty: PacketType) -> Vec<(SocketAddr, SocketAddr, Tally)> {
        self.pairs
            .iter()
            .filter_map(|(&(f, t), s)| {
                let tally = s.sent_of(ty);
                (tally.datagrams > 0).then_some((f, t, tally))
            })
            .collect()
    }

    /// The message-fragment flow from `from` to `to`.
    pub fn flow(&self, from: SocketAddr, to: SocketAddr) -> Flow {
        self.flows.get(&(from, to)).cloned().unwrap_or_default()
    }

    /// Datagrams in flight (queued, not yet arrived) from `from` to `to`
    /// whose type is `ty`.
    pub fn in_flight(&self, from: SocketAddr, to: SocketAddr, ty: PacketType) -> usize {
        self.queue
            .iter()
            .filter(|d| {
                d.0.from == from && d.0.to == to && d.0.payload.first() == Some(&(ty as u8))
            })
            .count()
    }

    /// Starts recording every datagram put on the wire (emitted or injected).
    pub fn capture(&mut self) {
        self.capture.get_or_insert_with(Vec::new);
    }

    /// What has been recorded since [`Sim::capture`].
    pub fn captured(&self) -> &[Captured] {
        self.capture.as_deref().unwrap_or(&[])
    }

    /// A digest of everything observable so far (every pair's counters,
    /// every event and its time), to compare two runs of one seed.
    pub fn fingerprint(&self) -> u64 {
        let mut s = String::new();
        for ((f, t), p) in &self.pairs {
            let _ = write!(
                s,
                "{f}>{t}:{:?}/{:?}/{}/{}/{:?};",
                p.sent, p.delivered, p.lost, p.duplicated, p.delivered_by_type
            );
        }
        for (label, log) in &self.client_logs {
            for e in &log.events {
                let _ = write!(s, "{label}@{:?}:{:?};", e.at - self.start, e.event);
            }
        }
        for e in &self.server_log {
            let _ = write!(s, "server@{:?}:{:?};", e.at - self.start, e.event);
        }
        let _ = write!(s, "t={:?};steps={}", self.elapsed(), self.steps);
        fnv(s.as_bytes())
    }
}

// ---- many seeds ---------------------------------------------------------

/// Runs `scenario` for seeds `0..n` (`0..$SEEDS` when set), or only for
/// `$SEED` when set. Each
/// failure prints `failing seed: N (replay with SEED=N)`; by default the
/// first failure is re-raised at once, with `ALL_SEEDS=1` every seed runs
/// first and the list of failing seeds is printed before the first failure is
/// re-raised.
pub fn for_seeds(n: u64, mut scenario: impl FnMut(u64)) {
    let seeds: Vec<u64> = match std::env::var("SEED") {
        Ok(s) => vec![
            s.trim()
                .parse()
                .unwrap_or_else(|_| panic!("SEED={s:?} is not a number")),
        ],
        // `SEEDS=N` runs more (or fewer) seeds than the test's own count:
        // a soak run.
        Err(_) => {
            let n = std::env::var("SEEDS")
                .ok()
                .and_then(|s| s.trim().parse().ok())
                .unwrap_or(n);
            (0..n).collect()
        }
    };
    let keep_going = std::env::var_os("ALL_SEEDS").is_some();
    let mut failed = Vec::new();
    let mut first = None;
    for seed in seeds {
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| scenario(seed))) {
            eprintln!("failing seed: {seed} (replay with SEED={seed})");
            if !keep_going {
                resume_unwind(e);
            }
            failed.push(seed);
            first.get_or_insert(e);
        }
    }
    if let Some(e) = first {
        eprintln!("failing seeds: {failed:?} of {n}");
        resume_unwind(e);
    }
}
