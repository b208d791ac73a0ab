//! One established session's transport: the keys, the other side's index, the
//! next counter to seal under and the replay window of what was opened.
//!
//! Both state machines use it, the server for each signed-in client and a
//! client for the server and each peer. It turns a sealed packet's plaintext
//! into a [`Packet::Sealed`] datagram and back:
//!
//! * **Seal**: the header (type, the other side's index, the counter, the
//!   length) is written in the clear and bound to the ciphertext as associated
//!   data; each counter is used once, and a session that has used
//!   [`REJECT_AFTER_MESSAGES`] refuses to seal more (it must be replaced by a
//!   new handshake long before).
//! * **Open**: authentication first, then the replay window, so a forger
//!   cannot burn counters; a datagram that fails either changes nothing.
//!
//! It knows nothing of time: the owners keep the timers (rekey, expiry).

use bytes::{BufMut, BytesMut};

use crate::codec::{MAX_DATAGRAM, PacketType, SEALED_HEADER_LEN, SEALED_TAG_LEN};
use crate::crypto::{CryptoError, ReplayWindow, TransportKeys};

/// A session seals at most this many packets (WireGuard's limit), far below
/// the replay window's [`crate::crypto::replay::COUNTER_LIMIT`].
pub(crate) const REJECT_AFTER_MESSAGES: u64 = u64::MAX - (1 << 13) - (1 << 16);

/// Why a packet could not be sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SealError {
    /// The plaintext would not fit one datagram.
    #[error("too long to seal")]
    TooLong,
    /// The session has used all its counters.
    #[error("session exhausted")]
    Exhausted,
}

/// An established session (see the module docs). `BLOCKS` sizes the replay
/// window: 2 (64 counters of reordering) for the server's many sessions, 32
/// (1984) for peers.
#[derive(Debug)]
pub(crate) struct Session<const BLOCKS: usize> {
    keys: TransportKeys,
    /// The other side's index for this session: in every packet we seal.
    remote_index: u32,
    next_counter: u64,
    replay: ReplayWindow<BLOCKS>,
}

impl<const BLOCKS: usize> Session<BLOCKS> {
    /// A session whose packets go to the other side's `remote_index`.
    pub(crate) fn new(keys: TransportKeys, remote_index: u32) -> Self {
        Session {
            keys,
            remote_index,
            next_counter: 0,
            replay: ReplayWindow::new(),
        }
    }

    /// Packets sealed so far.
    pub(crate) fn sealed_count(&self) -> u64 {
        self.next_counter
    }

    /// Whether a packet has been opened under this session yet: proof that
    /// the other side holds the keys.
    pub(crate) fn has_opened(&self) -> bool {
        self.replay != ReplayWindow::new()
    }

    /// Whether `counter`, just opened, is the highest opened so far: only
    /// such a packet may move where the other side is thought to be.
    pub(crate) fn is_newest(&self, counter: u64) -> bool {
        self.replay.next() == counter.wrapping_add(1)
    }

    /// Appends to `out` a whole Sealed datagram carrying `plaintext`.
    pub(crate) fn seal(&mut self, plaintext: &[u8], out: &mut BytesMut) -> Result<(), SealError> {
        seal_datagram(
            &self.keys,
            &mut self.next_counter,
            self.remote_index,
            plaintext,
            out,
        )
    }

    /// Opens the Sealed datagram `datagram` (already decoded: `counter` and
    /// `sealed` are its fields) into `scratch`, which then holds the
    /// plaintext and nothing else, and returns it.
    /// Fails, changing nothing, if it is forged, altered, replayed or too old.
    pub(crate) fn open<'s>(
        &mut self,
        datagram: &[u8],
        counter: u64,
        sealed: &[u8],
        scratch: &'s mut Vec<u8>,
    ) -> Result<&'s [u8], CryptoError> {
        if !self.replay.would_accept(counter) {
            return Err(CryptoError::Forged);
        }
        let replay = &mut self.replay;
        open_datagram(&self.keys, datagram, counter, sealed, scratch, |c| {
            replay.accept(c)
        })
    }
}

/// Appends to `out` a whole Sealed datagram carrying `plaintext` for the
/// other side's `remote_index`, under the counter `next_counter` holds (then
/// advanced): the seal of [`Session`] and of the server's compact session.
pub(crate) fn seal_datagram(
    keys: &TransportKeys,
    next_counter: &mut u64,
    remote_index: u32,
    plaintext: &[u8],
    out: &mut BytesMut,
) -> Result<(), SealError> {
    let sealed_len = plaintext.len() + SEALED_TAG_LEN;
    if SEALED_HEADER_LEN + sealed_len > MAX_DATAGRAM {
        return Err(SealError::TooLong);
    }
    if *next_counter >= REJECT_AFTER_MESSAGES {
        return Err(SealError::Exhausted);
    }
    let counter = *next_counter;
    *next_counter += 1;
    let start = out.len();
    out.reserve(SEALED_HEADER_LEN + sealed_len);
    out.put_u8(PacketType::Sealed as u8);
    out.put_u32(remote_index);
    out.put_u64(counter);
    // Checked above: at most MAX_DATAGRAM.
    out.put_u16(u16::try_from(sealed_len).unwrap_or(u16::MAX));
    out.extend_from_slice(plaintext);
    let (header, body) = out[start..].split_at_mut(SEALED_HEADER_LEN);
    let tag = keys.seal(counter, header, body);
    out.extend_from_slice(&tag);
    Ok(())
}

