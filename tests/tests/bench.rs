//! `ehac bench surge`, small: every phase runs against real servers (broker and ClickHouse
//! ceilings, sink x1 and x2, the Python peer, the front-door sweeps of single requests and of
//! batches, our load generator against oha, the surge through the pipeline) and the JSON
//! report carries the fields BENCHMARKS.md and the issue name, with the PNG plots beside it. The
//! figures of a run this small mean nothing; what is checked is that each phase moved exactly
//! what it was given and that the surge lost and duplicated nothing. The services run as
//! processes: build them first (`cargo build --bins`, which deploy/local/test.sh does).

use ehac_proving::bench::{self, SurgeArgs};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_surge_benchmark_runs_every_phase_and_reports_each_figure() {
    // target/debug/deps/bench-<hash> -> target/debug, where cargo puts the service binaries.
    let bin_dir = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    assert!(bin_dir.join("ehac-sink").is_file(), "service binaries missing in {}: run cargo build --bins first", bin_dir.display());
    std::env::set_var("EHAC_BIN_DIR", &bin_dir);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("surge.json");
    let args = SurgeArgs {
        dir: dir.path().join("run"),
        out: Some(out.clone()),
        markdown: None,
        partitions: 4,
        baseline_rate: 200.0,
        surge_factor: 5.0,
        surge_secs: 3.0,
        baseline_secs: 2.0,
        concurrency: 64,
        enrichers: 1,
        sinks: 1,
        back_office_nice: 10,
        ceiling_count: 3_000,
        sink_instances: vec![1, 2],
        sweep_rates: vec![200.0, 400.0],
        sweep_step_secs: 2.0,
        batch_sweep_rates: vec![500.0, 1_000.0],
        batch_size: 50,
        cross_check_rate: 300.0,
        cross_check_secs: 2.0,
        access_cost_rate: 300.0,
        access_cost_secs: 2.0,
        access_cost_rounds: 1,
        no_peer: false,
        seed: 7,
    };
    let report = bench::surge_bench(args).await.expect("the benchmark runs");

    assert_eq!(report.sent, 2 * 400 + 3_000);
    assert!(report.accepted > 3_500, "most declarations are valid: {}", report.accepted);
    assert_eq!(report.accepted + report.refused + report.failed, report.sent);
    assert_eq!((report.lost, report.duplicated), (0, 0));
    assert_eq!(report.stored + report.rejected, report.accepted);
    assert!(report.ack_p50_ms > 0.0 && report.ack_p50_ms <= report.ack_p99_ms && report.ack_p99_ms <= report.ack_p999_ms);
    assert!(report.e2e_rows_per_s > 0.0);
    // Measured from the last request to the last row, within the drain's timeout and the run.
    assert!(
        report.drain_seconds > 0.0 && report.drain_seconds < 900.0 && report.drain_seconds < report.wall_seconds,
        "drain {} s of a {} s run",
        report.drain_seconds,
        report.wall_seconds
    );
    for process in ["gateway", "enricher-0", "sink-0", "kafka", "clickhouse-server", "loadgen"] {
        let used = &report.services[process];
        assert!(used.cpu_seconds > 0.0 && used.peak_rss_mib > 0.0, "{process}: {used:?}");
    }

    let c = &report.ceilings;
    assert_eq!(c.broker.messages, 3_000);
    assert!(c.broker_produce_per_s > 0.0 && c.broker_consume_per_s > 0.0);
    assert_eq!(c.clickhouse_bulk.rows, 3_000);
    assert_eq!(c.sink.iter().map(|r| (r.instances, r.rows)).collect::<Vec<_>>(), vec![(1, 3_000), (2, 3_000)]);
    let peer = c.peer.as_ref().expect("the peer ran");
    assert_eq!(peer.rows, 3_000);
    assert!(peer.cpu_seconds > 0.0);
    let sweep = report.front_door.as_ref().expect("the sweep ran");
    assert!(!sweep.steps.is_empty() && sweep.steps[0].accepted_rate > 0.0);
    assert_eq!(report.front_door_max_rate_p99_10ms, Some(sweep.max_rate_within_limit));
    for step in &sweep.steps {
        assert!(step.loadgen_cpu_us_per_request > 0.0 && step.loadgen_to_gateway_cpu > 0.0, "{step:?}");
    }
    let batch_sweep = report.batch_front_door.as_ref().expect("the batch sweep ran");
    assert_eq!(batch_sweep.batch, 50);
    assert!(!batch_sweep.steps.is_empty() && batch_sweep.steps[0].accepted_rate > 0.0, "{batch_sweep:?}");
    assert_eq!(report.batch_front_door_max_rate_p99_10ms, Some(batch_sweep.max_rate_within_limit));

    // Cost per declaration: the pipeline's sum is every process but the load generator.
    let pipeline: f64 =
        ["gateway", "enricher-0", "sink-0", "kafka", "clickhouse-server"].iter().map(|p| report.cpu_us_per_declaration[*p]).sum();
    assert!(report.gateway_cpu_us_per_declaration > 0.0 && report.gateway_cpu_us_per_declaration < report.pipeline_cpu_us_per_declaration);
    assert!((report.pipeline_cpu_us_per_declaration - pipeline).abs() < 1e-6 * pipeline, "{:?}", report.cpu_us_per_declaration);
    assert!((report.pipeline_cores_at_20000_per_s - pipeline * 0.02).abs() < 1e-6 * pipeline);
    assert!(report.loadgen_cpu_us_per_request > 0.0 && report.loadgen_to_gateway_cpu > 0.0);

    // Our load generator beside the independent one, on one gateway at one rate.
    let cross = report.ceilings.independent_loadgen.as_ref().expect("the cross-check ran");
    assert_eq!(cross.ours.requests, 600);
    assert!(cross.ours.accepted_rate > 0.0 && cross.ours.ack_p99_ms >= cross.ours.ack_p50_ms && cross.ours.cpu_us_per_request > 0.0);
    match (ehac_proving::bench::independent::find_oha(), &cross.independent) {
        (Some(_), Some(oha)) => {
            assert!(oha.requests > 0 && oha.accepted_rate > 0.0, "{oha:?}");
            assert!(oha.ack_p50_ms > 0.0 && oha.ack_p99_ms >= oha.ack_p50_ms && oha.cpu_us_per_request > 0.0, "{oha:?}");
        }
        (None, None) => assert!(cross.missing.as_deref().is_some_and(|m| m.contains("oha"))),
        (found, ran) => panic!("oha found at {found:?} but its figures are {ran:?}"),
    }

    // The per-second series and the plots drawn from them.
    let offered: u64 = report.series.load.iter().map(|s| s.offered).sum();
    assert_eq!(offered, report.sent);
    assert_eq!(report.series.load.iter().map(|s| s.accepted).sum::<u64>(), report.accepted);
    assert!(!report.series.back_office.is_empty() && report.series.rows.len() > 1);
    assert!(report.series.back_office.iter().all(|s| s.cores.len() == report.series.processes.len()));
    let names: Vec<String> = report.plots.iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["surge-rate.png", "surge-latency.png", "surge-lag.png", "surge-rows.png", "surge-cpu.png"]);
    for plot in &report.plots {
        assert_eq!(plot.parent(), out.parent(), "plots go beside the JSON");
        let png = std::fs::read(plot).unwrap();
        assert!(png.len() > 1_000 && png.starts_with(b"\x89PNG\r\n\x1a\n"), "{} is not a PNG", plot.display());
    }

    let cost = report.access_cost.as_ref().expect("the access cost ran");
    assert_eq!(cost.runs.len(), 3);
    for run in &cost.runs {
        assert!(run.accepted > 500 && run.gateway_cpu_us_per_accepted > 0.0, "{run:?}");
    }
    assert_eq!(report.targets.len(), 8, "{:#?}", report.targets);

    let tables = bench::markdown(&report);
    assert!(
        tables.contains("| (d) our sink x2 |")
            && tables.contains("| front door alone, single requests, offered |")
            && tables.contains("| front door alone, batches of 50, offered |")
            && tables.contains("| **pipeline** (all but loadgen) |")
            && tables.contains("| the signed pass costs |"),
        "{tables}"
    );

    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(&out).unwrap()).unwrap();
    for key in [
        "offered_rate",
        "accepted",
        "ack_p50_ms",
        "ack_p99_ms",
        "ack_p999_ms",
        "e2e_rows_per_s",
        "drain_seconds",
        "stored",
        "lost",
        "duplicated",
    ] {
        assert!(json[key].is_number(), "{key} missing from the JSON report");
    }
    for key in
        ["gateway_cpu_us_per_declaration", "pipeline_cpu_us_per_declaration", "pipeline_cores_at_20000_per_s", "loadgen_to_gateway_cpu"]
    {
        let value = json[key].as_f64().unwrap_or(f64::NAN);
        assert!(value.is_finite() && value > 0.0, "{key} is {} in the JSON report", json[key]);
    }
    // The highest offered rate whose p99 stayed within the limit; 0 on a loaded machine where
    // no step did.
    for (key, sweep) in [("front_door_max_rate_p99_10ms", sweep), ("batch_front_door_max_rate_p99_10ms", batch_sweep)] {
        let within = sweep.steps.iter().filter(|s| s.ack_p99_ms <= sweep.p99_limit_ms).map(|s| s.offered_rate).fold(0.0, f64::max);
        assert_eq!(json[key].as_f64(), Some(within), "{key} in the JSON report, steps {:?}", sweep.steps);
    }
    let ours = &json["ceilings"]["independent_loadgen"]["ours"];
    for key in ["accepted_rate", "ack_p50_ms", "ack_p99_ms", "cpu_us_per_request", "gateway_cpu_us_per_request"] {
        let value = ours[key].as_f64().unwrap_or(f64::NAN);
        assert!(value.is_finite() && value > 0.0, "ceilings.independent_loadgen.ours.{key} is {}", ours[key]);
    }
    for key in
        ["broker_produce_per_s", "broker_consume_per_s", "clickhouse_bulk_rows_per_s", "sink_rows_per_s", "peer", "independent_loadgen"]
    {
        assert!(!json["ceilings"][key].is_null(), "ceilings.{key} missing from the JSON report");
    }
}
