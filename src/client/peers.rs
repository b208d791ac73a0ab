//! Sessions with peers: Noise IK handshakes, and the sessions they make,
//! found by our index.
//!
//! * **Initiating**: a PeerInit (message 1 to the key the directory gave for
//!   the peer's name, carrying our name) is sent, and resent with backoff
//!   from [`HANDSHAKE_RETRY`] until a PeerResp opens it or
//!   [`HANDSHAKE_TIMEOUT`] passes.
//! * **Responding**: a PeerInit proves who sent it (their static key) and
//!   claims a name. The caller accepts it only if the directory binds that
//!   name to that key, from its cache or from a lookup made now; meanwhile
//!   the half-finished handshake waits here (at most [`MAX_VERIFYING`], for
//!   at most [`VERIFY_TIMEOUT`]). A PeerInit sent again (the same ephemeral
//!   key) gets the same PeerResp again, with no new session.
//! * **Sessions**: found by our index in a Sealed packet's header, never by
//!   source address: a peer may move, between IPv4 and IPv6 too, and its
//!   address follows its newest authenticated packet. A responder's session
//!   is not used to send until a packet has opened under it (the initiator
//!   has the keys), so a replayed PeerInit can never displace a working
//!   session. At most [`MAX_SESSIONS_PER_KEY`] are kept per peer key and
//!   [`MAX_SESSIONS`] in all, the oldest going first, and none older than
//!   the reject time.

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

/// An established session with a peer.
#[derive(Debug)]
pub(crate) struct PeerSession {
    /// The peer's static key, proven by the handshake.
    pub(crate) key: PublicKey,
    /// The peer's name, as the directory bound it to the key.
    pub(crate) name: String,
    /// Where the peer's newest authenticated packet came from.
    pub(crate) addr: SocketAddr,
    /// When the handshake finished.
    pub(crate) created: Instant,
    /// We sent message 1.
    pub(crate) initiator: bool,
    session: Session<32>,
    /// While a responder's session is unconfirmed: the ephemeral key of the
    /// PeerInit that made it, and the PeerResp to send again for it.
    resp: Option<([u8; 32], Bytes)>,
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
}

#[derive(Debug)]
struct Initiating {
    /// The peer's folded name.
    name: String,
    key: PublicKey,
    addr: SocketAddr,
    initiator: Initiator,
    datagram: Bytes,
    started: Instant,
    next_send: Instant,
    backoff: Duration,
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
    ephemeral: [u8; 32],
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

