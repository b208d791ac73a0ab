//! How many introductions a user may cause, and receive.
//!
//! A lookup made to write to someone also introduces the asker to them (see
//! `Packet::Introduction`), so both sides send at once and their NATs let
//! the answers in. Each introduction makes its receiver send handshakes to
//! the asker's addresses, so the server must not become a way for one
//! client to make others spray datagrams: every user has two small token
//! buckets, one for the introductions made on its behalf and one for those
//! sent to it, and an introduction goes out only when both have a token.
//! One asker is introduced to one target at most once in
//! [`INTRO_REPEAT_SECS`], so that it cannot spend the target's budget and
//! starve everyone else's introductions to it. (Many accounts together
//! still can: a user who is made unreachable that way is reported as having
//! no direct path. Accounts are free to make, so no budget per user stops a
//! determined flood; the budgets bound what it costs the others.)
//!
//! Time is whole seconds since the server started (as `User::last_heard`),
//! so a budget takes four bytes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

use crate::codec::{AddrList, MAX_CANDIDATES};

/// A user's host candidates: at most [`MAX_CANDIDATES`] addresses, in
/// order, held without allocating.
#[derive(Clone, Copy)]
pub(crate) struct HostCandidates {
    addrs: [SocketAddr; MAX_CANDIDATES],
    len: usize,
}

impl Default for HostCandidates {
    fn default() -> Self {
        HostCandidates {
            addrs: [SocketAddr::from(([0, 0, 0, 0], 0)); MAX_CANDIDATES],
            len: 0,
        }
    }
}

impl HostCandidates {
    /// Appends `addr`; `false` (and nothing kept) when the list is full.
    pub(crate) fn push(&mut self, addr: SocketAddr) -> bool {
        let Some(free) = self.addrs.get_mut(self.len) else {
            return false;
        };
        *free = addr;
        self.len += 1;
        true
    }

    /// The addresses, in the order pushed.
    pub(crate) fn as_slice(&self) -> &[SocketAddr] {
        self.addrs.get(..self.len).unwrap_or(&[])
    }
}

impl std::fmt::Debug for HostCandidates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

/// The host candidates a sign-in registered, as the directory keeps them:
/// at most [`MAX_CANDIDATES`], each once, in the order given, none that
/// nobody could send to (an unspecified, multicast, broadcast or loopback
/// address, an IPv6 link-local one, or port 0).
///
/// One equal to the address the sign-in came from is kept: it tells a peer
/// that the user is not behind a NAT (`Reach::behind_nat` on the client).
pub(crate) fn host_candidates(list: AddrList<'_>) -> HostCandidates {
    let mut kept = HostCandidates::default();
    for addr in list.iter() {
        let ip = addr.ip();
        // An IPv6 link-local address is no use without its scope (which the
        // wire does not carry).
        let link_local_v6 = matches!(ip, IpAddr::V6(v6) if v6.is_unicast_link_local());
        let usable = addr.port() != 0
            && !ip.is_unspecified()
            && !ip.is_multicast()
            && !ip.is_loopback()
            && !link_local_v6
            && ip != IpAddr::from([255, 255, 255, 255]);
        if usable && !kept.as_slice().contains(&addr) && !kept.push(addr) {
            break;
        }
    }
    kept
}

/// A token bucket's size and refill.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limit {
    /// Tokens at once.
    pub(crate) burst: u8,
    /// Tokens a second, sustained.
    pub(crate) per_second: u8,
}

/// Introductions made on one user's behalf: 8 at once, then 1 a second.
pub(crate) const ASKER: Limit = Limit {
    burst: 8,
    per_second: 1,
};

/// Introductions sent to one user: 16 at once, then 4 a second, so that
/// no one asker (who gets one introduction to a given user per
/// [`INTRO_REPEAT_SECS`]) can use them all up.
pub(crate) const TARGET: Limit = Limit {
    burst: 16,
    per_second: 4,
};

/// One asker is introduced to one target at most once in this many seconds:
/// its client asks again at 1, 3 and 6 s while no session forms, and asking
/// more often than that only spends the target's budget.
pub(crate) const INTRO_REPEAT_SECS: u32 = 2;

/// The (asker, target) pairs introduced lately, so that one asker cannot
/// spend a target's budget faster than one introduction per
/// [`INTRO_REPEAT_SECS`]. Holds at most `capacity` pairs: when full, those
/// older than that are dropped, and if none are, the table starts over
/// (which only lets a pair be introduced once more).
#[derive(Debug)]
pub(crate) struct RecentIntroductions {
    pairs: HashMap<(u32, u32), u32>,
    capacity: usize,
}

