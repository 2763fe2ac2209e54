//! `ehac chaos`: the fault matrix. For each scenario, offered rate and seed: a fresh Apache
//! Kafka and ClickHouse, the services as separate processes with production defaults
//! (idempotent producers, a transactional enricher, dynamic group membership), declarations
//! flowing through the gateway, one fault injected at a moment drawn from the seed, and then the
//! count in ClickHouse: accepted (the gateway's 202 answers), stored, rejected, stuck (still in
//! Kafka or a gateway spool after the drain deadline: durable, not delivered), lost = accepted -
//! stored - rejected - stuck (durable nowhere), duplicated = rows beyond the first per
//! declaration (per source position for rejections), on the raw tables without FINAL. Kafka is
//! counted too: every raw record must have exactly one output on the enriched or rejected topic
//! (read committed), which only holds with the enricher's transactions.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::ValueEnum;
use ehac_devstack::{Server, Stack, StackOptions, Tools};
use ehac_stream::config::Topics;
use ehac_stream::kafka::{tally, ReadFrom};
use rand::{Rng, SeedableRng};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use serde::Serialize;

use crate::loadgen::{self, LoadArgs};
use crate::services::{bin_dir, metric_value, wait_ready, Service};
use crate::warehouse_report;

#[derive(clap::Args, Debug, Clone)]
pub struct ChaosArgs {
    /// Where each run's servers keep their data and the services their logs (wiped first).
    #[arg(long, default_value = ".ehac/chaos")]
    pub dir: PathBuf,
    /// Declarations per run.
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,
    /// Offered rates, declarations per second, comma-separated: every scenario runs at each.
    #[arg(long, value_delimiter = ',', default_value = "1000,3000,6000")]
    pub rates: Vec<f64>,
    /// Seeds, comma-separated: each draws the moment of the fault (and the load). A failed run
    /// prints its seed; `--seeds N --scenarios S --rates R` replays it.
    #[arg(long, value_delimiter = ',', default_value = "1,2,3")]
    pub seeds: Vec<u64>,
    /// Scenarios to run, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub scenarios: Vec<Scenario>,
    #[arg(long, default_value_t = 12)]
    pub partitions: i32,
    /// How long the broker stays down in the broker scenarios.
    #[arg(long, default_value_t = 30)]
    pub broker_outage_secs: u64,
    /// How long ClickHouse stays down in `clickhouse-outage`.
    #[arg(long, default_value_t = 60)]
    pub clickhouse_outage_secs: u64,
    /// Poison messages in `poison`, as a percentage of the declarations.
    #[arg(long, default_value_t = 1.0)]
    pub poison_percent: f64,
    /// How long the counts may stand still after the load before what is missing counts as
    /// stuck or lost.
    #[arg(long, default_value_t = 90)]
    pub drain_deadline_secs: u64,
    /// Writes the results as JSON: {"scenarios": [{"name", "rate", "seed", "accepted", ...}]}.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// kill -9 of the sink while it inserts, restarted 3 s later.
    SinkKill,
    /// kill -9 of the enricher, mid-transaction, restarted 3 s later.
    EnricherKill,
    /// kill -9 of the sink and the enricher running with static membership (group.instance.id),
    /// each restarted 3 s later.
    StaticMembersKill,
    /// The broker stopped cleanly (SIGTERM: controlled shutdown), then restarted on its data.
    BrokerRestart,
    /// The broker killed (SIGKILL), then restarted on its data.
    BrokerCrash,
    /// ClickHouse stopped, then restarted on the same data.
    ClickhouseOutage,
    /// Sink instances scaled 1 -> 3 -> 1 under load.
    SinkScale,
    /// Undecodable messages on the raw and enriched topics among the declarations.
    Poison,
    /// Every client request sent three times with the same Idempotency-Key.
    ClientRetries,
}

