//! The round-trip estimate and retransmission timeout of RFC 6298.

use std::time::Duration;

/// Smoothed round-trip time and its variation, from acknowledged fragments
/// that were sent once (Karn's rule: the caller samples only those).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Rtt {
    srtt: Option<Duration>,
    rttvar: Duration,
}

impl Rtt {
    /// Takes one measured round trip.
    pub(crate) fn sample(&mut self, rtt: Duration) {
        match self.srtt {
            None => {
                self.srtt = Some(rtt);
                self.rttvar = rtt / 2;
            }
            Some(srtt) => {
                let diff = srtt.abs_diff(rtt);
                self.rttvar = (self.rttvar * 3 + diff) / 4;
                self.srtt = Some((srtt * 7 + rtt) / 8);
            }
        }
    }

    /// The retransmission timeout: `initial` before any sample, then
    /// `srtt + 4 × rttvar` kept within `[min, max]`.
    pub(crate) fn rto(&self, initial: Duration, min: Duration, max: Duration) -> Duration {
        match self.srtt {
            None => initial,
            Some(srtt) => (srtt + self.rttvar * 4).clamp(min, max),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_rfc_6298() {
        let (initial, min, max) = (
            Duration::from_millis(300),
            Duration::from_millis(100),
            Duration::from_secs(1),
        );
        let mut rtt = Rtt::default();
        assert_eq!(rtt.rto(initial, min, max), initial);
        rtt.sample(Duration::from_millis(100));
        // srtt = 100, rttvar = 50: rto = 300.
        assert_eq!(rtt.rto(initial, min, max), Duration::from_millis(300));
        rtt.sample(Duration::from_millis(100));
        // rttvar = (3*50 + 0)/4 = 37.5: rto = 100 + 150 = 250.
        assert_eq!(rtt.rto(initial, min, max), Duration::from_micros(250_000));
        for _ in 0..50 {
            rtt.sample(Duration::from_micros(10));
        }
        assert_eq!(rtt.rto(initial, min, max), min);
        for _ in 0..50 {
            rtt.sample(Duration::from_secs(5));
        }
        assert_eq!(rtt.rto(initial, min, max), max);
    }
}
