//! Address-validation cookies: proof that a client receives at its address.
//!
//! A cookie is a keyed hash (SipHash-2-4) of the address and a time bucket, as
//! DNS server cookies are (RFC 9018), so the server keeps no state for an
//! address until it echoes one. A cookie is good for the bucket it was made in
//! and the next, so between one and two [`Cookies::lifetime`]s.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::secret::{Key, addr_bytes, constant_time_eq};

/// Bytes in a cookie.
pub(crate) const COOKIE_LEN: usize = super::COOKIE_LEN;

/// Makes and checks cookies.
#[derive(Debug)]
pub(crate) struct Cookies {
    key: Key,
    start: Instant,
    lifetime: Duration,
}

impl Cookies {
    /// Cookies under `key`, in buckets of `lifetime` counted from `start`.
    pub(crate) fn new(key: Key, start: Instant, lifetime: Duration) -> Self {
        Cookies {
            key,
            start,
            lifetime: lifetime.max(Duration::from_millis(1)),
        }
    }

    fn bucket(&self, now: Instant) -> u64 {
        let age = now.saturating_duration_since(self.start).as_nanos();
        u64::try_from(age / self.lifetime.as_nanos()).unwrap_or(u64::MAX)
    }

    fn make(&self, addr: &SocketAddr, bucket: u64) -> [u8; COOKIE_LEN] {
        self.key
            .mac(&[b"cookie", &addr_bytes(addr), &bucket.to_be_bytes()])
    }

    /// The cookie for `addr` now.
    pub(crate) fn mint(&self, now: Instant, addr: &SocketAddr) -> [u8; COOKIE_LEN] {
        self.make(addr, self.bucket(now))
    }

    /// Whether `cookie` is one minted for `addr` in this bucket or the last.
    pub(crate) fn verify(&self, now: Instant, addr: &SocketAddr, cookie: &[u8]) -> bool {
        let bucket = self.bucket(now);
        constant_time_eq(cookie, &self.make(addr, bucket))
            || bucket > 0 && constant_time_eq(cookie, &self.make(addr, bucket - 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cookie_is_good_for_one_to_two_lifetimes_and_one_address() {
        let start = Instant::now();
        let life = Duration::from_secs(30);
        let c = Cookies::new(Key::new([5; 16]), start, life);
        let a: SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let b: SocketAddr = "192.0.2.1:4001".parse().unwrap();
        let cookie = c.mint(start + Duration::from_secs(29), &a);
        assert!(c.verify(start + Duration::from_secs(29), &a, &cookie));
        assert!(c.verify(start + Duration::from_secs(59), &a, &cookie));
        assert!(!c.verify(start + Duration::from_secs(60), &a, &cookie));
        assert!(!c.verify(start + Duration::from_secs(29), &b, &cookie));
        assert!(!c.verify(start, &a, &[]));
        assert!(!c.verify(start, &a, &cookie[..8]));
    }
}
