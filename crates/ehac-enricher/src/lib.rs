//! Raw declarations in; enriched declarations or rejections out.
//!
//! Each batch is read, every record is classified by the pure [`classify`], the citizens' NIKs
//! of the accepted ones are looked up in the population registry in one request (bounded by a
//! timeout and a circuit breaker: when the registry is down or slow they stay `pending`, and
//! `ehac reconcile` verifies them later), and all results are produced.
//!
//! Exactly-once through Kafka (the default where the broker supports transactions): a batch's
//! outputs and its input offsets go in one Kafka transaction (`transactional.id` per instance,
//! `send_offsets_to_transaction`), so a crash anywhere leaves either all of them or none visible
//! to read_committed readers (the sink). An aborted batch is read again from its first offset.
//!
//! Without transactions (`--transactions off`, or a broker that has none): the batch's offsets
//! are committed only after the broker acknowledged every output; a crash in between replays
//! the batch, so output is at-least-once, and records keep their `declaration_id` key, so a
//! replay writes the same records again rather than new ones (the sink drops the copies).

use std::time::Duration;

use ehac_codec::{self as codec, ENRICHED, RAW, REJECTION};
use ehac_domain::verification::judge;
use ehac_domain::{EnrichedDeclaration, FieldError, Policy, ReferenceData, Rejection, TravellerIdentity};
use ehac_registry::{PopulationRegistry, RegistryArgs, Verifier};
use ehac_stream::admin::{self, Readiness};
use ehac_stream::config::{AdminArgs, KafkaArgs, MembershipArgs, PepperArgs, PolicyArgs};
use ehac_stream::kafka;
use ehac_stream::kafka::Membership;
use futures::future::join_all;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::OwnedMessage;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{Message, Offset};
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
    /// The pepper of the traveller key; the enricher refuses to start without one.
    #[command(flatten)]
    pub pepper: PepperArgs,
    /// Consumer group; every enricher instance in one group shares the raw topic's partitions.
    #[arg(long, env = "EHAC_ENRICHER_GROUP", default_value = "ehac-enricher")]
    pub group: String,
    /// Most records handled per batch.
    #[arg(long, env = "EHAC_ENRICHER_BATCH_MAX", default_value_t = 2_000)]
    pub batch_max: usize,
    /// How long a batch waits to fill before it is processed.
    #[arg(long, env = "EHAC_ENRICHER_BATCH_LINGER_MS", default_value_t = 50)]
    pub batch_linger_ms: u64,
    /// Kafka transactions: `auto` uses them when the broker supports them, `on` requires them,
    /// `off` commits offsets after the outputs' acks instead (at-least-once; the sink dedups).
    #[arg(long, env = "EHAC_ENRICHER_TRANSACTIONS", value_enum, default_value_t = Transactions::Auto)]
    pub transactions: Transactions,
    /// This instance's `transactional.id`: stable across its restarts, unique among instances.
    /// Default: `<group>-<instance id>` when `--kafka-group-instance-id` is set, else
    /// `<group>-<hostname>-<admin port>` (a pod name or host plus port is both).
    #[arg(long, env = "EHAC_ENRICHER_TRANSACTIONAL_ID")]
    pub transactional_id: Option<String>,
    /// How long the broker lets a transaction stay open before aborting it: the longest a dead
    /// instance that never comes back holds up read_committed readers of its partitions.
    #[arg(long, env = "EHAC_ENRICHER_TRANSACTION_TIMEOUT_MS", default_value_t = 30_000)]
    pub transaction_timeout_ms: u64,
    #[command(flatten)]
    pub membership: MembershipArgs,
}

#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transactions {
    Auto,
    On,
    Off,
}

