use clap::Parser;

// Many small allocations per record (strings of each declaration); mimalloc spends far less on
// them than glibc's malloc, which was a large share of the service's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ehac_stream::telemetry::init_logging();
    let config = ehac_gateway::Config::parse();
    if config.print_openapi {
        print!("{}", ehac_gateway::openapi::json());
        return Ok(());
    }
    let shutdown = ehac_stream::shutdown::on_signal();
    let gateway = ehac_gateway::start(config, shutdown).await?;
    gateway.wait().await
}
