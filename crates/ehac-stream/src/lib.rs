//! Plumbing every e-HAC service shares, written once: Kafka clients and topics, the ClickHouse
//! client and migrations, logging and metrics, the admin HTTP endpoints
//! (`/healthz`, `/readyz`, `/metrics`), graceful shutdown, and draining a gateway's spool to
//! Kafka.
//!
//! Nothing here knows what a declaration means; that lives in `ehac-domain`. The records'
//! Avro encoding is `ehac-codec`.

pub mod admin;
pub mod config;
pub mod kafka;
pub mod shutdown;
pub mod spool_drain;
pub mod telemetry;
pub mod warehouse;

/// This build's version, stamped on every record a service writes.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
