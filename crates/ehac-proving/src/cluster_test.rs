//! `ehac cluster-test`: the pipeline on a cluster on this one machine, one fault at a time
//! under load, counted in ClickHouse on every replica.
//!
//! Three KRaft nodes (each broker and controller; RF 3, min ISR 2), ZooKeeper and two
//! ClickHouse 18.16 replicas of one shard, with two gateways, two transactional enrichers, two
//! sinks and lagwatch as processes configured for the cluster (every broker in bootstrap; the
//! sinks write the replicated `_local` tables). Each fault runs its own load through both
//! gateways, strikes a few seconds in, heals, and the run then waits until each replica's own
//! tables hold everything accepted so far. Counts are read without FINAL: `lost = 0` (every
//! accepted declaration stored or rejected), `duplicated = 0` and `count() =
//! uniqExact(declaration_id)` on both replicas, in both databases.
//!
//! The faults share one cluster (its start is most of a short run), so each count covers every
//! fault before it too.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use ehac_devstack::{Nowhere, Server, Stack, StackOptions, Tools, WarehouseUser};
use ehac_stream::config::Topics;
use serde::Serialize;

use crate::chaos::{kafka_counts, KafkaCounts};
use crate::loadgen::{self, LoadArgs};
use crate::services::{self, wait_ready, HarnessClients, Service};
use crate::warehouse_report::{self, Stored, Tables};

