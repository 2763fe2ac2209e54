//! Fuzz target `form`: see `ehac_fuzz_harness::form::check` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ehac_fuzz_harness::form::check(data));
