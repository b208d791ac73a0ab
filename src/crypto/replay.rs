//! The anti-replay window of RFC 6479: a sliding bitmap of counters seen.
//!
//! A receiver accepts a counter once, and only while it is within the window
//! behind the highest counter seen; anything older is refused, so a captured
//! packet replayed later, or a network duplicate, is never taken twice. The
//! bitmap is `BLOCKS` 64-bit words used as a ring; one word is kept as slack
//! (RFC 6479's trick), so sliding forward clears whole words and costs at most
//! `BLOCKS` word writes however far it jumps. The window spans
//! `(BLOCKS - 1) × 64` counters: 1984 for peer sessions (32 blocks, as
//! WireGuard's 2048-bit bitmap), 64 for the server's (2 blocks).
//!
//! **Only after the packet has opened**: [`ReplayWindow::accept`] records the
//! counter, so calling it for a packet that then fails authentication would
//! let a forger burn counters and slide the window past genuine packets.
//! Check [`ReplayWindow::would_accept`] first if it saves work, then open,
//! then accept.

/// Counters are refused from here on: the window's arithmetic needs room
/// above the highest counter, and a session must be replaced long before.
pub const COUNTER_LIMIT: u64 = u64::MAX - (1 << 16);

/// The replay window (see the module docs).
#[derive(Clone, PartialEq, Eq)]
pub struct ReplayWindow<const BLOCKS: usize> {
    /// One more than the highest counter accepted; 0 before the first.
    next: u64,
    bitmap: [u64; BLOCKS],
}

impl<const BLOCKS: usize> std::fmt::Debug for ReplayWindow<BLOCKS> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl<const BLOCKS: usize> Default for ReplayWindow<BLOCKS> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const BLOCKS: usize> ReplayWindow<BLOCKS> {
    const BITS: u64 = 64 * BLOCKS as u64;
    /// Counters this far behind the highest are still accepted once.
    pub const SPAN: u64 = Self::BITS - 64;

    /// A window that has seen nothing.
    pub const fn new() -> Self {
        assert!(BLOCKS >= 2, "a replay window needs at least two blocks");
        ReplayWindow {
            next: 0,
            bitmap: [0; BLOCKS],
        }
    }

    fn slot(counter: u64) -> (usize, u64) {
        let bit = counter % Self::BITS;
        // Below BLOCKS, which is a usize.
        ((bit / 64) as usize, 1 << (bit % 64))
    }

    /// One more than the highest counter accepted; 0 before the first.
    pub fn next(&self) -> u64 {
        self.next
    }

    /// Whether `counter` would be accepted now (nothing is recorded).
    pub fn would_accept(&self, counter: u64) -> bool {
        if counter >= COUNTER_LIMIT {
            return false;
        }
        if counter >= self.next {
            return true;
        }
        if self.next - counter > Self::SPAN + 1 {
            return false;
        }
        let (block, mask) = Self::slot(counter);
        self.bitmap[block] & mask == 0
    }

    /// Records `counter` if it is new and recent enough; `false` (and
    /// nothing recorded) for a replay, a duplicate or a counter too old.
    pub fn accept(&mut self, counter: u64) -> bool {
        if !self.would_accept(counter) {
            return false;
        }
        if counter >= self.next {
            // Clear the blocks the window slides over, at most all of them.
            let old_top = self.next.checked_sub(1).map(|c| c / 64);
            let new_top = counter / 64;
            let from = old_top.map_or(0, |t| t + 1);
            // Nothing to clear while the top stays in its block.
            let clear = if new_top >= from {
                (new_top - from).saturating_add(1).min(BLOCKS as u64)
            } else {
                0
            };
            for b in 0..clear {
                let block = (new_top - b) % BLOCKS as u64;
                self.bitmap[block as usize] = 0;
            }
            self.next = counter + 1;
        }
        let (block, mask) = Self::slot(counter);
        self.bitmap[block] |= mask;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    type Peer = ReplayWindow<32>;

    #[test]
    fn in_order_reordered_duplicated_and_old() {
        let mut w = Peer::new();
        assert!(w.accept(0));
        assert!(!w.accept(0), "duplicate");
        assert!(w.accept(5));
        assert!(w.accept(3), "late but within the window");
        assert!(!w.accept(3));
        assert!(w.accept(1) && w.accept(2) && w.accept(4));
        assert!(w.accept(5000));
        assert!(!w.accept(5), "far behind now");
        assert!(w.accept(5000 - Peer::SPAN));
        assert!(!w.accept(5000 - Peer::SPAN - 1));
        assert!(w.accept(4999) && !w.accept(4999));
    }

    #[test]
    fn moving_up_within_a_block_keeps_its_bits() {
        // Found by the model test: accepting 1 after 0 cleared 0's block.
        let mut w = ReplayWindow::<4>::new();
        assert!(w.accept(0) && w.accept(1));
        assert!(!w.would_accept(0) && !w.accept(0));
        assert!(w.accept(63) && !w.accept(1));
        assert!(w.accept(64) && !w.accept(63) && !w.accept(0));
    }

    #[test]
    fn huge_jumps_and_the_limit() {
        let mut w = Peer::new();
        assert!(w.accept(1 << 40));
        assert!(!w.accept(1), "an old counter after a jump");
        assert!(w.accept((1 << 40) - 1));
        assert!(w.accept(COUNTER_LIMIT - 1));
        assert!(!w.accept(COUNTER_LIMIT));
        assert!(!w.accept(u64::MAX));
        assert!(!w.accept(COUNTER_LIMIT - 1));
    }

    proptest::proptest! {
        /// Against a model: accepted exactly when new and within the span.
        #[test]
        fn matches_a_model(ops in proptest::collection::vec((0u64..5000, proptest::bool::ANY), 1..400)) {
            let mut w = ReplayWindow::<4>::new();
            let mut seen = BTreeSet::new();
            let mut highest: Option<u64> = None;
            let mut base = 0u64;
            for (step, jump) in ops {
                // Mostly small steps around the top, sometimes a jump ahead.
                let counter = if jump { base + step } else { base.saturating_sub(step % 300) };
                base = base.max(counter);
                let fresh = !seen.contains(&counter);
                let recent = highest.is_none_or(|h| counter + ReplayWindow::<4>::SPAN >= h);
                let expected = fresh && recent;
                proptest::prop_assert_eq!(w.would_accept(counter), expected, "{}", counter);
                proptest::prop_assert_eq!(w.accept(counter), expected, "{}", counter);
                if expected {
                    seen.insert(counter);
                    highest = Some(highest.map_or(counter, |h| h.max(counter)));
                }
            }
        }
    }
}
