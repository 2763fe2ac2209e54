//! Fuzz target `spool_dir`: see `ehac_fuzz_harness::spool::check_dir` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ehac_fuzz_harness::spool::check_dir(data));