impl Config {
    /// The transactional id this instance uses (see `--transactional-id`).
    pub fn transactional_id(&self) -> String {
        if let Some(id) = &self.transactional_id {
            return id.clone();
        }
        if let Some(instance) = &self.membership.kafka_group_instance_id {
            return format!("{}-{instance}", self.group);
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_else(|_| "host".into());
        format!("{}-{host}-{}", self.group, self.admin.admin_listen.port())
    }
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
        Err(e) => {
            let source = codec::Source { topic, partition, offset };
            Outcome::Rejected(Box::new(codec::undecodable(SERVICE, ehac_stream::VERSION, source, payload, &e, now_ms)))
        }
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

/// Gives every accepted declaration its traveller key under `pepper`. The key is HMAC output
/// only: the pepper itself never reaches a record.
pub fn pseudonymize(pepper: &ehac_domain::Pepper, outcomes: &mut [Outcome]) {
    for outcome in outcomes {
        if let Outcome::Enriched(e, _) = outcome {
            if let Some(identity) = TravellerIdentity::of(&e.raw.form.traveller, &e.enrichment.nationality) {
                e.enrichment.traveller_key = pepper.traveller_key(&identity);
                e.enrichment.pepper_version = pepper.version() as i32;
            }
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

/// The enricher's own metrics, registered once at start.
pub struct Metrics {
    records: IntCounterVec,
    batch_size: Histogram,
    produce_retries: IntCounter,
    transactions: IntCounterVec,
    batch_stuck_seconds: prometheus::IntGauge,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let records = IntCounterVec::new(Opts::new("enricher_records_total", "Raw records handled, by destination"), &["destination"])?;
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("enricher_batch_size", "Records per batch").buckets(prometheus::exponential_buckets(1.0, 4.0, 8)?),
        )?;
        let produce_retries = IntCounter::new("enricher_produce_retries_total", "Records produced again after a failed delivery")?;
        let transactions = IntCounterVec::new(
            Opts::new("enricher_transactions_total", "Kafka transactions, by outcome (committed, aborted)"),
            &["outcome"],
        )?;
        registry.register(Box::new(records.clone()))?;
        registry.register(Box::new(batch_size.clone()))?;
        registry.register(Box::new(produce_retries.clone()))?;
        let batch_stuck_seconds = prometheus::IntGauge::new(
            "enricher_batch_stuck_seconds",
            "How long one step has held the batch in hand, once past 30 s; 0 otherwise",
        )?;
        registry.register(Box::new(transactions.clone()))?;
        registry.register(Box::new(batch_stuck_seconds.clone()))?;
        Ok(Metrics { records, batch_size, produce_retries, transactions, batch_stuck_seconds })
    }

    fn count(&self, outputs: &[Output]) {
        for o in outputs {
            let destination = match o.topic {
                Destination::Enriched => "enriched",
                Destination::Rejected => "rejected",
            };
            self.records.with_label_values(&[destination]).inc();
        }
    }
}

/// Where the batch loop is. A batch that stops moving without any call returning an error
/// would otherwise be silent: a thread of its own (not a task, so a blocked runtime cannot
/// hide it) says which step has held the batch for how long, in the log and as a gauge.
#[derive(Clone)]
struct Stage(std::sync::Arc<std::sync::Mutex<(&'static str, std::time::Instant)>>);

/// The step that waits for records: idle there is normal, so it is never reported.
const READING: &str = "reading";

impl Stage {
    fn new() -> Self {
        Stage(std::sync::Arc::new(std::sync::Mutex::new((READING, std::time::Instant::now()))))
    }

    fn enter(&self, step: &'static str) {
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = (step, std::time::Instant::now());
    }

    fn now(&self) -> (&'static str, Duration) {
        let (step, since) = *self.0.lock().unwrap_or_else(|p| p.into_inner());
        (step, since.elapsed())
    }

    /// Reports a step held longer than `after`, then every `after` again while it lasts.
    fn watch(&self, gauge: prometheus::IntGauge, after: Duration, shutdown: CancellationToken) {
        let stage = self.clone();
        let spawned = std::thread::Builder::new().name("batch-watch".into()).spawn(move || {
            let mut reported = Duration::ZERO;
            while !shutdown.is_cancelled() {
                std::thread::sleep(Duration::from_secs(1));
                let (step, held) = stage.now();
                let stuck = step != READING && held >= after;
                gauge.set(if stuck { held.as_secs() as i64 } else { 0 });
                if !stuck {
                    reported = Duration::ZERO;
                } else if held >= reported + after {
                    tracing::warn!(step, held_s = held.as_secs(), "the batch in hand has not moved on");
                    reported = held;
                }
            }
        });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "could not start the batch watch");
        }
    }
}

/// How a batch's outputs and offsets are made durable.
enum Delivery {
    /// One Kafka transaction per batch.
    Transactional(FutureProducer),
    /// Outputs acknowledged, then offsets committed.
    AtLeastOnce(FutureProducer),
}

/// Runs until `shutdown`, then finishes the batch in hand, commits it and returns.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let registry = ehac_stream::telemetry::registry("enricher");
    let metrics = Metrics::register(&registry)?;
    let readiness = Readiness::default();
    readiness.check("kafka", "not consuming yet");
    let admin_addr = admin::serve(config.admin.admin_listen, registry.clone(), readiness.clone(), shutdown.clone()).await?;
    config.admin.bound.set(admin_addr);
    let reference = ReferenceData::embedded();
    let policy = config.policy.policy();
    let verifier = config.registry.verifier(&registry)?;
    let pepper = config.pepper.pepper()?;

    let brokers = &config.kafka.kafka_brokers;
    let topics = &config.kafka.topics;
    let Some(delivery) = delivery(&config, &readiness, &shutdown).await? else { return Ok(()) };
    let consumer = std::sync::Arc::new(config.membership.consumer(brokers, &config.group, &[&topics.raw])?);
    let mut watch = config.membership.watch(&registry, &[&topics.raw])?;
    tracing::info!(%admin_addr, group = %config.group, from = %topics.raw, pepper_version = pepper.version(), transactional = matches!(delivery, Delivery::Transactional(_)), "enricher started");
    let linger = Duration::from_millis(config.batch_linger_ms);
    let stage = Stage::new();
    stage.watch(metrics.batch_stuck_seconds.clone(), Duration::from_secs(30), shutdown.clone());

    while let Some(batch) = kafka::next_batch(&consumer, config.batch_max, linger, &readiness, &shutdown).await? {
        if batch.is_empty() {
            stage.enter("checking membership");
            let (c, r) = (consumer.clone(), readiness.clone());
            let (w, verdict) = tokio::task::spawn_blocking(move || {
                let verdict = watch.check(&*c, &r);
                (watch, verdict)
            })
            .await?;
            watch = w;
            if verdict == Membership::Exit {
                anyhow::bail!("no partitions assigned for too long while the group has lag; exiting for a restart");
            }
            stage.enter(READING);
            continue;
        }
        metrics.batch_size.observe(batch.len() as f64);
        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut outcomes: Vec<Outcome> = batch
            .iter()
            .map(|m| classify(m.topic(), m.partition(), m.offset(), m.payload().unwrap_or_default(), reference, &policy, now_ms))
            .collect();
        pseudonymize(&pepper, &mut outcomes);
        if let Some(verifier) = &verifier {
            stage.enter("verifying");
            // Failures are logged and counted by the verifier; the records stay pending.
            let _ = verify(verifier, &mut outcomes).await;
        }
        let outputs: Vec<Output> = outcomes.iter().map(Outcome::encode).collect();
        match &delivery {
            Delivery::AtLeastOnce(producer) => {
                stage.enter("producing");
                if !produce_all(producer, topics, &outputs, &metrics, &shutdown).await {
                    tracing::warn!(records = batch.len(), "stopping with an unacknowledged batch; it will be replayed");
                    return Ok(());
                }
                metrics.count(&outputs);
                kafka::commit_batch(&consumer, &batch);
            }
            Delivery::Transactional(producer) => {
                let budget = call_budget(config.transaction_timeout_ms);
                match transact(producer, &consumer, topics, &batch, &outputs, budget, &stage).await? {
                    Transacted::Committed => {
                        metrics.transactions.with_label_values(&["committed"]).inc();
                        metrics.count(&outputs);
                    }
                    Transacted::Aborted(e) => {
                        metrics.transactions.with_label_values(&["aborted"]).inc();
                        tracing::warn!(error = %e, records = batch.len(), "transaction aborted; the batch is read again from its first offsets");
                        stage.enter("rewinding");
                        rewind(&consumer, &batch);
                        tokio::select! {
                            _ = shutdown.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                        }
                    }
                }
            }
        }
        stage.enter(READING);
    }
    tracing::info!("enricher drained");
    Ok(())
}

/// Sets up the producer: transactional if asked for or, with `auto`, if the broker supports it.
/// `None` if shutdown came first.
async fn delivery(config: &Config, readiness: &Readiness, shutdown: &CancellationToken) -> anyhow::Result<Option<Delivery>> {
    let brokers = &config.kafka.kafka_brokers;
    if config.transactions == Transactions::Off {
        return Ok(Some(Delivery::AtLeastOnce(kafka::producer(brokers)?)));
    }
    let id = config.transactional_id();
    let timeout = Duration::from_millis(config.transaction_timeout_ms);
    let mut backoff = Duration::from_millis(500);
    loop {
        let producer = kafka::transactional_producer(brokers, &id, timeout)?;
        let init = producer.clone();
        // Blocking call: also fences an earlier instance with this id and aborts what it left open.
        let initialised =
            call_with_watchdog("init", Duration::from_secs(45), move || init.init_transactions(Duration::from_secs(30))).await;
        let Some(initialised) = initialised else {
            anyhow::bail!("init_transactions did not return within 45 s (librdkafka #5456/#5511); exiting for a restart")
        };
        match initialised {
            Ok(()) => {
                tracing::info!(transactional_id = %id, "transactions on");
                readiness.detail("transactions", format!("on ({id})"));
                return Ok(Some(Delivery::Transactional(producer)));
            }
            Err(KafkaError::Transaction(e)) if e.is_retriable() || e.code() == rdkafka::types::RDKafkaErrorCode::MessageTimedOut => {
                tracing::warn!(error = %e, "initialising transactions failed; retrying");
            }
            Err(e) if config.transactions == Transactions::Auto && !is_transient(&e) => {
                tracing::warn!(error = %e, "the broker does not support transactions: at-least-once output, deduplicated by the sink");
                readiness.detail("transactions", format!("off: {e}"));
                return Ok(Some(Delivery::AtLeastOnce(kafka::producer(brokers)?)));
            }
            // Fatal: the broker refuses this producer for good (no transactions, not
            // authorised, fenced): an operator's problem, so stop with the reason.
            Err(e) if refused_for_good(&e) => return Err(anyhow::anyhow!(e).context("initialising Kafka transactions (--transactions on)")),
            // Anything else (a coordinator still loading after a broker restart, a timeout, a
            // broker away) passes: an enricher that exits here stops the whole back office
            // until someone restarts it, for a fault the cluster heals by itself.
            Err(e) => tracing::warn!(error = %e, "initialising transactions failed; retrying"),
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(None),
            _ = tokio::time::sleep(backoff) => backoff = (backoff * 2).min(Duration::from_secs(5)),
        }
    }
}

/// A timeout or an unreachable broker: worth trying again, and no sign of a broker without
/// transactions.
fn is_transient(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::OperationTimedOut
                | C::MessageTimedOut
                | C::AllBrokersDown
                | C::BrokerTransportFailure
                | C::CoordinatorNotAvailable
                | C::NotCoordinator
        )
    )
}

