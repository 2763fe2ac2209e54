//! A replicated ClickHouse for the stack: ZooKeeper (Debian's `zookeeper` package, run
//! standalone from its jar) and ClickHouse 18.16 replicas of one shard, each with its own data
//! directory and a generated `config.d/cluster.xml` (ZooKeeper, macros, `remote_servers`,
//! `distributed_ddl`, the interserver port replicas fetch parts from).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::access::{StackSecrets, WarehouseUser};
use crate::free_port;

/// Where Debian's `zookeeper` package puts the server's jar (its manifest names the
/// dependencies).
pub const ZOOKEEPER_JAR: &str = "/usr/share/java/zookeeper.jar";
/// A logging backend for ZooKeeper's slf4j (from libslf4j-java, which zookeeper depends on):
/// without one the server says nothing, even when it fails.
const SLF4J_SIMPLE_JAR: &str = "/usr/share/java/slf4j-simple.jar";

/// One ClickHouse server of the cluster.
#[derive(Debug, Clone)]
pub struct ClickHouseReplica {
    pub http_port: u16,
    pub tcp_port: u16,
    /// Where the other replicas fetch this one's parts.
    pub interserver_port: u16,
}

/// ZooKeeper plus one shard of ClickHouse replicas.
#[derive(Debug, Clone)]
pub struct ClickHouseCluster {
    /// The cluster's name in `remote_servers` (what `--clickhouse-cluster` names).
    pub name: String,
    pub zookeeper_port: u16,
    /// Replica 1 (index 0) listens on the stack's `clickhouse_http_port` and
    /// `clickhouse_tcp_port`, so everything that talks to "the" ClickHouse talks to it.
    pub replicas: Vec<ClickHouseReplica>,
}

/// The cluster name the dev stack gives its replicas.
pub const CLUSTER_NAME: &str = "ehac";

impl ClickHouseCluster {
    /// `replicas` servers (at least 1), replica 1 on the given ports, the rest on free ones.
    pub fn ephemeral(replicas: usize, http_port: u16, tcp_port: u16) -> anyhow::Result<Self> {
        let mut list = vec![ClickHouseReplica { http_port, tcp_port, interserver_port: free_port()? }];
        for _ in 1..replicas.max(1) {
            list.push(ClickHouseReplica { http_port: free_port()?, tcp_port: free_port()?, interserver_port: free_port()? });
        }
        Ok(ClickHouseCluster { name: CLUSTER_NAME.to_owned(), zookeeper_port: free_port()?, replicas: list })
    }

    /// `config.d/cluster.xml` of replica `index`.
    pub fn config_d(&self, index: usize, secrets: &StackSecrets) -> String {
        let own = &self.replicas[index];
        // Distributed reads that the local replica does not serve connect to the others as
        // this user: the investigator reads both databases and nothing else (readonly, no
        // DDL). tests/tests/cluster.rs reads through it with prefer_localhost_replica=0. A
        // deployment gives the cluster a user of its own.
        let user = WarehouseUser::Investigator;
        let replicas: String = self
            .replicas
            .iter()
            .map(|r| {
                format!(
                    "        <replica><host>127.0.0.1</host><port>{}</port><user>{}</user><password>{}</password></replica>\n",
                    r.tcp_port,
                    user.name(),
                    secrets.password(user)
                )
            })
            .collect();
        format!(
            r#"<yandex>
  <interserver_http_host>127.0.0.1</interserver_http_host>
  <interserver_http_port>{interserver}</interserver_http_port>
  <zookeeper>
    <node><host>127.0.0.1</host><port>{zk}</port></node>
    <session_timeout_ms>10000</session_timeout_ms>
  </zookeeper>
  <macros><cluster>{name}</cluster><shard>01</shard><replica>replica-{number}</replica></macros>
  <distributed_ddl><path>/clickhouse/task_queue/ddl</path></distributed_ddl>
  <remote_servers>
    <{name}>
      <shard>
        <internal_replication>true</internal_replication>
{replicas}      </shard>
    </{name}>
  </remote_servers>
</yandex>
"#,
            interserver = own.interserver_port,
            zk = self.zookeeper_port,
            name = self.name,
            number = index + 1,
        )
    }
}

