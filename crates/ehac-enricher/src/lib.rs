//! Raw declarations in; enriched declarations or rejections out.
//!
//! Each batch is read, every record is classified by the pure [`classify`], the citizens' NIKs
//! of the accepted ones are looked up in the population registry in one request (bounded by a
//! timeout and a circuit breaker: when the registry is down or slow they stay `pending`, and
//! `ehac reconcile` verifies them later), all results are produced, and only after the broker
//! acknowledged every one are the batch's offsets committed.
//! A crash in between replays the batch: output is at-least-once, and records keep their
//! `declaration_id` key, so a replay writes the same records again rather than new ones.

use std::time::Duration;

use ehac_domain::verification::judge;
use ehac_domain::{EnrichedDeclaration, ErrorCode, FieldError, Policy, ReferenceData, Rejection};
use ehac_registry::{PopulationRegistry, RegistryArgs, Verifier};
use ehac_stream::admin::{self, Readiness};
use ehac_stream::codec::{self, ENRICHED, RAW, REJECTION};
use ehac_stream::config::{AdminArgs, KafkaArgs, PolicyArgs};
use ehac_stream::kafka;
use futures::future::join_all;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::Message;
use tokio_util::sync::CancellationToken;

pub const SERVICE: &str = "ehac-enricher";

/// Validates and enriches raw declarations.
#[derive(clap::Parser, Debug, Clone)]
#[command(name = "ehac-enricher", version, about)]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[command(flatten)]
    pub policy: PolicyArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
    /// Consumer group; every enricher instance in one group shares the raw topic's partitions.
    #[arg(long, env = "EHAC_ENRICHER_GROUP", default_value = "ehac-enricher")]
    pub group: String,
    /// Most records handled per batch.
    #[arg(long, env = "EHAC_ENRICHER_BATCH_MAX", default_value_t = 2_000)]
    pub batch_max: usize,
    /// How long a batch waits to fill before it is processed.
    #[arg(long, env = "EHAC_ENRICHER_BATCH_LINGER_MS", default_value_t = 50)]
    pub batch_linger_ms: u64,
}

/// What one raw record became.
#[derive(Debug)]
pub enum Outcome {
    /// With the raw message it came from, whose bytes the enriched one reuses.
    Enriched(Box<EnrichedDeclaration>, Vec<u8>),
    Rejected(Box<Rejection>),
}

/// Where one raw record goes, encoded.
#[derive(Debug)]
pub struct Output {
    pub topic: Destination,
    pub key: String,
    pub payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    Enriched,
    Rejected,
}

/// Decides what one message from the raw topic becomes. Pure apart from `now_ms`, which only
/// stamps a rejection: the rules themselves judge against the gateway's receive time.
pub fn classify(
    topic: &str,
    partition: i32,
    offset: i64,
    payload: &[u8],
    reference: &ReferenceData,
    policy: &Policy,
    now_ms: i64,
) -> Outcome {
    let reject = |declaration_id: Option<String>, client_id: String, errors: Vec<FieldError>, payload_json: String| {
        Outcome::Rejected(Box::new(Rejection {
            declaration_id,
            client_id,
            service: SERVICE.to_owned(),
            service_version: ehac_stream::VERSION.to_owned(),
            source_topic: topic.to_owned(),
            source_partition: partition,
            source_offset: offset,
            rejected_at_ms: now_ms,
            errors,
            payload: payload.to_vec(),
            payload_json,
        }))
    };
    match RAW.decode(payload) {
        Err(e) => reject(None, String::new(), vec![FieldError::new(ErrorCode::Undecodable, "", e.to_string())], String::new()),
        Ok(raw) => match ehac_domain::accept(raw, reference, policy, ehac_stream::VERSION) {
            Ok(enriched) => Outcome::Enriched(Box::new(enriched), payload.to_vec()),
            Err((raw, errors)) => {
                let json = serde_json::to_string(&raw.form).unwrap_or_default();
                reject(Some(raw.declaration_id), raw.form.client_id, errors, json)
            }
        },
    }
}

impl Outcome {
    /// The record to produce. Rejections of undecodable bytes are keyed by their source
    /// position, everything else by declaration id.
    pub fn encode(&self) -> Output {
        match self {
            Outcome::Enriched(e, raw_message) => Output {
                topic: Destination::Enriched,
                key: e.raw.declaration_id.clone(),
                payload: codec::encode_enriched(raw_message, &e.enrichment)
                    .unwrap_or_else(|| ENRICHED.encode(e))
                    .expect("enriched declarations always encode"),
            },
            Outcome::Rejected(r) => Output {
                topic: Destination::Rejected,
                key: r.declaration_id.clone().unwrap_or_else(|| format!("{}:{}:{}", r.source_topic, r.source_partition, r.source_offset)),
                payload: REJECTION.encode(r).expect("rejections always encode"),
            },
        }
    }
}