    /// Starts a handshake to `key` at `addr` for the peer `name` (folded),
    /// claiming to be `me`; returns the PeerInit to send.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn initiate(
        &mut self,
        now: Instant,
        identity: &StaticKeypair,
        index: u32,
        seed: [u8; 32],
        me: &str,
        name: &str,
        key: PublicKey,
        addr: SocketAddr,
    ) -> Option<Bytes> {
        self.initiating.retain(|_, h| h.name != name);
        let (initiator, msg1) =
            Initiator::start(identity, &key, PEER_PROLOGUE, seed, me.as_bytes()).ok()?;
        let packet = Packet::PeerInit {
            sender: index,
            handshake: &msg1,
        };
        let datagram = packet.to_bytes().ok()?;
        self.initiating.insert(
            index,
            Initiating {
                name: name.to_owned(),
                key,
                addr,
                initiator,
                datagram: datagram.clone(),
                started: now,
                next_send: now + HANDSHAKE_RETRY,
                backoff: HANDSHAKE_RETRY,
            },
        );
        Some(datagram)
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
        display_name: impl FnOnce(&str) -> String,
    ) -> Option<(u32, String)> {
        let h = self.initiating.remove(&receiver)?;
        let Ok((_, keys)) = h.initiator.finish(handshake) else {
            return None;
        };
        let name = display_name(&h.name);
        self.insert(
            receiver,
            PeerSession {
                key: h.key,
                name,
                addr: from,
                created: now,
                initiator: true,
                session: Session::new(keys, sender),
                resp: None,
            },
        );
        Some((receiver, h.name))
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
        let Some(ephemeral) = handshake
            .get(..32)
            .and_then(|e| <[u8; 32]>::try_from(e).ok())
        else {
            return InitOutcome::Bad;
        };
        if let Some(again) = self
            .sessions
            .values()
            .find_map(|s| s.resp.as_ref().filter(|(e, _)| *e == ephemeral))
        {
            return InitOutcome::Again(again.1.clone(), from);
        }
        if self.verifying.iter().any(|v| v.ephemeral == ephemeral) {
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
            ephemeral,
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
                created: now,
                initiator: false,
                session: Session::new(keys, incoming.sender),
                resp: Some((incoming.ephemeral, datagram.clone())),
            },
        );
        Some((datagram, incoming.from))
    }

    fn insert(&mut self, index: u32, session: PeerSession) {
        let key = session.key;
        let mut same: Vec<(Instant, u32)> = self
            .sessions
            .iter()
            .filter(|(_, s)| s.key == key)
            .map(|(i, s)| (s.created, *i))
            .collect();
        same.sort_unstable();
        while same.len() >= MAX_SESSIONS_PER_KEY {
            let (_, oldest) = same.remove(0);
            self.sessions.remove(&oldest);
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

    /// Opens a Sealed datagram under our session `receiver`: the plaintext
    /// and the session. The session's address follows the newest packet,
    /// and a responder's session is confirmed by its first.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn open<'s>(
        &mut self,
        from: SocketAddr,
        datagram: &[u8],
        receiver: u32,
        counter: u64,
        sealed: &[u8],
        scratch: &'s mut Vec<u8>,
    ) -> Option<(&'s [u8], &PeerSession)> {
        let s = self.sessions.get_mut(&receiver)?;
        let plaintext = s.session.open(datagram, counter, sealed, scratch).ok()?;
        if s.session.is_newest(counter) {
            s.addr = from;
        }
        s.resp = None;
        Some((plaintext, s))
    }

    /// The session to send to `key` under: the newest that may send.
    pub(crate) fn best_for(&self, key: &PublicKey) -> Option<u32> {
        self.sessions
            .iter()
            .filter(|(_, s)| s.key == *key && s.can_send())
            .max_by_key(|(_, s)| s.created)
            .map(|(i, _)| *i)
    }

    /// The session `index`.
    pub(crate) fn get(&self, index: u32) -> Option<&PeerSession> {
        self.sessions.get(&index)
    }

    /// Seals `packet` under session `index` into `out`; returns where to send it.
    pub(crate) fn seal(
        &mut self,
        index: u32,
        plaintext: &[u8],
        out: &mut BytesMut,
    ) -> Option<SocketAddr> {
        let s = self.sessions.get_mut(&index)?;
        s.session.seal(plaintext, out).ok()?;
        Some(s.addr)
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
            if now >= h.next_send {
                h.backoff = (h.backoff * 2).min(HANDSHAKE_MAX_RETRY);
                h.next_send = now + h.backoff;
                due.push((h.datagram.clone(), h.addr));
            }
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
    }

    /// When something here next has a timer: a resend, an expiry.
    pub(crate) fn next_timeout(&self, reject_after: Duration) -> Option<Instant> {
        let resends = self
            .initiating
            .values()
            .map(|h| h.next_send.min(h.started + HANDSHAKE_TIMEOUT));
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
        let alice_key = StaticKeypair::generate([1; 32]);
        let bob_key = StaticKeypair::generate([2; 32]);
        let mut alice = PeerSessions::default();
        let mut bob = PeerSessions::default();
        let init = alice
            .initiate(
                now,
                &alice_key,
                11,
                [3; 32],
                "Alice",
                "bob",
                bob_key.public(),
                addr(2),
            )
            .unwrap();
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
        let (resp, to) = bob.respond(now, 22, *incoming, "Alice".into()).unwrap();
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
            .on_resp(now, addr(2), sender, receiver, handshake, |n| n.to_owned())
            .unwrap();
        assert_eq!((index, name.as_str()), (11, "bob"));
        (alice, bob, 11, 22)
    }

    fn open(s: &mut PeerSessions, from: SocketAddr, datagram: &[u8]) -> Option<Vec<u8>> {
        let Ok(Packet::Sealed {
            receiver,
            counter,
            sealed,
        }) = Packet::decode(datagram)
        else {
            return None;
        };
        let mut scratch = Vec::new();
        s.open(from, datagram, receiver, counter, sealed, &mut scratch)
            .map(|(p, _)| p.to_vec())
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
        assert_eq!(alice.seal(a, b"hi", &mut out), Some(addr(2)));
        // It arrives from a new address (Alice moved, or went IPv6).
        let moved = SocketAddr::from(([0x2001, 0xdb8, 0, 0, 0, 0, 0, 1], 7));
        assert_eq!(open(&mut bob, moved, &out).as_deref(), Some(&b"hi"[..]));
        assert_eq!(bob.best_for(&bob_key), Some(b));
        let mut back = BytesMut::new();
        assert_eq!(bob.seal(b, b"ack", &mut back), Some(moved));
        // A replay changes nothing, not even the address.
        assert_eq!(open(&mut bob, addr(9), &out), None);
        assert_eq!(bob.get(b).unwrap().addr, moved);
    }

    fn session(key: u8, created: Instant) -> PeerSession {
        PeerSession {
            key: PublicKey([key; 32]),
            name: "x".into(),
            addr: addr(1),
            created,
            initiator: true,
            session: Session::new(TransportKeys::from_raw(&[1; 32], &[2; 32]), 1),
            resp: None,
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
