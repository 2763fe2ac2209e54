//! One task per assigned partition: gather a batch, drop what is already stored, insert,
//! then commit that partition's offset. Never the other way round.

use std::sync::Arc;
use std::time::Duration;

use clickhouse::{Client, Row};
use ehac_domain::{EnrichedDeclaration, ErrorCode, FieldError, Rejection};
use ehac_stream::admin::Readiness;
use ehac_stream::codec::{ENRICHED, REJECTION};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::dedup::Dedup;
use crate::rows::{DeclarationRow, RejectionRow};
use crate::{Metrics, SinkContext, SERVICE};

/// What a partition task needs, shared by all of them.
pub(crate) struct Shared {
    pub consumer: Arc<BaseConsumer<SinkContext>>,
    pub client: Client,
    pub metrics: Metrics,
    pub readiness: Readiness,
    pub enriched_topic: String,
    pub batch_max: usize,
    pub linger: Duration,
    pub dedup_window: i64,
    pub partition_buffer: usize,
}

/// The identity under which a rejection is stored once: where the rejected record was read.
/// A declaration rejected again after a replay was read from another offset, so it counts anew.
fn rejection_identity(r: &Rejection) -> String {
    format!("{}/{}/{}", r.source_topic, r.source_partition, r.source_offset)
}

#[derive(Row, Deserialize)]
struct StoredIdentity {
    identity: String,
}

/// Identities already stored from `partition` at offsets from `from` on: declaration ids and
/// rejection source positions. (Both topics' offsets share the columns; a stray match from
/// the other topic can only make the window larger, never drop a record wrongly, because
/// identities of the two kinds cannot collide.)
async fn stored_identities(client: &Client, partition: i32, from: i64, to: i64) -> clickhouse::error::Result<Vec<String>> {
    let sql = "SELECT declaration_id AS identity FROM ehac.declaration_positions WHERE kafka_partition = ? AND kafka_offset BETWEEN ? AND ?
               UNION ALL
               SELECT source_position AS identity FROM ehac.rejection_positions WHERE kafka_partition = ? AND kafka_offset BETWEEN ? AND ?";
    let rows: Vec<StoredIdentity> =
        client.query(sql).bind(partition).bind(from).bind(to).bind(partition).bind(from).bind(to).fetch_all().await?;
    Ok(rows.into_iter().map(|r| r.identity).collect())
}

/// A batch, decoded and split by table; each row remembers where it was read.
#[derive(Default)]
struct Rows {
    declarations: Vec<(EnrichedDeclaration, i64)>,
    rejections: Vec<(Rejection, i64)>,
}

impl Rows {
    fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        self.declarations.retain(|(d, _)| keep(&d.raw.declaration_id));
        self.rejections.retain(|(r, _)| keep(&rejection_identity(r)));
    }
}

// Both sides are records on their way into a table; the outer error is the rejection an
// undecodable message becomes. Boxing would add an allocation per record for nothing.
#[allow(clippy::result_large_err)]
fn decode(message: &OwnedMessage, enriched_topic: &str, now_ms: i64) -> Result<Result<EnrichedDeclaration, Rejection>, Rejection> {
    let payload = message.payload().unwrap_or_default();
    let decoded = if message.topic() == enriched_topic { ENRICHED.decode(payload).map(Ok) } else { REJECTION.decode(payload).map(Err) };
    decoded.map_err(|e| {
        tracing::warn!(topic = message.topic(), partition = message.partition(), offset = message.offset(), error = %e, "undecodable message stored as a rejection");
        Rejection {
            declaration_id: None,
            client_id: String::new(),
            service: SERVICE.to_owned(),
            service_version: ehac_stream::VERSION.to_owned(),
            source_topic: message.topic().to_owned(),
            source_partition: message.partition(),
            source_offset: message.offset(),
            rejected_at_ms: now_ms,
            errors: vec![FieldError::new(ErrorCode::Undecodable, "", e.to_string())],
            payload: payload.to_vec(),
            payload_json: String::new(),
        }
    })
}

async fn insert(client: &Client, partition: i32, rows: &Rows) -> clickhouse::error::Result<()> {
    if !rows.declarations.is_empty() {
        let mut insert = client.insert::<DeclarationRow<'_>>("declarations").await?;
        for (record, offset) in &rows.declarations {
            insert.write(&DeclarationRow::new(record, partition, *offset)).await?;
        }
        insert.end().await?;
    }
    if !rows.rejections.is_empty() {
        let mut insert = client.insert::<RejectionRow<'_>>("rejections").await?;
        for (rejection, offset) in &rows.rejections {
            insert.write(&RejectionRow::new(rejection, partition, *offset)).await?;
        }
        insert.end().await?;
    }
    Ok(())
}

/// Waits for one message, then takes more until `max` or `linger`. Empty once the channel is
/// closed and drained: the partition was revoked or the sink is stopping.
async fn gather(rx: &mut mpsc::Receiver<OwnedMessage>, max: usize, linger: Duration) -> Vec<OwnedMessage> {
    let mut batch = Vec::new();
    match rx.recv().await {
        Some(m) => batch.push(m),
        None => return batch,
    }
    let deadline = tokio::time::Instant::now() + linger;
    while batch.len() < max {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Ok(Some(m)) => batch.push(m),
            Ok(None) | Err(_) => break,
        }
    }
    batch
}

