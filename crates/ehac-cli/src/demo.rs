//! `ehac demo`: the main job on one machine. Installs what is missing, starts a fresh broker and
//! ClickHouse, starts the gateway, enricher and sink as separate processes and a stand-in
//! population registry, plays a holiday surge through the gateway's HTTP API while the registry
//! goes offline for a while, waits for the pipeline to drain, re-verifies the NIKs
//! stored as pending, prints the analysts' queries and a SUMMARY counted in ClickHouse, then
//! stops everything (SIGTERM, so each service drains).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ehac_devstack::{Stack, StackOptions, Tools, WarehouseUser};
use ehac_stream::config::Topics;

use ehac_proving::loadgen;
use ehac_proving::services::{bin_dir, enricher_env, sink_env, wait_ready, Service};
use ehac_proving::warehouse_report;

/// Clients the demo's load is spread over (one API key each).
const DEMO_CLIENTS: usize = 8;

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Where the demo's servers keep their data and the services their logs (wiped first).
    #[arg(long, default_value = ".ehac/demo")]
    pub dir: PathBuf,
    #[arg(long, env = "EHAC_PARTITIONS", default_value_t = 12)]
    pub partitions: i32,
    /// Enricher processes (one consumer group).
    #[arg(long, default_value_t = 1)]
    pub enrichers: usize,
    /// Sink processes (one consumer group).
    #[arg(long, default_value_t = 1)]
    pub sinks: usize,
    /// Seconds into the load at which the population registry goes offline.
    #[arg(long, default_value_t = 5)]
    pub registry_outage_at_secs: u64,
    /// Seconds the population registry stays offline (0: no outage).
    #[arg(long, default_value_t = 15)]
    pub registry_outage_secs: u64,
    #[command(flatten)]
    pub load: loadgen::LoadArgs,
}

