//! Sessions with peers: Noise IK handshakes, and the sessions they make,
//! found by our index.
//!
//! * **Initiating**: a PeerInit (message 1 to the key the directory gave for
//!   the peer's name, carrying our name) is sent to every address worth
//!   trying (the connectivity checks: see the `paths` module), and resent to
//!   each with backoff from [`HANDSHAKE_RETRY`] until a PeerResp opens it or
//!   [`HANDSHAKE_TIMEOUT`] passes. The sends are paced: at most
//!   [`PROBE_BURST`] at once and [`PROBES_PER_SECOND`] after, per handshake,
//!   and a host candidate is tried at most [`MAX_HOST_PROBES`] times. The
//!   first PeerResp makes the session, on the path it came by.
//! * **Responding**: a PeerInit proves who sent it (their static key) and
//!   claims a name. The caller accepts it only if the directory binds that
//!   name to that key, from its cache or from a lookup made now; meanwhile
//!   the half-finished handshake waits here (at most [`MAX_VERIFYING`], for
//!   at most [`VERIFY_TIMEOUT`]). A PeerInit sent again (the same ephemeral
//!   key) gets the same PeerResp again, with no new session.
//! * **Sessions**: found by our index in a Sealed packet's header, never by
//!   source address: a peer may move, between IPv4 and IPv6 too, and its
//!   address follows its newest authenticated packet, except that a path to
//!   one of its host candidates (a LAN path) is not left for a worse one
//!   while it was heard from in the last [`PATH_STALE`]. The same handshake
//!   answered again by a better path moves the session there. A responder's session
//!   is not used to send until a packet has opened under it (the initiator
//!   has the keys), so a replayed PeerInit can never displace a working
//!   session. At most [`MAX_SESSIONS_PER_KEY`] are kept per peer key (the
//!   one heard from least lately going first, never the one we send under)
//!   and [`MAX_SESSIONS`] in all (the oldest going first), and none older
//!   than the reject time.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::codec::Packet;
use crate::crypto::{Initiator, PublicKey, Responder, StaticKeypair};
use crate::name;
use crate::session::Session;

/// The Noise prologue of peer handshakes (after the crate's own).
pub(crate) const PEER_PROLOGUE: &[u8] = b" peer";
/// First resend of a PeerInit; doubles up to [`HANDSHAKE_MAX_RETRY`].
pub(crate) const HANDSHAKE_RETRY: Duration = Duration::from_millis(250);
/// Resends of a PeerInit are never further apart than this.
pub(crate) const HANDSHAKE_MAX_RETRY: Duration = Duration::from_secs(1);
/// A handshake unanswered this long is given up.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// Half-finished incoming handshakes waiting for the directory, at most.
pub(crate) const MAX_VERIFYING: usize = 16;
/// An incoming handshake waits this long for the directory at most.
pub(crate) const VERIFY_TIMEOUT: Duration = Duration::from_secs(3);
/// Sessions kept per peer key at most.
pub(crate) const MAX_SESSIONS_PER_KEY: usize = 3;
/// Sessions kept in all at most; beyond, the oldest goes.
pub(crate) const MAX_SESSIONS: usize = 1024;
/// PeerInits one handshake may send at once.
pub(crate) const PROBE_BURST: u32 = 10;
/// PeerInits one handshake sends per second at most, after the burst.
pub(crate) const PROBES_PER_SECOND: u32 = 20;
/// Times one handshake sends to a host candidate at most (the reflexive
/// address, which the server has checked, is tried until the handshake
/// times out).
pub(crate) const MAX_HOST_PROBES: u32 = 4;
/// A better path silent this long gives way to a worse one the peer uses.
pub(crate) const PATH_STALE: Duration = Duration::from_secs(2);
/// While a conversation is in use, a session on a better path than the one
/// we send by gets an empty packet this often (see
/// [`PeerSessions::keepalives_due`]).
pub(crate) const PATH_PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// Peer keys remembered as reached, at most.
pub(crate) const MAX_REMEMBERED: usize = 4096;
/// A peer key is remembered as reached this long after it was last heard.
pub(crate) const REMEMBER_REACHED: Duration = Duration::from_secs(3600);

/// An established session with a peer.
#[derive(Debug)]
pub(crate) struct PeerSession {
    /// The peer's static key, proven by the handshake.
    pub(crate) key: PublicKey,
    /// The peer's name, as the directory bound it to the key.
    pub(crate) name: String,
    /// Where we send: the path the peer was last heard on (see the module
    /// docs for when it changes).
    pub(crate) addr: SocketAddr,
    /// The peer's host candidates, as the directory gave them: paths to
    /// these rank above others.
    hosts: Vec<SocketAddr>,
    /// When the handshake finished.
    pub(crate) created: Instant,
    /// When a packet last opened under it, or the handshake finished.
    pub(crate) last_heard: Instant,
    /// When a packet was last heard on `addr`.
    path_heard: Instant,
    /// When we last sealed a packet under it.
    pub(crate) last_sent: Instant,
    /// Rounds of LAN probes sent under it (see
    /// [`PeerSessions::lan_probes_due`]), and when the last went.
    lan_probes: u32,
    lan_probed_at: Instant,
    /// As initiator: the whole PeerResp that made it, to know it if it comes
    /// again by another path (accepted only while the handshake could still
    /// be under way at the peer, [`HANDSHAKE_TIMEOUT`]).
    resp_again: Option<Box<[u8]>>,
    /// We sent message 1.
    pub(crate) initiator: bool,
    session: Session<32>,
    /// While a responder's session is unconfirmed: the whole PeerInit
    /// handshake that made it, and the PeerResp to send again for it.
    resp: Option<(Box<[u8]>, Bytes)>,
}