impl RecentIntroductions {
    /// An empty table of at most `capacity` pairs.
    pub(crate) fn new(capacity: usize) -> Self {
        RecentIntroductions {
            pairs: HashMap::new(),
            capacity,
        }
    }

    /// Whether `asker` was introduced to `target` within the last
    /// [`INTRO_REPEAT_SECS`] before second `now`.
    pub(crate) fn is_recent(&self, asker: u32, target: u32, now: u32) -> bool {
        self.pairs
            .get(&(asker, target))
            .is_some_and(|at| now.saturating_sub(*at) < INTRO_REPEAT_SECS)
    }

    /// Records that `asker` was introduced to `target` at second `now`.
    pub(crate) fn record(&mut self, asker: u32, target: u32, now: u32) {
        if self.pairs.len() >= self.capacity && !self.pairs.contains_key(&(asker, target)) {
            self.pairs
                .retain(|_, at| now.saturating_sub(*at) < INTRO_REPEAT_SECS);
            if self.pairs.len() >= self.capacity {
                self.pairs.clear();
            }
        }
        self.pairs.insert((asker, target), now);
    }
}

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
    /// A full bucket of `limit` at second `now`.
    pub(crate) fn new(now: u32, limit: Limit) -> Self {
        IntroBudget {
            tokens: limit.burst,
            at: stamp(now),
        }
    }

    /// Tokens available at second `now`.
    fn available(&self, now: u32, limit: Limit) -> u8 {
        let [a, b, c] = self.at;
        let then = u32::from_be_bytes([0, a, b, c]);
        let elapsed = (now & 0x00ff_ffff).wrapping_sub(then) & 0x00ff_ffff;
        let refill = elapsed.saturating_mul(u32::from(limit.per_second));
        let total = u32::from(self.tokens).saturating_add(refill);
        u8::try_from(total.min(u32::from(limit.burst))).unwrap_or(limit.burst)
    }

    /// Whether a token is available at second `now` (takes nothing).
    pub(crate) fn has_token(&self, now: u32, limit: Limit) -> bool {
        self.available(now, limit) > 0
    }

    /// Takes a token at second `now`; `false` (and nothing taken) when the
    /// bucket is empty.
    pub(crate) fn take(&mut self, now: u32, limit: Limit) -> bool {
        let tokens = self.available(now, limit);
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
        let mut b = IntroBudget::new(10, ASKER);
        for _ in 0..ASKER.burst {
            assert!(b.take(10, ASKER));
        }
        assert!(!b.take(10, ASKER), "the burst is spent");
        assert!(!b.has_token(10, ASKER));
        assert!(b.take(11, ASKER), "a second later, one more");
        assert!(!b.take(11, ASKER));
        // A long quiet refills to the burst, no more.
        let later = 11 + 3600;
        for _ in 0..ASKER.burst {
            assert!(b.take(later, ASKER));
        }
        assert!(!b.take(later, ASKER));
    }

    #[test]
    fn a_pair_is_recent_for_the_repeat_time_and_the_table_stays_bounded() {
        let mut r = RecentIntroductions::new(4);
        r.record(1, 2, 100);
        assert!(r.is_recent(1, 2, 100 + INTRO_REPEAT_SECS - 1));
        assert!(!r.is_recent(1, 2, 100 + INTRO_REPEAT_SECS));
        assert!(!r.is_recent(2, 1, 100), "a pair, not a set");
        for asker in 10..1000 {
            r.record(asker, 2, 200);
            assert!(r.pairs.len() <= 4);
        }
        assert!(r.is_recent(999, 2, 200));
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
            "127.0.0.1:5000".parse().unwrap(),
            b,
        ];
        assert_eq!(host_candidates(AddrList::Addrs(&list)).as_slice(), &[a, b]);
        let many: Vec<SocketAddr> = (1..=20)
            .map(|i| SocketAddr::from(([10, 0, 0, i], 5000)))
            .collect();
        let kept = host_candidates(AddrList::Addrs(&many));
        assert_eq!(kept.as_slice(), &many[..MAX_CANDIDATES], "the first ones");
        assert_eq!(
            format!("{kept:?}"),
            format!("{:?}", &many[..MAX_CANDIDATES])
        );
    }

    #[test]
    fn is_four_bytes_and_survives_the_clock_wrapping() {
        assert_eq!(std::mem::size_of::<IntroBudget>(), 4);
        let mut b = IntroBudget::new(0x00ff_fffe, ASKER);
        for _ in 0..ASKER.burst {
            assert!(b.take(0x00ff_fffe, ASKER));
        }
        assert!(
            b.take(0x0100_0000, ASKER),
            "two seconds later, past the wrap"
        );
    }
}
