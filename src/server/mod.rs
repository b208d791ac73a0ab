//! The directory server: who is signed in, with which key, and where.
//!
//! [`ServerState`] answers sign-in, list, lookup, keep-alive and sign-out
//! requests. It never sees message text. What it guarantees on a hostile
//! network:
//!
//! * **No amplification.** A source address is *validated* once it echoes a
//!   cookie from a [`Packet::Retry`] (a keyed hash of the address and the time,
//!   so the server keeps no state for it). Before that the server answers only
//!   a [`Packet::Hello`], padded to [`crate::codec::HELLO_LEN`] bytes, with a Retry less than
//!   three times its size; a stray Sealed packet gets a 6-byte error. A forged
//!   source address earns an attacker at most 3× — the QUIC rule.
//! * **Sessions.** A validated client makes a Noise IK handshake to the
//!   server's static key ([`ServerState::public_key`]); its sign-in travels
//!   in message 1, the answer in message 2. Everything after is sealed under
//!   the session's keys and found by the session index in its header, never
//!   by source address: an observer reads nothing, a changed or replayed
//!   datagram opens to nothing, and a client may move. A packet that opens
//!   from another address is answered there (within the 3x limit), and the
//!   address on record moves once the new one answers a challenge sealed to
//!   it (a probe), so replaying a captured packet from elsewhere redirects
//!   nothing. There is no token to steal.
//! * **Names belong to keys.** A live name is bound to the key that signed
//!   in with it. Another key is refused (`NameInUse`) for as long as the
//!   holder's session lives ([`ServerConfig::session_timeout`] after its last
//!   authenticated packet), whatever happens to the holder's traffic: no
//!   probe decides it, so nothing an attacker does to the holder's packets
//!   hands the name over. The same key is a second client of the same user:
//!   refused too while the holder answers a probe (sent inside its session),
//!   and given the name at once when the holder does not answer (a crashed
//!   client starting again) or names the session it replaces. A name that
//!   looks like a signed-in one is the same name ([`name::same`]).
//! * **Restarts.** [`ServerState::bindings`] gives the name → key bindings as
//!   bytes, [`ServerState::restore`] takes them after a restart: for
//!   [`ServerConfig::restore_grace`] each name is reserved for its last key,
//!   so the first to sign in after a restart cannot take someone's name.
//! * **Bounded state.** Sessions are capped ([`ServerConfig::max_users`]);
//!   per-source rate limiting keeps a table of bounded size and applies to
//!   everything but sealed packets (which cost one AEAD each and are counted
//!   against their session, so a flood from a holder's address cannot starve
//!   it); cookies need no state at all.
//!
//! Time: a session not heard from for [`ServerConfig::session_timeout`] is
//! forgotten within a [`ServerConfig::sweep_interval`] after that. The
//! deadlines sit in a timing wheel, so `handle_timeout` costs what is due, not
//! the number of users; `poll_timeout` is the earliest deadline or probe step.
//!
//! The parts, each with its own tests: `directory` (who is signed in, by
//! name and by session index), `expiry` (the timing wheel), `cookie`
//! (address validation), `rate` (per-source limits), `probe` (holder probes),
//! `bindings` (names reserved after a restart), and [`crate::session`] (one
//! session's sealing). This module turns their outcomes into replies and
//! events.

mod bindings;

pub use bindings::BindingsError;
mod cookie;
mod directory;
mod expiry;
mod introductions;
mod probe;
mod rate;
mod session;

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::Transmit;
use crate::codec::{
    AddrList, ErrorCode, MAX_DATAGRAM, MAX_SEALED_PLAINTEXT, NameList, Packet, PacketType,
    RefuseReason, SEALED_HEADER_LEN, SEALED_TAG_LEN,
};
use blake2::Blake2sMac256;
use blake2::digest::{KeyInit, Mac};

use crate::crypto::{KEY_LEN, PublicKey, Responder, SeededRng, StaticKeypair};
use crate::name;
use crate::secret::Key;

use bindings::Reservations;
use cookie::Cookies;
use directory::{Directory, NewUser, UserId};
use expiry::ExpiryWheel;
use introductions::RecentIntroductions;

/// Recent (asker, target) introductions remembered at most.
const MAX_RECENT_INTRODUCTIONS: usize = 16_384;
use probe::{Conflict, ProbeStep, Probes};
use rate::RateLimiter;
use session::ServerSession;

/// Bytes in a cookie.
pub const COOKIE_LEN: usize = 16;
/// A reply to an unvalidated address is at most this many times the size of
/// the datagram it answers.
pub const AMPLIFICATION_FACTOR: usize = 3;
/// The Noise prologue of client-to-server handshakes (after the crate's
/// own, [`crate::crypto::noise::PROLOGUE`]): a peer handshake can never be
/// replayed as a server one, or the other way round.
pub const SERVER_PROLOGUE: &[u8] = b" server";

/// How the server behaves. [`ServerConfig::new`] gives the defaults
/// (and `ServerConfig::from_os_entropy`, in [`crate::run`], fresh randomness
/// from the operating system). `Debug` never shows a secret.
#[derive(Clone)]
#[non_exhaustive]
pub struct ServerConfig {
    /// The server's static X25519 secret: its identity, which clients pin.
    /// Keep it from one run to the next (the binary keeps it in a file).
    pub identity: [u8; KEY_LEN],
    /// Key for cookies and the directory's hashes. Fresh each run.
    pub secret: [u8; 16],
    /// Randomness for the handshakes' ephemeral keys. Fresh each run: the
    /// same seed twice would reuse ephemeral keys.
    pub seed: [u8; 32],
    /// The most users signed in at once; further sign-ins are refused with
    /// [`RefuseReason::ServerFull`]. At most 16,777,216 (2^24, the session
    /// index's slot bits).
    pub max_users: usize,
    /// A session not heard from for this long is forgotten, and its name
    /// free for another key.
    pub session_timeout: Duration,
    /// How often expired sessions are swept out.
    pub sweep_interval: Duration,
    /// How long a name's holder has to answer a probe (from a sign-in with
    /// its own key) before losing the name.
    pub probe_timeout: Duration,
    /// How often a probe is resent while unanswered.
    pub probe_interval: Duration,
    /// The most probes running at once; conflicting sign-ins beyond that are
    /// refused with `NameInUse` without probing.
    pub max_probes: usize,
    /// Datagrams a second each source address may send, sustained (sealed
    /// packets of a live session are not counted).
    pub rate_per_second: f64,
    /// Datagrams a source address may send in a burst.
    pub rate_burst: f64,
    /// The most source addresses the rate limiter tracks; beyond that, new
    /// sources share one bucket.
    pub max_rate_sources: usize,
    /// How long a cookie from a Retry stays good (it is good for between one
    /// and two of these).
    pub cookie_lifetime: Duration,
    /// After [`ServerState::restore`], how long each name stays reserved
    /// for the key it was last bound to.
    pub restore_grace: Duration,
}

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("identity", &"..")
            .field("secret", &"..")
            .field("seed", &"..")
            .field("max_users", &self.max_users)
            .field("session_timeout", &self.session_timeout)
            .field("sweep_interval", &self.sweep_interval)
            .field("probe_timeout", &self.probe_timeout)
            .field("probe_interval", &self.probe_interval)
            .field("max_probes", &self.max_probes)
            .field("rate_per_second", &self.rate_per_second)
            .field("rate_burst", &self.rate_burst)
            .field("max_rate_sources", &self.max_rate_sources)
            .field("cookie_lifetime", &self.cookie_lifetime)
            .field("restore_grace", &self.restore_grace)
            .finish()
    }
}