/// Opens the Sealed `datagram` (its `counter` and `sealed` fields already
/// decoded, its counter already checked against the replay window) into
/// `scratch`, which then holds the plaintext alone. Only once it
/// authenticates is `accept` called to record the counter; when that
/// refuses it (a replay raced in), the datagram is forged after all.
pub(crate) fn open_datagram<'s>(
    keys: &TransportKeys,
    datagram: &[u8],
    counter: u64,
    sealed: &[u8],
    scratch: &'s mut Vec<u8>,
    accept: impl FnOnce(u64) -> bool,
) -> Result<&'s [u8], CryptoError> {
    let header = datagram
        .get(..SEALED_HEADER_LEN)
        .ok_or(CryptoError::TooShort)?;
    scratch.clear();
    scratch.extend_from_slice(sealed);
    let len = keys.open_in_place(counter, header, scratch)?.len();
    if !accept(counter) {
        return Err(CryptoError::Forged);
    }
    // The tag is not plaintext.
    scratch.truncate(len);
    Ok(scratch)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Packet;

    fn pair() -> (Session<2>, Session<2>) {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        (
            Session::new(TransportKeys::from_raw(&a, &b), 20),
            Session::new(TransportKeys::from_raw(&b, &a), 10),
        )
    }

    fn open(s: &mut Session<2>, datagram: &[u8]) -> Result<Vec<u8>, CryptoError> {
        let Ok(Packet::Sealed {
            counter, sealed, ..
        }) = Packet::decode(datagram)
        else {
            return Err(CryptoError::TooShort);
        };
        let mut scratch = Vec::new();
        s.open(datagram, counter, sealed, &mut scratch)
            .map(<[u8]>::to_vec)
    }

    #[test]
    fn sealed_datagrams_open_once_in_any_order_and_never_altered() {
        let (mut alice, mut bob) = pair();
        let mut wires = Vec::new();
        for text in [&b"one"[..], b"two", b""] {
            let mut out = BytesMut::new();
            alice.seal(text, &mut out).unwrap();
            assert!(matches!(
                Packet::decode(&out),
                Ok(Packet::Sealed { receiver: 20, .. })
            ));
            wires.push(out);
        }
        assert!(!bob.has_opened());
        assert_eq!(open(&mut bob, &wires[1]).unwrap(), b"two");
        assert!(bob.has_opened());
        assert_eq!(open(&mut bob, &wires[0]).unwrap(), b"one");
        assert_eq!(open(&mut bob, &wires[0]), Err(CryptoError::Forged));
        assert_eq!(open(&mut bob, &wires[2]).unwrap(), b"");
        // Every single-bit change anywhere fails and burns nothing.
        let (mut alice, mut bob) = pair();
        let mut wire = BytesMut::new();
        alice.seal(b"pay Carole 100", &mut wire).unwrap();
        for byte in 0..wire.len() {
            let mut bad = wire.to_vec();
            bad[byte] ^= 1;
            assert!(open(&mut bob, &bad).is_err(), "bit flip at {byte} opened");
        }
        assert_eq!(open(&mut bob, &wire).unwrap(), b"pay Carole 100");
    }

    #[test]
    fn after_opening_the_scratch_buffer_holds_the_plaintext_alone() {
        let (mut alice, mut bob) = pair();
        let mut wire = BytesMut::new();
        alice.seal(b"list", &mut wire).unwrap();
        let Ok(Packet::Sealed {
            counter, sealed, ..
        }) = Packet::decode(&wire)
        else {
            panic!("not sealed");
        };
        let mut scratch = vec![9; 100];
        bob.open(&wire, counter, sealed, &mut scratch).unwrap();
        assert_eq!(scratch, b"list", "no tag, nothing left from before");
    }

    #[test]
    fn refuses_too_long_and_exhausted() {
        let (mut alice, _) = pair();
        let mut out = BytesMut::new();
        let long = vec![0u8; MAX_DATAGRAM];
        assert_eq!(alice.seal(&long, &mut out), Err(SealError::TooLong));
        alice.next_counter = REJECT_AFTER_MESSAGES;
        assert_eq!(alice.seal(b"x", &mut out), Err(SealError::Exhausted));
        assert!(out.is_empty());
    }
}
