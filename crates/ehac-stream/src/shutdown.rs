//! SIGTERM / Ctrl-C become one cancellation token that every task of a service watches.

use tokio_util::sync::CancellationToken;

/// A token cancelled on the first SIGTERM or SIGINT. Services stop taking new work when it
/// fires, finish and commit what is in flight, then exit.
pub fn on_signal() -> CancellationToken {
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler can be installed");
        tokio::select! {
            _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down: draining in-flight work"),
            _ = tokio::signal::ctrl_c() => tracing::info!(signal = "SIGINT", "shutting down: draining in-flight work"),
        }
        cancel.cancel();
    });
    token
}
