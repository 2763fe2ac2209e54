//! `ehac bench surge`: the holiday-peak benchmark. On one fresh local stack it measures, in one
//! run, what the machine can do without our services (the broker's raw produce and consume
//! rate, ClickHouse's bulk insert rate, the enricher's rules on one core), our sink with 1, 2
//! and 4 instances, a Python glue-script peer doing the sink's job, and then the surge itself:
//! a baseline, a 10x spike, a baseline, sent open-loop through the gateway while one enricher
//! and one sink (deliberately too few) let lag build and then drain it. Every count is taken
//! in ClickHouse; CPU and memory come from /proc.

pub mod analysts;
pub mod ceilings;
pub mod front_door;
pub mod independent;
pub mod pass;
pub mod plots;
pub mod progress;
mod surge;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use ehac_codec::RAW;
use ehac_devstack::{Server, Stack, StackOptions, Tools};
use ehac_domain::sample::{Flaw, SampleGenerator};
use ehac_domain::{Policy, RawDeclaration, ReferenceData};
use ehac_stream::config::Topics;
use serde::Serialize;

use self::ceilings::{BrokerCeiling, InsertCeiling, PeerRun, SinkRound};
use self::progress::Phase;
use self::surge::SurgeRun;
use crate::services::bin_dir;

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// The holiday-peak surge through the whole pipeline, with the machine's ceilings and a
    /// Python peer measured in the same run.
    Surge(Box<SurgeArgs>),
    /// What one signed pass costs to issue (gateway) and to verify (gate), in CPU time; no servers.
    Pass(pass::PassArgs),
    /// Declarations per second and gateway CPU per declaration, sent one per request and in
    /// batches (`POST /v1/declarations/batch`), on a fresh broker.
    Batch(front_door::BatchCostArgs),
    /// A season of declarations in ClickHouse and every analyst query and dashboard chart timed
    /// as the analyst (p50, p95), beside the same questions of the raw rows.
    Analysts(analysts::AnalystsArgs),
}

#[derive(clap::Args, Debug, Clone)]
pub struct SurgeArgs {
    /// Where the run's servers keep data and the services their logs (wiped first).
    #[arg(long, default_value = ".ehac/bench")]
    pub dir: PathBuf,
    /// Write the report as JSON here too.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the report's tables as Markdown here (what BENCHMARKS.md quotes).
    #[arg(long)]
    pub markdown: Option<PathBuf>,
    #[arg(long, default_value_t = 12)]
    pub partitions: i32,
    /// Declarations per second before and after the spike.
    #[arg(long, default_value_t = 2_000.0)]
    pub baseline_rate: f64,
    /// The spike's rate as a multiple of the baseline.
    #[arg(long, default_value_t = 10.0)]
    pub surge_factor: f64,
    /// Length of the spike.
    #[arg(long, default_value_t = 60.0)]
    pub surge_secs: f64,
    /// Length of the baseline before the spike, and again after it.
    #[arg(long, default_value_t = 15.0)]
    pub baseline_secs: f64,
    /// Most requests in flight from the load generator.
    #[arg(long, default_value_t = 512)]
    pub concurrency: usize,
    /// Enricher processes during the surge (fewer than the partitions on purpose).
    #[arg(long, default_value_t = 1)]
    pub enrichers: usize,
    /// Sink processes during the surge.
    #[arg(long, default_value_t = 1)]
    pub sinks: usize,
    /// Nice value for the back office during the surge (enricher, sink, ClickHouse): on one
    /// shared machine this is how the consumers are under-provisioned and the front door
    /// (gateway, broker) keeps the CPU it needs, as it would on its own hosts. 0 turns it off.
    #[arg(long, default_value_t = 10)]
    pub back_office_nice: i32,
    /// Messages and rows each ceiling moves.
    #[arg(long, default_value_t = 300_000)]
    pub ceiling_count: u64,
    /// Sink instance counts for the scale-out ceiling.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    pub sink_instances: Vec<usize>,
    /// Offered rates of the front-door sweep (a gateway alone on a topic nobody reads), in
    /// steps; it stops after the first step whose ack p99 is over 10 ms. Empty skips it.
    #[arg(long, value_delimiter = ',', default_value = "1000,2000,4000,6000,8000,10000,12000,15000,20000")]
    pub sweep_rates: Vec<f64>,
    /// Seconds per sweep step.
    #[arg(long, default_value_t = 5.0)]
    pub sweep_step_secs: f64,
    /// Offered declarations per second of the batch front-door sweep (`--batch-size` to a
    /// request, to `POST /v1/declarations/batch`), in steps as the single-request sweep.
    /// Empty skips it.
    #[arg(long, value_delimiter = ',', default_value = "5000,10000,20000,40000,60000")]
    pub batch_sweep_rates: Vec<f64>,
    /// Declarations per request in the batch sweep.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Rate of the cross-check of our load generator against an independent one (oha), each
    /// alone on one gateway; 0 skips it.
    #[arg(long, default_value_t = 4_000.0)]
    pub cross_check_rate: f64,
    /// Seconds of load per load generator in that cross-check.
    #[arg(long, default_value_t = 10.0)]
    pub cross_check_secs: f64,
    /// Rate of the front-door cost comparison (anonymous, API keys, API keys + signed pass,
    /// each a gateway alone); 0 skips it.
    #[arg(long, default_value_t = 2_000.0)]
    pub access_cost_rate: f64,
    /// Seconds per variant and round of that comparison.
    #[arg(long, default_value_t = 10.0)]
    pub access_cost_secs: f64,
    /// Rounds of that comparison (the variants alternate within each).
    #[arg(long, default_value_t = 2)]
    pub access_cost_rounds: usize,
    /// Skip the Python peer (it needs python3 with venv and PyPI access).
    #[arg(long)]
    pub no_peer: bool,
    #[arg(long, default_value_t = 2020_12_19)]
    pub seed: u64,
}

