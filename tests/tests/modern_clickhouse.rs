//! Checks chdb (modern ClickHouse in process) makes of what the stack's server cannot show:
//! access.sql applied as the SQL production runs (the dev server gets it as users.xml), and the
//! cluster baseline, whose replicated tables only 18.16 can run here, against the migrations.
//! Who may read what is tested on real logins to the 26.9 server (personal_data.rs).

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
    check_with_chdb("chdb_check.py", "checked 12 migration(s), 32 grant(s) and 5 query(ies) on ClickHouse 2");
}

/// The cluster baseline and the later cluster migrations give the schema of every migration on
/// modern ClickHouse too (chdb has no ZooKeeper: the script swaps the replicated and
/// Distributed engines for plain and Merge ones and says so).
#[test]
fn the_cluster_baseline_equals_the_migrated_schema_on_modern_clickhouse() {
    check_with_chdb(
        "chdb_cluster_check.py",
        "checked the cluster baseline: 37 table(s) equal to the 12 migrations (but the 1 refreshable view(s)), 5 query(ies) on ClickHouse 2",
    );
}
