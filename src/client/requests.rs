//! Requests to the directory server: ids, retries with backoff, deadlines.
//!
//! A request is sent at once (when it can be: the caller says which kinds can
//! go out now), then again after `retry`, doubling each time up to
//! `max_retry`, until it is answered or `timeout` after it started. Ids count
//! up from a random start (wrapping), so a late reply to an old request is
//! not taken for a new one's. Replies are matched by id and kind.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::CommandId;

/// What a request asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RequestKind {
    SignIn,
    /// One page of a list command's walk, from `cursor`.
    List {
        id: CommandId,
        cursor: u32,
    },
    /// Where `name` is; `introduce` when we mean to write to it.
    Lookup {
        name: String,
        introduce: bool,
    },
    KeepAlive,
    SignOut,
}

#[derive(Debug)]
struct Request {
    kind: RequestKind,
    next_send: Instant,
    backoff: Duration,
    deadline: Instant,
    sent_once: bool,
}

/// A request due to be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Due {
    pub(crate) id: u32,
    /// Sent before: this is a retry.
    pub(crate) retry: bool,
}

/// The requests under way (see the module docs).
#[derive(Debug)]
pub(crate) struct Requests {
    next_id: u32,
    requests: BTreeMap<u32, Request>,
    retry: Duration,
    max_retry: Duration,
    timeout: Duration,
}

impl Requests {
    /// No requests; the first gets id `first_id`.
    pub(crate) fn new(
        first_id: u32,
        retry: Duration,
        max_retry: Duration,
        timeout: Duration,
    ) -> Self {
        Requests {
            next_id: first_id,
            requests: BTreeMap::new(),
            retry,
            max_retry,
            timeout,
        }
    }

