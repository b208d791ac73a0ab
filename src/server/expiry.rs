//! A timing wheel for deadlines that are many, coarse and mostly pushed back.
//!
//! Every signed-in user has a deadline (last heard from + session timeout),
//! and nearly every one of them is moved later by the user's next keep-alive.
//! Keeping them in a sorted structure would cost a re-sort per keep-alive;
//! sweeping the whole directory would cost time proportional to the users on
//! every tick. The wheel does neither: an entry sits in the bucket of the tick
//! at or after its deadline, and [`ExpiryWheel::pop_due`] hands back only the
//! buckets whose tick has come. The caller checks each entry's real deadline
//! (it may have moved later since it was scheduled) and schedules it again if
//! it is not due, so an entry is touched about once per timeout, not once per
//! keep-alive.
//!
//! Guarantees:
//! * an entry is never handed back before its deadline's tick: with a tick of
//!   one second, no earlier than its deadline and at most a tick later;
//! * a deadline beyond the wheel's horizon waits in the last bucket and is
//!   handed back early, at the horizon, for the caller to schedule again;
//! * `pop_due` costs the number of entries handed back plus at most one visit
//!   per bucket; [`ExpiryWheel::next_deadline`] at most one visit per bucket.

use std::time::{Duration, Instant};

/// Buckets in the wheel: deadlines up to this many ticks ahead are exact.
pub(crate) const BUCKETS: usize = 64;

/// A timing wheel of `T` entries (see the module docs).
#[derive(Debug)]
pub(crate) struct ExpiryWheel<T> {
    start: Instant,
    tick: Duration,
    buckets: Vec<Vec<T>>,
    /// The first tick not yet handed back.
    current: u64,
    len: usize,
}

impl<T> ExpiryWheel<T> {
    /// An empty wheel whose tick 0 begins at `start`. A zero `tick` is taken
    /// as one millisecond.
    pub(crate) fn new(start: Instant, tick: Duration) -> Self {
        ExpiryWheel {
            start,
            tick: tick.max(Duration::from_millis(1)),
            buckets: std::iter::repeat_with(Vec::new).take(BUCKETS).collect(),
            current: 0,
            len: 0,
        }
    }

