//! A timing wheel for deadlines that are many, coarse and mostly pushed back.
//!
//! Every signed-in user has a deadline (last heard from + session timeout),
//! and nearly every one of them is moved later by the user's next keep-alive.
//! Keeping them in a sorted structure would cost a re-sort per keep-alive;
//! sweeping the whole directory would cost time proportional to the users on
//! every tick. The wheel does neither: an entry sits in the bucket of the tick
//! at or after its deadline, and [`ExpiryWheel::pop_due`] hands back only
//! entries whose tick has come. The caller checks each entry's real deadline
//! (it may have moved later since it was scheduled) and schedules it again if
//! it is not due, so an entry is touched about once per timeout, not once per
//! keep-alive.
//!
//! Entries are `u32` slot numbers, and each bucket is a singly linked list
//! threaded through the slots themselves ([`Links`]): four bytes a user, no
//! allocation per entry, nothing to grow or shrink. A slot is in at most one
//! bucket ([`NOT_LINKED`] otherwise).
//!
//! Guarantees:
//! * an entry is never handed back before its deadline's tick: with a tick of
//!   one second, no earlier than its deadline and at most a tick later;
//! * a deadline beyond the wheel's horizon (its buckets times its tick, made
//!   to cover the session timeout) waits in the last bucket and is handed
//!   back early, at the horizon, for the caller to schedule again;
//! * [`ExpiryWheel::pop_due`] costs O(1) per entry handed back plus a scan of
//!   the wheel's bitmap of non-empty buckets (one word per 64 buckets), as
//!   does [`ExpiryWheel::next_deadline`]; neither depends on the number of
//!   entries.

use std::time::{Duration, Instant};

/// A slot's link when it is in no bucket.
pub(crate) const NOT_LINKED: u32 = u32::MAX;
/// The link of the last slot in a bucket.
const END: u32 = u32::MAX - 1;

/// The fewest buckets a wheel has.
pub(crate) const MIN_BUCKETS: usize = 64;
/// The most buckets a wheel has: deadlines further ahead come back early.
pub(crate) const MAX_BUCKETS: usize = 8192;

/// Where the wheel keeps each slot's link: the next slot in the same
/// bucket, [`NOT_LINKED`] for a slot in no bucket. A slot the wheel has
/// never seen must read as [`NOT_LINKED`].
pub(crate) trait Links {
    /// Slot `slot`'s link.
    fn link(&self, slot: u32) -> u32;
    /// Sets slot `slot`'s link.
    fn set_link(&mut self, slot: u32, link: u32);
}

/// A timing wheel of slots (see the module docs).
#[derive(Debug)]
pub(crate) struct ExpiryWheel {
    start: Instant,
    tick: Duration,
    /// The first slot of each bucket's list, or [`END`].
    heads: Vec<u32>,
    /// Bit `b` of word `b / 64`: bucket `b` is not empty.
    nonempty: Vec<u64>,
    /// The first tick not yet handed back in full.
    current: u64,
    /// After a jump of a horizon or more, everything that was in the wheel,
    /// still to hand back ([`END`] when empty).
    due: u32,
}

impl ExpiryWheel {
    /// An empty wheel whose tick 0 begins at `start`, with buckets enough
    /// for deadlines up to `horizon` ahead (between [`MIN_BUCKETS`] and
    /// [`MAX_BUCKETS`]). A zero `tick` is taken as one millisecond.
    pub(crate) fn new(start: Instant, tick: Duration, horizon: Duration) -> Self {
        let tick = tick.max(Duration::from_millis(1));
        let needed = horizon
            .as_nanos()
            .div_ceil(tick.as_nanos())
            .saturating_add(2);
        let buckets = usize::try_from(needed)
            .unwrap_or(MAX_BUCKETS)
            .clamp(MIN_BUCKETS, MAX_BUCKETS)
            .next_multiple_of(64);
        ExpiryWheel {
            start,
            tick,
            heads: vec![END; buckets],
            nonempty: vec![0; buckets / 64],
            current: 0,
            due: END,
        }
    }

    fn buckets(&self) -> u64 {
        self.heads.len() as u64
    }

    /// The tick at or after `deadline`.
    fn tick_at_or_after(&self, deadline: Instant) -> u64 {
        let since = deadline.saturating_duration_since(self.start);
        let ticks = since.as_nanos().div_ceil(self.tick.as_nanos());
        u64::try_from(ticks).unwrap_or(u64::MAX)
    }

    /// The tick `now` falls in.
    fn tick_of(&self, now: Instant) -> u64 {
        let since = now.saturating_duration_since(self.start);
        u64::try_from(since.as_nanos() / self.tick.as_nanos()).unwrap_or(u64::MAX)
    }

    fn instant_of(&self, tick: u64) -> Instant {
        let nanos = u128::from(tick) * self.tick.as_nanos();
        let nanos = u64::try_from(nanos).unwrap_or(u64::MAX);
        self.start + Duration::from_nanos(nanos)
    }