/// The broker will not give this producer transactions however long it waits.
fn refused_for_good(e: &KafkaError) -> bool {
    use rdkafka::types::RDKafkaErrorCode as C;
    matches!(e, KafkaError::Transaction(t) if t.is_fatal())
        || matches!(
            e.rdkafka_error_code(),
            Some(C::UnsupportedVersion | C::ClusterAuthorizationFailed | C::TransactionalIdAuthorizationFailed | C::ProducerFenced)
        )
}

/// What librdkafka's transactional contract says to do after a call failed (rdkafka.h on
/// `rd_kafka_commit_transaction` and the calls around it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Recovery {
    /// Retriable (e.g. timed out): the operation goes on in the background; the same call,
    /// made again, resumes it. Nothing is aborted and the consumer stays where it is.
    CallAgain,
    /// The transaction cannot commit: abort it, then read the batch again from its own first
    /// offsets.
    Abort,
    /// Fatal (fenced by a newer instance, the producer's state lost) or a state the contract
    /// does not name: this producer is done. The process exits; the instance its supervisor
    /// starts calls `init_transactions`, which completes or aborts what this one left open
    /// before it reads on from the group's committed offsets.
    Exit,
}

fn recovery(e: &KafkaError) -> Recovery {
    match e {
        KafkaError::Transaction(t) if t.is_fatal() => Recovery::Exit,
        KafkaError::Transaction(t) if t.txn_requires_abort() => Recovery::Abort,
        KafkaError::Transaction(t) if t.is_retriable() => Recovery::CallAgain,
        KafkaError::Transaction(_) => Recovery::Exit,
        // The rdkafka crate flushes before `commit_transaction`; a flush that timed out has
        // committed nothing, and committing again flushes again.
        KafkaError::Flush(_) => Recovery::CallAgain,
        // A failed delivery (and anything else before the commit) puts the transaction in
        // librdkafka's abortable state.
        _ => Recovery::Abort,
    }
}

