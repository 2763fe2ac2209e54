//! Fuzz target `spool_frame`: see `ehac_fuzz_harness::spool::check_frame` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ehac_fuzz_harness::spool::check_frame(data));
