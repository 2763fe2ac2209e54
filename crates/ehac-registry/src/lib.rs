//! Verifying citizens' NIKs against the population registry (Dukcapil) without ever blocking or
//! rejecting a traveller because the registry is down or slow.
//!
//! - [`client`]: the [`PopulationRegistry`] trait and its HTTP implementation.
//! - [`breaker`]: a circuit breaker, so a dead registry costs nothing per batch.
//! - [`verifier`]: registry + timeout + breaker; answers or says why it could not.
//! - [`reconcile`]: the job that re-verifies `pending` declarations and writes the answers back.
//! - [`simulator`]: a stand-in registry server for tests and demos, which can be slowed down
//!   or stopped.
//!
//! Whatever goes wrong here, the caller stores the declaration with `verification_status =
//! pending`, and the reconciliation job (`ehac reconcile`) verifies it later.

pub mod breaker;
pub mod client;
pub mod reconcile;
pub mod simulator;
pub mod verifier;

pub use client::{HttpRegistry, PopulationRegistry, RegistryError};
pub use verifier::{RegistryArgs, Skipped, Verifier};
