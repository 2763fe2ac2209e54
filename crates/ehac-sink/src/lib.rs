//! Enriched declarations and rejections from Kafka into ClickHouse, exactly once.
//!
//! One reader thread polls the consumer group and routes each message to the task that owns its
//! partition (`partition.rs`, one task per assigned partition, as Vector's Kafka source does).
//! A task gathers a batch, drops records already stored (`dedup.rs`: a window of identities per
//! partition, warmed from ClickHouse when the task starts), inserts, and only then commits that
//! partition's offset. An offset is never committed before its rows are in ClickHouse.
//!
//! - ClickHouse down or slow (TOO_MANY_PARTS included): the task retries the same batch with
//!   backoff; its channel fills, the reader pauses that partition (bounded memory) and resumes
//!   it when the task catches up. Lag shows the backlog.
//! - Revoke (cooperative rebalance) and shutdown: the reader closes the task's channel and waits
//!   for it to insert and commit what it holds; a task that cannot reach ClickHouse within the
//!   hand-over timeout abandons its batch uncommitted, and the next owner's dedup window
//!   keeps a late insert from doubling rows.
//! - A message that cannot be decoded is stored as a rejection with code `undecodable` (the
//!   bytes kept for replay) rather than stalling its partition.
//! - Second net: `ehac.declarations` is a ReplacingMergeTree on the declaration id.
//! - Personal data apart: each declaration's identity and contact go to
//!   `ehac_pii.identities`, each rejection's payload to `ehac_pii.rejected_payloads`, with the
//!   same exactly-once rules (see `partition.rs`). The sink connects as the `writer` user.
//! - On a ClickHouse cluster (`--clickhouse-cluster`) it writes the replicated `*_local` tables
//!   of the server it connects to, so an insert's answer means the rows are in a replica; each
//!   batch carries its own `inserted_at`, so a retried insert is byte-identical and the
//!   replicas' block deduplication drops it (`batch.rs`).
//! - On a server that has them, every INSERT also carries an `insert_deduplication_token` made
//!   of where its rows were read, so ClickHouse itself drops a retried insert (`batch.rs`).

mod batch;
mod dedup;
mod partition;
mod rows;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use ehac_stream::admin::{self, Readiness};
use ehac_stream::config::{AdminArgs, ClickHouseArgs, KafkaArgs};
use ehac_stream::kafka;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::OwnedMessage;
use rdkafka::{ClientContext, Message, TopicPartitionList};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use batch::{deduplication_token, Batch, Warehouse};
pub use rows::{DeclarationRow, IdentityRow, RejectedPayloadRow, RejectionRow};

pub const SERVICE: &str = "ehac-sink";

#[derive(clap::Parser, Debug, Clone)]
#[command(name = "ehac-sink", version, about)]
pub struct Config {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    #[command(flatten)]
    pub admin: AdminArgs,
    #[arg(long, env = "EHAC_SINK_GROUP", default_value = "ehac-sink")]
    pub group: String,
    /// Most records per INSERT, per partition. ClickHouse prefers few large inserts.
    #[arg(long, env = "EHAC_SINK_BATCH_MAX", default_value_t = 20_000)]
    pub batch_max: usize,
    /// How long a partition's batch waits to fill before it is inserted. Rows reach analysts
    /// this much later at most; in exchange ClickHouse makes and merges fewer small parts (5 s
    /// instead of 1 s cut its CPU per million rows about 3x in `ehac bench surge`).
    #[arg(long, env = "EHAC_SINK_BATCH_LINGER_MS", default_value_t = 5_000)]
    pub batch_linger_ms: u64,
    /// Offsets behind a partition's restart point whose stored identities are loaded to catch
    /// records written twice upstream.
    #[arg(long, env = "EHAC_SINK_DEDUP_WINDOW", default_value_t = 100_000)]
    pub dedup_window: i64,
    /// How long a revoked or stopping partition may take to insert and commit what it holds.
    #[arg(long, env = "EHAC_SINK_HANDOVER_TIMEOUT_MS", default_value_t = 15_000)]
    pub handover_timeout_ms: u64,
    /// Messages a partition may have waiting for its task before the reader pauses that
    /// partition (backpressure; memory stays bounded while ClickHouse is slow).
    #[arg(long, env = "EHAC_SINK_PARTITION_BUFFER", default_value_t = 4_096)]
    pub partition_buffer: usize,
    #[command(flatten)]
    pub membership: ehac_stream::config::MembershipArgs,
}