/// Looks up every citizen in `outcomes` with one registry request and records what the
/// registry said. When it cannot answer, they keep `pending`: the batch is never held up
/// longer than the verifier's timeout, and nobody is rejected for it.
pub async fn verify<R: PopulationRegistry>(verifier: &Verifier<R>, outcomes: &mut [Outcome]) -> Result<usize, ehac_registry::Skipped> {
    let niks: Vec<String> = outcomes
        .iter()
        .filter_map(|o| match o {
            Outcome::Enriched(e, _) => e.raw.form.traveller.nik.clone(),
            Outcome::Rejected(_) => None,
        })
        .collect();
    let answers = verifier.lookup(&niks).await?;
    let mut verified = 0;
    for outcome in outcomes {
        if let Outcome::Enriched(e, _) = outcome {
            let traveller = &e.raw.form.traveller;
            if let Some(answer) = traveller.nik.as_ref().and_then(|nik| answers.get(nik)) {
                e.enrichment.verification_status = judge(&traveller.date_of_birth, traveller.sex, answer);
                verified += 1;
            }
        }
    }
    Ok(verified)
}

struct Metrics {
    records: IntCounterVec,
    batch_size: Histogram,
    produce_retries: IntCounter,
}

impl Metrics {
    fn register(registry: &Registry) -> prometheus::Result<Self> {
        let records = IntCounterVec::new(Opts::new("enricher_records_total", "Raw records handled, by destination"), &["destination"])?;
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("enricher_batch_size", "Records per batch").buckets(prometheus::exponential_buckets(1.0, 4.0, 8)?),
        )?;
        let produce_retries = IntCounter::new("enricher_produce_retries_total", "Records produced again after a failed delivery")?;
        registry.register(Box::new(records.clone()))?;
        registry.register(Box::new(batch_size.clone()))?;
        registry.register(Box::new(produce_retries.clone()))?;
        Ok(Metrics { records, batch_size, produce_retries })
    }
}

/// Runs until `shutdown`, then finishes the batch in hand, commits it and returns.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let registry = ehac_stream::telemetry::registry("enricher");
    let metrics = Metrics::register(&registry)?;
    let readiness = Readiness::default();
    readiness.check("kafka", "not consuming yet");
    let admin_addr = admin::serve(config.admin.admin_listen, registry.clone(), readiness.clone(), shutdown.clone()).await?;
    let reference = ReferenceData::embedded();
    let policy = config.policy.policy();
    let verifier = config.registry.verifier(&registry)?;

    let brokers = &config.kafka.kafka_brokers;
    let topics = &config.kafka.topics;
    let consumer = kafka::consumer(brokers, &config.group, &[&topics.raw])?;
    let producer = kafka::producer(brokers)?;
    tracing::info!(%admin_addr, group = %config.group, from = %topics.raw, "enricher started");
    let linger = Duration::from_millis(config.batch_linger_ms);

    while let Some(batch) = kafka::next_batch(&consumer, config.batch_max, linger, &readiness, &shutdown).await {
        metrics.batch_size.observe(batch.len() as f64);
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut outcomes: Vec<Outcome> = batch
            .iter()
            .map(|m| classify(m.topic(), m.partition(), m.offset(), m.payload().unwrap_or_default(), reference, &policy, now_ms))
            .collect();
        if let Some(verifier) = &verifier {
            // Failures are logged and counted by the verifier; the records stay pending.
            let _ = verify(verifier, &mut outcomes).await;
        }
        let outputs: Vec<Output> = outcomes.iter().map(Outcome::encode).collect();
        if !produce_all(&producer, topics, &outputs, &metrics, &shutdown).await {
            tracing::warn!(records = batch.len(), "stopping with an unacknowledged batch; it will be replayed");
            return Ok(());
        }
        for o in &outputs {
            metrics
                .records
                .with_label_values(&[match o.topic {
                    Destination::Enriched => "enriched",
                    Destination::Rejected => "rejected",
                }])
                .inc();
        }
        kafka::commit_batch(&consumer, &batch);
    }
    tracing::info!("enricher drained");
    Ok(())
}

/// Produces every output, re-sending failed deliveries until all are acknowledged. Returns
/// false if shutdown came first (the caller must then not commit).
async fn produce_all(
    producer: &FutureProducer,
    topics: &ehac_stream::config::Topics,
    outputs: &[Output],
    metrics: &Metrics,
    shutdown: &CancellationToken,
) -> bool {
    let mut pending: Vec<&Output> = outputs.iter().collect();
    let mut backoff = Duration::from_millis(100);
    loop {
        let sends = pending.iter().map(|o| {
            let topic = match o.topic {
                Destination::Enriched => &topics.enriched,
                Destination::Rejected => &topics.rejected,
            };
            producer.send(FutureRecord::to(topic).key(&o.key).payload(&o.payload), Timeout::Never)
        });
        let results = join_all(sends).await;
        let failed: Vec<&Output> = pending
            .iter()
            .zip(results)
            .filter_map(|(o, r)| {
                r.err().map(|(e, _)| {
                    tracing::warn!(error = %e, key = %o.key, "delivery failed");
                    *o
                })
            })
            .collect();
        if failed.is_empty() {
            return true;
        }
        metrics.produce_retries.inc_by(failed.len() as u64);
        pending = failed;
        tokio::select! {
            _ = shutdown.cancelled() => return false,
            _ = tokio::time::sleep(backoff) => backoff = (backoff * 2).min(Duration::from_secs(5)),
        }
    }
}
