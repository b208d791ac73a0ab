//! Clients done by hand, for tests that play an attacker or a broken peer:
//! the v2 handshakes and sealing written out with the crate's crypto, so a
//! test can send what a real client never would (an invalid name, a replay,
//! a forged claim) and see what comes back.

use std::net::SocketAddr;

use bytes::BytesMut;
use udpchat::codec::{Packet, SEALED_HEADER_LEN};
use udpchat::crypto::{Initiator, PublicKey, StaticKeypair, TransportKeys};

use super::{SERVER_ADDR, Sim, bytes32, fnv, secs};

/// The Noise prologue peers use (private to the client; the same bytes).
pub const PEER_PROLOGUE: &[u8] = b" peer";

/// A session made by hand: seal with [`RawSession::seal`].
pub struct RawSession {
    /// The keys.
    pub keys: TransportKeys,
    /// The other side's index.
    pub remote: u32,
    /// The next counter.
    pub counter: u64,
}

impl RawSession {
    /// A whole Sealed datagram carrying `plaintext`.
    pub fn seal(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(SEALED_HEADER_LEN + plaintext.len() + 16);
        out.push(0x05);
        out.extend_from_slice(&self.remote.to_be_bytes());
        out.extend_from_slice(&self.counter.to_be_bytes());
        let len = u16::try_from(plaintext.len() + 16).expect("fits a datagram");
        out.extend_from_slice(&len.to_be_bytes());
        let header = out.clone();
        self.keys
            .seal_into(self.counter, &header, plaintext, &mut out);
        self.counter += 1;
        out
    }

    /// A sealed packet.
    pub fn seal_packet(&mut self, packet: &Packet<'_>) -> Vec<u8> {
        let mut plain = BytesMut::new();
        packet.encode(&mut plain).expect("encodes");
        self.seal(&plain)
    }
}

/// Message 1 of a sign-in as `name` with the key `secret`, to the server's
/// `server_key`, and the ServerInit that carries it (index `sender`).
pub fn server_init(
    secret: [u8; 32],
    server_key: &PublicKey,
    name: &str,
    cookie: &[u8],
    sender: u32,
    seed: [u8; 32],
) -> (Initiator, Vec<u8>) {
    let payload = Packet::SignIn {
        request: 2,
        name,
        replaces: 0,
        candidates: udpchat::AddrList::EMPTY,
    }
    .to_bytes()
    .expect("encodes");
    let me = StaticKeypair::from_secret(secret);
    let (initiator, msg1) = Initiator::start(
        &me,
        server_key,
        udpchat::server::SERVER_PROLOGUE,
        seed,
        &payload,
    )
    .expect("handshake starts");
    let init = Packet::ServerInit {
        cookie,
        sender,
        handshake: &msg1,
    }
    .to_bytes()
    .expect("encodes");
    (initiator, init.to_vec())
}

/// What a hand-made sign-in got.
pub enum Signed {
    /// Accepted: the session.
    In(RawSession),
    /// Refused, with the answer's plaintext.
    Refused(Vec<u8>),
    /// No answer.
    Nothing,
}

impl Sim {
    /// The raw node `label` signs in as `name` with the key `secret`, by
    /// hand: Hello, Retry, ServerInit, ServerResp, each a second of virtual
    /// time apart.
    pub fn raw_sign_in(&mut self, label: &str, name: &str, secret: [u8; 32]) -> Signed {
        let addr = self.addr(label);
        let seen = self.inbox(label).len();
        self.inject_packet(addr, SERVER_ADDR, &Packet::Hello { request: 1 });
        self.run_for(secs(1));
        let retry =
            self.inbox(label)[seen..]
                .iter()
                .find_map(|(_, _, b)| match Packet::decode(b) {
                    Ok(Packet::Retry { cookie, key, .. }) => Some((cookie.to_vec(), key.to_vec())),
                    _ => None,
                });
        let Some((cookie, key)) = retry else {
            return Signed::Nothing;
        };
        let server_key = PublicKey(key.try_into().expect("a 32-byte key"));
        let seed = bytes32(fnv(label.as_bytes()) ^ self.steps());
        let (initiator, init) = server_init(secret, &server_key, name, &cookie, 77, seed);
        let seen = self.inbox(label).len();
        self.inject(addr, SERVER_ADDR, init);
        self.run_for(secs(1));
        let resp = self.inbox(label)[seen..]
            .iter()
            .find_map(|(_, _, b)| match Packet::decode(b) {
                Ok(Packet::ServerResp {
                    sender, handshake, ..
                }) => Some((sender, handshake.to_vec())),
                _ => None,
            });
        let Some((sender, handshake)) = resp else {
            return Signed::Nothing;
        };
        let (answer, keys) = initiator
            .finish(&handshake)
            .expect("a ServerResp that opens");
        match Packet::decode(&answer) {
            Ok(Packet::SignInAccepted { .. }) => Signed::In(RawSession {
                keys,
                remote: sender,
                counter: 0,
            }),
            _ => Signed::Refused(answer),
        }
    }

    /// The raw node `label`, holding the key `secret`, makes a peer
    /// handshake to `to` (whose key is `to_key`) claiming to be `claimed`.
    pub fn raw_peer_init(
        &mut self,
        label: &str,
        secret: [u8; 32],
        to: SocketAddr,
        to_key: PublicKey,
        claimed: &str,
    ) -> Initiator {
        let addr = self.addr(label);
        let me = StaticKeypair::from_secret(secret);
        let seed = bytes32(fnv(claimed.as_bytes()) ^ self.steps());
        let (initiator, msg1) =
            Initiator::start(&me, &to_key, PEER_PROLOGUE, seed, claimed.as_bytes())
                .expect("handshake starts");
        let init = Packet::PeerInit {
            sender: 5,
            handshake: &msg1,
        };
        self.inject_packet(addr, to, &init);
        initiator
    }

    /// [`Sim::raw_peer_init`], then a second of virtual time for the answer:
    /// the session, if `to` answered.
    pub fn raw_peer_session(
        &mut self,
        label: &str,
        secret: [u8; 32],
        to: SocketAddr,
        to_key: PublicKey,
        claimed: &str,
    ) -> Option<RawSession> {
        let seen = self.inbox(label).len();
        let initiator = self.raw_peer_init(label, secret, to, to_key, claimed);
        self.run_for(secs(1));
        let (sender, handshake) =
            self.inbox(label)[seen..]
                .iter()
                .find_map(|(_, from, b)| match Packet::decode(b) {
                    Ok(Packet::PeerResp {
                        sender, handshake, ..
                    }) if *from == to => Some((sender, handshake.to_vec())),
                    _ => None,
                })?;
        let (_, keys) = initiator.finish(&handshake).ok()?;
        Some(RawSession {
            keys,
            remote: sender,
            counter: 0,
        })
    }
}
