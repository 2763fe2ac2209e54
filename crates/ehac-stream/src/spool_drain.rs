//! Sending a gateway's spool (`ehac-spool`) to the raw topic: one batch at a time, oldest
//! first, forgotten only after the broker acknowledged every record of the batch.
//!
//! Written once for the two places that drain a spool: the gateway's drain task (while it runs,
//! and for a bounded time after SIGTERM) and `ehac spool drain`, which empties the spool volume
//! of a gateway that is gone (scaled down, its host lost) without the gateway's code.
//!
//! At least once: a crash between the broker's ack and [`Spool::acknowledge`] sends a batch
//! again. The copies have the declaration's id and key, so the sink drops them.

use std::time::{Duration, Instant};

use ehac_spool::{Spool, SpoolError};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use tokio_util::sync::CancellationToken;

/// Records per batch: one peek, one acknowledge (a cursor fsync) per this many.
pub const DEFAULT_BATCH: usize = 500;

#[derive(Debug, thiserror::Error)]
pub enum DrainError {
    /// The spool could not be read (corrupt or unreadable segment): draining cannot go on.
    #[error("reading the spool: {0}")]
    Read(#[source] SpoolError),
    /// The broker acknowledged the batch but the cursor could not be persisted: the batch will
    /// be sent again.
    #[error("recording drained spool records (they will be sent again): {0}")]
    Acknowledge(#[source] SpoolError),
    #[error("spool I/O task panicked: {0}")]
    Panicked(String),
}

/// What one [`send_batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Nothing was waiting.
    Empty,
    /// Every record of the batch was acknowledged by the broker and the spool's cursor moved
    /// past them.
    Sent { records: usize },
    /// Some produces failed (broker away, topic missing): the batch stays in the spool.
    BrokerAway { failed: usize, records: usize },
}

/// Sends the oldest `max` records of the spool to `topic` under their own keys, waits for every
/// acknowledgement and, if all succeeded, moves the spool's cursor past them.
///
/// A produce waits up to the producer's `message.timeout.ms` for the broker; callers that must
/// finish in time wrap this in a timeout (the batch then simply stays in the spool).
pub async fn send_batch(spool: &Spool, producer: &FutureProducer, topic: &str, max: usize) -> Result<BatchOutcome, DrainError> {
    let reader = spool.clone();
    let batch = tokio::task::spawn_blocking(move || reader.peek_batch(max))
        .await
        .map_err(|e| DrainError::Panicked(e.to_string()))?
        .map_err(DrainError::Read)?;
    let Some((last, _)) = batch.last() else { return Ok(BatchOutcome::Empty) };
    let last = *last;
    let sends = batch
        .iter()
        .map(|(_, r)| producer.send(FutureRecord::to(topic).key(&r.key).payload(&r.payload), Timeout::After(Duration::from_secs(5))));
    let failed = futures::future::join_all(sends).await.into_iter().filter(|r| r.is_err()).count();
    if failed > 0 {
        return Ok(BatchOutcome::BrokerAway { failed, records: batch.len() });
    }
    let acknowledger = spool.clone();
    tokio::task::spawn_blocking(move || acknowledger.acknowledge(last))
        .await
        .map_err(|e| DrainError::Panicked(e.to_string()))?
        .map_err(DrainError::Acknowledge)?;
    Ok(BatchOutcome::Sent { records: batch.len() })
}

/// How [`drain_to_empty`] behaves when the broker does not take the records.
#[derive(Debug, Clone, Copy)]
pub struct DrainToEmpty {
    pub batch: usize,
    /// Give up after this long without a batch acknowledged (the broker stays away).
    pub give_up_after: Duration,
}

impl Default for DrainToEmpty {
    fn default() -> Self {
        DrainToEmpty { batch: DEFAULT_BATCH, give_up_after: Duration::from_secs(300) }
    }
}

/// What [`drain_to_empty`] achieved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrainReport {
    /// Records acknowledged by the broker and forgotten by the spool.
    pub drained: u64,
    /// Records still in the spool (0 unless the broker stayed away or `shutdown` fired).
    pub remaining: u64,
}

/// Sends everything the spool holds, batch after batch, retrying with backoff while the broker
/// is away, until the spool is empty, no batch got through for `give_up_after`, or `shutdown`
/// fires. Records appended meanwhile (by a writer sharing the handle) are drained too.
pub async fn drain_to_empty(
    spool: &Spool,
    producer: &FutureProducer,
    topic: &str,
    options: DrainToEmpty,
    shutdown: &CancellationToken,
) -> Result<DrainReport, DrainError> {
    let mut drained = 0u64;
    let mut last_progress = Instant::now();
    let mut backoff = Duration::from_millis(200);
    loop {
        if spool.depth().records == 0 || shutdown.is_cancelled() {
            return Ok(DrainReport { drained, remaining: spool.depth().records });
        }
        let outcome = tokio::select! {
            outcome = send_batch(spool, producer, topic, options.batch) => outcome?,
            _ = shutdown.cancelled() => continue,
        };
        match outcome {
            BatchOutcome::Sent { records } => {
                drained += records as u64;
                last_progress = Instant::now();
                backoff = Duration::from_millis(200);
                continue;
            }
            BatchOutcome::Empty => continue,
            BatchOutcome::BrokerAway { failed, records } => {
                if last_progress.elapsed() >= options.give_up_after {
                    tracing::warn!(failed, records, "broker still away; giving up draining the spool");
                    return Ok(DrainReport { drained, remaining: spool.depth().records });
                }
                tracing::warn!(failed, records, retry_in_ms = backoff.as_millis() as u64, "broker away; spooled declarations wait");
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = tokio::time::sleep(backoff) => backoff = (backoff * 2).min(Duration::from_secs(10)),
        }
    }
}