#[derive(Debug, Serialize)]
pub struct Ceilings {
    /// (a) The broker alone: the enriched payloads produced and consumed by plain rdkafka clients.
    pub broker: BrokerCeiling,
    pub broker_produce_per_s: f64,
    pub broker_consume_per_s: f64,
    /// (b) ClickHouse alone: one INSERT of a pre-built RowBinary file of the same rows.
    pub clickhouse_bulk: InsertCeiling,
    pub clickhouse_bulk_rows_per_s: f64,
    /// (c) The glue-script peer (Python confluent-kafka + clickhouse-connect) on the same topic.
    pub peer: Option<PeerRun>,
    /// (d) Our sink on the same topic, by number of instances.
    pub sink: Vec<SinkRound>,
    pub sink_rows_per_s: BTreeMap<String, f64>,
    /// The enricher's per-record work (decode, rules, encode) on one core, in this process.
    pub enricher_records_per_s_one_core: f64,
    /// (e) Our load generator and an independent one (oha) at the same rate on one gateway:
    /// their ack latency and what each costs in CPU per request against the gateway.
    pub independent_loadgen: Option<independent::CrossCheck>,
}

#[derive(Debug, Serialize)]
pub struct Target {
    pub name: &'static str,
    pub goal: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Debug, Serialize)]
pub struct Report {
    pub cores: usize,
    /// The broker the run measured, e.g. "Apache Kafka 4.4.0".
    pub broker: String,
    pub partitions: i32,
    /// The spike's offered rate, declarations per second.
    pub offered_rate: f64,
    pub baseline_rate: f64,
    pub surge_seconds: f64,
    pub sent: u64,
    pub accepted: u64,
    pub refused: u64,
    pub failed: u64,
    /// Accepted declarations per second over the whole load.
    pub accepted_rate: f64,
    /// Gateway ack latency during the spike, from each request's scheduled send time.
    pub ack_p50_ms: f64,
    pub ack_p99_ms: f64,
    pub ack_p999_ms: f64,
    pub ack_max_ms: f64,
    /// The same over the whole load.
    pub ack_all_p50_ms: f64,
    pub ack_all_p99_ms: f64,
    pub ack_all_p999_ms: f64,
    /// How late the load generator itself sent (p99), once a connection slot was free.
    pub sender_lateness_p99_ms: f64,
    /// Requests that found every connection slot busy (the gateway answered slower than the
    /// schedule asked for) and waited for one; the wait counts in their latency.
    pub requests_waiting_for_slot: u64,
    /// Accepted declarations answered from the gateway's spool because the broker had not
    /// acknowledged within the latency budget.
    pub spooled: u64,
    pub concurrency: usize,
    pub back_office_nice: i32,
    pub peak_lag_enricher: i64,
    pub peak_lag_sink: i64,
    /// From the last answered request until ClickHouse held every accepted declaration.
    pub drain_seconds: f64,
    /// Rows per second into ClickHouse from the spike's start until everything was stored
    /// (the pipeline is saturated the whole time).
    pub e2e_rows_per_s: f64,
    pub stored: u64,
    pub rejected: u64,
    pub lost: i64,
    pub duplicated: u64,
    /// Per process during the surge: CPU-seconds, CPU-seconds per million accepted, peak RSS.
    /// The load generator's is its CPU while sending.
    pub services: BTreeMap<String, surge::ProcessUse>,
    /// Whole-pipeline cost in the surge, CPU-µs per accepted declaration: each process, the
    /// gateway's, and the sum of all but the load generator (gateway, enricher, sink, broker,
    /// ClickHouse), and that sum as cores at 20,000 declarations/s.
    pub cpu_us_per_declaration: BTreeMap<String, f64>,
    pub gateway_cpu_us_per_declaration: f64,
    pub pipeline_cpu_us_per_declaration: f64,
    pub pipeline_cores_at_20000_per_s: f64,
    /// The load generator's CPU per request in the surge, and over the gateway's.
    pub loadgen_cpu_us_per_request: f64,
    pub loadgen_to_gateway_cpu: f64,
    pub ceilings: Ceilings,
    /// The front door alone, at rising offered rates.
    pub front_door: Option<front_door::Sweep>,
    /// Its highest offered rate with ack p99 <= 10 ms, single requests (null: not run).
    pub front_door_max_rate_p99_10ms: Option<f64>,
    /// The same through the batch endpoint, in declarations per second.
    pub batch_front_door: Option<front_door::Sweep>,
    pub batch_front_door_max_rate_p99_10ms: Option<f64>,
    /// Gateway CPU per accepted declaration without keys, with API keys, and with a pass too.
    pub access_cost: Option<front_door::AccessCost>,
    pub targets: Vec<Target>,
    pub wall_seconds: f64,
    /// The surge second by second (what the plots draw).
    pub series: surge::Series,
    /// The PNG plots written beside the JSON.
    pub plots: Vec<PathBuf>,
}

