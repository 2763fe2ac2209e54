//! Faults on a cluster, small: `ehac cluster-test` with every fault, a few thousand
//! declarations each at a few hundred a second (the command's defaults are larger). Three
//! KRaft nodes (RF 3, min ISR 2), ZooKeeper and two ClickHouse 18.16 replicas of one shard; two
//! gateways, two transactional enrichers, two sinks and lagwatch as processes. Each fault must
//! end with every accepted declaration on each replica's own tables, once, counted without
//! FINAL. The services run as processes: build them first (`cargo build --bins`).

use ehac_proving::cluster_test::{self, ClusterTestArgs, Fault};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cluster_fault_under_load_loses_and_duplicates_nothing_on_either_replica() {
    // cargo puts the service binaries in target/debug, above this test's deps/ directory.
    let deps = std::env::current_exe().unwrap().parent().unwrap().to_path_buf();
    std::env::set_var("EHAC_BIN_DIR", deps.parent().unwrap());
    let dir = ehac_tests::test_dir(Some("cluster-faults"));
    let args = ClusterTestArgs {
        declarations: 2_000,
        rate: 300.0,
        faults: vec![],
        fault_at_secs: 2,
        outage_secs: 8,
        partition_secs: 15,
        zookeeper_outage_secs: 30,
        patience_secs: 90,
        dir: Some(dir.clone()),
        out: Some(dir.with_extension("json")),
    };
    let reports = cluster_test::run(&args).await.expect("the cluster starts and every fault runs");
    for report in &reports {
        eprintln!("{}", cluster_test::line(report));
    }
    assert_eq!(reports.len(), Fault::ALL.len(), "every fault ran (the run stops at the first that fails)");
    for report in &reports {
        assert!(report.passed(), "{}", cluster_test::line(report));
    }
    let orphaned = reports.iter().find(|r| r.fault == Fault::GatewaySpoolOrphaned).unwrap();
    assert!(orphaned.drained_by_cli > 0, "the orphaned spool held declarations and `ehac spool drain` sent them");
    assert!(reports.iter().all(|r| r.replicas.iter().all(|c| c.lost == 0 && c.duplicated == 0)));
    let _ = std::fs::remove_dir_all(&dir);
}
