//! The cryptographic building blocks of sessions (protocol v2, see
//! `docs/sessions.md`): keys, the Noise IK handshake, sealing with explicit
//! counters, and the replay window. Sans-IO like the rest of the core: keys
//! come in as bytes and randomness as 32-byte seeds, so a simulation that
//! picks its seeds gets the same handshake bytes every run.
//!
//! * [`keys`]: [`StaticKeypair`] (X25519; the secret never shows in `Debug`),
//!   [`PublicKey`] and its [`Fingerprint`] (`3f2a 91c0 7d44 e812 09ab`).
//! * [`noise`]: [`Initiator`] and [`Responder`] of
//!   `Noise_IK_25519_ChaChaPoly_BLAKE2s` (snow), with a seeded RNG; the
//!   responder learns the caller's static key from message 1 and may check
//!   it before answering.
//! * [`transport`]: [`TransportKeys`], ChaCha20-Poly1305 (ring's) as Noise
//!   uses it, with the counter explicit and the packet header bound as associated
//!   data. The caller never reuses a counter under one key.
//! * [`replay`]: [`ReplayWindow`], RFC 6479; record a counter only after its
//!   packet opened.
//! * [`rng`]: [`SeededRng`], the ChaCha20 keystream of a seed.
//!
//! Sizes: a session's [`TransportKeys`] is two ChaCha20-Poly1305 keys
//! (64 bytes); a [`ReplayWindow`] of `B` blocks is `8 + 8B` bytes.

pub mod keys;
pub mod noise;
pub mod replay;
pub mod rng;
pub mod transport;

pub use keys::{BadFingerprint, Fingerprint, KEY_LEN, PublicKey, StaticKeypair};
pub use noise::{Initiator, Responder};
pub use replay::ReplayWindow;
pub use rng::SeededRng;
pub use transport::{TAG_LEN, TransportKeys};

/// Why a cryptographic step failed. Kept coarse on purpose: what failed is
/// worth counting, why in detail is only worth something to an attacker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CryptoError {
    /// The input is shorter than the smallest valid one.
    #[error("too short")]
    TooShort,
    /// Authentication failed: forged, altered, replayed under other keys,
    /// or meant for someone else.
    #[error("not authentic")]
    Forged,
    /// The handshake could not be set up or continued (a bug, or a
    /// malformed message).
    #[error("handshake failed")]
    Handshake,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_stay_small() {
        // The server will hold one set of keys per signed-in user.
        assert!(
            std::mem::size_of::<TransportKeys>() <= 64,
            "{}",
            std::mem::size_of::<TransportKeys>()
        );
        assert_eq!(std::mem::size_of::<ReplayWindow<2>>(), 24);
        assert_eq!(std::mem::size_of::<ReplayWindow<32>>(), 264);
    }
}