/// Raw declarations as the gateway writes them, for the enricher's one-core figure.
fn raw_payloads(count: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut generator = SampleGenerator::new(seed);
    let now = chrono::Utc::now();
    (0..count)
        .map(|i| {
            let flaw = if i % 100 == 1 { Flaw::Reference } else { Flaw::None };
            let raw = RawDeclaration {
                declaration_id: format!("bench-{i}"),
                received_at_ms: now.timestamp_millis(),
                gateway_version: "bench".into(),
                form: generator.declaration(now, "bench", flaw),
            };
            RAW.encode(&raw).expect("raw declarations encode")
        })
        .collect()
}

/// Runs the enricher's pure per-record path (ehac_enricher::classify + encode) on one thread
/// for about three seconds, after one warm-up pass.
fn enricher_one_core(payloads: &[Vec<u8>]) -> f64 {
    let reference = ReferenceData::embedded();
    let policy = Policy::default();
    let pass = || {
        for (i, payload) in payloads.iter().enumerate() {
            let output = ehac_enricher::classify("raw", 0, i as i64, payload, reference, &policy, 0).encode();
            std::hint::black_box(output.payload.len());
        }
    };
    // One unmeasured pass: the allocator and caches warm up, as in criterion's warm-up.
    pass();
    let started = Instant::now();
    let mut records = 0u64;
    while started.elapsed() < Duration::from_secs(3) {
        pass();
        records += payloads.len() as u64;
    }
    records as f64 / started.elapsed().as_secs_f64()
}

pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Surge(args) => {
            let report = surge_bench(*args).await?;
            anyhow::ensure!(report.lost == 0 && report.duplicated == 0, "the surge lost or duplicated declarations");
        }
        BenchCommand::Pass(args) => {
            let report = tokio::task::spawn_blocking(move || pass::run(&args).map(|r| (r, args))).await??;
            let (report, args) = report;
            print!("{}", report.markdown());
            println!("{}", report.line());
            if let Some(out) = &args.out {
                std::fs::write(out, serde_json::to_vec_pretty(&report)?)?;
            }
        }
        BenchCommand::Analysts(args) => {
            let report = analysts::run(&args).await?;
            let markdown = report.markdown();
            print!("{markdown}");
            if let Some(path) = &args.markdown {
                std::fs::write(path, &markdown)?;
            }
        }
        BenchCommand::Batch(args) => {
            let runs = front_door::batch_cost(&args).await?;
            let mean = |batch: usize, value: fn(&front_door::BatchRun) -> f64| {
                let values: Vec<f64> = runs.iter().filter(|r| r.batch == batch).map(value).collect();
                values.iter().sum::<f64>() / values.len().max(1) as f64
            };
            let (single_rate, batch_rate) = (mean(1, |r| r.declarations_per_s), mean(args.batch, |r| r.declarations_per_s));
            let (single_cpu, batch_cpu) =
                (mean(1, |r| r.gateway_cpu_us_per_declaration), mean(args.batch, |r| r.gateway_cpu_us_per_declaration));
            println!(
                "BATCH single: {single_rate:.0} declarations/s {single_cpu:.1} CPU-us/declaration; batch {}: {batch_rate:.0} declarations/s {batch_cpu:.1} CPU-us/declaration; CPU ratio single/batch {:.2}",
                args.batch,
                single_cpu / batch_cpu.max(1e-9)
            );
            anyhow::ensure!(runs.iter().all(|r| r.failed == 0), "declarations failed: {runs:?}");
        }
    }
    Ok(())
}

