//! A circuit breaker: after `failure_threshold` consecutive failures the registry is not called
//! for `cooldown`; then one probe call decides whether to close again. While open, a batch
//! costs no time at all, so the enricher keeps its throughput when the registry is down.

use std::time::{Duration, Instant};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
    },
    /// One probe call is in flight; everyone else skips.
    HalfOpen,
}

#[derive(Debug)]
pub struct CircuitBreaker {
    failure_threshold: u32,
    cooldown: Duration,
    state: State,
}

impl CircuitBreaker {
    pub fn new(failure_threshold: u32, cooldown: Duration) -> Self {
        CircuitBreaker { failure_threshold: failure_threshold.max(1), cooldown, state: State::Closed { failures: 0 } }
    }

    pub fn state(&self) -> State {
        self.state
    }

    pub fn is_open(&self) -> bool {
        !matches!(self.state, State::Closed { .. })
    }

    /// Whether a call may go out now. Moves an expired open breaker to half-open and lets that
    /// one probe through.
    pub fn allow(&mut self, now: Instant) -> bool {
        match self.state {
            State::Closed { .. } => true,
            State::Open { until } if now >= until => {
                self.state = State::HalfOpen;
                true
            }
            State::Open { .. } | State::HalfOpen => false,
        }
    }

    pub fn success(&mut self) {
        self.state = State::Closed { failures: 0 };
    }

    pub fn failure(&mut self, now: Instant) {
        self.state = match self.state {
            State::Closed { failures } if failures + 1 < self.failure_threshold => State::Closed { failures: failures + 1 },
            _ => State::Open { until: now + self.cooldown },
        };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_the_threshold_and_probes_after_the_cooldown() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(3, Duration::from_secs(10));
        for _ in 0..2 {
            assert!(b.allow(t0));
            b.failure(t0);
        }
        assert!(!b.is_open(), "two failures are below the threshold");
        assert!(b.allow(t0));
        b.failure(t0);
        assert_eq!(b.state(), State::Open { until: t0 + Duration::from_secs(10) });
        assert!(!b.allow(t0 + Duration::from_secs(9)));
        assert!(b.allow(t0 + Duration::from_secs(10)), "one probe after the cooldown");
        assert!(!b.allow(t0 + Duration::from_secs(10)), "only one probe at a time");
        b.failure(t0 + Duration::from_secs(10));
        assert!(!b.allow(t0 + Duration::from_secs(11)), "a failed probe opens it again");
        assert!(b.allow(t0 + Duration::from_secs(20)));
        b.success();
        assert_eq!(b.state(), State::Closed { failures: 0 });
    }

    #[test]
    fn a_success_resets_the_failure_count() {
        let t0 = Instant::now();
        let mut b = CircuitBreaker::new(2, Duration::from_secs(1));
        b.failure(t0);
        b.success();
        b.failure(t0);
        assert!(!b.is_open());
    }
}
