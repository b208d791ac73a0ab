//! Static X25519 keys, and the short fingerprints people compare.

use std::fmt;
use std::str::FromStr;

use blake2::{Blake2s256, Digest};
use snow::params::DHChoice;
use snow::resolvers::{CryptoResolver, DefaultResolver};

use super::rng::SeededRng;

/// Bytes in a key.
pub const KEY_LEN: usize = 32;

/// Bytes of a fingerprint: 80 bits, plenty to compare by eye or voice.
pub const FINGERPRINT_LEN: usize = 10;

/// An X25519 public key: what identifies a user or a server.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PublicKey(pub [u8; KEY_LEN]);

impl PublicKey {
    /// The key's short fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        let digest = Blake2s256::new_with_prefix(b"udpchat fingerprint\0")
            .chain_update(self.0)
            .finalize();
        let mut out = [0u8; FINGERPRINT_LEN];
        out.copy_from_slice(&digest[..FINGERPRINT_LEN]);
        Fingerprint(out)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.fingerprint())
    }
}

/// A public key's fingerprint: the first 80 bits of a BLAKE2s hash of it,
/// shown as five groups of four hex digits, `3f2a 91c0 7d44 e812 09ab`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; FINGERPRINT_LEN]);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, pair) in self.0.chunks(2).enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{:02x}{:02x}", pair[0], pair[1])?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

/// A string that is not a fingerprint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("a fingerprint is 20 hex digits, spaces allowed (like 3f2a 91c0 7d44 e812 09ab)")]
pub struct BadFingerprint;

impl FromStr for Fingerprint {
    type Err = BadFingerprint;

    fn from_str(s: &str) -> Result<Self, BadFingerprint> {
        let digits: Vec<u32> = s
            .chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| c.to_digit(16).ok_or(BadFingerprint))
            .collect::<Result<_, _>>()?;
        if digits.len() != 2 * FINGERPRINT_LEN {
            return Err(BadFingerprint);
        }
        let mut out = [0u8; FINGERPRINT_LEN];
        for (byte, pair) in out.iter_mut().zip(digits.chunks_exact(2)) {
            *byte = u8::try_from(pair[0] * 16 + pair[1]).map_err(|_| BadFingerprint)?;
        }
        Ok(Fingerprint(out))
    }
}

/// A static X25519 key pair. The secret half never shows in `Debug`.
#[derive(Clone)]
pub struct StaticKeypair {
    secret: [u8; KEY_LEN],
    public: PublicKey,
}

impl fmt::Debug for StaticKeypair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StaticKeypair")
            .field("public", &self.public)
            .field("secret", &"..")
            .finish()
    }
}

impl StaticKeypair {
    /// The key pair whose secret key is `secret` (any 32 bytes: X25519
    /// clamps them).
    pub fn from_secret(secret: [u8; KEY_LEN]) -> Self {
        let mut dh = DefaultResolver
            .resolve_dh(&DHChoice::Curve25519)
            // The default resolver always has Curve25519 with the features
            // this crate turns on.
            .expect("snow's default resolver provides Curve25519");
        dh.set(&secret);
        let mut public = [0u8; KEY_LEN];
        public.copy_from_slice(dh.pubkey());
        StaticKeypair {
            secret,
            public: PublicKey(public),
        }
    }

    /// A new key pair drawn from `seed` (32 bytes from the operating system
    /// in real use).
    pub fn generate(seed: [u8; 32]) -> Self {
        Self::from_secret(SeededRng::new(seed).seed())
    }

    /// The public half.
    pub fn public(&self) -> PublicKey {
        self.public
    }

    /// The secret half, to store (mode 0600; see `run::keystore`).
    pub fn secret_bytes(&self) -> &[u8; KEY_LEN] {
        &self.secret
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_secret_gives_one_public_key_and_debug_hides_it() {
        let a = StaticKeypair::from_secret([0xAB; 32]);
        let b = StaticKeypair::from_secret([0xAB; 32]);
        assert_eq!(a.public(), b.public());
        assert_ne!(a.public().0, [0xAB; 32]);
        assert_ne!(a.public(), StaticKeypair::generate([1; 32]).public());
        let text = format!("{a:?}");
        assert!(
            !text.contains("171") && !text.to_lowercase().contains("abab"),
            "{text}"
        );
        assert!(
            text.contains(&a.public().fingerprint().to_string()),
            "{text}"
        );
    }

    #[test]
    fn fingerprints_print_and_parse() {
        let fp = StaticKeypair::generate([3; 32]).public().fingerprint();
        let text = fp.to_string();
        assert_eq!(text.len(), 24);
        assert_eq!(text.split(' ').count(), 5);
        assert_eq!(text.parse::<Fingerprint>(), Ok(fp));
        assert_eq!(
            text.replace(' ', "").to_uppercase().parse::<Fingerprint>(),
            Ok(fp)
        );
        assert_eq!("3f2a".parse::<Fingerprint>(), Err(BadFingerprint));
        assert_eq!("zz".repeat(10).parse::<Fingerprint>(), Err(BadFingerprint));
    }
}
