//! What ClickHouse holds: the counts behind the demo's SUMMARY line, and analyst queries
//! rendered as tables.

use std::time::Duration;

use anyhow::Context;

/// Counts in ClickHouse, never from in-process counters. Raw tables, no FINAL: a duplicate
/// the ReplacingMergeTree has not merged away yet still counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stored {
    /// Distinct declarations in `ehac.declarations`.
    pub stored: u64,
    /// Distinct declarations in `ehac.rejections` that were not stored later (after a replay).
    pub rejected: u64,
    /// Rejections of bytes that could not be decoded (no declaration id), by source position.
    pub undecodable: u64,
    /// Rows beyond the first for any declaration id in `ehac.declarations` and
    /// `ehac_pii.identities`, plus rows beyond the first for any source position in
    /// `ehac.rejections` and `ehac_pii.rejected_payloads`: both databases.
    pub duplicated: u64,
    /// Records with a row in one database and none in the other: declarations without their
    /// identity row (or the reverse), rejections without their payload row (or the reverse).
    /// The identity side's "lost".
    pub unpaired: u64,
}

/// POSTs `body` (a query, or data for an INSERT named in `url`) to ClickHouse's HTTP interface;
/// the answer's bytes.
pub async fn post(http: &reqwest::Client, url: &str, body: impl Into<reqwest::Body>) -> anyhow::Result<Vec<u8>> {
    let response = http.post(url).body(body).send().await.with_context(|| format!("querying ClickHouse at {url}"))?;
    let status = response.status();
    let answer = Vec::from(response.bytes().await?);
    anyhow::ensure!(status.is_success(), "ClickHouse answered {status}: {}", String::from_utf8_lossy(&answer[..answer.len().min(500)]));
    Ok(answer)
}

async fn query(http: &reqwest::Client, url: &str, sql: &str) -> anyhow::Result<String> {
    Ok(String::from_utf8(post(http, url, sql.to_owned()).await?)?)
}

/// `http` must be allowed to read both databases (the `investigator` user).
pub async fn stored(http: &reqwest::Client, url: &str) -> anyhow::Result<Stored> {
    stored_in(http, url, Tables::Shared).await
}

/// Which tables [`stored_in`] counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tables {
    /// The names analysts know: the tables of a single server, or a cluster's Distributed
    /// tables (which read whichever replica answers).
    Shared,
    /// A cluster replica's own `<table>_local` tables: what this replica holds, to tell a
    /// replica that has every row from one that has not caught up yet.
    ReplicaLocal,
}

/// [`stored`], counting `tables`.
pub async fn stored_in(http: &reqwest::Client, url: &str, tables: Tables) -> anyhow::Result<Stored> {
    let suffix = match tables {
        Tables::Shared => "",
        Tables::ReplicaLocal => "_local",
    };
    let (declarations, rejections) = (format!("ehac.declarations{suffix}"), format!("ehac.rejections{suffix}"));
    let (identities, payloads) = (format!("ehac_pii.identities{suffix}"), format!("ehac_pii.rejected_payloads{suffix}"));
    let position = "concat(source_topic, '/', toString(source_partition), '/', toString(source_offset))";
    let sql = format!("SELECT
        (SELECT uniqExact(declaration_id) FROM {declarations}),
        (SELECT uniqExact(declaration_id) FROM {rejections} WHERE declaration_id != '' AND declaration_id NOT IN (SELECT declaration_id FROM {declarations})),
        (SELECT uniqExact(source_topic, source_partition, source_offset) FROM {rejections} WHERE declaration_id = ''),
        (SELECT count() - uniqExact(declaration_id) FROM {declarations}) + (SELECT count() - uniqExact(source_topic, source_partition, source_offset) FROM {rejections})
          + (SELECT count() - uniqExact(declaration_id) FROM {identities}) + (SELECT count() - uniqExact(source_topic, source_partition, source_offset) FROM {payloads}),
        (SELECT uniqExact(declaration_id) FROM {declarations} WHERE declaration_id NOT IN (SELECT declaration_id FROM {identities}))
          + (SELECT uniqExact(declaration_id) FROM {identities} WHERE declaration_id NOT IN (SELECT declaration_id FROM {declarations}))
          + (SELECT uniqExact({position}) FROM {rejections} WHERE {position} NOT IN (SELECT {position} FROM {payloads}))
          + (SELECT uniqExact({position}) FROM {payloads} WHERE {position} NOT IN (SELECT {position} FROM {rejections}))
        FORMAT TabSeparated");
    let text = query(http, url, &sql).await?;
    let numbers: Vec<u64> =
        text.split_whitespace().map(str::parse).collect::<Result<_, _>>().with_context(|| format!("unexpected answer {text:?}"))?;
    anyhow::ensure!(numbers.len() == 5, "unexpected answer {text:?}");
    Ok(Stored { stored: numbers[0], rejected: numbers[1], undecodable: numbers[2], duplicated: numbers[3], unpaired: numbers[4] })
}

/// Polls until ClickHouse holds `expected` declarations (stored + rejected) and
/// `expected_undecodable` undecodable rejections, or nothing has changed for `patience`.
pub async fn wait_for(
    http: &reqwest::Client,
    url: &str,
    expected: u64,
    expected_undecodable: u64,
    patience: Duration,
) -> anyhow::Result<Stored> {
    wait_for_in(http, url, Tables::Shared, expected, expected_undecodable, patience).await
}

/// [`wait_for`], counting `tables`.
pub async fn wait_for_in(
    http: &reqwest::Client,
    url: &str,
    tables: Tables,
    expected: u64,
    expected_undecodable: u64,
    patience: Duration,
) -> anyhow::Result<Stored> {
    let mut last = Stored::default();
    let mut last_change = tokio::time::Instant::now();
    loop {
        let now = stored_in(http, url, tables).await?;
        if now.stored + now.rejected >= expected && now.undecodable >= expected_undecodable && now.unpaired == 0 {
            return Ok(now);
        }
        if now != last {
            last = now;
            last_change = tokio::time::Instant::now();
        } else if last_change.elapsed() > patience {
            return Ok(now);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// A query's result as a text table.
pub async fn table(http: &reqwest::Client, url: &str, sql: &str) -> anyhow::Result<String> {
    query(http, url, &format!("{}\nFORMAT PrettyCompactNoEscapes", sql.trim().trim_end_matches(';'))).await
}
