//! A deterministic CSPRNG: the ChaCha20 keystream under a 32-byte seed.
//!
//! The core takes randomness as a seed (the binaries draw it from the
//! operating system; simulations pick it), so the same seed gives the same
//! ephemeral keys and the same handshake bytes. The keystream of ChaCha20
//! under an unknown key is indistinguishable from random, which is the
//! standard way to stretch a seed (it is what `rand_chacha` does).

use chacha20::ChaCha20;
use chacha20::cipher::{KeyIvInit, StreamCipher};

/// Random bytes that follow from a seed (see the module docs).
pub struct SeededRng {
    stream: ChaCha20,
}

impl std::fmt::Debug for SeededRng {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SeededRng(..)")
    }
}

impl SeededRng {
    /// A generator whose whole output follows from `seed`.
    pub fn new(seed: [u8; 32]) -> Self {
        SeededRng {
            stream: ChaCha20::new(&seed.into(), &[0u8; 12].into()),
        }
    }

    /// Fills `dest` with the next bytes of the stream.
    pub fn fill(&mut self, dest: &mut [u8]) {
        dest.fill(0);
        // A 256 GiB stream per seed: far beyond any use here. Past it the
        // cipher would panic, so say so rather than wrap silently.
        self.stream.apply_keystream(dest);
    }

    /// The next 32 bytes: a seed for a generator of its own.
    pub fn seed(&mut self) -> [u8; 32] {
        let mut out = [0u8; 32];
        self.fill(&mut out);
        out
    }
}

impl snow::types::Random for SeededRng {
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), snow::Error> {
        self.fill(dest);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_decides_everything() {
        let (mut a, mut b, mut c) = (
            SeededRng::new([1; 32]),
            SeededRng::new([1; 32]),
            SeededRng::new([2; 32]),
        );
        let (mut x, mut y, mut z) = ([0u8; 100], [0u8; 100], [0u8; 100]);
        a.fill(&mut x);
        b.fill(&mut y[..37]);
        b.fill(&mut y[37..]);
        c.fill(&mut z);
        assert_eq!(x, y, "the stream does not depend on how it is read");
        assert_ne!(x, z);
        assert_ne!(a.seed(), x[..32]);
        assert!(x.iter().any(|b| *b != 0));
    }
}
