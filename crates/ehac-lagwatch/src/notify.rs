//! The webhook notifier: every group status change is POSTed as JSON, in order, as an "open"
//! event (the group went into WARN, REWIND, STALL or STOP, or from one to another) or a "close"
//! event (back to OK). A receiver that is down does not slow the polls: events queue here and
//! each is retried a few times before it is dropped and counted.

use std::time::Duration;

use prometheus::IntCounterVec;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::watch::StatusChange;

/// Sending side of the notifier; dropping every sender ends it.
pub type Notifications = mpsc::Sender<StatusChange>;

const ATTEMPTS: u32 = 4;

/// Starts the notifier task. Events beyond `queue` waiting ones are dropped (and counted).
pub fn spawn(url: String, counter: IntCounterVec, shutdown: CancellationToken) -> Notifications {
    let (tx, mut rx) = mpsc::channel::<StatusChange>(256);
    tokio::spawn(async move {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("an HTTP client without TLS builds");
        while let Some(change) = rx.recv().await {
            let result = deliver(&http, &url, &change, &shutdown).await;
            counter.with_label_values(&[change.event, if result { "delivered" } else { "failed" }]).inc();
        }
    });
    tx
}

async fn deliver(http: &reqwest::Client, url: &str, change: &StatusChange, shutdown: &CancellationToken) -> bool {
    let mut backoff = Duration::from_millis(500);
    for attempt in 1..=ATTEMPTS {
        match http.post(url).json(change).send().await {
            Ok(r) if r.status().is_success() => {
                tracing::info!(event = change.event, group = %change.group, status = %change.status, "notification delivered");
                return true;
            }
            Ok(r) => tracing::warn!(status = r.status().as_u16(), attempt, url, "webhook refused the notification"),
            Err(e) => tracing::warn!(error = %e, attempt, url, "webhook unreachable"),
        }
        if attempt < ATTEMPTS {
            tokio::select! {
                _ = shutdown.cancelled() => return false,
                _ = tokio::time::sleep(backoff) => backoff *= 2,
            }
        }
    }
    tracing::error!(event = change.event, group = %change.group, status = %change.status, "notification dropped after {ATTEMPTS} attempts");
    false
}
