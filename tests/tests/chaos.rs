//! The fault matrix, small: every `ehac chaos` scenario (kill -9 of sink and enricher with
//! dynamic and with static membership, clean and hard broker restarts, a ClickHouse outage, sink
//! scale 1 -> 3 -> 1, poison messages, client retries) on Apache Kafka with a few thousand
//! declarations and short outages, the fault at a seeded random moment (`EHAC_CHAOS_SEED`
//! replays one). Each must end with lost = 0, stuck = 0 and duplicated = 0 counted in ClickHouse,
//! and exactly one Kafka output per raw record. The services run as processes: build them first
//! (`cargo build --bins`, which deploy/local/test.sh does).

use ehac_proving::chaos::{self, ChaosArgs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_fault_ends_with_nothing_lost_and_nothing_duplicated() {
    // target/debug/deps/chaos-<hash> -> target/debug, where cargo puts the service binaries.
    let bin_dir = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    assert!(bin_dir.join("ehac-sink").is_file(), "service binaries missing in {}: run cargo build --bins first", bin_dir.display());
    std::env::set_var("EHAC_BIN_DIR", &bin_dir);
    let dir = tempfile::tempdir().unwrap();
    let args = ChaosArgs {
        dir: dir.path().to_path_buf(),
        count: 2_000,
        rates: vec![500.0],
        seeds: vec![std::env::var("EHAC_CHAOS_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(7)],
        scenarios: Vec::new(),
        partitions: 4,
        broker_outage_secs: 8,
        clickhouse_outage_secs: 12,
        poison_percent: 1.0,
        drain_deadline_secs: 60,
        out: None,
    };
    let results = chaos::run(&args).await.expect("every scenario runs");
    let report: Vec<String> = results.iter().map(chaos::line).collect();
    assert_eq!(results.len(), 9, "{report:#?}");
    for r in &results {
        assert!(r.accepted > 1_900, "most declarations accepted: {}", chaos::line(r));
        assert!(r.passed(), "{}", chaos::line(r));
    }
}
