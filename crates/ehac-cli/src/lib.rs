//! The operator CLI's commands as a library, so integration tests drive the same code the
//! `ehac` binary runs (dead-letter replay, the spool drain, the investigator's lookup). The
//! proving tools (bench, chaos, cluster test, load generation) live in `ehac-proving`.

pub mod clients;
pub mod demo;
pub mod dev;
pub mod dlq;
pub mod lookup;
pub mod spool;