/// The sink's own metrics, registered once at start.
pub struct Metrics {
    rows: IntCounterVec,
    batch_size: Histogram,
    insert_seconds: Histogram,
    insert_errors: IntCounter,
    duplicates: IntCounter,
    partitions: IntGauge,
    paused: IntGauge,
    pauses: IntCounter,
}

impl Metrics {
    pub fn register(registry: &Registry) -> prometheus::Result<Self> {
        let rows = IntCounterVec::new(Opts::new("sink_rows_total", "Rows inserted into ClickHouse, by table"), &["table"])?;
        let batch_size = Histogram::with_opts(
            HistogramOpts::new("sink_batch_size", "Records per partition batch").buckets(prometheus::exponential_buckets(1.0, 4.0, 9)?),
        )?;
        let insert_seconds = Histogram::with_opts(HistogramOpts::new("sink_insert_seconds", "Time to insert one batch, retries included"))?;
        let insert_errors = IntCounter::new("sink_insert_errors_total", "Failed ClickHouse calls (each is retried)")?;
        let duplicates = IntCounter::new("sink_duplicates_skipped_total", "Records not written because their identity is already stored")?;
        let partitions = IntGauge::new("sink_partitions_assigned", "Partitions this instance owns")?;
        let paused = IntGauge::new("sink_partitions_paused", "Partitions paused because their task is behind (backpressure)")?;
        let pauses = IntCounter::new("sink_partition_pauses_total", "Times a partition was paused because its task was behind")?;
        for metric in [
            Box::new(rows.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(batch_size.clone()),
            Box::new(insert_seconds.clone()),
            Box::new(insert_errors.clone()),
            Box::new(duplicates.clone()),
            Box::new(partitions.clone()),
            Box::new(paused.clone()),
            Box::new(pauses.clone()),
        ] {
            registry.register(metric)?;
        }
        Ok(Metrics { rows, batch_size, insert_seconds, insert_errors, duplicates, partitions, paused, pauses })
    }
}

/// Where the reader sends a partition's messages, and what it holds back while the task is
/// behind.
struct Route {
    sender: mpsc::Sender<OwnedMessage>,
    overflow: std::collections::VecDeque<OwnedMessage>,
    paused: bool,
    abandon: CancellationToken,
    task: JoinHandle<()>,
}

/// The partition tasks, reachable from the rebalance callback. Only the reader thread touches
/// it (the callback runs inside its poll), so the lock is never contended.
#[derive(Default)]
struct Routes {
    routes: Mutex<HashMap<(String, i32), Route>>,
    /// What the group gave this member. A message for anything else (left in a queue across a
    /// revoke) is dropped, never written or committed by a task that does not own it.
    assigned: Mutex<std::collections::HashSet<(String, i32)>>,
}

/// Consumer context: on revoke, hands the revoked partitions' tasks over before the broker
/// gives the partitions to another member.
pub struct SinkContext {
    routes: Arc<Routes>,
    runtime: tokio::runtime::Handle,
    handover: Duration,
    shared: OnceLock<Arc<partition::Shared>>,
}

impl ClientContext for SinkContext {}

impl ConsumerContext for SinkContext {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            tracing::info!(partitions = %kafka::describe(tpl), "partitions revoked: finishing their batches");
            let keys: Vec<(String, i32)> = tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())).collect();
            {
                let mut assigned = self.routes.assigned.lock().unwrap();
                for key in &keys {
                    assigned.remove(key);
                }
            }
            self.hand_over(&keys);
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                tracing::info!(partitions = %kafka::describe(tpl), "partitions assigned");
                let mut assigned = self.routes.assigned.lock().unwrap();
                assigned.extend(tpl.elements().iter().map(|e| (e.topic().to_owned(), e.partition())));
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }
}

