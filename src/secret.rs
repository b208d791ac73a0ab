//! Keyed hashing and seeded randomness for the state machines.
//!
//! The core never reads a clock or a global random number generator, so what
//! must be unpredictable comes from a key the caller supplies: the binaries
//! take it from the operating system, tests pick a fixed one. SipHash-2-4 is a
//! pseudo-random function keyed with 128 bits, the same construction DNS
//! server cookies use (RFC 9018); it is plenty for cookies and session tokens
//! that live for minutes and are checked by the server that made them.

use std::hash::Hasher;
use std::net::SocketAddr;

use siphasher::sip128::{Hasher128, SipHasher24};

/// A 128-bit key for SipHash-2-4.
#[derive(Clone)]
pub struct Key([u8; 16]);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(..)")
    }
}

impl Key {
    /// A key made of these bytes.
    pub fn new(bytes: [u8; 16]) -> Self {
        Key(bytes)
    }

    /// A 128-bit keyed hash of `parts`, each length-prefixed so that
    /// `["ab", "c"]` and `["a", "bc"]` differ.
    pub fn mac(&self, parts: &[&[u8]]) -> [u8; 16] {
        let mut h = SipHasher24::new_with_key(&self.0);
        for part in parts {
            h.write(&(part.len() as u64).to_be_bytes());
            h.write(part);
        }
        h.finish128().as_bytes()
    }
}

/// The bytes that identify a socket address in a keyed hash.
pub fn addr_bytes(addr: &SocketAddr) -> [u8; 19] {
    let mut out = [0u8; 19];
    match addr {
        SocketAddr::V4(a) => {
            out[0] = 4;
            out[1..5].copy_from_slice(&a.ip().octets());
        }
        SocketAddr::V6(a) => {
            out[0] = 6;
            out[1..17].copy_from_slice(&a.ip().octets());
        }
    }
    out[17..19].copy_from_slice(&addr.port().to_be_bytes());
    out
}

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A deterministic random number generator: SipHash of a counter under a key
/// made from the seed. Unpredictable to whoever does not know the seed.
#[derive(Debug, Clone)]
pub struct Rng {
    key: Key,
    counter: u64,
}

impl Rng {
    /// A generator whose whole output follows from `seed`.
    pub fn from_seed(seed: u64) -> Self {
        let mut bytes = [0u8; 16];
        bytes[..8].copy_from_slice(&seed.to_be_bytes());
        bytes[8..].copy_from_slice(&(!seed).rotate_left(17).to_be_bytes());
        Rng {
            key: Key::new(bytes),
            counter: 0,
        }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.counter = self.counter.wrapping_add(1);
        let out = self.key.mac(&[&self.counter.to_be_bytes()]);
        let mut half = [0u8; 8];
        half.copy_from_slice(&out[..8]);
        u64::from_be_bytes(half)
    }

    /// The next 32 random bits.
    pub fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mac_separates_parts() {
        let k = Key::new([1; 16]);
        assert_ne!(k.mac(&[b"ab", b"c"]), k.mac(&[b"a", b"bc"]));
        assert_eq!(k.mac(&[b"ab"]), k.mac(&[b"ab"]));
        assert_ne!(k.mac(&[b"ab"]), Key::new([2; 16]).mac(&[b"ab"]));
    }

    #[test]
    fn rng_is_seeded() {
        let a: Vec<u64> = std::iter::repeat_with({
            let mut r = Rng::from_seed(5);
            move || r.next_u64()
        })
        .take(4)
        .collect();
        let mut r = Rng::from_seed(5);
        assert_eq!(a, (0..4).map(|_| r.next_u64()).collect::<Vec<_>>());
        assert_ne!(a[0], Rng::from_seed(6).next_u64());
    }

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
    }
}