    /// Entries waiting.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// The tick at or after `deadline`.
    fn tick_at_or_after(&self, deadline: Instant) -> u64 {
        let since = deadline.saturating_duration_since(self.start);
        let tick = self.tick.as_nanos();
        let ticks = since.as_nanos().div_ceil(tick);
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

    fn bucket(tick: u64) -> usize {
        // The remainder is below BUCKETS, which fits any usize.
        (tick % BUCKETS as u64) as usize
    }

    /// Schedules `entry` to be handed back once `deadline` has come.
    pub(crate) fn schedule(&mut self, deadline: Instant, entry: T) {
        let last = self.current + BUCKETS as u64 - 1;
        let tick = self.tick_at_or_after(deadline).clamp(self.current, last);
        self.buckets[Self::bucket(tick)].push(entry);
        self.len += 1;
    }

    /// When the earliest waiting entry is due (a tick boundary), or `None`
    /// when the wheel is empty.
    pub(crate) fn next_deadline(&self) -> Option<Instant> {
        if self.len == 0 {
            return None;
        }
        (self.current..self.current + BUCKETS as u64)
            .find(|t| !self.buckets[Self::bucket(*t)].is_empty())
            .map(|t| self.instant_of(t))
    }

    /// Moves every entry whose tick has come by `now` into `due`. Afterwards
    /// [`ExpiryWheel::next_deadline`] is later than `now`.
    pub(crate) fn pop_due(&mut self, now: Instant, due: &mut Vec<T>) {
        if self.len == 0 {
            self.current = self.current.max(self.tick_of(now) + 1);
            return;
        }
        let now_tick = self.tick_of(now);
        if now_tick < self.current {
            return;
        }
        let span = (now_tick - self.current + 1).min(BUCKETS as u64);
        for tick in self.current..self.current + span {
            let bucket = &mut self.buckets[Self::bucket(tick)];
            self.len -= bucket.len();
            due.append(bucket);
        }
        self.current = now_tick + 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn popped(w: &mut ExpiryWheel<u32>, now: Instant) -> Vec<u32> {
        let mut due = Vec::new();
        w.pop_due(now, &mut due);
        due.sort_unstable();
        due
    }

    #[test]
    fn never_early_and_at_most_a_tick_late() {
        let start = Instant::now();
        let mut w = ExpiryWheel::new(start, secs(1));
        w.schedule(start + Duration::from_millis(15_300), 1);
        w.schedule(start + secs(15), 2);
        assert_eq!(w.next_deadline(), Some(start + secs(15)));
        assert!(popped(&mut w, start + Duration::from_millis(14_999)).is_empty());
        assert_eq!(popped(&mut w, start + secs(15)), vec![2]);
        assert_eq!(w.next_deadline(), Some(start + secs(16)));
        assert!(popped(&mut w, start + Duration::from_millis(15_999)).is_empty());
        assert_eq!(popped(&mut w, start + secs(16)), vec![1]);
        assert_eq!(w.len(), 0);
        assert_eq!(w.next_deadline(), None);
    }

    #[test]
    fn past_deadlines_are_due_at_once_and_next_deadline_moves_past_now() {
        let start = Instant::now();
        let mut w = ExpiryWheel::new(start, secs(1));
        let now = start + secs(100);
        assert!(popped(&mut w, now).is_empty());
        w.schedule(start + secs(3), 7);
        let next = w.next_deadline().unwrap();
        assert!(next > now, "{next:?} not after {now:?}");
        assert_eq!(popped(&mut w, next), vec![7]);
    }

    #[test]
    fn far_deadlines_come_back_at_the_horizon_for_rescheduling() {
        let start = Instant::now();
        let mut w = ExpiryWheel::new(start, secs(1));
        w.schedule(start + secs(1000), 1);
        let horizon = start + secs(BUCKETS as u64 - 1);
        assert_eq!(w.next_deadline(), Some(horizon));
        assert_eq!(popped(&mut w, horizon), vec![1]);
    }

    #[test]
    fn a_long_jump_hands_back_everything_once() {
        let start = Instant::now();
        let mut w = ExpiryWheel::new(start, secs(1));
        for i in 0..200u32 {
            w.schedule(start + secs(u64::from(i % 70)), i);
        }
        let all = popped(&mut w, start + secs(10_000));
        assert_eq!(all, (0..200).collect::<Vec<_>>());
        assert_eq!(w.len(), 0);
    }

    proptest::proptest! {
        /// Against a model: every entry comes back exactly once, never before
        /// its deadline (unless beyond the horizon), and within a tick of it.
        #[test]
        fn matches_a_model(
            deadlines in proptest::collection::vec(0u64..200_000, 0..100),
            steps in proptest::collection::vec(1u64..5_000, 1..200),
        ) {
            let start = Instant::now();
            let tick = Duration::from_millis(1000);
            let mut w = ExpiryWheel::new(start, tick);
            for (i, d) in deadlines.iter().enumerate() {
                w.schedule(start + Duration::from_millis(*d), i);
            }
            let mut seen = vec![false; deadlines.len()];
            let mut now = start;
            for step in steps {
                now += Duration::from_millis(step);
                let mut due = Vec::new();
                w.pop_due(now, &mut due);
                for i in due {
                    proptest::prop_assert!(!seen[i]);
                    seen[i] = true;
                    let deadline = start + Duration::from_millis(deadlines[i]);
                    let horizon = now.saturating_duration_since(start) >= tick * (BUCKETS as u32 - 1);
                    proptest::prop_assert!(deadline <= now || horizon);
                    proptest::prop_assert!(now < deadline + tick + Duration::from_millis(5_000));
                }
                if let Some(next) = w.next_deadline() {
                    proptest::prop_assert!(next > now);
                }
            }
            let mut due = Vec::new();
            w.pop_due(now + Duration::from_secs(1_000_000), &mut due);
            for i in due {
                proptest::prop_assert!(!seen[i]);
                seen[i] = true;
            }
            proptest::prop_assert!(seen.iter().all(|s| *s));
        }
    }
}