    /// Starts a request, due at once; returns its id.
    pub(crate) fn start(&mut self, now: Instant, kind: RequestKind) -> u32 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.requests.insert(
            id,
            Request {
                kind,
                next_send: now,
                backoff: self.retry,
                deadline: now + self.timeout,
                sent_once: false,
            },
        );
        id
    }

    /// Starts a request due `delay` from now (its deadline counts from
    /// then); returns its id.
    pub(crate) fn start_delayed(
        &mut self,
        now: Instant,
        delay: Duration,
        kind: RequestKind,
    ) -> u32 {
        let id = self.start(now + delay, kind);
        if let Some(r) = self.requests.get_mut(&id) {
            r.next_send = now + delay;
        }
        id
    }

    /// What request `id` asks, if it is under way.
    pub(crate) fn kind(&self, id: u32) -> Option<&RequestKind> {
        self.requests.get(&id).map(|r| &r.kind)
    }

    /// Ends request `id` if it is under way and `is` accepts its kind.
    pub(crate) fn take_if(
        &mut self,
        id: u32,
        is: impl Fn(&RequestKind) -> bool,
    ) -> Option<RequestKind> {
        if !self.requests.get(&id).is_some_and(|r| is(&r.kind)) {
            return None;
        }
        self.requests.remove(&id).map(|r| r.kind)
    }

    /// Ends request `id`, whatever it was.
    pub(crate) fn remove(&mut self, id: u32) -> Option<RequestKind> {
        self.requests.remove(&id).map(|r| r.kind)
    }

    /// Whether any request under way is of a kind `is` accepts.
    pub(crate) fn any(&self, is: impl Fn(&RequestKind) -> bool) -> bool {
        self.requests.values().any(|r| is(&r.kind))
    }

    /// Ends every request of a kind `is` accepts.
    pub(crate) fn cancel(&mut self, is: impl Fn(&RequestKind) -> bool) {
        self.requests.retain(|_, r| !is(&r.kind));
    }

    /// Ends every request.
    pub(crate) fn clear(&mut self) {
        self.requests.clear();
    }

    /// Makes request `id` due now.
    pub(crate) fn release_one(&mut self, id: u32, now: Instant) {
        if let Some(r) = self.requests.get_mut(&id) {
            r.next_send = now;
        }
    }

    /// Makes every request due now (after being held back).
    pub(crate) fn release(&mut self, now: Instant) {
        for r in self.requests.values_mut() {
            r.next_send = now;
        }
    }

    /// The requests whose deadline has passed, in id order; they stay under
    /// way until the caller ends them.
    pub(crate) fn expired(&self, now: Instant) -> Vec<u32> {
        self.requests
            .iter()
            .filter(|(_, r)| now >= r.deadline)
            .map(|(id, _)| *id)
            .collect()
    }

    /// The requests due to be sent now whose kind `sendable` accepts, in id
    /// order; each is counted as sent and its next retry scheduled.
    pub(crate) fn due(
        &mut self,
        now: Instant,
        sendable: impl Fn(&RequestKind) -> bool,
    ) -> Vec<Due> {
        let mut due = Vec::new();
        for (id, r) in &mut self.requests {
            if now < r.next_send || !sendable(&r.kind) {
                continue;
            }
            due.push(Due {
                id: *id,
                retry: r.sent_once,
            });
            r.sent_once = true;
            r.next_send = now + r.backoff;
            r.backoff = (r.backoff * 2).min(self.max_retry);
        }
        due
    }

    /// When a request is next due to be sent (if `sendable` accepts its kind)
    /// or to expire.
    pub(crate) fn next_timeout(&self, sendable: impl Fn(&RequestKind) -> bool) -> Option<Instant> {
        self.requests
            .values()
            .map(|r| {
                if sendable(&r.kind) {
                    r.next_send.min(r.deadline)
                } else {
                    r.deadline
                }
            })
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn requests() -> Requests {
        Requests::new(u32::MAX, ms(250), ms(500), Duration::from_secs(10))
    }

    #[test]
    fn retries_back_off_to_the_cap_until_the_deadline() {
        let start = Instant::now();
        let mut r = requests();
        let id = r.start(start, RequestKind::KeepAlive);
        let mut sends = Vec::new();
        let mut now = start;
        while r.expired(now).is_empty() {
            for due in r.due(now, |_| true) {
                assert_eq!(due.id, id);
                assert_eq!(due.retry, !sends.is_empty());
                sends.push(now.duration_since(start));
            }
            now = r.next_timeout(|_| true).unwrap();
        }
        assert_eq!(&sends[..4], &[ms(0), ms(250), ms(750), ms(1250)]);
        assert_eq!(now.duration_since(start), Duration::from_secs(10));
        // 0, 0.25 s, then every 0.5 s to 9.75 s: the "about 20 tries" of
        // `ClientConfig::max_request_retry`.
        assert_eq!(sends.len(), 21, "{sends:?}");
    }

    #[test]
    fn held_back_requests_only_expire_until_released() {
        let start = Instant::now();
        let mut r = requests();
        let id = r.start(start, RequestKind::SignOut);
        let held = |k: &RequestKind| matches!(k, RequestKind::SignIn);
        assert!(r.due(start, held).is_empty());
        assert_eq!(r.next_timeout(held), Some(start + Duration::from_secs(10)));
        r.release(start + ms(10));
        let due = r.due(start + ms(10), |_| true);
        assert_eq!(due, vec![Due { id, retry: false }]);
    }

    #[test]
    fn ids_wrap_and_replies_match_by_kind() {
        let now = Instant::now();
        let mut r = requests();
        let a = r.start(now, RequestKind::KeepAlive);
        let b = r.start(
            now,
            RequestKind::Lookup {
                name: "Bob".into(),
                introduce: true,
            },
        );
        assert_eq!((a, b), (u32::MAX, 0));
        assert!(
            r.take_if(a, |k| matches!(k, RequestKind::SignOut))
                .is_none()
        );
        assert_eq!(
            r.take_if(a, |k| matches!(k, RequestKind::KeepAlive)),
            Some(RequestKind::KeepAlive)
        );
        assert!(r.take_if(a, |_| true).is_none(), "answered once only");
        assert!(r.any(|k| matches!(k, RequestKind::Lookup { .. })));
        r.cancel(|k| matches!(k, RequestKind::Lookup { .. }));
        assert!(r.kind(b).is_none());
    }
}
