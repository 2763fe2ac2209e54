//! The schema and the analysts' queries must run on modern ClickHouse too, not only on the
//! 18.16 server this machine has: chdb (modern ClickHouse, in-process) checks them.

use std::process::Command;

#[test]
fn migrations_and_analyst_queries_run_on_modern_clickhouse() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/chdb_check.py");
    let schemas = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/clickhouse");
    let output = Command::new("python3").arg(script).arg(schemas).output().expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "chdb check failed (pip install chdb-core if it is missing):\n{stdout}\n{stderr}");
    assert!(stdout.contains("checked 5 migration(s), 18 grant(s) and 5 query(ies) on ClickHouse 2"), "{stdout}");
}

/// The cluster baseline and the later cluster migrations give the schema of every migration on
/// modern ClickHouse too (chdb has
/// no ZooKeeper: the script swaps the replicated and Distributed engines for plain and Merge
/// ones and says so).
#[test]
fn the_cluster_baseline_equals_the_migrated_schema_on_modern_clickhouse() {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/chdb_cluster_check.py");
    let schemas = concat!(env!("CARGO_MANIFEST_DIR"), "/../schemas/clickhouse");
    let output = Command::new("python3").arg(script).arg(schemas).output().expect("python3 runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "chdb cluster check failed (pip install chdb-core if it is missing):\n{stdout}\n{stderr}");
    assert!(
        stdout.contains("checked the cluster baseline: 19 table(s) equal to the 5 migrations, 5 query(ies) on ClickHouse 2"),
        "{stdout}"
    );
}
