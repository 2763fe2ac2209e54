//! The Avro decoders of the three record types ([`ehac_codec`]).
//!
//! Each input is decoded twice: as a whole message (so the single-object header check is
//! fuzzed too) and as the body behind a correct header (so the fuzzer need not find the
//! schema fingerprint before it can reach the record decoder). Whatever decodes must encode
//! and decode back to the same record. Unbounded allocation from a length prefix shows as
//! a libFuzzer `malloc limit` crash (`-malloc_limit_mb` in deploy/local/fuzz.sh).

use ehac_codec::{Codec, ENRICHED, RAW, REJECTION};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt::Debug;

pub fn check_raw(bytes: &[u8]) {
    check(&RAW, bytes);
}

pub fn check_enriched(bytes: &[u8]) {
    check(&ENRICHED, bytes);
}

pub fn check_rejection(bytes: &[u8]) {
    check(&REJECTION, bytes);
}

/// The single-object header of `codec`'s messages: `C3 01` and the schema fingerprint.
pub fn header<T: Serialize + DeserializeOwned>(codec: &Codec<T>) -> [u8; 10] {
    let mut header = [0xC3, 0x01, 0, 0, 0, 0, 0, 0, 0, 0];
    header[2..].copy_from_slice(&codec.fingerprint().to_le_bytes());
    header
}

fn check<T: Serialize + DeserializeOwned + PartialEq + Debug>(codec: &Codec<T>, bytes: &[u8]) {
    round_trip(codec, bytes);
    let mut message = header(codec).to_vec();
    message.extend_from_slice(bytes);
    round_trip(codec, &message);
}

fn round_trip<T: Serialize + DeserializeOwned + PartialEq + Debug>(codec: &Codec<T>, message: &[u8]) {
    let Ok(record) = codec.decode(message) else { return };
    // Not byte-equal to `message`: a varint may be written longer than needed and still decode.
    let encoded = codec.encode(&record).unwrap_or_else(|e| panic!("a decoded record does not encode: {e}"));
    let again = codec.decode(&encoded).unwrap_or_else(|e| panic!("an encoded record does not decode: {e}"));
    assert_eq!(again, record, "a record changed through encode and decode");
}