impl Scenario {
    pub fn name(self) -> String {
        self.to_possible_value().expect("no skipped variants").get_name().to_owned()
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ScenarioResult {
    pub name: String,
    pub rate: f64,
    pub seed: u64,
    /// Seconds into the load when the fault was injected.
    pub fault_at_secs: f64,
    pub accepted: u64,
    pub stored: u64,
    pub rejected: u64,
    /// Durable but not delivered after the drain deadline: unconsumed in Kafka (read
    /// committed, beyond the enricher's and the sink's committed offsets) or left in the
    /// gateway's spool.
    pub stuck: u64,
    /// Accepted and durable nowhere: accepted - stored - rejected - stuck.
    pub lost: i64,
    /// Rows beyond the first per declaration or rejection, in both databases.
    pub duplicated: u64,
    /// Declarations or rejections stored in one database and missing from the other (the
    /// identity database's "lost"; see `warehouse_report::Stored::unpaired`).
    pub unpaired: u64,
    /// Records on the raw topic, and outputs on the enriched and rejected topics, read
    /// committed. With transactions every raw record has exactly one output.
    pub raw_messages: u64,
    pub output_messages: u64,
    pub expected_outputs: u64,
    /// Answered 422 (never accepted) and requests that got no decisive answer.
    pub refused: u64,
    pub failed: u64,
    pub poison_sent: u64,
    pub poison_rejected: u64,
    /// Declarations the gateway accepted into its spool (broker away or slow).
    pub spooled: u64,
    /// Every service exited 0 after SIGTERM at the end.
    pub clean_shutdown: bool,
    pub seconds: f64,
}

impl ScenarioResult {
    pub fn passed(&self) -> bool {
        self.lost == 0
            && self.stuck == 0
            && self.duplicated == 0
            && self.unpaired == 0
            && self.output_messages == self.expected_outputs
            && self.poison_rejected == self.poison_sent
            && self.clean_shutdown
    }
}

pub async fn run(args: &ChaosArgs) -> anyhow::Result<Vec<ScenarioResult>> {
    let tools = Tools::find_or_install()?;
    let scenarios = if args.scenarios.is_empty() { Scenario::value_variants().to_vec() } else { args.scenarios.clone() };
    let mut results = Vec::new();
    for &seed in &args.seeds {
        for &rate in &args.rates {
            for &scenario in &scenarios {
                eprintln!("== chaos: {} at {rate}/s, seed {seed} ({} declarations)", scenario.name(), args.count);
                let result = run_scenario(args, scenario, rate, seed, &tools)
                    .await
                    .with_context(|| format!("scenario {} at {rate}/s, seed {seed}", scenario.name()))?;
                eprintln!("{}", line(&result));
                results.push(result);
                if let Some(out) = &args.out {
                    // Written after every run, so a long matrix that fails late still leaves its figures.
                    write_json(out, &results)?;
                }
            }
        }
    }
    Ok(results)
}

pub fn line(r: &ScenarioResult) -> String {
    format!(
        "CHAOS {} rate={} seed={} fault_at={:.1}s accepted={} stored={} rejected={} stuck={} lost={} duplicated={} unpaired={} kafka_outputs={}/{} spooled={} poison={}/{} clean_shutdown={} in {:.0}s: {}",
        r.name,
        r.rate,
        r.seed,
        r.fault_at_secs,
        r.accepted,
        r.stored,
        r.rejected,
        r.stuck,
        r.lost,
        r.duplicated,
        r.unpaired,
        r.output_messages,
        r.expected_outputs,
        r.spooled,
        r.poison_rejected,
        r.poison_sent,
        r.clean_shutdown,
        r.seconds,
        if r.passed() { "PASS" } else { "FAIL" }
    )
}

fn write_json(out: &std::path::Path, results: &[ScenarioResult]) -> anyhow::Result<()> {
    if let Some(parent) = out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    std::fs::write(out, serde_json::to_vec_pretty(&serde_json::json!({ "scenarios": results }))?)
        .with_context(|| format!("writing {}", out.display()))
}

async fn run_scenario(args: &ChaosArgs, scenario: Scenario, rate: f64, seed: u64, tools: &Tools) -> anyhow::Result<ScenarioResult> {
    let started = Instant::now();
    let dir = args.dir.join(format!("{}-{rate}-{seed}", scenario.name()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let dir = dir.canonicalize()?;
    let mut stack = Stack::start(tools, StackOptions::ephemeral(dir.join("stack"))?).await.context("starting broker and ClickHouse")?;
    let topics = Topics::default();
    stack.provision(&topics, args.partitions).await?;

    let brokers = stack.kafka_brokers();
    let bin = bin_dir()?;
    let env = [("EHAC_KAFKA_BROKERS", brokers.as_str())];
    // Dynamic membership (the default) everywhere but in the static-membership scenario.
    let static_members = scenario == Scenario::StaticMembersKill;
    // The enricher gets the pepper file, the sink the writer's credentials.
    let (sink_env, enricher_env) = (crate::services::sink_env(&stack), crate::services::enricher_env(&stack));
    let member = |instance: &'static str| {
        let mut env = if instance.starts_with("sink") { sink_env.clone() } else { enricher_env.clone() };
        if static_members {
            env.push(("EHAC_KAFKA_GROUP_INSTANCE_ID".to_owned(), instance.to_owned()));
        }
        env
    };
    // Port 0: nothing reads the enricher's and sinks' admin endpoints here.
    let admin = || vec!["--admin-listen".to_owned(), "127.0.0.1:0".to_owned()];
    let sink_args = admin;
    let clients = crate::services::provision_clients(&dir, &format!("chaos-{}", scenario.name()), 4, rate)?;
    // Port 0 for both, read back once bound: no window for another process to take them.
    let gateway_args = crate::services::gateway_args("127.0.0.1:0", "127.0.0.1:0", &dir.join("gateway-spool"), &clients.access());
    let mut gateway = Service::start(&bin, &dir, "gateway", "ehac-gateway", &gateway_args, &env)?;
    let (gateway_port, gateway_admin_port) = ehac_devstack::api_and_admin_ports(&mut gateway.child, Duration::from_secs(60)).await?;
    let gateway_admin = format!("127.0.0.1:{gateway_admin_port}");
    // `--transactions on`: the matrix proves the transactional path, so a broker without it fails.
    let enricher_args = [admin(), vec!["--transactions".into(), "on".into()]].concat();
    let mut enricher = Service::start(&bin, &dir, "enricher", "ehac-enricher", &enricher_args, &member("enricher-0"))?;
    let mut sinks = vec![Service::start(&bin, &dir, "sink-0", "ehac-sink", &sink_args(), &member("sink-0"))?];
    let extra_sink_args = [sink_args(), sink_args()];
    let http = reqwest::Client::new();
    let gateway_url = format!("http://127.0.0.1:{gateway_port}");
    wait_ready(&http, &format!("http://{gateway_admin}/readyz"), Duration::from_secs(60)).await?;

    let load = LoadArgs {
        invalid_form_percent: 1.0,
        invalid_reference_percent: 1.0,
        concurrency: 64,
        seed: seed.wrapping_mul(4_2020),
        attempts: if scenario == Scenario::ClientRetries { 3 } else { 1 },
        ..LoadArgs::steady(&gateway_url, args.count, rate, &format!("chaos-{}", scenario.name()), &clients.api_keys)
    };
    let load_seconds = args.count as f64 / rate;
    // The fault's moment is drawn, not fixed: 10-60% into the load.
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ (scenario as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let fault_at_secs = load_seconds * rng.random_range(0.1..0.6);
    let poison_count = if scenario == Scenario::Poison { (args.count as f64 * args.poison_percent / 100.0).round() as u64 } else { 0 };
    eprintln!("   fault at {fault_at_secs:.1} s of {load_seconds:.0} s (seed {seed})");

    let fault = async {
        tokio::time::sleep(Duration::from_secs_f64(fault_at_secs)).await;
        match scenario {
            Scenario::SinkKill => {
                sinks[0].kill()?;
                tokio::time::sleep(Duration::from_secs(3)).await;
                sinks[0].restart()?;
            }
            Scenario::EnricherKill => {
                enricher.kill()?;
                tokio::time::sleep(Duration::from_secs(3)).await;
                enricher.restart()?;
            }
            Scenario::StaticMembersKill => {
                enricher.kill()?;
                sinks[0].kill()?;
                tokio::time::sleep(Duration::from_secs(3)).await;
                enricher.restart()?;
                sinks[0].restart()?;
            }
            Scenario::BrokerRestart | Scenario::BrokerCrash => {
                stack.stop_server(Server::Broker, scenario == Scenario::BrokerCrash);
                tokio::time::sleep(Duration::from_secs(args.broker_outage_secs)).await;
                stack.restart_server(Server::Broker).await?;
            }
            Scenario::ClickhouseOutage => {
                stack.stop_server(Server::ClickHouse, false);
                tokio::time::sleep(Duration::from_secs(args.clickhouse_outage_secs)).await;
                stack.restart_server(Server::ClickHouse).await?;
            }
            Scenario::SinkScale => {
                for (i, sink_args) in extra_sink_args.iter().enumerate() {
                    let instance = ["sink-1", "sink-2"][i];
                    sinks.push(Service::start(&bin, &dir, instance, "ehac-sink", sink_args, &member(instance))?);
                }
                tokio::time::sleep(Duration::from_secs_f64(load_seconds * 0.3)).await;
                for mut sink in sinks.drain(1..) {
                    let status = sink.stop()?;
                    anyhow::ensure!(status.success(), "{} exited with {status} when scaled in", sink.name);
                }
            }
            Scenario::Poison => send_poison(&brokers, &topics, poison_count, load_seconds * 0.4).await?,
            Scenario::ClientRetries => {}
        }
        anyhow::Ok(())
    };
    let (load, fault) = tokio::join!(loadgen::run(&load), fault);
    let load = load?;
    fault?;

    let patience = Duration::from_secs(args.drain_deadline_secs);
    // Both databases counted: an investigator's read.
    let investigator = stack.clickhouse_http(ehac_devstack::WarehouseUser::Investigator);
    // An enricher or sink that exited (a fatal Kafka error ends the process, for its supervisor
    // to restart) is started again 2 s later, as its supervisor would, and said so.
    let clickhouse_url = stack.clickhouse_url();
    let stored = {
        let wait = warehouse_report::wait_for(&investigator, &clickhouse_url, load.accepted, poison_count, patience);
        tokio::pin!(wait);
        loop {
            tokio::select! {
                stored = &mut wait => break stored?,
                _ = tokio::time::sleep(Duration::from_secs(2)) => {
                    for service in std::iter::once(&mut enricher).chain(sinks.iter_mut()) {
                        if let Some(exit) = service.restart_if_exited()? {
                            eprintln!("   {} exited ({exit}); started again", service.name);
                        }
                    }
                }
            }
        }
    };
    let metrics_url = format!("http://{gateway_admin}/metrics");
    let spooled = metric_value(&http, &metrics_url, "ehac_gateway_spooled_total").await.unwrap_or(0.0) as u64;
    let spool_left = metric_value(&http, &metrics_url, "ehac_gateway_spool_records").await.unwrap_or(0.0) as u64;
    let (kafka, topic_names) = (brokers.clone(), topics.clone());
    let counts = tokio::task::spawn_blocking(move || kafka_counts(&kafka, &topic_names)).await??;
    let mut clean_shutdown = true;
    for service in std::iter::once(&mut gateway).chain(std::iter::once(&mut enricher)).chain(sinks.iter_mut()) {
        let status = service.stop()?;
        if !status.success() {
            clean_shutdown = false;
            eprintln!("{} exited with {status}; see {}/{}.log", service.name, dir.display(), service.name);
        }
    }
    drop(stack);
    let missing = load.accepted as i64 - stored.stored as i64 - stored.rejected as i64;
    let stuck = (counts.unconsumed + spool_left).min(missing.max(0) as u64);
    // Poison on the enriched topic has no raw record; poison on the raw topic has one output.
    let poison_on_enriched = (0..poison_count).filter(|i| i % 3 == 0).count() as u64;
    Ok(ScenarioResult {
        name: scenario.name(),
        rate,
        seed,
        fault_at_secs,
        accepted: load.accepted,
        stored: stored.stored,
        rejected: stored.rejected,
        stuck,
        lost: missing - stuck as i64,
        duplicated: stored.duplicated,
        unpaired: stored.unpaired,
        raw_messages: counts.raw,
        output_messages: counts.outputs,
        expected_outputs: counts.raw + poison_on_enriched,
        refused: load.refused,
        failed: load.failed,
        poison_sent: poison_count,
        poison_rejected: stored.undecodable,
        spooled,
        clean_shutdown,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// What Kafka holds after the drain: raw records, outputs, and what the groups did not consume.
#[derive(Debug, Clone, Copy)]
pub struct KafkaCounts {
    pub raw: u64,
    pub outputs: u64,
    pub unconsumed: u64,
}

/// Reads every topic to its end (read committed): blocking, for `spawn_blocking`.
pub fn kafka_counts(brokers: &str, topics: &Topics) -> anyhow::Result<KafkaCounts> {
    let raw = tally(brokers, &[&topics.raw], ReadFrom::Beginning)?.messages;
    let outputs = tally(brokers, &[&topics.enriched, &topics.rejected], ReadFrom::Beginning)?.messages;
    let unconsumed = tally(brokers, &[&topics.raw], ReadFrom::Committed("ehac-enricher".into()))?.messages
        + tally(brokers, &[&topics.enriched, &topics.rejected], ReadFrom::Committed("ehac-sink".into()))?.messages;
    Ok(KafkaCounts { raw, outputs, unconsumed })
}

/// Random bytes (and truncated Avro headers) on the raw and enriched topics, spread over
/// `over_secs`.
async fn send_poison(brokers: &str, topics: &Topics, count: u64, over_secs: f64) -> anyhow::Result<()> {
    let producer = ehac_stream::kafka::producer(brokers)?;
    let mut rng = rand::rngs::StdRng::seed_from_u64(404);
    let pause = Duration::from_secs_f64(over_secs / count.max(1) as f64);
    for i in 0..count {
        let mut payload: Vec<u8> = (0..rng.random_range(1..200)).map(|_| rng.random()).collect();
        if i % 2 == 0 {
            // A plausible header with a garbage body: must fail in the decoder, not before.
            payload.splice(0..0, [0xC3, 0x01]);
        }
        let topic = if i % 3 == 0 { &topics.enriched } else { &topics.raw };
        let key = format!("poison-{i}");
        producer
            .send(FutureRecord::to(topic).key(&key).payload(&payload), Timeout::After(Duration::from_secs(30)))
            .await
            .map_err(|(e, _)| e)?;
        tokio::time::sleep(pause).await;
    }
    Ok(())
}
