//! The proving tools: what shows the pipeline keeps its promises, run by `ehac` subcommands
//! and by the integration tests with small settings.
//!
//! - [`loadgen`]: synthetic declarations sent open loop at a scheduled rate, with a surge.
//! - [`chaos`]: the single-node fault matrix, counted in ClickHouse.
//! - [`cluster_test`]: faults on a three-broker, two-replica cluster, counted on each replica.
//! - [`bench`]: the surge benchmark and its ceilings, the front-door and pass costs.
//! - [`footprint`]: lagwatch's CPU and memory while it watches busy groups.
//! - [`services`], [`warehouse_report`], [`procstat`], [`gate`]: the shared harness (service
//!   processes, counts in ClickHouse, CPU from /proc, the demo gate's keys).
//!
//! Architecture invariant: nothing in a service crate depends on this one; it sits beside the
//! operator CLI, which depends on it for those subcommands and for the demo.

pub mod bench;
pub mod chaos;
pub mod cluster_test;
pub mod footprint;
pub mod gate;
pub mod loadgen;
pub mod procstat;
pub mod services;
pub mod warehouse_report;