/// How a batch's transaction ended, when the producer can go on.
enum Transacted {
    Committed,
    /// Nothing of the batch became visible; read it again.
    Aborted(KafkaError),
}

/// How long one transactional call, resumed as often as librdkafka asks, may take before it
/// counts as stuck: a flush bounded by the transaction timeout (`message.timeout.ms`), then
/// the coordinator's answer, which librdkafka awaits without a bound of its own (`-1`).
fn call_budget(transaction_timeout_ms: u64) -> Duration {
    2 * Duration::from_millis(transaction_timeout_ms) + Duration::from_secs(5)
}

/// Runs a blocking librdkafka call on a thread of its own; `None` if it has not returned after
/// `deadline`. librdkafka 2.12 can block in `send_offsets_to_transaction` for good, past the
/// timeout it was given, when the group coordinator moves (librdkafka issues #5456 and #5511,
/// both open): seen here as an enricher that stopped for good after a broker was killed, and
/// as one that never finished its SIGTERM. Not tokio's blocking pool: a thread that never
/// returns would hold up the process's exit.
async fn call_with_watchdog<T: Send + 'static>(
    call: &'static str,
    deadline: Duration,
    f: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (done, result) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new().name(format!("txn-{call}")).spawn(move || {
        let _ = done.send(f());
    });
    if let Err(e) = spawned {
        tracing::error!(call, error = %e, "could not start a thread for a transactional call");
        return None;
    }
    match tokio::time::timeout(deadline, result).await {
        Ok(Ok(value)) => Some(value),
        _ => None,
    }
}

