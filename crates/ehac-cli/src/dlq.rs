//! `ehac dlq replay`: sends rejected declarations through the pipeline again after a rule or
//! reference-data fix.
//!
//! The rejections are chosen in `ehac.rejections`; their original bytes are in the identity
//! database (`ehac_pii.rejected_payloads`, same source position), so a replay runs as a user
//! that may read identity (`investigator`). They are produced to the raw topic under the
//! declaration id, exactly as the gateway first produced them. They keep their original receive
//! time, so time-window rules judge them as they were submitted. Declarations already stored
//! in `ehac.declarations` are never replayed, so a replay cannot duplicate one that landed;
//! the command then waits until each replayed declaration is stored or rejected again and says
//! which.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;
use clickhouse::Row;
use ehac_stream::config::{ClickHouseArgs, KafkaArgs};
use futures::future::join_all;
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use serde::Deserialize;

/// Replays rejected declarations.
#[derive(clap::Args, Debug, Clone)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub kafka: KafkaArgs,
    #[command(flatten)]
    pub clickhouse: ClickHouseArgs,
    #[command(flatten)]
    pub filter: Filter,
    /// List what would be replayed without sending anything.
    #[arg(long)]
    pub dry_run: bool,
    /// How long to wait for the replayed declarations to land.
    #[arg(long, default_value_t = 120)]
    pub wait_secs: u64,
}

/// Which rejected declarations to replay. Filters combine with AND.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct Filter {
    /// Only rejections carrying this error code (repeatable: any of them).
    #[arg(long = "code")]
    pub codes: Vec<String>,
    /// Only these declarations (repeatable).
    #[arg(long = "declaration-id")]
    pub declaration_ids: Vec<String>,
    /// Only declarations from this submitting client.
    #[arg(long)]
    pub client_id: Option<String>,
    /// Only rejections at or after this time (RFC 3339).
    #[arg(long)]
    pub since: Option<chrono::DateTime<chrono::FixedOffset>>,
    /// Most declarations to replay in one run.
    #[arg(long, default_value_t = 10_000)]
    pub limit: u64,
}

/// How a replay ended, counted in ClickHouse.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    pub replayed: u64,
    /// Now in `ehac.declarations`.
    pub stored: u64,
    /// Rejected again.
    pub rejected_again: u64,
    /// Declarations rejected again, by error code (one declaration can carry several).
    pub rejected_codes: HashMap<String, u64>,
    /// Neither stored nor rejected again when the wait ended.
    pub in_flight: u64,
}

impl ReplayReport {
    pub fn line(&self) -> String {
        let mut codes: Vec<_> = self.rejected_codes.iter().collect();
        codes.sort();
        let codes: Vec<String> = codes.into_iter().map(|(c, n)| format!("{c}={n}")).collect();
        format!(
            "REPLAY replayed={} stored={} rejected_again={} in_flight={}{}",
            self.replayed,
            self.stored,
            self.rejected_again,
            self.in_flight,
            if codes.is_empty() { String::new() } else { format!(" ({})", codes.join(", ")) }
        )
    }
}

#[derive(Row, Deserialize)]
struct Candidate {
    declaration_id: String,
    #[serde(with = "serde_bytes")]
    payload: Vec<u8>,
}

#[derive(Row, Deserialize)]
struct Settled {
    declaration_id: String,
    outcome: String,
}

fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The rejected declarations the filters select, never one that is already stored.
fn candidates_sql(args: &Filter) -> String {
    let mut conditions =
        vec!["declaration_id != ''".to_owned(), "declaration_id NOT IN (SELECT declaration_id FROM ehac.declarations)".to_owned()];
    if !args.codes.is_empty() {
        let codes: Vec<String> = args.codes.iter().map(|c| quote(c)).collect();
        conditions.push(format!("hasAny(error_codes, [{}])", codes.join(", ")));
    }
    if !args.declaration_ids.is_empty() {
        let ids: Vec<String> = args.declaration_ids.iter().map(|c| quote(c)).collect();
        conditions.push(format!("declaration_id IN ({})", ids.join(", ")));
    }
    if let Some(client) = &args.client_id {
        conditions.push(format!("client_id = {}", quote(client)));
    }
    if let Some(since) = args.since {
        conditions.push(format!("rejected_at >= toDateTime({})", since.timestamp()));
    }
    let position = "concat(source_topic, '/', toString(source_partition), '/', toString(source_offset)) AS source_position";
    format!(
        "SELECT declaration_id, argMax(payload, rejected_at) AS payload
         FROM (SELECT declaration_id, rejected_at, {position} FROM ehac.rejections WHERE {conditions}) AS rejection
         ANY INNER JOIN
         (SELECT {position}, payload FROM ehac_pii.rejected_payloads
          WHERE declaration_id != '' AND declaration_id NOT IN (SELECT declaration_id FROM ehac.declarations)) AS rejected USING (source_position)
         GROUP BY declaration_id ORDER BY min(rejected_at) LIMIT {limit}",
        conditions = conditions.join(" AND "),
        limit = args.limit
    )
}