impl ServerConfig {
    /// The defaults, with the static secret `identity` and 32 bytes of fresh
    /// randomness `entropy` (the cookie key and the handshake seed are drawn
    /// from it).
    pub fn new(identity: [u8; KEY_LEN], entropy: [u8; 32]) -> Self {
        let mut rng = SeededRng::new(entropy);
        let mut secret = [0u8; 16];
        rng.fill(&mut secret);
        ServerConfig {
            identity,
            secret,
            seed: rng.seed(),
            // About 199 bytes of heap a user with its session, name, key and
            // one IPv4 host candidate: a million users is some 199 MB
            // (examples/server_scale measures it).
            max_users: 1_000_000,
            session_timeout: Duration::from_secs(15),
            sweep_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_secs(1),
            probe_interval: Duration::from_millis(250),
            max_probes: 1024,
            rate_per_second: 200.0,
            rate_burst: 400.0,
            max_rate_sources: 16_384,
            cookie_lifetime: Duration::from_secs(30),
            restore_grace: Duration::from_secs(120),
        }
    }
}

/// Something an operator may want to see.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum ServerEvent {
    /// `name` signed in from `address`.
    SignedIn {
        /// The name, as the user spelled it.
        name: String,
        /// Where from.
        address: SocketAddr,
    },
    /// `name` at `address` is no longer signed in.
    SignedOut {
        /// The name.
        name: String,
        /// Where it was last heard from.
        address: SocketAddr,
        /// Why it left.
        reason: SignOutReason,
    },
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SignOutReason {
    /// The client signed out.
    Requested,
    /// Nothing heard for [`ServerConfig::session_timeout`].
    TimedOut,
    /// A sign-in with the holder's own key probed it, and it did not answer.
    Unresponsive,
    /// A new session of the same key replaced it.
    Replaced,
}

/// Counters of what the server did with what it got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ServerStats {
    /// Datagrams handed to `handle_datagram`.
    pub received: u64,
    /// Dropped by the per-source rate limit.
    pub rate_limited: u64,
    /// Did not decode.
    pub malformed: u64,
    /// Decoded, but not a packet a server takes (a reply, a chat message, a
    /// sealed packet in the clear).
    pub unexpected: u64,
    /// Sealed packets naming a session index the server does not hold.
    pub unknown_session: u64,
    /// Sealed packets that did not open (forged, altered, replayed) and
    /// handshakes that did not verify.
    pub forged: u64,
    /// Hellos answered with a Retry.
    pub retries: u64,
    /// Handshakes whose cookie was missing, stale or for another address.
    pub bad_cookie: u64,
    /// Handshakes completed (accepted or refused).
    pub handshakes: u64,
    /// Replies withheld because they would have exceeded the amplification limit.
    pub amplification_dropped: u64,
    /// Introductions sent (see [`Packet::Introduction`]).
    pub introductions: u64,
    /// Introductions not sent: the asker or the target had used up its
    /// budget.
    pub introductions_limited: u64,
    /// Introductions not sent: the same asker had been introduced to the
    /// same user a moment before (a retried lookup, or one asking too often).
    pub introductions_repeated: u64,
    /// Datagrams queued for sending.
    pub sent: u64,
}

