//! `ehac chaos`: the fault matrix. For each scenario a fresh broker and ClickHouse, the services
//! as separate processes, declarations flowing through the gateway, one fault injected while
//! they flow, and then the count in ClickHouse: accepted (the gateway's 202 answers), stored,
//! rejected, lost = accepted - stored - rejected, duplicated = rows beyond the first per
//! declaration (per source position for rejections), on the raw tables without FINAL.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::ValueEnum;
use ehac_devstack::{free_port, Server, Stack, StackOptions, Tools};
use ehac_stream::config::Topics;
use rand::{Rng, SeedableRng};
use rdkafka::producer::FutureRecord;
use rdkafka::util::Timeout;
use serde::Serialize;

use crate::loadgen::{self, LoadArgs};
use crate::services::{bin_dir, wait_ready, Service};
use crate::warehouse_report;

#[derive(clap::Args, Debug, Clone)]
pub struct ChaosArgs {
    /// Where each scenario's servers keep their data and the services their logs (wiped first).
    #[arg(long, default_value = ".ehac/chaos")]
    pub dir: PathBuf,
    /// Declarations per scenario.
    #[arg(long, default_value_t = 100_000)]
    pub count: u64,
    /// Declarations per second offered to the gateway.
    #[arg(long, default_value_t = 2_000.0)]
    pub rate: f64,
    /// Scenarios to run, comma-separated (default: all).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub scenarios: Vec<Scenario>,
    #[arg(long, default_value_t = 12)]
    pub partitions: i32,
    /// How long the broker stays down in `broker-outage`.
    #[arg(long, default_value_t = 30)]
    pub broker_outage_secs: u64,
    /// How long ClickHouse stays down in `clickhouse-outage`.
    #[arg(long, default_value_t = 60)]
    pub clickhouse_outage_secs: u64,
    /// Poison messages in `poison`, as a percentage of the declarations.
    #[arg(long, default_value_t = 1.0)]
    pub poison_percent: f64,
    /// Writes the results as JSON: {"scenarios": [{"name", "accepted", "stored", ...}]}.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// kill -9 of the sink while it inserts, restarted 3 s later.
    SinkKill,
    /// kill -9 of the enricher, restarted 3 s later.
    EnricherKill,
    /// The broker killed, then restarted on the same data.
    BrokerOutage,
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
    pub accepted: u64,
    pub stored: u64,
    pub rejected: u64,
    pub lost: i64,
    pub duplicated: u64,
    /// Answered 422 (never accepted) and requests that got no decisive answer.
    pub refused: u64,
    pub failed: u64,
    pub poison_sent: u64,
    pub poison_rejected: u64,
    /// Every service exited 0 after SIGTERM at the end.
    pub clean_shutdown: bool,
    pub seconds: f64,
}

impl ScenarioResult {
    pub fn passed(&self) -> bool {
        self.lost == 0 && self.duplicated == 0 && self.poison_rejected == self.poison_sent && self.clean_shutdown
    }
}

pub async fn run(args: &ChaosArgs) -> anyhow::Result<Vec<ScenarioResult>> {
    let tools = Tools::find_or_install()?;
    let scenarios = if args.scenarios.is_empty() { Scenario::value_variants().to_vec() } else { args.scenarios.clone() };
    let mut results = Vec::new();
    for scenario in scenarios {
        eprintln!("== chaos: {} ({} declarations at {}/s)", scenario.name(), args.count, args.rate);
        let result = run_scenario(args, scenario, &tools).await.with_context(|| format!("scenario {}", scenario.name()))?;
        eprintln!("{}", line(&result));
        results.push(result);
        if let Some(out) = &args.out {
            // Written after every scenario, so a long run that fails late still leaves its figures.
            write_json(out, &results)?;
        }
    }
    Ok(results)
}

