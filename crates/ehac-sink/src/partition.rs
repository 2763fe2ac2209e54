//! One task per assigned partition: gather a batch, drop what is already stored, insert,
//! then commit that partition's offset. Never the other way round.
//!
//! Each record has two rows, one in the analyst database and one in the identity database
//! (`ehac_pii`), each stored once under its own identity: a crash between the two inserts
//! leaves the missing one to be written when the batch is read again, and the other skipped.

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
use crate::rows::{DeclarationRow, IdentityRow, RejectedPayloadRow, RejectionRow};
use crate::{Metrics, SinkContext, SERVICE};

/// What a partition task needs, shared by all of them.
pub(crate) struct Shared {
    pub consumer: Arc<BaseConsumer<SinkContext>>,
    /// For the analyst database `ehac`.
    pub client: Client,
    /// The same connection for the identity database `ehac_pii` (the crate quotes table names,
    /// so a table of another database needs a client of its own).
    pub pii_client: Client,
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

/// The identity under which a record's row in the identity database (`ehac_pii`) is stored
/// once: its analyst-side identity, marked. Kept apart from the analyst-side identity so that a
/// crash between the two inserts of a batch leaves each table to be completed on its own.
fn personal_identity(identity: &str) -> String {
    format!("pii:{identity}")
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

/// A record of the batch and which of its two rows (analyst database, identity database) are
/// still to be written.
struct Pending<T> {
    record: T,
    offset: i64,
    analyst: bool,
    personal: bool,
}

/// A batch, decoded and split by table; each row remembers where it was read.
#[derive(Default)]
struct Rows {
    declarations: Vec<Pending<EnrichedDeclaration>>,
    rejections: Vec<Pending<Rejection>>,
}

impl Rows {
    /// Drops the rows whose identity `keep` refuses, and records neither of whose rows is left.
    fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        fn apply<T>(rows: &mut Vec<Pending<T>>, identity: impl Fn(&T) -> String, keep: &impl Fn(&str) -> bool) {
            for p in rows.iter_mut() {
                let id = identity(&p.record);
                p.analyst &= keep(&id);
                p.personal &= keep(&personal_identity(&id));
            }
            rows.retain(|p| p.analyst || p.personal);
        }
        apply(&mut self.declarations, |d| d.raw.declaration_id.clone(), &keep);
        apply(&mut self.rejections, rejection_identity, &keep);
    }

    /// Rows to write per table: declarations, identities, rejections, rejected payloads.
    fn counts(&self) -> [u64; 4] {
        fn n<T>(rows: &[Pending<T>], analyst: bool) -> u64 {
            rows.iter().filter(|p| if analyst { p.analyst } else { p.personal }).count() as u64
        }
        [n(&self.declarations, true), n(&self.declarations, false), n(&self.rejections, true), n(&self.rejections, false)]
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

/// Writes the batch's rows, the identity database's first. Each table's rows are one INSERT;
/// a table whose rows already landed (see `retain`) gets none.
async fn insert(client: &Client, pii_client: &Client, partition: i32, rows: &Rows) -> clickhouse::error::Result<()> {
    let [declarations, identities, rejections, payloads] = rows.counts();
    if identities > 0 {
        let mut insert = pii_client.insert::<IdentityRow<'_>>("identities").await?;
        for p in rows.declarations.iter().filter(|p| p.personal) {
            insert.write(&IdentityRow::new(&p.record, partition, p.offset)).await?;
        }
        insert.end().await?;
    }
    if declarations > 0 {
        let mut insert = client.insert::<DeclarationRow<'_>>("declarations").await?;
        for p in rows.declarations.iter().filter(|p| p.analyst) {
            insert.write(&DeclarationRow::new(&p.record, partition, p.offset)).await?;
        }
        insert.end().await?;
    }
    if payloads > 0 {
        let mut insert = pii_client.insert::<RejectedPayloadRow<'_>>("rejected_payloads").await?;
        for p in rows.rejections.iter().filter(|p| p.personal) {
            insert.write(&RejectedPayloadRow::new(&p.record, partition, p.offset)).await?;
        }
        insert.end().await?;
    }
    if rejections > 0 {
        let mut insert = client.insert::<RejectionRow<'_>>("rejections").await?;
        for p in rows.rejections.iter().filter(|p| p.analyst) {
            insert.write(&RejectionRow::new(&p.record, partition, p.offset)).await?;
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
            match insert(&shared.client, &shared.pii_client, partition, &rows).await {
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
        let [declarations, identities, rejections, payloads] = rows.counts();
        shared.metrics.rows.with_label_values(&["declarations"]).inc_by(declarations);
        shared.metrics.rows.with_label_values(&["identities"]).inc_by(identities);
        shared.metrics.rows.with_label_values(&["rejections"]).inc_by(rejections);
        shared.metrics.rows.with_label_values(&["rejected_payloads"]).inc_by(payloads);
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
