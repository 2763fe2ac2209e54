use clap::Parser;

// Many small allocations per record (strings of each declaration); mimalloc spends far less on
// them than glibc's malloc, which was a large share of the service's CPU.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    ehac_stream::telemetry::init_logging();
    let config = ehac_sink::Config::parse();
    let shutdown = ehac_stream::shutdown::on_signal();
    ehac_sink::run(config, shutdown).await
}
