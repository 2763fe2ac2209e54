//! The operator CLI's commands that tests also drive as library calls.

pub mod dlq;
