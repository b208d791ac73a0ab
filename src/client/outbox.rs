//! What waits to be sealed to peers: message and acknowledgement frames,
//! packed into as few datagrams as fit.
//!
//! A Sealed plaintext between peers holds several packets back to back
//! (*frames*, see the codec's docs). While the caller works through a batch
//! (a drained socket, a pasted block of lines), the client puts its peer
//! packets here instead of sealing each at once; when the caller next polls
//! for a datagram, everything waiting for one session goes out in as few
//! datagrams as [`MAX_SEALED_PLAINTEXT`] allows: one seal and one system call
//! for dozens of short messages.
//!
//! Acknowledgements wait as sequence numbers and leave as ranges: the
//! fragments of one stream shown during the batch, contiguous runs merged,
//! one [`Packet::Ack`] frame per run. A lost datagram is acknowledged again
//! when the sender's retransmission arrives; the ranges say exactly what
//! was shown, so the sender retransmits only what is missing.
//!
//! Invariants: every plaintext here is a whole number of valid frames for
//! one session index and at most [`MAX_SEALED_PLAINTEXT`] long; at most
//! [`MAX_PENDING_ACKS`] acknowledgements wait (past that the caller is told
//! to pack them at once), so memory stays bounded even if nobody polls.

use std::time::Instant;

use bytes::BytesMut;

use crate::codec::{EncodeError, MAX_SEALED_PLAINTEXT, Packet};

/// Acknowledgements waiting at most; [`Outbox::ack`] asks for a flush past
/// this.
pub(crate) const MAX_PENDING_ACKS: usize = 1024;

/// A plaintext ready to seal: whole frames for session `index`, gathered
/// since `since`.
#[derive(Debug)]
pub(crate) struct Sealable {
    /// The peer session to seal under.
    pub index: u32,
    /// When its first frame was queued: the time to seal it at.
    pub since: Instant,
    /// The frames, back to back.
    pub plaintext: BytesMut,
}

/// An acknowledgement waiting to be packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct PendingAck {
    index: u32,
    stream: u64,
    seq: u32,
}

/// Frames waiting for their datagrams. See the [module docs](self).
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    acks: Vec<PendingAck>,
    /// When the oldest waiting acknowledgement was queued.
    acks_since: Option<Instant>,
    /// Plaintexts being filled, one per session index, oldest first.
    open: Vec<Sealable>,
    /// Emptied plaintext buffers, for reuse.
    spare: Vec<BytesMut>,
}

impl Outbox {
    /// Whether nothing waits.
    pub(crate) fn is_empty(&self) -> bool {
        self.acks.is_empty() && self.open.is_empty()
    }

    /// Queues an acknowledgement of `seq` in `stream`, to go under session
    /// `index`. True when [`MAX_PENDING_ACKS`] are waiting: call
    /// [`Outbox::take`] now.
    pub(crate) fn ack(&mut self, now: Instant, index: u32, stream: u64, seq: u32) -> bool {
        self.acks_since.get_or_insert(now);
        self.acks.push(PendingAck { index, stream, seq });
        self.acks.len() >= MAX_PENDING_ACKS
    }

    /// Appends `packet` as a frame for session `index`. When it does not fit
    /// beside what waits for that session, the waiting plaintext is returned,
    /// to be sealed first, and the frame starts a new one.
    pub(crate) fn push(
        &mut self,
        now: Instant,
        index: u32,
        packet: &Packet<'_>,
    ) -> Result<Option<Sealable>, EncodeError> {
        let len = packet.encoded_len();
        if len > MAX_SEALED_PLAINTEXT {
            return Err(EncodeError::TooLong { len });
        }
        let mut full = None;
        let slot = match self.open.iter().position(|s| s.index == index) {
            Some(i) if self.open[i].plaintext.len() + len > MAX_SEALED_PLAINTEXT => {
                let plaintext = self.spare.pop().unwrap_or_default();
                let old = std::mem::replace(
                    &mut self.open[i],
                    Sealable {
                        index,
                        since: now,
                        plaintext,
                    },
                );
                full = Some(old);
                i
            }
            Some(i) => i,
            None => {
                let plaintext = self.spare.pop().unwrap_or_default();
                self.open.push(Sealable {
                    index,
                    since: now,
                    plaintext,
                });
                self.open.len() - 1
            }
        };
        let plaintext = &mut self.open[slot].plaintext;
        let before = plaintext.len();
        if let Err(e) = packet.encode(plaintext) {
            // Encode writes nothing on error; a plaintext opened for this
            // frame alone stays empty and is dropped at `take`.
            debug_assert_eq!(plaintext.len(), before);
            return Err(e);
        }
        Ok(full)
    }

    /// Everything waiting, ready to seal, oldest first: the acknowledgements
    /// packed as ranges (ahead of other frames for the same session), then
    /// each session's plaintext. The outbox is empty after.
    pub(crate) fn take(&mut self) -> Vec<Sealable> {
        let mut ready = Vec::new();
        if let Some(since) = self.acks_since.take() {
            let mut acks = std::mem::take(&mut self.acks);
            acks.sort_unstable();
            acks.dedup();
            for (index, stream, first, last) in ack_runs(&acks) {
                let packet = Packet::Ack {
                    stream,
                    first,
                    last,
                };
                // An Ack frame always fits and always encodes.
                if let Ok(Some(full)) = self.push(since, index, &packet) {
                    ready.push(full);
                }
            }
            acks.clear();
            self.acks = acks;
        }
        ready.extend(self.open.drain(..).filter(|s| !s.plaintext.is_empty()));
        ready
    }

