//! `ehac`: run the local stack, create topics, migrate ClickHouse, generate load, play the demo.

mod demo;
mod dev;
mod footprint;
mod loadgen;
mod warehouse_report;

use clap::{Parser, Subcommand};
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
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if !matches!(cli.command, Command::Demo(_) | Command::Loadgen(_) | Command::LagwatchFootprint(_)) {
        ehac_stream::telemetry::init_logging();
    }
    match cli.command {
        Command::Dev { action } => dev::run(action).await,
        Command::CreateTopics { kafka, partitions } => ehac_stream::kafka::ensure_topics(&kafka.kafka_brokers, &kafka.topics.all(), partitions).await,
        Command::Migrate { clickhouse } => {
            let applied = ehac_stream::warehouse::migrate(&ehac_stream::warehouse::client(&clickhouse)).await?;
            println!("{} migration(s) applied{}", applied.len(), if applied.is_empty() { String::new() } else { format!(": {}", applied.join(", ")) });
            Ok(())
        }
        Command::Loadgen(args) => {
            let result = loadgen::run(&args).await?;
            println!("{}", result.line());
            Ok(())
        }
        Command::Demo(args) => demo::run(args).await,
        Command::LagwatchFootprint(args) => footprint::run(args).await,
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
