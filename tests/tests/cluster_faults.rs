//! Faults on a cluster (issue 16, first piece): three KRaft broker nodes (RF 3, min ISR 2),
//! ZooKeeper and two ClickHouse 18.16 replicas of one shard, with a gateway, an enricher and
//! two sinks as processes configured for the cluster (every broker in bootstrap, the sinks told
//! the cluster's name so they write the replicated `_local` tables). A few thousand
//! declarations at a few hundred a second, ONE fault during the load, a restart, the drain, and
//! then the count on EACH replica's own tables, without FINAL: every accepted declaration
//! stored or rejected (lost = 0), one row per declaration (duplicated = 0), in both databases.
//! The services run as processes: build them first (`cargo build --bins`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use ehac_cli::chaos::{kafka_counts, KafkaCounts};
use ehac_cli::loadgen::{self, LoadArgs};
use ehac_cli::services::{self, wait_ready, Service};
use ehac_cli::warehouse_report::{self, Stored, Tables};
use ehac_devstack::{free_port, Server, Stack, StackOptions, Tools, WarehouseUser};
use ehac_stream::config::Topics;
use rdkafka::consumer::{BaseConsumer, Consumer};

const DECLARATIONS: u64 = 3_000;
const RATE: f64 = 300.0;
/// Into the load when the fault strikes, and how long the server stays down.
const FAULT_AT: Duration = Duration::from_secs(3);
const OUTAGE: Duration = Duration::from_secs(8);
/// How long the counts may stand still before what is missing counts as missing.
const PATIENCE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    /// SIGKILL of the broker node that leads partition 0 of the raw topic.
    RawLeaderCrash,
    /// SIGKILL of ClickHouse replica 2 (the one the sinks do not write).
    SecondReplicaCrash,
}

/// What one run saw.
#[derive(Debug)]
struct Outcome {
    /// Accepted over every run on this cluster so far.
    accepted: u64,
    /// Each replica's own tables.
    replicas: [Stored; 2],
    /// Per replica: rows and distinct declaration ids in `declarations_local` and
    /// `rejections_local`, read without FINAL.
    rows: [[(u64, u64); 2]; 2],
    kafka: KafkaCounts,
    /// From the end of the load until each replica held every row.
    complete_after: [Duration; 2],
    /// From the restart of the crashed server until replica 2 held every row.
    replica_two_after_restart: Duration,
    /// The node (its id) that was killed, for the broker fault.
    killed_node: Option<u32>,
    /// Declarations the gateway had put in its spool so far (the broker slower than its
    /// produce deadline, or away).
    spooled: u64,
    seconds: f64,
}

impl Outcome {
    fn line(&self, name: &str) -> String {
        let r = |i: usize| {
            let s = &self.replicas[i];
            let [(dr, du), (rr, ru)] = self.rows[i];
            format!(
                "replica{}: stored={} rejected={} lost={} duplicated={} unpaired={} declarations={dr}/{du} rejections={rr}/{ru} complete_after={:.1}s",
                i + 1,
                s.stored,
                s.rejected,
                self.accepted as i64 - s.stored as i64 - s.rejected as i64,
                s.duplicated,
                s.unpaired,
                self.complete_after[i].as_secs_f64()
            )
        };
        format!(
            "CLUSTER-FAULT {name}: killed_node={:?} accepted={} {} {} replica2_after_restart={:.1}s kafka_outputs={}/{} unconsumed={} spooled={} in {:.0}s",
            self.killed_node,
            self.accepted,
            r(0),
            r(1),
            self.replica_two_after_restart.as_secs_f64(),
            self.kafka.outputs,
            self.kafka.raw,
            self.kafka.unconsumed,
            self.spooled,
            self.seconds
        )
    }

