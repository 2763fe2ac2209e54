//! ClickHouse: the client every service uses and the schema migrations `ehac migrate` applies.
//!
//! Migrations are the `.sql` files in `schemas/clickhouse/migrations/`, compiled in, applied in
//! order, each recorded in `ehac.schema_migrations` with a checksum. Applying them again does
//! nothing; an applied migration whose file changed since is an error, never silently re-run.
//!
//! On a cluster (`--clickhouse-cluster NAME`) the same runner runs its DDL `ON CLUSTER`. A fresh
//! cluster starts from `schemas/clickhouse/cluster/baseline.sql`, the schema after the last
//! migration it holds ([`CLUSTER_BASELINE_VERSION`]), recorded as those versions with their
//! files' checksums; every later migration carries its cluster form beside it. Tables writers
//! fill are `<name>_local` (replicated) there, read through Distributed tables named as on a
//! single server: [`write_table`] says which one to insert into.

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
    /// The same change on a cluster (`schemas/clickhouse/cluster/NNNN_name.sql`: `ON CLUSTER
    /// ${CLUSTER}`, replicated engines, `_local` and Distributed tables altered alike). None for
    /// the migrations the cluster baseline holds.
    pub cluster_sql: Option<&'static str>,
}

pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "0001_declarations",
        sql: include_str!("../../../schemas/clickhouse/migrations/0001_declarations.sql"),
        cluster_sql: None,
    },
    Migration {
        version: 2,
        name: "0002_verification",
        sql: include_str!("../../../schemas/clickhouse/migrations/0002_verification.sql"),
        cluster_sql: None,
    },
    Migration {
        version: 3,
        name: "0003_exactly_once",
        sql: include_str!("../../../schemas/clickhouse/migrations/0003_exactly_once.sql"),
        cluster_sql: None,
    },
    Migration {
        version: 4,
        name: "0004_personal_data",
        sql: include_str!("../../../schemas/clickhouse/migrations/0004_personal_data.sql"),
        cluster_sql: None,
    },
    Migration {
        version: 5,
        name: "0005_home_district",
        sql: include_str!("../../../schemas/clickhouse/migrations/0005_home_district.sql"),
        cluster_sql: Some(include_str!("../../../schemas/clickhouse/cluster/0005_home_district.sql")),
    },
    Migration {
        version: 6,
        name: "0006_deduplication_window",
        sql: include_str!("../../../schemas/clickhouse/migrations/0006_deduplication_window.sql"),
        cluster_sql: Some(include_str!("../../../schemas/clickhouse/cluster/0006_deduplication_window.sql")),
    },
    Migration {
        version: 7,
        name: "0007_analyst_views",
        sql: include_str!("../../../schemas/clickhouse/migrations/0007_analyst_views.sql"),
        cluster_sql: Some(include_str!("../../../schemas/clickhouse/cluster/0007_analyst_views.sql")),
    },
    Migration {
        version: 8,
        name: "0008_identity_reads",
        sql: include_str!("../../../schemas/clickhouse/migrations/0008_identity_reads.sql"),
        cluster_sql: Some(include_str!("../../../schemas/clickhouse/cluster/0008_identity_reads.sql")),
    },
    Migration {
        version: 9,
        name: "0009_analyst_dashboard",
        sql: include_str!("../../../schemas/clickhouse/migrations/0009_analyst_dashboard.sql"),
        cluster_sql: Some(include_str!("../../../schemas/clickhouse/cluster/0009_analyst_dashboard.sql")),
    },
    Migration {
        version: 10,
        name: "0010_microdata_groups",
        sql: include_str!("../../../schemas/clickhouse/migrations/0010_microdata_groups.sql"),
        cluster_sql: Some(include_str!("../../../schemas/clickhouse/cluster/0010_microdata_groups.sql")),
    },
    Migration {
        version: 11,
        name: "0011_microdata_published",
        sql: include_str!("../../../schemas/clickhouse/migrations/0011_microdata_published.sql"),
        cluster_sql: Some(include_str!("../../../schemas/clickhouse/cluster/0011_microdata_published.sql")),
    },
    Migration {
        version: 12,
        name: "0012_verification_from_the_rollup",
        sql: include_str!("../../../schemas/clickhouse/migrations/0012_verification_from_the_rollup.sql"),
        cluster_sql: Some(include_str!("../../../schemas/clickhouse/cluster/0012_verification_from_the_rollup.sql")),
    },
];

