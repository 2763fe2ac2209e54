//! Fuzz target `avro_enriched`: see `ehac_fuzz_harness::avro::check_enriched` for what it checks.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ehac_fuzz_harness::avro::check_enriched(data));