impl PeerSession {
    /// Whether we may send under it: always as initiator, as responder once
    /// the initiator has shown it holds the keys.
    pub(crate) fn can_send(&self) -> bool {
        self.initiator || self.session.has_opened()
    }

    /// Packets sealed under it so far.
    pub(crate) fn sealed_count(&self) -> u64 {
        self.session.sealed_count()
    }

    fn rank(&self, addr: SocketAddr) -> u8 {
        u8::from(self.hosts.contains(&addr))
    }

    /// An authenticated packet from `from`: moves the path there unless the
    /// current one ranks higher and was heard from lately.
    fn heard_from(&mut self, now: Instant, from: SocketAddr) {
        if from != self.addr {
            if self.better_path_alive(now, from) {
                return;
            }
            self.addr = from;
        }
        self.path_heard = now;
    }

    /// The same handshake again, from `from`: a better path (a host
    /// candidate we probed) takes over, but is not held by this alone (a
    /// copy proves nothing about the path now: it may be a replay).
    fn handshake_again_from(&mut self, from: SocketAddr) {
        if self.rank(from) > self.rank(self.addr) {
            self.addr = from;
        }
    }

    fn better_path_alive(&self, now: Instant, from: SocketAddr) -> bool {
        self.rank(self.addr) > self.rank(from)
            && now.saturating_duration_since(self.path_heard) < PATH_STALE
    }

    /// Whether to send under `self` rather than `other` (same peer): the
    /// better path while it is alive (heard from within [`PATH_STALE`] of
    /// the other), else the newer session.
    fn preferred_to(&self, other: &PeerSession) -> bool {
        let (mine, theirs) = (self.rank(self.addr), other.rank(other.addr));
        if mine != theirs {
            let (better, worse) = if mine > theirs {
                (self, other)
            } else {
                (other, self)
            };
            let alive = better.path_heard + PATH_STALE >= worse.path_heard;
            return (mine > theirs) == alive;
        }
        self.created > other.created
    }
}

/// One address a handshake is sent to.
#[derive(Debug)]
struct Target {
    addr: SocketAddr,
    /// A host candidate (tried [`MAX_HOST_PROBES`] times at most).
    host: bool,
    next_send: Instant,
    backoff: Duration,
    sends: u32,
}

/// Paces one handshake's PeerInits: a token bucket.
#[derive(Debug)]
struct Pacer {
    tokens: f64,
    at: Instant,
}

impl Pacer {
    fn new(now: Instant) -> Self {
        Pacer {
            tokens: f64::from(PROBE_BURST),
            at: now,
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens =
            (self.tokens + elapsed * f64::from(PROBES_PER_SECOND)).min(f64::from(PROBE_BURST));
        self.at = now;
        // A hair short of a whole token counts (float rounding).
        if self.tokens >= 1.0 - 1e-9 {
            self.tokens = (self.tokens - 1.0).max(0.0);
            true
        } else {
            false
        }
    }

    /// When the next token is due: always after `at` (rounded up, so a
    /// timer set to it never comes due with the token a hair short).
    fn next_token(&self) -> Instant {
        let missing = (1.0 - self.tokens).max(0.0);
        let wait = Duration::from_secs_f64(missing / f64::from(PROBES_PER_SECOND));
        self.at + wait + Duration::from_micros(1)
    }
}

#[derive(Debug)]
struct Initiating {
    /// The peer's folded name.
    name: String,
    /// The peer's name as the directory spells it.
    display: String,
    key: PublicKey,
    targets: Vec<Target>,
    /// The peer's host candidates we probe (for the session's path
    /// ranking).
    hosts: Vec<SocketAddr>,
    pacer: Pacer,
    initiator: Initiator,
    datagram: Bytes,
    started: Instant,
}

impl Initiating {
    /// The PeerInits due at `now`, within the pacer's budget; pushes the
    /// timers of those left for lack of a token to the next one.
    fn due(&mut self, now: Instant, out: &mut Vec<(Bytes, SocketAddr)>) {
        for t in &mut self.targets {
            if now < t.next_send || (t.host && t.sends >= MAX_HOST_PROBES) {
                continue;
            }
            if !self.pacer.take(now) {
                t.next_send = self.pacer.next_token();
                continue;
            }
            t.sends += 1;
            t.next_send = now + t.backoff;
            t.backoff = (t.backoff * 2).min(HANDSHAKE_MAX_RETRY);
            out.push((self.datagram.clone(), t.addr));
        }
    }

    fn next_send(&self) -> Option<Instant> {
        self.targets
            .iter()
            .filter(|t| !t.host || t.sends < MAX_HOST_PROBES)
            .map(|t| t.next_send)
            .min()
    }
}

/// A PeerInit that opened: who it claims to be, waiting for the caller's
/// decision.
#[derive(Debug)]
pub(crate) struct Incoming {
    responder: Responder,
    /// The name the initiator claims (valid, not yet checked against the
    /// directory).
    pub(crate) name: String,
    /// The key it proved.
    pub(crate) key: PublicKey,
    /// Where it came from.
    pub(crate) from: SocketAddr,
    sender: u32,
    /// The whole handshake of its PeerInit.
    handshake: Box<[u8]>,
    at: Instant,
}

/// What a PeerInit led to.
#[derive(Debug)]
pub(crate) enum InitOutcome {
    /// A PeerInit seen before: send this PeerResp again.
    Again(Bytes, SocketAddr),
    /// Already waiting for the directory about this one.
    Waiting,
    /// New and authentic; the caller checks the claimed name.
    New(Box<Incoming>),
    /// Did not open, or claims no valid name.
    Bad,
}

/// The peer sessions and handshakes (see the module docs).
#[derive(Debug, Default)]
pub(crate) struct PeerSessions {
    sessions: BTreeMap<u32, PeerSession>,
    initiating: BTreeMap<u32, Initiating>,
    verifying: Vec<Incoming>,
    /// Per peer key, when a message fragment or acknowledgement last went
    /// either way (keep-alives and handshakes do not count): whether the
    /// conversation is in use. Kept per key, not per session, so that new
    /// sessions, and the eviction of old ones, change nothing.
    used: BTreeMap<PublicKey, Instant>,
    /// Per peer key, when anything authenticated was last heard from it,
    /// kept beyond its sessions (at most [`MAX_REMEMBERED`] keys, for at
    /// most [`REMEMBER_REACHED`]): a peer once reached is not reported as
    /// having no direct path.
    reached: BTreeMap<PublicKey, Instant>,
}

impl PeerSessions {
    /// Whether `index` is ours already (for a new index to avoid).
    pub(crate) fn uses(&self, index: u32) -> bool {
        index == 0 || self.sessions.contains_key(&index) || self.initiating.contains_key(&index)
    }

