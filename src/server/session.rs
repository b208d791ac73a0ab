//! The server's side of one client session, in 88 bytes.
//!
//! The same wire behaviour as [`crate::session::Session<2>`] (the header
//! bound as associated data, a counter used once per sealed packet, a
//! replay window of the 64 counters below the highest opened), laid out for
//! a server that holds a million of them: the window is one 64-bit word
//! beside the highest counter (RFC 6479 with two blocks keeps two words and
//! the same span), and the other side's index is kept by the caller, where
//! it packs beside other small fields instead of padding this struct.
//!
//! Open authenticates first and only then records the counter, so a forger
//! cannot burn counters; a datagram that fails changes nothing.

use bytes::BytesMut;

use crate::crypto::replay::COUNTER_LIMIT;
use crate::crypto::{CryptoError, TransportKeys};
use crate::session::{SealError, open_datagram, seal_datagram};

/// Counters this far below the highest opened are still accepted once.
pub(crate) const WINDOW: u64 = 64;

/// One client's session keys and counters (see the module docs). `Debug`
/// shows no key.
pub(crate) struct ServerSession {
    keys: TransportKeys,
    /// The counter the next sealed packet uses.
    next_counter: u64,
    /// One more than the highest counter opened; 0 before the first.
    next_open: u64,
    /// Bit `d - 1` is set when the counter `d` below the highest opened
    /// (`1 <= d <= WINDOW`) was opened.
    seen: u64,
}

impl std::fmt::Debug for ServerSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerSession")
            .field("sealed", &self.next_counter)
            .field("next_open", &self.next_open)
            .finish_non_exhaustive()
    }
}

impl ServerSession {
    /// A session under `keys` that has sealed and opened nothing.
    pub(crate) fn new(keys: TransportKeys) -> Self {
        ServerSession {
            keys,
            next_counter: 0,
            next_open: 0,
            seen: 0,
        }
    }

    /// Whether a packet has been opened under this session yet: proof that
    /// the other side holds the keys.
    pub(crate) fn has_opened(&self) -> bool {
        self.next_open != 0
    }

    /// Whether `counter`, just opened, is the highest opened so far.
    pub(crate) fn is_newest(&self, counter: u64) -> bool {
        self.next_open == counter.wrapping_add(1)
    }

    fn would_accept(&self, counter: u64) -> bool {
        if counter >= COUNTER_LIMIT {
            return false;
        }
        if counter >= self.next_open {
            return true;
        }
        // Here `counter < next_open`, so `highest = next_open - 1 >= counter`.
        let below = self.next_open - 1 - counter;
        below != 0 && below <= WINDOW && self.seen & (1 << (below - 1)) == 0
    }

    /// Records `counter`, which [`ServerSession::would_accept`] took.
    #[cfg(test)]
    fn accept(&mut self, counter: u64) {
        record(&mut self.next_open, &mut self.seen, counter);
    }

    /// Appends to `out` a whole Sealed datagram carrying `plaintext`, for
    /// the other side's index `remote_index`.
    pub(crate) fn seal(
        &mut self,
        remote_index: u32,
        plaintext: &[u8],
        out: &mut BytesMut,
    ) -> Result<(), SealError> {
        seal_datagram(
            &self.keys,
            &mut self.next_counter,
            remote_index,
            plaintext,
            out,
        )
    }

    /// Opens the Sealed datagram `datagram` (already decoded: `counter` and
    /// `sealed` are its fields) into `scratch`, which then holds the
    /// plaintext alone, and returns it. Fails, changing nothing, if it is
    /// forged, altered, replayed or too old.
    pub(crate) fn open<'s>(
        &mut self,
        datagram: &[u8],
        counter: u64,
        sealed: &[u8],
        scratch: &'s mut Vec<u8>,
    ) -> Result<&'s [u8], CryptoError> {
        if !self.would_accept(counter) {
            return Err(CryptoError::Forged);
        }
        let (next_open, seen) = (&mut self.next_open, &mut self.seen);
        open_datagram(&self.keys, datagram, counter, sealed, scratch, |c| {
            record(next_open, seen, c);
            true
        })
    }
}