/// Retries `attempt` with backoff until it succeeds; `None` if `abandon` fires first.
async fn retry<T, F, Fut>(shared: &Shared, abandon: &CancellationToken, what: &str, mut attempt: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = clickhouse::error::Result<T>>,
{
    let mut backoff = Duration::from_millis(200);
    loop {
        match attempt().await {
            Ok(value) => {
                shared.readiness.ready("clickhouse");
                return Some(value);
            }
            Err(e) => {
                shared.metrics.insert_errors.inc();
                shared.readiness.not_ready("clickhouse", e.to_string());
                tracing::warn!(error = %e, retry_in_ms = backoff.as_millis() as u64, "{what} failed; retrying");
                tokio::select! {
                    _ = abandon.cancelled() => return None,
                    _ = tokio::time::sleep(backoff) => backoff = (backoff * 2).min(Duration::from_secs(10)),
                }
            }
        }
    }
}

fn commit(consumer: &BaseConsumer<SinkContext>, topic: &str, partition: i32, next_offset: i64, mode: CommitMode) {
    let mut tpl = TopicPartitionList::new();
    let result = tpl.add_partition_offset(topic, partition, Offset::Offset(next_offset)).and_then(|()| consumer.commit(&tpl, mode));
    if let Err(e) = result {
        tracing::warn!(topic, partition, next_offset, error = %e, "offset commit failed; the partition will be read again from the last commit (deduplicated)");
    }
}

/// Runs one partition until its channel closes (revoke or shutdown: it then finishes the batch in
/// hand) or `abandon` fires (ClickHouse unreachable while it must hand the partition over: the
/// batch is left uncommitted for the next owner).
pub(crate) async fn run(
    shared: Arc<Shared>,
    topic: String,
    partition: i32,
    mut rx: mpsc::Receiver<OwnedMessage>,
    abandon: CancellationToken,
) {
    let mut dedup: Option<Dedup> = None;
    let mut committed: Option<i64> = None;
    loop {
        let batch = gather(&mut rx, shared.batch_max, shared.linger).await;
        let (Some(first), Some(last)) = (batch.first().map(|m| m.offset()), batch.last().map(|m| m.offset())) else { break };
        shared.metrics.batch_size.observe(batch.len() as f64);

        // Warm the window once, from where this task starts reading.
        if dedup.is_none() {
            let from = first - shared.dedup_window;
            let client = &shared.client;
            let Some(stored) =
                retry(&shared, &abandon, "reading stored identities", || stored_identities(client, partition, from, i64::MAX)).await
            else {
                return;
            };
            tracing::info!(topic, partition, from_offset = first, stored = stored.len(), "partition task started");
            dedup = Some(Dedup::new(stored, 2 * shared.dedup_window as usize));
        }
        let dedup = dedup.as_mut().expect("warmed above");

        let now_ms = chrono::Utc::now().timestamp_millis();
        let mut rows = Rows::default();
        let mut skipped = 0u64;
        for message in &batch {
            match decode(message, &shared.enriched_topic, now_ms) {
                Ok(Ok(d)) if dedup.admit(&d.raw.declaration_id) => rows.declarations.push((d, message.offset())),
                Ok(Err(r)) | Err(r) if dedup.admit(&rejection_identity(&r)) => rows.rejections.push((r, message.offset())),
                _ => skipped += 1,
            }
        }
        shared.metrics.duplicates.inc_by(skipped);

        let timer = shared.metrics.insert_seconds.start_timer();
        let mut backoff = Duration::from_millis(200);
        loop {
            match insert(&shared.client, partition, &rows).await {
                Ok(()) => {
                    shared.readiness.ready("clickhouse");
                    break;
                }
                Err(e) => {
                    shared.metrics.insert_errors.inc();
                    shared.readiness.not_ready("clickhouse", e.to_string());
                    tracing::warn!(topic, partition, error = %e, retry_in_ms = backoff.as_millis() as u64, "insert failed; retrying the same batch");
                    tokio::select! {
                        _ = abandon.cancelled() => {
                            tracing::warn!(topic, partition, first, last, "abandoning an uninserted batch; the next owner reads it again");
                            return;
                        }
                        _ = tokio::time::sleep(backoff) => backoff = (backoff * 2).min(Duration::from_secs(10)),
                    }
                    // A failed insert may still have written some parts: drop what landed.
                    let client = &shared.client;
                    let Some(landed) =
                        retry(&shared, &abandon, "reading stored identities", || stored_identities(client, partition, first, last)).await
                    else {
                        return;
                    };
                    let landed: std::collections::HashSet<String> = landed.into_iter().collect();
                    rows.retain(|identity| !landed.contains(identity));
                }
            }
        }
        timer.observe_duration();
        shared.metrics.rows.with_label_values(&["declarations"]).inc_by(rows.declarations.len() as u64);
        shared.metrics.rows.with_label_values(&["rejections"]).inc_by(rows.rejections.len() as u64);
        // Rows are durable in ClickHouse: now, and only now, the offset may move.
        commit(&shared.consumer, &topic, partition, last + 1, CommitMode::Async);
        committed = Some(last + 1);
    }
    // Hand-over: make sure the last commit reached the broker before the partition moves on.
    if let Some(next) = committed {
        let consumer = shared.consumer.clone();
        let topic = topic.clone();
        let _ = tokio::task::spawn_blocking(move || commit(&consumer, &topic, partition, next, CommitMode::Sync)).await;
    }
    tracing::info!(topic, partition, "partition task stopped");
}
