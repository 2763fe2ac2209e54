//! What the machine can do without our services in the way, measured with the same payloads and
//! rows the pipeline carries: the broker's raw produce and consume rate, ClickHouse's bulk
//! insert rate, our sink with 1, 2 and 4 instances, and a Python glue-script peer.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use ehac_codec::ENRICHED;
use ehac_devstack::Stack;
use ehac_domain::sample::{Flaw, SampleGenerator};
use ehac_domain::{Policy, RawDeclaration, ReferenceData};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Serialize;

use super::progress::Phase;
use crate::procstat::proc_stats;
use crate::services::Service;
use crate::warehouse_report::post;

/// Topics the ceilings read and write, apart from the pipeline's own.
pub const CEILING_TOPIC: &str = "bench.ceiling.enriched";
pub const CEILING_REJECTED_TOPIC: &str = "bench.ceiling.rejected";

/// Enriched declarations as the enricher writes them: (key, Avro single-object bytes).
pub fn enriched_payloads(count: u64, seed: u64) -> Vec<(String, Vec<u8>)> {
    let mut generator = SampleGenerator::new(seed);
    let now = chrono::Utc::now();
    let reference = ReferenceData::embedded();
    let policy = Policy::default();
    let mut out = Vec::with_capacity(count as usize);
    while (out.len() as u64) < count {
        let raw = RawDeclaration {
            declaration_id: uuid::Uuid::now_v7().to_string(),
            received_at_ms: now.timestamp_millis(),
            gateway_version: ehac_stream::VERSION.to_owned(),
            form: generator.declaration(now, "bench", Flaw::None),
        };
        // The generator's valid declarations are valid; anything else is skipped, not counted.
        if let Ok(enriched) = ehac_domain::accept(raw, reference, &policy, ehac_stream::VERSION) {
            out.push((enriched.raw.declaration_id.clone(), ENRICHED.encode(&enriched).expect("enriched declarations encode")));
        }
    }
    out
}

#[derive(Debug, Clone, Serialize)]
pub struct BrokerCeiling {
    pub messages: u64,
    pub bytes_per_message: f64,
    pub produce_per_s: f64,
    pub consume_per_s: f64,
    /// The broker process's own CPU per million messages produced, and consumed.
    pub broker_cpu_seconds_per_million_produced: f64,
    pub broker_cpu_seconds_per_million_consumed: f64,
}

