//! Fuzz target `avro_raw`: see `ehac_fuzz_harness::avro::check_raw` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ehac_fuzz_harness::avro::check_raw(data));
