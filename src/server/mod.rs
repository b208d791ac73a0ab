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
//! Time: a session not heard from for [`ServerConfig::session_timeout`] is
//! forgotten within a [`ServerConfig::sweep_interval`] after that. The
//! deadlines sit in a timing wheel, so `handle_timeout` costs what is due, not
//! the number of users; `poll_timeout` is the earliest deadline or probe step.
//!
//! The parts, each with its own tests: `directory` (who is signed in, by
//! name, address and id), `expiry` (the timing wheel), `cookie` (address
//! validation), `rate` (per-source limits), `probe` (holder probes). This
//! module turns their outcomes into replies and events.

mod cookie;
mod directory;
mod expiry;
mod probe;
mod rate;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::Transmit;
use crate::codec::{ErrorCode, MAX_DATAGRAM, NameList, Packet, RefuseReason};
use crate::name;
use crate::secret::{Key, addr_bytes, constant_time_eq};

use cookie::Cookies;
use directory::{Directory, User, UserId};
use expiry::ExpiryWheel;
use probe::{Conflict, ProbeStep, Probes};
use rate::RateLimiter;

/// Bytes in a session token and in a cookie.
pub const TOKEN_LEN: usize = 16;
/// A reply to an unvalidated address is at most this many times the size of
/// the datagram it answers.
pub const AMPLIFICATION_FACTOR: usize = 3;

/// How the server behaves. [`ServerConfig::with_secret`] gives the defaults
/// (and `ServerConfig::from_os_entropy`, in [`crate::run`], a secret from the
/// operating system). `Debug` never shows the secret.
#[derive(Clone)]
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

impl std::fmt::Debug for ServerConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerConfig")
            .field("secret", &"..")
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
            .finish()
    }
}