/// The data directory of replica `index` under the stack's directory: `clickhouse` for the
/// first (as on a single server), `clickhouse-N` for replica N.
pub fn replica_dir(stack_dir: &Path, index: usize) -> PathBuf {
    if index == 0 {
        stack_dir.join("clickhouse")
    } else {
        stack_dir.join(format!("clickhouse-{}", index + 1))
    }
}

/// zoo.cfg for a standalone server on loopback with its data in `dir`.
pub fn zoo_cfg(dir: &Path, port: u16) -> String {
    format!(
        "tickTime=500\ninitLimit=10\nsyncLimit=5\ndataDir={}\nclientPort={port}\nclientPortAddress=127.0.0.1\n\
         admin.enableServer=false\n4lw.commands.whitelist=ruok,srvr\nmaxClientCnxns=0\n",
        dir.join("data").display()
    )
}

/// The command that runs ZooKeeper with `<dir>/zoo.cfg`.
pub fn zookeeper_command(jar: &Path, dir: &Path) -> Command {
    let mut classpath = jar.display().to_string();
    if Path::new(SLF4J_SIMPLE_JAR).is_file() {
        classpath.push(':');
        classpath.push_str(SLF4J_SIMPLE_JAR);
    }
    let mut command = Command::new("java");
    command.current_dir(dir).args([
        "-Xmx128m".to_owned(),
        "-Dorg.slf4j.simpleLogger.defaultLogLevel=warn".to_owned(),
        format!("-Dzookeeper.log.dir={}", dir.display()),
        "-cp".to_owned(),
        classpath,
        "org.apache.zookeeper.server.ZooKeeperServerMain".to_owned(),
        dir.join("zoo.cfg").display().to_string(),
    ]);
    command
}

/// Whether ZooKeeper on `port` answers the four-letter `ruok` with `imok`.
pub fn zookeeper_ok(port: u16) -> bool {
    use std::io::{Read, Write};
    let Ok(mut stream) = std::net::TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(1)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let mut answer = [0u8; 4];
    stream.write_all(b"ruok").is_ok() && stream.read_exact(&mut answer).is_ok() && &answer == b"imok"
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_replica_gets_its_own_macro_and_interserver_port_and_lists_every_replica() {
        let secrets = StackSecrets {
            analyst: "a".into(),
            epidemiologist: "e".into(),
            investigator: "i".into(),
            writer: "w".into(),
            migrator: "m".into(),
            reconciler: "r".into(),
            default: "d".into(),
        };
        let cluster = ClickHouseCluster::ephemeral(2, 18123, 19000).unwrap();
        let (one, two) = (cluster.config_d(0, &secrets), cluster.config_d(1, &secrets));
        assert!(one.contains("<replica>replica-1</replica>") && two.contains("<replica>replica-2</replica>"));
        assert!(one.contains(&format!("<interserver_http_port>{}</interserver_http_port>", cluster.replicas[0].interserver_port)));
        assert!(two.contains(&format!("<interserver_http_port>{}</interserver_http_port>", cluster.replicas[1].interserver_port)));
        for config in [&one, &two] {
            assert!(config.contains("<port>19000</port>") && config.contains(&format!("<port>{}</port>", cluster.replicas[1].tcp_port)));
            assert!(config.contains(&format!("<port>{}</port>", cluster.zookeeper_port)));
        }
        assert_eq!(replica_dir(Path::new("/s"), 0), Path::new("/s/clickhouse"));
        assert_eq!(replica_dir(Path::new("/s"), 1), Path::new("/s/clickhouse-2"));
    }
}