    fn bucket(&self, tick: u64) -> usize {
        // The remainder is below the number of buckets, a usize.
        (tick % self.buckets()) as usize
    }

    /// The first tick from `current` whose bucket is not empty.
    fn first_nonempty(&self) -> Option<u64> {
        let n = self.buckets();
        let from = self.bucket(self.current);
        let words = self.nonempty.len();
        // Word by word from `from`'s, round the ring once; the first word
        // is looked at twice, masked to the bits at and after `from` and
        // then (after wrapping) to those before it.
        for step in 0..=words {
            let w = (from / 64 + step) % words;
            let mut bits = self.nonempty[w];
            if step == 0 {
                bits &= u64::MAX << (from % 64);
            } else if step == words {
                bits &= !(u64::MAX << (from % 64));
            }
            if bits != 0 {
                let bucket = (w * 64) as u64 + u64::from(bits.trailing_zeros());
                let ahead = (bucket + n - from as u64) % n;
                return Some(self.current + ahead);
            }
        }
        None
    }

    /// Schedules `slot`, which is in no bucket, to be handed back once
    /// `deadline` has come.
    pub(crate) fn schedule(&mut self, links: &mut impl Links, deadline: Instant, slot: u32) {
        debug_assert_eq!(links.link(slot), NOT_LINKED);
        let last = self.current + self.buckets() - 1;
        let tick = self.tick_at_or_after(deadline).clamp(self.current, last);
        let b = self.bucket(tick);
        links.set_link(slot, self.heads[b]);
        self.heads[b] = slot;
        self.nonempty[b / 64] |= 1 << (b % 64);
    }

