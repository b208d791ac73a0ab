//! The client's session with the directory server.
//!
//! Sign-in is two round trips: a padded Hello earns a Retry with the
//! address-validation cookie and the server's static key; a ServerInit (Noise
//! IK message 1 to that key, carrying the sealed SignIn) earns a ServerResp
//! (message 2, carrying the answer). The key is checked against the one
//! pinned for this server, if any, before anything is sent to it. After that
//! every request and reply is sealed under the session and found by index.
//!
//! A sign-in retried sends the same ServerInit again (the server answers the
//! same message 1 with the same message 2, so a lost answer costs nothing);
//! a new cookie, asked for when the one held is older than
//! [`COOKIE_REFRESH`], starts a fresh handshake, and a late answer to the old
//! one finds nothing and is dropped. What the link holds: the cookie, the
//! server's key, the handshake under way with its ServerInit, and the
//! established session with the server's index for it.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::codec::{AddrList, Packet};
use crate::crypto::{CryptoError, Initiator, PublicKey, StaticKeypair};
use crate::server::SERVER_PROLOGUE;
use crate::session::Session;

/// A cookie older than this is asked for again (the server keeps one good
/// for 30 to 60 s by default).
pub(crate) const COOKIE_REFRESH: Duration = Duration::from_secs(20);

/// A ServerInit is sent this many times at most (the server may be probing
/// the name's holder meanwhile, for a second or so) before a new cookie is
/// asked for.
pub(crate) const MAX_INIT_SENDS: u32 = 6;

/// Why a Retry or ServerResp was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LinkError {
    /// The server's key is not the pinned one.
    KeyChanged {
        /// The key pinned for this server.
        pinned: PublicKey,
        /// The key the server showed.
        offered: PublicKey,
    },
    /// Not for the handshake under way, or did not verify.
    Stray,
}

/// The session with the server (see the module docs).
#[derive(Debug)]
pub(crate) struct ServerLink {
    pinned: Option<PublicKey>,
    server_key: Option<PublicKey>,
    cookie: Option<(Bytes, Instant)>,
    handshake: Option<(u32, Initiator, Bytes)>,
    /// Sends of the handshake's ServerInit so far.
    init_sends: u32,
    session: Option<Session<2>>,
    /// Our index for the established session.
    local_index: u32,
    /// The server's index of the last session we held, to name in a new
    /// sign-in so the server lets it go at once.
    previous: u32,
}

impl ServerLink {
    /// A link to a server whose key must be `pinned`, when given.
    pub(crate) fn new(pinned: Option<PublicKey>) -> Self {
        ServerLink {
            pinned,
            server_key: None,
            cookie: None,
            handshake: None,
            init_sends: 0,
            session: None,
            local_index: 0,
            previous: 0,
        }
    }

    /// The server's key, once it has shown one that passed the pin.
    pub(crate) fn server_key(&self) -> Option<PublicKey> {
        self.server_key
    }

    /// Whether a session is established.
    pub(crate) fn is_established(&self) -> bool {
        self.session.is_some()
    }

    /// The server's index for the established session (0 when there is
    /// none): what an unknown-session error names.
    pub(crate) fn remote_index(&self) -> u32 {
        if self.session.is_some() {
            self.previous
        } else {
            0
        }
    }

    /// Our index for the established session (0 when there is none).
    pub(crate) fn local_index(&self) -> u32 {
        if self.session.is_some() {
            self.local_index
        } else {
            0
        }
    }

