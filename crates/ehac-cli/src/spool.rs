//! `ehac spool drain`: empties the spool directory of a gateway that is gone (a StatefulSet
//! scaled down left its volume behind, a host was replaced) into the raw topic, with the same
//! code the gateway drains with (`ehac_stream::spool_drain`).
//!
//! The spool's lock (`flock` on `LOCK`) is taken first, so this refuses a directory a running
//! gateway still holds.

use std::path::PathBuf;
use std::time::Duration;

use ehac_spool::{Spool, SpoolConfig};
use ehac_stream::spool_drain::{self, DrainReport, DrainToEmpty};

#[derive(clap::Args, Debug, Clone)]
pub struct DrainArgs {
    /// The orphaned spool directory (a gateway's `--spool-dir`).
    #[arg(long, env = "EHAC_GATEWAY_SPOOL_DIR")]
    pub dir: PathBuf,
    /// Bootstrap brokers, comma-separated host:port.
    #[arg(long = "kafka-brokers", visible_alias = "brokers", env = "EHAC_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
    /// The raw topic the gateway produces to.
    #[arg(long = "topic-raw", env = "EHAC_TOPIC_RAW", default_value = "ehac.declarations.raw")]
    pub topic_raw: String,
    /// Records per batch (one cursor fsync each).
    #[arg(long, default_value_t = spool_drain::DEFAULT_BATCH)]
    pub batch: usize,
    /// Give up (exit non-zero, the spool left as it is) after this long without the broker
    /// acknowledging a batch.
    #[arg(long, default_value_t = 300)]
    pub give_up_after_secs: u64,
}

/// One line for logs and scripts.
pub fn line(dir: &std::path::Path, report: &DrainReport) -> String {
    format!("SPOOL dir={} drained={} remaining={}", dir.display(), report.drained, report.remaining)
}

/// Drains the spool until it is empty, the broker stays away for `--give-up-after-secs`, or
/// SIGTERM.
pub async fn drain(args: &DrainArgs, shutdown: &tokio_util::sync::CancellationToken) -> anyhow::Result<DrainReport> {
    anyhow::ensure!(args.dir.is_dir(), "{} is not a spool directory", args.dir.display());
    // The bound only limits appends, which nothing makes here.
    let spool =
        Spool::open(&args.dir, SpoolConfig::default()).map_err(|e| anyhow::anyhow!("opening the spool in {}: {e}", args.dir.display()))?;
    let producer = ehac_stream::kafka::producer(&args.kafka_brokers)?;
    let options = DrainToEmpty { batch: args.batch.max(1), give_up_after: Duration::from_secs(args.give_up_after_secs) };
    let report = spool_drain::drain_to_empty(&spool, &producer, &args.topic_raw, options, shutdown).await?;
    Ok(report)
}
