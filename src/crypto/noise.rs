//! The Noise IK handshake, with the ephemeral keys drawn from a seed.
//!
//! `Noise_IK_25519_ChaChaPoly_BLAKE2s`: the initiator knows the responder's
//! static key (from the directory, or pinned for the server) and sends its own
//! static key encrypted in message 1, with a payload; the responder learns who
//! is calling from message 1, may check that key before it answers (asking the
//! directory whether that key belongs to the claimed name), and answers with
//! message 2. Both then hold [`TransportKeys`]. One round trip.
//!
//! Message 1 is `e (32) ‖ s (32 + 16) ‖ payload + 16`; message 2 is
//! `e (32) ‖ payload + 16`. Everything a peer sends may be forged: every
//! failure is an error value, never a panic.

use snow::params::NoiseParams;
use snow::resolvers::{CryptoResolver, DefaultResolver};
use snow::types::{Cipher, Dh, Hash, Random};
use snow::{Builder, HandshakeState};

use super::CryptoError;
use super::keys::{KEY_LEN, PublicKey, StaticKeypair};
use super::rng::SeededRng;
use super::transport::TransportKeys;

/// The Noise protocol name.
pub const PATTERN: &str = "Noise_IK_25519_ChaChaPoly_BLAKE2s";

/// What every handshake's prologue starts with: a different protocol, or a
/// different version of this one, cannot complete a handshake with us.
pub const PROLOGUE: &[u8] = b"udpchat v2";

/// Bytes message 1 adds to its payload.
pub const MSG1_OVERHEAD: usize = 32 + (32 + 16) + 16;

/// Bytes message 2 adds to its payload.
pub const MSG2_OVERHEAD: usize = 32 + 16;

/// The longest handshake message snow handles.
const MAX_MESSAGE: usize = 65_535;

/// Snow's default primitives, with randomness from our seed.
struct Seeded(std::sync::Mutex<Option<SeededRng>>);

impl CryptoResolver for Seeded {
    fn resolve_rng(&self) -> Option<Box<dyn Random>> {
        let rng = self.0.lock().ok()?.take()?;
        Some(Box::new(rng))
    }
    fn resolve_dh(&self, choice: &snow::params::DHChoice) -> Option<Box<dyn Dh>> {
        DefaultResolver.resolve_dh(choice)
    }
    fn resolve_hash(&self, choice: &snow::params::HashChoice) -> Option<Box<dyn Hash>> {
        DefaultResolver.resolve_hash(choice)
    }
    fn resolve_cipher(&self, choice: &snow::params::CipherChoice) -> Option<Box<dyn Cipher>> {
        DefaultResolver.resolve_cipher(choice)
    }
}

fn builder<'a>(
    local: &'a StaticKeypair,
    prologue: &'a [u8],
    seed: [u8; 32],
) -> Result<Builder<'a>, CryptoError> {
    let params: NoiseParams = PATTERN.parse().map_err(|_| CryptoError::Handshake)?;
    let resolver = Seeded(std::sync::Mutex::new(Some(SeededRng::new(seed))));
    Builder::with_resolver(params, Box::new(resolver))
        .local_private_key(local.secret_bytes())
        .and_then(|b| b.prologue(prologue))
        .map_err(|_| CryptoError::Handshake)
}

/// The full prologue: ours, then the caller's.
fn prologue(extra: &[u8]) -> Vec<u8> {
    [PROLOGUE, extra].concat()
}

fn split(hs: &mut HandshakeState, initiator: bool) -> TransportKeys {
    let (i_to_r, r_to_i) = hs.dangerously_get_raw_split();
    if initiator {
        TransportKeys::from_raw(&i_to_r, &r_to_i)
    } else {
        TransportKeys::from_raw(&r_to_i, &i_to_r)
    }
}

/// The calling side, between message 1 and message 2.
pub struct Initiator {
    hs: HandshakeState,
}

impl std::fmt::Debug for Initiator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Initiator(..)")
    }
}

