//! Avro single-object encoding for every record on the pipeline's topics.
//!
//! Each message is `C3 01`, the 8-byte little-endian CRC-64-AVRO (Rabin) fingerprint of the
//! writer schema's canonical form, then the Avro binary body. A consumer looks the fingerprint up
//! among the schema versions it knows and resolves the body to its own reader schema, so a
//! producer can move to a new (compatible) version before every consumer has.
//!
//! The `.avsc` files in `schemas/avro/` are the source of truth; they are compiled in here.

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::LazyLock;

use apache_avro::rabin::Rabin;
use apache_avro::Schema;
use ehac_domain::{EnrichedDeclaration, RawDeclaration, Rejection};
use serde::de::DeserializeOwned;
use serde::Serialize;

const MAGIC: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;

const RAW_AVSC: &str = include_str!("../../../schemas/avro/raw_declaration.avsc");
const ENRICHED_AVSC: &str = include_str!("../../../schemas/avro/enriched_declaration.avsc");
const REJECTION_AVSC: &str = include_str!("../../../schemas/avro/rejection.avsc");

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("not Avro single-object encoded (missing C3 01 header)")]
    NotSingleObject,
    #[error("unknown writer schema fingerprint {0:016x} for {1}")]
    UnknownSchema(u64, &'static str),
    #[error("Avro body does not match schema {schema}: {source}")]
    Body { schema: &'static str, source: apache_avro::Error },
}

/// Encoder and decoder for one record type.
pub struct Codec<T> {
    name: &'static str,
    schema: Schema,
    header: [u8; HEADER_LEN],
    /// Every writer schema this reader can resolve, by fingerprint. Today only the current one;
    /// an older version's schema is added here when the current one evolves.
    writers: HashMap<u64, Schema>,
    _record: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> Codec<T> {
    fn new(name: &'static str, schema_json: &str) -> Self {
        let schema = Schema::parse_str(schema_json).unwrap_or_else(|e| panic!("schemas/avro/{name}.avsc is invalid: {e}"));
        let fingerprint = Self::fingerprint_of(&schema);
        let mut header = [0u8; HEADER_LEN];
        header[..2].copy_from_slice(&MAGIC);
        header[2..].copy_from_slice(&fingerprint.to_le_bytes());
        let writers = HashMap::from([(fingerprint, schema.clone())]);
        Codec { name, schema, header, writers, _record: PhantomData }
    }

    fn fingerprint_of(schema: &Schema) -> u64 {
        let bytes = schema.fingerprint::<Rabin>().bytes;
        u64::from_le_bytes(bytes[..8].try_into().expect("Rabin fingerprints are 8 bytes"))
    }

    /// The fingerprint written in every message of this type.
    pub fn fingerprint(&self) -> u64 {
        u64::from_le_bytes(self.header[2..].try_into().unwrap())
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    pub fn encode(&self, record: &T) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(&self.header);
        apache_avro::write_avro_datum_ref(&self.schema, record, &mut out).map_err(|source| CodecError::Body { schema: self.name, source })?;
        Ok(out)
    }

    pub fn decode(&self, message: &[u8]) -> Result<T, CodecError> {
        if message.len() < HEADER_LEN || message[..2] != MAGIC {
            return Err(CodecError::NotSingleObject);
        }
        let fingerprint = u64::from_le_bytes(message[2..HEADER_LEN].try_into().unwrap());
        let writer = self.writers.get(&fingerprint).ok_or(CodecError::UnknownSchema(fingerprint, self.name))?;
        let body = &mut &message[HEADER_LEN..];
        // Resolution against the reader schema is only needed when the writer used another
        // version; skipping it for the current one roughly halves the decode cost.
        let reader = (fingerprint != self.fingerprint()).then_some(&self.schema);
        let value = apache_avro::from_avro_datum(writer, body, reader).map_err(|source| CodecError::Body { schema: self.name, source })?;
        apache_avro::from_value(&value).map_err(|source| CodecError::Body { schema: self.name, source })
    }
}

/// Raw declarations as the gateway accepted them.
pub static RAW: LazyLock<Codec<RawDeclaration>> = LazyLock::new(|| Codec::new("raw_declaration", RAW_AVSC));

/// Enriched declarations. The schema file names the raw record by reference, as schema
/// registries do; it is inlined here so that the schema stands alone on the wire.
pub static ENRICHED: LazyLock<Codec<EnrichedDeclaration>> = LazyLock::new(|| {
    let mut enriched: serde_json::Value = serde_json::from_str(ENRICHED_AVSC).expect("enriched_declaration.avsc is JSON");
    let raw: serde_json::Value = serde_json::from_str(RAW_AVSC).expect("raw_declaration.avsc is JSON");
    let raw_field = enriched["fields"].as_array_mut().and_then(|f| f.iter_mut().find(|f| f["name"] == "raw")).expect("enriched schema has a raw field");
    raw_field["type"] = raw;
    Codec::new("enriched_declaration", &enriched.to_string())
});

/// Records rejected downstream.
pub static REJECTION: LazyLock<Codec<Rejection>> = LazyLock::new(|| Codec::new("rejection", REJECTION_AVSC));

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use ehac_domain::sample::{Flaw, SampleGenerator};
    use ehac_domain::{enrich, validate, FieldError, Policy, ReferenceData, VerificationStatus};

    fn raw(seed: u64) -> RawDeclaration {
        let now = Utc.with_ymd_and_hms(2026, 12, 20, 1, 0, 0).unwrap();
        let mut form = SampleGenerator::new(seed).declaration(now, "test", Flaw::None);
        form.declaration_id = Some(format!("client-{seed}"));
        RawDeclaration { declaration_id: format!("d-{seed}"), received_at_ms: now.timestamp_millis(), gateway_version: "0.1.0".into(), form }
    }

    #[test]
    fn raw_declarations_round_trip() {
        for seed in 0..200 {
            let record = raw(seed);
            let bytes = RAW.encode(&record).unwrap();
            assert_eq!(&bytes[..2], &MAGIC);
            assert_eq!(RAW.decode(&bytes).unwrap(), record);
        }
    }

    #[test]
    fn enriched_declarations_round_trip() {
        let reference = ReferenceData::embedded();
        for seed in 0..200 {
            let raw = raw(seed);
            let received_at = chrono::DateTime::from_timestamp_millis(raw.received_at_ms).unwrap();
            let checked = validate(&raw.form, reference, &Policy::default(), received_at).unwrap();
            let mut enrichment = enrich(&raw.form, &checked, reference, &Policy::default(), "0.1.0");
            enrichment.verification_status = [VerificationStatus::Verified, VerificationStatus::NotFound][seed as usize % 2];
            let record = EnrichedDeclaration { raw, enrichment };
            assert_eq!(ENRICHED.decode(&ENRICHED.encode(&record).unwrap()).unwrap(), record);
        }
    }

    #[test]
    fn rejections_round_trip_with_binary_payload() {
        let record = Rejection {
            declaration_id: None,
            client_id: String::new(),
            service: "ehac-enricher".into(),
            service_version: "0.1.0".into(),
            source_topic: "raw".into(),
            source_partition: 3,
            source_offset: 42,
            rejected_at_ms: 1,
            errors: vec![FieldError { code: "undecodable".into(), field: "".into(), message: "bad".into() }],
            payload: vec![0, 0xC3, 0xFF, 7],
            payload_json: String::new(),
        };
        assert_eq!(REJECTION.decode(&REJECTION.encode(&record).unwrap()).unwrap(), record);
    }

    #[test]
    fn each_record_type_has_its_own_fingerprint_and_rejects_the_others() {
        assert_ne!(RAW.fingerprint(), ENRICHED.fingerprint());
        assert_ne!(RAW.fingerprint(), REJECTION.fingerprint());
        let bytes = RAW.encode(&raw(1)).unwrap();
        assert!(matches!(ENRICHED.decode(&bytes), Err(CodecError::UnknownSchema(_, "enriched_declaration"))));
    }

    #[test]
    fn garbage_is_an_error_not_a_panic() {
        assert!(matches!(RAW.decode(b"{\"json\": true}"), Err(CodecError::NotSingleObject)));
        assert!(matches!(RAW.decode(&[]), Err(CodecError::NotSingleObject)));
        let mut truncated = RAW.encode(&raw(2)).unwrap();
        truncated.truncate(40);
        assert!(matches!(RAW.decode(&truncated), Err(CodecError::Body { .. })));
    }
}