pub fn line(r: &ScenarioResult) -> String {
    format!(
        "CHAOS {} accepted={} stored={} rejected={} lost={} duplicated={} poison={}/{} clean_shutdown={} in {:.0}s: {}",
        r.name,
        r.accepted,
        r.stored,
        r.rejected,
        r.lost,
        r.duplicated,
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

async fn run_scenario(args: &ChaosArgs, scenario: Scenario, tools: &Tools) -> anyhow::Result<ScenarioResult> {
    let started = Instant::now();
    let dir = args.dir.join(scenario.name());
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let dir = dir.canonicalize()?;
    let mut stack = Stack::start(tools, StackOptions::ephemeral(dir.join("stack"))?).await.context("starting broker and ClickHouse")?;
    let topics = Topics::default();
    stack.provision(&topics, args.partitions).await?;

    let brokers = stack.kafka_brokers();
    let bin = bin_dir()?;
    // tansu 0.6 restarted under idempotent producers panics in its storage (see
    // ehac_stream::kafka::producer): the broker scenario runs them non-idempotent and relies on
    // the sink's dedup alone.
    let idempotence = if scenario == Scenario::BrokerOutage { "false" } else { "true" };
    let env = [("EHAC_KAFKA_BROKERS", brokers.as_str()), ("EHAC_KAFKA_IDEMPOTENCE", idempotence)];
    // Each consumer process keeps its group instance id across restarts (static membership).
    // Static membership, so a consumer killed and restarted gets its partitions back: tansu 0.6
    // never reassigns a dead dynamic member's partitions. But after a broker restart tansu
    // gives static members an empty assignment for good, so the broker scenario runs dynamic
    // members. (Both are tansu limitations; Apache Kafka handles either way.)
    let static_members = scenario != Scenario::BrokerOutage;
    let member = |instance: &'static str| {
        let mut env = env.to_vec();
        if static_members {
            env.push(("EHAC_KAFKA_GROUP_INSTANCE_ID", instance));
        }
        env
    };
    let gateway_port = free_port()?;
    let admin = || -> anyhow::Result<Vec<String>> { Ok(vec!["--admin-listen".into(), format!("127.0.0.1:{}", free_port()?)]) };
    let sink_args = || -> anyhow::Result<Vec<String>> { Ok([admin()?, vec!["--clickhouse-url".into(), stack.clickhouse_url()]].concat()) };
    let gateway_admin = format!("127.0.0.1:{}", free_port()?);
    let gateway_args = crate::services::gateway_args(&format!("127.0.0.1:{gateway_port}"), &gateway_admin, &dir.join("gateway-spool"));
    let mut gateway = Service::start(&bin, &dir, "gateway", "ehac-gateway", &gateway_args, &env)?;
    let mut enricher = Service::start(&bin, &dir, "enricher", "ehac-enricher", &admin()?, &member("enricher-0"))?;
    let mut sinks = vec![Service::start(&bin, &dir, "sink-0", "ehac-sink", &sink_args()?, &member("sink-0"))?];
    let extra_sink_args = [sink_args()?, sink_args()?];
    let http = reqwest::Client::new();
    let gateway_url = format!("http://127.0.0.1:{gateway_port}");
    wait_ready(&http, &format!("http://{gateway_admin}/readyz"), Duration::from_secs(60)).await?;

    let load = LoadArgs {
        gateway: gateway_url,
        count: args.count,
        baseline_rate: args.rate,
        surge_factor: 1.0,
        surge_share: 0.0,
        invalid_form_percent: 1.0,
        invalid_reference_percent: 1.0,
        concurrency: 64,
        seed: 4_2020,
        client_id: format!("chaos-{}", scenario.name()),
        attempts: if scenario == Scenario::ClientRetries { 3 } else { 1 },
    };
    let load_seconds = args.count as f64 / args.rate;
    let fault_at = Duration::from_secs_f64(load_seconds * 0.3);
    let poison_count = if scenario == Scenario::Poison { (args.count as f64 * args.poison_percent / 100.0).round() as u64 } else { 0 };

    let fault = async {
        tokio::time::sleep(fault_at).await;
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
            Scenario::BrokerOutage => {
                // SIGKILL: tansu 0.6 restarted after a SIGTERM shutdown panics in its group
                // storage (update_group); after a crash it recovers from its SQLite file.
                stack.stop_server(Server::Broker, true);
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

    let stored = warehouse_report::wait_for(&http, &stack.clickhouse_url(), load.accepted, poison_count, Duration::from_secs(90)).await?;
    let mut clean_shutdown = true;
    for service in std::iter::once(&mut gateway).chain(std::iter::once(&mut enricher)).chain(sinks.iter_mut()) {
        let status = service.stop()?;
        if !status.success() {
            clean_shutdown = false;
            eprintln!("{} exited with {status}; see {}/{}.log", service.name, dir.display(), service.name);
        }
    }
    drop(stack);
    Ok(ScenarioResult {
        name: scenario.name(),
        accepted: load.accepted,
        stored: stored.stored,
        rejected: stored.rejected,
        lost: load.accepted as i64 - stored.stored as i64 - stored.rejected as i64,
        duplicated: stored.duplicated,
        refused: load.refused,
        failed: load.failed,
        poison_sent: poison_count,
        poison_rejected: stored.undecodable,
        clean_shutdown,
        seconds: started.elapsed().as_secs_f64(),
    })
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
