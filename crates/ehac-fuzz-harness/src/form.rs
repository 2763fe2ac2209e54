//! The gateway's path for a request body: [`ehac_gateway::input::parse_declaration`] (depth,
//! strict serde), then [`ehac_domain::validate`], then the encoding of the accepted record.

use chrono::{DateTime, TimeZone, Utc};
use ehac_codec::RAW;
use ehac_domain::{validate, Policy, RawDeclaration, ReferenceData};
use ehac_gateway::input::parse_declaration;

/// The receive time every fuzz input is validated at, so that a kept input fails or passes
/// the departure window the same way whenever it is replayed. The seeds depart around it.
pub fn received_at() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 20, 1, 0, 0).unwrap()
}

/// Parses `body` as the gateway does and, when it parses, validates it. Panics when anything
/// on the way panics, or when a form the parser accepted does not survive being written out
/// (as JSON, and as the raw Avro record the gateway produces when it validates).
pub fn check(body: &[u8]) {
    let form = match parse_declaration(body) {
        Ok(form) => form,
        Err(error) => {
            // The 400's body is built from it: must not panic either.
            let _ = error.field_error();
            return;
        }
    };
    let json = serde_json::to_vec(&form).expect("a parsed form serialises to JSON");
    let again = parse_declaration(&json).unwrap_or_else(|e| panic!("a serialised form does not parse again: {e}"));
    assert_eq!(again, form, "a form changed through JSON");

    let Ok(_checked) = validate(&form, ReferenceData::embedded(), &Policy::default(), received_at()) else { return };
    let raw = RawDeclaration {
        declaration_id: "0190f0f0-0000-7000-8000-000000000000".into(),
        received_at_ms: received_at().timestamp_millis(),
        gateway_version: "fuzz".into(),
        form,
    };
    let bytes = RAW.encode(&raw).unwrap_or_else(|e| panic!("a valid form does not encode: {e}"));
    assert_eq!(RAW.encode_raw(&raw), bytes, "the gateway's raw writer and serde_avro_fast differ");
    let decoded = RAW.decode(&bytes).unwrap_or_else(|e| panic!("an encoded valid form does not decode: {e}"));
    assert_eq!(decoded, raw, "a valid form changed through Avro");
}