/// A fresh cluster's schema: migrations 1 to [`CLUSTER_BASELINE_VERSION`] as they end, created
/// at once (their copy steps have nothing to copy on a fresh cluster).
pub const CLUSTER_BASELINE: &str = include_str!("../../../schemas/clickhouse/cluster/baseline.sql");

/// The last migration [`CLUSTER_BASELINE`] holds.
pub const CLUSTER_BASELINE_VERSION: u32 = 4;

/// The table a writer inserts into: `table` itself on a single server; on a cluster its
/// replicated `table_local` on the server the writer connects to. Never the Distributed
/// table: its insert answers before the rows are even sent to their shard.
pub fn write_table(cluster: Option<&str>, table: &str) -> String {
    match cluster {
        None => table.to_owned(),
        Some(_) => format!("{table}_local"),
    }
}

/// A cluster form of a migration (or the baseline) with the cluster's name filled in.
pub fn on_cluster(sql: &str, cluster: &str) -> String {
    sql.replace("${CLUSTER}", cluster)
}

/// What the connected server can do that the services use, read once from its version: the
/// one place where ClickHouse 18.16 (the replicated test cluster) and a current server differ.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerFeatures {
    /// `version()`, e.g. `26.9.2.1`.
    pub version: String,
    /// `insert_deduplication_token` (22.2 on): a retried insert is dropped by its token,
    /// whatever its bytes. Without it only byte-identical blocks of replicated tables are.
    pub deduplication_tokens: bool,
    /// `async_insert` (21.11 on), which a current server may have on by default.
    pub async_insert: bool,
}

impl ServerFeatures {
    pub fn from_version(version: &str) -> ServerFeatures {
        let mut parts = version.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        let at_least = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
        ServerFeatures { version: version.to_owned(), deduplication_tokens: at_least >= (22, 2), async_insert: at_least >= (21, 11) }
    }

    /// Asks the server.
    pub async fn detect(client: &Client) -> clickhouse::error::Result<ServerFeatures> {
        let version: String = client.query("SELECT version()").fetch_one().await?;
        Ok(ServerFeatures::from_version(&version))
    }
}

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
    #[error("migration {version} ({name}) has no cluster form: add schemas/clickhouse/cluster/{name}.sql")]
    NoClusterForm { version: u32, name: &'static str },
    #[error("cluster name {0:?}: letters, digits and '_' only")]
    ClusterName(String),
    #[error("the cluster baseline, statement {statement}: {source}")]
    Baseline { statement: usize, source: clickhouse::error::Error },
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

/// Applies every migration not yet applied, on one server (`cluster` None) or `ON CLUSTER`.
/// Returns the names of those it applied.
pub async fn migrate(client: &Client, cluster: Option<&str>) -> Result<Vec<&'static str>, MigrationError> {
    migrate_these(client, cluster, MIGRATIONS).await
}

