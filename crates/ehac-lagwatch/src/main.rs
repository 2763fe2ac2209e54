use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ehac_stream::telemetry::init_logging();
    let config = ehac_lagwatch::Config::parse();
    let shutdown = ehac_stream::shutdown::on_signal();
    ehac_lagwatch::run(config, shutdown).await
}