impl Initiator {
    /// Starts a handshake from `local` to `remote`, with `payload` in
    /// message 1 (encrypted to `remote`'s static key; not forward-secret and
    /// replayable, so put nothing there that must not be replayed).
    /// `prologue` must match the responder's. Returns the initiator and
    /// message 1.
    pub fn start(
        local: &StaticKeypair,
        remote: &PublicKey,
        prologue_extra: &[u8],
        seed: [u8; 32],
        payload: &[u8],
    ) -> Result<(Initiator, Vec<u8>), CryptoError> {
        let prologue = prologue(prologue_extra);
        let mut hs = builder(local, &prologue, seed)?
            .remote_public_key(&remote.0)
            .and_then(Builder::build_initiator)
            .map_err(|_| CryptoError::Handshake)?;
        let mut msg = vec![0u8; MSG1_OVERHEAD + payload.len()];
        let n = hs
            .write_message(payload, &mut msg)
            .map_err(|_| CryptoError::Handshake)?;
        msg.truncate(n);
        Ok((Initiator { hs }, msg))
    }

    /// Reads message 2: the responder's payload and the session's keys.
    pub fn finish(mut self, msg2: &[u8]) -> Result<(Vec<u8>, TransportKeys), CryptoError> {
        let mut payload = vec![0u8; msg2.len().min(MAX_MESSAGE)];
        let n = self
            .hs
            .read_message(msg2, &mut payload)
            .map_err(|_| CryptoError::Forged)?;
        payload.truncate(n);
        if !self.hs.is_handshake_finished() {
            return Err(CryptoError::Handshake);
        }
        Ok((payload, split(&mut self.hs, true)))
    }
}

/// The called side, between reading message 1 and writing message 2.
pub struct Responder {
    hs: HandshakeState,
    remote: PublicKey,
}

impl std::fmt::Debug for Responder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Responder")
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

impl Responder {
    /// Reads message 1 addressed to `local`: who is calling (their static
    /// key, proven) and their payload.
    pub fn accept(
        local: &StaticKeypair,
        prologue_extra: &[u8],
        seed: [u8; 32],
        msg1: &[u8],
    ) -> Result<(Responder, Vec<u8>), CryptoError> {
        if msg1.len() < MSG1_OVERHEAD {
            return Err(CryptoError::TooShort);
        }
        let prologue = prologue(prologue_extra);
        let mut hs = builder(local, &prologue, seed)?
            .build_responder()
            .map_err(|_| CryptoError::Handshake)?;
        let mut payload = vec![0u8; msg1.len().min(MAX_MESSAGE)];
        let n = hs
            .read_message(msg1, &mut payload)
            .map_err(|_| CryptoError::Forged)?;
        payload.truncate(n);
        let mut remote = [0u8; KEY_LEN];
        let rs = hs.get_remote_static().ok_or(CryptoError::Handshake)?;
        if rs.len() != KEY_LEN {
            return Err(CryptoError::Handshake);
        }
        remote.copy_from_slice(rs);
        Ok((
            Responder {
                hs,
                remote: PublicKey(remote),
            },
            payload,
        ))
    }

    /// The caller's static key, as message 1 proved it.
    pub fn remote(&self) -> PublicKey {
        self.remote
    }