pub async fn surge_bench(args: SurgeArgs) -> anyhow::Result<Report> {
    let wall = Instant::now();
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let dir = args.dir.canonicalize()?;
    let bin = bin_dir()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let broker_name = format!("Apache Kafka {}", ehac_devstack::kafka_version());
    println!("== e-HAC surge benchmark: {cores} cores, {broker_name}, {} partitions", args.partitions);

    let phase = Phase::start("enricher rules, one core");
    let raw = tokio::task::spawn_blocking(move || raw_payloads(10_000, 7)).await?;
    let enricher_per_core = tokio::task::spawn_blocking(move || enricher_one_core(&raw)).await?;
    phase.done(format!("{enricher_per_core:.0} records/s (decode, validate, enrich, encode)"));

    let phase = Phase::start("servers");
    let tools = Tools::find_or_install()?;
    let options = StackOptions::ephemeral(dir.join("stack"))?;
    let stack = Stack::start(&tools, options).await.context("starting broker and ClickHouse")?;
    stack.provision(&Topics::default(), args.partitions).await?;
    ceilings::create_topics(&stack.kafka_brokers(), args.partitions).await?;
    phase.done(format!("kafka {} ({broker_name}), clickhouse {}", stack.kafka_brokers(), stack.clickhouse_url()));

    let phase = Phase::start("payloads");
    let (count, seed) = (args.ceiling_count, args.seed);
    let payloads = tokio::task::spawn_blocking(move || ceilings::enriched_payloads(count, seed)).await?;
    phase.done(format!("{} enriched declarations", payloads.len()));

    let phase = Phase::start("(a) broker produce/consume");
    let broker_pid = stack.pid(Server::Broker).context("the broker's pid")?;
    let broker = ceilings::broker(&stack.kafka_brokers(), broker_pid, &payloads, &phase).await?;
    drop(payloads);
    phase.done(format!(
        "produce {:.0}/s, consume {:.0}/s ({:.0} bytes/message); broker CPU-s per million: {:.1} produced, {:.1} consumed",
        broker.produce_per_s,
        broker.consume_per_s,
        broker.bytes_per_message,
        broker.broker_cpu_seconds_per_million_produced,
        broker.broker_cpu_seconds_per_million_consumed
    ));

    let http = stack.clickhouse_http(ehac_devstack::WarehouseUser::Migrator);
    let url = stack.clickhouse_url();
    let rowbinary = dir.join("declarations.rowbinary");
    let mut sink_rounds = Vec::new();
    for &instances in &args.sink_instances {
        let phase = Phase::start(&format!("(d) sink x{instances}"));
        let round = ceilings::sink_round(&stack, &bin, &dir, instances, args.ceiling_count, &phase).await?;
        if !rowbinary.exists() {
            ceilings::export_rowbinary(&http, &url, &rowbinary).await?;
        }
        ceilings::truncate(&http, &url).await?;
        phase.done(format!(
            "{:.0} rows/s, {:.1} CPU-s per million, peak RSS {:.0} MiB",
            round.rows_per_s, round.cpu_seconds_per_million, round.peak_rss_mib
        ));
        sink_rounds.push(round);
    }
    anyhow::ensure!(rowbinary.exists(), "no sink round ran, so there are no rows for the bulk insert (--sink-instances)");

    let phase = Phase::start("(b) clickhouse bulk insert");
    let bulk = ceilings::clickhouse_bulk(&http, &url, &rowbinary, args.ceiling_count).await?;
    ceilings::truncate(&http, &url).await?;
    let _ = std::fs::remove_file(&rowbinary);
    phase.done(format!("{:.0} rows/s ({} rows, {:.0} MB RowBinary in one INSERT)", bulk.rows_per_s, bulk.rows, bulk.bytes as f64 / 1e6));

    let peer = if args.no_peer {
        None
    } else {
        let phase = Phase::start("(c) python glue-script peer");
        let run = ceilings::peer(&stack, &dir, args.ceiling_count, &phase).await?;
        ceilings::truncate(&http, &url).await?;
        phase.done(format!(
            "{:.0} rows/s, {:.1} CPU-s per million, peak RSS {:.0} MB",
            run.rows_per_s, run.cpu_seconds_per_million, run.peak_rss_mb
        ));
        Some(run)
    };

    let sweep = if args.sweep_rates.is_empty() {
        None
    } else {
        Some(front_door::sweep(&stack, &bin, &dir, &args.sweep_rates, args.sweep_step_secs, args.concurrency, 10.0, 1).await?)
    };
    let batch_sweep = if args.batch_sweep_rates.is_empty() {
        None
    } else {
        let (rates, secs) = (&args.batch_sweep_rates, args.sweep_step_secs);
        Some(front_door::sweep(&stack, &bin, &dir, rates, secs, args.concurrency, 10.0, args.batch_size.max(2)).await?)
    };
    let cross_check = if args.cross_check_rate > 0.0 {
        let (rate, secs) = (args.cross_check_rate, args.cross_check_secs);
        Some(independent::cross_check(&stack, &bin, &dir, rate, secs, args.concurrency).await?)
    } else {
        None
    };

    let access_cost = if args.access_cost_rate > 0.0 {
        Some(front_door::access_cost(&stack, &bin, &dir, args.access_cost_rate, args.access_cost_secs, args.access_cost_rounds).await?)
    } else {
        None
    };

    let run = surge::run(&stack, &bin, &dir, &args).await?;
    drop(stack);

    let ceilings = Ceilings {
        broker_produce_per_s: broker.produce_per_s,
        broker_consume_per_s: broker.consume_per_s,
        broker,
        clickhouse_bulk_rows_per_s: bulk.rows_per_s,
        clickhouse_bulk: bulk,
        peer,
        sink_rows_per_s: sink_rounds.iter().map(|r| (r.instances.to_string(), r.rows_per_s)).collect(),
        sink: sink_rounds,
        enricher_records_per_s_one_core: enricher_per_core,
        independent_loadgen: cross_check,
    };
    let mut report = report(&args, cores, run, ceilings, sweep, wall.elapsed().as_secs_f64());
    report.access_cost = access_cost;
    report.batch_front_door_max_rate_p99_10ms = batch_sweep.as_ref().map(|s| s.max_rate_within_limit);
    report.batch_front_door = batch_sweep;
    // The plots go beside the JSON (or into the run's folder without one).
    let (plot_dir, stem) = match &args.out {
        Some(out) => (
            out.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf(),
            out.file_stem().map_or("surge".into(), |s| s.to_string_lossy().into_owned()),
        ),
        None => (dir.clone(), "surge".to_owned()),
    };
    std::fs::create_dir_all(&plot_dir)?;
    match plots::surge(&plot_dir, &stem, &report.series) {
        Ok(written) => report.plots = written,
        Err(e) => println!("no plots: {e:#}"),
    }
    print_report(&report);
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_string_pretty(&report)?)?;
        println!("report written to {}", out.display());
    }
    for plot in &report.plots {
        println!("plot written to {}", plot.display());
    }
    if let Some(path) = &args.markdown {
        std::fs::write(path, markdown(&report))?;
        println!("tables written to {}", path.display());
    }
    Ok(report)
}

