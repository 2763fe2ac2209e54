//! The properties the fuzz targets check, kept on stable so that `cargo test` replays every
//! input kept under `fuzz/regressions/<target>/` through exactly the code the fuzzer ran.
//!
//! Each `check_*` function takes arbitrary bytes and panics only when the code under test
//! breaks a promise: a parser or decoder that panics, allocates without bound, or accepts
//! something it cannot write back. A fuzz target (`fuzz/fuzz_targets/<target>.rs`) is one call
//! of one of them. [`TARGETS`] names them for the regression test and `deploy/local/fuzz.sh`.
//!
//! - [`form`]: the gateway's strict JSON parse of a request body, then validation.
//! - [`avro`]: the Avro decoders of the three record types.
//! - [`spool`]: the spool's frame reader, and reopening a spool directory of corrupt segments.

pub mod avro;
pub mod form;
pub mod seeds;
pub mod spool;

/// A fuzz target's check: arbitrary bytes in, a panic if a promise broke.
pub type Check = fn(&[u8]);

/// Every fuzz target by name, with the check it runs. The names are the file names under
/// `fuzz/fuzz_targets/` and the directories under `fuzz/regressions/`.
pub const TARGETS: &[(&str, Check)] = &[
    ("form", form::check),
    ("avro_raw", avro::check_raw),
    ("avro_enriched", avro::check_enriched),
    ("avro_rejection", avro::check_rejection),
    ("spool_frame", spool::check_frame),
    ("spool_dir", spool::check_dir),
];
