use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

pub struct GatewayMetrics {
    /// Requests by outcome: accepted, invalid, malformed, too_large, unavailable, internal,
    /// timeout (408), too_many_in_flight (429), overloaded (503), and the refusals of
    /// authentication and limits.
    pub requests: IntCounterVec,
    /// Time from request to the broker's acknowledgement, for accepted declarations.
    pub ack_seconds: Histogram,
    /// Form errors returned to clients, by code.
    pub field_errors: IntCounterVec,
    /// Declarations in the local spool, waiting for the broker.
    pub spool_records: IntGauge,
    pub spool_bytes: IntGauge,
    /// Declarations accepted into the spool because the broker did not acknowledge in time.
    pub spooled: IntCounter,
    /// Spooled declarations the broker has since acknowledged.
    pub spool_drained: IntCounter,
    /// Time to sign one pass (wall time on the request's thread, close to its CPU time).
    pub pass_seconds: Histogram,
    /// fdatasync calls of the spool: a batch spooled whole adds one.
    pub spool_fsyncs: IntCounter,
    /// Batch requests by outcome: accepted (every item), partial (some items rejected),
    /// rejected (every item), malformed, too_large, rate_limited, unavailable, timeout,
    /// too_many_in_flight, overloaded.
    pub batch_requests: IntCounterVec,
    /// Items of batch requests that were read, by outcome: accepted, or the refusal (invalid,
    /// forbidden, internal), or unavailable when the batch could not be made durable.
    pub batch_items: IntCounterVec,
    /// Requests whose body did not arrive by its deadline (408), by route: single, batch.
    pub body_timeouts: IntCounterVec,
    /// Requests refused for want of a slot, by limit: client or address (429, the caller's
    /// cap), gateway (503, `--max-requests-in-flight`).
    pub in_flight_refusals: IntCounterVec,
}

impl GatewayMetrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let requests = IntCounterVec::new(Opts::new("gateway_requests_total", "Declaration submissions by outcome"), &["outcome"])?;
        let buckets = vec![0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];
        let ack_seconds = Histogram::with_opts(
            HistogramOpts::new("gateway_ack_seconds", "Time to the broker's acknowledgement of an accepted declaration").buckets(buckets),
        )?;
        let field_errors =
            IntCounterVec::new(Opts::new("gateway_field_errors_total", "Form errors returned to clients, by code"), &["code"])?;
        let spool_records = IntGauge::new("gateway_spool_records", "Declarations in the local spool, waiting for the broker")?;
        let spool_bytes = IntGauge::new("gateway_spool_bytes", "Bytes in the local spool, waiting for the broker")?;
        let spooled = IntCounter::new(
            "gateway_spooled_total",
            "Declarations accepted into the local spool because the broker did not acknowledge in time",
        )?;
        let spool_drained = IntCounter::new("gateway_spool_drained_total", "Spooled declarations the broker has since acknowledged")?;
        let pass_seconds = Histogram::with_opts(
            HistogramOpts::new("gateway_pass_sign_seconds", "Time to build and sign one e-HAC pass")
                .buckets(vec![0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.005]),
        )?;
        let spool_fsyncs = IntCounter::new("gateway_spool_fsyncs_total", "fdatasync calls of the local spool (one per group commit)")?;
        let batch_requests = IntCounterVec::new(Opts::new("gateway_batch_requests_total", "Batch submissions by outcome"), &["outcome"])?;
        let batch_items =
            IntCounterVec::new(Opts::new("gateway_batch_items_total", "Declarations in batch submissions, by outcome"), &["outcome"])?;
        let body_timeouts = IntCounterVec::new(
            Opts::new("gateway_body_timeouts_total", "Requests whose body did not arrive by its deadline (408), by route"),
            &["route"],
        )?;
        let in_flight_refusals = IntCounterVec::new(
            Opts::new("gateway_in_flight_refusals_total", "Requests refused because their caller's or the gateway's slots were all taken"),
            &["limit"],
        )?;
        registry.register(Box::new(body_timeouts.clone()))?;
        registry.register(Box::new(in_flight_refusals.clone()))?;
        registry.register(Box::new(spool_fsyncs.clone()))?;
        registry.register(Box::new(batch_requests.clone()))?;
        registry.register(Box::new(batch_items.clone()))?;
        registry.register(Box::new(pass_seconds.clone()))?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(ack_seconds.clone()))?;
        registry.register(Box::new(field_errors.clone()))?;
        registry.register(Box::new(spool_records.clone()))?;
        registry.register(Box::new(spool_bytes.clone()))?;
        registry.register(Box::new(spooled.clone()))?;
        registry.register(Box::new(spool_drained.clone()))?;
        Ok(GatewayMetrics {
            requests,
            ack_seconds,
            field_errors,
            spool_records,
            spool_bytes,
            spooled,
            spool_drained,
            pass_seconds,
            spool_fsyncs,
            batch_requests,
            batch_items,
            body_timeouts,
            in_flight_refusals,
        })
    }
}