fn report(
    args: &SurgeArgs,
    cores: usize,
    run: SurgeRun,
    ceilings: Ceilings,
    front_door: Option<front_door::Sweep>,
    wall_seconds: f64,
) -> Report {
    let load = &run.load;
    let offered_rate = args.baseline_rate * args.surge_factor;
    let lost = load.accepted as i64 - run.stored.stored as i64 - run.stored.rejected as i64;
    // CPU-s per million accepted is CPU-µs per accepted declaration.
    let cpu_us_per_declaration: BTreeMap<String, f64> =
        run.services.iter().map(|(name, u)| (name.clone(), u.cpu_seconds_per_million)).collect();
    let pipeline_cpu_us_per_declaration =
        cpu_us_per_declaration.iter().filter(|(name, _)| name.as_str() != surge::LOADGEN).map(|(_, us)| us).sum::<f64>();
    let gateway_cpu_seconds = run.services.get("gateway").map_or(0.0, |u| u.cpu_seconds);
    let loadgen_cpu_seconds = run.services.get(surge::LOADGEN).map_or(0.0, |u| u.cpu_seconds);
    let mut report = Report {
        cores,
        broker: format!("Apache Kafka {}", ehac_devstack::kafka_version()),
        partitions: args.partitions,
        offered_rate,
        baseline_rate: args.baseline_rate,
        surge_seconds: load.surge_seconds,
        sent: load.sent,
        accepted: load.accepted,
        refused: load.refused,
        failed: load.failed,
        accepted_rate: load.accepted as f64 / load.elapsed.as_secs_f64(),
        ack_p50_ms: load.surge_percentile_ms(0.5),
        ack_p99_ms: load.surge_percentile_ms(0.99),
        ack_p999_ms: load.surge_percentile_ms(0.999),
        ack_max_ms: load.surge_percentile_ms(1.0),
        ack_all_p50_ms: load.percentile_ms(0.5),
        ack_all_p99_ms: load.percentile_ms(0.99),
        ack_all_p999_ms: load.percentile_ms(0.999),
        sender_lateness_p99_ms: crate::loadgen::quantile_ms(&load.dispatch_lateness_us, 0.99),
        requests_waiting_for_slot: load.waited_for_slot,
        spooled: run.spooled,
        concurrency: args.concurrency,
        back_office_nice: args.back_office_nice,
        peak_lag_enricher: run.peak_lag_enricher,
        peak_lag_sink: run.peak_lag_sink,
        drain_seconds: run.drain_seconds,
        e2e_rows_per_s: run.e2e_rows_per_s,
        stored: run.stored.stored,
        rejected: run.stored.rejected,
        lost,
        duplicated: run.stored.duplicated,
        gateway_cpu_us_per_declaration: cpu_us_per_declaration.get("gateway").copied().unwrap_or(f64::NAN),
        pipeline_cores_at_20000_per_s: pipeline_cpu_us_per_declaration * 20_000.0 / 1e6,
        pipeline_cpu_us_per_declaration,
        cpu_us_per_declaration,
        loadgen_cpu_us_per_request: loadgen_cpu_seconds * 1e6 / load.requests.max(1) as f64,
        loadgen_to_gateway_cpu: loadgen_cpu_seconds / gateway_cpu_seconds.max(1e-9),
        services: run.services,
        ceilings,
        front_door_max_rate_p99_10ms: front_door.as_ref().map(|s| s.max_rate_within_limit),
        front_door,
        batch_front_door: None,
        batch_front_door_max_rate_p99_10ms: None,
        access_cost: None,
        targets: Vec::new(),
        wall_seconds,
        series: run.series,
        plots: Vec::new(),
    };
    report.targets = targets(&report);
    report
}

