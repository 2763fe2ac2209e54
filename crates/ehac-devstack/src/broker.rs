//! Apache Kafka in KRaft mode, run from the jars `deploy/local/install.sh` resolved from Maven
//! Central: one combined broker + controller node, or a three-node cluster (every node both
//! broker and controller, RF 3, min.insync.replicas 2).
//!
//! Each node has its own data directory, a broker port and a controller port on loopback, and
//! a small heap. A node is formatted once (`kafka.tools.StorageTool format`) and then started
//! with `kafka.Kafka server.properties`; a restarted node reuses its data.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

/// The broker's classpath recipe; the Kafka version is pinned in it and nowhere else.
pub const KAFKA_POM: &str = include_str!("../../../deploy/local/kafka/pom.xml");
/// The broker's logging configuration: warnings plus start and stop milestones.
pub const KAFKA_LOG4J: &str = include_str!("../../../deploy/local/kafka/log4j2.properties");

/// The Apache Kafka version the pom pins.
pub fn kafka_version() -> &'static str {
    KAFKA_POM
        .split_once("<kafka.version>")
        .and_then(|(_, rest)| rest.split_once("</kafka.version>"))
        .map(|(version, _)| version.trim())
        .expect("deploy/local/kafka/pom.xml pins <kafka.version>")
}

/// One KRaft node: where it listens and keeps its data.
#[derive(Debug, Clone)]
pub struct BrokerNode {
    pub node_id: u32,
    /// The address it listens on and advertises: 127.0.0.1, or its own on a broker network
    /// ([`crate::network`]).
    pub host: String,
    pub port: u16,
    pub controller_port: u16,
    /// Holds `server.properties`, `data/` and `logs/server.log`.
    pub dir: PathBuf,
}

impl BrokerNode {
    /// The process name used in pid lists and reports: `kafka`, or `kafka-N` in a cluster.
    pub fn process_name(&self, cluster: bool) -> String {
        if cluster {
            format!("kafka-{}", self.node_id)
        } else {
            "kafka".to_owned()
        }
    }

    pub fn log_file(&self) -> PathBuf {
        self.dir.join("logs/server.log")
    }