    /// `sent`: declarations sent to the cluster so far.
    fn assert_nothing_lost_or_duplicated(&self, name: &str, sent: u64) {
        let line = self.line(name);
        eprintln!("{line}");
        assert!(self.accepted > sent * 9 / 10, "most declarations accepted: {line}");
        for (i, stored) in self.replicas.iter().enumerate() {
            assert_eq!(stored.stored + stored.rejected, self.accepted, "lost on replica {}: {line}", i + 1);
            assert_eq!(stored.duplicated, 0, "duplicated on replica {}: {line}", i + 1);
            assert_eq!(stored.unpaired, 0, "unpaired on replica {}: {line}", i + 1);
            for (rows, distinct) in self.rows[i] {
                assert_eq!(rows, distinct, "count() != uniqExact(declaration_id) on replica {}: {line}", i + 1);
            }
        }
        assert_eq!(self.kafka.outputs, self.kafka.raw, "one Kafka output per raw record: {line}");
        assert_eq!(self.kafka.unconsumed, 0, "{line}");
    }
}

/// One cluster for both faults (a second one would double the test's time, most of it the
/// servers' start): the raw topic's leader first, then replica 2, each under its own load, and
/// the counts after each fault cover everything accepted so far.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_raw_leader_and_a_killed_replica_under_load_lose_and_duplicate_nothing_on_either_replica() {
    let started = Instant::now();
    let mut cluster = Cluster::start().await.expect("the cluster and the services start");
    let leader = cluster.run(Fault::RawLeaderCrash, 16).await.expect("the broker fault runs");
    assert!(leader.killed_node.is_some());
    leader.assert_nothing_lost_or_duplicated("raw-leader-crash", DECLARATIONS);
    let replica = cluster.run(Fault::SecondReplicaCrash, 17).await.expect("the replica fault runs");
    replica.assert_nothing_lost_or_duplicated("replica-two-crash", 2 * DECLARATIONS);
    assert!(cluster.stop().expect("the services stop"), "every service exited 0 after SIGTERM; logs in {}", cluster.dir.display());
    eprintln!("both faults in {:.0}s", started.elapsed().as_secs_f64());
}

fn bin_dir() -> PathBuf {
    // target/debug/deps/cluster_faults-<hash> -> target/debug, where cargo puts the binaries.
    let dir = std::env::current_exe().unwrap().parent().unwrap().parent().unwrap().to_path_buf();
    assert!(dir.join("ehac-sink").is_file(), "service binaries missing in {}: run cargo build --bins first", dir.display());
    dir
}

/// The node id of the leader of `topic`'s partition 0.
fn partition_zero_leader(brokers: &str, topic: &str) -> anyhow::Result<i32> {
    let client: BaseConsumer = rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).set("log_level", "0").create()?;
    let metadata = client.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partition = metadata
        .topics()
        .iter()
        .find(|t| t.name() == topic)
        .and_then(|t| t.partitions().iter().find(|p| p.id() == 0))
        .ok_or_else(|| anyhow::anyhow!("no partition 0 of {topic} in the metadata"))?;
    anyhow::ensure!(partition.leader() >= 0, "partition 0 of {topic} has no leader");
    Ok(partition.leader())
}

/// The servers and the services, as processes.
struct Cluster {
    stack: Stack,
    dir: PathBuf,
    brokers: String,
    topics: Topics,
    gateway: Service,
    enricher: Service,
    sinks: Vec<Service>,
    gateway_url: String,
    gateway_admin: String,
    api_keys: Vec<String>,
    /// Accepted by the gateway over every run so far: what each replica must hold.
    accepted: u64,
}

