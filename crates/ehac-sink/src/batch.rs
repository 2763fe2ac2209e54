//! One partition's batch on its way into ClickHouse, and the tables it is written to.
//!
//! A batch is stamped with its `inserted_at` once, when it is made, and every attempt to insert
//! it writes that same stamp: a retry after a failed (or seemingly failed) insert sends the
//! same bytes, so a replicated table's block deduplication drops what had landed. On a server
//! that has them (22.2 on), each INSERT also carries an `insert_deduplication_token` made of
//! where its rows were read, so ClickHouse drops a retried insert whatever its bytes. The sink's
//! dedup window (`dedup.rs`) still decides which records are written at all.

use std::sync::Arc;

use clickhouse::Client;
use ehac_domain::{EnrichedDeclaration, Rejection};
use ehac_stream::config::ClickHouseArgs;
use ehac_stream::warehouse::{self, ServerFeatures};

use crate::rows::{DeclarationRow, IdentityRow, RejectedPayloadRow, RejectionRow};

/// Where the sink writes: one client per database (the crate quotes table names, so a table of
/// another database needs a client of its own) and the tables' names, which on a cluster are
/// the replicated `*_local` tables of the server it connects to ([`warehouse::write_table`]).
#[derive(Clone)]
pub struct Warehouse {
    /// For the analyst database `ehac`.
    pub client: Client,
    /// For the identity database `ehac_pii`.
    pub pii_client: Client,
    declarations: String,
    rejections: String,
    identities: String,
    rejected_payloads: String,
    /// Read from the server on the first insert, once.
    features: Arc<tokio::sync::OnceCell<ServerFeatures>>,
}

impl Warehouse {
    pub fn new(args: &ClickHouseArgs) -> Self {
        let client = warehouse::client(args).with_database(warehouse::DATABASE);
        let cluster = args.clickhouse_cluster.as_deref();
        Warehouse {
            pii_client: client.clone().with_database(warehouse::PII_DATABASE),
            client,
            declarations: warehouse::write_table(cluster, "declarations"),
            rejections: warehouse::write_table(cluster, "rejections"),
            identities: warehouse::write_table(cluster, "identities"),
            rejected_payloads: warehouse::write_table(cluster, "rejected_payloads"),
            features: Arc::default(),
        }
    }

    /// What the server can do, asked once.
    pub async fn features(&self) -> clickhouse::error::Result<&ServerFeatures> {
        self.features.get_or_try_init(|| ServerFeatures::detect(&self.client)).await
    }

    /// `client` for one INSERT of rows read from `partition` at `offsets`: with the token that
    /// makes ClickHouse drop it when it is sent again, and synchronous, since the sink batches
    /// itself and commits offsets only once the rows are in their table.
    fn for_insert(&self, client: &Client, table: &str, partition: i32, offsets: impl Iterator<Item = i64>) -> Client {
        let Some(features) = self.features.get() else { return client.clone() };
        let mut client = client.clone();
        if features.async_insert {
            client = client.with_setting("async_insert", "0");
        }
        if features.deduplication_tokens {
            client = client.with_setting("insert_deduplication_token", deduplication_token(table, partition, offsets));
        }
        client
    }
}

/// The offsets of the rows bound for the analyst database's table (`analyst`) or the identity
/// database's.
fn offsets<T>(rows: &[Pending<T>], analyst: bool) -> impl Iterator<Item = i64> + '_ {
    rows.iter().filter(move |p| if analyst { p.analyst } else { p.personal }).map(|p| p.offset)
}

/// Names an INSERT by where its rows were read: the table, the topic partition, the first and
/// last offsets, how many rows, and a checksum of every offset (a retry after part of a batch
/// landed sends fewer rows, so it gets a token of its own).
pub fn deduplication_token(table: &str, partition: i32, offsets: impl Iterator<Item = i64>) -> String {
    let (mut first, mut last, mut rows) = (i64::MAX, i64::MIN, 0u64);
    let mut checksum = crc32fast::Hasher::new();
    for offset in offsets {
        first = first.min(offset);
        last = last.max(offset);
        rows += 1;
        checksum.update(&offset.to_le_bytes());
    }
    format!("{table}/{partition}/{first}-{last}/{rows}/{:08x}", checksum.finalize())
}

/// The identity under which a rejection is stored once: where the rejected record was read.
/// A declaration rejected again after a replay was read from another offset, so it counts anew.
pub(crate) fn rejection_identity(r: &Rejection) -> String {
    format!("{}/{}/{}", r.source_topic, r.source_partition, r.source_offset)
}

