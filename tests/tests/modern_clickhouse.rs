//! The schema and the analysts' queries must run on modern ClickHouse too, not only on the
//! 18.16 server this machine has: chdb (modern ClickHouse, in-process) checks them.

use std::process::Command;

/// Runs `tests/<script> schemas/clickhouse` and checks it succeeded and printed `summary`.
fn check_with_chdb(script: &str, summary: &str) {
    let script = format!("{}/{script}", env!("CARGO_MANIFEST_DIR"));
    let schemas = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/clickhouse");
    let output = Command::new("python3").arg(&script).arg(schemas).output().expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{script} failed (pip install chdb-core if it is missing):\n{stdout}\n{stderr}");
    assert!(stdout.contains(summary), "{stdout}");
}

#[test]
fn migrations_and_analyst_queries_run_on_modern_clickhouse() {
    check_with_chdb("chdb_check.py", "checked 5 migration(s), 18 grant(s) and 5 query(ies) on ClickHouse 2");
}

/// The cluster baseline and the later cluster migrations give the schema of every migration on
/// modern ClickHouse too (chdb has no ZooKeeper: the script swaps the replicated and
/// Distributed engines for plain and Merge ones and says so).
#[test]
fn the_cluster_baseline_equals_the_migrated_schema_on_modern_clickhouse() {
    check_with_chdb(
        "chdb_cluster_check.py",
        "checked the cluster baseline: 19 table(s) equal to the 5 migrations, 5 query(ies) on ClickHouse 2",
    );
}

/// access.sql enforced by modern ClickHouse itself (issue 14): the writer inserts into both
/// databases and reads its positions but is refused identity (Code 497); the analyst is refused
/// the identity database, by JOIN and IN too, and runs every standard query; the investigator
/// reads identity; the reconciler reads NIK and birth date only. chdb cannot log in as another
/// user, so the script runs each query through a view owned by the user (SQL SECURITY DEFINER).
#[test]
fn access_sql_is_enforced_user_by_user_on_modern_clickhouse() {
    check_with_chdb("chdb_access_check.py", "enforced 31 access check(s) for 5 user(s) on ClickHouse 2");
}
