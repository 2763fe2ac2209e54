//! One task per assigned partition: gather a batch, drop what is already stored, insert,
//! then commit that partition's offset. Never the other way round.
//!
//! Each record has two rows, one in the analyst database and one in the identity database
//! (`ehac_pii`), each stored once under its own identity: a crash between the two inserts
//! leaves the missing one to be written when the batch is read again, and the other skipped.

use std::sync::Arc;
use std::time::Duration;

use clickhouse::{Client, Row};
use ehac_codec::{ENRICHED, REJECTION};
use ehac_domain::{EnrichedDeclaration, Rejection};
use ehac_stream::admin::Readiness;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::OwnedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::batch::{personal_identity, rejection_identity, Batch, Pending, Warehouse};
use crate::dedup::Dedup;
use crate::{Metrics, SinkContext, SERVICE};

/// What a partition task needs, shared by all of them.
pub(crate) struct Shared {
    pub consumer: Arc<BaseConsumer<SinkContext>>,
    /// The clients and the tables rows go to.
    pub warehouse: Warehouse,
    pub metrics: Metrics,
    pub readiness: Readiness,
    pub enriched_topic: String,
    pub flush: Flush,
    pub dedup_window: i64,
    pub partition_buffer: usize,
}

#[derive(Row, Deserialize)]
struct StoredIdentity {
    identity: String,
}

/// Identities already stored from `partition` at offsets from `from` on, in both databases:
/// declaration ids and rejection source positions, and the same marked by
/// [`personal_identity`] for `ehac_pii.identities` and `ehac_pii.rejected_payloads`. (Both
/// topics' offsets share the columns; a stray match from the other topic can only make the
/// window larger, never drop a record wrongly, because identities of the kinds cannot collide.)
async fn stored_identities(client: &Client, partition: i32, from: i64, to: i64) -> clickhouse::error::Result<Vec<String>> {
    let sql = "SELECT declaration_id AS identity FROM ehac.declaration_positions WHERE kafka_partition = ? AND kafka_offset BETWEEN ? AND ?
               UNION ALL
               SELECT source_position AS identity FROM ehac.rejection_positions WHERE kafka_partition = ? AND kafka_offset BETWEEN ? AND ?
               UNION ALL
               SELECT concat('pii:', declaration_id) AS identity FROM ehac_pii.identity_positions WHERE kafka_partition = ? AND kafka_offset BETWEEN ? AND ?
               UNION ALL
               SELECT concat('pii:', source_position) AS identity FROM ehac_pii.rejected_payload_positions WHERE kafka_partition = ? AND kafka_offset BETWEEN ? AND ?";
    let mut query = client.query(sql);
    for _ in 0..4 {
        query = query.bind(partition).bind(from).bind(to);
    }
    let rows: Vec<StoredIdentity> = query.fetch_all().await?;
    Ok(rows.into_iter().map(|r| r.identity).collect())
}

// Both sides are records on their way into a table; the outer error is the rejection an
// undecodable message becomes. Boxing would add an allocation per record for nothing.
#[allow(clippy::result_large_err)]
fn decode(message: &OwnedMessage, enriched_topic: &str, now_ms: i64) -> Result<Result<EnrichedDeclaration, Rejection>, Rejection> {
    let payload = message.payload().unwrap_or_default();
    let decoded = if message.topic() == enriched_topic { ENRICHED.decode(payload).map(Ok) } else { REJECTION.decode(payload).map(Err) };
    decoded.map_err(|e| {
        tracing::warn!(topic = message.topic(), partition = message.partition(), offset = message.offset(), error = %e, "undecodable message stored as a rejection");
        let source = ehac_codec::Source { topic: message.topic(), partition: message.partition(), offset: message.offset() };
        ehac_codec::undecodable(SERVICE, ehac_stream::VERSION, source, payload, &e, now_ms)
    })
}

/// What [`gather`] brought.
enum Gathered {
    Batch(Vec<OwnedMessage>),
    /// Nothing arrived within the idle time.
    Idle,
    /// The channel is closed and drained: the partition was revoked or the sink is stopping.
    Closed,
}

