//! The reconciliation job: finds declarations stored with `verification_status = pending`
//! (the registry was down or slow when they passed the enricher), asks the registry again and
//! writes its final answers to `ehac.verifications`. Rows it still cannot verify stay pending
//! for the next run. Runs as `ehac reconcile`.
//!
//! Idempotent: a declaration with a row in `ehac.verifications` is not asked again, and the
//! table is a ReplacingMergeTree on declaration_id, so overlapping runs leave one answer each.

use clickhouse::Row;
use ehac_domain::form::Sex;
use ehac_domain::verification::{judge, VerificationStatus};
use ehac_stream::config::ClickHouseArgs;
use ehac_stream::warehouse;
use serde::{Deserialize, Serialize};

use crate::client::PopulationRegistry;
use crate::verifier::Verifier;

/// What one run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// Pending declarations the registry answered for.
    pub verified: u64,
    pub not_found: u64,
    pub mismatch: u64,
    /// Why the run stopped early, leaving the rest pending.
    pub stopped: Option<String>,
}

impl Report {
    pub fn line(&self) -> String {
        format!(
            "reconciled verified={} not_found={} mismatch={}{}",
            self.verified,
            self.not_found,
            self.mismatch,
            self.stopped.as_ref().map(|s| format!(" (stopped early: {s}; the rest stay pending)")).unwrap_or_default()
        )
    }
}

#[derive(Row, Deserialize)]
struct Pending {
    declaration_id: String,
    nik: String,
    date_of_birth: String,
    sex: i8,
}

#[derive(Row, Serialize)]
struct VerificationRow<'a> {
    declaration_id: &'a str,
    status: i8,
    checked_at: u32,
    checked_by: &'a str,
}

/// The NIK and birth date come from the identity database (`ehac_pii`), the status and sex from
/// the analyst one: reconciling is a job for a user that may read identity.
const PENDING: &str = "SELECT declaration_id, assumeNotNull(nik) AS nik, date_of_birth, sex
    FROM (SELECT declaration_id, nik, date_of_birth FROM ehac_pii.identities WHERE isNotNull(nik)) AS identity
    ANY INNER JOIN
    (
        SELECT declaration_id, CAST(sex AS Int8) AS sex, received_at
        FROM ehac.declarations
        WHERE verification_status = 'pending'
          AND declaration_id NOT IN (SELECT declaration_id FROM ehac.verifications)
    ) AS pending USING (declaration_id)
    ORDER BY received_at
    LIMIT ?";

/// Verifies pending declarations, `batch` per registry request, until none are left or the
/// registry stops answering. Connects as `clickhouse` says (a user that reads identity); on a
/// cluster it writes the replicated `verifications_local` of that server, not the
/// Distributed table (whose insert answers before the rows reach a replica).
pub async fn run_once<R: PopulationRegistry>(
    clickhouse: &ClickHouseArgs,
    verifier: &Verifier<R>,
    batch: u64,
    checked_by: &str,
) -> anyhow::Result<Report> {
    let client = &warehouse::client(clickhouse).with_database(warehouse::DATABASE);
    let verifications = warehouse::write_table(clickhouse.clickhouse_cluster.as_deref(), "verifications");
    let mut report = Report::default();
    loop {
        let pending: Vec<Pending> = client.query(PENDING).bind(batch).fetch_all().await?;
        if pending.is_empty() {
            return Ok(report);
        }
        let niks: Vec<String> = pending.iter().map(|p| p.nik.clone()).collect();
        let answers = match verifier.lookup(&niks).await {
            Ok(answers) => answers,
            Err(skipped) => {
                report.stopped = Some(skipped.to_string());
                return Ok(report);
            }
        };
        let checked_at = chrono::Utc::now().timestamp() as u32;
        let mut insert = client.insert::<VerificationRow>(&verifications).await?;
        let mut written = 0;
        for p in &pending {
            let Some(answer) = answers.get(&p.nik) else { continue };
            let sex = match p.sex {
                1 => Some(Sex::Male),
                2 => Some(Sex::Female),
                _ => None,
            };
            let status = judge(&p.date_of_birth, sex, answer);
            match status {
                VerificationStatus::Verified => report.verified += 1,
                VerificationStatus::NotFound => report.not_found += 1,
                VerificationStatus::Mismatch => report.mismatch += 1,
                VerificationStatus::Pending | VerificationStatus::NotApplicable => continue,
            }
            insert.write(&VerificationRow { declaration_id: &p.declaration_id, status: status as i8, checked_at, checked_by }).await?;
            written += 1;
        }
        insert.end().await?;
        if written == 0 {
            // The registry answered but said nothing about these NIKs: asking again now would
            // loop forever.
            report.stopped = Some("the registry answered without any of the requested NIKs".into());
            return Ok(report);
        }
    }
}
