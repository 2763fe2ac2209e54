//! Rate limits: GCRA (`governor`) per authenticated client, with the quota from the client
//! registry, and a generous one per peer address in front of authentication so that one host
//! cannot flood the key checks. The spool drain does not pass through here.

use std::collections::HashMap;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};

/// `rate` per second with `burst` at once; `None` (no limit) when `rate` is 0.
pub fn quota(rate: u32, burst: u32) -> Option<Quota> {
    let rate = NonZeroU32::new(rate)?;
    Some(Quota::per_second(rate).allow_burst(NonZeroU32::new(burst).unwrap_or(rate)))
}

/// Whole seconds to wait, rounded up and at least 1 (`Retry-After` has no fractions).
pub fn retry_after_secs(wait: Duration) -> u64 {
    (wait.as_secs() + u64::from(wait.subsec_nanos() > 0)).max(1)
}

/// One limiter per client, rebuilt when the registry changes the client's quota.
#[derive(Default)]
pub struct ClientLimits {
    limiters: RwLock<HashMap<String, (Quota, Arc<DefaultDirectRateLimiter>)>>,
}

impl ClientLimits {
    /// `Err(seconds to wait)` when the client is over its quota.
    pub fn check(&self, client_id: &str, quota: Option<Quota>) -> Result<(), u64> {
        self.check_n(client_id, quota, NonZeroU32::MIN).map_err(|refused| match refused {
            Refused::Wait(secs) => secs,
            Refused::OverBurst => unreachable!("every quota allows one"),
        })
    }

    /// Charges `n` units at once, all or nothing: a batch of `n` declarations.
    pub fn check_n(&self, client_id: &str, quota: Option<Quota>, n: NonZeroU32) -> Result<(), Refused> {
        let Some(quota) = quota else { return Ok(()) };
        let existing = self.limiters.read().expect("limiter lock").get(client_id).filter(|(q, _)| *q == quota).map(|(_, l)| l.clone());
        let limiter = existing.unwrap_or_else(|| {
            let limiter = Arc::new(RateLimiter::direct(quota));
            self.limiters.write().expect("limiter lock").insert(client_id.to_owned(), (quota, limiter.clone()));
            limiter
        });
        match limiter.check_n(n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(Refused::Wait(retry_after_secs(not_until.wait_time_from(DefaultClock::default().now())))),
            Err(_) => Err(Refused::OverBurst),
        }
    }
}

/// Why [`ClientLimits::check_n`] charged nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// Over the quota now: whole seconds until it covers the request.
    Wait(u64),
    /// More units than the client's burst: no wait makes room for them at once.
    OverBurst,
}

/// Per peer address; `None` when disabled.
pub struct PeerLimits {
    limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl PeerLimits {
    pub fn new(quota: Option<Quota>) -> PeerLimits {
        PeerLimits { limiter: quota.map(RateLimiter::keyed) }
    }

    pub fn check(&self, peer: IpAddr) -> Result<(), u64> {
        let Some(limiter) = &self.limiter else { return Ok(()) };
        limiter.check_key(&peer).map_err(|not_until| retry_after_secs(not_until.wait_time_from(DefaultClock::default().now())))
    }

    /// Forgets peers whose limit has fully recovered, so the table does not grow without end.
    pub fn forget_idle(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_after_secs(Duration::ZERO), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(20)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1000)), 1);
        assert_eq!(retry_after_secs(Duration::from_millis(1001)), 2);
    }

    #[test]
    fn a_client_gets_its_burst_then_waits_and_others_are_unaffected() {
        let limits = ClientLimits::default();
        let quota = quota(1, 3);
        for _ in 0..3 {
            assert_eq!(limits.check("a", quota), Ok(()));
        }
        assert!(limits.check("a", quota).unwrap_err() >= 1);
        assert_eq!(limits.check("b", quota), Ok(()));
        assert_eq!(limits.check("a", None), Ok(()), "no quota, no limit");
    }

    #[test]
    fn a_batch_is_charged_whole_or_not_at_all() {
        let limits = ClientLimits::default();
        let quota = quota(1, 10);
        let n = |n| NonZeroU32::new(n).unwrap();
        assert_eq!(limits.check_n("a", quota, n(11)), Err(Refused::OverBurst));
        assert_eq!(limits.check_n("a", quota, n(7)), Ok(()));
        assert!(matches!(limits.check_n("a", quota, n(4)), Err(Refused::Wait(secs)) if secs >= 1));
        // The refused 4 took nothing: the 3 left still fit, and then nothing does.
        assert_eq!(limits.check_n("a", quota, n(3)), Ok(()));
        assert!(limits.check("a", quota).is_err());
    }
}
