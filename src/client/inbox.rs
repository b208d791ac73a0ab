//! What arrives from peers: streams of fragments, delivered exactly once and
//! in order, whatever happens to the sessions they came in.
//!
//! A stream is named by the sender's static key and the sender's stream id
//! (random, one per peer per client start), never by session or address:
//! rekeys, lost sessions, moves and retransmissions change nothing. Each
//! fragment carries `base`, the lowest sequence number the sender may still
//! send; the receiver delivers from `max(next, base)`, so it can always place
//! what arrives, also after forgetting the stream.
//!
//! **When a stream may be forgotten.** Only when forgetting cannot show
//! anything twice: when nothing is buffered and the sender's latest `base`
//! has caught up with what we delivered (it knows we have it all), or after
//! [`Inbox::stale_after`] of silence (the sender stops retransmitting after
//! its message timeout, so nothing delivered can come again). Idle streams
//! are forgotten on those terms; a full table makes room on the same terms,
//! and when it cannot, fragments of a new stream are dropped and counted
//! (their sender retries, and reports failure in the end): under a flood a
//! message may fail, but no message is shown twice and none is acknowledged
//! without being shown.

use std::collections::BTreeMap;
use std::collections::btree_map::Entry;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// One fragment as it arrived.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fragment<'a> {
    pub(crate) stream: u64,
    pub(crate) seq: u32,
    pub(crate) base: u32,
    pub(crate) fragment: u16,
    pub(crate) fragments: u16,
    pub(crate) body: &'a [u8],
}

/// What to do with a fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Acknowledge it; these messages are now complete, in order.
    Ack(Vec<String>),
    /// Acknowledge it again: delivered before (or given up by the sender).
    Duplicate,
    /// Dropped, not acknowledged: beyond the window, or no room for a new
    /// stream.
    Dropped,
}

#[derive(Debug)]
struct Stream {
    next_seq: u32,
    /// The highest `base` seen.
    base: u32,
    /// Fragments ahead of `next_seq`: (fragment, fragments, body).
    ahead: BTreeMap<u32, (u16, u16, Bytes)>,
    partial: Vec<u8>,
    /// Index the next fragment of the partial message must have.
    partial_next: u16,
    last_active: Instant,
}

impl Stream {
    /// Forgetting it now shows nothing twice (see the module docs).
    fn safe_to_forget(&self, now: Instant, stale_after: Duration) -> bool {
        let settled =
            self.ahead.is_empty() && self.partial.is_empty() && self.base == self.next_seq;
        settled || now.saturating_duration_since(self.last_active) >= stale_after
    }
}

/// `a` is after `b`, in wrapping sequence space.
fn after(a: u32, b: u32) -> bool {
    let d = a.wrapping_sub(b);
    d != 0 && d < u32::MAX / 2
}

/// The receive streams (see the module docs), by (sender key, stream id).
#[derive(Debug)]
pub(crate) struct Inbox {
    streams: BTreeMap<([u8; 32], u64), Stream>,
    max_streams: usize,
    window: u32,
    max_message_len: usize,
    stale_after: Duration,
    /// Counters for the client's stats: fragments out of step, messages too long.
    pub(crate) malformed: u64,
    pub(crate) too_long: u64,
}

impl Inbox {
    /// At most `max_streams` streams, `window` fragments buffered ahead in
    /// each, messages of `max_message_len` bytes; silence of `stale_after`
    /// makes a stream forgettable.
    pub(crate) fn new(
        max_streams: usize,
        window: u32,
        max_message_len: usize,
        stale_after: Duration,
    ) -> Self {
        Inbox {
            streams: BTreeMap::new(),
            max_streams,
            window,
            max_message_len,
            stale_after,
            malformed: 0,
            too_long: 0,
        }
    }

    /// Streams held.
    pub(crate) fn len(&self) -> usize {
        self.streams.len()
    }