/// The identity under which a record's row in the identity database (`ehac_pii`) is stored
/// once: its analyst-side identity, marked. Kept apart from the analyst-side identity so that a
/// crash between the two inserts of a batch leaves each table to be completed on its own.
pub(crate) fn personal_identity(identity: &str) -> String {
    format!("pii:{identity}")
}

/// A record of the batch and which of its two rows (analyst database, identity database) are
/// still to be written.
pub(crate) struct Pending<T> {
    pub record: T,
    pub offset: i64,
    pub analyst: bool,
    pub personal: bool,
}

/// A batch of one topic partition, decoded and split by table; each row remembers where it was
/// read.
pub struct Batch {
    pub(crate) declarations: Vec<Pending<EnrichedDeclaration>>,
    pub(crate) rejections: Vec<Pending<Rejection>>,
    inserted_at: u32,
}

impl Batch {
    /// An empty batch stamped `inserted_at` (seconds since the epoch), the value every row of
    /// it is written with, on every attempt.
    pub fn new(inserted_at: u32) -> Self {
        Batch { declarations: Vec::new(), rejections: Vec::new(), inserted_at }
    }

    /// A batch stamped with the time now.
    pub fn stamped_now() -> Self {
        Batch::new(chrono::Utc::now().timestamp().clamp(0, u32::MAX as i64) as u32)
    }

    pub fn inserted_at(&self) -> u32 {
        self.inserted_at
    }

    /// Adds a declaration read at `offset`, both of its rows to be written.
    pub fn push_declaration(&mut self, record: EnrichedDeclaration, offset: i64) {
        self.declarations.push(Pending { record, offset, analyst: true, personal: true });
    }

    /// Adds a rejection read at `offset`, both of its rows to be written.
    pub fn push_rejection(&mut self, record: Rejection, offset: i64) {
        self.rejections.push(Pending { record, offset, analyst: true, personal: true });
    }

    /// Drops the rows whose identity `keep` refuses, and records neither of whose rows is left.
    pub(crate) fn retain(&mut self, keep: impl Fn(&str) -> bool) {
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
    pub fn counts(&self) -> [u64; 4] {
        fn n<T>(rows: &[Pending<T>], analyst: bool) -> u64 {
            rows.iter().filter(|p| if analyst { p.analyst } else { p.personal }).count() as u64
        }
        [n(&self.declarations, true), n(&self.declarations, false), n(&self.rejections, true), n(&self.rejections, false)]
    }

    fn declaration_rows(&self, partition: i32) -> impl Iterator<Item = DeclarationRow<'_>> {
        self.declarations.iter().filter(|p| p.analyst).map(move |p| DeclarationRow::new(&p.record, partition, p.offset, self.inserted_at))
    }