/// [`migrate`] with a list of migrations of one's own (tests add one after the baseline).
pub async fn migrate_these(client: &Client, cluster: Option<&str>, migrations: &[Migration]) -> Result<Vec<&'static str>, MigrationError> {
    if let Some(name) = cluster {
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(MigrationError::ClusterName(name.to_owned()));
        }
    }
    // ON CLUSTER answers with a row per host as each finishes; a host's failure can come after
    // the first rows, which only a buffered answer turns into an HTTP error.
    let client = client.clone().with_setting("wait_end_of_query", "1");
    let client = &client;
    match cluster {
        None => {
            idempotent(client, "CREATE DATABASE IF NOT EXISTS ehac").await?;
            idempotent(client, "CREATE TABLE IF NOT EXISTS ehac.schema_migrations (version UInt32, name String, checksum String, applied_at DateTime('UTC') DEFAULT now()) ENGINE = MergeTree ORDER BY version").await?;
        }
        Some(cluster) => {
            idempotent(client, &format!("CREATE DATABASE IF NOT EXISTS ehac ON CLUSTER {cluster}")).await?;
            // One replica per server of every shard, under one ZooKeeper path: whichever server
            // a runner asks knows what was applied.
            idempotent(client, &format!("CREATE TABLE IF NOT EXISTS ehac.schema_migrations ON CLUSTER {cluster} (version UInt32, name String, checksum String, applied_at DateTime('UTC') DEFAULT now()) ENGINE = ReplicatedMergeTree('/clickhouse/tables/all/{{database}}/{{table}}', '{{shard}}-{{replica}}') ORDER BY version")).await?;
        }
    }
    let mut applied: Vec<Applied> = client.query("SELECT version, checksum FROM ehac.schema_migrations").fetch_all().await?;
    let mut done = Vec::new();
    if let Some(cluster) = cluster {
        let missing: Vec<&Migration> = migrations
            .iter()
            .filter(|m| m.version <= CLUSTER_BASELINE_VERSION && !applied.iter().any(|a| a.version == m.version))
            .collect();
        if !missing.is_empty() {
            // Every statement is IF NOT EXISTS: a baseline cut short (or recorded in part) is
            // completed by the next run.
            for (i, statement) in statements(&on_cluster(CLUSTER_BASELINE, cluster)).into_iter().enumerate() {
                idempotent(client, statement).await.map_err(|source| MigrationError::Baseline { statement: i + 1, source })?;
            }
            for m in missing {
                record(client, m).await?;
                applied.push(Applied { version: m.version, checksum: checksum(m.sql) });
                done.push(m.name);
            }
            tracing::info!(cluster, through_version = CLUSTER_BASELINE_VERSION, "cluster baseline applied");
        }
    }
    for m in migrations {
        let current = checksum(m.sql);
        if let Some(a) = applied.iter().find(|a| a.version == m.version) {
            if a.checksum != current {
                return Err(MigrationError::Edited { version: m.version, name: m.name, applied: a.checksum.clone(), current });
            }
            continue;
        }
        let sql = match cluster {
            None => m.sql.to_owned(),
            Some(cluster) => on_cluster(m.cluster_sql.ok_or(MigrationError::NoClusterForm { version: m.version, name: m.name })?, cluster),
        };
        for (i, statement) in statements(&sql).into_iter().enumerate() {
            client.query(statement).execute().await.map_err(|source| MigrationError::Statement {
                version: m.version,
                name: m.name,
                statement: i + 1,
                source,
            })?;
        }
        record(client, m).await?;
        tracing::info!(version = m.version, name = m.name, "migration applied");
        done.push(m.name);
    }
    Ok(done)
}

/// The refreshable view that rebuilds the analysts' microdata (migration 0011; single servers).
pub const MICRODATA_PUBLISHER: &str = "ehac.microdata_published";

/// Rebuilds the analysts' microdata now and waits for it, instead of for its schedule (tests,
/// the bench, an operator after a backfill). Needs `SYSTEM VIEWS` on it (the migrator has it).
pub async fn publish_microdata(client: &Client) -> clickhouse::error::Result<()> {
    client.query(&format!("SYSTEM REFRESH VIEW {MICRODATA_PUBLISHER}")).execute().await?;
    client.query(&format!("SYSTEM WAIT VIEW {MICRODATA_PUBLISHER}")).execute().await
}

