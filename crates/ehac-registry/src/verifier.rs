//! Registry lookups that give up quickly: a per-request timeout plus a circuit breaker. The
//! caller gets answers, or [`Skipped`] and stores the declarations as `pending`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ehac_domain::verification::RegistryAnswer;
use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

use crate::breaker::CircuitBreaker;
use crate::client::{HttpRegistry, PopulationRegistry};

/// Where the population registry is and how long to wait for it.
#[derive(clap::Args, Debug, Clone)]
pub struct RegistryArgs {
    /// Base URL of the population registry's HTTP API. Without it, citizens' NIKs stay
    /// `pending` until `ehac reconcile` verifies them.
    #[arg(long, env = "EHAC_REGISTRY_URL")]
    pub registry_url: Option<String>,
    /// Longest wait for one registry request (a whole batch of NIKs).
    #[arg(long, env = "EHAC_REGISTRY_TIMEOUT_MS", default_value_t = 300)]
    pub registry_timeout_ms: u64,
    /// Consecutive failed requests that open the circuit breaker.
    #[arg(long, env = "EHAC_REGISTRY_BREAKER_FAILURES", default_value_t = 3)]
    pub registry_breaker_failures: u32,
    /// How long an open breaker skips the registry before one probe request.
    #[arg(long, env = "EHAC_REGISTRY_BREAKER_COOLDOWN_MS", default_value_t = 5_000)]
    pub registry_breaker_cooldown_ms: u64,
}

impl RegistryArgs {
    /// The verifier these arguments describe; `None` without a registry URL.
    pub fn verifier(&self, metrics: &Registry) -> prometheus::Result<Option<Verifier<HttpRegistry>>> {
        let Some(url) = &self.registry_url else { return Ok(None) };
        let timeout = Duration::from_millis(self.registry_timeout_ms);
        let breaker = CircuitBreaker::new(self.registry_breaker_failures, Duration::from_millis(self.registry_breaker_cooldown_ms));
        Verifier::new(HttpRegistry::new(url, timeout), timeout, breaker, metrics).map(Some)
    }
}

/// Why no answers came back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Skipped {
    #[error("circuit breaker open: the registry failed recently")]
    BreakerOpen,
    #[error("registry did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("{0}")]
    Failed(String),
}

impl Skipped {
    fn label(&self) -> &'static str {
        match self {
            Skipped::BreakerOpen => "breaker_open",
            Skipped::TimedOut(_) => "timeout",
            Skipped::Failed(_) => "error",
        }
    }
}

pub struct Verifier<R> {
    registry: R,
    timeout: Duration,
    breaker: Mutex<CircuitBreaker>,
    requests: IntCounterVec,
    breaker_open: IntGauge,
}

impl<R: PopulationRegistry> Verifier<R> {
    /// Registers `ehac_registry_requests_total{outcome}` and `ehac_registry_breaker_open` in
    /// `metrics`.
    pub fn new(registry: R, timeout: Duration, breaker: CircuitBreaker, metrics: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(
            Opts::new("registry_requests_total", "Population registry lookups, by outcome (answered, timeout, error, breaker_open)"),
            &["outcome"],
        )?;
        let breaker_open = IntGauge::new("registry_breaker_open", "1 while the circuit breaker skips the population registry")?;
        metrics.register(Box::new(requests.clone()))?;
        metrics.register(Box::new(breaker_open.clone()))?;
        Ok(Verifier { registry, timeout, breaker: Mutex::new(breaker), requests, breaker_open })
    }

    /// Looks `niks` up in one request. Never waits longer than the timeout; returns at once
    /// while the breaker is open.
    pub async fn lookup(&self, niks: &[String]) -> Result<HashMap<String, RegistryAnswer>, Skipped> {
        if niks.is_empty() {
            return Ok(HashMap::new());
        }
        let result = if self.breaker.lock().unwrap().allow(Instant::now()) {
            match tokio::time::timeout(self.timeout, self.registry.lookup(niks)).await {
                Ok(Ok(answers)) => Ok(answers),
                Ok(Err(e)) => Err(Skipped::Failed(e.to_string())),
                Err(_) => Err(Skipped::TimedOut(self.timeout)),
            }
        } else {
            Err(Skipped::BreakerOpen)
        };
        let mut breaker = self.breaker.lock().unwrap();
        match &result {
            Ok(_) => breaker.success(),
            Err(Skipped::BreakerOpen) => {}
            Err(e) => {
                tracing::warn!(error = %e, niks = niks.len(), "population registry unavailable; declarations stay pending");
                breaker.failure(Instant::now());
            }
        }
        self.breaker_open.set(i64::from(breaker.is_open()));
        self.requests.with_label_values(&[result.as_ref().map(|_| "answered").unwrap_or_else(Skipped::label)]).inc();
        result
    }
}
