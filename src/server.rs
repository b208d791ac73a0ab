//! The directory server: who is signed in, and where.
//!
//! [`ServerState`] answers sign-in, list, lookup, keep-alive and sign-out
//! requests. It never sees message text. What it guarantees on a hostile
//! network:
//!
//! * **No amplification.** A source address is *validated* once it echoes a
//!   cookie from a [`Packet::Retry`] (a keyed hash of the address and the time,
//!   so the server keeps no state for it), or presents the session token issued
//!   to that address. A reply to an unvalidated datagram is never more than
//!   three times the datagram's size, so a forged source address earns an
//!   attacker at most 3× — the QUIC rule.
//! * **Sessions.** Every request after sign-in carries the token issued to that
//!   name at that address; a missing or wrong token gets a small
//!   [`ErrorCode::UnknownSession`] reply and changes nothing.
//! * **Names.** A name held by a live client cannot be taken from another
//!   address. On a conflicting sign-in the server probes the holder; the
//!   newcomer gets no answer until the probe settles (its sign-in is retried),
//!   then `NameInUse` if the holder answered, or the name if it did not.
//!   A name that looks like a signed-in one is the same name
//!   ([`name::same`]: `aLICE`, `Аlice` with a Cyrillic А, `AIice` with a
//!   capital I are all `Alice`); the refusal carries the holder's spelling.
//! * **Bounded state.** Sessions are capped ([`ServerConfig::max_users`]);
//!   per-source rate limiting keeps a table of bounded size; cookies need no
//!   state at all.
//!
//! Time: sessions not heard from for [`ServerConfig::session_timeout`] are
//! swept out once a [`ServerConfig::sweep_interval`]; `poll_timeout` returns
//! the next sweep while anyone is signed in, or the next probe step.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::Transmit;
use crate::codec::{ErrorCode, MAX_DATAGRAM, NameList, Packet, RefuseReason};
use crate::name::{self, NameKey, Shape};
use crate::secret::{Key, addr_bytes, constant_time_eq};

/// Bytes in a session token and in a cookie.
pub const TOKEN_LEN: usize = 16;

/// A reply to an unvalidated address is at most this many times the size of
/// the datagram it answers.
pub const AMPLIFICATION_FACTOR: usize = 3;

/// How the server behaves. [`ServerConfig::with_secret`] gives the defaults.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Key for cookies and session tokens. Unpredictable tokens need an
    /// unpredictable secret: the binary takes it from the operating system.
    pub secret: [u8; 16],
    /// The most users signed in at once; further sign-ins are refused with
    /// [`RefuseReason::ServerFull`].
    pub max_users: usize,
    /// A session not heard from for this long is forgotten.
    pub session_timeout: Duration,
    /// How often expired sessions are swept out.
    pub sweep_interval: Duration,
    /// How long a name's holder has to answer a probe before losing the name.
    pub probe_timeout: Duration,
    /// How often a probe is resent while unanswered.
    pub probe_interval: Duration,
    /// The most probes running at once; conflicting sign-ins beyond that are
    /// refused with `NameInUse` without probing.
    pub max_probes: usize,
    /// Datagrams a second each source address may send, sustained.
    pub rate_per_second: f64,
    /// Datagrams a source address may send in a burst.
    pub rate_burst: f64,
    /// The most source addresses the rate limiter tracks; beyond that, new
    /// sources share one bucket.
    pub max_rate_sources: usize,
    /// How long a cookie from a Retry stays good (it is good for between one
    /// and two of these).
    pub cookie_lifetime: Duration,
}

impl ServerConfig {
    /// The defaults, with this secret.
    pub fn with_secret(secret: [u8; 16]) -> Self {
        ServerConfig {
            secret,
            max_users: 100_000,
            session_timeout: Duration::from_secs(15),
            sweep_interval: Duration::from_secs(1),
            probe_timeout: Duration::from_secs(3),
            probe_interval: Duration::from_millis(250),
            max_probes: 1024,
            rate_per_second: 200.0,
            rate_burst: 400.0,
            max_rate_sources: 16_384,
            cookie_lifetime: Duration::from_secs(30),
        }
    }
}