/// When a partition's batch is inserted: once it holds `max` records, or `linger` after its
/// first record. The linger is not cut short when the partition goes quiet: every gap in the
/// enricher's commits would then make more, smaller inserts, which cost ClickHouse more CPU per
/// declaration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Flush {
    pub max: usize,
    pub linger: Duration,
}

/// Waits up to `idle` for one message, then takes more until the batch is full or the linger
/// is over. Only the wait for the first message can time out, so no message taken from the
/// channel is ever dropped.
async fn gather(rx: &mut mpsc::Receiver<OwnedMessage>, flush: Flush, idle: Duration) -> Gathered {
    let mut batch = match tokio::time::timeout(idle, rx.recv()).await {
        // A busy partition's batch holds thousands of records: room for up to 8,192 from the
        // start, so the vector is not copied over and over as it grows.
        Ok(Some(m)) => {
            let mut batch = Vec::with_capacity(flush.max.clamp(1, 8_192));
            batch.push(m);
            batch
        }
        Ok(None) => return Gathered::Closed,
        Err(_) => return Gathered::Idle,
    };
    let deadline = tokio::time::Instant::now() + flush.linger;
    while batch.len() < flush.max {
        let room = flush.max - batch.len();
        match tokio::time::timeout_at(deadline, rx.recv_many(&mut batch, room)).await {
            // 0: the channel is closed and drained.
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
    }
    Gathered::Batch(batch)
}

/// How long a partition task waits with nothing to read before it makes sure its last
/// asynchronous commit reached the group.
const IDLE_RECOMMIT: Duration = Duration::from_secs(2);

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

/// Commits `next_offset` for the partition: whether the commit was sent (`CommitMode::Async`)
/// or reached the group (`CommitMode::Sync`).
fn commit(consumer: &BaseConsumer<SinkContext>, topic: &str, partition: i32, next_offset: i64, mode: CommitMode) -> bool {
    let mut tpl = TopicPartitionList::new();
    let result = tpl.add_partition_offset(topic, partition, Offset::Offset(next_offset)).and_then(|()| consumer.commit(&tpl, mode));
    if let Err(e) = &result {
        tracing::warn!(topic, partition, next_offset, error = %e, "offset commit failed; the partition will be read again from the last commit (deduplicated)");
    }
    result.is_ok()
}

/// [`commit`] with `CommitMode::Sync`, off the runtime's threads.
async fn commit_and_wait(shared: &Shared, topic: &str, partition: i32, next_offset: i64) -> bool {
    let (consumer, topic) = (shared.consumer.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || commit(&consumer, &topic, partition, next_offset, CommitMode::Sync)).await.unwrap_or(false)
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
    // The last offset committed asynchronously and not yet known to have reached the group.
    let mut unconfirmed: Option<i64> = None;
    loop {
        let batch = match gather(&mut rx, shared.flush, IDLE_RECOMMIT).await {
            Gathered::Batch(batch) => batch,
            Gathered::Closed => break,
            Gathered::Idle => {
                // An asynchronous commit can fail unseen (a rebalance in progress: "generation
                // id is not valid"), and on a partition with nothing more to read no later
                // commit would mend it: the group's lag would stay up and page someone.
                if let Some(next) = unconfirmed {
                    if commit_and_wait(&shared, &topic, partition, next).await {
                        unconfirmed = None;
                    }
                }
                continue;
            }
        };
        let (Some(first), Some(last)) = (batch.first().map(|m| m.offset()), batch.last().map(|m| m.offset())) else { break };
        shared.metrics.batch_size.observe(batch.len() as f64);

        // Warm the window once, from where this task starts reading.
        if dedup.is_none() {
            let from = first - shared.dedup_window;
            let client = &shared.warehouse.client;
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
        // Stamped once: every attempt below writes the same inserted_at.
        let mut rows = Batch::stamped_now();
        let mut skipped = 0u64;
        for message in &batch {
            let offset = message.offset();
            match decode(message, &shared.enriched_topic, now_ms) {
                Ok(Ok(d)) => {
                    let analyst = dedup.admit(&d.raw.declaration_id);
                    let personal = dedup.admit(&personal_identity(&d.raw.declaration_id));
                    if analyst || personal {
                        rows.declarations.push(Pending { record: d, offset, analyst, personal });
                    } else {
                        skipped += 1;
                    }
                }
                Ok(Err(r)) | Err(r) => {
                    let identity = rejection_identity(&r);
                    let analyst = dedup.admit(&identity);
                    let personal = dedup.admit(&personal_identity(&identity));
                    if analyst || personal {
                        rows.rejections.push(Pending { record: r, offset, analyst, personal });
                    } else {
                        skipped += 1;
                    }
                }
            }
        }
        shared.metrics.duplicates.inc_by(skipped);

        let timer = shared.metrics.insert_seconds.start_timer();
        let mut backoff = Duration::from_millis(200);
        loop {
            match rows.insert(&shared.warehouse, partition).await {
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
                    let client = &shared.warehouse.client;
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
        let insert_seconds = timer.stop_and_record();
        let [declarations, identities, rejections, payloads] = rows.counts();
        tracing::debug!(topic, partition, first, last, declarations, rejections, insert_seconds, "batch inserted");
        shared.metrics.rows.with_label_values(&["declarations"]).inc_by(declarations);
        shared.metrics.rows.with_label_values(&["identities"]).inc_by(identities);
        shared.metrics.rows.with_label_values(&["rejections"]).inc_by(rejections);
        shared.metrics.rows.with_label_values(&["rejected_payloads"]).inc_by(payloads);
        // Rows are durable in ClickHouse: now, and only now, the offset may move.
        commit(&shared.consumer, &topic, partition, last + 1, CommitMode::Async);
        committed = Some(last + 1);
        unconfirmed = committed;
    }
    // Hand-over: make sure the last commit reached the broker before the partition moves on.
    if let Some(next) = committed {
        commit_and_wait(&shared, &topic, partition, next).await;
    }
    tracing::info!(topic, partition, "partition task stopped");
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;

    fn message(offset: i64) -> OwnedMessage {
        OwnedMessage::new(Some(vec![1]), None, "t".into(), Timestamp::NotAvailable, 0, offset, None)
    }

    fn flush(max: usize, linger_ms: u64) -> Flush {
        Flush { max, linger: Duration::from_millis(linger_ms) }
    }

    #[tokio::test]
    async fn an_idle_wait_ends_without_losing_what_comes_after_it() {
        let (tx, mut rx) = mpsc::channel(8);
        let flush = flush(10, 20);
        assert!(matches!(gather(&mut rx, flush, Duration::from_millis(50)).await, Gathered::Idle));
        tx.send(message(7)).await.unwrap();
        tx.send(message(8)).await.unwrap();
        let Gathered::Batch(batch) = gather(&mut rx, flush, Duration::from_millis(50)).await else {
            panic!("the two messages sent after the idle wait are a batch")
        };
        assert_eq!(batch.iter().map(|m| m.offset()).collect::<Vec<_>>(), [7, 8]);
        drop(tx);
        assert!(matches!(gather(&mut rx, flush, Duration::from_millis(50)).await, Gathered::Closed));
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_goes_in_when_full_or_after_the_linger_however_quiet_its_partition_is() {
        let (tx, mut rx) = mpsc::channel(16);
        tokio::spawn(async move {
            for offset in 0..12 {
                tx.send(message(offset)).await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            std::future::pending::<()>().await;
        });
        let started = tokio::time::Instant::now();
        let Gathered::Batch(batch) = gather(&mut rx, flush(8, 5_000), Duration::from_secs(1)).await else { panic!("a batch") };
        assert_eq!(batch.len(), 8, "full");
        assert_eq!(started.elapsed(), Duration::from_millis(350), "the eighth record came 350 ms after the first");
        let started = tokio::time::Instant::now();
        let Gathered::Batch(rest) = gather(&mut rx, flush(8, 5_000), Duration::from_secs(1)).await else { panic!("a batch") };
        assert_eq!(rest.iter().map(|m| m.offset()).collect::<Vec<_>>(), (8..12).collect::<Vec<_>>());
        // Its first record came 50 ms into this wait; quiet after the twelfth, the batch still
        // waits out the linger from there.
        assert_eq!(started.elapsed(), Duration::from_millis(5_050));
    }
}
