//! JSON logs on stdout and a Prometheus registry whose metrics all start with `ehac_`.

use prometheus::{Encoder, Registry, TextEncoder};
use tracing_subscriber::EnvFilter;

/// JSON logs, one object per line, filtered by `RUST_LOG` (default `info`). Safe to call twice
/// (tests start several services in one process); only the first call takes effect.
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,rdkafka=warn"));
    // log_internal_errors(false): when an event cannot be written (the log disk is full),
    // tracing-subscriber would report it with eprintln!, which panics when stderr fails too, in
    // whichever thread logged. That once killed the gateway's spool writer, so every later
    // declaration got a 503. A service must outlive its log disk; it loses log lines only.
    let _ = tracing_subscriber::fmt().json().with_current_span(false).with_env_filter(filter).log_internal_errors(false).try_init();
}

/// A registry for one service; `ehac_` is prefixed to every metric registered in it.
pub fn registry(service: &str) -> Registry {
    let labels = std::collections::HashMap::from([("service".to_owned(), service.to_owned())]);
    Registry::new_custom(Some("ehac".to_owned()), Some(labels)).expect("the ehac prefix is a valid metric name")
}

/// The registry in Prometheus text format.
pub fn render(registry: &Registry) -> String {
    let mut out = Vec::new();
    TextEncoder::new().encode(&registry.gather(), &mut out).expect("text encoding into a Vec cannot fail");
    String::from_utf8(out).expect("Prometheus text format is UTF-8")
}