    pub fn address(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Partitions of `__consumer_offsets` and `__transaction_state` on our nodes (Kafka's default
/// is 50): few, for a small box.
pub const INTERNAL_PARTITIONS: u32 = 5;

/// The partition of an internal topic (`__transaction_state` for a transactional id,
/// `__consumer_offsets` for a group id) whose leader is that key's coordinator: Kafka takes
/// Java's `String.hashCode` of the key, clears the sign bit and reduces it modulo the topic's
/// partition count (`Utils.abs(key.hashCode()) % partitions`).
pub fn coordinator_partition(key: &str, partitions: u32) -> i32 {
    let hash = key.encode_utf16().fold(0i32, |h, unit| h.wrapping_mul(31).wrapping_add(i32::from(unit)));
    ((hash & 0x7fff_ffff) as u32 % partitions) as i32
}

/// `server.properties` for `node` in a cluster of `nodes` (all voters). A single node runs
/// with replication factor 1 for the internal topics, which Kafka's defaults (3) would refuse.
pub fn server_properties(node: &BrokerNode, nodes: &[BrokerNode]) -> String {
    let cluster = nodes.len() > 1;
    let data = node.dir.join("data");
    let mut p = String::new();
    let _ = writeln!(p, "process.roles=broker,controller");
    let _ = writeln!(p, "node.id={}", node.node_id);
    if cluster {
        let voters: Vec<String> = nodes.iter().map(|n| format!("{}@{}:{}", n.node_id, n.host, n.controller_port)).collect();
        let _ = writeln!(p, "controller.quorum.voters={}", voters.join(","));
    } else {
        let _ = writeln!(p, "controller.quorum.bootstrap.servers={}:{}", node.host, node.controller_port);
    }
    let _ = writeln!(p, "listeners=PLAINTEXT://{host}:{},CONTROLLER://{host}:{}", node.port, node.controller_port, host = node.host);
    let _ = writeln!(p, "advertised.listeners=PLAINTEXT://{}:{}", node.host, node.port);
    let _ = writeln!(p, "controller.listener.names=CONTROLLER");
    let _ = writeln!(p, "inter.broker.listener.name=PLAINTEXT");
    let _ = writeln!(p, "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT");
    let _ = writeln!(p, "log.dirs={}", data.display());
    let (rf, min_isr) = if cluster { (3, 2) } else { (1, 1) };
    for key in ["offsets.topic.replication.factor", "transaction.state.log.replication.factor", "default.replication.factor"] {
        let _ = writeln!(p, "{key}={rf}");
    }
    let _ = writeln!(p, "share.coordinator.state.topic.replication.factor={rf}");
    let _ = writeln!(p, "share.coordinator.state.topic.min.isr={min_isr}");
    let _ = writeln!(p, "transaction.state.log.min.isr={min_isr}");
    let _ = writeln!(p, "min.insync.replicas={min_isr}");
    // Small-box settings, as Kafka's own test utilities use: no wait for more members before the
    // first rebalance, few internal partitions, a small cleaner buffer (128 MiB of heap otherwise).
    let _ = writeln!(p, "group.initial.rebalance.delay.ms=0");
    let _ = writeln!(p, "offsets.topic.num.partitions={INTERNAL_PARTITIONS}");
    let _ = writeln!(p, "transaction.state.log.num.partitions={INTERNAL_PARTITIONS}");
    let _ = writeln!(p, "log.cleaner.dedupe.buffer.size=2097152");
    let _ = writeln!(p, "num.network.threads=2");
    let _ = writeln!(p, "num.io.threads=2");
    // A consumer killed with -9 is noticed after its session timeout; the clients ask for 10 s.
    let _ = writeln!(p, "group.min.session.timeout.ms=3000");
    p
}

/// A fresh KRaft cluster id: 16 random bytes, base64url without padding, as
/// `StorageTool random-uuid` prints (done here to save a JVM start).
pub fn new_cluster_id() -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(uuid::Uuid::new_v4().as_bytes())
}

/// The JVM command for a Kafka class, with the node's log directory and our log4j2 config.
pub fn java(libs: &Path, node: &BrokerNode, heap: &str) -> Command {
    let mut java = Command::new("java");
    java.current_dir(&node.dir)
        .arg(heap)
        .arg(format!("-Dlog4j2.configurationFile={}", node.dir.join("log4j2.properties").display()))
        .arg(format!("-Dkafka.logs.dir={}", node.dir.join("logs").display()))
        .arg("-cp")
        .arg(format!("{}/*", libs.display()));
    java
}

/// Writes the node's files and formats its storage (once: an existing `data/meta.properties`
/// is kept, so a restart reuses the data).
pub fn prepare(libs: &Path, node: &BrokerNode, nodes: &[BrokerNode], cluster_id: &str) -> anyhow::Result<()> {
    std::fs::create_dir_all(node.dir.join("logs"))?;
    std::fs::write(node.dir.join("server.properties"), server_properties(node, nodes))?;
    std::fs::write(node.dir.join("log4j2.properties"), KAFKA_LOG4J)?;
    if node.dir.join("data/meta.properties").is_file() {
        return Ok(());
    }
    let mut format = java(libs, node, "-Xmx128m");
    // `=`: a base64url id may begin with "-", which would read as an option.
    format.args(["kafka.tools.StorageTool", "format", &format!("--cluster-id={cluster_id}"), "-c", "server.properties"]);
    if nodes.len() == 1 {
        format.arg("--standalone");
    }
    let output = format.output().context("running java (apt-get install openjdk-17-jre-headless)")?;
    if !output.status.success() {
        bail!(
            "formatting Kafka node {} failed ({}): {}{}",
            node.node_id,
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// The command that runs the node. G1 with short pauses, as Kafka's start script sets.
pub fn server_command(libs: &Path, node: &BrokerNode) -> Command {
    let mut java = java(libs, node, "-Xmx512m");
    java.args(["-Xms128m", "-XX:+UseG1GC", "-XX:MaxGCPauseMillis=20", "-XX:+ExitOnOutOfMemoryError"]);
    java.args(["kafka.Kafka", "server.properties"]);
    java
}

/// The last `lines` lines of a log file, for an error message.
pub fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_maps_to_the_partition_kafka_picks_for_its_coordinator() {
        // "hello".hashCode() is 99162322 in Java; 99162322 % 50 = 22.
        assert_eq!(coordinator_partition("hello", 50), 22);
        // Java's hashCode of this string is Integer.MIN_VALUE: Kafka's abs() makes it 0, where
        // a plain abs would overflow.
        assert_eq!(coordinator_partition("polygenelubricants", 50), 0);
        // Non-ASCII keys hash by UTF-16 code units: "é" is 233.
        assert_eq!(coordinator_partition("é", 50), 233 % 50);
    }

    fn node(id: u32) -> BrokerNode {
        BrokerNode {
            node_id: id,
            host: "127.0.0.1".into(),
            port: 19092 + id as u16,
            controller_port: 29092 + id as u16,
            dir: PathBuf::from(format!("/d/{id}")),
        }
    }

    #[test]
    fn the_version_is_read_from_the_pom() {
        let version = kafka_version();
        assert!(version.starts_with("4."), "{version}");
    }

    #[test]
    fn a_single_node_runs_internal_topics_with_one_replica() {
        let n = node(1);
        let p = server_properties(&n, std::slice::from_ref(&n));
        assert!(p.contains("controller.quorum.bootstrap.servers=127.0.0.1:29093\n"), "{p}");
        assert!(p.contains("offsets.topic.replication.factor=1\n"));
        assert!(p.contains(&format!("transaction.state.log.num.partitions={INTERNAL_PARTITIONS}\n")));
        assert!(p.contains("transaction.state.log.min.isr=1\n"));
        assert!(!p.contains("controller.quorum.voters"));
    }

    #[test]
    fn a_cluster_lists_every_voter_and_replicates_three_times() {
        let nodes = [node(1), node(2), node(3)];
        let p = server_properties(&nodes[1], &nodes);
        assert!(p.contains("node.id=2\n"));
        assert!(p.contains("controller.quorum.voters=1@127.0.0.1:29093,2@127.0.0.1:29094,3@127.0.0.1:29095\n"), "{p}");
        assert!(p.contains("default.replication.factor=3\n"));
        assert!(p.contains("min.insync.replicas=2\n"));
    }

    #[test]
    fn cluster_ids_are_22_characters_of_base64url() {
        let id = new_cluster_id();
        assert_eq!(id.len(), 22);
        assert!(id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'), "{id}");
        assert_ne!(id, new_cluster_id());
    }
}
