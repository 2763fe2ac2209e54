//! The operator CLI's commands as a library, so integration tests drive the same code the
//! `ehac` binary runs (the chaos matrix, dead-letter replay).

pub mod bench;
pub mod chaos;
pub mod clients;
pub mod cluster_test;
pub mod demo;
pub mod dev;
pub mod dlq;
pub mod footprint;
pub mod gate;
pub mod loadgen;
pub mod lookup;
pub mod procstat;
pub mod services;
pub mod spool;
pub mod warehouse_report;
