//! ClickHouse: the client every service uses and the schema migrations `ehac migrate` applies.
//!
//! Migrations are the `.sql` files in `schemas/clickhouse/migrations/`, compiled in, applied in
//! order, each recorded in `ehac.schema_migrations` with a checksum. Applying them again does
//! nothing; an applied migration whose file changed since is an error, never silently re-run.

use clickhouse::{Client, Row};
use serde::Deserialize;
use sha2::{Digest, Sha256};

use crate::config::ClickHouseArgs;

/// The analyst database: what counting travellers needs, no direct identifier or contact.
pub const DATABASE: &str = "ehac";

/// The identity database: identity, contact and address per declaration, and rejected payloads.
/// Analysts cannot open it; investigators can.
pub const PII_DATABASE: &str = "ehac_pii";

/// A client for the `ehac` database. Validation is off because ClickHouse 18.16 lacks
/// RowBinaryWithNamesAndTypes, which the crate's schema validation needs.
pub fn client(args: &ClickHouseArgs) -> Client {
    Client::default()
        .with_url(&args.clickhouse_url)
        .with_user(&args.clickhouse_user)
        .with_password(&args.clickhouse_password)
        .with_validation(false)
}

pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub sql: &'static str,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration { version: 1, name: "0001_declarations", sql: include_str!("../../../schemas/clickhouse/migrations/0001_declarations.sql") },
    Migration { version: 2, name: "0002_verification", sql: include_str!("../../../schemas/clickhouse/migrations/0002_verification.sql") },
    Migration { version: 3, name: "0003_exactly_once", sql: include_str!("../../../schemas/clickhouse/migrations/0003_exactly_once.sql") },
    Migration {
        version: 4,
        name: "0004_personal_data",
        sql: include_str!("../../../schemas/clickhouse/migrations/0004_personal_data.sql"),
    },
];

/// Users and grants for modern ClickHouse (on 18.16 the same users are in users.xml).
pub const ACCESS_SQL: &str = include_str!("../../../schemas/clickhouse/access.sql");

/// Below how many travellers a published cell is suppressed, unless configured otherwise.
pub const DEFAULT_SUPPRESS_BELOW: u32 = 11;

/// A standard query ready to run: cells counting 1 to `suppress_below - 1` travellers come out
/// NULL (and are counted in the row's `suppressed_cells`).
pub fn analyst_query(sql: &str, suppress_below: u32) -> String {
    sql.replace("{suppress_below}", &suppress_below.max(1).to_string())
}

/// The analysts' standard queries, `(name, sql)`; the demo prints them and tests run them on
/// ClickHouse 18.16 and on a modern engine, as the `analyst` user. Those that count travellers
/// take the suppression threshold: run them through [`analyst_query`].
pub const ANALYST_QUERIES: &[(&str, &str)] = &[
    ("arrivals_by_port", include_str!("../../../schemas/clickhouse/queries/arrivals_by_port.sql")),
    ("triage_by_port", include_str!("../../../schemas/clickhouse/queries/triage_by_port.sql")),
    ("arrivals_by_home_province", include_str!("../../../schemas/clickhouse/queries/arrivals_by_home_province.sql")),
    ("rejections_by_code", include_str!("../../../schemas/clickhouse/queries/rejections_by_code.sql")),
    ("verification_by_status", include_str!("../../../schemas/clickhouse/queries/verification_by_status.sql")),
];

#[derive(Debug, thiserror::Error)]
pub enum MigrationError {
    #[error("migration {version} ({name}) was applied with checksum {applied} but the file now has {current}: add a new migration instead of editing an applied one")]
    Edited { version: u32, name: &'static str, applied: String, current: String },
    #[error("migration {version} ({name}), statement {statement}: {source}")]
    Statement { version: u32, name: &'static str, statement: usize, source: clickhouse::error::Error },
    #[error("migrations table: {0}")]
    Bookkeeping(#[from] clickhouse::error::Error),
}

#[derive(Row, Deserialize)]
struct Applied {
    version: u32,
    checksum: String,
}

/// Splits a migration into statements: `;` at the end of a line ends one.
pub fn statements(sql: &str) -> Vec<&str> {
    sql.split(";\n")
        .map(str::trim)
        .map(|s| s.trim_end_matches(';'))
        .filter(|s| s.lines().any(|l| !l.trim().is_empty() && !l.trim_start().starts_with("--")))
        .collect()
}

fn checksum(sql: &str) -> String {
    format!("{:x}", Sha256::digest(sql.as_bytes()))
}

/// Applies every migration not yet applied. Returns the names of those it applied.
pub async fn migrate(client: &Client) -> Result<Vec<&'static str>, MigrationError> {
    client.query("CREATE DATABASE IF NOT EXISTS ehac").execute().await?;
    client
        .query("CREATE TABLE IF NOT EXISTS ehac.schema_migrations (version UInt32, name String, checksum String, applied_at DateTime('UTC') DEFAULT now()) ENGINE = MergeTree ORDER BY version")
        .execute()
        .await?;
    let applied: Vec<Applied> = client.query("SELECT version, checksum FROM ehac.schema_migrations").fetch_all().await?;
    let mut done = Vec::new();
    for m in MIGRATIONS {
        let current = checksum(m.sql);
        if let Some(a) = applied.iter().find(|a| a.version == m.version) {
            if a.checksum != current {
                return Err(MigrationError::Edited { version: m.version, name: m.name, applied: a.checksum.clone(), current });
            }
            continue;
        }
        for (i, statement) in statements(m.sql).into_iter().enumerate() {
            client.query(statement).execute().await.map_err(|source| MigrationError::Statement {
                version: m.version,
                name: m.name,
                statement: i + 1,
                source,
            })?;
        }
        client
            .query("INSERT INTO ehac.schema_migrations (version, name, checksum) VALUES (?, ?, ?)")
            .bind(m.version)
            .bind(m.name)
            .bind(&current)
            .execute()
            .await?;
        tracing::info!(version = m.version, name = m.name, "migration applied");
        done.push(m.name);
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_split_on_line_ending_semicolons_and_skip_comment_only_chunks() {
        let sql = "-- header\nCREATE DATABASE x;\n\n-- a comment; with a semicolon\nCREATE TABLE x.t (a String COMMENT 'a;b') ENGINE = Log;\n-- trailing\n";
        assert_eq!(
            statements(sql),
            vec!["-- header\nCREATE DATABASE x", "-- a comment; with a semicolon\nCREATE TABLE x.t (a String COMMENT 'a;b') ENGINE = Log"]
        );
        assert_eq!(statements(MIGRATIONS[0].sql).len(), 3);
    }
}
