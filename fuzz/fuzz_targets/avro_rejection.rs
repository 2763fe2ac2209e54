//! Fuzz target `avro_rejection`: see `ehac_fuzz_harness::avro::check_rejection` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ehac_fuzz_harness::avro::check_rejection(data));
