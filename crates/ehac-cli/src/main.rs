//! `ehac`: run the local stack, create topics, migrate ClickHouse, generate load, play the demo,
//! re-verify pending NIKs, replay dead letters, drain an orphaned gateway spool.

use std::time::Duration;

use clap::{Parser, Subcommand};
use ehac_cli::{clients, demo, dev, dlq, lookup, spool};
use ehac_proving::{bench, chaos, cluster_test, footprint, loadgen};
use ehac_registry::RegistryArgs;
use ehac_stream::config::{ClickHouseArgs, KafkaArgs};

#[derive(Parser)]
#[command(name = "ehac", version, about = "Operator CLI for the e-HAC declaration pipeline")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Local broker + ClickHouse for development: up, down, status.
    Dev {
        #[command(subcommand)]
        action: dev::Action,
    },
    /// Create the pipeline's topics (existing ones are left alone).
    #[command(name = "topics")]
    CreateTopics {
        #[command(flatten)]
        kafka: KafkaArgs,
        #[arg(long, env = "EHAC_PARTITIONS", default_value_t = 12)]
        partitions: i32,
    },
    /// Apply ClickHouse migrations that are not applied yet.
    Migrate {
        #[command(flatten)]
        clickhouse: ClickHouseArgs,
    },
    /// Send synthetic declarations to a gateway at a scheduled rate, with a surge.
    Loadgen(loadgen::LoadArgs),
    /// The whole pipeline on a fresh local stack, a holiday surge through it, and a summary
    /// counted in ClickHouse.
    Demo(demo::DemoArgs),
    /// Measure ehac-lagwatch's CPU and memory while it watches busy consumer groups on a fresh
    /// local broker.
    LagwatchFootprint(footprint::FootprintArgs),
    /// Re-verify declarations stored with verification_status=pending (the registry was down)
    /// and write the registry's answers to ehac.verifications.
    Reconcile {
        #[command(flatten)]
        clickhouse: ClickHouseArgs,
        #[command(flatten)]
        registry: RegistryArgs,
        /// NIKs per registry request.
        #[arg(long, default_value_t = 1_000)]
        batch: u64,
        /// Run again every this many seconds until SIGTERM, instead of once.
        #[arg(long)]
        every_secs: Option<u64>,
    },
    /// The fault matrix: each scenario injects one fault while declarations flow, then counts
    /// accepted, stored, rejected, lost and duplicated in ClickHouse.
    Chaos(chaos::ChaosArgs),
    /// Faults on a cluster on this machine (three KRaft nodes, ZooKeeper, two ClickHouse
    /// replicas, two of each service), one at a time under load, each counted on every
    /// replica: lost and duplicated must be 0.
    ClusterTest(cluster_test::ClusterTestArgs),
    /// Benchmarks on a fresh local stack (see BENCHMARKS.md).
    Bench {
        #[command(subcommand)]
        bench: bench::BenchCommand,
    },
    /// The gateway's client registry: API keys per client (add, rotate, revoke, list).
    Clients(clients::ClientsArgs),
    /// A case investigator's search: one traveller's declarations with identity and contact, by
    /// NIK or passport (the traveller key is computed here, so no identifier reaches SQL).
    Lookup(lookup::LookupArgs),
    /// Dead letters: rejected declarations.
    Dlq {
        #[command(subcommand)]
        action: DlqAction,
    },
    /// A gateway's local spool.
    Spool {
        #[command(subcommand)]
        action: SpoolAction,
    },
}

#[derive(Subcommand)]
enum SpoolAction {
    /// Send the declarations in the spool directory of a gateway that is gone (scaled down,
    /// host replaced) to the raw topic, oldest first, until it is empty; refuses a directory a
    /// running gateway holds. Prints `SPOOL dir= drained= remaining=`.
    Drain(spool::DrainArgs),
}

#[derive(Subcommand)]
enum DlqAction {
    /// Send chosen rejected declarations through the pipeline again (after a rule or data
    /// fix); declarations already stored are never sent again.
    Replay(dlq::ReplayArgs),
}