/// The targets, each with what this run measured. None of them fails the run.
fn targets(r: &Report) -> Vec<Target> {
    let mut out = vec![
        Target {
            name: "gateway ack p99 during the spike",
            goal: "<= 10 ms at 20,000 declarations/s offered".into(),
            measured: format!("{:.1} ms at {:.0}/s offered", r.ack_p99_ms, r.offered_rate),
            met: r.ack_p99_ms <= 10.0 && r.offered_rate >= 20_000.0,
        },
        Target {
            name: "front door alone: highest offered rate with ack p99 <= 10 ms",
            goal: ">= 20,000/s".into(),
            measured: r.front_door.as_ref().map_or("not run".into(), |s| format!("{:.0}/s", s.max_rate_within_limit)),
            met: r.front_door.as_ref().is_some_and(|s| s.max_rate_within_limit >= 20_000.0),
        },
        Target {
            name: "enricher records/s on one core",
            goal: ">= 200,000".into(),
            measured: format!("{:.0}", r.ceilings.enricher_records_per_s_one_core),
            met: r.ceilings.enricher_records_per_s_one_core >= 200_000.0,
        },
    ];
    if let Some(one) = r.ceilings.sink.iter().find(|s| s.instances == 1) {
        let ratio = one.rows_per_s / r.ceilings.clickhouse_bulk_rows_per_s;
        out.push(Target {
            name: "sink (1 instance) vs ClickHouse bulk insert",
            goal: ">= 0.67 (1/1.5)".into(),
            measured: format!("{ratio:.2} ({:.0} vs {:.0} rows/s)", one.rows_per_s, r.ceilings.clickhouse_bulk_rows_per_s),
            met: ratio >= 1.0 / 1.5,
        });
        if let Some(peer) = &r.ceilings.peer {
            let ratio = peer.cpu_seconds_per_million / one.cpu_seconds_per_million;
            out.push(Target {
                name: "CPU per million rows: peer / sink",
                goal: ">= 5x".into(),
                measured: format!("{ratio:.1}x ({:.1} vs {:.1} CPU-s)", peer.cpu_seconds_per_million, one.cpu_seconds_per_million),
                met: ratio >= 5.0,
            });
        }
    }
    let ratio = r.e2e_rows_per_s / r.ceilings.broker_consume_per_s;
    out.push(Target {
        name: "end to end vs broker raw consume",
        goal: ">= 0.90".into(),
        measured: format!("{ratio:.2} ({:.0} vs {:.0}/s)", r.e2e_rows_per_s, r.ceilings.broker_consume_per_s),
        met: ratio >= 0.9,
    });
    out.push(Target {
        name: "load generator CPU / gateway CPU (cross-check, single requests)",
        goal: "<= 0.33".into(),
        measured: r.ceilings.independent_loadgen.as_ref().map_or("not run".into(), |c| {
            format!(
                "{:.2} ({:.1} vs {:.1} CPU-µs per request at {:.0}/s)",
                c.ours.loadgen_to_gateway_cpu, c.ours.cpu_us_per_request, c.ours.gateway_cpu_us_per_request, c.rate
            )
        }),
        met: r.ceilings.independent_loadgen.as_ref().is_some_and(|c| c.ours.loadgen_to_gateway_cpu <= 1.0 / 3.0),
    });
    out.push(Target {
        name: "nothing lost or duplicated",
        goal: "lost = 0, duplicated = 0".into(),
        measured: format!("lost {}, duplicated {}", r.lost, r.duplicated),
        met: r.lost == 0 && r.duplicated == 0,
    });
    out
}

fn print_report(r: &Report) {
    println!();
    println!(
        "spike offered {:.0}/s for {:.0} s; sent {} accepted {} refused {} failed {}",
        r.offered_rate, r.surge_seconds, r.sent, r.accepted, r.refused, r.failed
    );
    println!("gateway ack during the spike: p50 {:.1} ms, p99 {:.1} ms, p99.9 {:.1} ms, max {:.1} ms (sender lateness p99 {:.1} ms; {} requests waited for one of {} connection slots)", r.ack_p50_ms, r.ack_p99_ms, r.ack_p999_ms, r.ack_max_ms, r.sender_lateness_p99_ms, r.requests_waiting_for_slot, r.concurrency);
    println!("answered from the gateway's spool (broker slower than the budget): {} of {} accepted", r.spooled, r.accepted);
    println!(
        "peak lag: enricher {} messages, sink {} messages; drained {:.1} s after the last request; end to end {:.0} rows/s",
        r.peak_lag_enricher, r.peak_lag_sink, r.drain_seconds, r.e2e_rows_per_s
    );
    for (name, u) in &r.services {
        println!(
            "  {name:<12} {:>8.1} CPU-s  {:>7.1} CPU-s per million  peak RSS {:>6.0} MiB",
            u.cpu_seconds, u.cpu_seconds_per_million, u.peak_rss_mib
        );
    }
    println!(
        "cost per accepted declaration: pipeline (all but the load generator) {:.1} CPU-µs, gateway {:.1}; at 20,000/s that is {:.2} cores; load generator {:.1} CPU-µs per request, {:.2}x the gateway's CPU",
        r.pipeline_cpu_us_per_declaration, r.gateway_cpu_us_per_declaration, r.pipeline_cores_at_20000_per_s, r.loadgen_cpu_us_per_request, r.loadgen_to_gateway_cpu
    );
    if let Some(c) = &r.ceilings.independent_loadgen {
        for f in std::iter::once(&c.ours).chain(&c.independent) {
            println!(
                "  at {:.0}/s {:<24} accepted {:>6.0}/s  ack p50 {:>6.1} ms  p99 {:>7.1} ms  {:>5.1} CPU-µs per request ({:.2}x the gateway's)",
                c.rate, f.tool, f.accepted_rate, f.ack_p50_ms, f.ack_p99_ms, f.cpu_us_per_request, f.loadgen_to_gateway_cpu
            );
        }
        if let Some(missing) = &c.missing {
            println!("  {missing}");
        }
    }
    let max_rate = |m: Option<f64>| m.map_or("not run".to_owned(), |m| format!("{m:.0}/s"));
    println!(
        "front door alone, highest offered rate with ack p99 <= 10 ms: single requests {}, batches {}",
        max_rate(r.front_door_max_rate_p99_10ms),
        max_rate(r.batch_front_door_max_rate_p99_10ms)
    );
    println!("\ntargets:");
    for t in &r.targets {
        println!("  [{}] {}: {} (goal {})", if t.met { "met" } else { "MISSED" }, t.name, t.measured, t.goal);
    }
    println!("\nSURGE offered_rate={:.0} accepted={} ack_p99_ms={:.1} e2e_rows_per_s={:.0} drain_seconds={:.1} stored={} lost={} duplicated={} wall={:.0}s", r.offered_rate, r.accepted, r.ack_p99_ms, r.e2e_rows_per_s, r.drain_seconds, r.stored, r.lost, r.duplicated, r.wall_seconds);
}

