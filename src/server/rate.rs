//! Per-source rate limiting: a token bucket per source address.
//!
//! The table holds at most `max_sources` buckets. When it is full, a new
//! source first prunes the sources whose bucket has refilled (they are idle),
//! at most once per [`PRUNE_INTERVAL`] so a flood of new addresses costs a
//! lookup each, not a scan each; sources that still find no room share one
//! overflow bucket. The work is bounded by the table's size, never by the
//! number of users.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// A full table is scanned for idle sources at most this often.
pub(crate) const PRUNE_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

/// Token buckets per source address (see the module docs).
#[derive(Debug)]
pub(crate) struct RateLimiter {
    rate: f64,
    burst: f64,
    max_sources: usize,
    buckets: HashMap<SocketAddr, Bucket>,
    overflow: Bucket,
    last_prune: Instant,
}

impl RateLimiter {
    /// `rate` datagrams a second per source sustained, `burst` at once, for
    /// at most `max_sources` sources tracked apart.
    pub(crate) fn new(now: Instant, rate: f64, burst: f64, max_sources: usize) -> Self {
        RateLimiter {
            rate,
            burst,
            max_sources,
            buckets: HashMap::new(),
            overflow: Bucket {
                tokens: burst,
                last: now,
            },
            last_prune: now,
        }
    }

    /// Sources tracked apart.
    #[cfg(test)]
    pub(crate) fn sources(&self) -> usize {
        self.buckets.len()
    }

    /// Whether a datagram from `from` may be handled now (and counts it).
    pub(crate) fn admit(&mut self, now: Instant, from: SocketAddr) -> bool {
        let known = self.buckets.contains_key(&from);
        if !known
            && self.buckets.len() >= self.max_sources
            && now.saturating_duration_since(self.last_prune) >= PRUNE_INTERVAL
        {
            self.prune(now);
        }
        let burst = self.burst;
        let bucket = if known || self.buckets.len() < self.max_sources {
            self.buckets.entry(from).or_insert(Bucket {
                tokens: burst,
                last: now,
            })
        } else {
            &mut self.overflow
        };
        let elapsed = now.saturating_duration_since(bucket.last).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.rate).min(burst);
        bucket.last = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets sources whose bucket has refilled: they are idle.
    fn prune(&mut self, now: Instant) {
        self.last_prune = now;
        let (rate, burst) = (self.rate, self.burst);
        self.buckets.retain(|_, b| {
            let elapsed = now.saturating_duration_since(b.last).as_secs_f64();
            b.tokens + elapsed * rate < burst
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([192, 0, 2, 1], port))
    }

    #[test]
    fn a_burst_then_the_sustained_rate() {
        let now = Instant::now();
        let mut r = RateLimiter::new(now, 10.0, 5.0, 100);
        assert_eq!((0..10).filter(|_| r.admit(now, addr(1))).count(), 5);
        assert!(r.admit(now, addr(2)), "another source has its own bucket");
        let later = now + Duration::from_millis(500);
        assert_eq!((0..10).filter(|_| r.admit(later, addr(1))).count(), 5);
    }

    #[test]
    fn a_full_table_prunes_idle_sources_and_overflows_into_one_bucket() {
        let now = Instant::now();
        let mut r = RateLimiter::new(now, 1.0, 2.0, 4);
        for p in 0..4 {
            assert!(r.admit(now, addr(p)));
        }
        // Full, nobody idle yet: new sources share the overflow bucket.
        assert!(r.admit(now, addr(10)));
        assert!(r.admit(now, addr(11)));
        assert!(!r.admit(now, addr(12)));
        assert_eq!(r.sources(), 4);
        // Later every bucket has refilled: a new source prunes them.
        let later = now + Duration::from_secs(5);
        assert!(r.admit(later, addr(13)));
        assert_eq!(r.sources(), 1);
    }
}