/// Something an operator may want to see.
#[derive(Debug, Clone, PartialEq, Eq)]
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
        /// Where it was.
        address: SocketAddr,
        /// Why it left.
        reason: SignOutReason,
    },
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignOutReason {
    /// The client signed out.
    Requested,
    /// Nothing heard for [`ServerConfig::session_timeout`].
    TimedOut,
    /// Another address asked for the name and this holder did not answer the probe.
    Unresponsive,
    /// The same address signed in under another name.
    Replaced,
}

/// Counters of what the server did with what it got.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Datagrams handed to `handle_datagram`.
    pub received: u64,
    /// Dropped by the per-source rate limit.
    pub rate_limited: u64,
    /// Did not decode.
    pub malformed: u64,
    /// Decoded, but not a packet a server takes (a reply, a chat message).
    pub unexpected: u64,
    /// Requests with a missing or wrong token.
    pub unknown_session: u64,
    /// Sign-ins answered with a Retry (no or stale cookie).
    pub retries: u64,
    /// Replies withheld because they would have exceeded the amplification limit.
    pub amplification_dropped: u64,
    /// Datagrams queued for sending.
    pub sent: u64,
}

#[derive(Debug)]
struct Session {
    /// As its holder spells it; its `NameKey` and `Shape` file it in
    /// `by_name` and `by_shape`. (Kept out of here: a lookup touches a
    /// session, and a smaller one is faster to reach.)
    name: String,
    token: [u8; TOKEN_LEN],
    last_heard: Instant,
}

#[derive(Debug)]
struct ProbeState {
    request: u32,
    next_send: Instant,
    deadline: Instant,
    /// Set when the holder answered; the result stands until `deadline`.
    answered: bool,
    /// Newcomers waiting for the outcome: (address, sign-in request id).
    waiting: Vec<(SocketAddr, u32)>,
}

/// A full rate-limit table is scanned for idle sources at most this often.
const PRUNE_INTERVAL: Duration = Duration::from_millis(100);

/// Newcomers one probe remembers, to refuse them the moment the holder answers.
const MAX_WAITING_PER_PROBE: usize = 8;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// The directory server's state machine. See the [module docs](self) and the
/// crate's sans-IO contract.
#[derive(Debug)]
pub struct ServerState {
    config: ServerConfig,
    key: Key,
    start: Instant,
    sessions: HashMap<SocketAddr, Session>,
    /// Each signed-in name's key to the address holding it, sorted for paging.
    by_name: BTreeMap<NameKey, SocketAddr>,
    /// Each signed-in name's shape to the address holding it: no two
    /// signed-in names share a key or a shape.
    by_shape: HashMap<Shape, SocketAddr>,
    /// Running probes, keyed by the holder's address.
    probes: HashMap<SocketAddr, ProbeState>,
    buckets: HashMap<SocketAddr, Bucket>,
    overflow_bucket: Bucket,
    last_prune: Instant,
    next_sweep: Instant,
    next_request: u32,
    issued: u64,
    out: VecDeque<Transmit>,
    events: VecDeque<ServerEvent>,
    buf: BytesMut,
    stats: ServerStats,
}

impl ServerState {
    /// An empty directory.
    pub fn new(config: ServerConfig, now: Instant) -> Self {
        let key = Key::new(config.secret);
        let overflow_bucket = Bucket {
            tokens: config.rate_burst,
            last: now,
        };
        ServerState {
            key,
            start: now,
            sessions: HashMap::new(),
            by_name: BTreeMap::new(),
            by_shape: HashMap::new(),
            probes: HashMap::new(),
            buckets: HashMap::new(),
            overflow_bucket,
            last_prune: now,
            next_sweep: now + config.sweep_interval,
            next_request: 1,
            issued: 0,
            out: VecDeque::new(),
            events: VecDeque::new(),
            buf: BytesMut::with_capacity(16 * MAX_DATAGRAM),
            stats: ServerStats::default(),
            config,
        }
    }

    /// What the server has counted so far.
    pub fn stats(&self) -> ServerStats {
        self.stats
    }

    /// How many users are signed in.
    pub fn user_count(&self) -> usize {
        self.sessions.len()
    }

