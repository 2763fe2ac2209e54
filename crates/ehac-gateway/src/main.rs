use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ehac_stream::telemetry::init_logging();
    let config = ehac_gateway::Config::parse();
    let shutdown = ehac_stream::shutdown::on_signal();
    let gateway = ehac_gateway::start(config, shutdown).await?;
    gateway.wait().await
}