/// (a) Produces every payload to [`CEILING_TOPIC`] with the services' producer settings
/// (idempotent, acks=all), then reads them all back with a plain consumer: no decoding, no
/// processing.
pub async fn broker(brokers: &str, broker_pid: u32, payloads: &[(String, Vec<u8>)], phase: &Phase) -> anyhow::Result<BrokerCeiling> {
    let producer: FutureProducer = ehac_stream::kafka::producer(brokers)?;
    let cpu_at_start = proc_stats(broker_pid)?.cpu_seconds;
    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(payloads.len());
    for (i, (key, payload)) in payloads.iter().enumerate() {
        let mut record = FutureRecord::to(CEILING_TOPIC).key(key).payload(payload);
        loop {
            match producer.send_result(record) {
                Ok(delivery) => break deliveries.push(delivery),
                // The local queue is full: let the broker catch up.
                Err((_, returned)) => {
                    record = returned;
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            }
        }
        if i % 10_000 == 0 {
            phase.set(format!("produced {i}/{}", payloads.len()));
        }
    }
    let mut failed = 0;
    for delivery in deliveries {
        if !matches!(delivery.await, Ok(Ok(_))) {
            failed += 1;
        }
    }
    let produce_seconds = started.elapsed().as_secs_f64();
    ensure!(failed == 0, "{failed} of {} ceiling messages were not acknowledged", payloads.len());
    producer.flush(Timeout::After(Duration::from_secs(10)))?;
    let cpu_after_produce = proc_stats(broker_pid)?.cpu_seconds;

    let expected = payloads.len() as u64;
    let brokers = brokers.to_owned();
    let progress = phase.clone();
    let consume_seconds = tokio::task::spawn_blocking(move || read_all(&brokers, CEILING_TOPIC, expected, &progress)).await??;
    let cpu_after_consume = proc_stats(broker_pid)?.cpu_seconds;
    let bytes: usize = payloads.iter().map(|(_, p)| p.len()).sum();
    let per_million = 1e6 / expected as f64;
    Ok(BrokerCeiling {
        messages: expected,
        bytes_per_message: bytes as f64 / expected as f64,
        produce_per_s: expected as f64 / produce_seconds,
        consume_per_s: expected as f64 / consume_seconds,
        broker_cpu_seconds_per_million_produced: (cpu_after_produce - cpu_at_start) * per_million,
        broker_cpu_seconds_per_million_consumed: (cpu_after_consume - cpu_after_produce) * per_million,
    })
}

/// Reads `expected` messages from every partition of `topic` from the start, with the consumer
/// settings the services use; seconds from the first message to the last.
fn read_all(brokers: &str, topic: &str, expected: u64, phase: &Phase) -> anyhow::Result<f64> {
    let consumer: BaseConsumer =
        ehac_stream::config::MembershipArgs::default().consumer_config(brokers, "bench-ceiling-reader").create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut assignment = TopicPartitionList::new();
    for partition in metadata.topics().iter().flat_map(|t| t.partitions()) {
        assignment.add_partition_offset(topic, partition.id(), Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let mut read = 0u64;
    let mut first: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    while read < expected {
        ensure!(Instant::now() < deadline, "read {read} of {expected} messages from {topic} in 600 s");
        if let Some(message) = consumer.poll(Duration::from_millis(500)) {
            let message = message?;
            std::hint::black_box(message.payload());
            first.get_or_insert_with(Instant::now);
            read += 1;
            if read.is_multiple_of(10_000) {
                phase.set(format!("consumed {read}/{expected}"));
            }
        }
    }
    Ok(first.map_or(0.0, |f| f.elapsed().as_secs_f64()))
}

async fn count(http: &reqwest::Client, url: &str, sql: &str) -> anyhow::Result<u64> {
    let text = post(http, url, sql.to_owned()).await?;
    String::from_utf8_lossy(&text).trim().parse().with_context(|| format!("{sql} answered {text:?}"))
}

/// Rows and distinct declarations in `ehac.declarations`.
pub async fn declarations(http: &reqwest::Client, url: &str) -> anyhow::Result<(u64, u64)> {
    let rows = count(http, url, "SELECT count() FROM ehac.declarations").await?;
    let distinct = count(http, url, "SELECT uniqExact(declaration_id) FROM ehac.declarations").await?;
    Ok((rows, distinct))
}

/// Empties the tables a ceiling wrote to, so the next one (and the surge) starts from nothing.
pub async fn truncate(http: &reqwest::Client, url: &str) -> anyhow::Result<()> {
    // Truncating a materialized view empties the table it writes to (named `.inner_id.<uuid>`
    // in an Atomic database, so not by name).
    for table in [
        "ehac.declarations",
        "ehac.rejections",
        "ehac.declaration_positions",
        "ehac.rejection_positions",
        "ehac_pii.identities",
        "ehac_pii.rejected_payloads",
        "ehac_pii.identity_positions",
        "ehac_pii.rejected_payload_positions",
    ] {
        post(http, url, format!("TRUNCATE TABLE {table}")).await?;
    }
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct InsertCeiling {
    pub rows: u64,
    pub bytes: u64,
    pub rows_per_s: f64,
}

/// (b) One INSERT of a pre-built RowBinary file of the rows the sink wrote, into the same table
/// (materialized views included).
pub async fn clickhouse_bulk(http: &reqwest::Client, url: &str, rowbinary: &Path, rows: u64) -> anyhow::Result<InsertCeiling> {
    let body = std::fs::read(rowbinary)?;
    let bytes = body.len() as u64;
    let started = Instant::now();
    post(http, &format!("{url}/?query=INSERT%20INTO%20ehac.declarations%20FORMAT%20RowBinary"), body).await?;
    let seconds = started.elapsed().as_secs_f64();
    let (stored, distinct) = declarations(http, url).await?;
    ensure!(stored == rows && distinct == rows, "bulk insert stored {stored} rows ({distinct} distinct), expected {rows}");
    Ok(InsertCeiling { rows, bytes, rows_per_s: rows as f64 / seconds })
}

/// Saves what `ehac.declarations` holds as RowBinary, the bulk insert's input.
pub async fn export_rowbinary(http: &reqwest::Client, url: &str, file: &Path) -> anyhow::Result<()> {
    let body = post(http, url, "SELECT * FROM ehac.declarations FORMAT RowBinary").await?;
    std::fs::write(file, &body)?;
    Ok(())
}

#[derive(Debug, Clone, Serialize)]
pub struct SinkRound {
    pub instances: usize,
    pub rows: u64,
    pub rows_per_s: f64,
    pub cpu_seconds: f64,
    pub cpu_seconds_per_million: f64,
    pub peak_rss_mib: f64,
}

/// Watches `ehac.declarations` fill up to `expected` rows: seconds from the first row seen to
/// the last, and the rows already there at the first sighting.
async fn time_fill(
    http: &reqwest::Client,
    url: &str,
    expected: u64,
    patience: Duration,
    phase: &Phase,
    mut alive: impl FnMut() -> anyhow::Result<()>,
) -> anyhow::Result<(f64, u64)> {
    let mut first: Option<(Instant, u64)> = None;
    let mut last_change = Instant::now();
    let mut last = 0;
    loop {
        let rows = count(http, url, "SELECT count() FROM ehac.declarations").await?;
        let now = Instant::now();
        if rows > 0 && first.is_none() {
            first = Some((now, rows));
        }
        phase.set(format!("{rows}/{expected} rows in ClickHouse"));
        if rows >= expected {
            let (at, already) = first.expect("rows > 0 was seen");
            return Ok((now.duration_since(at).as_secs_f64(), already));
        }
        if rows != last {
            last = rows;
            last_change = now;
        } else if last_change.elapsed() > patience {
            bail!("ClickHouse stuck at {rows} of {expected} rows for {patience:?}");
        }
        alive()?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// (d) `instances` sink processes in one fresh group read [`CEILING_TOPIC`] into ClickHouse.
pub async fn sink_round(
    stack: &Stack,
    bin: &Path,
    dir: &Path,
    instances: usize,
    expected: u64,
    phase: &Phase,
) -> anyhow::Result<SinkRound> {
    let http = stack.clickhouse_http(ehac_devstack::WarehouseUser::Migrator);
    let url = stack.clickhouse_url();
    let group = format!("bench-sink-x{instances}");
    let brokers = stack.kafka_brokers();
    let mut sinks = Vec::new();
    for i in 0..instances {
        let name = format!("{group}-{i}");
        let mut env: Vec<(String, String)> = [
            ("EHAC_KAFKA_BROKERS", brokers.as_str()),
            ("EHAC_TOPIC_ENRICHED", CEILING_TOPIC),
            ("EHAC_TOPIC_REJECTED", CEILING_REJECTED_TOPIC),
            ("EHAC_SINK_GROUP", group.as_str()),
        ]
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .to_vec();
        env.extend(stack.clickhouse_env(ehac_devstack::WarehouseUser::Writer));
        sinks.push(Service::start(bin, dir, &name, "ehac-sink", &["--admin-listen".into(), "127.0.0.1:0".into()], &env)?);
    }
    let fill = time_fill(&http, &url, expected, Duration::from_secs(60), phase, || {
        for sink in &mut sinks {
            if let Some(status) = sink.child.try_wait()? {
                bail!("{} exited with {status} during the round; see {}/{}.log", sink.name, dir.display(), sink.name);
            }
        }
        Ok(())
    })
    .await;
    let mut cpu_seconds = 0.0;
    let mut peak_rss_kib = 0;
    for sink in &sinks {
        if let Ok(stats) = proc_stats(sink.child.id()) {
            cpu_seconds += stats.cpu_seconds;
            peak_rss_kib = peak_rss_kib.max(stats.hwm_kib);
        }
    }
    for sink in &mut sinks {
        let status = sink.stop()?;
        ensure!(status.success(), "{} exited with {status} after SIGTERM", sink.name);
    }
    let (seconds, already) = fill?;
    let (rows, distinct) = declarations(&http, &url).await?;
    ensure!(rows == expected && distinct == expected, "{instances} sink(s) stored {rows} rows ({distinct} distinct) of {expected}");
    Ok(SinkRound {
        instances,
        rows,
        rows_per_s: (expected - already) as f64 / seconds.max(1e-3),
        cpu_seconds,
        cpu_seconds_per_million: cpu_seconds * 1e6 / expected as f64,
        peak_rss_mib: peak_rss_kib as f64 / 1024.0,
    })
}

#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct PeerRun {
    pub rows: u64,
    pub seconds: f64,
    pub rows_per_s: f64,
    pub cpu_seconds: f64,
    #[serde(default)]
    pub cpu_seconds_per_million: f64,
    pub peak_rss_mb: f64,
}

const PEER_SCRIPT: &str = include_str!("../../../../deploy/bench/peer/glue.py");
const PEER_REQUIREMENTS: &str = include_str!("../../../../deploy/bench/peer/requirements.txt");

/// A Python virtualenv with the peer's requirements, under `~/.cache/ehac`; made once.
fn peer_python() -> anyhow::Result<PathBuf> {
    let home = std::env::var("HOME").context("HOME is not set")?;
    let venv = PathBuf::from(home).join(".cache/ehac/peer-venv");
    let marker = venv.join("ehac-requirements.txt");
    let python = venv.join("bin/python");
    if std::fs::read_to_string(&marker).ok().as_deref() == Some(PEER_REQUIREMENTS) && python.is_file() {
        return Ok(python);
    }
    let run = |command: &mut std::process::Command| -> anyhow::Result<()> {
        let output = command.output().with_context(|| format!("running {command:?}"))?;
        ensure!(output.status.success(), "{command:?} failed: {}", String::from_utf8_lossy(&output.stderr));
        Ok(())
    };
    run(std::process::Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    std::fs::write(venv.join("requirements.txt"), PEER_REQUIREMENTS)?;
    run(std::process::Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(venv.join("requirements.txt")))?;
    std::fs::write(&marker, PEER_REQUIREMENTS)?;
    Ok(python)
}

/// (c) The glue-script peer: Python, confluent-kafka and clickhouse-connect, reading
/// [`CEILING_TOPIC`] into the same table. Its own getrusage gives its CPU.
pub async fn peer(stack: &Stack, dir: &Path, expected: u64, phase: &Phase) -> anyhow::Result<PeerRun> {
    phase.set("preparing the Python environment (first run installs confluent-kafka, fastavro, clickhouse-connect)");
    let python = tokio::task::spawn_blocking(peer_python).await??;
    let script = dir.join("glue.py");
    std::fs::write(&script, PEER_SCRIPT)?;
    // The exact writer schema of the messages, as one JSON document.
    let schema = dir.join("enriched_declaration.json");
    std::fs::write(&schema, serde_json::to_vec(ENRICHED.schema())?)?;
    phase.set(format!("glue.py moving {expected} rows"));
    let output = tokio::process::Command::new(python)
        .arg(&script)
        .arg("--schema")
        .arg(&schema)
        .args([
            "--brokers",
            &stack.kafka_brokers(),
            "--topic",
            CEILING_TOPIC,
            "--group",
            "bench-peer",
            "--clickhouse-url",
            // The peer writes as the migrator: it is a benchmark stand-in, not a service.
            &stack.clickhouse_url().replacen("http://", &format!("http://migrator:{}@", stack.secrets.migrator), 1),
            "--expect",
            &expected.to_string(),
        ])
        .stderr(std::fs::File::create(dir.join("peer.log"))?)
        .output()
        .await?;
    ensure!(output.status.success(), "glue.py exited with {}; see {}", output.status, dir.join("peer.log").display());
    let stdout = String::from_utf8_lossy(&output.stdout);
    let line =
        stdout.lines().rev().find(|l| l.trim_start().starts_with('{')).with_context(|| format!("glue.py printed no JSON: {stdout}"))?;
    let mut run: PeerRun = serde_json::from_str(line).with_context(|| format!("glue.py printed {line}"))?;
    run.cpu_seconds_per_million = run.cpu_seconds * 1e6 / run.rows.max(1) as f64;
    let http = stack.clickhouse_http(ehac_devstack::WarehouseUser::Migrator);
    let (rows, distinct) = declarations(&http, &stack.clickhouse_url()).await?;
    ensure!(rows == expected && distinct == expected, "the peer stored {rows} rows ({distinct} distinct) of {expected}");
    Ok(run)
}

/// Creates the ceiling topics with the pipeline's partition count.
pub async fn create_topics(brokers: &str, partitions: i32) -> anyhow::Result<()> {
    ehac_stream::kafka::ensure_topics(brokers, &[CEILING_TOPIC, CEILING_REJECTED_TOPIC], partitions).await
}
