//! Sealing and opening with the keys a handshake agreed on.
//!
//! Noise's transport encryption (ChaCha20-Poly1305, the nonce four zero
//! bytes then the counter as eight little-endian bytes), with the counter
//! explicit: it travels in the packet header, so packets may arrive out of
//! order or not at all, as UDP delivers them. The header goes in as
//! associated data, so nobody can move a sealed payload under another header.
//!
//! The caller's duties: never seal two packets with one counter under one
//! key (count up, and make a new session before the counter runs out); open
//! before trusting anything in a packet; check the replay window only after
//! [`TransportKeys::open`] succeeded (see [`super::replay`]).

use ring::aead::{Aad, CHACHA20_POLY1305, LessSafeKey, Nonce, Tag, UnboundKey};
use zeroize::Zeroizing;

use super::CryptoError;

/// Bytes of the authentication tag after a sealed payload.
pub const TAG_LEN: usize = 16;

/// One direction's key, wiped when dropped.
///
/// ring does the sealing and opening: its ChaCha20-Poly1305 picks AVX2,
/// SSSE3 or portable code at run time and is several times faster than the
/// RustCrypto crates in a default build (see `examples/aead_speed.rs`). Its
/// key object is 544 bytes, too big to keep for every signed-in user, so we
/// keep the 32 bytes and make one for each packet (about 30 ns). ring does
/// not wipe that short-lived copy on the stack.
#[derive(Clone)]
struct Cipher(Zeroizing<[u8; 32]>);

impl Cipher {
    fn new(key: &[u8; 32]) -> Self {
        Cipher(Zeroizing::new(*key))
    }

    fn key(&self) -> LessSafeKey {
        match UnboundKey::new(&CHACHA20_POLY1305, &self.0[..]) {
            Ok(key) => LessSafeKey::new(key),
            // ring refuses only a key of the wrong length.
            Err(_) => unreachable!("32 bytes is a ChaCha20-Poly1305 key"),
        }
    }
}

/// Noise's nonce for `counter`: four zero bytes, then the counter as eight
/// little-endian bytes.
fn nonce(counter: u64) -> Nonce {
    let mut n = [0u8; 12];
    n[4..].copy_from_slice(&counter.to_le_bytes());
    Nonce::assume_unique_for_key(n)
}

/// The two keys of a session: one to seal what we send, one to open what
/// we receive. Never shown in `Debug`.
#[derive(Clone)]
pub struct TransportKeys {
    send: Cipher,
    recv: Cipher,
}

impl std::fmt::Debug for TransportKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TransportKeys(..)")
    }
}

impl TransportKeys {
    /// Keys from raw bytes: `send` seals, `recv` opens.
    pub fn from_raw(send: &[u8; 32], recv: &[u8; 32]) -> Self {
        TransportKeys {
            send: Cipher::new(send),
            recv: Cipher::new(recv),
        }
    }

    /// Encrypts `data` in place under `counter`, binding `ad` (the header);
    /// returns the tag to send after it.
    pub fn seal(&self, counter: u64, ad: &[u8], data: &mut [u8]) -> [u8; TAG_LEN] {
        match self
            .send
            .key()
            .seal_in_place_separate_tag(nonce(counter), Aad::from(ad), data)
        {
            Ok(tag) => {
                let mut out = [0u8; TAG_LEN];
                out.copy_from_slice(tag.as_ref());
                out
            }
            // Only a buffer longer than ChaCha20's 256 GiB limit fails;
            // datagrams are at most 1200 bytes.
            Err(_) => unreachable!("a datagram is far below ChaCha20's length limit"),
        }
    }

    /// Appends `plaintext` sealed under `counter` (with `ad` bound) and its
    /// tag to `out`.
    pub fn seal_into(&self, counter: u64, ad: &[u8], plaintext: &[u8], out: &mut Vec<u8>) {
        let start = out.len();
        out.extend_from_slice(plaintext);
        let tag = self.seal(counter, ad, &mut out[start..]);
        out.extend_from_slice(&tag);
    }

    /// Decrypts `data` in place if `tag` proves it was sealed under
    /// `counter` with `ad` by the other side; otherwise leaves an unspecified
    /// `data` and fails.
    pub fn open(
        &self,
        counter: u64,
        ad: &[u8],
        data: &mut [u8],
        tag: &[u8],
    ) -> Result<(), CryptoError> {
        let tag: [u8; TAG_LEN] = tag.try_into().map_err(|_| CryptoError::TooShort)?;
        self.recv
            .key()
            .open_in_place_separate_tag(nonce(counter), Aad::from(ad), Tag::from(tag), data, 0..)
            .map(|_| ())
            .map_err(|_| CryptoError::Forged)
    }