    /// Sessions held.
    pub(crate) fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Incoming handshakes waiting for the directory.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.verifying.len()
    }

    /// Whether a handshake to the peer `name` (folded) is under way.
    pub(crate) fn is_initiating(&self, name: &str) -> bool {
        self.initiating.values().any(|h| h.name == name)
    }

    /// Starts a handshake to `key` for the peer `name` (spelled `display`),
    /// claiming to be `me`, sent to each of `targets` (best first; `hosts`
    /// are the peer's host candidates); returns the PeerInits to send now.
    /// Replaces any handshake to `name` under way.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn initiate(
        &mut self,
        now: Instant,
        identity: &StaticKeypair,
        index: u32,
        seed: [u8; 32],
        me: &str,
        display: &str,
        key: PublicKey,
        targets: &[SocketAddr],
        hosts: &[SocketAddr],
    ) -> Vec<(Bytes, SocketAddr)> {
        let mut out = Vec::new();
        let name = name::fold(display);
        self.initiating.retain(|_, h| h.name != name);
        let Ok((initiator, msg1)) =
            Initiator::start(identity, &key, PEER_PROLOGUE, seed, me.as_bytes())
        else {
            return out;
        };
        let packet = Packet::PeerInit {
            sender: index,
            handshake: &msg1,
        };
        let Ok(datagram) = packet.to_bytes() else {
            return out;
        };
        let mut h = Initiating {
            name,
            display: display.to_owned(),
            key,
            targets: targets
                .iter()
                .map(|&addr| Target {
                    addr,
                    host: hosts.contains(&addr),
                    next_send: now,
                    backoff: HANDSHAKE_RETRY,
                    sends: 0,
                })
                .collect(),
            hosts: hosts.to_vec(),
            pacer: Pacer::new(now),
            initiator,
            datagram,
            started: now,
        };
        h.due(now, &mut out);
        self.initiating.insert(index, h);
        out
    }

    /// A PeerResp: finishes our handshake `receiver`. Returns the new
    /// session's index and the peer's folded name.
    pub(crate) fn on_resp(
        &mut self,
        now: Instant,
        from: SocketAddr,
        sender: u32,
        receiver: u32,
        handshake: &[u8],
    ) -> Option<(u32, String)> {
        let h = self.initiating.remove(&receiver)?;
        let Ok((_, keys)) = h.initiator.finish(handshake) else {
            return None;
        };
        let name = h.display;
        self.insert(
            receiver,
            PeerSession {
                key: h.key,
                name,
                addr: from,
                hosts: h.hosts,
                created: now,
                last_heard: now,
                path_heard: now,
                last_sent: now,
                lan_probes: 0,
                lan_probed_at: now,
                resp_again: Some(handshake.into()),
                initiator: true,
                session: Session::new(keys, sender),
                resp: None,
            },
        );
        self.reached.insert(h.key, now);
        Some((receiver, h.name))
    }

    /// A PeerResp that finished one of our handshakes already, come again
    /// (by another path, or duplicated) while the handshake could still be
    /// under way at the peer: moves the session to that path if it is better
    /// (one of the host candidates we probed). `false` if it is no such
    /// thing.
    pub(crate) fn on_resp_again(
        &mut self,
        now: Instant,
        from: SocketAddr,
        receiver: u32,
        handshake: &[u8],
    ) -> bool {
        let Some(s) = self.sessions.get_mut(&receiver) else {
            return false;
        };
        let same = s.resp_again.as_deref() == Some(handshake);
        if !same || now.saturating_duration_since(s.created) >= HANDSHAKE_TIMEOUT {
            return false;
        }
        s.handshake_again_from(from);
        true
    }

    /// A PeerInit from `from`.
    pub(crate) fn on_init(
        &mut self,
        now: Instant,
        identity: &StaticKeypair,
        seed: [u8; 32],
        from: SocketAddr,
        sender: u32,
        handshake: &[u8],
    ) -> InitOutcome {
        if let Some(s) = self
            .sessions
            .values_mut()
            .find(|s| s.resp.as_ref().is_some_and(|(h, _)| **h == *handshake))
        {
            // The same handshake by another path: a better one takes over.
            s.handshake_again_from(from);
            if let Some((_, again)) = &s.resp {
                return InitOutcome::Again(again.clone(), from);
            }
        }
        if self.verifying.iter().any(|v| *v.handshake == *handshake) {
            return InitOutcome::Waiting;
        }
        let Ok((responder, payload)) = Responder::accept(identity, PEER_PROLOGUE, seed, handshake)
        else {
            return InitOutcome::Bad;
        };
        let Ok(claimed) = String::from_utf8(payload) else {
            return InitOutcome::Bad;
        };
        if name::validate(&claimed).is_err() {
            return InitOutcome::Bad;
        }
        InitOutcome::New(Box::new(Incoming {
            key: responder.remote(),
            responder,
            name: claimed,
            from,
            sender,
            handshake: handshake.into(),
            at: now,
        }))
    }

    /// Keeps `incoming` until the directory answers for its name; `false`
    /// (and dropped) when [`MAX_VERIFYING`] are waiting already.
    pub(crate) fn hold(&mut self, incoming: Box<Incoming>) -> bool {
        if self.verifying.len() >= MAX_VERIFYING {
            return false;
        }
        self.verifying.push(*incoming);
        true
    }

    /// The held handshakes claiming `name` (folded).
    pub(crate) fn take_held(&mut self, name: &str) -> Vec<Incoming> {
        let (taken, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.verifying)
            .into_iter()
            .partition(|v| name::fold(&v.name) == name);
        self.verifying = kept;
        taken
    }

    /// Answers `incoming`, whose name the directory binds to its key: the
    /// session is made under our `index`; returns the PeerResp to send.
    pub(crate) fn respond(
        &mut self,
        now: Instant,
        index: u32,
        incoming: Incoming,
        display_name: String,
        hosts: &[SocketAddr],
    ) -> Option<(Bytes, SocketAddr)> {
        let (msg2, keys) = incoming.responder.finish(&[]).ok()?;
        let packet = Packet::PeerResp {
            sender: index,
            receiver: incoming.sender,
            handshake: &msg2,
        };
        let datagram = packet.to_bytes().ok()?;
        self.insert(
            index,
            PeerSession {
                key: incoming.key,
                name: display_name,
                addr: incoming.from,
                hosts: hosts.to_vec(),
                created: now,
                last_heard: now,
                path_heard: now,
                last_sent: now,
                lan_probes: 0,
                lan_probed_at: now,
                resp_again: None,
                initiator: false,
                session: Session::new(keys, incoming.sender),
                resp: Some((incoming.handshake, datagram.clone())),
            },
        );
        self.reached.insert(incoming.key, now);
        Some((datagram, incoming.from))
    }

    fn insert(&mut self, index: u32, session: PeerSession) {
        let key = session.key;
        // Over the cap, the session heard from least lately goes, never the
        // one we send under: with introductions both sides make handshakes,
        // and the newest sessions may not be confirmed yet while the peer
        // still sends under an older one.
        let keep = self.best_for(&key);
        let mut same: Vec<(Instant, Instant, u32)> = self
            .sessions
            .iter()
            .filter(|(i, s)| s.key == key && Some(**i) != keep)
            .map(|(i, s)| (s.last_heard, s.created, *i))
            .collect();
        same.sort_unstable();
        let mut held = same.len() + usize::from(keep.is_some());
        for (_, _, stale) in same {
            if held < MAX_SESSIONS_PER_KEY {
                break;
            }
            self.sessions.remove(&stale);
            held -= 1;
        }
        if self.sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = self
                .sessions
                .iter()
                .min_by_key(|(_, s)| s.created)
                .map(|(i, _)| *i)
        {
            // Its peer, if still there, makes a new handshake when it next
            // hears nothing back.
            self.sessions.remove(&oldest);
        }
        self.sessions.insert(index, session);
    }

    /// Opens a Sealed datagram under our session `receiver`: the plaintext,
    /// the session, and whether this packet confirmed it (we may send under
    /// it from now on). The session's path follows the newest packet (see
    /// the module docs), and a responder's session is confirmed by its
    /// first.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open<'s>(
        &mut self,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
        receiver: u32,
        counter: u64,
        sealed: &[u8],
        scratch: &'s mut Vec<u8>,
    ) -> Option<(&'s [u8], &PeerSession, bool)> {
        let s = self.sessions.get_mut(&receiver)?;
        let could_send = s.can_send();
        let plaintext = s.session.open(datagram, counter, sealed, scratch).ok()?;
        if s.session.is_newest(counter) {
            s.heard_from(now, from);
        }
        s.last_heard = now;
        if !plaintext.is_empty() {
            self.used.insert(s.key, now);
        }
        self.reached.insert(s.key, now);
        s.resp = None;
        let confirmed = !could_send && s.can_send();
        Some((plaintext, s, confirmed))
    }

    /// The session to send to `key` under: of those that may send, one on
    /// the best path while that path is alive (a LAN path before a public
    /// one: two handshakes that crossed can leave us a session on each),
    /// else the newest.
    pub(crate) fn best_for(&self, key: &PublicKey) -> Option<u32> {
        let mut best: Option<(u32, &PeerSession)> = None;
        for (i, s) in &self.sessions {
            if s.key != *key || !s.can_send() {
                continue;
            }
            if best.is_none_or(|(_, b)| s.preferred_to(b)) {
                best = Some((*i, s));
            }
        }
        best.map(|(i, _)| i)
    }

    /// The addresses `key`'s sessions send to (each once).
    pub(crate) fn addresses_of(&self, key: &PublicKey) -> Vec<SocketAddr> {
        let mut addrs: Vec<SocketAddr> = Vec::new();
        for s in self.sessions.values().filter(|s| s.key == *key) {
            if !addrs.contains(&s.addr) {
                addrs.push(s.addr);
            }
        }
        addrs
    }

    /// When a message or acknowledgement last went either way with `key`.
    pub(crate) fn last_used(&self, key: &PublicKey) -> Option<Instant> {
        self.used.get(key).copied()
    }

    /// Whether anything authenticated was ever heard from `key` (within
    /// what is remembered: see [`MAX_REMEMBERED`]).
    pub(crate) fn ever_reached(&self, key: &PublicKey) -> bool {
        self.reached.contains_key(key)
    }

    /// Adds `targets` to the handshake to the peer `name` (folded) under
    /// way, if any (the directory told us of new addresses, say after the
    /// peer's NAT gave it a new port); returns the PeerInits to send now.
    /// `None` when no handshake to `name` is under way.
    pub(crate) fn add_targets(
        &mut self,
        now: Instant,
        name: &str,
        targets: &[SocketAddr],
        hosts: &[SocketAddr],
    ) -> Option<Vec<(Bytes, SocketAddr)>> {
        let h = self.initiating.values_mut().find(|h| h.name == name)?;
        for &addr in targets {
            if h.targets.iter().all(|t| t.addr != addr) {
                h.targets.push(Target {
                    addr,
                    host: hosts.contains(&addr),
                    next_send: now,
                    backoff: HANDSHAKE_RETRY,
                    sends: 0,
                });
            }
        }
        for &host in hosts {
            if !h.hosts.contains(&host) {
                h.hosts.push(host);
            }
        }
        let mut out = Vec::new();
        h.due(now, &mut out);
        Some(out)
    }

    /// Gives up any handshake to `key` under way (a session with it works).
    pub(crate) fn cancel_initiating(&mut self, key: &PublicKey) {
        self.initiating.retain(|_, h| h.key != *key);
    }

    /// The session `index`.
    pub(crate) fn get(&self, index: u32) -> Option<&PeerSession> {
        self.sessions.get(&index)
    }

    /// Seals `packet` under session `index` into `out`; returns where to send it.
    pub(crate) fn seal(
        &mut self,
        now: Instant,
        index: u32,
        plaintext: &[u8],
        out: &mut BytesMut,
    ) -> Option<SocketAddr> {
        let s = self.sessions.get_mut(&index)?;
        s.session.seal(plaintext, out).ok()?;
        s.last_sent = now;
        if !plaintext.is_empty() {
            self.used.insert(s.key, now);
        }
        Some(s.addr)
    }

    /// When anything was last heard from `key`, under any session.
    pub(crate) fn last_heard(&self, key: &PublicKey) -> Option<Instant> {
        self.sessions
            .values()
            .filter(|s| s.key == *key)
            .map(|s| s.last_heard)
            .max()
    }

    /// The sessions due a keep-alive at `now`: for each peer key in use (a
    /// message or acknowledgement went either way in the last `in_use`),
    /// the session we send under, if nothing was sent under it for
    /// `interval`; and any session on a better path than that one, every
    /// [`PATH_PROBE_INTERVAL`] (a check that the better path works).
    pub(crate) fn keepalives_due(
        &self,
        now: Instant,
        interval: Duration,
        in_use: Duration,
    ) -> Vec<u32> {
        self.keepalive_times(interval, in_use)
            .into_iter()
            .filter(|(_, at)| *at <= now)
            .map(|(i, _)| i)
            .collect()
    }

    /// The conversations in use at `now` (a message or acknowledgement went
    /// either way within `in_use`) from which nothing at all was heard for
    /// `quiet`, though both sides keep them alive: their path has stopped
    /// answering. Each as (the peer's name, its key).
    pub(crate) fn gone_quiet(
        &self,
        now: Instant,
        in_use: Duration,
        quiet: Duration,
    ) -> Vec<(String, PublicKey)> {
        let mut per_key: BTreeMap<PublicKey, (&str, Instant)> = BTreeMap::new();
        for s in self.sessions.values() {
            let e = per_key.entry(s.key).or_insert((&s.name, s.last_heard));
            e.1 = e.1.max(s.last_heard);
        }
        per_key
            .into_iter()
            .filter(|(k, (_, heard))| {
                self.used
                    .get(k)
                    .is_some_and(|u| now.saturating_duration_since(*u) < in_use)
                    && now.saturating_duration_since(*heard) >= quiet
            })
            .map(|(k, (name, _))| (name.to_owned(), k))
            .collect()
    }

    /// The conversations in use at `now`, as (the peer's name, its key).
    pub(crate) fn in_use(&self, now: Instant, in_use: Duration) -> Vec<(String, PublicKey)> {
        self.gone_quiet(now, in_use, Duration::ZERO)
    }

    /// When the next keep-alive is due (see [`PeerSessions::keepalives_due`]).
    pub(crate) fn next_keepalive(&self, interval: Duration, in_use: Duration) -> Option<Instant> {
        self.keepalive_times(interval, in_use)
            .into_iter()
            .map(|(_, at)| at)
            .min()
    }

    fn keepalive_times(&self, interval: Duration, in_use: Duration) -> Vec<(u32, Instant)> {
        // The session we send under, per key in use, in one pass.
        let mut best: BTreeMap<PublicKey, (u32, &PeerSession)> = BTreeMap::new();
        for (i, s) in &self.sessions {
            if !s.can_send() || !self.used.contains_key(&s.key) {
                continue;
            }
            match best.get(&s.key) {
                Some((_, b)) if !s.preferred_to(b) => {}
                _ => {
                    best.insert(s.key, (*i, s));
                }
            }
        }
        let mut due: Vec<(u32, Instant)> = Vec::new();
        for (key, (i, b)) in &best {
            let Some(used) = self.used.get(key) else {
                continue;
            };
            let until = *used + in_use;
            let at = b.last_sent + interval;
            if at < until {
                due.push((*i, at));
            }
            // A better path than the one we send by (a LAN session that
            // went quiet because both sides sent by another) is checked
            // every [`PATH_PROBE_INTERVAL`]: if it works, the peer hears it
            // and moves there, and so do we.
            for (j, s) in &self.sessions {
                if s.key == *key && s.can_send() && s.rank(s.addr) > b.rank(b.addr) {
                    let at = s.last_sent + PATH_PROBE_INTERVAL;
                    if at < until {
                        due.push((*j, at));
                    }
                }
            }
        }
        due
    }

    /// LAN probes due at `now`: while a conversation is in use and the
    /// session we send under is on a public path though the peer has host
    /// candidates we probe (both in one home: the handshakes' LAN copies may
    /// all have been lost, or the router hairpins and the public path
    /// answered first), an empty packet under that session to each of them,
    /// every [`PATH_PROBE_INTERVAL`], [`MAX_HOST_PROBES`] rounds at most.
    /// If the LAN works, the peer hears us there and moves to it, and so do
    /// we when it answers. Returns (session, address) pairs and counts the
    /// round.
    pub(crate) fn lan_probes_due(
        &mut self,
        now: Instant,
        in_use: Duration,
    ) -> Vec<(u32, SocketAddr)> {
        let mut due = Vec::new();
        for (i, at) in self.lan_probe_times(in_use) {
            if now < at {
                continue;
            }
            if let Some(s) = self.sessions.get_mut(&i) {
                s.lan_probes += 1;
                s.lan_probed_at = now;
                due.extend(s.hosts.iter().map(|h| (i, *h)));
            }
        }
        due
    }

    /// When the next LAN probe is due (see [`PeerSessions::lan_probes_due`]).
    pub(crate) fn next_lan_probe(&self, in_use: Duration) -> Option<Instant> {
        self.lan_probe_times(in_use)
            .into_iter()
            .map(|(_, at)| at)
            .min()
    }

    /// The sessions that may send LAN probes, and when each next may,
    /// within its conversation's use.
    fn lan_probe_times(&self, in_use: Duration) -> Vec<(u32, Instant)> {
        self.used
            .iter()
            .filter_map(|(key, used)| {
                let i = self.best_for(key)?;
                let s = self.sessions.get(&i)?;
                let wanted =
                    s.rank(s.addr) == 0 && !s.hosts.is_empty() && s.lan_probes < MAX_HOST_PROBES;
                let at = s.lan_probed_at + PATH_PROBE_INTERVAL;
                (wanted && at < *used + in_use).then_some((i, at))
            })
            .collect()
    }

    /// Forgets every session and handshake with `key`.
    pub(crate) fn forget_key(&mut self, key: &PublicKey) {
        self.sessions.retain(|_, s| s.key != *key);
        self.initiating.retain(|_, h| h.key != *key);
    }

    /// PeerInits due to be sent again.
    pub(crate) fn resend_due(&mut self, now: Instant) -> Vec<(Bytes, SocketAddr)> {
        let mut due = Vec::new();
        for h in self.initiating.values_mut() {
            h.due(now, &mut due);
        }
        due
    }

    /// Drops what is too old: sessions past `reject_after`, handshakes past
    /// their timeouts.
    pub(crate) fn expire(&mut self, now: Instant, reject_after: Duration) {
        self.sessions
            .retain(|_, s| now.saturating_duration_since(s.created) < reject_after);
        self.initiating
            .retain(|_, h| now.saturating_duration_since(h.started) < HANDSHAKE_TIMEOUT);
        self.verifying
            .retain(|v| now.saturating_duration_since(v.at) < VERIFY_TIMEOUT);
        // A conversation stays in use for its own time, whatever becomes
        // of its sessions (kept no longer than a session lives).
        self.used
            .retain(|_, t| now.saturating_duration_since(*t) < reject_after);
        self.reached
            .retain(|_, t| now.saturating_duration_since(*t) < REMEMBER_REACHED);
        while self.reached.len() > MAX_REMEMBERED {
            let Some(oldest) = self
                .reached
                .iter()
                .min_by_key(|(_, t)| **t)
                .map(|(k, _)| *k)
            else {
                break;
            };
            self.reached.remove(&oldest);
        }
    }

    /// When something here next has a timer: a resend, an expiry.
    pub(crate) fn next_timeout(&self, reject_after: Duration) -> Option<Instant> {
        let resends = self.initiating.values().map(|h| {
            let end = h.started + HANDSHAKE_TIMEOUT;
            h.next_send().map_or(end, |t| t.min(end))
        });
        let sessions = self.sessions.values().map(|s| s.created + reject_after);
        let verifying = self.verifying.iter().map(|v| v.at + VERIFY_TIMEOUT);
        resends.chain(sessions).chain(verifying).min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::TransportKeys;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    /// Alice's side and Bob's, with a finished handshake: (alice, bob,
    /// alice's index, bob's index).
    fn pair(now: Instant) -> (PeerSessions, PeerSessions, u32, u32) {
        pair_with(now, &[addr(2)], &[], &[])
    }

    /// [`pair`], Alice probing `targets` (Bob's `bob_hosts` among them),
    /// Bob knowing Alice's `alice_hosts`.
    fn pair_with(
        now: Instant,
        targets: &[SocketAddr],
        bob_hosts: &[SocketAddr],
        alice_hosts: &[SocketAddr],
    ) -> (PeerSessions, PeerSessions, u32, u32) {
        let alice_key = StaticKeypair::generate([1; 32]);
        let bob_key = StaticKeypair::generate([2; 32]);
        let mut alice = PeerSessions::default();
        let mut bob = PeerSessions::default();
        let sends = alice.initiate(
            now,
            &alice_key,
            11,
            [3; 32],
            "Alice",
            "bob",
            bob_key.public(),
            targets,
            bob_hosts,
        );
        assert_eq!(
            sends.iter().map(|(_, to)| *to).collect::<Vec<_>>(),
            targets,
            "every target at once"
        );
        let init = sends[0].0.clone();
        let Ok(Packet::PeerInit { sender, handshake }) = Packet::decode(&init) else {
            panic!("not a PeerInit");
        };
        let InitOutcome::New(incoming) =
            bob.on_init(now, &bob_key, [4; 32], addr(1), sender, handshake)
        else {
            panic!("not new");
        };
        assert_eq!(incoming.name, "Alice");
        assert_eq!(incoming.key, alice_key.public());
        // The same PeerInit again, once answered, gets the same answer.
        let (resp, to) = bob
            .respond(now, 22, *incoming, "Alice".into(), alice_hosts)
            .unwrap();
        assert_eq!(to, addr(1));
        let InitOutcome::Again(again, _) =
            bob.on_init(now, &bob_key, [5; 32], addr(1), sender, handshake)
        else {
            panic!("a resent PeerInit made a new session");
        };
        assert_eq!(again, resp);
        assert_eq!(bob.len(), 1);
        let Ok(Packet::PeerResp {
            sender,
            receiver,
            handshake,
        }) = Packet::decode(&resp)
        else {
            panic!("not a PeerResp");
        };
        let (index, name) = alice
            .on_resp(now, addr(2), sender, receiver, handshake)
            .unwrap();
        assert_eq!((index, name.as_str()), (11, "bob"));
        (alice, bob, 11, 22)
    }

    fn open(s: &mut PeerSessions, from: SocketAddr, datagram: &[u8]) -> Option<Vec<u8>> {
        open_at(s, Instant::now(), from, datagram)
    }

    fn open_at(
        s: &mut PeerSessions,
        now: Instant,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Option<Vec<u8>> {
        let Ok(Packet::Sealed {
            receiver,
            counter,
            sealed,
        }) = Packet::decode(datagram)
        else {
            return None;
        };
        let mut scratch = Vec::new();
        s.open(now, from, datagram, receiver, counter, sealed, &mut scratch)
            .map(|(p, _, _)| p.to_vec())
    }

    #[test]
    fn probes_are_paced_and_host_candidates_tried_a_bounded_number_of_times() {
        let now = Instant::now();
        let me = StaticKeypair::generate([1; 32]);
        let peer = StaticKeypair::generate([2; 32]);
        let targets: Vec<SocketAddr> = (1..=12).map(addr).collect();
        let hosts = &targets[1..];
        let mut s = PeerSessions::default();
        let first = s.initiate(
            now,
            &me,
            5,
            [3; 32],
            "Alice",
            "bob",
            peer.public(),
            &targets,
            hosts,
        );
        assert_eq!(first.len(), PROBE_BURST as usize, "a burst, not a flood");
        let mut sent = first.len();
        let mut to_hosts = 0;
        let mut t = now;
        let mut per_second = [0usize; 6];
        while t < now + HANDSHAKE_TIMEOUT {
            t += Duration::from_millis(10);
            s.expire(t, Duration::from_secs(180));
            let due = s.resend_due(t);
            per_second[usize::try_from((t - now).as_secs()).unwrap()] += due.len();
            to_hosts += due.iter().filter(|(_, a)| hosts.contains(a)).count();
            sent += due.len();
        }
        assert!(
            per_second
                .iter()
                .all(|n| *n <= (PROBES_PER_SECOND + PROBE_BURST) as usize),
            "{per_second:?}"
        );
        let host_sends = to_hosts + first.iter().filter(|(_, a)| hosts.contains(a)).count();
        assert!(host_sends <= hosts.len() * MAX_HOST_PROBES as usize);
        assert!(
            sent > host_sends,
            "the reflexive address is tried throughout"
        );
        assert!(!s.is_initiating("bob"), "given up at the timeout");
    }

    #[test]
    fn a_lan_path_beats_the_public_one_until_it_goes_quiet() {
        let now = Instant::now();
        let public = addr(2);
        let lan = SocketAddr::from(([192, 168, 1, 11], 5000));
        let alice_lan = SocketAddr::from(([192, 168, 1, 10], 5000));
        let (mut alice, mut bob, a, b) = pair_with(now, &[public, lan], &[lan], &[alice_lan]);
        // Alice took the first answer, by the public path; the same PeerResp
        // by the LAN moves her there.
        assert_eq!(alice.get(a).unwrap().addr, public);
        let mut out = BytesMut::new();
        alice.seal(now, a, b"x", &mut out);
        // (Bob answered her PeerInit from addr(1); it comes again by the LAN.)
        assert_eq!(
            open_at(&mut bob, now, alice_lan, &out).as_deref(),
            Some(&b"x"[..])
        );
        assert_eq!(bob.get(b).unwrap().addr, alice_lan, "a better path");
        // Packets by the public path do not take Bob off the LAN while it
        // is alive...
        let t = now + Duration::from_millis(500);
        let mut out = BytesMut::new();
        alice.seal(t, a, b"y", &mut out);
        assert!(open_at(&mut bob, t, addr(1), &out).is_some());
        assert_eq!(bob.get(b).unwrap().addr, alice_lan);
        // ...but do once the LAN has been quiet a while (Alice left home).
        let t = t + PATH_STALE + Duration::from_millis(1);
        let mut out = BytesMut::new();
        alice.seal(t, a, b"z", &mut out);
        assert!(open_at(&mut bob, t, addr(1), &out).is_some());
        assert_eq!(bob.get(b).unwrap().addr, addr(1));
    }

    #[test]
    fn keepalives_are_due_only_while_the_conversation_is_in_use() {
        let now = Instant::now();
        let (mut alice, _, a, _) = pair(now);
        let every = Duration::from_secs(10);
        let in_use = Duration::from_secs(120);
        assert_eq!(
            alice.next_keepalive(every, in_use),
            None,
            "a handshake alone is no conversation"
        );
        let mut out = BytesMut::new();
        alice.seal(now, a, b"a message", &mut out);
        assert_eq!(alice.keepalives_due(now, every, in_use), Vec::<u32>::new());
        assert_eq!(alice.next_keepalive(every, in_use), Some(now + every));
        assert_eq!(alice.keepalives_due(now + every, every, in_use), vec![a]);
        // A keep-alive (empty) sent: the next is due an interval later.
        let mut out = BytesMut::new();
        alice.seal(now + every, a, b"", &mut out);
        assert_eq!(alice.next_keepalive(every, in_use), Some(now + every * 2));
        // Quiet for the in-use time: no more keep-alives.
        let mut t = now + every;
        while let Some(next) = alice.next_keepalive(every, in_use) {
            t = next;
            let mut out = BytesMut::new();
            alice.seal(t, a, b"", &mut out);
        }
        assert!(t < now + in_use, "{:?}", t - now);
        assert_eq!(
            alice.keepalives_due(now + in_use * 2, every, in_use),
            Vec::<u32>::new()
        );
    }

    #[test]
    fn a_responder_sends_only_after_the_initiator_proved_its_keys_and_follows_moves() {
        let now = Instant::now();
        let (mut alice, mut bob, a, b) = pair(now);
        let alice_key = alice.get(a).unwrap().key;
        let bob_key = bob.get(b).unwrap().key;
        assert_eq!(alice.best_for(&alice_key), Some(a));
        assert_eq!(bob.best_for(&bob_key), None, "unconfirmed");
        let mut out = BytesMut::new();
        assert_eq!(alice.seal(now, a, b"hi", &mut out), Some(addr(2)));
        // It arrives from a new address (Alice moved, or went IPv6).
        let moved = SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1], 7));
        assert_eq!(open(&mut bob, moved, &out).as_deref(), Some(&b"hi"[..]));
        assert_eq!(bob.best_for(&bob_key), Some(b));
        let mut back = BytesMut::new();
        assert_eq!(bob.seal(now, b, b"ack", &mut back), Some(moved));
        // A replay changes nothing, not even the address.
        assert_eq!(open(&mut bob, addr(9), &out), None);
        assert_eq!(bob.get(b).unwrap().addr, moved);
    }

    fn session(key: u8, created: Instant) -> PeerSession {
        PeerSession {
            key: PublicKey([key; 32]),
            name: "x".into(),
            addr: addr(1),
            hosts: Vec::new(),
            created,
            last_heard: created,
            path_heard: created,
            last_sent: created,
            lan_probes: 0,
            lan_probed_at: created,
            resp_again: None,
            initiator: true,
            session: Session::new(TransportKeys::from_raw(&[1; 32], &[2; 32]), 1),
            resp: None,
        }
    }

    #[test]
    fn a_lan_session_is_preferred_only_while_its_path_is_alive() {
        // Two handshakes crossed: one session on the LAN, one public. Then
        // Alice walks out of the house: only the public one hears anything.
        let now = Instant::now();
        let lan = SocketAddr::from(([192, 168, 1, 11], 5000));
        let mut s = PeerSessions::default();
        let mut on_lan = session(7, now);
        on_lan.hosts = vec![lan];
        on_lan.addr = lan;
        s.insert(1, on_lan);
        s.insert(2, session(7, now + Duration::from_millis(10)));
        let key = PublicKey([7; 32]);
        assert_eq!(s.best_for(&key), Some(1), "the LAN, though older");
        let later = now + PATH_STALE + Duration::from_secs(1);
        if let Some(public) = s.sessions.get_mut(&2) {
            public.heard_from(later, addr(1));
        }
        assert_eq!(s.best_for(&key), Some(2), "the LAN path went quiet");
        // A copy of the LAN handshake moves nothing back.
        if let Some(l) = s.sessions.get_mut(&1) {
            l.handshake_again_from(lan);
        }
        assert_eq!(s.best_for(&key), Some(2));
    }

    #[test]
    fn the_pacer_never_schedules_a_token_that_is_not_there() {
        // Wake times that leave the bucket a hair short of a token (float
        // rounding) made a timer due at once, again and again.
        let start = Instant::now();
        for step_us in [36_519_104u64, 13_480_896, 49_999, 50_001, 1, 7_777] {
            let mut p = Pacer::new(start);
            let mut now = start;
            while p.take(now) {}
            for _ in 0..50 {
                let next = p.next_token();
                assert!(next > now, "a timer in the past or present");
                now = next.max(now + Duration::from_nanos(step_us));
                assert!(p.take(now), "the token is there when promised");
            }
        }
    }

    #[test]
    fn sessions_are_capped_per_key_and_in_all_oldest_first() {
        let now = Instant::now();
        let mut s = PeerSessions::default();
        for i in 0..5u32 {
            s.insert(i + 1, session(7, now + Duration::from_secs(u64::from(i))));
        }
        assert_eq!(s.len(), MAX_SESSIONS_PER_KEY);
        assert_eq!(s.best_for(&PublicKey([7; 32])), Some(5), "the newest stays");
        let mut s = PeerSessions::default();
        for i in 0..=u32::try_from(MAX_SESSIONS).unwrap() {
            let key = u8::try_from(i % 251).unwrap();
            s.insert(
                i + 1,
                session(key, now + Duration::from_millis(u64::from(i))),
            );
        }
        assert!(s.len() <= MAX_SESSIONS);
        assert!(s.get(1).is_none(), "the oldest went");
    }

    #[test]
    fn sessions_expire_and_per_key_count_is_capped() {
        let now = Instant::now();
        let (mut alice, _, a, _) = pair(now);
        let key = alice.get(a).unwrap().key;
        let reject = Duration::from_secs(180);
        assert_eq!(alice.next_timeout(reject), Some(now + reject));
        alice.expire(now + reject, reject);
        assert_eq!(alice.best_for(&key), None);
        assert_eq!(alice.len(), 0);
    }
}