pub async fn run(mut args: DemoArgs) -> anyhow::Result<()> {
    let wall = Instant::now();
    let _ = std::fs::remove_dir_all(&args.dir);
    std::fs::create_dir_all(&args.dir)?;
    let dir = args.dir.canonicalize()?;

    println!(
        "== e-HAC demo: {} declarations, a {}x holiday surge, {} partitions",
        args.load.count, args.load.surge_factor, args.partitions
    );
    let tools = Tools::find_or_install()?;
    let stack = Stack::start(&tools, StackOptions::ephemeral(dir.join("stack"))?).await.context("starting broker and ClickHouse")?;
    stack.provision(&Topics::default(), args.partitions).await?;
    println!(
        "stack: Apache Kafka {} at {} (log {}), ClickHouse {} at {}",
        ehac_devstack::kafka_version(),
        stack.kafka_brokers(),
        stack.broker_logs()[0].display(),
        stack.clickhouse_version().await?,
        stack.clickhouse_url()
    );

    let brokers = stack.kafka_brokers();
    let bin = bin_dir()?;
    // Production defaults: dynamic group membership, a transactional enricher.
    let start_service = |name: &str, binary: &str, service_args: &[String]| {
        Service::start(&bin, &dir, name, binary, service_args, &[("EHAC_KAFKA_BROKERS", brokers.as_str())])
    };
    // Every port is 0, read back once bound: no window for another process to take it.
    let mut registry = start_service("registry", "ehac-registry-sim", &["--listen".into(), "127.0.0.1:0".into()])?;
    let registry_port = ehac_devstack::bound_port(&mut registry.child, Duration::from_secs(30)).await?;
    // After the outage it comes back where the enrichers look for it.
    registry.listen_again_on("--listen", &format!("127.0.0.1:{registry_port}"));
    let registry_url = format!("http://127.0.0.1:{registry_port}");
    // The gateway signs a pass for every accepted declaration; the gates trust its key.
    let gate_keys = ehac_proving::gate::GateKeys::create(&dir, "ID-BT")?;
    // Kiosks, apps and airline systems, each with its own key, as at a real front door.
    let peak_rate = args.load.baseline_rate * args.load.surge_factor;
    let clients = ehac_proving::services::provision_clients(&dir, "demo-client", DEMO_CLIENTS, peak_rate)?;
    let mut gateway_args =
        ehac_proving::services::gateway_args("127.0.0.1:0", "127.0.0.1:0", &dir.join("gateway-spool"), &clients.access());
    gateway_args.extend(["--pass-key".to_owned(), gate_keys.issuing_key_file.display().to_string()]);
    let (gateway_service, gateway, gateway_admin) =
        ehac_proving::services::start_gateway(&bin, &dir, "gateway", &gateway_args, &[("EHAC_KAFKA_BROKERS", brokers.as_str())]).await?;
    let mut services = vec![gateway_service];
    for i in 0..args.enrichers {
        let enricher_args = ["--admin-listen".into(), "127.0.0.1:0".into(), "--registry-url".into(), registry_url.clone()];
        services.push(Service::start(&bin, &dir, &format!("enricher-{i}"), "ehac-enricher", &enricher_args, &enricher_env(&stack))?);
    }
    for i in 0..args.sinks {
        let sink_args = ["--admin-listen".into(), "127.0.0.1:0".into()];
        services.push(Service::start(&bin, &dir, &format!("sink-{i}"), "ehac-sink", &sink_args, &sink_env(&stack))?);
    }
    let http = reqwest::Client::new();
    wait_ready(&http, &format!("http://{gateway_admin}/readyz"), Duration::from_secs(60)).await?;
    println!(
        "services: gateway {gateway} ({DEMO_CLIENTS} clients with API keys, {}), {} enricher(s), {} sink(s); logs in {}",
        clients.file.display(),
        args.enrichers,
        args.sinks,
        dir.display()
    );

    args.load.gateway = gateway;
    args.load.api_keys = clients.api_keys.clone();
    let load = loadgen::run(&args.load);
    let outage = async {
        if args.registry_outage_secs == 0 {
            return anyhow::Ok(());
        }
        tokio::time::sleep(Duration::from_secs(args.registry_outage_at_secs)).await;
        // SIGKILL: the registry vanishes mid-request, as a crashed server would.
        registry.kill()?;
        let offline = Instant::now();
        tokio::time::sleep(Duration::from_secs(args.registry_outage_secs)).await;
        registry.restart()?;
        println!(
            "\npopulation registry was offline for {:.0}s during the load; travellers kept being accepted",
            offline.elapsed().as_secs_f64()
        );
        Ok(())
    };
    let (load, outage) = tokio::join!(load, outage);
    let load = load?;
    outage?;
    println!("{}", load.line());
    match ehac_proving::bench::plots::load(&dir, "demo-load", &load.per_second) {
        Ok(written) => written.iter().for_each(|p| println!("plot written to {}", p.display())),
        Err(e) => println!("no plots: {e:#}"),
    }

    print!("draining the pipeline into ClickHouse...");
    let drain_started = Instant::now();
    // Counting both databases is an investigator's read; the published tables are an analyst's.
    let investigator = stack.clickhouse_http(WarehouseUser::Investigator);
    let stored = warehouse_report::wait_for(&investigator, &stack.clickhouse_url(), load.accepted, 0, Duration::from_secs(60)).await?;
    println!(" {:.1}s after the last request", drain_started.elapsed().as_secs_f64());

    wait_ready(&http, &format!("{registry_url}/healthz"), Duration::from_secs(10)).await?;
    let reconciled = reconcile(&stack, &registry_url).await?;
    println!("{}", reconciled.line());

    let analyst = stack.clickhouse_http(WarehouseUser::Analyst);
    let suppress_below = ehac_stream::warehouse::DEFAULT_SUPPRESS_BELOW;
    println!(
        "\nanalysts' standard queries, as the `analyst` user; counts of 1-{} are published as NULL (suppressed_cells)",
        suppress_below - 1
    );
    for (name, sql) in ehac_stream::warehouse::ANALYST_QUERIES {
        println!("\n-- {name}");
        let sql = ehac_stream::warehouse::analyst_query(sql, suppress_below);
        print!("{}", warehouse_report::table(&analyst, &stack.clickhouse_url(), &sql).await?);
    }

    let mut clean = true;
    services.push(registry);
    for service in &mut services {
        let status = service.stop()?;
        if !status.success() {
            clean = false;
            eprintln!("{} exited with {status}; see {}/{}.log", service.name, dir.display(), service.name);
        }
    }
    println!("\nservices stopped with SIGTERM: {}", if clean { "all drained and exited 0" } else { "NOT all exited cleanly" });
    drop(stack);

    // The back office is gone now: Kafka, ClickHouse and the registry are stopped. The gates
    // check the travellers' passes with their trust list alone.
    println!(
        "back office down (Kafka, ClickHouse, registry stopped); gates check {} sampled passes offline, 2 of them revoked, plus 3 tampered and 2 at the wrong airport",
        load.passes.len()
    );
    let gate = ehac_proving::gate::check_offline(&gate_keys, &load.passes)?;
    println!("{}", gate.line());

    let lost = load.accepted as i64 - stored.stored as i64 - stored.rejected as i64;
    println!(
        "demo wall time {:.1}s; refused at the gateway (422) {}; failed requests {}",
        wall.elapsed().as_secs_f64(),
        load.refused,
        load.failed
    );
    println!(
        "SUMMARY accepted={} stored={} rejected={} lost={} duplicated={} unpaired={}",
        load.accepted, stored.stored, stored.rejected, lost, stored.duplicated, stored.unpaired
    );
    // Every genuine, unrevoked pass accepted; every planted one refused.
    let gate_ok = load.passes.len() > 7 && gate.verified == load.passes.len() as u64 - 2 && gate.rejected == 7 && gate.degraded == 0;
    if !gate_ok {
        eprintln!("the gates did not give the expected verdicts: {}", gate.line());
    }
    if lost != 0 || stored.duplicated != 0 || stored.unpaired != 0 || load.failed != 0 || !clean || !gate_ok {
        bail!("the demo did not end clean");
    }
    Ok(())
}

/// Re-verifies the NIKs stored as pending while the registry was offline.
async fn reconcile(stack: &Stack, registry_url: &str) -> anyhow::Result<ehac_registry::reconcile::Report> {
    let registry = ehac_registry::RegistryArgs {
        registry_url: Some(registry_url.to_owned()),
        registry_timeout_ms: 5_000,
        registry_breaker_failures: 3,
        registry_breaker_cooldown_ms: 1_000,
    };
    let verifier = registry.verifier(&ehac_stream::telemetry::registry("demo"))?.expect("a registry URL is set");
    // Reconciling reads the pending citizens' NIKs from the identity database and writes answers.
    ehac_registry::reconcile::run_once(&stack.clickhouse_as(WarehouseUser::Reconciler), &verifier, 1_000, "ehac demo").await
}