/// Runs a statement that may run twice (IF NOT EXISTS): a connection lost before the answer
/// (a server closing an idle connection as the request arrives, a replica restarting) is tried
/// again, twice at most, instead of failing the whole migration.
async fn idempotent(client: &Client, sql: &str) -> clickhouse::error::Result<()> {
    let mut attempt = 1;
    loop {
        match client.query(sql).execute().await {
            Err(clickhouse::error::Error::Network(e)) if attempt < 3 => {
                tracing::warn!(attempt, error = %e, "connection lost before ClickHouse answered; trying the statement again");
                tokio::time::sleep(std::time::Duration::from_secs(attempt)).await;
                attempt += 1;
            }
            result => return result,
        }
    }
}

/// Records `m` as applied, with the checksum of its single-server file (the cluster baseline
/// stands for those files, so an edit of one is still caught on a cluster).
async fn record(client: &Client, m: &Migration) -> Result<(), MigrationError> {
    client
        .query("INSERT INTO ehac.schema_migrations (version, name, checksum) VALUES (?, ?, ?)")
        .bind(m.version)
        .bind(m.name)
        .bind(checksum(m.sql))
        .execute()
        .await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_follow_the_version() {
        let old = ServerFeatures::from_version("18.16.1");
        assert!(!old.deduplication_tokens && !old.async_insert);
        let current = ServerFeatures::from_version("26.9.2.1");
        assert!(current.deduplication_tokens && current.async_insert);
        assert!(ServerFeatures::from_version("22.2.1.1").deduplication_tokens);
        assert!(!ServerFeatures::from_version("22.1.9").deduplication_tokens);
    }

    #[test]
    fn statements_split_on_line_ending_semicolons_and_skip_comment_only_chunks() {
        let sql = "-- header\nCREATE DATABASE x;\n\n-- a comment; with a semicolon\nCREATE TABLE x.t (a String COMMENT 'a;b') ENGINE = Log;\n-- trailing\n";
        assert_eq!(
            statements(sql),
            vec!["-- header\nCREATE DATABASE x", "-- a comment; with a semicolon\nCREATE TABLE x.t (a String COMMENT 'a;b') ENGINE = Log"]
        );
        assert_eq!(statements(MIGRATIONS[0].sql).len(), 3);
    }

    #[test]
    fn the_cluster_baseline_runs_every_statement_on_the_cluster_and_replicates_every_table_it_fills() {
        let baseline = statements(CLUSTER_BASELINE);
        assert!(baseline.len() >= 20, "{} statements", baseline.len());
        for statement in &baseline {
            assert!(statement.contains("ON CLUSTER ${CLUSTER}"), "not on the cluster: {statement}");
            let local = statement.contains("_local ON CLUSTER");
            let engine = statement.split("ENGINE = ").nth(1).unwrap_or("");
            if local {
                assert!(engine.starts_with("Replicated"), "a table writers fill that is not replicated: {statement}");
            } else if statement.starts_with("CREATE TABLE") || statement.contains("\nCREATE TABLE") {
                assert!(engine.starts_with("Distributed(${CLUSTER}, "), "a table analysts read that is not Distributed: {statement}");
            }
        }
        assert!(MIGRATIONS.iter().filter(|m| m.version <= CLUSTER_BASELINE_VERSION).all(|m| m.cluster_sql.is_none()));
        assert!(
            MIGRATIONS.iter().filter(|m| m.version > CLUSTER_BASELINE_VERSION).all(|m| m.cluster_sql.is_some()),
            "every later migration needs its cluster form"
        );
        assert_eq!(
            on_cluster("ALTER TABLE t ON CLUSTER ${CLUSTER} ADD COLUMN x UInt8", "national"),
            "ALTER TABLE t ON CLUSTER national ADD COLUMN x UInt8"
        );
        assert_eq!(
            (write_table(None, "declarations"), write_table(Some("national"), "declarations")),
            ("declarations".to_owned(), "declarations_local".to_owned())
        );
    }
}