#[derive(clap::Args, Debug, Clone)]
pub struct ClusterTestArgs {
    /// Declarations per fault, split over the two gateways.
    #[arg(long, default_value_t = 6_000)]
    pub declarations: u64,
    /// Offered declarations per second, over both gateways.
    #[arg(long, default_value_t = 400.0)]
    pub rate: f64,
    /// Which faults, in this order (all by default).
    #[arg(long, value_delimiter = ',', value_enum)]
    pub faults: Vec<Fault>,
    /// Seconds into each load when the fault strikes.
    #[arg(long, default_value_t = 3)]
    pub fault_at_secs: u64,
    /// How long a killed or stopped server or service stays down.
    #[arg(long, default_value_t = 10)]
    pub outage_secs: u64,
    /// How long a broker stays cut off in the network partition: longer than the brokers'
    /// session timeout (9 s), so the controller fences it and its partitions get new leaders.
    #[arg(long, default_value_t = 20)]
    pub partition_secs: u64,
    /// How long ZooKeeper stays down.
    #[arg(long, default_value_t = 30)]
    pub zookeeper_outage_secs: u64,
    /// How long the counts may stand still before what is missing counts as missing.
    #[arg(long, default_value_t = 90)]
    pub patience_secs: u64,
    /// Where the servers' data and the services' logs go (a fresh temporary directory by
    /// default; kept after a failure).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Write every fault's report here as JSON.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

impl ClusterTestArgs {
    fn faults(&self) -> Vec<Fault> {
        if self.faults.is_empty() {
            Fault::ALL.to_vec()
        } else {
            self.faults.clone()
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fault {
    /// SIGKILL of the broker node that leads partition 0 of the raw topic.
    LeaderCrash,
    /// SIGTERM (a controlled shutdown) of the active KRaft controller.
    ControllerStop,
    /// The leader of raw partition 0 cut off the network (its namespace's link down, both
    /// directions), then joined again.
    BrokerPartition,
    /// SIGKILL of ClickHouse replica 2, the one the sinks do not write.
    ReplicaCrash,
    /// ZooKeeper stopped: the replicated tables turn read-only until it is back.
    ZookeeperDown,
    /// One of the two sinks stopped (SIGTERM) and started again: 2 -> 1 -> 2.
    SinkScale,
    /// Gateway 2 cut off from the brokers, so it answers from its spool; SIGKILL with the
    /// spool full; `ehac spool drain` empties the orphaned spool; a fresh gateway 2.
    GatewaySpoolOrphaned,
}

impl Fault {
    pub const ALL: [Fault; 7] = [
        Fault::LeaderCrash,
        Fault::ControllerStop,
        Fault::BrokerPartition,
        Fault::ReplicaCrash,
        Fault::ZookeeperDown,
        Fault::SinkScale,
        Fault::GatewaySpoolOrphaned,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::LeaderCrash => "leader-crash",
            Fault::ControllerStop => "controller-stop",
            Fault::BrokerPartition => "broker-partition",
            Fault::ReplicaCrash => "replica-crash",
            Fault::ZookeeperDown => "zookeeper-down",
            Fault::SinkScale => "sink-scale",
            Fault::GatewaySpoolOrphaned => "gateway-spool-orphaned",
        }
    }
}

/// One replica's counts, on its own `_local` tables.
#[derive(Debug, Clone, Serialize)]
pub struct ReplicaCount {
    pub stored: u64,
    pub rejected: u64,
    pub lost: i64,
    pub duplicated: u64,
    pub unpaired: u64,
    /// `count()` and `uniqExact(declaration_id)` of `ehac.declarations_local`, no FINAL.
    pub declaration_rows: (u64, u64),
    /// The same of `ehac.rejections_local`.
    pub rejection_rows: (u64, u64),
    /// From the end of the load until this replica held every row.
    pub complete_after_s: f64,
}

/// What one fault did.
#[derive(Debug, Clone, Serialize)]
pub struct FaultReport {
    pub fault: Fault,
    /// What was struck: "broker node 3", "ClickHouse replica 2", "sink-1", ...
    pub target: String,
    /// Accepted by the gateways in this fault's load.
    pub accepted_now: u64,
    /// Accepted over every fault so far: what each replica must hold.
    pub accepted: u64,
    /// Answered 422 (the load's invalid forms, on purpose).
    pub refused: u64,
    /// Not answered 202 or 422 (a problem: the clients would retry).
    pub failed: u64,
    pub replicas: [ReplicaCount; 2],
    /// From the healing until the struck part was whole again: a broker back in every
    /// partition's ISR; a replica (or both, after ZooKeeper) holding every accepted row; the
    /// sinks or the drained spool's declarations all in replica 1. Rows are counted once the
    /// load has ended, so for a load that outlasts the outage this is an upper bound.
    pub recovered_after_s: Option<f64>,
    /// Declarations the gateways answered from their spools in this fault's load.
    pub spooled: u64,
    /// Declarations `ehac spool drain` sent from the orphaned spool.
    pub drained_by_cli: u64,
    /// The largest lag lagwatch reported for either group during the fault, in messages.
    pub peak_lag_messages: f64,
    pub kafka_raw: u64,
    pub kafka_outputs: u64,
    pub kafka_unconsumed: u64,
    pub seconds: f64,
    /// Services that had exited and were started again (as their supervisor would), with
    /// how they exited.
    pub restarted: Vec<String>,
    /// Empty when passed: what was wrong, and the services' last warnings.
    pub problems: Vec<String>,
}

impl FaultReport {
    pub fn passed(&self) -> bool {
        self.problems.is_empty()
    }
}

/// One line per fault, for logs and the docs table.
pub fn line(r: &FaultReport) -> String {
    let replica = |i: usize| {
        let c = &r.replicas[i];
        format!(
            "replica{}: stored={} rejected={} lost={} duplicated={} unpaired={} rows={}/{} complete_after={:.1}s",
            i + 1,
            c.stored,
            c.rejected,
            c.lost,
            c.duplicated,
            c.unpaired,
            c.declaration_rows.0 + c.rejection_rows.0,
            c.declaration_rows.1 + c.rejection_rows.1,
            c.complete_after_s
        )
    };
    format!(
        "CLUSTER-FAULT {} target=\"{}\" restarted=[{}] accepted={} (this load {}, refused {}, failed {}) {} {} recovered_after={} spooled={} drained_by_cli={} peak_lag={:.0} kafka_outputs={}/{} unconsumed={} in {:.0}s {}",
        r.fault.name(),
        r.target,
        r.restarted.join(", "),
        r.accepted,
        r.accepted_now,
        r.refused,
        r.failed,
        replica(0),
        replica(1),
        r.recovered_after_s.map_or("-".to_owned(), |s| format!("{s:.1}s")),
        r.spooled,
        r.drained_by_cli,
        r.peak_lag_messages,
        r.kafka_outputs,
        r.kafka_raw,
        r.kafka_unconsumed,
        r.seconds,
        if r.passed() { "PASS".to_owned() } else { format!("FAIL: {}", r.problems.join("; ")) }
    )
}

/// Starts the cluster and runs `args.faults` in order. Stops at the first fault that fails
/// (what follows would count its damage again).
pub async fn run(args: &ClusterTestArgs) -> anyhow::Result<Vec<FaultReport>> {
    let mut cluster = Cluster::start(args).await?;
    let mut reports = Vec::new();
    for (i, fault) in args.faults().into_iter().enumerate() {
        let report = cluster.run(fault, 16 + i as u64).await.with_context(|| format!("fault {}", fault.name()))?;
        eprintln!("{}", line(&report));
        let passed = report.passed();
        reports.push(report);
        if let Some(out) = &args.out {
            std::fs::write(out, serde_json::to_vec_pretty(&reports)?)?;
        }
        if !passed {
            eprintln!("stopping: logs and data in {}", cluster.dir.display());
            return Ok(reports);
        }
    }
    let unclean = cluster.stop()?;
    if let Some(last) = reports.last_mut() {
        last.problems.extend(unclean);
    }
    if let Some(out) = &args.out {
        std::fs::write(out, serde_json::to_vec_pretty(&reports)?)?;
    }
    Ok(reports)
}

/// How long a service may drain after SIGTERM (the chart gives each 60-120 s).
const STOP_GRACE: Duration = Duration::from_secs(90);
/// The client every load submits as.
const CLIENT: &str = "cluster-test";

/// The servers and the services, as processes.
struct Cluster {
    args: ClusterTestArgs,
    stack: Stack,
    dir: PathBuf,
    bin: PathBuf,
    brokers: String,
    topics: Topics,
    clients: HarnessClients,
    gateways: [Gateway; 2],
    enrichers: Vec<Service>,
    sinks: Vec<Service>,
    lagwatch: Service,
    lagwatch_metrics: String,
    /// The broker address gateway 2 was given in the orphaned-spool fault, held while it runs.
    nowhere: Option<Nowhere>,
    /// Accepted by the gateways over every fault so far.
    accepted: u64,
}

struct Gateway {
    service: Service,
    url: String,
    admin: String,
    spool: PathBuf,
}

impl Cluster {
    async fn start(args: &ClusterTestArgs) -> anyhow::Result<Cluster> {
        let started = Instant::now();
        let bin = services::bin_dir()?;
        let dir = match &args.dir {
            Some(dir) => dir.clone(),
            None => std::env::temp_dir().join(format!("ehac-cluster-test-{}", std::process::id())),
        };
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let options = StackOptions::ephemeral_cluster(dir.join("stack"), 3)?.with_clickhouse_replicas(2)?.with_broker_network();
        let stack = Stack::start(&Tools::find()?, options).await?;
        let topics = Topics::default();
        stack.provision(&topics, 4).await?;
        eprintln!("cluster up and provisioned after {:.0}s ({})", started.elapsed().as_secs_f64(), dir.display());

        let brokers = stack.kafka_brokers();
        let clients = services::provision_clients(&dir, CLIENT, 4, args.rate)?;
        let gateways = [
            Gateway::start(&bin, &dir, "gateway-1", &clients, &brokers, &[]).await?,
            Gateway::start(&bin, &dir, "gateway-2", &clients, &brokers, &[]).await?,
        ];
        // Port 0: nothing reads the enrichers' and sinks' admin endpoints here.
        let admin = || vec!["--admin-listen".to_owned(), "127.0.0.1:0".to_owned()];
        let enricher_env = services::enricher_env(&stack);
        let mut enrichers = Vec::new();
        for i in 0..2 {
            let name = format!("enricher-{i}");
            let transactional = ["--transactions", "on", "--transactional-id", &format!("ehac-enricher-cluster-{i}")].map(str::to_owned);
            let env: Vec<(String, String)> =
                enricher_env.iter().cloned().chain([("EHAC_KAFKA_GROUP_INSTANCE_ID".to_owned(), name.clone())]).collect();
            enrichers.push(Service::start(&bin, &dir, &name, "ehac-enricher", &[admin(), transactional.to_vec()].concat(), &env)?);
        }
        let sink_env = services::sink_env(&stack);
        anyhow::ensure!(sink_env.iter().any(|(k, _)| k == "EHAC_CLICKHOUSE_CLUSTER"), "the sinks must write the cluster's _local tables");
        let sinks = vec![
            Service::start(&bin, &dir, "sink-0", "ehac-sink", &admin(), &sink_env)?,
            Service::start(&bin, &dir, "sink-1", "ehac-sink", &admin(), &sink_env)?,
        ];
        let lagwatch_args = ["--listen", "127.0.0.1:0", "--poll-interval-ms", "1000"].map(str::to_owned);
        let mut lagwatch =
            Service::start(&bin, &dir, "lagwatch", "ehac-lagwatch", &lagwatch_args, &[("EHAC_KAFKA_BROKERS", brokers.as_str())])?;
        let lagwatch_listen = format!("127.0.0.1:{}", ehac_devstack::bound_port(&mut lagwatch.child, Duration::from_secs(30)).await?);
        // Restarted after an exit, it comes back where the test reads it.
        lagwatch.listen_again_on("--listen", &lagwatch_listen);
        let http = reqwest::Client::new();
        for gateway in &gateways {
            wait_ready(&http, &format!("http://{}/readyz", gateway.admin), Duration::from_secs(60)).await?;
        }
        Ok(Cluster {
            args: args.clone(),
            stack,
            dir,
            bin,
            brokers,
            topics,
            clients,
            gateways,
            enrichers,
            sinks,
            lagwatch,
            lagwatch_metrics: format!("http://{lagwatch_listen}/metrics"),
            nowhere: None,
            accepted: 0,
        })
    }

    /// A load through both gateways with `fault` during it, the healing, and the counts once
    /// both replicas hold everything accepted so far (or stood still for the patience).
    async fn run(&mut self, fault: Fault, seed: u64) -> anyhow::Result<FaultReport> {
        let started = Instant::now();
        let (fault_at, outage) = (Duration::from_secs(self.args.fault_at_secs), Duration::from_secs(self.args.outage_secs));
        let http = reqwest::Client::new();
        let spooled_before = self.spooled(&http).await;
        if fault == Fault::GatewaySpoolOrphaned {
            // Gateway 2 loses its brokers before the load: every declaration it accepts goes
            // to its spool and stays there.
            self.gateways[1].service.stop()?;
            // A short produce deadline: it answers from the spool at once rather than after
            // the usual second per declaration.
            let nowhere = Nowhere::new()?;
            self.gateways[1] = Gateway::start(
                &self.bin,
                &self.dir,
                "gateway-2",
                &self.clients,
                &nowhere.address.to_string(),
                &["--produce-timeout-ms", "20"],
            )
            .await?;
            self.nowhere = Some(nowhere);
        }
        let spooled_cut_off = self.spooled(&http).await;
        let loads: Vec<LoadArgs> = self
            .gateways
            .iter()
            .enumerate()
            .map(|(i, gateway)| LoadArgs {
                invalid_form_percent: 1.0,
                invalid_reference_percent: 1.0,
                concurrency: 32,
                seed: seed * 10 + i as u64,
                ..LoadArgs::steady(&gateway.url, self.args.declarations / 2, self.args.rate / 2.0, CLIENT, &self.clients.api_keys)
            })
            .collect();
        let mut target = String::new();
        let mut healed_at = None;
        let mut peak_lag = 0.0f64;
        let lag_url = self.lagwatch_metrics.clone();
        let inject = async {
            tokio::time::sleep(fault_at).await;
            match fault {
                Fault::LeaderCrash | Fault::ControllerStop => {
                    let node = if fault == Fault::LeaderCrash {
                        let (b, raw) = (self.brokers.clone(), self.topics.raw.clone());
                        tokio::task::spawn_blocking(move || partition_zero_leader(&b, &raw)).await??
                    } else {
                        self.stack.active_controller()? as i32
                    };
                    let index = self.stack.broker_index(node).context("the node is one of ours")?;
                    target = format!("broker node {node}");
                    eprintln!("{}: {target}", fault.name());
                    self.stack.stop_server(Server::BrokerNode(index), fault == Fault::LeaderCrash);
                    tokio::time::sleep(outage).await;
                    self.stack.restart_server(Server::BrokerNode(index)).await?;
                }
                Fault::BrokerPartition => {
                    let (b, raw) = (self.brokers.clone(), self.topics.raw.clone());
                    let node = tokio::task::spawn_blocking(move || partition_zero_leader(&b, &raw)).await??;
                    let index = self.stack.broker_index(node).context("the node is one of ours")?;
                    target = format!("broker node {node}");
                    eprintln!("{}: {target} cut off for {}s", fault.name(), self.args.partition_secs);
                    self.stack.partition_broker(index)?;
                    tokio::time::sleep(Duration::from_secs(self.args.partition_secs)).await;
                    self.stack.heal_broker(index)?;
                }
                Fault::ReplicaCrash | Fault::ZookeeperDown => {
                    let (server, down) = match fault {
                        Fault::ReplicaCrash => (Server::ClickHouseReplica(1), outage),
                        _ => (Server::ZooKeeper, Duration::from_secs(self.args.zookeeper_outage_secs)),
                    };
                    target = if fault == Fault::ReplicaCrash { "ClickHouse replica 2".into() } else { "ZooKeeper".into() };
                    eprintln!("{}: {target}", fault.name());
                    self.stack.stop_server(server, true);
                    tokio::time::sleep(down).await;
                    self.stack.restart_server(server).await?;
                }
                Fault::SinkScale => {
                    target = "sink-1".into();
                    eprintln!("{}: SIGTERM to {target}", fault.name());
                    let status = self.sinks[1].stop()?;
                    anyhow::ensure!(status.success(), "sink-1 exited with {status} after SIGTERM");
                    tokio::time::sleep(outage).await;
                    self.sinks[1].restart()?;
                }
                Fault::GatewaySpoolOrphaned => target = "gateway-2".into(),
            }
            healed_at = Some(Instant::now());
            anyhow::Ok(())
        };
        let loads_run = async {
            let results = futures::future::join_all(loads.iter().map(loadgen::run)).await;
            (results, Instant::now())
        };
        let watch_lag = async {
            loop {
                if let Ok(lag) = services::metric_value(&http, &lag_url, "ehac_consumer_group_lag_messages").await {
                    peak_lag = peak_lag.max(lag);
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        };
        let ((results, load_ended), injected) = tokio::select! {
            done = async { tokio::join!(loads_run, inject) } => done,
            _ = watch_lag => unreachable!("the lag watch never ends"),
        };
        injected?;
        let (mut accepted_now, mut refused, mut failed, mut accepted_by_second) = (0, 0, 0, 0);
        for (i, result) in results.into_iter().enumerate() {
            let result = result?;
            if i == 1 {
                accepted_by_second = result.accepted;
            }
            accepted_now += result.accepted;
            refused += result.refused;
            failed += result.failed;
        }
        self.accepted += accepted_now;
        let spooled = self.spooled(&http).await.saturating_sub(spooled_cut_off) + spooled_cut_off.saturating_sub(spooled_before);
        let mut drained_by_cli = 0;
        let mut problems = Vec::new();
        if fault == Fault::GatewaySpoolOrphaned {
            let in_spool =
                services::metric_value(&http, &format!("http://{}/metrics", self.gateways[1].admin), "ehac_gateway_spool_records")
                    .await
                    .unwrap_or(0.0) as u64;
            eprintln!("{}: SIGKILL of gateway-2 with {in_spool} declarations in its spool", fault.name());
            if in_spool == 0 {
                problems.push("gateway-2's spool was empty when it was killed: the fault did not happen".into());
            }
            if in_spool < accepted_by_second {
                problems.push(format!("gateway-2's spool gauge said {in_spool} for {accepted_by_second} declarations it spooled"));
            }
            self.gateways[1].service.kill()?;
            // The operator's command, as a process: what a Job on the orphaned volume runs.
            let (drained, remaining) = self.spool_drain(&self.gateways[1].spool.clone()).await?;
            drained_by_cli = drained;
            if remaining > 0 || drained < in_spool {
                problems.push(format!("ehac spool drain sent {drained} and left {remaining} of {in_spool}"));
            }
            healed_at = Some(Instant::now());
            self.gateways[1] = Gateway::start(&self.bin, &self.dir, "gateway-2", &self.clients, &self.brokers, &[]).await?;
            self.nowhere = None;
        }

        // Both replicas watched side by side, each until it holds every row (the sinks write
        // replica 1; replica 2 fetches the parts from it).
        let investigator = self.stack.clickhouse_http(WarehouseUser::Investigator);
        let urls = [self.stack.clickhouse_replica_url(0), self.stack.clickhouse_replica_url(1)];
        let patience = Duration::from_secs(self.args.patience_secs);
        let accepted = self.accepted;
        let complete = |i: usize| {
            let (investigator, url) = (&investigator, &urls[i]);
            async move {
                let stored = warehouse_report::wait_for_in(investigator, url, Tables::ReplicaLocal, accepted, 0, patience).await?;
                anyhow::Ok((stored, Instant::now()))
            }
        };
        let (brokers, topics) = (self.brokers.clone(), self.topics.clone());
        let recovered = async {
            let healed = healed_at.unwrap_or(load_ended);
            match fault {
                Fault::LeaderCrash | Fault::ControllerStop | Fault::BrokerPartition => {
                    let deadline = Instant::now() + patience;
                    while Instant::now() < deadline {
                        let (b, t) = (brokers.clone(), topics.clone());
                        if tokio::task::spawn_blocking(move || fully_replicated(&b, &t)).await.ok().and_then(Result::ok) == Some(true) {
                            return Some(healed.elapsed().as_secs_f64());
                        }
                        tokio::time::sleep(Duration::from_millis(250)).await;
                    }
                    None
                }
                _ => None,
            }
        };
        // As systemd (`Restart=always`, `RestartSec=2`) or Kubernetes would: a service that
        // exited while the counts are awaited is started again 2 s later, and reported.
        let mut restarted = Vec::new();
        let supervise = async {
            loop {
                tokio::time::sleep(Duration::from_secs(2)).await;
                match self.restart_exited() {
                    Ok(now_restarted) if !now_restarted.is_empty() => {
                        eprintln!("{}: restarted {}", fault.name(), now_restarted.join(", "));
                        restarted.extend(now_restarted);
                    }
                    Ok(_) => {}
                    Err(e) => eprintln!("{}: restarting an exited service failed: {e:#}", fault.name()),
                }
            }
        };
        let ((first, second), broker_recovered) = tokio::select! {
            counted = async { tokio::join!(async { tokio::join!(complete(0), complete(1)) }, recovered) } => counted,
            _ = supervise => unreachable!("the supervisor never ends"),
        };
        let ((first, first_at), (second, second_at)) = (first?, second?);
        let healed = healed_at.unwrap_or(load_ended);
        let recovered_after_s = match fault {
            Fault::LeaderCrash | Fault::ControllerStop | Fault::BrokerPartition => broker_recovered,
            Fault::ReplicaCrash | Fault::ZookeeperDown => Some(second_at.max(first_at).saturating_duration_since(healed).as_secs_f64()),
            Fault::SinkScale | Fault::GatewaySpoolOrphaned => Some(first_at.saturating_duration_since(healed).as_secs_f64()),
        };
        let mut replicas = Vec::new();
        for (i, (stored, at)) in [(first, first_at), (second, second_at)].into_iter().enumerate() {
            replicas.push(self.replica_count(&investigator, &urls[i], stored, at.saturating_duration_since(load_ended)).await?);
        }
        // The sinks commit their offsets just after ClickHouse answered: give the groups' last
        // commits a moment before what they have not consumed counts.
        let commits_by = Instant::now() + Duration::from_secs(30);
        let kafka: KafkaCounts = loop {
            let (b, t) = (brokers.clone(), topics.clone());
            let counts = tokio::task::spawn_blocking(move || kafka_counts(&b, &t)).await??;
            if counts.unconsumed == 0 || Instant::now() > commits_by {
                break counts;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        };

        if accepted_now <= self.args.declarations * 9 / 10 {
            problems.push(format!("only {accepted_now} of {} accepted", self.args.declarations));
        }
        for (i, r) in replicas.iter().enumerate() {
            let n = i + 1;
            if r.lost != 0 {
                problems.push(format!("lost {} on replica {n}", r.lost));
            }
            if r.duplicated != 0 || r.unpaired != 0 {
                problems.push(format!("duplicated {} unpaired {} on replica {n}", r.duplicated, r.unpaired));
            }
            for (what, (rows, distinct)) in [("declarations", r.declaration_rows), ("rejections", r.rejection_rows)] {
                if rows != distinct {
                    problems.push(format!("{what}_local on replica {n}: count() {rows} != uniqExact(declaration_id) {distinct}"));
                }
            }
        }
        // Exactly one output per raw record, read committed: a consumer of the enriched topic
        // other than the sink has no dedup to hide a batch written twice.
        if kafka.outputs != kafka.raw || kafka.unconsumed != 0 {
            problems.push(format!("Kafka: {} outputs for {} raw records, {} unconsumed", kafka.outputs, kafka.raw, kafka.unconsumed));
        }
        if !problems.is_empty() {
            problems.push(self.diagnose());
        }
        let replicas: [ReplicaCount; 2] = replicas.try_into().expect("two replicas");
        Ok(FaultReport {
            fault,
            target,
            accepted_now,
            accepted: self.accepted,
            refused,
            failed,
            replicas,
            recovered_after_s,
            spooled,
            drained_by_cli,
            peak_lag_messages: peak_lag,
            kafka_raw: kafka.raw,
            kafka_outputs: kafka.outputs,
            kafka_unconsumed: kafka.unconsumed,
            seconds: started.elapsed().as_secs_f64(),
            restarted,
            problems,
        })
    }

    /// Starts again every service process that has exited: what was restarted and how it had
    /// exited. (The gateway cut off on purpose is never among them: it is killed and replaced
    /// by the fault itself.)
    fn restart_exited(&mut self) -> anyhow::Result<Vec<String>> {
        let mut restarted = Vec::new();
        let services = self.gateways.iter_mut().map(|g| &mut g.service).chain(self.enrichers.iter_mut()).chain(self.sinks.iter_mut());
        for service in services.chain([&mut self.lagwatch]) {
            if let Some(exit) = service.restart_if_exited()? {
                restarted.push(format!("{} ({exit})", service.name));
            }
        }
        Ok(restarted)
    }

    /// Runs `ehac spool drain --dir spool` against the cluster: what it drained and left.
    async fn spool_drain(&self, spool: &Path) -> anyhow::Result<(u64, u64)> {
        let ehac = self.bin.join("ehac");
        let output = tokio::process::Command::new(&ehac)
            .args(["spool", "drain", "--give-up-after-secs", "60", "--dir"])
            .arg(spool)
            .env("EHAC_KAFKA_BROKERS", &self.brokers)
            .env("EHAC_TOPIC_RAW", &self.topics.raw)
            .output()
            .await
            .with_context(|| format!("running {}", ehac.display()))?;
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout.lines().find(|l| l.starts_with("SPOOL ")).with_context(|| {
            format!("ehac spool drain printed no SPOOL line ({}): {}", output.status, String::from_utf8_lossy(&output.stderr))
        })?;
        eprintln!("{line}");
        let field = |name: &str| -> anyhow::Result<u64> {
            let value = line.split_whitespace().find_map(|w| w.strip_prefix(name)).with_context(|| format!("no {name} in {line}"))?;
            Ok(value.parse()?)
        };
        Ok((field("drained=")?, field("remaining=")?))
    }

    async fn replica_count(&self, http: &reqwest::Client, url: &str, stored: Stored, after: Duration) -> anyhow::Result<ReplicaCount> {
        Ok(ReplicaCount {
            stored: stored.stored,
            rejected: stored.rejected,
            lost: self.accepted as i64 - stored.stored as i64 - stored.rejected as i64,
            duplicated: stored.duplicated,
            unpaired: stored.unpaired,
            declaration_rows: count_and_distinct(http, url, "ehac.declarations_local").await?,
            rejection_rows: count_and_distinct(http, url, "ehac.rejections_local").await?,
            complete_after_s: after.as_secs_f64(),
        })
    }

    /// Declarations both gateways answered from their spools so far (a counter per process:
    /// a gateway started afresh starts from 0).
    async fn spooled(&self, http: &reqwest::Client) -> u64 {
        let mut total = 0;
        for gateway in &self.gateways {
            let url = format!("http://{}/metrics", gateway.admin);
            total += services::metric_value(http, &url, "ehac_gateway_spooled_total").await.unwrap_or(0.0) as u64;
        }
        total
    }

    /// For a failed fault: which service processes have exited, and each one's last warnings.
    fn diagnose(&mut self) -> String {
        let mut text = format!("logs in {}", self.dir.display());
        let services = self.gateways.iter_mut().map(|g| &mut g.service).chain(self.enrichers.iter_mut()).chain(self.sinks.iter_mut());
        for service in services.chain([&mut self.lagwatch]) {
            if let Ok(Some(status)) = service.child.try_wait() {
                text.push_str(&format!("; {} EXITED ({status})", service.name));
            }
            let warnings = last_warnings(&self.dir.join(format!("{}.log", service.name)), 3);
            if !warnings.is_empty() {
                text.push_str(&format!("; {} last warnings: {}", service.name, warnings.join(" | ")));
            }
        }
        text
    }

    /// SIGTERM to every service: a problem for each that did not exit 0. (The servers stop
    /// when the stack is dropped.)
    fn stop(&mut self) -> anyhow::Result<Vec<String>> {
        let mut unclean = Vec::new();
        let services = self.gateways.iter_mut().map(|g| &mut g.service).chain(self.enrichers.iter_mut()).chain(self.sinks.iter_mut());
        for service in services.chain([&mut self.lagwatch]) {
            let log = self.dir.join(format!("{}.log", service.name));
            match service.stop_within(STOP_GRACE)? {
                Some(status) if status.success() => {}
                Some(status) => unclean.push(format!("{} exited with {status} after SIGTERM; see {}", service.name, log.display())),
                None => unclean.push(format!(
                    "{} still ran {}s after SIGTERM (killed); see {}",
                    service.name,
                    STOP_GRACE.as_secs(),
                    log.display()
                )),
            }
        }
        self.stack.stop();
        Ok(unclean)
    }
}

impl Gateway {
    /// A gateway producing to `brokers`, with its own spool under `dir`.
    async fn start(bin: &Path, dir: &Path, name: &str, clients: &HarnessClients, brokers: &str, extra: &[&str]) -> anyhow::Result<Gateway> {
        let spool = dir.join(format!("{name}-spool"));
        let mut args = services::gateway_args("127.0.0.1:0", "127.0.0.1:0", &spool, &clients.access());
        args.extend(extra.iter().map(|a| (*a).to_owned()));
        let (service, url, admin) = services::start_gateway(bin, dir, name, &args, &[("EHAC_KAFKA_BROKERS", brokers)]).await?;
        wait_ready(&reqwest::Client::new(), &format!("http://{admin}/readyz"), Duration::from_secs(60)).await?;
        Ok(Gateway { service, url, admin, spool })
    }
}

/// The last `n` WARN or ERROR lines of a service's JSON log, without librdkafka's reconnect
/// noise (a broker that is down on purpose), shortened.
fn last_warnings(log: &Path, n: usize) -> Vec<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| {
            (l.contains("\"WARN\"") || l.contains("\"ERROR\""))
                && !l.contains("Connection refused")
                && !l.contains("BrokerTransportFailure")
        })
        .collect();
    lines[lines.len().saturating_sub(n)..].iter().map(|l| l.chars().take(300).collect()).collect()
}

/// The node id of the leader of `topic`'s partition 0. Blocking.
fn partition_zero_leader(brokers: &str, topic: &str) -> anyhow::Result<i32> {
    let metadata = metadata(brokers, Some(topic))?;
    let partition = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .and_then(|t| t.partitions().iter().find(|p| p.id() == 0))
        .with_context(|| format!("no partition 0 of {topic} in the metadata"))?;
    anyhow::ensure!(partition.leader() >= 0, "partition 0 of {topic} has no leader");
    Ok(partition.leader())
}

/// Whether every partition of the pipeline's topics has all its replicas in sync. Blocking.
fn fully_replicated(brokers: &str, topics: &Topics) -> anyhow::Result<bool> {
    let metadata = metadata(brokers, None)?;
    let ours: Vec<_> = metadata.topics().iter().filter(|t| topics.all().contains(&t.name())).collect();
    anyhow::ensure!(!ours.is_empty(), "none of the pipeline's topics in the metadata");
    Ok(ours.iter().flat_map(|t| t.partitions()).all(|p| p.leader() >= 0 && p.isr().len() == p.replicas().len()))
}

fn metadata(brokers: &str, topic: Option<&str>) -> anyhow::Result<rdkafka::metadata::Metadata> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let client: BaseConsumer = rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).set("log_level", "0").create()?;
    Ok(client.fetch_metadata(topic, Duration::from_secs(10))?)
}

/// `count()` and `uniqExact(declaration_id)` of `table`, no FINAL.
async fn count_and_distinct(http: &reqwest::Client, url: &str, table: &str) -> anyhow::Result<(u64, u64)> {
    let sql = format!("SELECT count(), uniqExact(declaration_id) FROM {table} FORMAT TabSeparated");
    let answer = String::from_utf8(warehouse_report::post(http, url, sql).await?)?;
    let numbers: Vec<u64> = answer.split_whitespace().map(str::parse).collect::<Result<_, _>>()?;
    anyhow::ensure!(numbers.len() == 2, "unexpected answer {answer:?}");
    Ok((numbers[0], numbers[1]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_skip_the_reconnect_noise_of_a_broker_down_on_purpose() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("enricher-0.log");
        let lines = [
            r#"{"level":"INFO","fields":{"message":"started"}}"#,
            r#"{"level":"ERROR","fields":{"message":"Connect to ipv4#127.0.0.1:1 failed: Connection refused"}}"#,
            r#"{"level":"WARN","fields":{"message":"transaction aborted"}}"#,
            r#"{"level":"ERROR","fields":{"message":"fenced"}}"#,
        ];
        std::fs::write(&log, lines.join("\n")).unwrap();
        let warnings = last_warnings(&log, 3);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("transaction aborted") && warnings[1].contains("fenced"));
        assert!(last_warnings(&dir.path().join("missing.log"), 3).is_empty());
    }

    #[test]
    fn every_fault_runs_by_default_in_a_fixed_order() {
        let args = ClusterTestArgs {
            declarations: 1,
            rate: 1.0,
            faults: vec![],
            fault_at_secs: 0,
            outage_secs: 0,
            partition_secs: 0,
            zookeeper_outage_secs: 0,
            patience_secs: 0,
            dir: None,
            out: None,
        };
        assert_eq!(args.faults(), Fault::ALL.to_vec());
        let names: Vec<_> = Fault::ALL.iter().map(|f| f.name()).collect();
        assert_eq!(names.len(), names.iter().collect::<std::collections::HashSet<_>>().len(), "names are unique");
    }
}