    /// Writes message 2 with `payload`: the session's keys and the message.
    pub fn finish(mut self, payload: &[u8]) -> Result<(Vec<u8>, TransportKeys), CryptoError> {
        let mut msg = vec![0u8; MSG2_OVERHEAD + payload.len()];
        let n = self
            .hs
            .write_message(payload, &mut msg)
            .map_err(|_| CryptoError::Handshake)?;
        msg.truncate(n);
        Ok((msg, split(&mut self.hs, false)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (StaticKeypair, StaticKeypair) {
        (
            StaticKeypair::generate([1; 32]),
            StaticKeypair::generate([2; 32]),
        )
    }

    fn handshake(seed_i: u8, seed_r: u8) -> (Vec<u8>, Vec<u8>, TransportKeys, TransportKeys) {
        let (alice, bob) = keys();
        let (init, m1) =
            Initiator::start(&alice, &bob.public(), b"x", [seed_i; 32], b"I am Alice").unwrap();
        assert_eq!(m1.len(), MSG1_OVERHEAD + 10);
        let (resp, payload) = Responder::accept(&bob, b"x", [seed_r; 32], &m1).unwrap();
        assert_eq!(payload, b"I am Alice");
        assert_eq!(resp.remote(), alice.public());
        let (m2, bob_keys) = resp.finish(b"ok").unwrap();
        assert_eq!(m2.len(), MSG2_OVERHEAD + 2);
        let (payload, alice_keys) = init.finish(&m2).unwrap();
        assert_eq!(payload, b"ok");
        (m1, m2, alice_keys, bob_keys)
    }

    #[test]
    fn a_handshake_gives_both_sides_matching_keys() {
        let (_, _, alice, bob) = handshake(3, 4);
        let mut wire = Vec::new();
        alice.seal_into(0, b"", b"hello", &mut wire);
        assert_eq!(bob.open_in_place(0, b"", &mut wire).unwrap(), b"hello");
        let mut wire = Vec::new();
        bob.seal_into(0, b"", b"back", &mut wire);
        assert_eq!(alice.open_in_place(0, b"", &mut wire).unwrap(), b"back");
    }

    #[test]
    fn the_seeds_decide_the_bytes() {
        let (a1, a2, _, _) = handshake(3, 4);
        let (b1, b2, _, _) = handshake(3, 4);
        let (c1, c2, _, _) = handshake(5, 6);
        assert_eq!((&a1, &a2), (&b1, &b2));
        assert_ne!(a1, c1);
        assert_ne!(a2, c2);
    }

    #[test]
    fn wrong_keys_and_tampering_fail() {
        let (alice, bob) = keys();
        let carol = StaticKeypair::generate([9; 32]);
        let (_, m1) = Initiator::start(&alice, &bob.public(), b"", [1; 32], b"hi").unwrap();
        // Only Bob can read a message 1 made for Bob.
        assert_eq!(
            Responder::accept(&carol, b"", [2; 32], &m1).unwrap_err(),
            CryptoError::Forged
        );
        // Another prologue (protocol or version) cannot read it either.
        assert_eq!(
            Responder::accept(&bob, b"other", [2; 32], &m1).unwrap_err(),
            CryptoError::Forged
        );
        for i in 0..m1.len() {
            let mut m = m1.clone();
            m[i] ^= 0x80;
            assert!(
                Responder::accept(&bob, b"", [2; 32], &m).is_err(),
                "byte {i}"
            );
        }
        assert_eq!(
            Responder::accept(&bob, b"", [2; 32], &m1[..20]).unwrap_err(),
            CryptoError::TooShort
        );
        // A message 2 from someone else, or altered, fails.
        let (init, m1) = Initiator::start(&alice, &bob.public(), b"", [1; 32], b"").unwrap();
        let (resp, _) = Responder::accept(&bob, b"", [2; 32], &m1).unwrap();
        let (mut m2, _) = resp.finish(b"").unwrap();
        m2[40] ^= 1;
        assert!(init.finish(&m2).is_err());
    }

    #[test]
    fn interoperates_with_snow_transport_state() {
        // The same handshake run twice from the same seeds: once kept as our
        // keys, once turned into snow's stateless transport.
        let run = || {
            let (alice, bob) = keys();
            let (init, m1) = Initiator::start(&alice, &bob.public(), b"", [7; 32], b"").unwrap();
            let (resp, _) = Responder::accept(&bob, b"", [8; 32], &m1).unwrap();
            let (m2, _) = resp.finish(b"").unwrap();
            (init, m2)
        };
        let (ours, m2) = run();
        let (_, our_keys) = ours.finish(&m2).unwrap();
        let (theirs, m2) = run();
        let mut hs = theirs.hs;
        let mut payload = [0u8; 64];
        hs.read_message(&m2, &mut payload).unwrap();
        let snow_t = hs.into_stateless_transport_mode().unwrap();
        // Ours seals, snow opens: the initiator's send key is snow's send key.
        let mut wire = Vec::new();
        our_keys.seal_into(42, b"", b"same bytes", &mut wire);
        let mut snow_wire = [0u8; 64];
        let n = snow_t
            .write_message(42, b"same bytes", &mut snow_wire)
            .unwrap();
        assert_eq!(&snow_wire[..n], &wire[..]);
    }
}