    /// When the earliest waiting entry is due (a tick boundary), or `None`
    /// when the wheel is empty.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if self.due != END {
            return Some(self.instant_of(self.current.saturating_sub(1)));
        }
        self.first_nonempty().map(|t| self.instant_of(t))
    }

    /// Moves every bucket's list onto the due list and the wheel to
    /// `now_tick + 1`. Costs the buckets plus the entries moved, every one
    /// of which is due.
    fn gather(&mut self, links: &mut impl Links, now_tick: u64) {
        for b in 0..self.heads.len() {
            let head = self.heads[b];
            if head == END {
                continue;
            }
            let mut tail = head;
            while links.link(tail) != END {
                tail = links.link(tail);
            }
            links.set_link(tail, self.due);
            self.due = head;
            self.heads[b] = END;
        }
        self.nonempty.fill(0);
        self.current = now_tick.saturating_add(1);
    }

    /// Takes one entry whose tick has come by `now` out of the wheel, or
    /// `None` when there are no more; then [`ExpiryWheel::next_deadline`]
    /// is later than `now`. An entry scheduled meanwhile for a deadline
    /// after `now` is not handed back by this `now`.
    pub(crate) fn pop_due(&mut self, links: &mut impl Links, now: Instant) -> Option<u32> {
        let now_tick = self.tick_of(now);
        // Were `now` a horizon or more ahead, an entry scheduled again for
        // after `now` could only go to a bucket still to be handed back:
        // first take everything out, all of it due.
        if self.due == END && now_tick.saturating_add(1) >= self.current + self.buckets() {
            self.gather(links, now_tick);
        }
        if self.due != END {
            let slot = self.due;
            self.due = links.link(slot);
            links.set_link(slot, NOT_LINKED);
            return Some(slot);
        }
        match self.first_nonempty() {
            Some(tick) if tick <= now_tick => {
                self.current = tick;
                let b = self.bucket(tick);
                let slot = self.heads[b];
                self.heads[b] = links.link(slot);
                links.set_link(slot, NOT_LINKED);
                if self.heads[b] == END {
                    self.nonempty[b / 64] &= !(1 << (b % 64));
                }
                Some(slot)
            }
            _ => {
                self.current = self.current.max(now_tick.saturating_add(1));
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl Links for Vec<u32> {
        fn link(&self, slot: u32) -> u32 {
            self[slot as usize]
        }
        fn set_link(&mut self, slot: u32, link: u32) {
            self[slot as usize] = link;
        }
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn wheel(start: Instant) -> ExpiryWheel {
        ExpiryWheel::new(start, secs(1), secs(15))
    }

    fn popped(w: &mut ExpiryWheel, links: &mut Vec<u32>, now: Instant) -> Vec<u32> {
        let mut due: Vec<u32> = std::iter::from_fn(|| w.pop_due(links, now)).collect();
        due.sort_unstable();
        due
    }

    #[test]
    fn never_early_and_at_most_a_tick_late() {
        let start = Instant::now();
        let mut links = vec![NOT_LINKED; 4];
        let mut w = wheel(start);
        w.schedule(&mut links, start + Duration::from_millis(15_300), 1);
        w.schedule(&mut links, start + secs(15), 2);
        assert_eq!(w.next_deadline(), Some(start + secs(15)));
        assert!(popped(&mut w, &mut links, start + Duration::from_millis(14_999)).is_empty());
        assert_eq!(popped(&mut w, &mut links, start + secs(15)), vec![2]);
        assert_eq!(links[2], NOT_LINKED, "handed back: in no bucket");
        assert_eq!(w.next_deadline(), Some(start + secs(16)));
        assert!(popped(&mut w, &mut links, start + Duration::from_millis(15_999)).is_empty());
        assert_eq!(popped(&mut w, &mut links, start + secs(16)), vec![1]);
        assert_eq!(w.next_deadline(), None);
        assert!(links.iter().all(|l| *l == NOT_LINKED));
    }

    #[test]
    fn past_deadlines_are_due_at_once_and_next_deadline_moves_past_now() {
        let start = Instant::now();
        let mut links = vec![NOT_LINKED; 8];
        let mut w = wheel(start);
        let now = start + secs(100);
        assert!(popped(&mut w, &mut links, now).is_empty());
        w.schedule(&mut links, start + secs(3), 7);
        let next = w.next_deadline().unwrap();
        assert!(next > now, "{next:?} not after {now:?}");
        assert_eq!(popped(&mut w, &mut links, next), vec![7]);
    }

    #[test]
    fn far_deadlines_come_back_at_the_horizon_for_rescheduling() {
        let start = Instant::now();
        let mut links = vec![NOT_LINKED; 2];
        let mut w = wheel(start);
        assert_eq!(w.buckets(), MIN_BUCKETS as u64);
        w.schedule(&mut links, start + secs(1000), 1);
        let horizon = start + secs(MIN_BUCKETS as u64 - 1);
        assert_eq!(w.next_deadline(), Some(horizon));
        assert_eq!(popped(&mut w, &mut links, horizon), vec![1]);
        // A long timeout gets buckets enough to hold it exactly.
        let w = ExpiryWheel::new(start, secs(1), secs(3600));
        assert_eq!(w.buckets(), 3648);
    }

    #[test]
    fn a_long_jump_hands_back_everything_once_and_a_reschedule_waits() {
        let start = Instant::now();
        let mut links = vec![NOT_LINKED; 200];
        let mut w = wheel(start);
        for i in 0..200u32 {
            w.schedule(&mut links, start + secs(u64::from(i % 70)), i);
        }
        let now = start + secs(10_000);
        // Entry 5 is put back for later while the others are handed back.
        let mut all = Vec::new();
        while let Some(slot) = w.pop_due(&mut links, now) {
            if slot == 5 && !all.contains(&5) {
                w.schedule(&mut links, now + secs(2), 5);
            }
            all.push(slot);
        }
        all.sort_unstable();
        assert_eq!(all, (0..200).collect::<Vec<_>>());
        assert_eq!(w.next_deadline(), Some(start + secs(10_002)));
        assert_eq!(popped(&mut w, &mut links, now + secs(2)), vec![5]);
    }

    proptest::proptest! {
        /// Against a model: every entry comes back exactly once, never before
        /// its deadline (unless beyond the horizon), and within a tick of it;
        /// `next_deadline` is after `now` once everything due is taken.
        #[test]
        fn matches_a_model(
            deadlines in proptest::collection::vec(0u64..200_000, 0..100),
            steps in proptest::collection::vec(1u64..5_000, 1..200),
        ) {
            let start = Instant::now();
            let tick = Duration::from_millis(1000);
            let mut w = wheel(start);
            let mut links = vec![NOT_LINKED; deadlines.len()];
            for (i, d) in deadlines.iter().enumerate() {
                w.schedule(&mut links, start + Duration::from_millis(*d), i as u32);
            }
            let mut seen = vec![false; deadlines.len()];
            let mut now = start;
            for step in steps {
                now += Duration::from_millis(step);
                while let Some(i) = w.pop_due(&mut links, now) {
                    let i = i as usize;
                    proptest::prop_assert!(!seen[i]);
                    seen[i] = true;
                    let deadline = start + Duration::from_millis(deadlines[i]);
                    let horizon = now.saturating_duration_since(start)
                        >= tick * (MIN_BUCKETS as u32 - 1);
                    proptest::prop_assert!(deadline <= now || horizon);
                    proptest::prop_assert!(now < deadline + tick + Duration::from_millis(5_000));
                }
                if let Some(next) = w.next_deadline() {
                    proptest::prop_assert!(next > now);
                }
            }
            let end = now + Duration::from_secs(1_000_000);
            while let Some(i) = w.pop_due(&mut links, end) {
                proptest::prop_assert!(!seen[i as usize]);
                seen[i as usize] = true;
            }
            proptest::prop_assert!(seen.iter().all(|s| *s));
        }
    }
}
