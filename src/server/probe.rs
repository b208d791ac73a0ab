//! Probes of a name's holder: is it still there?
//!
//! When another address asks for a name that is held, the server probes the
//! holder every `interval` until `timeout`. Any request from the holder counts
//! as an answer. Newcomers waiting for the outcome are remembered (a few per
//! probe) so they can be refused the moment the holder answers; one that is
//! not remembered learns the outcome on its next retry. At most `max` probes
//! run at once.
//!
//! The probes are also kept in order of their next timeout, so a timer
//! touches only the probes that are due, and the next timeout is the first
//! of them, however many probes run.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::directory::UserId;

/// Newcomers one probe remembers, to refuse them the moment the holder answers.
pub(crate) const MAX_WAITING_PER_PROBE: usize = 8;

#[derive(Debug)]
struct Probe {
    request: u32,
    next_send: Instant,
    deadline: Instant,
    /// The holder answered; the result stands until `deadline`.
    answered: bool,
    /// Newcomers waiting: (address, sign-in request id).
    waiting: Vec<(SocketAddr, u32)>,
}

impl Probe {
    fn next_timeout(&self) -> Instant {
        if self.answered {
            self.deadline
        } else {
            self.next_send.min(self.deadline)
        }
    }
}

/// What [`Probes::on_conflict`] decided for a newcomer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Conflict {
    /// The holder has answered, or no probe can start: refuse now.
    Refuse,
    /// A probe is under way: say nothing yet.
    Wait,
    /// A new probe started: send this probe request to the holder.
    Probe(u32),
}

/// What a probe's timer decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ProbeStep {
    /// Send the probe request to the holder again.
    Resend(u32),
    /// The holder never answered: it loses the name.
    Unanswered,
    /// Over; the holder answered.
    Done,
}

/// The probes under way, by holder.
#[derive(Debug)]
pub(crate) struct Probes {
    probes: HashMap<UserId, Probe>,
    /// Each probe's [`Probe::next_timeout`] and holder: one entry a probe.
    timeouts: BTreeSet<(Instant, UserId)>,
    interval: Duration,
    timeout: Duration,
    max: usize,
    next_request: u32,
}

impl Probes {
    /// Probes every `interval` for `timeout`, at most `max` at once.
    pub(crate) fn new(interval: Duration, timeout: Duration, max: usize) -> Self {
        Probes {
            probes: HashMap::new(),
            timeouts: BTreeSet::new(),
            interval,
            timeout,
            max,
            next_request: 1,
        }
    }

    /// Newcomer `from` (sign-in `request`) wants `holder`'s name.
    pub(crate) fn on_conflict(
        &mut self,
        now: Instant,
        holder: UserId,
        from: SocketAddr,
        request: u32,
    ) -> Conflict {
        let full = self.probes.len() >= self.max;
        match self.probes.get_mut(&holder) {
            Some(p) if p.answered => Conflict::Refuse,
            Some(p) => {
                if let Some(w) = p.waiting.iter_mut().find(|(a, _)| *a == from) {
                    w.1 = request;
                } else if p.waiting.len() < MAX_WAITING_PER_PROBE {
                    p.waiting.push((from, request));
                }
                Conflict::Wait
            }
            None if full => Conflict::Refuse,
            None => {
                let probe_request = self.next_request;
                self.next_request = self.next_request.wrapping_add(1);
                let probe = Probe {
                    request: probe_request,
                    next_send: now + self.interval,
                    deadline: now + self.timeout,
                    answered: false,
                    waiting: vec![(from, request)],
                };
                self.timeouts.insert((probe.next_timeout(), holder));
                self.probes.insert(holder, probe);
                Conflict::Probe(probe_request)
            }
        }
    }

    /// The holder was heard from: the newcomers to refuse now.
    pub(crate) fn answered(&mut self, holder: UserId) -> Vec<(SocketAddr, u32)> {
        match self.probes.get_mut(&holder) {
            Some(p) if !p.answered => {
                let before = p.next_timeout();
                p.answered = true;
                let after = p.next_timeout();
                if after != before {
                    self.timeouts.remove(&(before, holder));
                    self.timeouts.insert((after, holder));
                }
                std::mem::take(&mut p.waiting)
            }
            _ => Vec::new(),
        }
    }