// The same allocator as the services, so the load generator and the in-process enricher figure
// of `ehac bench` run as the services do.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if !matches!(
        cli.command,
        Command::Demo(_)
            | Command::Loadgen(_)
            | Command::Chaos(_)
            | Command::ClusterTest(_)
            | Command::LagwatchFootprint(_)
            | Command::Bench { .. }
    ) {
        ehac_stream::telemetry::init_logging();
    }
    match cli.command {
        Command::Dev { action } => dev::run(action).await,
        Command::CreateTopics { kafka, partitions } => {
            ehac_stream::kafka::ensure_topics(&kafka.kafka_brokers, &kafka.topics.all(), partitions).await
        }
        Command::Migrate { clickhouse } => {
            let applied =
                ehac_stream::warehouse::migrate(&ehac_stream::warehouse::client(&clickhouse), clickhouse.clickhouse_cluster.as_deref())
                    .await?;
            println!(
                "{} migration(s) applied{}",
                applied.len(),
                if applied.is_empty() { String::new() } else { format!(": {}", applied.join(", ")) }
            );
            Ok(())
        }
        Command::Loadgen(args) => {
            let result = loadgen::run(&args).await?;
            println!("{}", result.line());
            Ok(())
        }
        Command::Demo(args) => demo::run(args).await,
        Command::LagwatchFootprint(args) => footprint::run(args).await,
        Command::Reconcile { clickhouse, registry, batch, every_secs } => reconcile(clickhouse, registry, batch, every_secs).await,
        Command::Chaos(args) => {
            let results = chaos::run(&args).await?;
            println!();
            for r in &results {
                println!("{}", chaos::line(r));
            }
            anyhow::ensure!(results.iter().all(chaos::ScenarioResult::passed), "a chaos scenario lost or duplicated declarations");
            Ok(())
        }
        Command::ClusterTest(args) => {
            let reports = cluster_test::run(&args).await?;
            println!();
            for r in &reports {
                println!("{}", cluster_test::line(r));
            }
            anyhow::ensure!(reports.iter().all(cluster_test::FaultReport::passed), "a cluster fault failed (its FAIL line says what)");
            Ok(())
        }
        Command::Bench { bench } => bench::run(bench).await,
        Command::Clients(args) => {
            print!("{}", clients::run(&args)?);
            Ok(())
        }
        Command::Lookup(args) => {
            for declaration in lookup::lookup(&args).await? {
                println!("{}", serde_json::to_string(&declaration)?);
            }
            Ok(())
        }
        Command::Spool { action: SpoolAction::Drain(args) } => {
            let report = spool::drain(&args, &ehac_stream::shutdown::on_signal()).await?;
            println!("{}", spool::line(&args.dir, &report));
            anyhow::ensure!(report.remaining == 0, "{} declaration(s) are still in the spool", report.remaining);
            Ok(())
        }
        Command::Dlq { action: DlqAction::Replay(args) } => {
            let report = dlq::replay(&args).await?;
            println!("{}", report.line());
            Ok(())
        }
    }
}

async fn reconcile(clickhouse: ClickHouseArgs, registry: RegistryArgs, batch: u64, every_secs: Option<u64>) -> anyhow::Result<()> {
    anyhow::ensure!(registry.registry_url.is_some(), "--registry-url (or EHAC_REGISTRY_URL) is required to reconcile");
    let metrics = ehac_stream::telemetry::registry("reconcile");
    let verifier = registry.verifier(&metrics)?.expect("registry URL checked above");
    let shutdown = ehac_stream::shutdown::on_signal();
    let checked_by = format!("ehac-reconcile {}", ehac_stream::VERSION);
    loop {
        let report = ehac_registry::reconcile::run_once(&clickhouse, &verifier, batch, &checked_by).await?;
        println!("{}", report.line());
        let Some(every) = every_secs else { return Ok(()) };
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(Duration::from_secs(every)) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