/// Makes a transactional call, and makes it again for as long as it fails with a retriable
/// error, as librdkafka asks: the first call's work goes on in the background and the next one
/// resumes it. A call still unanswered after `budget` is the known librdkafka hang: the process
/// must end, since this producer's state is then unknown.
async fn call_resuming(
    call: &'static str,
    budget: Duration,
    f: impl Fn() -> Result<(), KafkaError> + Send + 'static,
) -> anyhow::Result<Result<(), KafkaError>> {
    let resumed = call_with_watchdog(call, budget, move || loop {
        match f() {
            Err(e) if recovery(&e) == Recovery::CallAgain => {
                tracing::warn!(call, error = %e, "retriable; calling again to resume it");
                std::thread::sleep(Duration::from_millis(100));
            }
            answer => return answer,
        }
    })
    .await;
    resumed.ok_or_else(|| {
        tracing::error!(
            call,
            budget_ms = budget.as_millis() as u64,
            "librdkafka did not return from a transactional call (librdkafka #5456/#5511)"
        );
        anyhow::anyhow!("{call} did not return within {budget:?}; exiting, so that a new instance fences this producer")
    })
}

/// The error that ends the process for a producer that cannot go on.
fn producer_done(call: &str, e: KafkaError) -> anyhow::Error {
    anyhow::anyhow!(e).context(format!("{call}: the transactional producer cannot go on; exiting for a restart"))
}