    /// Whether a cookie good enough to start a handshake is held.
    pub(crate) fn has_cookie(&self, now: Instant) -> bool {
        self.cookie
            .as_ref()
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) < COOKIE_REFRESH)
    }

    /// Takes a Retry's cookie and key: `Ok(true)` when the cookie is new
    /// (a handshake can start), `Ok(false)` for the one held already (a
    /// duplicate Retry changes nothing).
    pub(crate) fn on_retry(
        &mut self,
        now: Instant,
        cookie: &[u8],
        key: &[u8],
    ) -> Result<bool, LinkError> {
        let offered = PublicKey(key.try_into().map_err(|_| LinkError::Stray)?);
        if let Some(pinned) = self.pinned
            && pinned != offered
        {
            return Err(LinkError::KeyChanged { pinned, offered });
        }
        self.server_key = Some(offered);
        if self.has_cookie(now) && self.cookie.as_ref().is_some_and(|(c, _)| c == cookie) {
            return Ok(false);
        }
        self.cookie = Some((Bytes::copy_from_slice(cookie), now));
        // A new cookie, a new handshake.
        self.handshake = None;
        Ok(true)
    }

    /// The ServerInit of the handshake under way, to send again; after
    /// [`MAX_INIT_SENDS`] unanswered sends, none: the cookie may be stale
    /// (the server restarted), so the next attempt asks for a new one.
    pub(crate) fn pending_init(&mut self) -> Option<Bytes> {
        let init = self.handshake.as_ref().map(|(_, _, init)| init.clone())?;
        self.init_sends += 1;
        if self.init_sends > MAX_INIT_SENDS {
            self.handshake = None;
            self.cookie = None;
            return None;
        }
        Some(init)
    }

    /// Starts a handshake carrying `sign_in` (its `replaces` is filled in
    /// here) and writes the ServerInit into `out`. `None` without a cookie.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn start(
        &mut self,
        identity: &StaticKeypair,
        index: u32,
        seed: [u8; 32],
        request: u32,
        name: &str,
        candidates: &[SocketAddr],
        out: &mut BytesMut,
    ) -> Option<()> {
        let key = self.server_key?;
        let (cookie, _) = self.cookie.as_ref()?;
        let sign_in = Packet::SignIn {
            request,
            name,
            replaces: self.previous,
            candidates: AddrList::Addrs(candidates),
        };
        let mut payload = BytesMut::new();
        sign_in.encode(&mut payload).ok()?;
        let (initiator, msg1) =
            Initiator::start(identity, &key, SERVER_PROLOGUE, seed, &payload).ok()?;
        let init = Packet::ServerInit {
            cookie,
            sender: index,
            handshake: &msg1,
        }
        .to_bytes()
        .ok()?;
        out.extend_from_slice(&init);
        self.handshake = Some((index, initiator, init));
        self.init_sends = 1;
        Some(())
    }

    /// Reads a ServerResp for the handshake under way: the answer's
    /// plaintext (a sealed SignInAccepted or SignInRefused). On acceptance
    /// the caller calls [`ServerLink::establish`].
    pub(crate) fn on_resp(
        &mut self,
        receiver: u32,
        handshake: &[u8],
    ) -> Result<(Vec<u8>, crate::crypto::TransportKeys), LinkError> {
        match self.handshake.take() {
            Some((index, initiator, _)) if index == receiver => initiator
                .finish(handshake)
                .map_err(|_: CryptoError| LinkError::Stray),
            other => {
                self.handshake = other;
                Err(LinkError::Stray)
            }
        }
    }

    /// The sign-in was accepted: the session with the server's index `remote`.
    pub(crate) fn establish(
        &mut self,
        keys: crate::crypto::TransportKeys,
        local: u32,
        remote: u32,
    ) {
        // Trust on first use, for the rest of the run too: the key that
        // answered the first handshake is the only one taken from now on,
        // so a later sign-in (after a restart, or an "unknown session" in
        // the clear that anyone could send) cannot move to another key.
        if let Some(key) = self.server_key {
            self.pinned.get_or_insert(key);
        }
        self.session = Some(Session::new(keys, remote));
        self.local_index = local;
        self.previous = remote;
    }

    /// The session is gone (the server forgot it, or stopped answering).
    /// The next sign-in names it, so the server lets it go at once, and
    /// asks for a new cookie (a restarted server has a new cookie key).
    pub(crate) fn drop_session(&mut self) {
        self.session = None;
        self.handshake = None;
        self.cookie = None;
    }

    /// Seals `packet` for the server into `out`.
    pub(crate) fn seal(&mut self, packet: &Packet<'_>, out: &mut BytesMut) -> Option<()> {
        let session = self.session.as_mut()?;
        let mut plain = BytesMut::with_capacity(packet.encoded_len());
        packet.encode(&mut plain).ok()?;
        session.seal(&plain, out).ok()
    }

    /// Opens a Sealed datagram from the server.
    pub(crate) fn open<'s>(
        &mut self,
        datagram: &[u8],
        counter: u64,
        sealed: &[u8],
        scratch: &'s mut Vec<u8>,
    ) -> Option<&'s [u8]> {
        self.session
            .as_mut()?
            .open(datagram, counter, sealed, scratch)
            .ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::TransportKeys;

    #[test]
    fn a_retry_with_another_key_than_the_pinned_one_is_refused() {
        let now = Instant::now();
        let pinned = PublicKey([1; 32]);
        let mut link = ServerLink::new(Some(pinned));
        assert_eq!(
            link.on_retry(now, b"cookie", &[2; 32]),
            Err(LinkError::KeyChanged {
                pinned,
                offered: PublicKey([2; 32])
            })
        );
        assert!(!link.has_cookie(now));
        assert_eq!(
            link.on_retry(now, b"cookie", &[1; 31]),
            Err(LinkError::Stray)
        );
        assert_eq!(link.on_retry(now, b"cookie", &[1; 32]), Ok(true));
        assert_eq!(
            link.on_retry(now, b"cookie", &[1; 32]),
            Ok(false),
            "a duplicate"
        );
        assert!(link.has_cookie(now));
        assert!(!link.has_cookie(now + COOKIE_REFRESH));
        assert_eq!(link.server_key(), Some(pinned));
    }

    #[test]
    fn the_first_key_that_answers_is_pinned_for_the_rest_of_the_run() {
        let now = Instant::now();
        let mut link = ServerLink::new(None);
        // Before a session, a Retry may show any key (the last one counts).
        assert_eq!(link.on_retry(now, b"a", &[2; 32]), Ok(true));
        assert_eq!(link.on_retry(now, b"b", &[3; 32]), Ok(true));
        link.establish(TransportKeys::from_raw(&[1; 32], &[2; 32]), 1, 2);
        link.drop_session();
        assert_eq!(
            link.on_retry(now, b"c", &[4; 32]),
            Err(LinkError::KeyChanged {
                pinned: PublicKey([3; 32]),
                offered: PublicKey([4; 32])
            })
        );
    }

    #[test]
    fn a_resp_for_another_handshake_is_stray_and_keeps_ours() {
        let now = Instant::now();
        let server = StaticKeypair::generate([9; 32]);
        let me = StaticKeypair::generate([8; 32]);
        let mut link = ServerLink::new(None);
        link.on_retry(now, b"c", &server.public().0).unwrap();
        let mut out = BytesMut::new();
        link.start(&me, 77, [1; 32], 5, "Alice", &[], &mut out)
            .unwrap();
        assert_eq!(link.on_resp(78, &[0; 48]).err(), Some(LinkError::Stray));
        assert!(link.handshake.is_some());
        assert_eq!(link.on_resp(77, &[0; 48]).err(), Some(LinkError::Stray));
        assert!(link.handshake.is_none(), "a failed answer ends the attempt");
    }
}