pub async fn replay(args: &ReplayArgs) -> anyhow::Result<ReplayReport> {
    let warehouse = ehac_stream::warehouse::client(&args.clickhouse);
    let candidates: Vec<Candidate> =
        warehouse.query(&candidates_sql(&args.filter)).fetch_all().await.context("selecting rejected declarations")?;
    if args.dry_run || candidates.is_empty() {
        for c in &candidates {
            println!("would replay {}", c.declaration_id);
        }
        return Ok(ReplayReport::default());
    }

    // A rejection at or after this second is a new one; the originals are older.
    let started = chrono::Utc::now().timestamp();
    let producer = ehac_stream::kafka::producer(&args.kafka.kafka_brokers)?;
    let topic = &args.kafka.topics.raw;
    let sends = candidates.iter().map(|c| {
        producer.send(FutureRecord::to(topic).key(&c.declaration_id).payload(&c.payload), Timeout::After(Duration::from_secs(30)))
    });
    for (candidate, result) in candidates.iter().zip(join_all(sends).await) {
        result.map_err(|(e, _)| e).with_context(|| format!("producing {} to {topic}", candidate.declaration_id))?;
    }

    let ids: Vec<String> = candidates.iter().map(|c| quote(&c.declaration_id)).collect();
    let settled_sql = format!(
        "SELECT declaration_id, 'stored' AS outcome FROM ehac.declarations WHERE declaration_id IN ({ids})
         UNION ALL
         SELECT declaration_id, arrayStringConcat(error_codes, ',') AS outcome FROM ehac.rejections
         WHERE declaration_id IN ({ids}) AND rejected_at >= toDateTime({started})",
        ids = ids.join(", ")
    );
    let deadline = Instant::now() + Duration::from_secs(args.wait_secs);
    loop {
        let settled: Vec<Settled> = warehouse.query(&settled_sql).fetch_all().await?;
        let mut outcome: HashMap<String, String> = HashMap::new();
        for s in settled {
            // Stored wins over a rejection: the declaration landed.
            if s.outcome == "stored" || !outcome.contains_key(&s.declaration_id) {
                outcome.insert(s.declaration_id, s.outcome);
            }
        }
        if outcome.len() == candidates.len() || Instant::now() > deadline {
            let mut report = ReplayReport {
                replayed: candidates.len() as u64,
                in_flight: (candidates.len() - outcome.len()) as u64,
                ..Default::default()
            };
            for o in outcome.values() {
                if o == "stored" {
                    report.stored += 1;
                } else {
                    report.rejected_again += 1;
                    for code in o.split(',') {
                        *report.rejected_codes.entry(code.to_owned()).or_default() += 1;
                    }
                }
            }
            return Ok(report);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_are_quoted_and_already_stored_declarations_excluded() {
        let args = Filter { codes: vec!["unknown_airport".into()], client_id: Some("kiosk'; DROP".into()), limit: 5, ..Default::default() };
        let sql = candidates_sql(&args);
        assert!(sql.contains("NOT IN (SELECT declaration_id FROM ehac.declarations)"), "{sql}");
        assert!(sql.contains("hasAny(error_codes, ['unknown_airport'])"), "{sql}");
        assert!(sql.contains(r"client_id = 'kiosk\'; DROP'"), "{sql}");
        assert!(sql.ends_with("LIMIT 5"), "{sql}");
    }
}