impl ServerConfig {
    /// The defaults, with this secret.
    pub fn with_secret(secret: [u8; 16]) -> Self {
        ServerConfig {
            secret,
            // About 155 bytes a user: a million users is some 155 MB of
            // directory (examples/server_scale measures it).
            max_users: 1_000_000,
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
        /// Where it was.
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
    /// Another address asked for the name and this holder did not answer the probe.
    Unresponsive,
    /// The same address signed in under another name.
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

/// The directory server's state machine. See the [module docs](self) and the
/// crate's sans-IO contract. `Debug` shows it in outline: no keys, and not
/// the datagrams waiting to go out (they carry session tokens).
pub struct ServerState {
    config: ServerConfig,
    key: Key,
    start: Instant,
    cookies: Cookies,
    directory: Directory,
    expiry: ExpiryWheel<UserId>,
    probes: Probes,
    rate: RateLimiter,
    issued: u64,
    out: VecDeque<Transmit>,
    events: VecDeque<ServerEvent>,
    buf: BytesMut,
    /// Reused by `handle_timeout` for the entries the wheel hands back.
    due: Vec<UserId>,
    stats: ServerStats,
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerState")
            .field("config", &self.config)
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
            key,
            start: now,
            cookies,
            directory,
            expiry: ExpiryWheel::new(now, config.sweep_interval),
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
            issued: 0,
            out: VecDeque::new(),
            events: VecDeque::new(),
            buf: BytesMut::with_capacity(16 * MAX_DATAGRAM),
            due: Vec::new(),
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
        self.directory.len()
    }

    /// The address `name` is signed in from, if anyone of that name is.
    pub fn lookup(&self, name: &str) -> Option<SocketAddr> {
        let id = self.directory.by_name(name)?;
        self.directory.get(id).map(|u| u.addr)
    }

    /// Takes one datagram from `from`. Bad input is counted and dropped.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, datagram: &[u8]) {
        self.stats.received += 1;
        if !self.rate.admit(now, from) {
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
                cursor,
            } => {
                if self.authenticate(now, from, token, len, request).is_some() {
                    self.on_list(from, request, cursor);
                }
            }
            Packet::LookupRequest {
                request,
                token,
                name,
            } => {
                if self.authenticate(now, from, token, len, request).is_some() {
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
                if self.authenticate(now, from, token, len, request).is_some() {
                    self.send(from, &Packet::KeepAliveAck { request }, None);
                }
            }
            Packet::SignOut { request, token } => {
                if self.directory.by_addr(&from).is_some() {
                    if let Some(id) = self.authenticate(now, from, token, len, request) {
                        self.remove(id, SignOutReason::Requested);
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

    /// Forgets silent sessions and advances probes whose time has come. Costs
    /// what is due, not the number of users. Calling it early or twice is
    /// harmless.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = std::mem::take(&mut self.due);
        self.expiry.pop_due(now, &mut due);
        for id in due.drain(..) {
            let Some(user) = self.directory.get(id) else {
                continue; // Left since it was scheduled.
            };
            let deadline = self.expires_at(user);
            if deadline <= now {
                self.remove(id, SignOutReason::TimedOut);
            } else {
                self.expiry.schedule(deadline, id);
            }
        }
        self.due = due;
        for (holder, step) in self.probes.step(now) {
            let Some(addr) = self.directory.get(holder).map(|u| u.addr) else {
                continue;
            };
            match step {
                ProbeStep::Resend(request) => self.send(addr, &Packet::Probe { request }, None),
                ProbeStep::Unanswered => self.remove(holder, SignOutReason::Unresponsive),
                ProbeStep::Done => {}
            }
        }
    }

    /// The next datagram to send, oldest first.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.out.pop_front()
    }

    /// When [`ServerState::handle_timeout`] should next be called: the
    /// earliest session deadline or probe step; `None` when the directory is
    /// empty and nothing is being probed.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.expiry.next_deadline(), self.probes.next_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
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

    /// When `user`'s session runs out unless it is heard from again.
    fn expires_at(&self, user: &User) -> Instant {
        self.start + Duration::from_secs(u64::from(user.last_heard)) + self.config.session_timeout
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
        if !self.cookies.verify(now, &from, cookie) {
            self.stats.retries += 1;
            let cookie = self.cookies.mint(now, &from);
            let retry = Packet::Retry {
                request,
                cookie: &cookie,
            };
            self.send(from, &retry, Some(len));
            return;
        }
        // From here on the address is validated: it echoed our cookie.
        if name::validate(name).is_err() {
            self.refuse(from, request, RefuseReason::InvalidName, None);
            return;
        }
        if let Some(id) = self.directory.by_addr(&from) {
            let stamp = self.stamp(now);
            if let Some(user) = self
                .directory
                .get_mut(id)
                .filter(|u| name::same(&u.name, name))
            {
                // A retransmitted sign-in, or the same client signing in
                // again: same session, same token.
                user.last_heard = stamp;
                let token = user.token;
                self.accept(from, request, &token);
                return;
            }
            self.remove(id, SignOutReason::Replaced);
        }
        let holder = self
            .directory
            .by_name(name)
            .or_else(|| self.directory.by_shape(name));
        if let Some(holder) = holder {
            match self.probes.on_conflict(now, holder, from, request) {
                Conflict::Refuse => {
                    self.refuse(from, request, RefuseReason::NameInUse, Some(holder));
                }
                Conflict::Wait => {}
                Conflict::Probe(probe) => {
                    if let Some(addr) = self.directory.get(holder).map(|u| u.addr) {
                        self.send(addr, &Packet::Probe { request: probe }, None);
                    }
                }
            }
            return;
        }
        if self.directory.len() >= self.config.max_users {
            self.refuse(from, request, RefuseReason::ServerFull, None);
            return;
        }
        self.issued += 1;
        let token = self.key.mac(&[
            b"token",
            name::fold(name).as_bytes(),
            &addr_bytes(&from),
            &self.issued.to_be_bytes(),
        ]);
        let user = User {
            name: name.into(),
            token,
            addr: from,
            last_heard: self.stamp(now),
        };
        let deadline = self.expires_at(&user);
        let id = self.directory.insert(user);
        self.expiry.schedule(deadline, id);
        self.events.push_back(ServerEvent::SignedIn {
            name: name.to_owned(),
            address: from,
        });
        self.accept(from, request, &token);
    }

    /// Refuses sign-in `request` from the validated address `to`; for
    /// `NameInUse`, `holder` is the user whose name it clashes with, whose
    /// spelling the refusal carries.
    fn refuse(
        &mut self,
        to: SocketAddr,
        request: u32,
        reason: RefuseReason,
        holder: Option<UserId>,
    ) {
        let name = holder
            .and_then(|id| self.directory.get(id))
            .map(|u| u.name.to_string())
            .unwrap_or_default();
        let refusal = Packet::SignInRefused {
            request,
            reason,
            holder: &name,
        };
        self.send(to, &refusal, None);
    }

    /// Answers sign-in `request` from the validated address `to`.
    fn accept(&mut self, to: SocketAddr, request: u32, token: &[u8]) {
        self.send(to, &Packet::SignInAccepted { request, token }, None);
    }

    /// The user whose session token `token` is, at `from`; the session is
    /// refreshed and counts as an answer to any probe of it. Otherwise a small
    /// error goes back and the request stops here.
    fn authenticate(
        &mut self,
        now: Instant,
        from: SocketAddr,
        token: &[u8],
        len: usize,
        request: u32,
    ) -> Option<UserId> {
        let stamp = self.stamp(now);
        let id = self.directory.by_addr(&from);
        match id.and_then(|id| self.directory.get_mut(id)) {
            Some(user) if constant_time_eq(&user.token, token) => {
                user.last_heard = stamp;
                let id = id?;
                for (to, request) in self.probes.answered(id) {
                    self.refuse(to, request, RefuseReason::NameInUse, Some(id));
                }
                Some(id)
            }
            _ => {
                self.stats.unknown_session += 1;
                let code = ErrorCode::UnknownSession;
                self.send(from, &Packet::Error { request, code }, Some(len));
                None
            }
        }
    }

    fn on_list(&mut self, from: SocketAddr, request: u32, cursor: u32) {
        // Header: type, request, more, cursor, count.
        let mut size = 1 + 4 + 1 + 4 + 2;
        let mut names: Vec<&str> = Vec::new();
        let next = self.directory.page(cursor, |user| {
            if size + 1 + user.name.len() > MAX_DATAGRAM || names.len() == usize::from(u16::MAX) {
                return false;
            }
            size += 1 + user.name.len();
            names.push(&user.name);
            true
        });
        let reply = Packet::ListReply {
            request,
            more: next.is_some(),
            cursor: next.unwrap_or(0),
            names: NameList::Names(&names),
        };
        // Encoding borrows the directory through `names`, so encode here
        // rather than through `send`.
        let start_len = self.buf.len();
        if reply.encode(&mut self.buf).is_ok() {
            let payload = self.buf.split_off(start_len).freeze();
            self.queue(from, payload);
        }
    }

    fn remove(&mut self, id: UserId, reason: SignOutReason) {
        self.probes.remove(id);
        if let Some(user) = self.directory.remove(id) {
            self.events.push_back(ServerEvent::SignedOut {
                name: user.name.into(),
                address: user.addr,
                reason,
            });
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
        let _ = sign_in(&mut s, now + Duration::from_secs(5), addr(2), "Bob");
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
        let config = ServerConfig::with_secret([1; 16]);
        let timeout = config.session_timeout;
        let mut s = ServerState::new(config, now);
        let token = sign_in(&mut s, now, addr(1), "Alice");
        // Keep-alives every 3 s for a minute keep the session.
        let mut t = now;
        for i in 0..20 {
            t = now + Duration::from_secs(3 * i);
            if let Some(due) = s.poll_timeout().filter(|d| *d <= t) {
                s.handle_timeout(due);
            }
            s.handle_timeout(t);
            let keep_alive = Packet::KeepAlive {
                request: 100 + i as u32,
                token: &token,
            };
            s.handle_datagram(t, addr(1), &keep_alive.to_bytes().unwrap());
            drain(&mut s);
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
