//! What the directory said: a cache of "name is reachable there (its
//! reflexive address and host candidates), with this key".
//!
//! Only positive answers are kept: "nobody" may change any moment, and a
//! forged sender must not make a real user unreachable by provoking one. An
//! entry is good for `ttl`; at most `max` are kept (a full cache is emptied
//! rather than scanned for the oldest, which only costs a lookup each).
//! Names are keys already folded by the caller.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::paths::Reach;
use crate::crypto::PublicKey;

#[derive(Debug)]
struct Entry {
    reach: Reach,
    key: PublicKey,
    at: Instant,
}

/// The cache of directory answers (see the module docs).
#[derive(Debug)]
pub(crate) struct LookupCache {
    entries: BTreeMap<String, Entry>,
    ttl: Duration,
    max: usize,
}

impl LookupCache {
    /// An empty cache keeping answers for `ttl`, at most `max` of them.
    pub(crate) fn new(ttl: Duration, max: usize) -> Self {
        LookupCache {
            entries: BTreeMap::new(),
            ttl,
            max,
        }
    }

    /// Where `name` is and its key, if a recent answer said so.
    pub(crate) fn get(&self, now: Instant, name: &str) -> Option<(&Reach, PublicKey)> {
        self.entries
            .get(name)
            .filter(|e| now.saturating_duration_since(e.at) < self.ttl)
            .map(|e| (&e.reach, e.key))
    }

    /// The directory said `name` is reachable at `reach` with `key`.
    pub(crate) fn remember(&mut self, now: Instant, name: &str, reach: Reach, key: PublicKey) {
        if self.entries.len() >= self.max && !self.entries.contains_key(name) {
            self.entries.clear();
        }
        self.entries.insert(
            name.to_owned(),
            Entry {
                reach,
                key,
                at: now,
            },
        );
    }

    /// Drops what is known of `key`.
    pub(crate) fn forget(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Drops answers older than the ttl.
    pub(crate) fn expire(&mut self, now: Instant) {
        let ttl = self.ttl;
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.at) < ttl);
    }

    /// Whether nothing is cached.
    pub(crate) fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const K: PublicKey = PublicKey([7; 32]);

    fn addr(port: u16) -> Reach {
        Reach::new(std::net::SocketAddr::from(([192, 0, 2, 1], port)), [])
    }

    #[test]
    fn answers_last_for_the_ttl() {
        let now = Instant::now();
        let ttl = Duration::from_secs(300);
        let mut c = LookupCache::new(ttl, 10);
        c.remember(now, "bob", addr(1), K);
        assert_eq!(
            c.get(now + ttl - Duration::from_millis(1), "bob"),
            Some((&addr(1), K))
        );
        assert_eq!(c.get(now + ttl, "bob"), None);
        c.expire(now + ttl);
        assert!(c.is_empty());
    }

    #[test]
    fn a_full_cache_starts_over_and_forget_forgets() {
        let now = Instant::now();
        let mut c = LookupCache::new(Duration::from_secs(300), 2);
        c.remember(now, "a", addr(1), K);
        c.remember(now, "b", addr(2), K);
        c.remember(now, "b", addr(3), K);
        assert_eq!(
            c.get(now, "a"),
            Some((&addr(1), K)),
            "updating is not growing"
        );
        c.remember(now, "c", addr(4), K);
        assert_eq!(c.get(now, "a"), None);
        assert_eq!(c.get(now, "c"), Some((&addr(4), K)));
        c.forget("c");
        assert!(c.is_empty());
    }
}