impl Cluster {
    async fn start() -> anyhow::Result<Cluster> {
        let started = Instant::now();
        let bin = bin_dir();
        let dir = ehac_tests::test_dir(Some("cluster-faults"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let options = StackOptions::ephemeral_cluster(dir.join("stack"), 3)?.with_clickhouse_replicas(2)?;
        let stack = Stack::start(&Tools::find()?, options).await?;
        let topics = Topics::default();
        stack.provision(&topics, 4).await?;
        eprintln!("cluster up and provisioned after {:.0}s", started.elapsed().as_secs_f64());

        let brokers = stack.kafka_brokers();
        assert_eq!(brokers.split(',').count(), 3, "every broker in bootstrap: {brokers}");
        let (enricher_env, sink_env) = (services::enricher_env(&stack), services::sink_env(&stack));
        assert!(sink_env.iter().any(|(k, _)| k == "EHAC_CLICKHOUSE_CLUSTER"), "the sinks write the cluster's _local tables");
        let admin = || -> anyhow::Result<Vec<String>> { Ok(vec!["--admin-listen".into(), format!("127.0.0.1:{}", free_port()?)]) };
        let clients = services::provision_clients(&dir, "cluster-faults", 4, RATE)?;
        let (gateway_port, gateway_admin) = (free_port()?, format!("127.0.0.1:{}", free_port()?));
        let gateway_args =
            services::gateway_args(&format!("127.0.0.1:{gateway_port}"), &gateway_admin, &dir.join("gateway-spool"), &clients.access());
        let gateway = Service::start(&bin, &dir, "gateway", "ehac-gateway", &gateway_args, &[("EHAC_KAFKA_BROKERS", brokers.as_str())])?;
        let enricher_args = [admin()?, vec!["--transactions".into(), "on".into()]].concat();
        let enricher = Service::start(&bin, &dir, "enricher", "ehac-enricher", &enricher_args, &enricher_env)?;
        let sinks = vec![
            Service::start(&bin, &dir, "sink-0", "ehac-sink", &admin()?, &sink_env)?,
            Service::start(&bin, &dir, "sink-1", "ehac-sink", &admin()?, &sink_env)?,
        ];
        wait_ready(&reqwest::Client::new(), &format!("http://{gateway_admin}/readyz"), Duration::from_secs(60)).await?;
        Ok(Cluster {
            stack,
            dir,
            brokers,
            topics,
            gateway,
            enricher,
            sinks,
            gateway_url: format!("http://127.0.0.1:{gateway_port}"),
            gateway_admin,
            api_keys: clients.api_keys,
            accepted: 0,
        })
    }

    /// A load of [`DECLARATIONS`] with `fault` during it, the restart, and the counts once both
    /// replicas hold everything accepted so far (or stood still for [`PATIENCE`]).
    async fn run(&mut self, fault: Fault, seed: u64) -> anyhow::Result<Outcome> {
        let started = Instant::now();
        let load = LoadArgs {
            gateway: self.gateway_url.clone(),
            count: DECLARATIONS,
            baseline_rate: RATE,
            surge_factor: 1.0,
            surge_share: 0.0,
            invalid_form_percent: 1.0,
            invalid_reference_percent: 1.0,
            concurrency: 32,
            seed,
            client_id: "cluster-faults".into(),
            api_keys: self.api_keys.clone(),
            attempts: 1,
            batch: 0,
        };
        let (stack, brokers, topics) = (&mut self.stack, &self.brokers, &self.topics);
        let mut killed_node = None;
        let mut restarted_at = Instant::now();
        let inject = async {
            tokio::time::sleep(FAULT_AT).await;
            let server = match fault {
                Fault::RawLeaderCrash => {
                    let (b, raw) = (brokers.clone(), topics.raw.clone());
                    let leader = tokio::task::spawn_blocking(move || partition_zero_leader(&b, &raw)).await??;
                    let index = stack.options.brokers.iter().position(|n| n.node_id as i32 == leader).expect("the leader is one of ours");
                    killed_node = Some(leader as u32);
                    eprintln!("SIGKILL of broker node {leader}, leader of {} partition 0", topics.raw);
                    Server::BrokerNode(index)
                }
                Fault::SecondReplicaCrash => {
                    eprintln!("SIGKILL of ClickHouse replica 2");
                    Server::ClickHouseReplica(1)
                }
            };
            stack.stop_server(server, true);
            tokio::time::sleep(OUTAGE).await;
            stack.restart_server(server).await?;
            restarted_at = Instant::now();
            eprintln!("restarted after {:.1}s down", OUTAGE.as_secs_f64());
            anyhow::Ok(())
        };
        // The load's own end: the restart may outlast it.
        let load_run = async { (loadgen::run(&load).await, Instant::now()) };
        let ((load, load_ended), injected) = tokio::join!(load_run, inject);
        let load = load?;
        injected?;
        self.accepted += load.accepted;
        eprintln!("load: accepted {} refused {} failed {} in {:.1}s", load.accepted, load.refused, load.failed, load.elapsed.as_secs_f64());

        let investigator = self.stack.clickhouse_http(WarehouseUser::Investigator);
        let urls = [self.stack.clickhouse_replica_url(0), self.stack.clickhouse_replica_url(1)];
        // Both replicas watched side by side, each until it holds every row (the sinks write
        // replica 1; replica 2 fetches the parts from it).
        let complete = |i: usize| {
            let (investigator, url, accepted) = (&investigator, &urls[i], self.accepted);
            async move {
                let stored = warehouse_report::wait_for_in(investigator, url, Tables::ReplicaLocal, accepted, 0, PATIENCE).await?;
                anyhow::Ok((stored, Instant::now()))
            }
        };
        let (first, second) = tokio::join!(complete(0), complete(1));
        let ((first, first_at), (second, second_at)) = (first?, second?);
        let mut rows = [[(0, 0); 2]; 2];
        for (i, url) in urls.iter().enumerate() {
            for (j, table) in ["ehac.declarations_local", "ehac.rejections_local"].iter().enumerate() {
                rows[i][j] = count_and_distinct(&investigator, url, table).await?;
            }
        }
        let metrics = format!("http://{}/metrics", self.gateway_admin);
        let spooled = services::metric_value(&reqwest::Client::new(), &metrics, "ehac_gateway_spooled_total").await.unwrap_or(0.0) as u64;
        let (kafka, names) = (self.brokers.clone(), self.topics.clone());
        let kafka = tokio::task::spawn_blocking(move || kafka_counts(&kafka, &names)).await??;
        Ok(Outcome {
            accepted: self.accepted,
            replicas: [first, second],
            rows,
            kafka,
            complete_after: [first_at.saturating_duration_since(load_ended), second_at.saturating_duration_since(load_ended)],
            replica_two_after_restart: second_at.saturating_duration_since(restarted_at),
            killed_node,
            spooled,
            seconds: started.elapsed().as_secs_f64(),
        })
    }

    /// SIGTERM to every service: whether each exited 0. (The servers stop when the stack is
    /// dropped.)
    fn stop(&mut self) -> anyhow::Result<bool> {
        let mut clean = true;
        for service in [&mut self.gateway, &mut self.enricher].into_iter().chain(self.sinks.iter_mut()) {
            let status = service.stop()?;
            if !status.success() {
                clean = false;
                eprintln!("{} exited with {status}; see {}", service.name, log(&self.dir, &service.name).display());
            }
        }
        Ok(clean)
    }
}

fn log(dir: &Path, service: &str) -> PathBuf {
    dir.join(format!("{service}.log"))
}

/// `count()` and `uniqExact(declaration_id)` of `table`, no FINAL.
async fn count_and_distinct(http: &reqwest::Client, url: &str, table: &str) -> anyhow::Result<(u64, u64)> {
    let sql = format!("SELECT count(), uniqExact(declaration_id) FROM {table} FORMAT TabSeparated");
    let answer = String::from_utf8(warehouse_report::post(http, url, sql).await?)?;
    let numbers: Vec<u64> = answer.split_whitespace().map(str::parse).collect::<Result<_, _>>()?;
    anyhow::ensure!(numbers.len() == 2, "unexpected answer {answer:?}");
    Ok((numbers[0], numbers[1]))
}
