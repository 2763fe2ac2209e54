//! The stack's single ClickHouse: a ClickHouse 26.9 server from the chdb-core wheel (PyPI).
//!
//! The wheel carries ClickHouse's LocalServer with the real HTTP and native-protocol handlers;
//! `clickhouse_server.py` starts them on loopback and keeps them up until SIGTERM or SIGKILL, so
//! the server behaves like any other ClickHouse to the services: logins, grants, row policies,
//! MergeTree data that survives a restart. What this mode cannot do (replication, `ON CLUSTER`,
//! SQL `CREATE USER`) is why a replicated stack runs Debian's 18.16 instead (`replicas.rs`), and
//! why users come from a users.xml generated from `schemas/clickhouse/access.sql`
//! ([`crate::access::StackSecrets::modern_users_xml`]).

use std::path::{Path, PathBuf};
use std::process::Command;

/// The launcher, written into the server's directory at every start.
const LAUNCHER: &str = include_str!("clickhouse_server.py");

/// The chdb-core release install.sh pins: the ClickHouse this stack is tested on.
pub const CHDB_CORE_VERSION: &str = "26.9.0";

/// A `python3` that can import chdb, or None.
pub fn python_with_chdb() -> Option<PathBuf> {
    let python = crate::on_path("python3")?;
    let found = Command::new(&python)
        .args(["-c", "import importlib.util, sys; sys.exit(importlib.util.find_spec('chdb') is None)"])
        .status()
        .is_ok_and(|s| s.success());
    found.then_some(python)
}

/// config.xml of a 26.9 server in `dir` (also its data path).
pub fn config(dir: &Path, http_port: u16, tcp_port: u16) -> String {
    let own = format!(
        r#"  <user_directories><users_xml><path>{users}</path></users_xml></user_directories>
  <!-- A cluster of this one server, as production servers have clusters: the access tests show
       that cluster() cannot reach around the grants. -->
  <remote_servers><loopback><shard><replica><host>127.0.0.1</host><port>{tcp_port}</port></replica></shard></loopback></remote_servers>
  <!-- Who read what: kept for the audit of the identity readers (query_log is per user). -->
  <query_log><database>system</database><table>query_log</table><flush_interval_milliseconds>1000</flush_interval_milliseconds></query_log>
"#,
        users = dir.join("users.xml").display()
    );
    crate::clickhouse_config(dir, http_port, tcp_port, &own)
}

/// The command that serves the 26.9 server of `dir` (config.xml and users.xml already there).
pub fn server_command(python: &Path, dir: &Path) -> anyhow::Result<Command> {
    let launcher = dir.join("clickhouse_server.py");
    std::fs::write(&launcher, LAUNCHER)?;
    let mut command = Command::new(python);
    command.current_dir(dir).arg(&launcher).arg(dir);
    Ok(command)
}
