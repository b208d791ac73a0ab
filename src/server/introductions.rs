//! How many introductions a user may cause, and receive.
//!
//! A lookup made to write to someone also introduces the asker to them (see
//! `Packet::Introduction`), so both sides send at once and their NATs let
//! the answers in. Each introduction makes its receiver send handshakes to
//! the asker's addresses, so the server must not become a way for one
//! client to make others spray datagrams: every user has two small token
//! buckets, one for the introductions made on its behalf and one for those
//! sent to it, and an introduction goes out only when both have a token.
//!
//! Time is whole seconds since the server started (as `User::last_heard`),
//! so a budget takes four bytes.

use std::net::{IpAddr, SocketAddr};

use crate::codec::{AddrList, MAX_CANDIDATES};

/// The host candidates a sign-in registered, as the directory keeps them:
/// at most [`MAX_CANDIDATES`], each once, none that nobody could send to
/// (an unspecified, multicast or broadcast address, an IPv6 link-local one,
/// or port 0).
pub(crate) fn host_candidates(list: AddrList<'_>) -> Box<[SocketAddr]> {
    let mut kept: Vec<SocketAddr> = Vec::with_capacity(list.len().min(MAX_CANDIDATES));
    for addr in list.iter().take(MAX_CANDIDATES) {
        let ip = addr.ip();
        // An IPv6 link-local address is no use without its scope (which the
        // wire does not carry).
        let link_local_v6 = matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local());
        let usable = addr.port() != 0
            && !ip.is_unspecified()
            && !ip.is_multicast()
            && !link_local_v6
            && ip != IpAddr::from([255, 255, 255, 255]);
        if usable && !kept.contains(&addr) {
            kept.push(addr);
        }
    }
    kept.into_boxed_slice()
}

/// Introductions a user may cause, or receive, at once.
pub(crate) const INTRO_BURST: u8 = 8;

/// Introductions a user may cause, or receive, per second, sustained.
pub(crate) const INTRO_PER_SECOND: u32 = 1;

/// A token bucket of introductions, in four bytes (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct IntroBudget {
    tokens: u8,
    /// The second the bucket was last refilled, in the low 24 bits (it
    /// wraps after about 194 days; a wrapped clock refills the bucket,
    /// which is harmless).
    at: [u8; 3],
}

impl IntroBudget {
    /// A full bucket at second `now`.
    pub(crate) fn new(now: u32) -> Self {
        IntroBudget {
            tokens: INTRO_BURST,
            at: stamp(now),
        }
    }

    /// Tokens available at second `now`.
    fn available(&self, now: u32) -> u8 {
        let [a, b, c] = self.at;
        let then = u32::from_be_bytes([0, a, b, c]);
        let elapsed = (now & 0x00ff_ffff).wrapping_sub(then) & 0x00ff_ffff;
        let refill = elapsed.saturating_mul(INTRO_PER_SECOND);
        let total = u32::from(self.tokens).saturating_add(refill);
        u8::try_from(total.min(u32::from(INTRO_BURST))).unwrap_or(INTRO_BURST)
    }

    /// Whether a token is available at second `now` (takes nothing).
    pub(crate) fn has_token(&self, now: u32) -> bool {
        self.available(now) > 0
    }

    /// Takes a token at second `now`; `false` (and nothing taken) when the
    /// bucket is empty.
    pub(crate) fn take(&mut self, now: u32) -> bool {
        let tokens = self.available(now);
        if tokens == 0 {
            return false;
        }
        self.tokens = tokens - 1;
        self.at = stamp(now);
        true
    }
}

fn stamp(now: u32) -> [u8; 3] {
    let [_, a, b, c] = now.to_be_bytes();
    [a, b, c]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_one_a_second() {
        let mut b = IntroBudget::new(10);
        for _ in 0..INTRO_BURST {
            assert!(b.take(10));
        }
        assert!(!b.take(10), "the burst is spent");
        assert!(!b.has_token(10));
        assert!(b.take(11), "a second later, one more");
        assert!(!b.take(11));
        // A long quiet refills to the burst, no more.
        let later = 11 + 3600;
        for _ in 0..INTRO_BURST {
            assert!(b.take(later));
        }
        assert!(!b.take(later));
    }

    #[test]
    fn candidates_are_kept_once_each_and_only_when_usable() {
        let a: SocketAddr = "192.168.1.10:5000".parse().unwrap();
        let b: SocketAddr = "[2001:db8::1]:5000".parse().unwrap();
        let list = [
            a,
            a,
            "0.0.0.0:5000".parse().unwrap(),
            "192.168.1.11:0".parse().unwrap(),
            "224.0.0.1:5000".parse().unwrap(),
            "255.255.255.255:5000".parse().unwrap(),
            "[fe80::1]:5000".parse().unwrap(),
            b,
        ];
        assert_eq!(&*host_candidates(AddrList::Addrs(&list)), &[a, b]);
        let many: Vec<SocketAddr> = (1..=20)
            .map(|i| SocketAddr::from(([10, 0, 0, i], 5000)))
            .collect();
        assert_eq!(
            host_candidates(AddrList::Addrs(&many)).len(),
            MAX_CANDIDATES
        );
    }

    #[test]
    fn is_four_bytes_and_survives_the_clock_wrapping() {
        assert_eq!(std::mem::size_of::<IntroBudget>(), 4);
        let mut b = IntroBudget::new(0x00ff_fffe);
        for _ in 0..INTRO_BURST {
            assert!(b.take(0x00ff_fffe));
        }
        assert!(b.take(0x0100_0000), "two seconds later, past the wrap");
    }
}
