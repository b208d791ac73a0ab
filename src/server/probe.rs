//! Probes of a name's holder: is it still there?
//!
//! When another address asks for a name that is held, the server probes the
//! holder every `interval` until `timeout`. Any request from the holder counts
//! as an answer. Newcomers waiting for the outcome are remembered (a few per
//! probe) so they can be refused the moment the holder answers; one that is
//! not remembered learns the outcome on its next retry. At most `max` probes
//! run at once.

use std::collections::HashMap;
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
                self.probes.insert(
                    holder,
                    Probe {
                        request: probe_request,
                        next_send: now + self.interval,
                        deadline: now + self.timeout,
                        answered: false,
                        waiting: vec![(from, request)],
                    },
                );
                Conflict::Probe(probe_request)
            }
        }
    }

    /// The holder was heard from: the newcomers to refuse now.
    pub(crate) fn answered(&mut self, holder: UserId) -> Vec<(SocketAddr, u32)> {
        match self.probes.get_mut(&holder) {
            Some(p) if !p.answered => {
                p.answered = true;
                std::mem::take(&mut p.waiting)
            }
            _ => Vec::new(),
        }
    }

    /// Forgets the probe of a holder that left.
    pub(crate) fn remove(&mut self, holder: UserId) {
        self.probes.remove(&holder);
    }

    /// When [`Probes::step`] next has work.
    pub(crate) fn next_timeout(&self) -> Option<Instant> {
        self.probes.values().map(Probe::next_timeout).min()
    }

    /// Advances every probe whose time has come, in holder order.
    pub(crate) fn step(&mut self, now: Instant) -> Vec<(UserId, ProbeStep)> {
        let mut due: Vec<UserId> = self
            .probes
            .iter()
            .filter(|(_, p)| p.next_timeout() <= now)
            .map(|(id, _)| *id)
            .collect();
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
                steps.push((holder, ProbeStep::Resend(p.request)));
            }
        }
        steps
    }
}