/// The report as Markdown tables: targets, the surge, processes, ceilings, the sweep.
pub fn markdown(r: &Report) -> String {
    use std::fmt::Write;
    let mut m = String::new();
    let _ = writeln!(m, "Machine: {} cores; broker {}; {} partitions; wall {:.0} s.\n", r.cores, r.broker, r.partitions, r.wall_seconds);
    let _ = writeln!(m, "| target | goal | measured | met |\n|---|---|---|---|");
    for t in &r.targets {
        let _ = writeln!(m, "| {} | {} | {} | {} |", t.name, t.goal, t.measured, if t.met { "yes" } else { "**no**" });
    }
    let _ = writeln!(m, "\n| surge figure | value |\n|---|---|");
    let rows: Vec<(&str, String)> = vec![
        ("offered rate in the spike", format!("{:.0}/s for {:.0} s (baseline {:.0}/s)", r.offered_rate, r.surge_seconds, r.baseline_rate)),
        ("sent / accepted / refused (422) / failed", format!("{} / {} / {} / {}", r.sent, r.accepted, r.refused, r.failed)),
        ("accepted rate over the whole load", format!("{:.0}/s", r.accepted_rate)),
        (
            "ack latency in the spike p50 / p99 / p99.9 / max",
            format!("{:.1} / {:.1} / {:.1} / {:.1} ms", r.ack_p50_ms, r.ack_p99_ms, r.ack_p999_ms, r.ack_max_ms),
        ),
        (
            "ack latency, whole load p50 / p99 / p99.9",
            format!("{:.1} / {:.1} / {:.1} ms", r.ack_all_p50_ms, r.ack_all_p99_ms, r.ack_all_p999_ms),
        ),
        ("requests that waited for a connection slot", format!("{} (of {} slots)", r.requests_waiting_for_slot, r.concurrency)),
        (
            "accepted through the gateway's spool (broker slower than the budget)",
            format!("{} ({:.0}%)", r.spooled, r.spooled as f64 * 100.0 / r.accepted.max(1) as f64),
        ),
        ("peak lag enricher / sink", format!("{} / {} messages", r.peak_lag_enricher, r.peak_lag_sink)),
        ("drain after the last request", format!("{:.1} s", r.drain_seconds)),
        ("end to end into ClickHouse (spike start to all stored)", format!("{:.0} rows/s", r.e2e_rows_per_s)),
        ("stored / rejected / lost / duplicated", format!("{} / {} / {} / {}", r.stored, r.rejected, r.lost, r.duplicated)),
    ];
    for (k, v) in rows {
        let _ = writeln!(m, "| {k} | {v} |");
    }
    let _ = writeln!(
        m,
        "\n| process (surge) | CPU-s | CPU-µs per accepted declaration | cores at 20,000/s | peak RSS MiB |\n|---|---|---|---|---|"
    );
    for (name, u) in &r.services {
        let (us, rss) = (u.cpu_seconds_per_million, u.peak_rss_mib);
        let _ = writeln!(m, "| {name} | {:.1} | {us:.1} | {:.2} | {rss:.0} |", u.cpu_seconds, us * 0.02);
    }
    let _ = writeln!(
        m,
        "| **pipeline** (all but loadgen) | | **{:.1}** | **{:.2}** | |",
        r.pipeline_cpu_us_per_declaration, r.pipeline_cores_at_20000_per_s
    );
    let c = &r.ceilings;
    let _ = writeln!(m, "\n| ceiling (same payloads and rows) | figure |\n|---|---|");
    let _ = writeln!(
        m,
        "| (a) broker produce, rdkafka, idempotent acks=all | {:.0} msg/s ({:.0} B/msg; broker {:.1} CPU-s per million) |",
        c.broker_produce_per_s, c.broker.bytes_per_message, c.broker.broker_cpu_seconds_per_million_produced
    );
    let _ = writeln!(
        m,
        "| (a) broker consume, rdkafka, no processing | {:.0} msg/s (broker {:.1} CPU-s per million) |",
        c.broker_consume_per_s, c.broker.broker_cpu_seconds_per_million_consumed
    );
    let _ = writeln!(
        m,
        "| (b) ClickHouse bulk INSERT of a RowBinary file | {:.0} rows/s ({} rows, {:.0} MB) |",
        c.clickhouse_bulk_rows_per_s,
        c.clickhouse_bulk.rows,
        c.clickhouse_bulk.bytes as f64 / 1e6
    );
    if let Some(p) = &c.peer {
        let _ = writeln!(
            m,
            "| (c) Python glue-script peer | {:.0} rows/s, {:.1} CPU-s per million, peak RSS {:.0} MB |",
            p.rows_per_s, p.cpu_seconds_per_million, p.peak_rss_mb
        );
    }
    for s in &c.sink {
        let _ = writeln!(
            m,
            "| (d) our sink x{} | {:.0} rows/s, {:.1} CPU-s per million, peak RSS {:.0} MiB |",
            s.instances, s.rows_per_s, s.cpu_seconds_per_million, s.peak_rss_mib
        );
    }
    let _ = writeln!(m, "| enricher rules + Avro, one core, in process | {:.0} records/s |", c.enricher_records_per_s_one_core);
    if let Some(x) = &c.independent_loadgen {
        let _ = writeln!(
            m,
            "\n| (e) load generator, {:.0}/s for {:.0} s, {} connections, one gateway | accepted | ack p50 | ack p99 | CPU-µs per request | gateway CPU-µs per request | loadgen / gateway CPU |\n|---|---|---|---|---|---|---|",
            x.rate, x.seconds, x.connections
        );
        for f in std::iter::once(&x.ours).chain(&x.independent) {
            let _ = writeln!(
                m,
                "| {} | {:.0}/s | {:.1} ms | {:.1} ms | {:.1} | {:.1} | {:.2} |",
                f.tool,
                f.accepted_rate,
                f.ack_p50_ms,
                f.ack_p99_ms,
                f.cpu_us_per_request,
                f.gateway_cpu_us_per_request,
                f.loadgen_to_gateway_cpu
            );
        }
        if let Some(missing) = &x.missing {
            let _ = writeln!(m, "| {missing} | | | | | | |");
        }
    }
    if let Some(cost) = &r.access_cost {
        let _ = writeln!(
            m,
            "\n| front door alone at {:.0}/s, {} clients | gateway CPU-µs per accepted declaration (mean of {} rounds) | each round |\n|---|---|---|",
            cost.rate,
            cost.clients,
            cost.runs.iter().map(|r| r.round).max().map_or(0, |r| r + 1)
        );
        for (variant, mean) in [
            (front_door::ANONYMOUS, cost.anonymous_cpu_us),
            (front_door::API_KEYS, cost.api_keys_cpu_us),
            (front_door::API_KEYS_AND_PASS, cost.api_keys_and_pass_cpu_us),
        ] {
            let rounds: Vec<String> =
                cost.runs.iter().filter(|r| r.variant == variant).map(|r| format!("{:.1}", r.gateway_cpu_us_per_accepted)).collect();
            let _ = writeln!(m, "| {variant} | {mean:.1} | {} |", rounds.join(", "));
        }
        let _ = writeln!(
            m,
            "| API keys cost | {:+.1} | |\n| the signed pass costs | {:+.1} | |",
            cost.api_keys_cpu_us - cost.anonymous_cpu_us,
            cost.api_keys_and_pass_cpu_us - cost.api_keys_cpu_us
        );
    }
    for sweep in r.front_door.iter().chain(&r.batch_front_door) {
        let what = if sweep.batch > 1 { format!("batches of {}", sweep.batch) } else { "single requests".to_owned() };
        let _ = writeln!(m, "\n| front door alone, {what}, offered | accepted | ack p50 | p99 | p99.9 | through the spool | gateway / broker / loadgen CPU-s per million | loadgen / gateway CPU |\n|---|---|---|---|---|---|---|---|");
        for s in &sweep.steps {
            let _ = writeln!(
                m,
                "| {:.0}/s | {:.0}/s | {:.1} ms | {:.1} ms | {:.1} ms | {:.0}% | {:.0} / {:.0} / {:.0} | {:.2} |",
                s.offered_rate,
                s.accepted_rate,
                s.ack_p50_ms,
                s.ack_p99_ms,
                s.ack_p999_ms,
                s.spooled_share * 100.0,
                s.gateway_cpu_seconds_per_million,
                s.broker_cpu_seconds_per_million,
                s.loadgen_cpu_seconds_per_million,
                s.loadgen_to_gateway_cpu
            );
        }
        let _ = writeln!(
            m,
            "\nHighest offered rate with ack p99 <= {:.0} ms, {what}: {:.0}/s.",
            sweep.p99_limit_ms, sweep.max_rate_within_limit
        );
    }
    m
}
