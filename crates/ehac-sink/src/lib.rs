//! Enriched declarations and rejections from Kafka into ClickHouse.
//!
//! A batch is read from both topics, decoded, inserted (declarations and rejections each in one
//! INSERT), and only then are its offsets committed: an offset is never committed before its
//! rows are in ClickHouse. While ClickHouse is down the sink retries the same batch with backoff
//! and reads nothing new, so memory stays bounded and lag shows the backlog.
//!
//! A message that cannot be decoded is stored as a rejection with code `undecodable` (the bytes
//! kept for replay) rather than stalling its partition.

mod rows;

use std::time::Duration;

use clickhouse::Client;
use ehac_domain::{ErrorCode, FieldError, Rejection};
use ehac_stream::admin::{self, Readiness};
use ehac_stream::codec::{ENRICHED, REJECTION};
use ehac_stream::config::{AdminArgs, ClickHouseArgs, KafkaArgs};
use ehac_stream::{kafka, warehouse};
use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts, Registry};
use rdkafka::message::OwnedMessage;
use rdkafka::Message;
use tokio_util::sync::CancellationToken;

pub use rows::{DeclarationRow, RejectionRow};

pub const SERVICE: &str = "ehac-sink";

/// Writes the pipeline's output into ClickHouse.
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
    /// Most records per INSERT. ClickHouse prefers few large inserts to many small ones.
    #[arg(long, env = "EHAC_SINK_BATCH_MAX", default_value_t = 20_000)]
    pub batch_max: usize,
    /// How long a batch waits to fill before it is inserted.
    #[arg(long, env = "EHAC_SINK_BATCH_LINGER_MS", default_value_t = 500)]
    pub batch_linger_ms: u64,
}

struct Metrics {
    rows: IntCounterVec,
    batch_size: Histogram,
    insert_seconds: Histogram,
    insert_errors: IntCounter,
}

impl Metrics {
    fn register(registry: &Registry) -> prometheus::Result<Self> {
        let rows = IntCounterVec::new(Opts::new("sink_rows_total", "Rows inserted into ClickHouse, by table"), &["table"])?;
        let batch_size = Histogram::with_opts(HistogramOpts::new("sink_batch_size", "Records per batch").buckets(prometheus::exponential_buckets(1.0, 4.0, 9)?))?;
        let insert_seconds = Histogram::with_opts(HistogramOpts::new("sink_insert_seconds", "Time to insert one batch, retries included"))?;
        let insert_errors = IntCounter::new("sink_insert_errors_total", "Failed insert attempts (each is retried)")?;
        registry.register(Box::new(rows.clone()))?;
        registry.register(Box::new(batch_size.clone()))?;
        registry.register(Box::new(insert_seconds.clone()))?;
        registry.register(Box::new(insert_errors.clone()))?;
        Ok(Metrics { rows, batch_size, insert_seconds, insert_errors })
    }
}

/// One batch, decoded: what goes into each table.
struct Decoded {
    declarations: Vec<(ehac_domain::EnrichedDeclaration, i32, i64)>,
    rejections: Vec<(Rejection, i32, i64)>,
}

fn decode(batch: &[OwnedMessage], enriched_topic: &str, now_ms: i64) -> Decoded {
    let mut out = Decoded { declarations: Vec::with_capacity(batch.len()), rejections: Vec::new() };
    for m in batch {
        let payload = m.payload().unwrap_or_default();
        let result = if m.topic() == enriched_topic {
            ENRICHED.decode(payload).map(|d| out.declarations.push((d, m.partition(), m.offset())))
        } else {
            REJECTION.decode(payload).map(|r| out.rejections.push((r, m.partition(), m.offset())))
        };
        if let Err(e) = result {
            tracing::warn!(topic = m.topic(), partition = m.partition(), offset = m.offset(), error = %e, "undecodable message stored as a rejection");
            let rejection = Rejection {
                declaration_id: None,
                client_id: String::new(),
                service: SERVICE.to_owned(),
                service_version: ehac_stream::VERSION.to_owned(),
                source_topic: m.topic().to_owned(),
                source_partition: m.partition(),
                source_offset: m.offset(),
                rejected_at_ms: now_ms,
                errors: vec![FieldError::new(ErrorCode::Undecodable, "", e.to_string())],
                payload: payload.to_vec(),
                payload_json: String::new(),
            };
            out.rejections.push((rejection, m.partition(), m.offset()));
        }
    }
    out
}

async fn insert(client: &Client, decoded: &Decoded) -> clickhouse::error::Result<()> {
    if !decoded.declarations.is_empty() {
        let mut insert = client.insert::<DeclarationRow<'_>>("declarations").await?;
        for (record, partition, offset) in &decoded.declarations {
            insert.write(&DeclarationRow::new(record, *partition, *offset)).await?;
        }
        insert.end().await?;
    }
    if !decoded.rejections.is_empty() {
        let mut insert = client.insert::<RejectionRow<'_>>("rejections").await?;
        for (rejection, partition, offset) in &decoded.rejections {
            insert.write(&RejectionRow::new(rejection, *partition, *offset)).await?;
        }
        insert.end().await?;
    }
    Ok(())
}

/// Runs until `shutdown`, then finishes the batch in hand, commits it and returns.
pub async fn run(config: Config, shutdown: CancellationToken) -> anyhow::Result<()> {
    let registry = ehac_stream::telemetry::registry("sink");
    let metrics = Metrics::register(&registry)?;
    let readiness = Readiness::default();
    readiness.check("kafka", "not consuming yet");
    readiness.check("clickhouse", "no insert yet");
    let admin_addr = admin::serve(config.admin.admin_listen, registry, readiness.clone(), shutdown.clone()).await?;
    let client = warehouse::client(&config.clickhouse).with_database(warehouse::DATABASE);
    match client.query("SELECT 1").execute().await {
        Ok(()) => readiness.ready("clickhouse"),
        Err(e) => readiness.not_ready("clickhouse", e.to_string()),
    }

    let topics = &config.kafka.topics;
    let consumer = kafka::consumer(&config.kafka.kafka_brokers, &config.group, &[&topics.enriched, &topics.rejected])?;
    tracing::info!(%admin_addr, group = %config.group, "sink started");
    let linger = Duration::from_millis(config.batch_linger_ms);

    while let Some(batch) = kafka::next_batch(&consumer, config.batch_max, linger, &readiness, &shutdown).await {
        metrics.batch_size.observe(batch.len() as f64);
        let decoded = decode(&batch, &topics.enriched, chrono::Utc::now().timestamp_millis());

        let timer = metrics.insert_seconds.start_timer();
        let mut backoff = Duration::from_millis(200);
        loop {
            match insert(&client, &decoded).await {
                Ok(()) => {
                    readiness.ready("clickhouse");
                    break;
                }
                Err(e) => {
                    metrics.insert_errors.inc();
                    readiness.not_ready("clickhouse", e.to_string());
                    tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "insert failed; retrying the same batch");
                    tokio::select! {
                        // Not committed: the batch is read again after restart.
                        _ = shutdown.cancelled() => { tracing::warn!("stopping with an uninserted batch; it will be replayed"); return Ok(()); }
                        _ = tokio::time::sleep(backoff) => backoff = (backoff * 2).min(Duration::from_secs(10)),
                    }
                }
            }
        }
        timer.observe_duration();
        metrics.rows.with_label_values(&["declarations"]).inc_by(decoded.declarations.len() as u64);
        metrics.rows.with_label_values(&["rejections"]).inc_by(decoded.rejections.len() as u64);
        kafka::commit_batch(&consumer, &batch);
    }
    tracing::info!("sink drained");
    Ok(())
}
