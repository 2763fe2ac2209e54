//! A local stack of real servers: Apache Kafka (KRaft, from the jars `deploy/local/install.sh`
//! resolved from Maven Central) and ClickHouse, on loopback ports, with all their data under one
//! directory. Used by `ehac dev up`, `ehac demo`, `ehac chaos`, `ehac bench` and the integration
//! tests. The broker is one combined broker + controller node, or (for the cluster tests) three
//! nodes with RF 3 and min.insync.replicas 2. ClickHouse is one ClickHouse 26.9 server (from
//! the chdb-core wheel, `modern.rs`), or (with [`StackOptions::with_clickhouse_replicas`])
//! ZooKeeper and Debian's ClickHouse 18.16 replicas of one shard (`replicas.rs`): 18.16 is the
//! only ClickHouse that can replicate on these machines, and nothing else uses it.
//! [`Prometheus`] and [`Alertmanager`] start those servers the same
//! way, for the alerting tests.
//!
//! Servers started [`Lifetime::Attached`] die with the thread that started them (PR_SET_PDEATHSIG),
//! so a test run or demo that crashes leaves no stray servers behind.

pub mod access;
pub mod broker;
pub mod modern;
pub mod network;
pub mod replicas;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ehac_stream::config::{ClickHouseArgs, PepperArgs, Topics};

pub use access::{StackSecrets, WarehouseUser};
pub use broker::{kafka_version, BrokerNode};
pub use replicas::{ClickHouseCluster, ClickHouseReplica};

/// The installer, compiled in so that `ehac dev up` works from any directory.
pub const INSTALL_SCRIPT: &str = include_str!("../../../deploy/local/install.sh");

/// Where the servers' binaries are.
#[derive(Debug, Clone)]
pub struct Tools {
    /// The Apache Kafka broker's jars.
    pub kafka_libs: PathBuf,
    /// A `python3` that imports chdb: serves the single ClickHouse 26.9 server.
    pub python_with_chdb: PathBuf,
    /// Debian's `clickhouse-server` (18.16), needed only by a replicated ClickHouse.
    pub clickhouse_server: Option<PathBuf>,
    /// ZooKeeper's jar, needed only by a replicated ClickHouse (Debian's `zookeeper`).
    pub zookeeper_jar: Option<PathBuf>,
}

fn on_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()))
}

fn tools_dir() -> PathBuf {
    std::env::var_os("EHAC_TOOLS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/ehac/tools"))
}

/// `$EHAC_TOOLS_DIR/kafka-<version>`, where install.sh puts the broker (`libs/`, `.complete`).
pub fn kafka_home() -> PathBuf {
    tools_dir().join(format!("kafka-{}", kafka_version()))
}

impl Tools {
    /// Finds the servers, or says exactly what to install.
    pub fn find() -> anyhow::Result<Tools> {
        let home = kafka_home();
        let kafka = Some(home.join("libs")).filter(|_| home.join(".complete").is_file());
        let java = on_path("java");
        let python_with_chdb = modern::python_with_chdb();
        match (kafka, java, python_with_chdb) {
            (Some(kafka_libs), Some(_), Some(python_with_chdb)) => {
                let zookeeper_jar = Some(PathBuf::from(replicas::ZOOKEEPER_JAR)).filter(|p| p.is_file());
                let clickhouse_server =
                    on_path("clickhouse-server").or_else(|| Some(PathBuf::from("/usr/bin/clickhouse-server")).filter(|p| p.is_file()));
                Ok(Tools { kafka_libs, python_with_chdb, clickhouse_server, zookeeper_jar })
            }
            (kafka, java, clickhouse) => {
                let mut missing = Vec::new();
                if kafka.is_none() {
                    missing.push(format!(
                        "Apache Kafka {} in {} (mvn copy-dependencies of deploy/local/kafka/pom.xml)",
                        kafka_version(),
                        home.display()
                    ));
                }
                if java.is_none() {
                    missing.push("java (apt-get install openjdk-17-jre-headless)".to_owned());
                }
                if clickhouse.is_none() {
                    missing.push(format!("ClickHouse 26.9 (python3 -m pip install chdb-core=={})", modern::CHDB_CORE_VERSION));
                }
                bail!("missing {}: run `bash deploy/local/install.sh`, which installs them", missing.join(" and "))
            }
        }
    }

    /// Finds the servers, running the installer first if any is missing.
    pub fn find_or_install() -> anyhow::Result<Tools> {
        if let Ok(tools) = Tools::find() {
            return Ok(tools);
        }
        // The compiled-in installer has no pom beside it: hand it the compiled-in one.
        std::fs::create_dir_all(tools_dir())?;
        let pom = tools_dir().join(format!("kafka-{}.pom.xml", kafka_version()));
        std::fs::write(&pom, broker::KAFKA_POM)?;
        // What the main job runs, nothing of the tests' or the bench's.
        let installer = Command::new("bash")
            .arg("-c")
            .arg(INSTALL_SCRIPT)
            .env("EHAC_KAFKA_POM", &pom)
            .env("EHAC_INSTALL_TESTS", "0")
            .env("EHAC_INSTALL_OHA", "0")
            .status();
        let status = installer.context("running the installer")?;
        if !status.success() {
            bail!("the installer failed ({status})");
        }
        Tools::find()
    }
}

/// How long the servers live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifetime {
    /// Killed when the thread that started them exits (tests, demo).
    Attached,
    /// Keep running after this process exits (`ehac dev up`).
    Detached,
}