    /// A fragment from the holder of `key`.
    pub(crate) fn on_fragment(&mut self, now: Instant, key: [u8; 32], f: Fragment<'_>) -> Outcome {
        let id = (key, f.stream);
        if !self.streams.contains_key(&id) {
            if self.streams.len() >= self.max_streams && !self.make_room(now) {
                return Outcome::Dropped;
            }
            self.streams.insert(
                id,
                Stream {
                    next_seq: f.base,
                    base: f.base,
                    ahead: BTreeMap::new(),
                    partial: Vec::new(),
                    partial_next: 0,
                    last_active: now,
                },
            );
        }
        let Some(s) = self.streams.get_mut(&id) else {
            return Outcome::Dropped;
        };
        s.last_active = now;
        if after(f.base, s.base) {
            s.base = f.base;
        }
        if after(f.base, s.next_seq) {
            // The sender gave up on fragments we never got: skip them, and
            // the message they were part of.
            s.ahead.retain(|&seq, _| !after(f.base, seq));
            s.next_seq = f.base;
            s.partial.clear();
            s.partial_next = 0;
        }
        let offset = f.seq.wrapping_sub(s.next_seq);
        if offset >= u32::MAX / 2 {
            return Outcome::Duplicate;
        }
        if offset >= self.window {
            return Outcome::Dropped;
        }
        match s.ahead.entry(f.seq) {
            Entry::Occupied(_) => return Outcome::Duplicate,
            Entry::Vacant(slot) => {
                // The one copy of a fragment's text: only what is kept.
                slot.insert((f.fragment, f.fragments, Bytes::copy_from_slice(f.body)));
            }
        }
        let mut complete = Vec::new();
        let max_len = self.max_message_len;
        while let Some((fragment, fragments, body)) = s.ahead.remove(&s.next_seq) {
            s.next_seq = s.next_seq.wrapping_add(1);
            if fragment != s.partial_next {
                // Out of step with the message being built: start over from
                // this fragment if it begins a message, else drop it.
                self.malformed += 1;
                s.partial.clear();
                s.partial_next = 0;
                if fragment != 0 {
                    continue;
                }
            }
            if s.partial.len() + body.len() > max_len {
                self.too_long += 1;
                s.partial.clear();
                s.partial_next = 0;
                continue;
            }
            s.partial.extend_from_slice(&body);
            s.partial_next = fragment + 1;
            if s.partial_next == fragments {
                let bytes = std::mem::take(&mut s.partial);
                s.partial_next = 0;
                complete.push(match String::from_utf8(bytes) {
                    Ok(t) => t,
                    Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
                });
            }
        }
        Outcome::Ack(complete)
    }

    /// Forgets one stream that is safe to forget, the least recently active.
    fn make_room(&mut self, now: Instant) -> bool {
        let stale_after = self.stale_after;
        let victim = self
            .streams
            .iter()
            .filter(|(_, s)| s.safe_to_forget(now, stale_after))
            .min_by_key(|(_, s)| s.last_active)
            .map(|(k, _)| *k);
        victim.is_some_and(|k| self.streams.remove(&k).is_some())
    }