/// The directory server's state machine. See the [module docs](self) and the
/// crate's sans-IO contract. `Debug` shows it in outline: no keys.
pub struct ServerState {
    config: ServerConfig,
    keypair: StaticKeypair,
    /// Key of the responder's ephemeral seeds (see [`ServerState::responder_seed`]).
    ephemeral_key: [u8; 32],
    start: Instant,
    cookies: Cookies,
    directory: Directory,
    reservations: Reservations,
    expiry: ExpiryWheel,
    probes: Probes,
    rate: RateLimiter,
    out: VecDeque<Transmit>,
    events: VecDeque<ServerEvent>,
    buf: BytesMut,
    /// Plaintexts: what a sealed packet opened to, what is about to be sealed.
    scratch: Vec<u8>,
    plain: BytesMut,
    /// Path challenges under way: the new address and the probe it must answer.
    paths: HashMap<UserId, (SocketAddr, u32)>,
    next_challenge: u64,
    /// While answering a sealed packet from an address not on record: that
    /// address, and the packet's size for the 3x limit.
    reply_to: Option<(SocketAddr, usize)>,
    /// The (asker, target) pairs introduced in the last seconds.
    recent_intros: RecentIntroductions,
    stats: ServerStats,
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState")
            .field("config", &self.config)
            .field("key", &self.keypair.public())
            .field("directory", &self.directory)
            .field("queued", &self.out.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl ServerState {
    /// An empty directory.
    pub fn new(config: ServerConfig, now: Instant) -> Self {
        let key = Key::new(config.secret);
        let cookies = Cookies::new(key.clone(), now, config.cookie_lifetime);
        let directory = Directory::new(key.mac(&[b"directory hash key"]));
        ServerState {
            keypair: StaticKeypair::from_secret(config.identity),
            ephemeral_key: config.seed,
            start: now,
            cookies,
            directory,
            reservations: Reservations::default(),
            expiry: ExpiryWheel::new(now, config.sweep_interval, config.session_timeout),
            probes: Probes::new(
                config.probe_interval,
                config.probe_timeout,
                config.max_probes,
            ),
            rate: RateLimiter::new(
                now,
                config.rate_per_second,
                config.rate_burst,
                config.max_rate_sources,
            ),
            out: VecDeque::new(),
            events: VecDeque::new(),
            buf: BytesMut::with_capacity(16 * MAX_DATAGRAM),
            scratch: Vec::with_capacity(MAX_DATAGRAM),
            plain: BytesMut::with_capacity(MAX_DATAGRAM),
            paths: HashMap::new(),
            next_challenge: 0,
            reply_to: None,
            recent_intros: RecentIntroductions::new(MAX_RECENT_INTRODUCTIONS),
            stats: ServerStats::default(),
            config,
        }
    }

    /// The server's static public key: what clients pin, and whose
    /// fingerprint the operator publishes.
    pub fn public_key(&self) -> PublicKey {
        self.keypair.public()
    }

    /// What the server has counted so far.
    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    /// How many users are signed in.
    pub fn user_count(&self) -> usize {
        self.directory.len()
    }

    /// Where `name` was last heard from and the key it is bound to, if anyone
    /// of that name is signed in.
    pub fn lookup(&self, name: &str) -> Option<(SocketAddr, PublicKey)> {
        let id = self.directory.by_name(name)?;
        self.directory
            .get(id)
            .map(|u| (u.addr(), PublicKey(*u.key())))
    }

    /// The name → key bindings of everyone signed in, as bytes to keep
    /// across a restart (see [`ServerState::restore`]).
    pub fn bindings(&self) -> Vec<u8> {
        let mut users = Vec::with_capacity(self.directory.len());
        self.directory.page(0, |u| {
            users.push((u.name(), u.key()));
            true
        });
        bindings::encode(users, &self.reservations)
    }

    /// Takes bindings saved by [`ServerState::bindings`] before a restart:
    /// for [`ServerConfig::restore_grace`] from `now`, each name is refused
    /// to every key but its own. Returns how many were restored; bad bytes
    /// give an error and restore nothing.
    pub fn restore(
        &mut self,
        now: Instant,
        bytes: &[u8],
    ) -> Result<usize, bindings::BindingsError> {
        let parsed = bindings::decode(bytes, self.config.max_users)?;
        let count = parsed.len();
        self.reservations = Reservations::new(parsed, now + self.config.restore_grace);
        Ok(count)
    }

    /// Takes one datagram from `from`. Bad input is counted and dropped.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.stats.received += 1;
        let is_sealed = datagram.first() == Some(&(PacketType::Sealed as u8));
        if !is_sealed && !self.rate.admit(now, from) {
            self.stats.rate_limited += 1;
            return;
        }
        let packet = match Packet::decode(datagram) {
            Ok(p) => p,
            Err(_) => {
                self.stats.malformed += 1;
                return;
            }
        };
        match packet {
            Packet::Sealed {
                receiver,
                counter,
                sealed,
            } => self.on_sealed(now, from, datagram, receiver, counter, sealed),
            Packet::Hello { request } => {
                self.stats.retries += 1;
                let cookie = self.cookies.mint(now, &from);
                let key = self.keypair.public().0;
                let retry = Packet::Retry {
                    request,
                    cookie: &cookie,
                    key: &key,
                };
                self.send(from, &retry, Some(datagram.len()));
            }
            Packet::ServerInit {
                cookie,
                sender,
                handshake,
            } => {
                if self.cookies.verify(now, &from, cookie) {
                    self.on_server_init(now, from, sender, handshake);
                } else {
                    self.stats.bad_cookie += 1;
                }
            }
            _ => self.stats.unexpected += 1,
        }
    }

    /// Forgets silent sessions and advances probes whose time has come. Costs
    /// what is due, not the number of users. Calling it early or twice is
    /// harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(slot) = self.expiry.pop_due(&mut self.directory, now) {
            let Some(user) = self
                .directory
                .occupant(slot)
                .and_then(|id| self.directory.get(id))
            else {
                continue; // Left since it was scheduled: out of the wheel.
            };
            let deadline = self.expires_at(user.last_heard());
            if deadline <= now {
                if let Some(id) = self.directory.occupant(slot) {
                    self.remove(id, SignOutReason::TimedOut);
                }
            } else {
                self.expiry.schedule(&mut self.directory, deadline, slot);
            }
        }
        for (holder, step) in self.probes.step(now) {
            match step {
                ProbeStep::Resend(request) => self.send_sealed(holder, &Packet::Probe { request }),
                ProbeStep::Unanswered => self.remove(holder, SignOutReason::Unresponsive),
                ProbeStep::Done => {}
            }
        }
        self.reservations.expire(now);
    }

    /// The next datagram to send, oldest first.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// When [`ServerState::handle_timeout`] should next be called: the
    /// earliest session deadline, probe step or end of the restore grace;
    /// `None` when there is nothing to wait for.
    pub fn poll_timeout(&self) -> Option<Instant> {
        [
            self.expiry.next_deadline(),
            self.probes.next_timeout(),
            self.reservations.until(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// `now` in whole seconds since the server started, rounded up.
    fn stamp(&self, now: Instant) -> u32 {
        let nanos = now.saturating_duration_since(self.start).as_nanos();
        u32::try_from(nanos.div_ceil(1_000_000_000)).unwrap_or(u32::MAX)
    }

    /// When a session last heard from at second `last_heard` runs out
    /// unless it is heard from again.
    fn expires_at(&self, last_heard: u32) -> Instant {
        self.start + Duration::from_secs(u64::from(last_heard)) + self.config.session_timeout
    }

    /// A sealed packet: found by index, opened, then served. Not rate-limited
    /// by address (see the module docs); an unknown index gets a small clear
    /// error, rate-limited, so a client whose session the server lost (a
    /// restart) signs in again at once.
    fn on_sealed(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        receiver: u32,
        counter: u64,
        sealed: &[u8],
    ) {
        let Some(id) = self.directory.by_wire(receiver) else {
            self.stats.unknown_session += 1;
            if self.rate.admit(now, from) {
                let code = ErrorCode::UnknownSession;
                let error = Packet::Error {
                    request: receiver,
                    code,
                };
                self.send(from, &error, Some(datagram.len()));
            } else {
                self.stats.rate_limited += 1;
            }
            return;
        };
        let stamp = self.stamp(now);
        let mut scratch = std::mem::take(&mut self.scratch);
        // `Some(newest)` once the packet opened; whether it came from the
        // address on record.
        let opened = match self.directory.get_mut(id) {
            Some(slot) => match slot.session.open(datagram, counter, sealed, &mut scratch) {
                Ok(_) => {
                    slot.last_heard = stamp;
                    Some(slot.session.is_newest(counter))
                }
                Err(_) => None,
            },
            None => None,
        };
        let known_path = self.directory.get(id).is_some_and(|u| u.addr() == from);
        let Some(newest) = opened else {
            self.stats.forged += 1;
            self.scratch = scratch;
            return;
        };
        // Any authenticated packet answers a probe. The newcomers waiting
        // learn the outcome when they send their handshake again.
        self.probes.answered(id);
        let inner = Packet::decode(&scratch);
        if let Ok(Packet::KeepAlive { request }) = inner
            && self.paths.get(&id) == Some(&(from, request))
        {
            // The new address answered its challenge: it is the client's.
            self.paths.remove(&id);
            self.directory.set_addr(id, from);
            self.scratch = scratch;
            return;
        }
        if !known_path {
            // From another address: the client moved (a NAT rebinding), or
            // someone replays a packet of its that never arrived. Answer
            // there within the 3x limit, and move the address on record
            // only once the new one answers a challenge sealed to it.
            self.reply_to = Some((from, datagram.len()));
            if newest {
                self.challenge(id, from);
            }
        }
        match inner {
            Ok(inner) => self.on_request(now, id, inner),
            Err(_) => self.stats.malformed += 1,
        }
        self.reply_to = None;
        self.scratch = scratch;
    }

    /// Sends a path challenge (a probe) to `id` at the new address `to`.
    fn challenge(&mut self, id: UserId, to: SocketAddr) {
        if self.paths.len() >= self.config.max_probes && !self.paths.contains_key(&id) {
            return;
        }
        // The challenge under way to that address, sent again: a new one
        // for every packet the client sends meanwhile would make each
        // answer stale before it arrives.
        if let Some(&(pending, request)) = self.paths.get(&id)
            && pending == to
        {
            self.send_sealed(id, &Packet::Probe { request });
            return;
        }
        // Unpredictable, so it cannot pass for one of the client's own
        // request ids by accident.
        self.next_challenge = self.next_challenge.wrapping_add(1);
        let [a, b, c, d, ..] = self.responder_seed(&self.next_challenge.to_be_bytes());
        let request = u32::from_be_bytes([a, b, c, d]);
        self.paths.insert(id, (to, request));
        self.send_sealed(id, &Packet::Probe { request });
    }

    /// A request that opened under `id`'s session.
    fn on_request(&mut self, now: Instant, id: UserId, request: Packet<'_>) {
        match request {
            Packet::ListRequest { request, cursor } => self.on_list(id, request, cursor),
            Packet::LookupRequest {
                request,
                name,
                introduce,
            } => self.on_lookup(now, id, request, name, introduce),
            Packet::KeepAlive { request } => {
                self.send_sealed(id, &Packet::KeepAliveAck { request });
            }
            Packet::SignOut { request } => {
                self.send_sealed(id, &Packet::SignOutAck { request });
                self.remove(id, SignOutReason::Requested);
            }
            _ => self.stats.unexpected += 1,
        }
    }

    /// A lookup from `id`: the answer, and, when `id` means to write, an
    /// introduction of `id` to the user looked up (see the
    /// `introductions` module for the limits).
    fn on_lookup(&mut self, now: Instant, id: UserId, request: u32, name: &str, introduce: bool) {
        let target = self.directory.by_name(name);
        let found = target.and_then(|t| self.directory.get(t));
        let key = found.map(|u| *u.key());
        // Host addresses go only to those who mean to write (and are
        // introduced, so the target learns who asked), not to any `whois`.
        let candidates = found
            .filter(|_| introduce)
            .map(|u| u.candidates())
            .unwrap_or_default();
        let reply = Packet::LookupReply {
            request,
            name,
            address: found.map(|u| u.addr()),
            key: key.as_ref().map_or(&[][..], |k| &k[..]),
            candidates: AddrList::Addrs(candidates.as_slice()),
        };
        self.send_sealed(id, &reply);
        if let Some(target) = target.filter(|t| introduce && *t != id) {
            self.introduce(now, id, target);
        }
    }

    /// Tells `target` that `asker` wants to reach it, and where, if both
    /// have an introduction left in their budgets.
    fn introduce(&mut self, now: Instant, asker: UserId, target: UserId) {
        let second = self.stamp(now);
        let pair = (self.directory.wire(asker), self.directory.wire(target));
        if self.recent_intros.is_recent(pair.0, pair.1, second) {
            // Introduced just now: the target's handshake is on its way.
            self.stats.introductions_repeated += 1;
            return;
        }
        let allowed = self
            .directory
            .get(target)
            .is_some_and(|t| t.intros_received().has_token(second, introductions::TARGET))
            && self
                .directory
                .get_mut(asker)
                .is_some_and(|a| a.intros_made.take(second, introductions::ASKER));
        if !allowed {
            self.stats.introductions_limited += 1;
            return;
        }
        if let Some(t) = self.directory.get_mut(target) {
            t.intros_received.take(second, introductions::TARGET);
        }
        self.recent_intros.record(pair.0, pair.1, second);
        let Some(a) = self.directory.get(asker) else {
            return;
        };
        let (name, key, address, candidates) =
            (a.name().to_owned(), *a.key(), a.addr(), a.candidates());
        let introduction = Packet::Introduction {
            name: &name,
            key: &key,
            address: Some(address),
            candidates: AddrList::Addrs(candidates.as_slice()),
        };
        // To the target's address on record (validated), whatever path the
        // asker's request came by.
        let reply_to = self.reply_to.take();
        self.send_sealed(target, &introduction);
        self.reply_to = reply_to;
        self.stats.introductions += 1;
    }

    /// The seed of the responder's ephemeral key for message 1 `msg1`: a
    /// keyed hash of it, so the same message 1 sent again gets the same
    /// message 2 and the same session keys (a lost answer costs the server
    /// no state and the client no new handshake), while two different
    /// messages 1 never share an ephemeral key.
    fn responder_seed(&self, msg1: &[u8]) -> [u8; 32] {
        let mut mac = <Blake2sMac256 as KeyInit>::new_from_slice(&self.ephemeral_key)
            .unwrap_or_else(|_| unreachable!("a 32-byte key fits BLAKE2s"));
        mac.update(b"udpchat responder ephemeral\0");
        mac.update(msg1);
        mac.finalize().into_bytes().into()
    }

    /// Noise message 1 from the validated address `from`: read the sign-in
    /// it carries, decide, and answer with message 2 (or, while the holder
    /// of the name is being probed, not yet).
    fn on_server_init(&mut self, now: Instant, from: SocketAddr, sender: u32, handshake: &[u8]) {
        let seed = self.responder_seed(handshake);
        let Ok((responder, payload)) =
            Responder::accept(&self.keypair, SERVER_PROLOGUE, seed, handshake)
        else {
            self.stats.forged += 1;
            return;
        };
        let Ok(Packet::SignIn {
            request,
            name,
            replaces,
            candidates,
        }) = Packet::decode(&payload)
        else {
            self.stats.malformed += 1;
            return;
        };
        let key = responder.remote().0;
        if name::validate(name).is_err() {
            self.refuse(
                responder,
                from,
                sender,
                request,
                RefuseReason::InvalidName,
                "",
            );
            return;
        }
        if let Some(owner) = self.reservations.other_owner(name, &key) {
            let owner = owner.to_owned();
            self.refuse(
                responder,
                from,
                sender,
                request,
                RefuseReason::NameInUse,
                &owner,
            );
            return;
        }
        let holder = self
            .directory
            .by_name(name)
            .or_else(|| self.directory.by_shape(name));
        let mut quiet = false;
        if let Some(holder) = holder {
            let Some(user) = self.directory.get(holder) else {
                return;
            };
            let holder_name = user.name().to_string();
            let same_key = *user.key() == key;
            let unconfirmed = !user.session().has_opened();
            let same_handshake = user.remote_index() == sender;
            if same_key && unconfirmed && same_handshake {
                // The same handshake again (our answer was lost): the same
                // answer again, which makes the same keys.
                let accepted = Packet::SignInAccepted {
                    request,
                    address: Some(from),
                };
                if let Some((msg2, _)) = self.finish(responder, &accepted) {
                    let resp = Packet::ServerResp {
                        sender: self.directory.wire(holder),
                        receiver: sender,
                        handshake: &msg2,
                    };
                    self.send(from, &resp, None);
                }
                return;
            }
            if same_key && same_handshake {
                // The handshake that made the holder's session, come again
                // after it was confirmed: a late duplicate, or an observer's
                // replay. Not a second client (that picks a new index):
                // probing the holder over it would let anyone who saw the
                // sign-in have the holder dropped whenever the network loses
                // its answers for a second.
                self.stats.retries += 1;
                return;
            }
            let replaceable = self.directory.wire(holder) == replaces || unconfirmed;
            if !same_key {
                self.refuse(
                    responder,
                    from,
                    sender,
                    request,
                    RefuseReason::NameInUse,
                    &holder_name,
                );
                return;
            }
            if !replaceable {
                match self.probes.on_conflict(now, holder, from, request) {
                    Conflict::Refuse => {
                        self.refuse(
                            responder,
                            from,
                            sender,
                            request,
                            RefuseReason::NameInUse,
                            &holder_name,
                        );
                    }
                    Conflict::Wait => {}
                    Conflict::Probe(probe) => {
                        self.send_sealed(holder, &Packet::Probe { request: probe });
                    }
                }
                return;
            }
            if unconfirmed {
                // Its handshake's answer never reached the client (it would
                // have used the session): the same sign-in, tried again.
                // Not worth a sign-out and a sign-in to the operator.
                self.probes.remove(holder);
                self.paths.remove(&holder);
                self.directory.remove(holder);
                quiet = true;
            } else {
                self.remove(holder, SignOutReason::Replaced);
            }
        }
        if self.directory.len() >= self.config.max_users || !self.directory.has_room() {
            self.refuse(
                responder,
                from,
                sender,
                request,
                RefuseReason::ServerFull,
                "",
            );
            return;
        }
        let accepted = Packet::SignInAccepted {
            request,
            address: Some(from),
        };
        let Some((msg2, keys)) = self.finish(responder, &accepted) else {
            return;
        };
        let last_heard = self.stamp(now);
        let (id, scheduled) = self.directory.insert(NewUser {
            name,
            key,
            addr: from,
            session: ServerSession::new(keys),
            remote_index: sender,
            last_heard,
            candidates: introductions::host_candidates(candidates).as_slice(),
        });
        if !scheduled {
            let deadline = self.expires_at(last_heard);
            self.expiry
                .schedule(&mut self.directory, deadline, id.slot());
        }
        if !quiet {
            self.events.push_back(ServerEvent::SignedIn {
                name: name.to_owned(),
                address: from,
            });
        }
        let resp = Packet::ServerResp {
            sender: self.directory.wire(id),
            receiver: sender,
            handshake: &msg2,
        };
        self.send(from, &resp, None);
    }

    /// Writes message 2 with `payload`.
    fn finish(
        &mut self,
        responder: Responder,
        payload: &Packet<'_>,
    ) -> Option<(Vec<u8>, crate::crypto::TransportKeys)> {
        self.plain.clear();
        payload.encode(&mut self.plain).ok()?;
        let done = responder.finish(&self.plain).ok()?;
        self.stats.handshakes += 1;
        Some(done)
    }

    /// Completes the handshake to say no: the refusal is authenticated like
    /// an acceptance, and no session is kept.
    fn refuse(
        &mut self,
        responder: Responder,
        to: SocketAddr,
        sender: u32,
        request: u32,
        reason: RefuseReason,
        holder: &str,
    ) {
        let refusal = Packet::SignInRefused {
            request,
            reason,
            holder,
        };
        if let Some((msg2, _)) = self.finish(responder, &refusal) {
            let resp = Packet::ServerResp {
                sender: 0,
                receiver: sender,
                handshake: &msg2,
            };
            self.send(to, &resp, None);
        }
    }

    fn on_list(&mut self, id: UserId, request: u32, cursor: u32) {
        // Header: type, request, more, cursor, count.
        let mut size = 1 + 4 + 1 + 4 + 2;
        let mut names: Vec<&str> = Vec::new();
        let next = self.directory.page(cursor, |user| {
            let name = user.name();
            if size + 1 + name.len() > MAX_SEALED_PLAINTEXT || names.len() == usize::from(u16::MAX)
            {
                return false;
            }
            size += 1 + name.len();
            names.push(name);
            true
        });
        let reply = Packet::ListReply {
            request,
            more: next.is_some(),
            cursor: next.unwrap_or(0),
            names: NameList::Names(&names),
        };
        // Encoding borrows the directory through `names`, so encode here
        // rather than through `send_sealed`.
        self.plain.clear();
        if reply.encode(&mut self.plain).is_ok() {
            self.seal_plain(id);
        }
    }

    fn remove(&mut self, id: UserId, reason: SignOutReason) {
        self.probes.remove(id);
        self.paths.remove(&id);
        if let Some((name, address)) = self.directory.remove(id) {
            self.events.push_back(ServerEvent::SignedOut {
                name,
                address,
                reason,
            });
        }
    }

    /// Seals `packet` under `id`'s session and queues it for its address.
    fn send_sealed(&mut self, id: UserId, packet: &Packet<'_>) {
        self.plain.clear();
        if packet.encode(&mut self.plain).is_ok() {
            self.seal_plain(id);
        }
    }

    /// Seals what `self.plain` holds under `id`'s session, for its address
    /// on record, or for [`ServerState::reply_to`] within the 3x limit.
    fn seal_plain(&mut self, id: UserId) {
        let Some(user) = self.directory.get(id) else {
            return;
        };
        let (addr, remote_index) = (user.addr(), user.remote_index());
        let sealed_len = SEALED_HEADER_LEN + self.plain.len() + SEALED_TAG_LEN;
        let to = match self.reply_to {
            Some((_, received)) if sealed_len > AMPLIFICATION_FACTOR * received => {
                self.stats.amplification_dropped += 1;
                return;
            }
            Some((addr, _)) => addr,
            None => addr,
        };
        let Some(slot) = self.directory.get_mut(id) else {
            return;
        };
        self.buf.clear();
        if slot
            .session
            .seal(remote_index, &self.plain, &mut self.buf)
            .is_ok()
        {
            let payload = self.buf.split().freeze();
            self.queue(to, payload);
        }
    }

    /// Encodes and queues `packet` for `to`. `unvalidated` is the size of the
    /// datagram being answered when `to` has not proved its address; the reply
    /// is then dropped if it would exceed [`AMPLIFICATION_FACTOR`] times that.
    fn send(&mut self, to: SocketAddr, packet: &Packet<'_>, unvalidated: Option<usize>) {
        if let Some(received) = unvalidated
            && packet.encoded_len() > AMPLIFICATION_FACTOR * received
        {
            self.stats.amplification_dropped += 1;
            return;
        }
        self.buf.clear();
        if packet.encode(&mut self.buf).is_ok() {
            let payload = self.buf.split().freeze();
            self.queue(to, payload);
        }
    }

    fn queue(&mut self, destination: SocketAddr, payload: bytes::Bytes) {
        self.stats.sent += 1;
        self.out.push_back(Transmit {
            destination,
            payload,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Initiator, TransportKeys};
    use crate::session::Session;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn drain(s: &mut ServerState) -> Vec<Transmit> {
        std::iter::from_fn(|| s.poll_transmit()).collect()
    }

    fn server(now: Instant) -> ServerState {
        ServerState::new(ServerConfig::new([1; 32], [2; 32]), now)
    }

    /// A client done by hand: its key, and its session once signed in.
    struct Client {
        key: StaticKeypair,
        addr: SocketAddr,
        session: Option<(Session<2>, u32)>,
        seed: u8,
        /// Host candidates its sign-ins register.
        candidates: Vec<SocketAddr>,
        /// The last ServerInit it sent.
        last_init: Vec<u8>,
    }

    /// What a handshake got back.
    #[derive(Debug, PartialEq)]
    enum Answer {
        Accepted(Option<SocketAddr>),
        Refused(RefuseReason, String),
        Nothing,
    }

    impl Client {
        fn new(key_seed: u8, port: u16) -> Client {
            Client {
                key: StaticKeypair::generate([key_seed; 32]),
                addr: addr(port),
                session: None,
                seed: key_seed,
                candidates: Vec::new(),
                last_init: Vec::new(),
            }
        }

        fn cookie(&self, s: &mut ServerState, now: Instant) -> Vec<u8> {
            s.handle_datagram(
                now,
                self.addr,
                &Packet::Hello { request: 1 }.to_bytes().unwrap(),
            );
            let out = drain(s);
            assert!(out[0].payload.len() <= AMPLIFICATION_FACTOR * crate::codec::HELLO_LEN);
            match Packet::decode(&out[0].payload).unwrap() {
                Packet::Retry { cookie, key, .. } => {
                    assert_eq!(key, s.public_key().0);
                    cookie.to_vec()
                }
                other => panic!("expected Retry, got {other:?}"),
            }
        }

        fn sign_in(
            &mut self,
            s: &mut ServerState,
            now: Instant,
            name: &str,
            replaces: u32,
        ) -> Answer {
            let cookie = self.cookie(s, now);
            self.seed = self.seed.wrapping_add(1);
            let payload = Packet::SignIn {
                request: 7,
                name,
                replaces,
                candidates: AddrList::Addrs(&self.candidates),
            }
            .to_bytes()
            .unwrap();
            let (init, msg1) = Initiator::start(
                &self.key,
                &s.public_key(),
                SERVER_PROLOGUE,
                [self.seed; 32],
                &payload,
            )
            .unwrap();
            // A fresh index per handshake, as real clients pick.
            let index = (u32::from(self.addr.port()) << 8) | u32::from(self.seed);
            let packet = Packet::ServerInit {
                cookie: &cookie,
                sender: index,
                handshake: &msg1,
            };
            self.last_init = packet.to_bytes().unwrap().to_vec();
            s.handle_datagram(now, self.addr, &self.last_init);
            // What goes elsewhere (a probe to the holder) stays queued.
            let (mine, others): (Vec<_>, Vec<_>) = drain(s)
                .into_iter()
                .partition(|t| t.destination == self.addr);
            s.out.extend(others);
            let Some(t) = mine.first() else {
                return Answer::Nothing;
            };
            let Ok(Packet::ServerResp {
                sender,
                receiver,
                handshake,
            }) = Packet::decode(&t.payload)
            else {
                panic!("expected a ServerResp");
            };
            let Some(()) = (receiver == index).then_some(()) else {
                panic!("a ServerResp for another handshake");
            };
            let (payload, keys): (Vec<u8>, TransportKeys) = init.finish(handshake).unwrap();
            match Packet::decode(&payload).unwrap() {
                Packet::SignInAccepted {
                    request: 7,
                    address,
                } => {
                    self.session = Some((Session::new(keys, sender), sender));
                    Answer::Accepted(address)
                }
                Packet::SignInRefused { reason, holder, .. } => {
                    Answer::Refused(reason, holder.to_owned())
                }
                other => panic!("unexpected {other:?}"),
            }
        }

        fn index(&self) -> u32 {
            self.session.as_ref().map_or(0, |(_, i)| *i)
        }

        fn sealed(&mut self, packet: &Packet<'_>) -> Vec<u8> {
            let (session, _) = self.session.as_mut().unwrap();
            let mut out = BytesMut::new();
            session.seal(&packet.to_bytes().unwrap(), &mut out).unwrap();
            out.to_vec()
        }

        /// Sends `packet` sealed; returns the replies that open, as owned bytes.
        fn request(
            &mut self,
            s: &mut ServerState,
            now: Instant,
            packet: &Packet<'_>,
        ) -> Vec<Vec<u8>> {
            let datagram = self.sealed(packet);
            s.handle_datagram(now, self.addr, &datagram);
            self.replies(s)
        }

        fn replies(&mut self, s: &mut ServerState) -> Vec<Vec<u8>> {
            let (session, _) = self.session.as_mut().unwrap();
            let mut opened = Vec::new();
            for t in drain(s).into_iter().filter(|t| t.destination == self.addr) {
                if let Ok(Packet::Sealed {
                    counter, sealed, ..
                }) = Packet::decode(&t.payload)
                {
                    let mut scratch = Vec::new();
                    if session
                        .open(&t.payload, counter, sealed, &mut scratch)
                        .is_ok()
                    {
                        opened.push(scratch);
                    }
                }
            }
            opened
        }
    }

    /// Opens what in `out` is for `client`.
    fn opened_by(client: &mut Client, out: &[Transmit]) -> Vec<Vec<u8>> {
        let (session, _) = client.session.as_mut().unwrap();
        out.iter()
            .filter(|t| t.destination == client.addr)
            .filter_map(|t| {
                let Ok(Packet::Sealed {
                    counter, sealed, ..
                }) = Packet::decode(&t.payload)
                else {
                    return None;
                };
                let mut scratch = Vec::new();
                let opened = session
                    .open(&t.payload, counter, sealed, &mut scratch)
                    .is_ok();
                opened.then_some(scratch)
            })
            .collect()
    }

    fn lookup_to_write(name: &str) -> Packet<'_> {
        Packet::LookupRequest {
            request: 3,
            name,
            introduce: true,
        }
    }

    #[test]
    fn a_lookup_to_write_introduces_the_asker_with_its_candidates_and_a_plain_one_does_not() {
        let now = Instant::now();
        let mut s = server(now);
        let mut alice = Client::new(1, 1);
        alice.candidates = vec![SocketAddr::from(([192, 168, 1, 10], 5000))];
        alice.sign_in(&mut s, now, "Alice", 0);
        let mut bob = Client::new(2, 2);
        let bob_lan = SocketAddr::from(([192, 168, 2, 10], 5000));
        bob.candidates = vec![bob_lan, bob_lan];
        bob.sign_in(&mut s, now, "Bob", 0);

        // A plain lookup (a whois, or checking a handshake's claim): Bob's
        // address and key, not his LAN addresses, and nothing to Bob.
        let datagram = alice.sealed(&Packet::LookupRequest {
            request: 2,
            name: "bob",
            introduce: false,
        });
        s.handle_datagram(now, alice.addr, &datagram);
        let out = drain(&mut s);
        assert!(out.iter().all(|t| t.destination == alice.addr));
        let replies = opened_by(&mut alice, &out);
        let Ok(Packet::LookupReply { candidates, .. }) = Packet::decode(&replies[0]) else {
            panic!("not a lookup reply");
        };
        assert!(candidates.is_empty());

        // A lookup to write: his LAN addresses (once each), and Bob hears
        // who wants him, where, and with what key.
        let datagram = alice.sealed(&lookup_to_write("bob"));
        s.handle_datagram(now, alice.addr, &datagram);
        let out = drain(&mut s);
        let replies = opened_by(&mut alice, &out);
        let Ok(Packet::LookupReply { candidates, .. }) = Packet::decode(&replies[0]) else {
            panic!("not a lookup reply");
        };
        assert_eq!(candidates.iter().collect::<Vec<_>>(), vec![bob_lan], "once");
        let to_bob = opened_by(&mut bob, &out);
        let alice_key = alice.key.public().0;
        assert_eq!(
            to_bob
                .iter()
                .map(|p| Packet::decode(p).unwrap())
                .collect::<Vec<_>>(),
            vec![Packet::Introduction {
                name: "Alice",
                key: &alice_key,
                address: Some(addr(1)),
                candidates: AddrList::Addrs(&alice.candidates),
            }]
        );
        assert_eq!(s.stats().introductions, 1);

        // Nobody is introduced to themselves, nor to nobody.
        for name in ["alice", "nobody"] {
            let datagram = alice.sealed(&lookup_to_write(name));
            s.handle_datagram(now, alice.addr, &datagram);
            let out = drain(&mut s);
            assert!(out.iter().all(|t| t.destination == alice.addr), "{name}");
        }
        assert_eq!(s.stats().introductions, 1);
    }

    #[test]
    fn introductions_are_limited_per_asker_per_pair_and_per_target_and_go_to_validated_addresses() {
        let now = Instant::now();
        let second = Duration::from_secs(1);
        let mut s = server(now);
        let mut mallory = Client::new(1, 1);
        mallory.sign_in(&mut s, now, "Mallory", 0);
        let mut targets: Vec<Client> = (0..20u8)
            .map(|i| Client::new(100 + i, 100 + u16::from(i)))
            .collect();
        for (i, t) in targets.iter_mut().enumerate() {
            t.sign_in(&mut s, now, &format!("Target{i}"), 0);
        }
        let target_addrs: Vec<SocketAddr> = targets.iter().map(|t| t.addr).collect();
        let introduced = |s: &mut ServerState, asker: &mut Client, name: &str, at: Instant| {
            let datagram = asker.sealed(&lookup_to_write(name));
            // From a new address the server has not validated: the reply
            // is held to 3x there, and the introduction still goes to the
            // target's address on record.
            s.handle_datagram(at, SocketAddr::from(([10, 9, 9, 9], 9)), &datagram);
            drain(s)
                .iter()
                .filter(|t| target_addrs.contains(&t.destination))
                .count()
        };
        // An asker: a burst, then one a second, however many it asks about.
        let mut sent = 0;
        for i in 0..20 {
            sent += introduced(&mut s, &mut mallory, &format!("Target{i}"), now);
        }
        assert_eq!(sent, usize::from(introductions::ASKER.burst));
        assert_eq!(
            introduced(&mut s, &mut mallory, "Target19", now + second),
            1
        );
        assert_eq!(
            introduced(&mut s, &mut mallory, "Target18", now + second),
            0
        );
        // One pair: once per repeat time, however often it is asked.
        let later = now + second * 60;
        let mut sent = 0;
        for _ in 0..10 {
            sent += introduced(&mut s, &mut mallory, "Target0", later);
        }
        assert_eq!(sent, 1);
        let again = later + second * introductions::INTRO_REPEAT_SECS;
        assert_eq!(introduced(&mut s, &mut mallory, "Target0", again), 1);

        // A target: at most its burst from everyone together.
        let mut s = server(now);
        let mut bob = Client::new(3, 3);
        bob.sign_in(&mut s, now, "Bob", 0);
        let mut askers: Vec<Client> = (10..40).map(|i| Client::new(i, u16::from(i))).collect();
        let mut to_bob = 0;
        for (i, a) in askers.iter_mut().enumerate() {
            a.sign_in(&mut s, now, &format!("Asker{i}"), 0);
            let datagram = a.sealed(&lookup_to_write("Bob"));
            s.handle_datagram(now, a.addr, &datagram);
            to_bob += drain(&mut s)
                .iter()
                .filter(|t| t.destination == bob.addr)
                .count();
        }
        assert_eq!(to_bob, usize::from(introductions::TARGET.burst));
    }

    #[test]
    fn one_asker_asking_without_end_cannot_starve_others_introductions() {
        let now = Instant::now();
        let mut s = server(now);
        let mut mallory = Client::new(1, 1);
        mallory.sign_in(&mut s, now, "Mallory", 0);
        let mut alice = Client::new(2, 2);
        alice.sign_in(&mut s, now, "Alice", 0);
        let mut bob = Client::new(3, 3);
        bob.sign_in(&mut s, now, "Bob", 0);
        let mut alices_introduced = 0;
        // Mallory asks about Bob 20 times a second for a minute; Alice asks
        // once every 5 s.
        for tick in 0..1200u32 {
            let at = now + Duration::from_millis(u64::from(tick) * 50);
            let datagram = mallory.sealed(&lookup_to_write("Bob"));
            s.handle_datagram(at, mallory.addr, &datagram);
            drain(&mut s);
            if tick % 100 == 0 {
                let datagram = alice.sealed(&lookup_to_write("Bob"));
                s.handle_datagram(at, alice.addr, &datagram);
                alices_introduced += opened_by(&mut bob, &drain(&mut s))
                    .iter()
                    .filter(|p| {
                        matches!(
                            Packet::decode(p),
                            Ok(Packet::Introduction { name: "Alice", .. })
                        )
                    })
                    .count();
            }
        }
        assert_eq!(alices_introduced, 12, "every one of Alice's");
    }

    #[test]
    fn sign_in_takes_a_cookie_then_a_handshake_and_binds_the_name_to_the_key() {
        let now = Instant::now();
        let mut s = server(now);
        let mut alice = Client::new(1, 1);
        // A handshake without a cookie costs the server nothing.
        s.handle_datagram(now, alice.addr, &[3, 0]);
        assert!(drain(&mut s).is_empty());
        assert_eq!(
            alice.sign_in(&mut s, now, "Alice", 0),
            Answer::Accepted(Some(addr(1)))
        );
        assert_eq!(s.lookup("alice"), Some((addr(1), alice.key.public())));
        assert_eq!(
            s.poll_event(),
            Some(ServerEvent::SignedIn {
                name: "Alice".into(),
                address: addr(1)
            })
        );
        let replies = alice.request(
            &mut s,
            now,
            &Packet::LookupRequest {
                request: 3,
                name: "ALICE",
                introduce: false,
            },
        );
        let key = alice.key.public().0;
        assert_eq!(
            Packet::decode(&replies[0]),
            Ok(Packet::LookupReply {
                request: 3,
                name: "ALICE",
                address: Some(addr(1)),
                key: &key,
                candidates: AddrList::EMPTY,
            })
        );
    }

    #[test]
    fn a_sealed_packet_for_no_session_gets_a_small_error_and_changes_nothing() {
        let now = Instant::now();
        let mut s = server(now);
        let mut alice = Client::new(1, 1);
        alice.sign_in(&mut s, now, "Alice", 0);
        // Sealed garbage under Alice's index: dropped, counted, unanswered.
        let mut forged = alice.sealed(&Packet::SignOut { request: 9 });
        let last = forged.len() - 1;
        forged[last] ^= 1;
        s.handle_datagram(now, addr(66), &forged);
        assert!(drain(&mut s).is_empty());
        assert_eq!(s.stats().forged, 1);
        // An index the server does not hold: a 6-byte error.
        let mut stray = forged.clone();
        stray[1..5].copy_from_slice(&0xdead_beef_u32.to_be_bytes());
        s.handle_datagram(now, addr(66), &stray);
        let out = drain(&mut s);
        assert_eq!(
            Packet::decode(&out[0].payload).unwrap(),
            Packet::Error {
                request: 0xdead_beef,
                code: ErrorCode::UnknownSession
            }
        );
        assert_eq!(s.user_count(), 1);
    }

    #[test]
    fn another_key_is_refused_a_live_name_without_any_probe() {
        let now = Instant::now();
        let mut s = server(now);
        let mut alice = Client::new(1, 1);
        alice.sign_in(&mut s, now, "Alice", 0);
        let mut mallory = Client::new(9, 2);
        // However silent Alice is (her traffic dropped, her rate limit
        // exhausted), the name stays hers while her session lives.
        for t in [0, 5, 10, 14] {
            let at = now + Duration::from_secs(t);
            s.handle_timeout(at);
            assert_eq!(
                mallory.sign_in(&mut s, at, "ALICE", 0),
                Answer::Refused(RefuseReason::NameInUse, "Alice".into())
            );
        }
        // Once her session has timed out, the name is free.
        let later = now + s.config.session_timeout + Duration::from_secs(2);
        s.handle_timeout(later);
        assert_eq!(
            mallory.sign_in(&mut s, later, "ALICE", 0),
            Answer::Accepted(Some(addr(2)))
        );
    }

    #[test]
    fn the_same_key_is_refused_while_the_holder_answers_and_gets_the_name_when_it_does_not() {
        let now = Instant::now();
        let mut s = server(now);
        let mut alice = Client::new(1, 1);
        alice.sign_in(&mut s, now, "Alice", 0);
        alice.request(&mut s, now, &Packet::KeepAlive { request: 1 });
        // A second client of Alice's (same key, another address).
        let mut twin = Client::new(1, 2);
        assert_eq!(twin.sign_in(&mut s, now, "Alice", 0), Answer::Nothing);
        let probes = alice.replies(&mut s);
        let probe = probes.iter().find_map(|p| match Packet::decode(p) {
            Ok(Packet::Probe { request }) => Some(request),
            _ => None,
        });
        assert!(probe.is_some(), "the holder is probed inside its session");
        alice.request(
            &mut s,
            now,
            &Packet::KeepAlive {
                request: probe.unwrap(),
            },
        );
        assert_eq!(
            twin.sign_in(&mut s, now, "Alice", 0),
            Answer::Refused(RefuseReason::NameInUse, "Alice".into())
        );
        // Alice crashes: her restarted client (same key) waits out one
        // probe timeout at most.
        let later = now + Duration::from_secs(5);
        s.handle_timeout(later);
        assert_eq!(twin.sign_in(&mut s, later, "Alice", 0), Answer::Nothing);
        let mut t = later;
        while let Some(next) = s
            .poll_timeout()
            .filter(|n| *n <= later + s.config.probe_timeout)
        {
            t = next;
            s.handle_timeout(t);
        }
        drain(&mut s);
        assert_eq!(
            twin.sign_in(&mut s, t, "Alice", 0),
            Answer::Accepted(Some(addr(2)))
        );
    }

    #[test]
    fn a_replay_of_the_holders_own_sign_in_probes_nobody_and_drops_nobody() {
        let now = Instant::now();
        let mut s = server(now);
        let mut alice = Client::new(1, 1);
        alice.sign_in(&mut s, now, "Alice", 0);
        // Confirmed: she has used her session.
        alice.request(&mut s, now, &Packet::KeepAlive { request: 1 });
        // An observer replays her ServerInit, from her address, while her
        // answers are lost for longer than a probe lasts.
        let replay = alice.last_init.clone();
        s.handle_datagram(now, alice.addr, &replay);
        assert!(drain(&mut s).is_empty(), "no probe, no answer");
        let later = now + Duration::from_secs(2);
        s.handle_timeout(later);
        drain(&mut s);
        assert_eq!(s.lookup("Alice").map(|(a, _)| a), Some(addr(1)));
        assert!(
            s.events
                .iter()
                .all(|e| !matches!(e, ServerEvent::SignedOut { .. })),
            "{:?}",
            s.events
        );
    }

    #[test]
    fn a_sign_in_naming_the_session_it_replaces_takes_over_at_once() {
        let now = Instant::now();
        let mut s = server(now);
        let mut alice = Client::new(1, 1);
        alice.sign_in(&mut s, now, "Alice", 0);
        alice.request(&mut s, now, &Packet::KeepAlive { request: 1 });
        let old = alice.index();
        let mut again = Client::new(1, 3);
        assert_eq!(
            again.sign_in(&mut s, now, "Alice", old),
            Answer::Accepted(Some(addr(3)))
        );
        assert_eq!(s.lookup("alice").map(|(a, _)| a), Some(addr(3)));
        // A stranger cannot use the index: another key is refused anyway.
        let mut mallory = Client::new(9, 4);
        assert_eq!(
            mallory.sign_in(&mut s, now, "Alice", again.index()),
            Answer::Refused(RefuseReason::NameInUse, "Alice".into())
        );
    }

    #[test]
    fn a_flood_from_the_holders_address_does_not_starve_its_session() {
        let now = Instant::now();
        let mut s = server(now);
        let mut alice = Client::new(1, 1);
        alice.sign_in(&mut s, now, "Alice", 0);
        for _ in 0..10_000 {
            s.handle_datagram(
                now,
                alice.addr,
                &Packet::Hello { request: 1 }.to_bytes().unwrap(),
            );
        }
        assert!(s.stats().rate_limited > 9_000);
        drain(&mut s);
        let replies = alice.request(&mut s, now, &Packet::KeepAlive { request: 5 });
        assert_eq!(
            Packet::decode(&replies[0]),
            Ok(Packet::KeepAliveAck { request: 5 })
        );
    }

    #[test]
    fn the_address_moves_only_when_the_new_one_answers_a_challenge() {
        let now = Instant::now();
        let mut s = server(now);
        let mut alice = Client::new(1, 1);
        alice.sign_in(&mut s, now, "Alice", 0);
        let lost = alice.sealed(&Packet::ListRequest {
            request: 1,
            cursor: 0,
        });
        // An observer replays a packet of hers that never arrived, from
        // elsewhere: it opens, but the answer there is held to 3x, and the
        // address on record stays.
        s.handle_datagram(now, addr(9), &lost);
        let out = drain(&mut s);
        assert!(out.iter().all(|t| t.destination == addr(9)));
        let sent: usize = out.iter().map(|t| t.payload.len()).sum();
        assert!(
            sent <= AMPLIFICATION_FACTOR * lost.len(),
            "{sent} bytes for {}",
            lost.len()
        );
        assert_eq!(s.lookup("Alice").map(|(a, _)| a), Some(addr(1)));
        // Her NAT really gave her a new port: she answers the challenge
        // from there, and the address moves.
        alice.addr = addr(2);
        let replies = alice.request(&mut s, now, &Packet::KeepAlive { request: 2 });
        let challenge = replies.iter().find_map(|p| match Packet::decode(p) {
            Ok(Packet::Probe { request }) => Some(request),
            _ => None,
        });
        assert_eq!(s.lookup("Alice").map(|(a, _)| a), Some(addr(1)), "not yet");
        // Whatever else she sends from there before her answer arrives is
        // challenged with the same request: the answer stays good. (A new
        // challenge each time made every answer stale, and the address
        // never moved.)
        for i in 0..3 {
            let again = alice.request(&mut s, now, &Packet::KeepAlive { request: 10 + i });
            let probes: Vec<u32> = again
                .iter()
                .filter_map(|p| match Packet::decode(p) {
                    Ok(Packet::Probe { request }) => Some(request),
                    _ => None,
                })
                .collect();
            assert_eq!(probes, vec![challenge.unwrap()]);
        }
        alice.request(
            &mut s,
            now,
            &Packet::KeepAlive {
                request: challenge.unwrap(),
            },
        );
        assert_eq!(s.lookup("Alice").map(|(a, _)| a), Some(addr(2)));
        // A replay from anywhere changes nothing.
        s.handle_datagram(now, addr(9), &lost);
        assert_eq!(s.lookup("Alice").map(|(a, _)| a), Some(addr(2)));
        assert_eq!(s.stats().forged, 1);
    }

    #[test]
    fn a_name_leaves_both_indexes_when_its_holder_signs_out() {
        let now = Instant::now();
        let mut s = server(now);
        let mut alice = Client::new(1, 1);
        alice.sign_in(&mut s, now, "Alice", 0);
        let replies = alice.request(&mut s, now, &Packet::SignOut { request: 3 });
        assert_eq!(
            Packet::decode(&replies[0]),
            Ok(Packet::SignOutAck { request: 3 })
        );
        // `AIice` (capital I) has Alice's shape: free now.
        let mut other = Client::new(2, 2);
        assert_eq!(
            other.sign_in(&mut s, now, "AIice", 0),
            Answer::Accepted(Some(addr(2)))
        );
        assert_eq!(s.lookup("AIICE").map(|(a, _)| a), Some(addr(2)));
        assert_eq!(s.lookup("Alice"), None, "a lookup goes by key");
        assert_eq!(s.user_count(), 1);
    }

    #[test]
    fn after_a_restart_each_name_waits_for_its_own_key() {
        let now = Instant::now();
        let mut s = server(now);
        let mut alice = Client::new(1, 1);
        alice.sign_in(&mut s, now, "Alice", 0);
        let saved = s.bindings();
        let mut s = ServerState::new(ServerConfig::new([1; 32], [3; 32]), now);
        assert_eq!(s.restore(now, &saved), Ok(1));
        assert_eq!(
            s.restore(now, b"garbage\n").map_err(|e| e.to_string()),
            Err("line 1: no space after the key".into())
        );
        let mut s = ServerState::new(ServerConfig::new([1; 32], [3; 32]), now);
        s.restore(now, &saved).unwrap();
        let mut mallory = Client::new(9, 2);
        assert_eq!(
            mallory.sign_in(&mut s, now, "alice", 0),
            Answer::Refused(RefuseReason::NameInUse, "Alice".into())
        );
        assert_eq!(
            alice.sign_in(&mut s, now, "Alice", 0),
            Answer::Accepted(Some(addr(1)))
        );
        // After the grace, a name nobody came back for is free again.
        let mut bob_key = Client::new(3, 3);
        let saved = format!("{} Bob\n", "ab".repeat(32));
        let mut s = ServerState::new(ServerConfig::new([1; 32], [4; 32]), now);
        s.restore(now, saved.as_bytes()).unwrap();
        assert_eq!(
            bob_key.sign_in(&mut s, now, "Bob", 0),
            Answer::Refused(RefuseReason::NameInUse, "Bob".into())
        );
        let later = now + s.config.restore_grace;
        assert_eq!(s.poll_timeout(), Some(later));
        s.handle_timeout(later);
        assert_eq!(
            bob_key.sign_in(&mut s, later, "Bob", 0),
            Answer::Accepted(Some(addr(3)))
        );
    }

    #[test]
    fn poll_timeout_moves_forward() {
        let now = Instant::now();
        let mut s = server(now);
        Client::new(1, 1).sign_in(&mut s, now, "Alice", 0);
        Client::new(2, 2).sign_in(&mut s, now + Duration::from_secs(5), "Bob", 0);
        let mut t = now;
        while let Some(next) = s.poll_timeout() {
            assert!(next > t, "{next:?} not after {t:?}");
            t = next;
            s.handle_timeout(t);
        }
        assert_eq!(s.user_count(), 0);
    }

    #[test]
    fn a_session_expires_a_timeout_after_it_was_last_heard_not_before() {
        let now = Instant::now();
        let mut s = server(now);
        let timeout = s.config.session_timeout;
        let mut alice = Client::new(1, 1);
        alice.sign_in(&mut s, now, "Alice", 0);
        // Keep-alives every 3 s for a minute keep the session.
        let mut t = now;
        for i in 0..20 {
            t = now + Duration::from_secs(3 * i);
            if let Some(due) = s.poll_timeout().filter(|d| *d <= t) {
                s.handle_timeout(due);
            }
            s.handle_timeout(t);
            alice.request(
                &mut s,
                t,
                &Packet::KeepAlive {
                    request: 100 + i as u32,
                },
            );
            assert_eq!(s.user_count(), 1, "at {i}");
        }
        // Silence: gone no earlier than the timeout, and within a second of it.
        let last = t;
        while let Some(next) = s.poll_timeout() {
            s.handle_timeout(next);
            if s.user_count() == 0 {
                assert!(next >= last + timeout, "expired early at {:?}", next - last);
                assert!(next <= last + timeout + Duration::from_secs(2));
                return;
            }
        }
        panic!("never expired");
    }
}