/// One batch in one transaction: begin, produce every output, add the batch's next offsets to
/// the transaction, commit. The transaction boundary is the batch. Errors are answered as
/// librdkafka's contract says ([`Recovery`]): a retriable one by making the same call again,
/// one that requires it by an abort (the caller then rewinds to the batch's first offsets),
/// a fatal one by returning `Err`, after which the process must exit.
async fn transact(
    producer: &FutureProducer,
    consumer: &std::sync::Arc<kafka::GroupConsumer>,
    topics: &ehac_stream::config::Topics,
    batch: &[OwnedMessage],
    outputs: &[Output],
    budget: Duration,
    stage: &Stage,
) -> anyhow::Result<Transacted> {
    stage.enter("producing");
    // The group generation that read the batch, taken once: a resumed call must send the batch's
    // offsets under it, so that the coordinator refuses them (and the batch is aborted and read
    // again) if the group rebalanced meanwhile. Asked again at each call, the metadata of the new
    // generation let a stalled batch commit after its partitions had been handed out again and
    // read from the old offsets: its records came out twice. None only before the consumer
    // joined its group, which a batch in hand rules out.
    let group = match consumer.group_metadata() {
        Some(group) => group,
        None => return Ok(Transacted::Aborted(KafkaError::Rebalance(rdkafka::types::RDKafkaErrorCode::InvalidGroupId))),
    };
    // Local to the producer: it returns at once.
    if let Err(e) = producer.begin_transaction() {
        return match recovery(&e) {
            Recovery::Exit => Err(producer_done("begin_transaction", e)),
            // No transaction was opened: nothing to abort.
            _ => Ok(Transacted::Aborted(e)),
        };
    }
    let sends =
        outputs.iter().map(|o| producer.send(FutureRecord::to(topic_of(topics, o)).key(&o.key).payload(&o.payload), Timeout::Never));
    let failed = join_all(sends).await.into_iter().find_map(|r| r.err().map(|(e, _)| ("produce", e)));
    let failed = match failed {
        Some(failed) => Some(failed),
        None => {
            let p = producer.clone();
            stage.enter("sending offsets");
            let offsets = kafka::next_offsets(batch).map_err(|e| producer_done("next_offsets", e))?;
            // -1 (Timeout::Never): the remaining transaction time, as librdkafka recommends.
            let sent = call_resuming("send_offsets_to_transaction", budget, move || {
                p.send_offsets_to_transaction(&offsets, &group, Timeout::Never)
            })
            .await?;
            match sent {
                Err(e) => Some(("send_offsets_to_transaction", e)),
                Ok(()) => {
                    stage.enter("committing");
                    let p = producer.clone();
                    // Resumed, never aborted, on a timeout: a commit that timed out may still
                    // complete at the coordinator, and the batch must then not be written again.
                    let committed = call_resuming("commit_transaction", budget, move || p.commit_transaction(Timeout::Never)).await?;
                    committed.err().map(|e| ("commit_transaction", e))
                }
            }
        }
    };
    let Some((call, e)) = failed else { return Ok(Transacted::Committed) };
    if recovery(&e) == Recovery::Exit {
        return Err(producer_done(call, e));
    }
    stage.enter("aborting");
    let p = producer.clone();
    match call_resuming("abort_transaction", budget, move || p.abort_transaction(Timeout::Never)).await? {
        Ok(()) => Ok(Transacted::Aborted(e)),
        Err(abort_error) => Err(producer_done("abort_transaction", abort_error).context(format!("aborting after {call} failed: {e}"))),
    }
}

fn topic_of<'t>(topics: &'t ehac_stream::config::Topics, o: &Output) -> &'t str {
    match o.topic {
        Destination::Enriched => &topics.enriched,
        Destination::Rejected => &topics.rejected,
    }
}

/// After an abort: back to each partition's first offset in the batch, so it is read again.
fn rewind(consumer: &kafka::GroupConsumer, batch: &[OwnedMessage]) {
    let mut first: std::collections::HashMap<(&str, i32), i64> = std::collections::HashMap::new();
    for m in batch {
        let entry = first.entry((m.topic(), m.partition())).or_insert(i64::MAX);
        *entry = (*entry).min(m.offset());
    }
    for ((topic, partition), offset) in first {
        // A partition revoked meanwhile cannot be sought; its next owner starts from the commit.
        if let Err(e) = consumer.seek(topic, partition, Offset::Offset(offset), Duration::from_secs(5)) {
            tracing::info!(topic, partition, error = %e, "could not rewind (revoked?)");
        }
    }
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
        let sends =
            pending.iter().map(|o| producer.send(FutureRecord::to(topic_of(topics, o)).key(&o.key).payload(&o.payload), Timeout::Never));
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_delivery_aborts_and_a_flush_that_timed_out_is_resumed() {
        use rdkafka::types::RDKafkaErrorCode as C;
        assert_eq!(recovery(&KafkaError::MessageProduction(C::MessageTimedOut)), Recovery::Abort);
        assert_eq!(recovery(&KafkaError::Flush(C::OperationTimedOut)), Recovery::CallAgain);
    }

    #[tokio::test]
    async fn a_call_that_never_returns_is_given_up_at_its_deadline_and_a_quick_one_answers() {
        let started = std::time::Instant::now();
        let (_keep, parked) = std::sync::mpsc::channel::<()>();
        // Blocks until the test ends, as a stuck librdkafka call would.
        let stuck = call_with_watchdog("test-stuck", Duration::from_millis(200), move || parked.recv().is_ok()).await;
        assert_eq!(stuck, None);
        assert!(started.elapsed() < Duration::from_secs(5), "given up at the deadline, not when the call returns");
        assert_eq!(call_with_watchdog("test-quick", Duration::from_secs(5), || 7).await, Some(7));
    }
}