impl SinkContext {
    /// Closes the tasks' channels and waits (bounded) until each inserted and committed what it
    /// held. Runs on the reader thread, never on a runtime worker.
    fn hand_over(&self, keys: &[(String, i32)]) {
        let routes: Vec<Route> = {
            let mut map = self.routes.routes.lock().unwrap();
            keys.iter().filter_map(|k| map.remove(k)).collect()
        };
        for route in routes {
            drop(route.sender);
            let Route { abandon, task, .. } = route;
            let finished = self.runtime.block_on(async {
                let mut task = task;
                tokio::select! {
                    _ = &mut task => true,
                    _ = tokio::time::sleep(self.handover) => {
                        abandon.cancel();
                        let _ = task.await;
                        false
                    }
                }
            });
            if !finished {
                tracing::warn!("a partition task could not finish within the hand-over timeout; its batch was left uncommitted");
            }
            if let Some(shared) = self.shared.get() {
                shared.metrics.partitions.dec();
            }
        }
    }
}

/// Runs until `shutdown`, then lets every partition task insert and commit what it holds, and
/// returns.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let registry = ehac_stream::telemetry::registry("sink");
    let metrics = Metrics::register(&registry)?;
    let readiness = Readiness::default();
    readiness.check("kafka", "not consuming yet");
    readiness.check("clickhouse", "no insert yet");
    let admin_addr = admin::serve(config.admin.admin_listen, registry.clone(), readiness.clone(), shutdown.clone()).await?;
    config.admin.bound.set(admin_addr);
    let warehouse = batch::Warehouse::new(&config.clickhouse);
    match warehouse.client.query("SELECT 1").execute().await {
        Ok(()) => readiness.ready("clickhouse"),
        Err(e) => readiness.not_ready("clickhouse", e.to_string()),
    }

    let topics = &config.kafka.topics;
    let routes = Arc::new(Routes::default());
    let context = SinkContext {
        routes: routes.clone(),
        runtime: tokio::runtime::Handle::current(),
        handover: Duration::from_millis(config.handover_timeout_ms),
        shared: OnceLock::new(),
    };
    let consumer: BaseConsumer<SinkContext> =
        config.membership.consumer_config(&config.kafka.kafka_brokers, &config.group).create_with_context(context)?;
    consumer.subscribe(&[&topics.enriched, &topics.rejected])?;
    let consumer = Arc::new(consumer);
    let shared = Arc::new(partition::Shared {
        consumer: consumer.clone(),
        warehouse,
        metrics,
        readiness: readiness.clone(),
        enriched_topic: topics.enriched.clone(),
        flush: partition::Flush { max: config.batch_max.max(1), linger: Duration::from_millis(config.batch_linger_ms) },
        dedup_window: config.dedup_window,
        partition_buffer: config.partition_buffer.max(1),
    });
    let _ = consumer.context().shared.set(shared.clone());
    tracing::info!(%admin_addr, group = %config.group, "sink started");

    let watch = config.membership.watch(&registry, &[&topics.enriched, &topics.rejected])?;
    let runtime = tokio::runtime::Handle::current();
    let membership = tokio::task::spawn_blocking(move || read(&consumer, &shared, &routes, &runtime, watch, &shutdown)).await?;
    match membership {
        kafka::Membership::Exit => anyhow::bail!("no partitions assigned for too long while the group has lag; exiting for a restart"),
        kafka::Membership::Fatal => anyhow::bail!("the consumer failed for good (fatal error); exiting for a restart"),
        kafka::Membership::Fine => {}
    }
    tracing::info!("sink drained");
    Ok(())
}