/// Records `counter`, which [`ServerSession::would_accept`] took, in the
/// window of a session whose highest opened is `next_open - 1`.
fn record(next_open: &mut u64, seen: &mut u64, counter: u64) {
    if counter >= *next_open {
        *seen = match *next_open {
            0 => 0,
            next => {
                // The old highest is now `shift` below the new one.
                let shift = counter + 1 - next;
                if shift > WINDOW {
                    0
                } else {
                    let shift_bits = u32::try_from(shift).unwrap_or(u32::MAX);
                    seen.checked_shl(shift_bits).unwrap_or(0) | 1 << (shift - 1)
                }
            }
        };
        *next_open = counter + 1;
    } else {
        let below = *next_open - 1 - counter;
        *seen |= 1 << (below - 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{MAX_DATAGRAM, Packet};
    use crate::crypto::ReplayWindow;
    use crate::session::{REJECT_AFTER_MESSAGES, Session};

    fn keys() -> (TransportKeys, TransportKeys) {
        let (a, b) = ([1u8; 32], [2u8; 32]);
        (
            TransportKeys::from_raw(&a, &b),
            TransportKeys::from_raw(&b, &a),
        )
    }

    fn open(s: &mut ServerSession, datagram: &[u8]) -> Result<Vec<u8>, CryptoError> {
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
    fn is_88_bytes() {
        assert_eq!(std::mem::size_of::<ServerSession>(), 88);
    }

    #[test]
    fn speaks_with_a_client_session_both_ways() {
        let (server_keys, client_keys) = keys();
        let mut server = ServerSession::new(server_keys);
        let mut client = Session::<2>::new(client_keys, 77);
        let mut wire = BytesMut::new();
        client.seal(b"lookup", &mut wire).unwrap();
        assert!(!server.has_opened());
        assert_eq!(open(&mut server, &wire).unwrap(), b"lookup");
        assert!(server.has_opened() && server.is_newest(0));
        assert_eq!(open(&mut server, &wire), Err(CryptoError::Forged), "replay");
        let mut reply = BytesMut::new();
        server.seal(77, b"reply", &mut reply).unwrap();
        assert!(matches!(
            Packet::decode(&reply),
            Ok(Packet::Sealed { receiver: 77, .. })
        ));
        let Ok(Packet::Sealed {
            counter, sealed, ..
        }) = Packet::decode(&reply)
        else {
            panic!("not sealed");
        };
        let mut scratch = Vec::new();
        assert_eq!(
            client.open(&reply, counter, sealed, &mut scratch).unwrap(),
            b"reply"
        );
        // Every single-bit change fails and burns nothing.
        let mut wire = BytesMut::new();
        client.seal(b"pay Carole 100", &mut wire).unwrap();
        for byte in 0..wire.len() {
            let mut bad = wire.to_vec();
            bad[byte] ^= 1;
            assert!(open(&mut server, &bad).is_err(), "bit flip at {byte}");
        }
        assert_eq!(open(&mut server, &wire).unwrap(), b"pay Carole 100");
    }

    #[test]
    fn refuses_too_long_and_exhausted() {
        let mut s = ServerSession::new(keys().0);
        let mut out = BytesMut::new();
        let long = vec![0u8; MAX_DATAGRAM];
        assert_eq!(s.seal(1, &long, &mut out), Err(SealError::TooLong));
        s.next_counter = REJECT_AFTER_MESSAGES;
        assert_eq!(s.seal(1, b"x", &mut out), Err(SealError::Exhausted));
        assert!(out.is_empty());
    }

    #[test]
    fn the_window_edges() {
        let mut s = ServerSession::new(keys().0);
        for c in [100, 100 - WINDOW, 50, 99] {
            assert!(s.would_accept(c), "{c}");
            s.accept(c);
        }
        assert!(!s.would_accept(100 - WINDOW - 1), "too old");
        assert!(!s.would_accept(100 - WINDOW) && !s.would_accept(99));
        assert!(s.would_accept(98));
        s.accept(100 + WINDOW);
        assert!(!s.would_accept(99), "now too old");
        assert!(s.would_accept(100 + WINDOW - 1) && s.would_accept(101));
        assert!(!s.would_accept(100), "still remembered");
        assert!(!s.would_accept(COUNTER_LIMIT));
    }

    proptest::proptest! {
        /// Takes exactly what RFC 6479's window of two blocks takes, the
        /// window the crate's `Session<2>` keeps.
        #[test]
        fn matches_the_two_block_replay_window(
            steps in proptest::collection::vec((0u64..3, 0u64..200), 1..300),
        ) {
            let mut s = ServerSession::new(keys().0);
            let mut model = ReplayWindow::<2>::new();
            let mut top = 0u64;
            for (kind, n) in steps {
                // Mostly near the top, sometimes far ahead or behind.
                let counter = match kind {
                    0 => top.saturating_sub(n % 80),
                    1 => top + n % 5,
                    _ => top + n * 50,
                };
                let ours = s.would_accept(counter);
                proptest::prop_assert_eq!(ours, model.would_accept(counter), "{}", counter);
                if ours {
                    s.accept(counter);
                }
                proptest::prop_assert_eq!(ours, model.accept(counter));
                proptest::prop_assert_eq!(s.next_open, model.next());
                top = top.max(counter);
            }
        }
    }
}