#[derive(Debug, Clone)]
pub struct StackOptions {
    pub dir: PathBuf,
    /// One node, or three for a cluster.
    pub brokers: Vec<BrokerNode>,
    /// ClickHouse's ports (replica 1's, when replicated).
    pub clickhouse_http_port: u16,
    pub clickhouse_tcp_port: u16,
    /// ZooKeeper and ClickHouse replicas instead of one server; off unless asked for.
    pub clickhouse_cluster: Option<ClickHouseCluster>,
    /// The broker nodes each in a network namespace, so one can be partitioned off; off
    /// unless asked for (it needs root and iproute2).
    pub broker_network: Option<network::BrokerNetwork>,
    pub lifetime: Lifetime,
    /// The ports were picked here ([`free_port`]), not given by an operator: a start that fails
    /// because another process bound one of them first is retried on fresh ports.
    pub ports_picked: bool,
}

impl StackOptions {
    /// Free ports, one broker node, servers attached to this thread.
    pub fn ephemeral(dir: impl Into<PathBuf>) -> anyhow::Result<Self> {
        Self::ephemeral_cluster(dir, 1)
    }

    /// Free ports, `nodes` broker nodes (1 or 3), servers attached to this thread.
    pub fn ephemeral_cluster(dir: impl Into<PathBuf>, nodes: u32) -> anyhow::Result<Self> {
        let dir = dir.into();
        let brokers = (1..=nodes)
            .map(|node_id| {
                Ok(BrokerNode {
                    node_id,
                    host: "127.0.0.1".into(),
                    port: free_port()?,
                    controller_port: free_port()?,
                    dir: dir.join(format!("kafka-{node_id}")),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(StackOptions {
            dir,
            brokers,
            clickhouse_http_port: free_port()?,
            clickhouse_tcp_port: free_port()?,
            clickhouse_cluster: None,
            broker_network: None,
            lifetime: Lifetime::Attached,
            ports_picked: true,
        })
    }

    /// ZooKeeper and `replicas` ClickHouse replicas of one shard (cluster
    /// [`replicas::CLUSTER_NAME`]) on free ports, replica 1 on this stack's ClickHouse ports.
    /// [`Stack::provision`] then migrates `ON CLUSTER`, and [`Stack::clickhouse_as`] names the
    /// cluster, so a sink configured from it writes the replicated local tables.
    pub fn with_clickhouse_replicas(mut self, replicas: usize) -> anyhow::Result<Self> {
        self.clickhouse_cluster = Some(ClickHouseCluster::ephemeral(replicas, self.clickhouse_http_port, self.clickhouse_tcp_port)?);
        Ok(self)
    }

    /// The same stack on fresh ports, its servers' data gone (a formatted KRaft node keeps its
    /// controller's address), its secrets kept.
    fn on_fresh_ports(mut self) -> anyhow::Result<Self> {
        for node in &mut self.brokers {
            (node.port, node.controller_port) = (free_port()?, free_port()?);
            let _ = std::fs::remove_dir_all(&node.dir);
        }
        (self.clickhouse_http_port, self.clickhouse_tcp_port) = (free_port()?, free_port()?);
        if let Some(cluster) = &self.clickhouse_cluster {
            let replicas = cluster.replicas.len();
            self.clickhouse_cluster = Some(ClickHouseCluster::ephemeral(replicas, self.clickhouse_http_port, self.clickhouse_tcp_port)?);
            let _ = std::fs::remove_dir_all(self.dir.join("zookeeper"));
        }
        for index in 0..self.clickhouse_cluster.as_ref().map_or(1, |c| c.replicas.len()) {
            let _ = std::fs::remove_dir_all(replicas::replica_dir(&self.dir, index));
        }
        Ok(self)
    }

    /// Each broker node in its own network namespace on a bridge, at its own address, so that
    /// [`Stack::partition_broker`] can cut one off. Needs root (`ip netns`).
    pub fn with_broker_network(mut self) -> Self {
        let ids: Vec<u32> = self.brokers.iter().map(|n| n.node_id).collect();
        let network = network::BrokerNetwork::plan(&ids);
        for node in &mut self.brokers {
            node.host = network.host(node.node_id);
        }
        self.broker_network = Some(network);
        self
    }

    /// One broker node with its broker port fixed (e.g. 9092 for `ehac dev up`).
    pub fn with_kafka_port(mut self, port: u16) -> Self {
        self.brokers.truncate(1);
        self.brokers[0].port = port;
        self.ports_picked = false;
        self
    }
}

/// A running broker and ClickHouse.
#[derive(Debug)]
pub struct Stack {
    pub options: StackOptions,
    /// ClickHouse passwords and the pepper file, made for this stack (see [`access`]).
    pub secrets: StackSecrets,
    pub pids: Vec<(String, u32)>,
    children: Vec<Child>,
    tools: Tools,
}

/// Whether a metadata request to `brokers` answers and lists `expected` brokers.
fn metadata_lists(brokers: &str, expected: usize) -> bool {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    if brokers.is_empty() {
        return false;
    }
    let client: Result<BaseConsumer, _> = rdkafka::ClientConfig::new().set("bootstrap.servers", brokers).set("log_level", "0").create();
    client.is_ok_and(|c| c.fetch_metadata(None, Duration::from_secs(2)).is_ok_and(|m| m.brokers().len() >= expected))
}

/// Whether a start failed because a port was already bound: Kafka's `BindException`,
/// ClickHouse's `Address already in use`, as the failure report quotes their logs.
fn port_taken(e: &anyhow::Error) -> bool {
    let report = format!("{e:#}").to_lowercase();
    report.contains("address already in use") || report.contains("bindexception")
}

/// A port the OS says is free now. Another process may bind it before the caller does: a
/// server that binds its own port from it must be retried when it finds the port taken (as
/// [`Stack::start`] does).
///
/// Where the caller binds the port itself, bind port 0 and read back the bound address instead.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// The TCP ports process `pid` listens on: its sockets (`/proc/PID/fd`) matched against the
/// listening sockets of its network namespace (`/proc/PID/net/tcp`, `tcp6`). How a harness
/// learns which port a server given port 0 bound, with no window between choosing and binding,
/// even when the server's log cannot be read.
pub fn listening_ports(pid: u32) -> anyhow::Result<Vec<u16>> {
    let mut sockets = std::collections::HashSet::new();
    for fd in std::fs::read_dir(format!("/proc/{pid}/fd"))?.flatten() {
        let Ok(target) = std::fs::read_link(fd.path()) else { continue };
        if let Some(inode) = target.to_str().and_then(|t| t.strip_prefix("socket:[")?.strip_suffix(']').map(str::to_owned)) {
            sockets.insert(inode);
        }
    }
    let mut ports = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap_or_default();
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode
            let fields: Vec<&str> = line.split_whitespace().collect();
            const LISTEN: &str = "0A";
            if fields.len() > 9 && fields[3] == LISTEN && sockets.contains(fields[9]) {
                if let Some(port) = fields[1].rsplit_once(':').and_then(|(_, hex)| u16::from_str_radix(hex, 16).ok()) {
                    ports.push(port);
                }
            }
        }
    }
    ports.sort_unstable();
    ports.dedup();
    Ok(ports)
}

/// The two ports of one of our services started with `--listen 127.0.0.1:0` and
/// `--admin-listen 127.0.0.1:0` (the gateway), read back once both are bound: (its API's, its
/// admin endpoint's). The admin endpoint is the one that answers `/healthz`. Fails if the
/// process exits or `within` passes first.
pub async fn api_and_admin_ports(child: &mut Child, within: Duration) -> anyhow::Result<(u16, u16)> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("the service exited during start-up ({status})");
        }
        if let [a, b] = listening_ports(child.id())?[..] {
            let healthy = |port: u16| http.get(format!("http://127.0.0.1:{port}/healthz")).send();
            match (healthy(a).await, healthy(b).await) {
                (Ok(x), _) if x.status().is_success() => return Ok((b, a)),
                (_, Ok(y)) if y.status().is_success() => return Ok((a, b)),
                _ => {}
            }
        }
        if Instant::now() > deadline {
            bail!("the service did not bind its two ports within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The one port of a service started with port 0 (`--listen 127.0.0.1:0` or `--admin-listen
/// 127.0.0.1:0`), read back once it is bound. Fails if the process exits or `within` passes
/// first.
pub async fn bound_port(child: &mut Child, within: Duration) -> anyhow::Result<u16> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait()? {
            bail!("the service exited during start-up ({status})");
        }
        if let [port] = listening_ports(child.id())?[..] {
            return Ok(port);
        }
        if Instant::now() > deadline {
            bail!("the service did not bind a port within {within:?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An address where nothing accepts connections while this lives: a port held by a socket that
/// never listens, so a connection to it is refused at once (a broker address that leads
/// nowhere, with no window in which another process could start serving on it).
pub struct Nowhere {
    _held: tokio::net::TcpSocket,
    pub address: std::net::SocketAddr,
}

impl Nowhere {
    pub fn new() -> anyhow::Result<Nowhere> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.bind("127.0.0.1:0".parse()?)?;
        let address = socket.local_addr()?;
        Ok(Nowhere { _held: socket, address })
    }
}

/// Starts a process with stdout and stderr written to `log` (a fresh file).
pub fn spawn(command: Command, log: &Path, lifetime: Lifetime) -> anyhow::Result<Child> {
    let log_file = std::fs::File::create(log).with_context(|| format!("creating {}", log.display()))?;
    spawn_logging_to(command, log_file, lifetime)
}

/// Like [`spawn`], appending to `log`: for a process started again after a kill.
pub fn spawn_appending(command: Command, log: &Path, lifetime: Lifetime) -> anyhow::Result<Child> {
    let log_file = std::fs::OpenOptions::new().create(true).append(true).open(log).with_context(|| format!("opening {}", log.display()))?;
    spawn_logging_to(command, log_file, lifetime)
}

fn spawn_logging_to(mut command: Command, log_file: std::fs::File, lifetime: Lifetime) -> anyhow::Result<Child> {
    use std::os::unix::process::CommandExt;
    command.stdin(Stdio::null()).stdout(log_file.try_clone()?).stderr(log_file);
    match lifetime {
        Lifetime::Detached => {
            command.process_group(0);
        }
        Lifetime::Attached => unsafe {
            // Only async-signal-safe calls between fork and exec: prctl is one.
            command.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        },
    }
    command.spawn().with_context(|| format!("starting {:?}", command.get_program()))
}

/// config.xml of a ClickHouse server in `dir` (also its data path): what every server of the
/// stack shares, then `own`, what only this kind of server has (where its users come from).
pub(crate) fn clickhouse_config(dir: &Path, http_port: u16, tcp_port: u16, own: &str) -> String {
    let d = dir.display();
    // <yandex> is the root both 18.16 and modern servers accept. No interserver or other ports,
    // so several servers can run side by side. Idle HTTP connections are kept longer than the
    // clickhouse crate keeps them in its pool, so a server never closes one under a request.
    format!(
        r#"<yandex>
  <logger><level>warning</level><log>{d}/server.log</log><errorlog>{d}/err.log</errorlog><size>50M</size><count>2</count></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{http_port}</http_port>
  <tcp_port>{tcp_port}</tcp_port>
  <path>{d}/</path>
  <tmp_path>{d}/tmp/</tmp_path>
  <user_files_path>{d}/user_files/</user_files_path>
  <format_schema_path>{d}/format_schemas/</format_schema_path>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <max_concurrent_queries>100</max_concurrent_queries>
  <keep_alive_timeout>10</keep_alive_timeout>
{own}</yandex>
"#
    )
}

/// One of the stack's servers, for fault injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// Every broker node (the only one, on a single node).
    Broker,
    /// One broker node of a cluster, by its index in [`StackOptions::brokers`].
    BrokerNode(usize),
    /// Every ClickHouse server (the only one, unless replicated).
    ClickHouse,
    /// One ClickHouse replica, by its index in [`ClickHouseCluster::replicas`].
    ClickHouseReplica(usize),
    /// The replicated ClickHouse's ZooKeeper.
    ZooKeeper,
}

impl Stack {
    /// Starts Kafka and ClickHouse and waits until both answer (Kafka: a metadata request that
    /// lists every node).
    /// Ports picked by [`free_port`] can be taken by another process before the servers bind
    /// them (Kafka and ClickHouse bind their own, from their config files): such a start is
    /// retried on fresh ports, a few times.
    pub async fn start(tools: &Tools, options: StackOptions) -> anyhow::Result<Stack> {
        const ATTEMPTS: u32 = 4;
        let mut options = options;
        let mut attempt = 1;
        loop {
            match Self::start_once(tools, options.clone()).await {
                Err(e) if options.ports_picked && attempt < ATTEMPTS && port_taken(&e) => {
                    tracing::warn!(attempt, "a server's port was taken before it bound it; starting again on fresh ports");
                    options = options.on_fresh_ports()?;
                    attempt += 1;
                }
                started => return started,
            }
        }
    }

    async fn start_once(tools: &Tools, options: StackOptions) -> anyhow::Result<Stack> {
        let mut options = options;
        std::fs::create_dir_all(&options.dir)?;
        options.dir = options.dir.canonicalize()?;
        let secrets = StackSecrets::load_or_create(&options.dir)?;
        if let Some(network) = &options.broker_network {
            network.create().context("creating the broker network (needs root and iproute2)")?;
        }
        let replicas = options.clickhouse_cluster.as_ref().map_or(1, |c| c.replicas.len());
        for index in 0..replicas {
            let clickhouse_dir = replicas::replica_dir(&options.dir, index);
            std::fs::create_dir_all(clickhouse_dir.join("config.d"))?;
            let (http_port, tcp_port) = match &options.clickhouse_cluster {
                Some(cluster) => (cluster.replicas[index].http_port, cluster.replicas[index].tcp_port),
                None => (options.clickhouse_http_port, options.clickhouse_tcp_port),
            };
            if options.clickhouse_cluster.is_some() {
                let users = "  <users_config>users.xml</users_config>\n";
                std::fs::write(clickhouse_dir.join("config.xml"), clickhouse_config(&clickhouse_dir, http_port, tcp_port, users))?;
                std::fs::write(clickhouse_dir.join("users.xml"), secrets.users_xml())?;
            } else {
                std::fs::write(clickhouse_dir.join("config.xml"), modern::config(&clickhouse_dir, http_port, tcp_port))?;
                access::write_private(&clickhouse_dir.join("users.xml"), secrets.modern_users_xml()?.as_bytes())?;
            }
            let cluster_xml = clickhouse_dir.join("config.d/cluster.xml");
            match &options.clickhouse_cluster {
                Some(cluster) => access::write_private(&cluster_xml, cluster.config_d(index, &secrets).as_bytes())?,
                None => {
                    let _ = std::fs::remove_file(&cluster_xml);
                }
            }
        }
        if let Some(cluster) = &options.clickhouse_cluster {
            if tools.clickhouse_server.is_none() {
                bail!("a replicated ClickHouse needs Debian's clickhouse-server (18.16): apt-get install clickhouse-server clickhouse-client (or run `EHAC_INSTALL_TESTS=1 bash deploy/local/install.sh`)");
            }
            if tools.zookeeper_jar.is_none() {
                bail!("a replicated ClickHouse needs ZooKeeper: apt-get install zookeeper (or run `EHAC_INSTALL_TESTS=1 bash deploy/local/install.sh`)");
            }
            let zookeeper_dir = options.dir.join("zookeeper");
            std::fs::create_dir_all(zookeeper_dir.join("data"))?;
            std::fs::write(zookeeper_dir.join("zoo.cfg"), replicas::zoo_cfg(&zookeeper_dir, cluster.zookeeper_port))?;
        }
        for node in &mut options.brokers {
            std::fs::create_dir_all(&node.dir)?;
            node.dir = node.dir.canonicalize()?;
        }
        let cluster_id = broker::new_cluster_id();
        let libs = tools.kafka_libs.clone();
        let nodes = options.brokers.clone();
        // Formatting is a JVM start per node: run them side by side.
        let formats: Vec<_> = nodes
            .iter()
            .map(|node| {
                let (libs, node, nodes, cluster_id) = (libs.clone(), node.clone(), nodes.clone(), cluster_id.clone());
                tokio::task::spawn_blocking(move || broker::prepare(&libs, &node, &nodes, &cluster_id))
            })
            .collect();
        for format in formats {
            format.await??;
        }
        let mut stack = Stack { options, secrets, pids: Vec::new(), children: Vec::new(), tools: tools.clone() };
        for i in 0..stack.options.brokers.len() {
            stack.spawn_server(Server::BrokerNode(i))?;
        }
        if stack.options.clickhouse_cluster.is_some() {
            stack.spawn_server(Server::ZooKeeper)?;
        }
        stack.spawn_server(Server::ClickHouse)?;
        if let Err(e) = stack.wait_until_up(Duration::from_secs(90)).await {
            stack.stop();
            return Err(e);
        }
        Ok(stack)
    }

    fn cluster(&self) -> bool {
        self.options.brokers.len() > 1
    }

    /// How many ClickHouse servers the stack runs.
    fn clickhouse_servers(&self) -> usize {
        self.options.clickhouse_cluster.as_ref().map_or(1, |c| c.replicas.len())
    }

    /// The pid-list names a server goes by.
    fn names(&self, server: Server) -> Vec<String> {
        match server {
            Server::Broker => self.options.brokers.iter().map(|n| n.process_name(self.cluster())).collect(),
            Server::BrokerNode(i) => vec![self.options.brokers[i].process_name(self.cluster())],
            Server::ClickHouse => (0..self.clickhouse_servers()).flat_map(|i| self.names(Server::ClickHouseReplica(i))).collect(),
            // Replica 1 keeps the single server's name.
            Server::ClickHouseReplica(0) => vec!["clickhouse-server".to_owned()],
            Server::ClickHouseReplica(i) => vec![format!("clickhouse-server-{}", i + 1)],
            Server::ZooKeeper => vec!["zookeeper".to_owned()],
        }
    }

    fn spawn_server(&mut self, server: Server) -> anyhow::Result<()> {
        if server == Server::Broker {
            for i in 0..self.options.brokers.len() {
                self.spawn_server(Server::BrokerNode(i))?;
            }
            return Ok(());
        }
        if server == Server::ClickHouse {
            for i in 0..self.clickhouse_servers() {
                self.spawn_server(Server::ClickHouseReplica(i))?;
            }
            return Ok(());
        }
        let child = match server {
            Server::BrokerNode(i) => {
                let node = &self.options.brokers[i];
                let mut command = broker::server_command(&self.tools.kafka_libs, node);
                if let Some(network) = &self.options.broker_network {
                    command = network.wrap(node.node_id, &command);
                }
                // Appended, not truncated: a restarted broker keeps the earlier output.
                spawn_appending(command, &node.dir.join("stdout.log"), self.options.lifetime)?
            }
            Server::ClickHouseReplica(i) => {
                let clickhouse_dir = replicas::replica_dir(&self.options.dir, i).canonicalize()?;
                let clickhouse = match &self.tools.clickhouse_server {
                    Some(server) if self.options.clickhouse_cluster.is_some() => {
                        let mut command = Command::new(server);
                        command.current_dir(&clickhouse_dir).arg(format!("--config-file={}", clickhouse_dir.join("config.xml").display()));
                        command
                    }
                    _ => modern::server_command(&self.tools.python_with_chdb, &clickhouse_dir)?,
                };
                spawn_appending(clickhouse, &clickhouse_dir.join("stdout.log"), self.options.lifetime)?
            }
            Server::ZooKeeper => {
                let jar = self.tools.zookeeper_jar.as_ref().context("no ZooKeeper jar (apt-get install zookeeper)")?;
                let dir = self.options.dir.join("zookeeper");
                spawn_appending(replicas::zookeeper_command(jar, &dir), &dir.join("zookeeper.log"), self.options.lifetime)?
            }
            Server::Broker | Server::ClickHouse => unreachable!("handled above"),
        };
        let name = self.names(server).remove(0);
        self.pids.retain(|(n, _)| *n != name);
        self.pids.push((name, child.id()));
        self.children.push(child);
        Ok(())
    }

    /// Stops a server: a broker or database outage. `crash` kills it (SIGKILL), otherwise it
    /// gets SIGTERM (for Kafka a controlled shutdown) and 30 s before SIGKILL.
    pub fn stop_server(&mut self, server: Server, crash: bool) {
        for name in self.names(server) {
            if let Some(position) = self.pids.iter().position(|(n, _)| *n == name) {
                let (_, pid) = self.pids.remove(position);
                if crash {
                    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
                } else {
                    terminate(pid, Duration::from_secs(30));
                }
                self.children.retain_mut(|c| {
                    c.id() != pid || {
                        let _ = c.wait();
                        false
                    }
                });
            }
        }
    }

    /// Freezes a server (SIGSTOP) until [`Stack::thaw`]: a server that keeps its connections
    /// open and answers nothing, as in a long GC pause or a hung host. Requests sent meanwhile
    /// wait in its sockets and are handled once it is thawed.
    pub fn freeze(&self, server: Server) {
        self.signal_each(server, libc::SIGSTOP);
    }

    /// Resumes a frozen server (SIGCONT).
    pub fn thaw(&self, server: Server) {
        self.signal_each(server, libc::SIGCONT);
    }

    fn signal_each(&self, server: Server, signal: libc::c_int) {
        for name in self.names(server) {
            if let Some((_, pid)) = self.pids.iter().find(|(n, _)| *n == name) {
                // SAFETY: kill(2) on a server this stack started.
                unsafe { libc::kill(*pid as i32, signal) };
            }
        }
    }

    /// Starts a stopped server again on the same ports with the same data, and waits for it.
    pub async fn restart_server(&mut self, server: Server) -> anyhow::Result<()> {
        self.spawn_server(server)?;
        self.wait_until_up(Duration::from_secs(90)).await
    }

    /// The pid of a running server.
    pub fn pid(&self, server: Server) -> Option<u32> {
        let name = self.names(server).remove(0);
        self.pids.iter().find(|(n, _)| *n == name).map(|(_, pid)| *pid)
    }

    /// Where each broker node writes its log (for an operator following a failure).
    pub fn broker_logs(&self) -> Vec<PathBuf> {
        self.options.brokers.iter().map(BrokerNode::log_file).collect()
    }

    async fn wait_until_up(&mut self, within: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + within;
        let http = reqwest::Client::new();
        loop {
            for child in &mut self.children {
                if let Some(status) = child.try_wait()? {
                    bail!("a server exited during start-up ({status})\n{}", self.failure_report());
                }
            }
            let running: Vec<bool> = (0..self.options.brokers.len()).map(|i| self.pid(Server::BrokerNode(i)).is_some()).collect();
            let brokers = self.kafka_brokers_running(&running);
            let expected = running.iter().filter(|r| **r).count();
            let broker_up = tokio::task::spawn_blocking(move || metadata_lists(&brokers, expected)).await.unwrap_or(false);
            let mut clickhouse_up = true;
            for i in (0..self.clickhouse_servers()).filter(|i| self.pid(Server::ClickHouseReplica(*i)).is_some()) {
                let ping = format!("{}/ping", self.clickhouse_replica_url(i));
                clickhouse_up &= matches!(http.get(&ping).send().await, Ok(r) if r.status().is_success());
            }
            let zookeeper =
                self.options.clickhouse_cluster.as_ref().filter(|_| self.pid(Server::ZooKeeper).is_some()).map(|c| c.zookeeper_port);
            let zookeeper_up = match zookeeper {
                Some(port) => tokio::task::spawn_blocking(move || replicas::zookeeper_ok(port)).await.unwrap_or(false),
                None => true,
            };
            if broker_up && clickhouse_up && zookeeper_up {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "servers not up after {within:?} (kafka: {broker_up}, clickhouse: {clickhouse_up}, zookeeper: {zookeeper_up})\n{}",
                    self.failure_report()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    /// The brokers' and ClickHouse's last log lines, for a start that failed.
    fn failure_report(&self) -> String {
        let mut report = String::new();
        for node in &self.options.brokers {
            for log in [node.log_file(), node.dir.join("stdout.log")] {
                report.push_str(&format!("--- last lines of {}:\n{}\n", log.display(), broker::tail(&log, 15)));
            }
        }
        for i in 0..self.clickhouse_servers() {
            let clickhouse_dir = replicas::replica_dir(&self.options.dir, i);
            for log in [clickhouse_dir.join("err.log"), clickhouse_dir.join("stdout.log")] {
                report.push_str(&format!("--- last lines of {}:\n{}\n", log.display(), broker::tail(&log, 10)));
            }
        }
        if self.options.clickhouse_cluster.is_some() {
            let zookeeper = self.options.dir.join("zookeeper/zookeeper.log");
            report.push_str(&format!("--- last lines of {}:\n{}\n", zookeeper.display(), broker::tail(&zookeeper, 10)));
        }
        report
    }

    fn kafka_brokers_running(&self, running: &[bool]) -> String {
        let nodes = self.options.brokers.iter().zip(running).filter(|(_, r)| **r).map(|(n, _)| n.address());
        nodes.collect::<Vec<_>>().join(",")
    }

    /// The node id that coordinates `key` in one of Kafka's internal topics: the transaction
    /// coordinator of a transactional id (`__transaction_state`) or the group coordinator of a
    /// group id (`__consumer_offsets`). Blocking (a metadata request).
    pub fn coordinator(&self, internal_topic: &str, key: &str) -> anyhow::Result<i32> {
        use rdkafka::consumer::{BaseConsumer, Consumer};
        let partition = broker::coordinator_partition(key, broker::INTERNAL_PARTITIONS);
        let client: BaseConsumer =
            rdkafka::ClientConfig::new().set("bootstrap.servers", self.kafka_brokers()).set("log_level", "0").create()?;
        let metadata = client.fetch_metadata(Some(internal_topic), Duration::from_secs(10))?;
        let leader = metadata
            .topics()
            .iter()
            .find(|t| t.name() == internal_topic)
            .and_then(|t| t.partitions().iter().find(|p| p.id() == partition))
            .map(|p| p.leader())
            .with_context(|| format!("no partition {partition} of {internal_topic} yet (nothing has used it)"))?;
        anyhow::ensure!(leader >= 0, "partition {partition} of {internal_topic} has no leader");
        Ok(leader)
    }

    /// The node id of the active KRaft controller: the leader in the quorum state of the
    /// running node with the newest leader epoch (each node keeps `quorum-state` in its
    /// metadata log directory; a node that was down may still name an old leader).
    pub fn active_controller(&self) -> anyhow::Result<u32> {
        let mut newest: Option<(i64, i64)> = None;
        for (index, node) in self.options.brokers.iter().enumerate() {
            if self.pid(Server::BrokerNode(index)).is_none() {
                continue;
            }
            let path = node.dir.join("data/__cluster_metadata-0/quorum-state");
            let Ok(text) = std::fs::read_to_string(&path) else { continue };
            let state: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("reading {}", path.display()))?;
            let (leader, epoch) = (state["leaderId"].as_i64().unwrap_or(-1), state["leaderEpoch"].as_i64().unwrap_or(-1));
            if leader >= 0 && newest.is_none_or(|(_, e)| epoch > e) {
                newest = Some((leader, epoch));
            }
        }
        newest.map(|(leader, _)| leader as u32).context("no running node has elected a controller")
    }

    /// The index in [`StackOptions::brokers`] of the node with `node_id`.
    pub fn broker_index(&self, node_id: i32) -> Option<usize> {
        self.options.brokers.iter().position(|n| n.node_id as i32 == node_id)
    }

    /// Bootstrap servers: every node.
    pub fn kafka_brokers(&self) -> String {
        self.options.brokers.iter().map(BrokerNode::address).collect::<Vec<_>>().join(",")
    }

    /// ClickHouse (replica 1, when replicated).
    pub fn clickhouse_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.options.clickhouse_http_port)
    }

    /// Replica `index` of a replicated ClickHouse (0 is [`Stack::clickhouse_url`]).
    pub fn clickhouse_replica_url(&self, index: usize) -> String {
        match &self.options.clickhouse_cluster {
            Some(cluster) => format!("http://127.0.0.1:{}", cluster.replicas[index].http_port),
            None => self.clickhouse_url(),
        }
    }

    /// The cluster's name, when ClickHouse is replicated.
    pub fn clickhouse_cluster(&self) -> Option<&str> {
        self.options.clickhouse_cluster.as_ref().map(|c| c.name.as_str())
    }

    /// How to connect to ClickHouse as `user` (replica 1, naming the cluster when replicated).
    pub fn clickhouse_as(&self, user: WarehouseUser) -> ClickHouseArgs {
        self.clickhouse_replica_as(0, user)
    }

    /// How to connect to replica `index` as `user`.
    pub fn clickhouse_replica_as(&self, index: usize, user: WarehouseUser) -> ClickHouseArgs {
        ClickHouseArgs {
            clickhouse_cluster: self.clickhouse_cluster().map(str::to_owned),
            ..access::clickhouse_args(self.clickhouse_replica_url(index), &self.secrets, user)
        }
    }

    /// An HTTP client that speaks to ClickHouse as `user` (X-ClickHouse-User / X-ClickHouse-Key
    /// headers, which 18.16 reads; the password stays out of URLs and so out of logs).
    pub fn clickhouse_http(&self, user: WarehouseUser) -> reqwest::Client {
        access::http_client(&self.secrets, user)
    }

    /// `EHAC_CLICKHOUSE_*` for a service process that connects as `user`.
    pub fn clickhouse_env(&self, user: WarehouseUser) -> Vec<(String, String)> {
        let args = self.clickhouse_as(user);
        let mut env = vec![
            ("EHAC_CLICKHOUSE_URL".into(), args.clickhouse_url),
            ("EHAC_CLICKHOUSE_USER".into(), args.clickhouse_user),
            ("EHAC_CLICKHOUSE_PASSWORD".into(), args.clickhouse_password),
        ];
        env.extend(args.clickhouse_cluster.map(|cluster| ("EHAC_CLICKHOUSE_CLUSTER".into(), cluster)));
        env
    }

    /// The traveller-key pepper of this stack: a 0600 file in its directory, version 1.
    pub fn pepper(&self) -> PepperArgs {
        access::pepper_args(&self.options.dir)
    }

    /// `EHAC_PEPPER_FILE` and `EHAC_PEPPER_VERSION` for an enricher process (the path only,
    /// never the pepper).
    pub fn pepper_env(&self) -> Vec<(String, String)> {
        let pepper = self.pepper();
        vec![
            ("EHAC_PEPPER_FILE".into(), pepper.pepper_file.expect("a file").display().to_string()),
            ("EHAC_PEPPER_VERSION".into(), pepper.pepper_version.to_string()),
        ]
    }

    /// Creates the pipeline's topics and applies the ClickHouse migrations.
    pub async fn provision(&self, topics: &Topics, partitions: i32) -> anyhow::Result<()> {
        let brokers = self.kafka_brokers();
        // A fresh broker may refuse admin requests for a moment after it starts listening.
        let mut attempt = 0;
        loop {
            match ehac_stream::kafka::ensure_topics(&brokers, &topics.all(), partitions).await {
                Ok(()) => break,
                Err(e) if attempt < 20 => {
                    attempt += 1;
                    tracing::debug!(error = %e, "broker not ready for topic creation yet");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e.context("creating topics")),
            }
        }
        ehac_stream::warehouse::migrate(
            &ehac_stream::warehouse::client(&self.clickhouse_as(WarehouseUser::Migrator)),
            self.clickhouse_cluster(),
        )
        .await
        .with_context(|| format!("applying migrations\n{}", self.failure_report()))?;
        if self.clickhouse_cluster().is_none() {
            // What access.sql sets on the schema itself (the views' definers); its users and
            // grants are already in the server's users.xml.
            let migrator = ehac_stream::warehouse::client(&self.clickhouse_as(WarehouseUser::Migrator));
            for statement in access::AccessPlan::parse(ehac_stream::warehouse::ACCESS_SQL)?.after_migrations {
                migrator.query(&statement).execute().await.with_context(|| format!("applying access.sql: {statement}"))?;
            }
        }
        Ok(())
    }

    /// The version ClickHouse reports (`SELECT version()`), e.g. 26.9.2.1.
    pub async fn clickhouse_version(&self) -> anyhow::Result<String> {
        let migrator = ehac_stream::warehouse::client(&self.clickhouse_as(WarehouseUser::Migrator));
        Ok(migrator.query("SELECT version()").fetch_one::<String>().await?)
    }

    /// SIGTERM to every server at once, SIGKILL to any still running after 30 s. (At once: a
    /// Kafka node whose quorum is gone waits minutes in a controlled shutdown.)
    pub fn stop(&mut self) {
        for (_, pid) in &self.pids {
            signal_term(*pid);
        }
        for (_, pid) in &self.pids {
            terminate(*pid, Duration::from_secs(30));
        }
        for child in &mut self.children {
            let _ = child.wait();
        }
        self.children.clear();
        if let Some(network) = &self.options.broker_network {
            network.remove();
        }
    }

    /// Cuts broker node `index` off the network (both directions) until [`Stack::heal_broker`].
    pub fn partition_broker(&self, index: usize) -> anyhow::Result<()> {
        let network = self.options.broker_network.as_ref().context("no broker network: StackOptions::with_broker_network")?;
        network.partition(self.options.brokers[index].node_id)
    }

    pub fn heal_broker(&self, index: usize) -> anyhow::Result<()> {
        let network = self.options.broker_network.as_ref().context("no broker network: StackOptions::with_broker_network")?;
        network.heal(self.options.brokers[index].node_id)
    }
}

impl Drop for Stack {
    fn drop(&mut self) {
        if self.options.lifetime == Lifetime::Attached {
            self.stop();
        }
    }
}

/// Where a Debian-packaged Prometheus binary (`prometheus`, `promtool`) is, or what to install.
pub fn prometheus_tool(name: &str) -> anyhow::Result<PathBuf> {
    debian_tool(name, "prometheus (Debian's package has the server and promtool)")
}

/// Where a Debian-packaged Alertmanager binary (`prometheus-alertmanager`, `amtool`) is, or what
/// to install.
pub fn alertmanager_tool(name: &str) -> anyhow::Result<PathBuf> {
    debian_tool(name, "prometheus-alertmanager (Debian's package has the server and amtool)")
}

fn debian_tool(name: &str, package: &str) -> anyhow::Result<PathBuf> {
    on_path(name)
        .or_else(|| Some(PathBuf::from("/usr/bin").join(name)).filter(|p| p.is_file()))
        .with_context(|| format!("missing {name}: apt-get install {package}, or run `EHAC_INSTALL_TESTS=1 bash deploy/local/install.sh`"))
}

/// A server of the Prometheus family (Prometheus, Alertmanager) on a loopback port, its config,
/// data and log under `dir`. It stops when dropped or when the thread that started it exits.
#[derive(Debug)]
pub struct MonitoringServer {
    pub port: u16,
    pub dir: PathBuf,
    /// The server's stdout and stderr.
    pub log: PathBuf,
    child: Child,
}

impl MonitoringServer {
    /// Writes `config` to `dir/<config_name>` and starts `binary` with it, its data in
    /// `dir/data` (passed as `storage_flag`), listening on a loopback port, plus `extra_flags`;
    /// returns once `/-/ready` answers. A port taken between choosing it and the server binding
    /// it ("address already in use") is retried with another.
    async fn start(
        binary: PathBuf,
        dir: &Path,
        (config_name, config): (&str, &str),
        storage_flag: &str,
        extra_flags: &[&str],
    ) -> anyhow::Result<MonitoringServer> {
        let what = binary.file_name().map_or_else(|| binary.display().to_string(), |n| n.to_string_lossy().into_owned());
        std::fs::create_dir_all(dir)?;
        let dir = dir.canonicalize()?;
        std::fs::write(dir.join(config_name), config)?;
        let log = dir.join(format!("{what}.log"));
        let http = reqwest::Client::new();
        for _attempt in 0..5 {
            let port = free_port()?;
            let mut command = Command::new(&binary);
            command
                .current_dir(&dir)
                .arg(format!("--config.file={}", dir.join(config_name).display()))
                .arg(format!("{storage_flag}={}", dir.join("data").display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .arg("--log.level=warn")
                .args(extra_flags);
            let child = spawn(command, &log, Lifetime::Attached)?;
            let mut server = MonitoringServer { port, dir: dir.clone(), log: log.clone(), child };
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                if let Some(status) = server.child.try_wait()? {
                    if std::fs::read_to_string(&log).unwrap_or_default().contains("address already in use") {
                        break;
                    }
                    bail!("{what} exited during start-up ({status}); see {}", log.display());
                }
                if matches!(http.get(format!("{}/-/ready", server.url())).send().await, Ok(r) if r.status().is_success()) {
                    return Ok(server);
                }
                if Instant::now() > deadline {
                    bail!("{what} not ready after 60 s; see {}", log.display());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
        bail!("{what} found no free port in 5 attempts; see {}", log.display())
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for MonitoringServer {
    fn drop(&mut self) {
        terminate(self.child.id(), Duration::from_secs(10));
        let _ = self.child.wait();
    }
}

/// A real Prometheus server, for the alerting tests.
pub struct Prometheus;

impl Prometheus {
    /// Writes `config` (prometheus.yml; rule files it names relative to `dir` must already be
    /// there) and starts the server; returns once it is ready.
    pub async fn start(dir: &Path, config: &str) -> anyhow::Result<MonitoringServer> {
        MonitoringServer::start(prometheus_tool("prometheus")?, dir, ("prometheus.yml", config), "--storage.tsdb.path", &[]).await
    }
}

/// A real Alertmanager (Debian's `prometheus-alertmanager`), clustering off, for the alerting
/// tests.
pub struct Alertmanager;

impl Alertmanager {
    /// Writes `config` (alertmanager.yml) and starts the server; returns once it is ready.
    pub async fn start(dir: &Path, config: &str) -> anyhow::Result<MonitoringServer> {
        // A single Alertmanager: no gossip port to open (and collide on).
        let no_cluster = ["--cluster.listen-address="];
        MonitoringServer::start(
            alertmanager_tool("prometheus-alertmanager")?,
            dir,
            ("alertmanager.yml", config),
            "--storage.path",
            &no_cluster,
        )
        .await
    }
}

/// Whether a process with this pid exists.
pub fn alive(pid: u32) -> bool {
    unsafe { libc::kill(pid as i32, 0) == 0 }
}

/// SIGTERM, then SIGKILL if still alive after `grace`.
pub fn terminate(pid: u32, grace: Duration) {
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        // Reap if it is our child; harmless otherwise.
        unsafe { libc::waitpid(pid as i32, std::ptr::null_mut(), libc::WNOHANG) };
        if !alive(pid) {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
}

/// Sends SIGTERM and returns at once.
pub fn signal_term(pid: u32) {
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ports_a_process_listens_on_are_read_back_and_others_are_not() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        // A connected socket of this process: not a listening one.
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let ports = listening_ports(std::process::id()).unwrap();
        assert!(ports.contains(&port), "{ports:?} lacks {port}");
        drop(listener);
        assert!(!listening_ports(std::process::id()).unwrap().contains(&port));
    }

    #[test]
    fn a_missing_server_is_an_error_that_says_what_to_install() {
        // The only test in this binary that changes the environment.
        std::env::set_var("PATH", "");
        std::env::set_var("EHAC_TOOLS_DIR", "/nonexistent");
        let err = Tools::find().expect_err("nothing can be found").to_string();
        assert!(err.contains(&format!("Apache Kafka {}", kafka_version())), "{err}");
        assert!(err.contains("apt-get install openjdk-17-jre-headless"), "{err}");
        assert!(err.contains("deploy/local/install.sh"), "{err}");
    }
}
