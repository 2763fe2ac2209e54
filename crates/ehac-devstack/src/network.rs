//! A network for the broker nodes of a cluster, so one node can be cut off: each node in its
//! own network namespace, joined to a bridge in this one by a veth pair (iproute2, as root).
//! Clients here reach node N at `10.A.B.N`; the nodes reach each other over the bridge. A
//! partition takes the node's veth link down: its packets go nowhere, in both directions, and
//! connections time out rather than being refused, as on a real network.
//!
//! Names carry this process's id (`ehac-<pid>-k<N>`, `ehbr<pid>`, `ehv<pid>k<N>`), so
//! concurrent runs do not collide and what a killed run left behind is recognised and removed.

use std::process::Command;

use anyhow::{bail, Context};

#[derive(Debug, Clone)]
pub struct BrokerNetwork {
    pid: u32,
    /// The first three octets of the /24: `10.A.B`.
    prefix: String,
    node_ids: Vec<u32>,
}

impl BrokerNetwork {
    /// The plan for `node_ids` (nothing is created yet).
    pub fn plan(node_ids: &[u32]) -> BrokerNetwork {
        let pid = std::process::id();
        // 10.16.0.0 - 10.31.255.0: 4,096 /24s picked by pid; loopback-free private space.
        let k = pid % 4096;
        BrokerNetwork { pid, prefix: format!("10.{}.{}", 16 + k / 256, k % 256), node_ids: node_ids.to_vec() }
    }

    /// Node `node_id`'s address.
    pub fn host(&self, node_id: u32) -> String {
        format!("{}.{node_id}", self.prefix)
    }

    pub fn namespace(&self, node_id: u32) -> String {
        format!("ehac-{}-k{node_id}", self.pid)
    }

    fn bridge(&self) -> String {
        format!("ehbr{}", self.pid)
    }

    fn veth(&self, node_id: u32) -> String {
        format!("ehv{}k{node_id}", self.pid)
    }

    /// Creates the bridge, and per node a namespace with its veth, address and a route back.
    pub fn create(&self) -> anyhow::Result<()> {
        remove_stale();
        let bridge = self.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        ip(&["addr", "add", &format!("{}.254/24", self.prefix), "dev", &bridge])?;
        ip(&["link", "set", &bridge, "up"])?;
        for &id in &self.node_ids {
            let (ns, veth) = (self.namespace(id), self.veth(id));
            ip(&["netns", "add", &ns])?;
            ip(&["link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns])?;
            ip(&["link", "set", &veth, "master", &bridge, "up"])?;
            ip(&["-n", &ns, "addr", "add", &format!("{}/24", self.host(id)), "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
            ip(&["-n", &ns, "route", "add", "default", "via", &format!("{}.254", self.prefix)])?;
        }
        Ok(())
    }

    /// Cuts node `node_id` off (`heal` undoes it).
    pub fn partition(&self, node_id: u32) -> anyhow::Result<()> {
        ip(&["link", "set", &self.veth(node_id), "down"])
    }

    pub fn heal(&self, node_id: u32) -> anyhow::Result<()> {
        ip(&["link", "set", &self.veth(node_id), "up"])
    }

    /// Removes the namespaces (their veth ends go with them) and the bridge.
    pub fn remove(&self) {
        for &id in &self.node_ids {
            let _ = ip(&["netns", "delete", &self.namespace(id)]);
        }
        let _ = ip(&["link", "delete", &self.bridge()]);
    }

    /// `command` run inside node `node_id`'s namespace (`ip netns exec` execs it, so the pid
    /// is the program's own).
    pub fn wrap(&self, node_id: u32, command: &Command) -> Command {
        let mut wrapped = Command::new("ip");
        wrapped.args(["netns", "exec", &self.namespace(node_id)]).arg(command.get_program()).args(command.get_args());
        if let Some(dir) = command.get_current_dir() {
            wrapped.current_dir(dir);
        }
        for (key, value) in command.get_envs() {
            match value {
                Some(value) => wrapped.env(key, value),
                None => wrapped.env_remove(key),
            };
        }
        wrapped
    }
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let output = Command::new("ip").args(args).output().context("running ip (apt-get install iproute2)")?;
    if !output.status.success() {
        bail!("ip {} failed: {}", args.join(" "), String::from_utf8_lossy(&output.stderr).trim());
    }
    Ok(())
}

/// Namespaces and bridges of runs whose process is gone.
fn remove_stale() {
    let dead = |pid: &str| pid.parse::<u32>().is_ok_and(|pid| !std::path::Path::new(&format!("/proc/{pid}")).exists());
    if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or_default();
            if let Some(pid) = name.strip_prefix("ehac-").and_then(|rest| rest.split('-').next()) {
                if dead(pid) {
                    let _ = ip(&["netns", "delete", name]);
                }
            }
        }
    }
    if let Ok(out) = Command::new("ip").args(["-o", "link", "show", "type", "bridge"]).output() {
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split(':').nth(1).map(str::trim).unwrap_or_default();
            if let Some(pid) = name.strip_prefix("ehbr") {
                if dead(pid) {
                    let _ = ip(&["link", "delete", name]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fit_the_kernel_limit_and_addresses_stay_in_private_space() {
        let network = BrokerNetwork { pid: 4_194_304, prefix: "10.16.0".into(), node_ids: vec![1, 2, 3] };
        // Interface names: at most 15 bytes (IFNAMSIZ - 1), for the largest pid Linux gives.
        assert!(network.bridge().len() <= 15 && network.veth(3).len() <= 15, "{} {}", network.bridge(), network.veth(3));
        assert_eq!(network.host(2), "10.16.0.2");
        let planned = BrokerNetwork::plan(&[1, 2, 3]);
        let octets: Vec<u32> = planned.host(3).split('.').map(|o| o.parse().unwrap()).collect();
        assert!(octets[0] == 10 && (16..32).contains(&octets[1]) && octets[3] == 3, "{octets:?}");
    }

    #[test]
    fn a_wrapped_command_keeps_its_program_arguments_directory_and_environment() {
        let network = BrokerNetwork { pid: 7, prefix: "10.16.0".into(), node_ids: vec![1] };
        let mut java = Command::new("java");
        java.arg("-Xmx1m").current_dir("/tmp").env("A", "b");
        let wrapped = network.wrap(1, &java);
        let args: Vec<_> = wrapped.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(wrapped.get_program(), "ip");
        assert_eq!(args, ["netns", "exec", "ehac-7-k1", "java", "-Xmx1m"]);
        assert_eq!(wrapped.get_current_dir(), Some(std::path::Path::new("/tmp")));
        assert!(wrapped.get_envs().any(|(k, v)| k == "A" && v == Some("b".as_ref())));
    }
}