/// The reader thread: polls, routes, applies backpressure, and on shutdown (or when the member
/// is stranded without partitions, see [`kafka::AssignmentWatch`]) hands every partition over.
fn read(
    consumer: &Arc<BaseConsumer<SinkContext>>,
    shared: &Arc<partition::Shared>,
    routes: &Arc<Routes>,
    runtime: &tokio::runtime::Handle,
    mut watch: kafka::AssignmentWatch,
    shutdown: &CancellationToken,
) -> kafka::Membership {
    let mut membership = kafka::Membership::Fine;
    while !shutdown.is_cancelled() && membership == kafka::Membership::Fine {
        // Move held-back messages first, in order, and resume partitions that caught up.
        let holding = {
            let mut map = routes.routes.lock().unwrap();
            for ((topic, partition), route) in map.iter_mut() {
                while let Some(message) = route.overflow.pop_front() {
                    match route.sender.try_send(message) {
                        Ok(()) => {}
                        Err(mpsc::error::TrySendError::Full(message)) | Err(mpsc::error::TrySendError::Closed(message)) => {
                            route.overflow.push_front(message);
                            break;
                        }
                    }
                }
                if route.paused && route.overflow.is_empty() && set_paused(consumer, topic, *partition, false) {
                    route.paused = false;
                    shared.metrics.paused.dec();
                }
            }
            map.values().any(|route| !route.overflow.is_empty())
        };
        // While messages are held back, come round again soon to hand them on: a paused
        // partition brings nothing that would wake the poll.
        let wait = if holding { Duration::from_millis(5) } else { Duration::from_millis(100) };
        match consumer.poll(wait) {
            // Holding partitions with nothing to read is healthy, not "not consuming".
            None if !routes.assigned.lock().unwrap().is_empty() => shared.readiness.ready("kafka"),
            None => membership = watch.check(&**consumer, &shared.readiness),
            Some(Err(e)) => {
                shared.readiness.not_ready("kafka", e.to_string());
                if let Some((_, reason)) = consumer.client().fatal_error() {
                    // Nothing is stored for the partitions held: their tasks' confirmed offsets
                    // were committed as they went, and a restarted member reads on from there.
                    tracing::error!(error = %reason, "the consumer failed for good: exiting so that a supervisor restarts this member");
                    membership = kafka::Membership::Fatal;
                } else {
                    tracing::warn!(error = %e, "consume failed; librdkafka retries");
                }
            }
            Some(Ok(message)) => {
                shared.readiness.ready("kafka");
                let message = message.detach();
                let key = (message.topic().to_owned(), message.partition());
                if !routes.assigned.lock().unwrap().contains(&key) {
                    tracing::debug!(topic = key.0, partition = key.1, "message for a partition not assigned here; dropped");
                    continue;
                }
                let mut map = routes.routes.lock().unwrap();
                let route = map.entry(key.clone()).or_insert_with(|| {
                    let (sender, receiver) = mpsc::channel(shared.partition_buffer);
                    let abandon = CancellationToken::new();
                    let task = runtime.spawn(partition::run(shared.clone(), key.0.clone(), key.1, receiver, abandon.clone()));
                    shared.metrics.partitions.inc();
                    Route { sender, overflow: Default::default(), paused: false, abandon, task }
                });
                if !route.overflow.is_empty() {
                    route.overflow.push_back(message);
                } else if let Err(mpsc::error::TrySendError::Full(message) | mpsc::error::TrySendError::Closed(message)) =
                    route.sender.try_send(message)
                {
                    route.overflow.push_back(message);
                }
                if !route.overflow.is_empty() && !route.paused && set_paused(consumer, &key.0, key.1, true) {
                    route.paused = true;
                    shared.metrics.paused.inc();
                    shared.metrics.pauses.inc();
                }
            }
        }
    }
    let keys: Vec<(String, i32)> = routes.routes.lock().unwrap().keys().cloned().collect();
    consumer.context().hand_over(&keys);
    consumer.unsubscribe();
    membership
}

fn set_paused(consumer: &BaseConsumer<SinkContext>, topic: &str, partition: i32, pause: bool) -> bool {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition(topic, partition);
    let result = if pause { consumer.pause(&tpl) } else { consumer.resume(&tpl) };
    match result {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(topic, partition, pause, error = %e, "pause/resume failed");
            false
        }
    }
}