    /// Opens `sealed` (ciphertext then tag) in place and returns the
    /// plaintext, a prefix of it.
    pub fn open_in_place<'a>(
        &self,
        counter: u64,
        ad: &[u8],
        sealed: &'a mut [u8],
    ) -> Result<&'a mut [u8], CryptoError> {
        let len = sealed
            .len()
            .checked_sub(TAG_LEN)
            .ok_or(CryptoError::TooShort)?;
        let (data, tag) = sealed.split_at_mut(len);
        self.open(counter, ad, data, tag)?;
        Ok(data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pair() -> (TransportKeys, TransportKeys) {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        (
            TransportKeys::from_raw(&a, &b),
            TransportKeys::from_raw(&b, &a),
        )
    }

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// The bytes on the wire, pinned: made by the RustCrypto
    /// `chacha20poly1305` 0.10 this module used before ring, so a change of
    /// implementation cannot change the wire format (the AEAD, the nonce
    /// from the counter, the header as associated data).
    #[test]
    fn the_wire_format_is_pinned() {
        let (alice, bob) = pair();
        let mut wire = Vec::new();
        alice.seal_into(7, b"hdr", b"pay Carole 100", &mut wire);
        assert_eq!(
            hex(&wire),
            "4bc199c026770430f469440cf43812fcd409a9cbecbc57cf3d4b2fec051b"
        );

        // A full-size datagram over many blocks, under a counter whose
        // bytes all differ, so their order in the nonce shows.
        let counter = 0x0102_0304_0506_0708;
        let ad: Vec<u8> = (0..15).collect();
        let plain: Vec<u8> = (0..=250u8).cycle().take(1169).collect();
        let mut data = plain.clone();
        let tag = alice.seal(counter, &ad, &mut data);
        assert_eq!(hex(&data[..16]), "5d4ecccd9c2d09e46cd522f52771def3");
        assert_eq!(
            hex(&data[data.len() - 16..]),
            "fde903c4dc0872d764d048863b08f597"
        );
        assert_eq!(hex(&tag), "7d97452c198bf5ecbefbc38407d1f266");
        assert_eq!(bob.open(counter, &ad, &mut data, &tag), Ok(()));
        assert_eq!(data, plain);
    }

    #[test]
    fn a_tag_of_the_wrong_length_is_too_short() {
        let (alice, bob) = pair();
        let mut data = *b"hello";
        let tag = alice.seal(1, b"", &mut data);
        assert_eq!(
            bob.open(1, b"", &mut data, &tag[..TAG_LEN - 1]),
            Err(CryptoError::TooShort)
        );
    }

    #[test]
    fn sealed_opens_only_unchanged_with_its_counter_and_header() {
        let (alice, bob) = pair();
        let mut wire = Vec::new();
        alice.seal_into(7, b"hdr", b"pay Carole 100", &mut wire);
        assert_eq!(wire.len(), 14 + TAG_LEN);
        assert!(
            !wire.windows(6).any(|w| w == b"Carole"),
            "no plaintext on the wire"
        );
        let mut ok = wire.clone();
        assert_eq!(
            bob.open_in_place(7, b"hdr", &mut ok).unwrap(),
            b"pay Carole 100"
        );
        for (counter, ad) in [(8, &b"hdr"[..]), (7, &b"hdR"[..])] {
            let mut w = wire.clone();
            assert_eq!(
                bob.open_in_place(counter, ad, &mut w),
                Err(CryptoError::Forged)
            );
        }
        for i in 0..wire.len() {
            let mut w = wire.clone();
            w[i] ^= 1;
            assert_eq!(
                bob.open_in_place(7, b"hdr", &mut w),
                Err(CryptoError::Forged),
                "bit {i}"
            );
        }
        // Our own packets do not open with our receive key (no reflection).
        let mut w = wire.clone();
        assert_eq!(
            alice.open_in_place(7, b"hdr", &mut w),
            Err(CryptoError::Forged)
        );
        assert_eq!(
            bob.open_in_place(7, b"hdr", &mut [0u8; 15]),
            Err(CryptoError::TooShort)
        );
    }
}
