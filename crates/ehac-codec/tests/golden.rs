//! Golden vectors: each schema's fingerprint and the exact bytes of records that take every
//! branch of every union, checked in (`golden.json`). The other tests hold the writers to each
//! other; these hold them to bytes already on the topics, so a change to a schema or to every
//! writer at once fails here. A deliberate schema change is a new version: its old schema goes
//! to `schemas/avro/history/`, and the new bytes are written into `golden.json` by hand.

use ehac_codec::{encode_enriched, undecodable, Codec, Source, ENRICHED, RAW, REJECTION};
use ehac_domain::{EnrichedDeclaration, RawDeclaration, Rejection};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// The CRC-64-AVRO fingerprints of the schemas' canonical forms, as written in every message.
const RAW_FINGERPRINT: u64 = 0xa31c_0616_3985_8006;
const ENRICHED_FINGERPRINT: u64 = 0x56bf_e6a2_2fde_c522;
const REJECTION_FINGERPRINT: u64 = 0x91e9_605b_fb53_d265;

struct Vector<T> {
    name: String,
    record: T,
    avro: Vec<u8>,
}

fn vectors<T: DeserializeOwned>(schema: &str) -> Vec<Vector<T>> {
    let golden: serde_json::Value = serde_json::from_str(include_str!("golden.json")).expect("golden.json is JSON");
    let entries = golden[schema].as_array().unwrap_or_else(|| panic!("golden.json has no {schema} vectors"));
    assert!(!entries.is_empty());
    entries
        .iter()
        .map(|e| {
            let name = e["name"].as_str().unwrap().to_owned();
            let record = serde_json::from_value(e["record"].clone()).unwrap_or_else(|err| panic!("{schema} {name:?}: {err}"));
            let text = e["avro"].as_str().unwrap();
            let avro = (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect();
            Vector { name, record, avro }
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `codec` writes exactly the golden bytes of each vector and reads them back as its record.
fn check<T: Serialize + DeserializeOwned + PartialEq + std::fmt::Debug>(codec: &Codec<T>, schema: &str) -> Vec<Vector<T>> {
    let vectors = vectors::<T>(schema);
    for v in &vectors {
        let written = codec.encode(&v.record).unwrap();
        assert!(written == v.avro, "{schema} {:?}: written\n{}\nexpected\n{}", v.name, hex(&written), hex(&v.avro));
        assert_eq!(codec.decode(&v.avro).unwrap(), v.record, "{schema} {:?}", v.name);
    }
    vectors
}

#[test]
fn each_schema_has_its_pinned_fingerprint() {
    assert_eq!(
        [RAW.fingerprint(), ENRICHED.fingerprint(), REJECTION.fingerprint()],
        [RAW_FINGERPRINT, ENRICHED_FINGERPRINT, REJECTION_FINGERPRINT],
        "fingerprints: {:#018x}, {:#018x}, {:#018x}",
        RAW.fingerprint(),
        ENRICHED.fingerprint(),
        REJECTION.fingerprint()
    );
    for (bytes, fingerprint) in [
        (vectors::<RawDeclaration>("raw_declaration").remove(0).avro, RAW_FINGERPRINT),
        (vectors::<Rejection>("rejection").remove(0).avro, REJECTION_FINGERPRINT),
    ] {
        assert_eq!(bytes[..2], [0xC3, 0x01], "single-object marker");
        assert_eq!(bytes[2..10], fingerprint.to_le_bytes(), "the fingerprint follows the marker, little-endian");
    }
}

#[test]
fn raw_declarations_are_written_as_pinned_by_both_writers() {
    let vectors = check(&RAW, "raw_declaration");
    assert!(vectors.len() >= 4, "null and set branches of every union, every enum symbol");
    for v in &vectors {
        assert!(RAW.encode_raw(&v.record) == v.avro, "the gateway's writer, {:?}: {}", v.name, hex(&RAW.encode_raw(&v.record)));
    }
}

#[test]
fn enriched_declarations_are_written_as_pinned_whole_and_around_the_raw_message() {
    let vectors: Vec<Vector<EnrichedDeclaration>> = check(&ENRICHED, "enriched_declaration");
    for v in &vectors {
        let raw_message = RAW.encode(&v.record.raw).unwrap();
        let around = encode_enriched(&raw_message, &v.record.enrichment).expect("a current raw message").unwrap();
        assert!(around == v.avro, "around the raw message, {:?}: {}", v.name, hex(&around));
    }
}

#[test]
fn rejections_are_written_as_pinned_and_an_undecodable_message_becomes_the_pinned_one() {
    let vectors: Vec<Vector<Rejection>> = check(&REJECTION, "rejection");
    assert!(vectors.iter().any(|v| v.record.declaration_id.is_some()) && vectors.iter().any(|v| v.record.declaration_id.is_none()));
    let pinned = &vectors.iter().find(|v| v.name == "undecodable").expect("an undecodable vector").record;
    let payload = b"{\"json\": true}";
    let error = RAW.decode(payload).unwrap_err();
    let made = undecodable(
        "ehac-sink",
        "0.1.0",
        Source { topic: "ehac.declarations.enriched", partition: 11, offset: 7 },
        payload,
        &error,
        pinned.rejected_at_ms,
    );
    assert_eq!(&made, pinned);
}