    fn identity_rows(&self, partition: i32) -> impl Iterator<Item = IdentityRow<'_>> {
        self.declarations.iter().filter(|p| p.personal).map(move |p| IdentityRow::new(&p.record, partition, p.offset, self.inserted_at))
    }

    fn rejection_rows(&self, partition: i32) -> impl Iterator<Item = RejectionRow<'_>> {
        self.rejections.iter().filter(|p| p.analyst).map(move |p| RejectionRow::new(&p.record, partition, p.offset, self.inserted_at))
    }

    fn rejected_payload_rows(&self, partition: i32) -> impl Iterator<Item = RejectedPayloadRow<'_>> {
        self.rejections
            .iter()
            .filter(|p| p.personal)
            .map(move |p| RejectedPayloadRow::new(&p.record, partition, p.offset, self.inserted_at))
    }

    /// Writes the batch's rows, read from topic partition `partition`, the identity database's
    /// first. Each table's rows are one INSERT; a table with no rows left gets none. Calling it
    /// again after a failure sends the same rows with the same bytes.
    pub async fn insert(&self, warehouse: &Warehouse, partition: i32) -> clickhouse::error::Result<()> {
        warehouse.features().await?;
        let [declarations, identities, rejections, payloads] = self.counts();
        if identities > 0 {
            let client = warehouse.for_insert(&warehouse.pii_client, &warehouse.identities, partition, offsets(&self.declarations, false));
            let mut insert = client.insert::<IdentityRow<'_>>(&warehouse.identities).await?;
            for row in self.identity_rows(partition) {
                insert.write(&row).await?;
            }
            insert.end().await?;
        }
        if declarations > 0 {
            let client = warehouse.for_insert(&warehouse.client, &warehouse.declarations, partition, offsets(&self.declarations, true));
            let mut insert = client.insert::<DeclarationRow<'_>>(&warehouse.declarations).await?;
            for row in self.declaration_rows(partition) {
                insert.write(&row).await?;
            }
            insert.end().await?;
        }
        if payloads > 0 {
            let client =
                warehouse.for_insert(&warehouse.pii_client, &warehouse.rejected_payloads, partition, offsets(&self.rejections, false));
            let mut insert = client.insert::<RejectedPayloadRow<'_>>(&warehouse.rejected_payloads).await?;
            for row in self.rejected_payload_rows(partition) {
                insert.write(&row).await?;
            }
            insert.end().await?;
        }
        if rejections > 0 {
            let client = warehouse.for_insert(&warehouse.client, &warehouse.rejections, partition, offsets(&self.rejections, true));
            let mut insert = client.insert::<RejectionRow<'_>>(&warehouse.rejections).await?;
            for row in self.rejection_rows(partition) {
                insert.write(&row).await?;
            }
            insert.end().await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ehac_domain::reference::ReferenceData;
    use ehac_domain::sample::{Flaw, SampleGenerator};
    use ehac_domain::{ErrorCode, FieldError, Policy, RawDeclaration};

    fn declaration(seed: u64) -> EnrichedDeclaration {
        let received_at = chrono::Utc::now();
        let form = SampleGenerator::new(seed).declaration(received_at, "kiosk-test", Flaw::None);
        let raw = RawDeclaration {
            declaration_id: format!("d{seed}"),
            received_at_ms: received_at.timestamp_millis(),
            gateway_version: "test".into(),
            form,
        };
        ehac_domain::accept(raw, ReferenceData::embedded(), &Policy::default(), "test").map_err(|(_, e)| e).expect("a valid sample")
    }

    fn rejection(offset: i64) -> Rejection {
        Rejection {
            declaration_id: None,
            client_id: String::new(),
            service: "test".into(),
            service_version: "test".into(),
            source_topic: "raw".into(),
            source_partition: 0,
            source_offset: offset,
            rejected_at_ms: 0,
            errors: vec![FieldError::new(ErrorCode::Undecodable, "", "bad".to_owned())],
            payload: vec![1, 2, 3],
            payload_json: String::new(),
        }
    }

    /// What an attempt would send: every row of every table, as JSON (the same fields the
    /// RowBinary encoder writes, in order).
    fn attempt(batch: &Batch) -> Vec<serde_json::Value> {
        let mut rows: Vec<serde_json::Value> = Vec::new();
        rows.extend(batch.identity_rows(3).map(|r| serde_json::to_value(r).unwrap()));
        rows.extend(batch.declaration_rows(3).map(|r| serde_json::to_value(r).unwrap()));
        rows.extend(batch.rejected_payload_rows(3).map(|r| serde_json::to_value(r).unwrap()));
        rows.extend(batch.rejection_rows(3).map(|r| serde_json::to_value(r).unwrap()));
        rows
    }

    #[test]
    fn a_retry_sends_the_rows_with_the_inserted_at_of_the_batch_not_of_the_attempt() {
        let stamp = 1_800_000_000;
        let mut batch = Batch::new(stamp);
        batch.push_declaration(declaration(1), 10);
        batch.push_declaration(declaration(2), 11);
        batch.push_rejection(rejection(7), 12);
        let first = attempt(&batch);
        assert_eq!(first.len(), 6, "two rows per record");
        assert!(first.iter().all(|row| row["inserted_at"] == stamp), "every row carries the batch's stamp: {first:?}");

        // Seconds later the insert failed and is tried again: nothing landed, so the same rows
        // go again, byte for byte, whatever the clock says now.
        std::thread::sleep(std::time::Duration::from_millis(1_100));
        batch.retain(|_| true);
        assert_eq!(attempt(&batch), first);

        // One table's insert had landed: the retry leaves those rows out, the rest unchanged.
        batch.retain(|id| id != personal_identity("d1"));
        let third = attempt(&batch);
        assert_eq!(third.len(), 5);
        assert!(third.iter().all(|row| first.contains(row)), "a retried row differs from its first attempt");
        assert_ne!(Batch::stamped_now().inserted_at(), stamp, "a new batch gets a new stamp");
    }
}