    /// Forgets the idle streams that are safe to forget: settled ones idle
    /// for `idle`, and every stale one.
    pub(crate) fn expire(&mut self, now: Instant, idle: Duration) {
        let stale_after = self.stale_after;
        self.streams.retain(|_, s| {
            let quiet = now.saturating_duration_since(s.last_active);
            !(quiet >= idle && s.safe_to_forget(now, stale_after))
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: [u8; 32] = [1; 32];

    fn frag(seq: u32, base: u32, body: &[u8]) -> Fragment<'_> {
        Fragment {
            stream: 7,
            seq,
            base,
            fragment: 0,
            fragments: 1,
            body,
        }
    }

    fn inbox(max: usize) -> Inbox {
        Inbox::new(max, 128, 1000, Duration::from_secs(60))
    }

    #[test]
    fn a_forgotten_stream_starts_at_base_and_shows_nothing_twice() {
        let now = Instant::now();
        let mut i = inbox(4);
        assert_eq!(
            i.on_fragment(now, K, frag(0, 0, b"a")),
            Outcome::Ack(vec!["a".into()])
        );
        // The sender retransmits (our ack was lost): acknowledged, not shown.
        assert_eq!(i.on_fragment(now, K, frag(0, 0, b"a")), Outcome::Duplicate);
        // Quiet: not forgotten while the sender may not know we have seq 0.
        i.expire(now + Duration::from_secs(30), Duration::from_secs(10));
        assert_eq!(i.len(), 1);
        assert_eq!(i.on_fragment(now, K, frag(0, 0, b"a")), Outcome::Duplicate);
        // Its next fragments say base 1, then 2: seq 2 may still come again.
        assert_eq!(
            i.on_fragment(now, K, frag(1, 1, b"b")),
            Outcome::Ack(vec!["b".into()])
        );
        assert_eq!(
            i.on_fragment(now, K, frag(2, 2, b"c")),
            Outcome::Ack(vec!["c".into()])
        );
        i.expire(now + Duration::from_secs(10), Duration::from_secs(10));
        assert_eq!(i.len(), 1, "base 2 < next 3: seq 2 may come again");
        assert_eq!(i.on_fragment(now, K, frag(2, 2, b"c")), Outcome::Duplicate);
        // After half an hour of quiet it is gone; the next message is shown.
        let later = now + Duration::from_secs(1800);
        i.expire(later, Duration::from_secs(10));
        assert_eq!(i.len(), 0);
        assert_eq!(
            i.on_fragment(later, K, frag(4, 4, b"e")),
            Outcome::Ack(vec!["e".into()])
        );
    }

    #[test]
    fn a_base_past_a_gap_skips_what_the_sender_gave_up() {
        let now = Instant::now();
        let mut i = inbox(4);
        let two = |seq, base, fragment, body| Fragment {
            stream: 7,
            seq,
            base,
            fragment,
            fragments: 2,
            body,
        };
        assert_eq!(
            i.on_fragment(now, K, two(0, 0, 0, b"x")),
            Outcome::Ack(vec![])
        );
        // Fragment 1 (seq 1) never comes; the sender gives up and moves on.
        assert_eq!(
            i.on_fragment(now, K, frag(2, 2, b"ok")),
            Outcome::Ack(vec!["ok".into()])
        );
        assert_eq!(
            i.on_fragment(now, K, two(1, 0, 1, b"y")),
            Outcome::Duplicate
        );
    }

    #[test]
    fn a_full_table_evicts_only_what_is_safe_and_else_drops() {
        let now = Instant::now();
        let mut i = inbox(2);
        let k = |n: u8| [n; 32];
        // Two streams, each with a delivered fragment the sender may resend.
        assert!(matches!(
            i.on_fragment(now, k(1), frag(0, 0, b"a")),
            Outcome::Ack(_)
        ));
        assert!(matches!(
            i.on_fragment(now, k(2), frag(0, 0, b"b")),
            Outcome::Ack(_)
        ));
        assert_eq!(i.on_fragment(now, k(3), frag(0, 0, b"c")), Outcome::Dropped);
        // Still not: each may have a fragment the sender will send again.
        assert!(matches!(
            i.on_fragment(now, k(1), frag(1, 1, b"a2")),
            Outcome::Ack(_)
        ));
        assert_eq!(i.on_fragment(now, k(3), frag(0, 0, b"c")), Outcome::Dropped);
        // Stale after the timeout: room.
        let later = now + Duration::from_secs(60);
        assert_eq!(
            i.on_fragment(later, k(3), frag(0, 0, b"c")),
            Outcome::Ack(vec!["c".into()])
        );
        assert_eq!(i.len(), 2);
    }

    #[test]
    fn fragments_beyond_the_window_are_dropped() {
        let now = Instant::now();
        let mut i = inbox(4);
        assert_eq!(
            i.on_fragment(now, K, frag(128, 0, b"far")),
            Outcome::Dropped
        );
        assert_eq!(
            i.on_fragment(now, K, frag(127, 0, b"near")),
            Outcome::Ack(vec![])
        );
    }
}
