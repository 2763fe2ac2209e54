use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ehac_stream::telemetry::init_logging();
    let config = ehac_enricher::Config::parse();
    let shutdown = ehac_stream::shutdown::on_signal();
    ehac_enricher::run(config, shutdown).await
}
