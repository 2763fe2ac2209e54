//! `ehac dev up|down|status`: a long-lived local broker and ClickHouse for development, data
//! under one project-local directory, pids recorded in `<dir>/stack.json`.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Subcommand;
use ehac_devstack::{alive, free_port, terminate, BrokerNode, Lifetime, Stack, StackOptions, Tools};
use ehac_stream::config::Topics;
use serde::{Deserialize, Serialize};

#[derive(Subcommand)]
pub enum Action {
    /// Install what is missing, start Apache Kafka and ClickHouse, create topics, run migrations.
    Up {
        #[arg(long, env = "EHAC_DEV_DIR", default_value = ".ehac/dev")]
        dir: PathBuf,
        #[arg(long, env = "EHAC_DEV_KAFKA_PORT", default_value_t = 9092)]
        kafka_port: u16,
        #[arg(long, env = "EHAC_DEV_CLICKHOUSE_HTTP_PORT", default_value_t = 8123)]
        clickhouse_http_port: u16,
        #[arg(long, env = "EHAC_DEV_CLICKHOUSE_TCP_PORT", default_value_t = 9000)]
        clickhouse_tcp_port: u16,
        #[arg(long, env = "EHAC_PARTITIONS", default_value_t = 12)]
        partitions: i32,
    },
    /// Stop the servers `up` started.
    Down {
        #[arg(long, env = "EHAC_DEV_DIR", default_value = ".ehac/dev")]
        dir: PathBuf,
    },
    /// Whether the servers are running, and where.
    Status {
        #[arg(long, env = "EHAC_DEV_DIR", default_value = ".ehac/dev")]
        dir: PathBuf,
    },
}

#[derive(Serialize, Deserialize)]
struct State {
    kafka_brokers: String,
    clickhouse_url: String,
    pids: Vec<(String, u32)>,
}

pub async fn run(action: Action) -> anyhow::Result<()> {
    match action {
        Action::Up { dir, kafka_port, clickhouse_http_port, clickhouse_tcp_port, partitions } => {
            let state_file = dir.join("stack.json");
            if let Ok(state) = read_state(&dir) {
                if state.pids.iter().all(|(_, pid)| alive(*pid)) {
                    println!("already up: kafka {} clickhouse {}", state.kafka_brokers, state.clickhouse_url);
                    return Ok(());
                }
            }
            let tools = Tools::find_or_install()?;
            // The controller port is kept in the node's own files (server.properties): a
            // restarted `dev up` on the same data reads it back.
            let node_dir = dir.join("kafka-1");
            let controller_port = std::fs::read_to_string(node_dir.join("server.properties"))
                .ok()
                .and_then(|p| p.lines().find_map(|l| l.strip_prefix("listeners=")?.rsplit_once(':')?.1.parse().ok()))
                .map_or_else(free_port, Ok)?;
            let options = StackOptions {
                dir: dir.clone(),
                brokers: vec![BrokerNode { node_id: 1, host: "127.0.0.1".into(), port: kafka_port, controller_port, dir: node_dir }],
                clickhouse_http_port,
                clickhouse_tcp_port,
                clickhouse_cluster: None,
                broker_network: None,
                lifetime: Lifetime::Detached,
                // An operator's ports, or a restart on the same data: never moved.
                ports_picked: false,
            };
            let stack = Stack::start(&tools, options).await?;
            stack.provision(&Topics::default(), partitions).await?;
            let state = State { kafka_brokers: stack.kafka_brokers(), clickhouse_url: stack.clickhouse_url(), pids: stack.pids.clone() };
            std::fs::write(&state_file, serde_json::to_string_pretty(&state)?)?;
            println!(
                "up: Apache Kafka {} at {} (log {}), ClickHouse {} at {} (data in {})",
                ehac_devstack::kafka_version(),
                state.kafka_brokers,
                stack.broker_logs()[0].display(),
                stack.clickhouse_version().await?,
                state.clickhouse_url,
                dir.display()
            );
            println!("export EHAC_KAFKA_BROKERS={} EHAC_CLICKHOUSE_URL={}", state.kafka_brokers, state.clickhouse_url);
            // The secrets stay in their 0600 files; this says where, never what.
            println!(
                "ClickHouse users analyst, epidemiologist, investigator, writer, reconciler, migrator: passwords in {}; the enricher's pepper: EHAC_PEPPER_FILE={}",
                stack.options.dir.join("secrets.json").display(),
                stack.options.dir.join("pepper").display()
            );
            Ok(())
        }
        Action::Down { dir } => {
            let state = read_state(&dir)?;
            for (name, pid) in &state.pids {
                terminate(*pid, Duration::from_secs(15));
                println!("stopped {name} ({pid})");
            }
            std::fs::remove_file(dir.join("stack.json"))?;
            Ok(())
        }
        Action::Status { dir } => {
            let state = read_state(&dir)?;
            let mut all = true;
            for (name, pid) in &state.pids {
                let up = alive(*pid);
                all &= up;
                println!("{name:<18} pid {pid:<8} {}", if up { "running" } else { "NOT RUNNING" });
            }
            println!("kafka {}  clickhouse {}", state.kafka_brokers, state.clickhouse_url);
            if !all {
                anyhow::bail!("part of the stack is down: `ehac dev down` then `ehac dev up`");
            }
            Ok(())
        }
    }
}

fn read_state(dir: &std::path::Path) -> anyhow::Result<State> {
    let path = dir.join("stack.json");
    let text = std::fs::read_to_string(&path).with_context(|| format!("no stack recorded at {} (run `ehac dev up`)", path.display()))?;
    Ok(serde_json::from_str(&text)?)
}