    /// Gives back a plaintext buffer once sealed, for reuse.
    pub(crate) fn recycle(&mut self, mut plaintext: BytesMut) {
        if self.spare.len() < 4 {
            plaintext.clear();
            self.spare.push(plaintext);
        }
    }
}

/// Contiguous runs of sorted, deduplicated acknowledgements: `(index,
/// stream, first, last)`.
fn ack_runs(acks: &[PendingAck]) -> impl Iterator<Item = (u32, u64, u32, u32)> + '_ {
    let mut i = 0;
    std::iter::from_fn(move || {
        let start = *acks.get(i)?;
        let mut last = start.seq;
        i += 1;
        while let Some(next) = acks.get(i) {
            if next.index != start.index
                || next.stream != start.stream
                || Some(next.seq) != last.checked_add(1)
            {
                break;
            }
            last = next.seq;
            i += 1;
        }
        Some((start.index, start.stream, start.seq, last))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(s: &Sealable) -> Vec<Packet<'_>> {
        Packet::frames(&s.plaintext)
            .collect::<Result<_, _>>()
            .expect("valid frames")
    }

    fn message(seq: u32, body: &[u8]) -> Packet<'_> {
        Packet::Message {
            stream: 7,
            seq,
            base: 0,
            fragment: 0,
            fragments: 1,
            body,
        }
    }

    #[test]
    fn short_messages_share_a_datagram_and_a_full_one_is_handed_back() {
        let now = Instant::now();
        let mut outbox = Outbox::default();
        let body = [b'x'; 100];
        let mut full = Vec::new();
        for seq in 0..30 {
            if let Some(s) = outbox.push(now, 1, &message(seq, &body)).expect("fits") {
                full.push(s);
            }
        }
        full.extend(outbox.take());
        assert!(outbox.is_empty());
        // 100 B of text and 24 B of header a frame: 9 fit in 1,167 B.
        let counts: Vec<usize> = full.iter().map(|s| frames(s).len()).collect();
        assert_eq!(counts, [9, 9, 9, 3]);
        let seqs: Vec<u32> = full
            .iter()
            .flat_map(frames)
            .map(|p| match p {
                Packet::Message { seq, .. } => seq,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(seqs, (0..30).collect::<Vec<_>>());
        assert!(
            full.iter()
                .all(|s| s.plaintext.len() <= MAX_SEALED_PLAINTEXT)
        );
    }

    #[test]
    fn each_session_gets_its_own_plaintext() {
        let now = Instant::now();
        let mut outbox = Outbox::default();
        for seq in 0..4 {
            assert!(
                outbox
                    .push(now, seq % 2, &message(seq, b"hi"))
                    .expect("fits")
                    .is_none()
            );
        }
        let ready = outbox.take();
        assert_eq!(ready.iter().map(|s| s.index).collect::<Vec<_>>(), [0, 1]);
        assert!(ready.iter().all(|s| frames(s).len() == 2));
    }

    #[test]
    fn acknowledgements_leave_as_ranges_with_the_gaps_left_out() {
        let now = Instant::now();
        let mut outbox = Outbox::default();
        for seq in [5, 1, 2, 3, 9, 3, 10, 11, 7] {
            assert!(!outbox.ack(now, 4, 99, seq));
        }
        assert!(!outbox.ack(now, 4, 100, 0));
        assert!(!outbox.ack(now, 6, 99, 1));
        let ready = outbox.take();
        let acks: Vec<(u32, Packet<'_>)> = ready
            .iter()
            .flat_map(|s| frames(s).into_iter().map(move |p| (s.index, p)))
            .collect();
        let ack = |index, stream, first, last| {
            (
                index,
                Packet::Ack {
                    stream,
                    first,
                    last,
                },
            )
        };
        assert_eq!(
            acks,
            [
                ack(4, 99, 1, 3),
                ack(4, 99, 5, 5),
                ack(4, 99, 7, 7),
                ack(4, 99, 9, 11),
                ack(4, 100, 0, 0),
                ack(6, 99, 1, 1),
            ]
        );
        assert!(outbox.is_empty());
        assert!(outbox.take().is_empty());
    }

    #[test]
    fn acknowledgements_and_messages_for_one_session_share_a_datagram() {
        let now = Instant::now();
        let mut outbox = Outbox::default();
        outbox.ack(now, 3, 1, 0);
        assert!(
            outbox
                .push(now, 3, &message(0, b"hi"))
                .expect("fits")
                .is_none()
        );
        let ready = outbox.take();
        assert_eq!(ready.len(), 1);
        assert_eq!(frames(&ready[0]).len(), 2);
    }

    #[test]
    fn waiting_acknowledgements_are_bounded() {
        let now = Instant::now();
        let mut outbox = Outbox::default();
        let asks = (0..MAX_PENDING_ACKS)
            .filter(|&seq| outbox.ack(now, 1, 1, u32::try_from(seq * 2).expect("small")))
            .count();
        assert_eq!(asks, 1);
        // Every other seq: as many ranges as acknowledgements, 17 B each.
        let ready = outbox.take();
        let total: usize = ready.iter().map(|s| frames(s).len()).sum();
        assert_eq!(total, MAX_PENDING_ACKS);
        assert!(
            ready
                .iter()
                .all(|s| s.plaintext.len() <= MAX_SEALED_PLAINTEXT)
        );
    }

    #[test]
    fn an_oversized_frame_is_refused_and_leaves_nothing() {
        let now = Instant::now();
        let mut outbox = Outbox::default();
        let body = vec![0; MAX_SEALED_PLAINTEXT];
        assert!(outbox.push(now, 1, &message(0, &body)).is_err());
        assert!(outbox.take().is_empty());
    }
}