    /// The address `name` is signed in from, if anyone of that name is.
    pub fn lookup(&self, name: &str) -> Option<SocketAddr> {
        NameKey::with_str(name, |key| self.by_name.get(key).copied())
    }

    /// Takes one datagram from `from`. Bad input is counted and dropped.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.stats.received += 1;
        if !self.admit(now, from) {
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
        let len = datagram.len();
        match packet {
            Packet::SignIn {
                request,
                name,
                cookie,
            } => self.on_sign_in(now, from, len, request, name, cookie),
            Packet::ListRequest {
                request,
                token,
                after,
            } => {
                if self.authenticate(now, from, token, len, request) {
                    self.on_list(from, request, after);
                }
            }
            Packet::LookupRequest {
                request,
                token,
                name,
            } => {
                if self.authenticate(now, from, token, len, request) {
                    let address = self.lookup(name);
                    let reply = Packet::LookupReply {
                        request,
                        name,
                        address,
                    };
                    self.send(from, &reply, None);
                }
            }
            Packet::KeepAlive { request, token } => {
                if self.authenticate(now, from, token, len, request) {
                    self.send(from, &Packet::KeepAliveAck { request }, None);
                }
            }
            Packet::SignOut { request, token } => {
                if self.sessions.contains_key(&from) {
                    if self.authenticate(now, from, token, len, request) {
                        self.remove(from, SignOutReason::Requested);
                        self.send(from, &Packet::SignOutAck { request }, None);
                    }
                } else {
                    // Already gone (a retransmitted sign-out): acknowledge, at
                    // no more than the request's size.
                    self.send(from, &Packet::SignOutAck { request }, Some(len));
                }
            }
            Packet::Retry { .. }
            | Packet::SignInAccepted { .. }
            | Packet::SignInRefused { .. }
            | Packet::ListReply { .. }
            | Packet::LookupReply { .. }
            | Packet::KeepAliveAck { .. }
            | Packet::Probe { .. }
            | Packet::SignOutAck { .. }
            | Packet::Error { .. }
            | Packet::Message { .. }
            | Packet::Ack { .. } => self.stats.unexpected += 1,
        }
    }