    /// Forgets the probe of a holder that left.
    pub(crate) fn remove(&mut self, holder: UserId) {
        if let Some(p) = self.probes.remove(&holder) {
            self.timeouts.remove(&(p.next_timeout(), holder));
        }
    }

    /// When [`Probes::step`] next has work.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.timeouts.first().map(|&(at, _)| at)
    }

    /// Advances every probe whose time has come, in holder order.
    pub(crate) fn step(&mut self, now: Instant) -> Vec<(UserId, ProbeStep)> {
        let mut due: Vec<UserId> = Vec::new();
        while let Some(&(at, holder)) = self.timeouts.first()
            && at <= now
        {
            self.timeouts.pop_first();
            due.push(holder);
        }
        due.sort_unstable();
        let mut steps = Vec::with_capacity(due.len());
        for holder in due {
            let Some(p) = self.probes.get_mut(&holder) else {
                continue;
            };
            if now >= p.deadline {
                let answered = p.answered;
                self.probes.remove(&holder);
                let step = if answered {
                    ProbeStep::Done
                } else {
                    ProbeStep::Unanswered
                };
                steps.push((holder, step));
            } else {
                p.next_send = now + self.interval;
                self.timeouts.insert((p.next_timeout(), holder));
                steps.push((holder, ProbeStep::Resend(p.request)));
            }
        }
        steps
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(probes: &Probes) {
        let earliest = probes.probes.values().map(Probe::next_timeout).min();
        assert_eq!(probes.next_timeout(), earliest);
        assert_eq!(probes.timeouts.len(), probes.probes.len());
        for (id, p) in &probes.probes {
            assert!(probes.timeouts.contains(&(p.next_timeout(), *id)));
        }
    }

    #[test]
    fn the_timeout_queue_follows_every_probe_through_any_sequence() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let mut probes = Probes::new(ms(500), ms(3000), 16);
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut now = start;
        let mut steps = 0;
        for _ in 0..20_000 {
            seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            let r = seed >> 33;
            let holder = UserId::first_in((r % 24) as u32);
            match r % 5 {
                0 | 1 => {
                    let from = SocketAddr::from(([10, 0, 0, 1], (r % 7) as u16 + 1));
                    probes.on_conflict(now, holder, from, 1);
                }
                2 => {
                    probes.answered(holder);
                }
                3 => probes.remove(holder),
                _ => {
                    now += ms(r % 700);
                    let done = probes.step(now);
                    steps += done.len();
                    let ids: Vec<UserId> = done.iter().map(|(id, _)| *id).collect();
                    assert!(ids.is_sorted(), "in holder order");
                    assert!(
                        probes.next_timeout().is_none_or(|t| t > now),
                        "all due done"
                    );
                }
            }
            check(&probes);
            assert!(probes.probes.len() <= 16);
        }
        assert!(steps > 1000, "the probes did time out and resend: {steps}");
    }

    #[test]
    fn an_answer_moves_the_probe_to_its_deadline() {
        let start = Instant::now();
        let ms = Duration::from_millis;
        let mut probes = Probes::new(ms(500), ms(3000), 4);
        let (a, b) = (UserId::first_in(1), UserId::first_in(2));
        let from = SocketAddr::from(([10, 0, 0, 1], 9));
        assert_eq!(probes.on_conflict(start, a, from, 1), Conflict::Probe(1));
        assert_eq!(
            probes.on_conflict(start + ms(100), b, from, 2),
            Conflict::Probe(2)
        );
        assert_eq!(probes.next_timeout(), Some(start + ms(500)));
        assert_eq!(probes.answered(a), vec![(from, 1)]);
        assert_eq!(probes.next_timeout(), Some(start + ms(600)), "b's resend");
        assert_eq!(
            probes.step(start + ms(600)),
            vec![(b, ProbeStep::Resend(2))]
        );
        assert_eq!(probes.next_timeout(), Some(start + ms(1100)));
        probes.remove(b);
        assert_eq!(
            probes.next_timeout(),
            Some(start + ms(3000)),
            "a's deadline"
        );
        assert_eq!(probes.step(start + ms(3000)), vec![(a, ProbeStep::Done)]);
        assert_eq!(probes.next_timeout(), None);
    }
}