    /// Sweeps out silent sessions and advances probes whose time has come.
    /// Calling it early or twice is harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        if now >= self.next_sweep {
            self.sweep(now);
            self.next_sweep = now + self.config.sweep_interval;
        }
        let mut due: Vec<SocketAddr> = self
            .probes
            .iter()
            .filter(|(_, p)| now >= p.deadline || (!p.answered && now >= p.next_send))
            .map(|(a, _)| *a)
            .collect();
        due.sort_unstable();
        for holder in due {
            let Some(probe) = self.probes.get_mut(&holder) else {
                continue;
            };
            if now >= probe.deadline {
                let answered = probe.answered;
                self.probes.remove(&holder);
                if !answered {
                    self.remove(holder, SignOutReason::Unresponsive);
                }
            } else {
                probe.next_send = now + self.config.probe_interval;
                let request = probe.request;
                self.send(holder, &Packet::Probe { request }, None);
            }
        }
    }

    /// The next datagram to send, oldest first.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// When [`ServerState::handle_timeout`] should next be called: the next
    /// sweep while anyone is signed in, or the next probe step. `None` when
    /// the directory is empty and nothing is being probed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let sweep = (!self.sessions.is_empty()).then_some(self.next_sweep);
        let probe = self
            .probes
            .values()
            .map(|p| {
                if p.answered {
                    p.deadline
                } else {
                    p.next_send.min(p.deadline)
                }
            })
            .min();
        match (sweep, probe) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// The next event, oldest first.
    pub fn poll_event(&mut self) -> Option<ServerEvent> {
        self.events.pop_front()
    }

    /// Token-bucket rate limit per source address.
    fn admit(&mut self, now: Instant, from: SocketAddr) -> bool {
        let (rate, burst) = (self.config.rate_per_second, self.config.rate_burst);
        if !self.buckets.contains_key(&from)
            && self.buckets.len() >= self.config.max_rate_sources
            && now.saturating_duration_since(self.last_prune) >= PRUNE_INTERVAL
        {
            // A full table is scanned at most once per interval, so a flood
            // of new addresses costs a lookup each, not a scan each.
            self.prune_buckets(now);
        }
        let bucket = if self.buckets.len() < self.config.max_rate_sources
            || self.buckets.contains_key(&from)
        {
            self.buckets.entry(from).or_insert(Bucket {
                tokens: burst,
                last: now,
            })
        } else {
            &mut self.overflow_bucket
        };
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets sources whose bucket has refilled: they are idle.
    fn prune_buckets(&mut self, now: Instant) {
        self.last_prune = now;
        let (rate, burst) = (self.config.rate_per_second, self.config.rate_burst);
        self.buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens + elapsed * rate < burst
        });
    }

    fn sweep(&mut self, now: Instant) {
        let timeout = self.config.session_timeout;
        let mut expired: Vec<SocketAddr> = self
            .sessions
            .iter()
            .filter(|(_, s)| now.saturating_duration_since(s.last_heard) >= timeout)
            .map(|(a, _)| *a)
            .collect();
        expired.sort_unstable();
        for addr in expired {
            self.remove(addr, SignOutReason::TimedOut);
        }
        if self.buckets.len() > self.config.max_rate_sources / 2 {
            self.prune_buckets(now);
        }
    }

    /// The cookie for `addr` in time bucket `bucket`.
    fn cookie(&self, addr: &SocketAddr, bucket: u64) -> [u8; TOKEN_LEN] {
        self.key
            .mac(&[b"cookie", &addr_bytes(addr), &bucket.to_be_bytes()])
    }

    fn cookie_bucket(&self, now: Instant) -> u64 {
        let lifetime = self.config.cookie_lifetime.as_millis().max(1);
        let age = now.saturating_duration_since(self.start).as_millis();
        u64::try_from(age / lifetime).unwrap_or(u64::MAX)
    }

    fn cookie_valid(&self, now: Instant, addr: &SocketAddr, cookie: &[u8]) -> bool {
        let bucket = self.cookie_bucket(now);
        constant_time_eq(cookie, &self.cookie(addr, bucket))
            || bucket > 0 && constant_time_eq(cookie, &self.cookie(addr, bucket - 1))
    }

    fn on_sign_in(
        &mut self,
        now: Instant,
        from: SocketAddr,
        len: usize,
        request: u32,
        name: &str,
        cookie: &[u8],
    ) {
        if !self.cookie_valid(now, &from, cookie) {
            self.stats.retries += 1;
            let cookie = self.cookie(&from, self.cookie_bucket(now));
            self.send(
                from,
                &Packet::Retry {
                    request,
                    cookie: &cookie,
                },
                Some(len),
            );
            return;
        }
        // From here on the address is validated: it echoed our cookie.
        if name::validate(name).is_err() {
            let reason = RefuseReason::InvalidName;
            self.refuse(from, request, reason, "");
            return;
        }
        let key = NameKey::new(name);
        if let Some(session) = self.sessions.get_mut(&from) {
            if NameKey::new(&session.name) == key {
                // A retransmitted sign-in, or the same client signing in
                // again: same session, same token.
                session.last_heard = now;
                let token = session.token;
                self.accept(from, request, &token);
                return;
            }
            self.remove(from, SignOutReason::Replaced);
        }
        let shape = Shape::new(name);
        if let Some(&holder) = self.by_name.get(&key).or_else(|| self.by_shape.get(&shape)) {
            self.on_conflict(now, from, request, holder);
            return;
        }
        if self.sessions.len() >= self.config.max_users {
            self.refuse(from, request, RefuseReason::ServerFull, "");
            return;
        }
        self.issued += 1;
        let token = self.key.mac(&[
            b"token",
            key.as_str().as_bytes(),
            &addr_bytes(&from),
            &self.issued.to_be_bytes(),
        ]);
        self.sessions.insert(
            from,
            Session {
                name: name.to_owned(),
                token,
                last_heard: now,
            },
        );
        self.by_name.insert(key, from);
        self.by_shape.insert(shape, from);
        self.events.push_back(ServerEvent::SignedIn {
            name: name.to_owned(),
            address: from,
        });
        self.accept(from, request, &token);
    }

    /// Answers sign-in `request` from the validated address `to`.
    fn accept(&mut self, to: SocketAddr, request: u32, token: &[u8]) {
        self.send(to, &Packet::SignInAccepted { request, token }, None);
    }

    /// Refuses sign-in `request` from the validated address `to`; `holder`
    /// is the clashing signed-in name for `NameInUse`, empty otherwise.
    fn refuse(&mut self, to: SocketAddr, request: u32, reason: RefuseReason, holder: &str) {
        let refusal = Packet::SignInRefused {
            request,
            reason,
            holder,
        };
        self.send(to, &refusal, None);
    }

    /// The name signed in at `holder`, as its holder spells it.
    fn holder_name(&self, holder: SocketAddr) -> String {
        self.sessions
            .get(&holder)
            .map(|s| s.name.clone())
            .unwrap_or_default()
    }

    /// `from` wants the name `holder` has. Refuse if the holder has proved
    /// itself alive since asked; otherwise probe it and stay silent: the
    /// newcomer is refused the moment the holder answers, or gets the name on
    /// its next retry once the probe has gone unanswered for
    /// [`ServerConfig::probe_timeout`]. Any request from the holder counts as
    /// an answer.
    fn on_conflict(&mut self, now: Instant, from: SocketAddr, request: u32, holder: SocketAddr) {
        let probes_full = self.probes.len() >= self.config.max_probes;
        match self.probes.get_mut(&holder) {
            Some(probe) if probe.answered => {
                let name = self.holder_name(holder);
                self.refuse(from, request, RefuseReason::NameInUse, &name);
            }
            Some(probe) => {
                if let Some(w) = probe.waiting.iter_mut().find(|(a, _)| *a == from) {
                    w.1 = request;
                } else if probe.waiting.len() < MAX_WAITING_PER_PROBE {
                    probe.waiting.push((from, request));
                }
            }
            None if probes_full => {
                let name = self.holder_name(holder);
                self.refuse(from, request, RefuseReason::NameInUse, &name);
            }
            None => {
                let probe_request = self.next_request;
                self.next_request = self.next_request.wrapping_add(1);
                self.probes.insert(
                    holder,
                    ProbeState {
                        request: probe_request,
                        next_send: now + self.config.probe_interval,
                        deadline: now + self.config.probe_timeout,
                        answered: false,
                        waiting: vec![(from, request)],
                    },
                );
                let probe = Packet::Probe {
                    request: probe_request,
                };
                self.send(holder, &probe, None);
            }
        }
    }

    /// Whether `token` is the session token of `from`; if so the session is
    /// refreshed, if not a small error goes back and the request stops here.
    fn authenticate(
        &mut self,
        now: Instant,
        from: SocketAddr,
        token: &[u8],
        len: usize,
        request: u32,
    ) -> bool {
        match self.sessions.get_mut(&from) {
            Some(s) if constant_time_eq(&s.token, token) => {
                s.last_heard = now;
                self.holder_answered(from);
                true
            }
            _ => {
                self.stats.unknown_session += 1;
                let code = ErrorCode::UnknownSession;
                self.send(from, &Packet::Error { request, code }, Some(len));
                false
            }
        }
    }

    /// The holder at `addr` was heard from: if it is being probed, it is
    /// alive, and everyone waiting for its name is refused now.
    fn holder_answered(&mut self, addr: SocketAddr) {
        let Some(probe) = self.probes.get_mut(&addr) else {
            return;
        };
        if probe.answered {
            return;
        }
        probe.answered = true;
        let waiting = std::mem::take(&mut probe.waiting);
        let name = self.holder_name(addr);
        for (to, request) in waiting {
            self.refuse(to, request, RefuseReason::NameInUse, &name);
        }
    }

    fn on_list(&mut self, from: SocketAddr, request: u32, after: &str) {
        use std::ops::Bound;
        let start = if after.is_empty() {
            Bound::Unbounded
        } else {
            Bound::Excluded(NameKey::new(after))
        };
        // Header: type, request, more, count.
        let mut size = 1 + 4 + 1 + 2;
        let mut names: Vec<&str> = Vec::new();
        let mut more = false;
        for (_, addr) in self.by_name.range((start, Bound::Unbounded)) {
            let Some(session) = self.sessions.get(addr) else {
                continue;
            };
            if size + 1 + session.name.len() > MAX_DATAGRAM || names.len() == usize::from(u16::MAX)
            {
                more = true;
                break;
            }
            size += 1 + session.name.len();
            names.push(&session.name);
        }
        let reply = Packet::ListReply {
            request,
            more,
            names: NameList::Names(&names),
        };
        // Encoding borrows `self.sessions` through `names`, so encode here
        // rather than through `send`.
        let start_len = self.buf.len();
        if reply.encode(&mut self.buf).is_ok() {
            let payload = self.buf.split_off(start_len).freeze();
            self.queue(from, payload);
        }
    }

    fn remove(&mut self, addr: SocketAddr, reason: SignOutReason) {
        self.probes.remove(&addr);
        if let Some(session) = self.sessions.remove(&addr) {
            self.by_name.remove(&NameKey::new(&session.name));
            self.by_shape.remove(&Shape::new(&session.name));
            self.events.push_back(ServerEvent::SignedOut {
                name: session.name,
                address: addr,
                reason,
            });
        }
    }

    /// Encodes and queues `packet` for `to`. `unvalidated` is the size of the
    /// datagram being answered when `to` has not proved its address; the reply
    /// is then dropped if it would exceed [`AMPLIFICATION_FACTOR`] times that.
    fn send(&mut self, to: SocketAddr, packet: &Packet<'_>, unvalidated: Option<usize>) {
        if let Some(received) = unvalidated {
            if packet.encoded_len() > AMPLIFICATION_FACTOR * received {
                self.stats.amplification_dropped += 1;
                return;
            }
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

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn drain(s: &mut ServerState) -> Vec<Transmit> {
        std::iter::from_fn(|| s.poll_transmit()).collect()
    }

    fn sign_in(s: &mut ServerState, now: Instant, from: SocketAddr, name: &str) -> Vec<u8> {
        let first = Packet::SignIn {
            request: 1,
            name,
            cookie: &[],
        };
        s.handle_datagram(now, from, &first.to_bytes().unwrap());
        let out = drain(s);
        let cookie = match Packet::decode(&out[0].payload).unwrap() {
            Packet::Retry { cookie, .. } => cookie.to_vec(),
            other => panic!("expected Retry, got {other:?}"),
        };
        let second = Packet::SignIn {
            request: 2,
            name,
            cookie: &cookie,
        };
        s.handle_datagram(now, from, &second.to_bytes().unwrap());
        let out = drain(s);
        match Packet::decode(&out[0].payload).unwrap() {
            Packet::SignInAccepted { token, .. } => token.to_vec(),
            other => panic!("expected SignInAccepted, got {other:?}"),
        }
    }

    #[test]
    fn sign_in_needs_cookie_then_gives_token() {
        let now = Instant::now();
        let mut s = ServerState::new(ServerConfig::with_secret([1; 16]), now);
        let token = sign_in(&mut s, now, addr(1), "Alice");
        assert_eq!(token.len(), TOKEN_LEN);
        assert_eq!(s.lookup("alice"), Some(addr(1)));
        assert_eq!(
            s.poll_event(),
            Some(ServerEvent::SignedIn {
                name: "Alice".into(),
                address: addr(1)
            })
        );
    }

    #[test]
    fn wrong_token_gets_small_error_and_changes_nothing() {
        let now = Instant::now();
        let mut s = ServerState::new(ServerConfig::with_secret([1; 16]), now);
        let _ = sign_in(&mut s, now, addr(1), "Alice");
        let forged = Packet::SignOut {
            request: 9,
            token: &[0; 16],
        };
        s.handle_datagram(now, addr(1), &forged.to_bytes().unwrap());
        let out = drain(&mut s);
        assert_eq!(
            Packet::decode(&out[0].payload).unwrap(),
            Packet::Error {
                request: 9,
                code: ErrorCode::UnknownSession
            }
        );
        assert_eq!(s.user_count(), 1);
    }

    /// Mallory, validated, asks for Alice's name: silence, and a probe to Alice.
    fn conflict(s: &mut ServerState, now: Instant, mallory: SocketAddr) -> Vec<Transmit> {
        let first = Packet::SignIn {
            request: 7,
            name: "ALICE",
            cookie: &[],
        };
        s.handle_datagram(now, mallory, &first.to_bytes().unwrap());
        let cookie = match Packet::decode(&drain(s)[0].payload).unwrap() {
            Packet::Retry { cookie, .. } => cookie.to_vec(),
            other => panic!("expected Retry, got {other:?}"),
        };
        let second = Packet::SignIn {
            request: 8,
            name: "ALICE",
            cookie: &cookie,
        };
        s.handle_datagram(now, mallory, &second.to_bytes().unwrap());
        drain(s)
    }

    #[test]
    fn live_holder_keeps_its_name_and_the_newcomer_is_refused_when_it_answers() {
        let now = Instant::now();
        let mut s = ServerState::new(ServerConfig::with_secret([1; 16]), now);
        let token = sign_in(&mut s, now, addr(1), "Alice");
        let out = conflict(&mut s, now, addr(2));
        assert_eq!(out.len(), 1, "only a probe, nothing to the newcomer yet");
        assert_eq!(out[0].destination, addr(1));
        let Ok(Packet::Probe { request }) = Packet::decode(&out[0].payload) else {
            panic!("expected a probe");
        };
        let answer = Packet::KeepAlive {
            request,
            token: &token,
        };
        s.handle_datagram(now, addr(1), &answer.to_bytes().unwrap());
        let out = drain(&mut s);
        let refused = out.iter().find(|t| t.destination == addr(2)).unwrap();
        assert_eq!(
            Packet::decode(&refused.payload).unwrap(),
            Packet::SignInRefused {
                request: 8,
                reason: RefuseReason::NameInUse,
                holder: "Alice",
            }
        );
        assert_eq!(s.lookup("alice"), Some(addr(1)));
    }

    #[test]
    fn silent_holder_loses_its_name_after_the_probe_timeout() {
        let now = Instant::now();
        let config = ServerConfig::with_secret([1; 16]);
        let probe_timeout = config.probe_timeout;
        let mut s = ServerState::new(config, now);
        let _ = sign_in(&mut s, now, addr(1), "Alice");
        let _ = conflict(&mut s, now, addr(2));
        let mut t = now;
        let mut probes = 1;
        while let Some(next) = s.poll_timeout().filter(|n| *n <= now + probe_timeout) {
            t = next;
            s.handle_timeout(t);
            probes += drain(&mut s).len();
        }
        assert!(t >= now + probe_timeout);
        assert!(probes >= 10, "{probes} probes");
        assert_eq!(s.lookup("alice"), None);
        assert!(std::iter::from_fn(|| s.poll_event()).any(|e| matches!(
            e,
            ServerEvent::SignedOut {
                reason: SignOutReason::Unresponsive,
                ..
            }
        )));
    }

    #[test]
    fn a_name_leaves_both_indexes_when_its_holder_signs_out() {
        let now = Instant::now();
        let mut s = ServerState::new(ServerConfig::with_secret([1; 16]), now);
        let token = sign_in(&mut s, now, addr(1), "Alice");
        let out = Packet::SignOut {
            request: 3,
            token: &token,
        };
        s.handle_datagram(now, addr(1), &out.to_bytes().unwrap());
        drain(&mut s);
        // `AIice` (capital I) has Alice's shape: free now.
        let _ = sign_in(&mut s, now, addr(2), "AIice");
        assert_eq!(s.lookup("AIICE"), Some(addr(2)));
        assert_eq!(s.lookup("Alice"), None, "a lookup goes by key");
        // Signing in under another name replaces the session and frees the
        // old name's key and shape.
        let _ = sign_in(&mut s, now, addr(2), "Bob");
        assert_eq!(s.lookup("AIice"), None);
        let _ = sign_in(&mut s, now, addr(3), "Alice");
        assert_eq!(s.user_count(), 2);
        assert_eq!(s.lookup("alice"), Some(addr(3)));
    }

    #[test]
    fn poll_timeout_moves_forward() {
        let now = Instant::now();
        let mut s = ServerState::new(ServerConfig::with_secret([1; 16]), now);
        let _ = sign_in(&mut s, now, addr(1), "Alice");
        let t = s.poll_timeout().unwrap();
        s.handle_timeout(t);
        assert!(s.poll_timeout().unwrap() > t);
    }
}
