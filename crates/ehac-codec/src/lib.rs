//! Avro single-object encoding for every record on the pipeline's topics, and the rejection a
//! message becomes when it does not decode. Pure: no Kafka, no runtime, no I/O, so the fuzz
//! targets and every service share exactly these bytes.
//!
//! Each message is `C3 01`, the 8-byte little-endian CRC-64-AVRO (Rabin) fingerprint of the
//! writer schema's canonical form, then the Avro binary body. A consumer looks the fingerprint up
//! among the schema versions it knows and resolves the body to its own reader schema, so a
//! producer can move to a new (compatible) version before every consumer has.
//!
//! The `.avsc` files in `schemas/avro/` are the source of truth; they are compiled in here.
//!
//! Records of the current schema version, nearly all of them, are written and read by
//! `serde_avro_fast`, which goes straight between the Rust types and Avro binary; apache-avro
//! builds a `Value` tree per record and was most of the enricher's and the sink's CPU. apache-avro
//! stays the schema authority (parsing, fingerprints) and resolves records written with another
//! version. Both produce the same bytes (tested below).

use std::collections::HashMap;
use std::marker::PhantomData;
use std::sync::LazyLock;

use apache_avro::rabin::Rabin;
use apache_avro::Schema;
use ehac_domain::{EnrichedDeclaration, Enrichment, ErrorCode, FieldError, RawDeclaration, Rejection};
use serde::de::DeserializeOwned;
use serde::Serialize;

mod raw_writer;

const MAGIC: [u8; 2] = [0xC3, 0x01];
const HEADER_LEN: usize = 10;

/// The largest message any decoder accepts: Kafka's default `message.max.bytes`, far above our
/// biggest record (a rejection carries the gateway's at most 64 KiB body). apache-avro's own
/// cap on one allocation from a length prefix (512 MiB by default, counted in items for arrays)
/// is set to this too, so a few hundred hostile bytes cannot ask for gigabytes (fuzzing found
/// a 540-byte message of an earlier schema version that reserved over 512 MB).
pub const MAX_MESSAGE_BYTES: usize = 1024 * 1024;

const RAW_AVSC: &str = include_str!("../../../schemas/avro/raw_declaration.avsc");
const ENRICHED_AVSC: &str = include_str!("../../../schemas/avro/enriched_declaration.avsc");
const REJECTION_AVSC: &str = include_str!("../../../schemas/avro/rejection.avsc");

#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    #[error("not Avro single-object encoded (missing C3 01 header)")]
    NotSingleObject,
    #[error("a {0}-byte message is over the {MAX_MESSAGE_BYTES}-byte limit for {1}")]
    TooLarge(usize, &'static str),
    #[error("unknown writer schema fingerprint {0:016x} for {1}")]
    UnknownSchema(u64, &'static str),
    #[error("Avro body does not match schema {schema}: {source}")]
    Body { schema: &'static str, source: apache_avro::Error },
    #[error("Avro body does not match schema {schema}: {source}")]
    Decode { schema: &'static str, source: serde_avro_fast::de::DeError },
    #[error("{0} bytes left over after the Avro body of {1}")]
    TrailingBytes(usize, &'static str),
    #[error("record does not fit schema {schema}: {source}")]
    Encode { schema: &'static str, source: serde_avro_fast::ser::SerError },
}

/// Encoder and decoder for one record type.
pub struct Codec<T> {
    name: &'static str,
    schema: Schema,
    /// The same schema, for the fast path.
    fast: serde_avro_fast::Schema,
    header: [u8; HEADER_LEN],
    /// Every writer schema this reader can resolve, by fingerprint. Today only the current one;
    /// an older version's schema is added here when the current one evolves.
    writers: HashMap<u64, Schema>,
    _record: PhantomData<fn() -> T>,
}

impl<T: Serialize + DeserializeOwned> Codec<T> {
    fn new(name: &'static str, schema_json: &str) -> Self {
        // Process-wide and settable once: before this module's first decode, nobody else has.
        let cap = apache_avro::util::max_allocation_bytes(MAX_MESSAGE_BYTES);
        assert!(cap <= MAX_MESSAGE_BYTES, "apache-avro's allocation cap was set to {cap} bytes before the codecs were made");
        let schema = Schema::parse_str(schema_json).unwrap_or_else(|e| panic!("schemas/avro/{name}.avsc is invalid: {e}"));
        let fingerprint = Self::fingerprint_of(&schema);
        let mut header = [0u8; HEADER_LEN];
        header[..2].copy_from_slice(&MAGIC);
        header[2..].copy_from_slice(&fingerprint.to_le_bytes());
        let writers = HashMap::from([(fingerprint, schema.clone())]);
        let fast = schema_json.parse().unwrap_or_else(|e| panic!("schemas/avro/{name}.avsc: {e}"));
        Codec { name, schema, fast, header, writers, _record: PhantomData }
    }

    /// Also reads records written with `schema_json`, an earlier version of this schema.
    fn with_writer(mut self, schema_json: &str) -> Self {
        let schema = Schema::parse_str(schema_json).unwrap_or_else(|e| panic!("an earlier {} schema is invalid: {e}", self.name));
        self.writers.insert(Self::fingerprint_of(&schema), schema);
        self
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
        serde_avro_fast::to_datum(record, out, &mut serde_avro_fast::ser::SerializerConfig::new(&self.fast))
            .map_err(|source| CodecError::Encode { schema: self.name, source })
    }

    pub fn decode(&self, message: &[u8]) -> Result<T, CodecError> {
        if message.len() < HEADER_LEN || message[..2] != MAGIC {
            return Err(CodecError::NotSingleObject);
        }
        if message.len() > MAX_MESSAGE_BYTES {
            return Err(CodecError::TooLarge(message.len(), self.name));
        }
        let fingerprint = u64::from_le_bytes(message[2..HEADER_LEN].try_into().unwrap());
        let writer = self.writers.get(&fingerprint).ok_or(CodecError::UnknownSchema(fingerprint, self.name))?;
        let body = &message[HEADER_LEN..];
        if fingerprint == self.fingerprint() {
            let mut state = serde_avro_fast::de::DeserializerState::from_slice(body, &self.fast);
            let record = T::deserialize(state.deserializer()).map_err(|source| CodecError::Decode { schema: self.name, source })?;
            // Strict: the body is exactly one record. encode_enriched relies on it.
            let rest = std::io::BufRead::fill_buf(&mut state.into_reader()).map_or(0, |r| r.len());
            return if rest == 0 { Ok(record) } else { Err(CodecError::TrailingBytes(rest, self.name)) };
        }
        // Another version of the schema: resolve it to ours (slow, and rare).
        let value = apache_avro::from_avro_datum(writer, &mut &body[..], Some(&self.schema))
            .map_err(|source| CodecError::Body { schema: self.name, source })?;
        apache_avro::from_value(&value).map_err(|source| CodecError::Body { schema: self.name, source })
    }
}

impl Codec<RawDeclaration> {
    /// [`Codec::encode`] for the one record the gateway writes per declaration, by a writer
    /// made for this schema (`raw_writer`): the same bytes, without serde's per-field schema
    /// matching, and it cannot fail.
    pub fn encode_raw(&self, raw: &RawDeclaration) -> Vec<u8> {
        let mut out = Vec::with_capacity(512);
        out.extend_from_slice(&self.header);
        raw_writer::write(&mut out, raw);
        out
    }
}

/// Raw declarations as the gateway accepted them.
pub static RAW: LazyLock<Codec<RawDeclaration>> = LazyLock::new(|| Codec::new("raw_declaration", RAW_AVSC));

/// Enriched declarations. The schema file names the raw record by reference, as schema
/// registries do; it is inlined here so that the schema stands alone on the wire.
/// Earlier versions (`schemas/avro/history/`) stay readable: records they wrote may still sit in
/// the topic when a new enricher and sink are deployed.
pub static ENRICHED: LazyLock<Codec<EnrichedDeclaration>> = LazyLock::new(|| {
    Codec::new("enriched_declaration", &with_raw_inlined(ENRICHED_AVSC))
        .with_writer(&with_raw_inlined(ENRICHED_V1_AVSC))
        .with_writer(&with_raw_inlined(ENRICHED_V2_AVSC))
});

/// Version 1, before the traveller key and pepper version were added.
const ENRICHED_V1_AVSC: &str = include_str!("../../../schemas/avro/history/enriched_declaration.v1.avsc");
/// Version 2, before the home district code was added.
const ENRICHED_V2_AVSC: &str = include_str!("../../../schemas/avro/history/enriched_declaration.v2.avsc");

fn with_raw_inlined(enriched_avsc: &str) -> String {
    let mut enriched: serde_json::Value = serde_json::from_str(enriched_avsc).expect("enriched_declaration.avsc is JSON");
    let raw: serde_json::Value = serde_json::from_str(RAW_AVSC).expect("raw_declaration.avsc is JSON");
    let raw_field =
        enriched["fields"].as_array_mut().and_then(|f| f.iter_mut().find(|f| f["name"] == "raw")).expect("enriched schema has a raw field");
    raw_field["type"] = raw;
    enriched.to_string()
}

/// The `enrichment` field of the enriched schema as a schema of its own.
static ENRICHMENT_PART: LazyLock<serde_avro_fast::Schema> = LazyLock::new(|| {
    let enriched: serde_json::Value = serde_json::from_str(ENRICHED_AVSC).expect("enriched_declaration.avsc is JSON");
    let part = enriched["fields"]
        .as_array()
        .and_then(|f| f.iter().find(|f| f["name"] == "enrichment"))
        .expect("enriched schema has an enrichment field");
    part["type"].to_string().parse().expect("the enrichment record is a valid schema")
});

/// An enriched declaration written around the raw message it came from: in Avro binary a record
/// is its fields' encodings one after another, and `raw` is the enriched record's first field,
/// so its bytes are the raw message's body as it is. Only the enrichment is serialised, which
/// halves the enricher's encoding work. `None` when the raw message was written with another
/// version of the raw schema (the caller then encodes the whole record). `raw_message` must be
/// a message [`RAW`] decoded: that check makes sure its body is exactly one record.
pub fn encode_enriched(raw_message: &[u8], enrichment: &Enrichment) -> Option<Result<Vec<u8>, CodecError>> {
    if raw_message.len() < HEADER_LEN || raw_message[..2] != MAGIC || raw_message[2..HEADER_LEN] != RAW.header[2..] {
        return None;
    }
    let body = &raw_message[HEADER_LEN..];
    let mut out = Vec::with_capacity(HEADER_LEN + body.len() + 256);
    out.extend_from_slice(&ENRICHED.header);
    out.extend_from_slice(body);
    Some(
        serde_avro_fast::to_datum(enrichment, out, &mut serde_avro_fast::ser::SerializerConfig::new(&ENRICHMENT_PART))
            .map_err(|source| CodecError::Encode { schema: "enriched_declaration", source }),
    )
}

/// Records rejected downstream.
pub static REJECTION: LazyLock<Codec<Rejection>> = LazyLock::new(|| Codec::new("rejection", REJECTION_AVSC));

/// Where a message was read: what a rejection records so the message can be found and replayed.
#[derive(Debug, Clone, Copy)]
pub struct Source<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
}

/// The rejection a message that does not decode becomes, written by `service` at
/// `service_version`: no declaration or client is known, the one error is `undecodable` with
/// the decoder's reason, and the bytes are kept exactly as read.
pub fn undecodable(
    service: &str,
    service_version: &str,
    source: Source<'_>,
    payload: &[u8],
    error: &CodecError,
    rejected_at_ms: i64,
) -> Rejection {
    Rejection {
        declaration_id: None,
        client_id: String::new(),
        service: service.to_owned(),
        service_version: service_version.to_owned(),
        source_topic: source.topic.to_owned(),
        source_partition: source.partition,
        source_offset: source.offset,
        rejected_at_ms,
        errors: vec![FieldError::new(ErrorCode::Undecodable, "", error.to_string())],
        payload: payload.to_vec(),
        payload_json: String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};
    use ehac_domain::sample::{Flaw, SampleGenerator};
    use ehac_domain::{enrich, validate, Policy, ReferenceData, VerificationStatus};

    fn raw(seed: u64) -> RawDeclaration {
        let now = Utc.with_ymd_and_hms(2026, 12, 20, 1, 0, 0).unwrap();
        let mut form = SampleGenerator::new(seed).declaration(now, "test", Flaw::None);
        form.declaration_id = Some(format!("client-{seed}"));
        RawDeclaration {
            declaration_id: format!("d-{seed}"),
            received_at_ms: now.timestamp_millis(),
            gateway_version: "0.1.0".into(),
            form,
        }
    }

    /// What apache-avro writes for `record`: the fast path must write exactly this.
    fn reference_encoding<T: Serialize + DeserializeOwned>(codec: &Codec<T>, record: &T) -> Vec<u8> {
        let mut out = codec.header.to_vec();
        apache_avro::write_avro_datum_ref(&codec.schema, record, &mut out).unwrap();
        out
    }

    /// What apache-avro reads from `bytes`.
    fn reference_decoding<T: Serialize + DeserializeOwned>(codec: &Codec<T>, bytes: &[u8]) -> T {
        let value = apache_avro::from_avro_datum(&codec.schema, &mut &bytes[HEADER_LEN..], None).unwrap();
        apache_avro::from_value(&value).unwrap()
    }

    #[test]
    fn raw_declarations_round_trip() {
        for seed in 0..200 {
            let record = raw(seed);
            let bytes = RAW.encode(&record).unwrap();
            assert_eq!(&bytes[..2], &MAGIC);
            assert_eq!(bytes, reference_encoding(&RAW, &record), "seed {seed}");
            assert_eq!(reference_decoding(&RAW, &bytes), record);
            assert_eq!(RAW.decode(&bytes).unwrap(), record);
        }
    }

    #[test]
    fn the_gateways_raw_writer_writes_what_serde_and_apache_avro_write() {
        use ehac_domain::form::{Channel, LatestTest, Sex, TestKind, TestResult, TransportMode};
        let mut records: Vec<RawDeclaration> = (0..300).map(raw).collect();
        // Every branch of every union and every enum symbol, which samples may not reach.
        let mut bare = raw(1);
        bare.form.declaration_id = None;
        bare.form.channel = None;
        bare.form.submitted_at = None;
        let t = &mut bare.form.traveller;
        (t.nik, t.passport_number, t.nationality, t.passport_mrz, t.sex, t.email) = (None, None, None, None, None, None);
        bare.form.trip.transport_mode = None;
        bare.form.trip.seat = None;
        bare.form.destination_address.postal_code = None;
        let h = &mut bare.form.health;
        (h.fever, h.cough, h.shortness_of_breath, h.contact_with_case, h.vaccination_doses, h.latest_test) =
            (None, None, None, None, None, None);
        bare.received_at_ms = -1;
        bare.gateway_version = String::new();
        records.push(bare.clone());
        for i in 0..6usize {
            let mut full = bare.clone();
            let f = &mut full.form;
            f.declaration_id = Some(format!("own-{i}"));
            f.channel = Some([Channel::App, Channel::Web, Channel::Kiosk][i % 3]);
            f.submitted_at = Some("2026-12-20T08:00:00+07:00".into());
            let t = &mut f.traveller;
            t.nik = Some("3171012345678901".into());
            t.passport_number = Some("X1234567".into());
            t.nationality = Some("IDN".into());
            t.passport_mrz = Some("P<IDNSANTOSO<<BUDI".repeat(i + 1));
            t.full_name = "Budi Santoso Ñúñez 日本".into();
            t.sex = Some([Sex::Male, Sex::Female][i % 2]);
            t.email = Some(String::new());
            f.trip.transport_mode = Some([TransportMode::Air, TransportMode::Sea, TransportMode::Land][i % 3]);
            f.trip.seat = Some("12A".into());
            f.destination_address.postal_code = Some("10110".into());
            let h = &mut f.health;
            (h.fever, h.cough, h.shortness_of_breath, h.contact_with_case) = (Some(i % 2 == 0), Some(i % 2 == 1), Some(true), Some(false));
            h.vaccination_doses = Some([0, 3, -1, 64, i32::MAX, i32::MIN][i]);
            h.latest_test = Some(LatestTest {
                kind: [Some(TestKind::Pcr), Some(TestKind::Antigen), None][i % 3],
                result: [Some(TestResult::Negative), None, Some(TestResult::Positive)][i % 3],
                taken_on: "2026-12-19".into(),
            });
            full.received_at_ms = [0, 1, 63, 64, i64::MAX, i64::MIN][i];
            records.push(full);
        }
        for (i, record) in records.iter().enumerate() {
            let direct = RAW.encode_raw(record);
            assert_eq!(direct, RAW.encode(record).unwrap(), "record {i}: the direct writer and serde_avro_fast differ");
            assert_eq!(direct, reference_encoding(&RAW, record), "record {i}: the direct writer and apache-avro differ");
            assert_eq!(RAW.decode(&direct).unwrap(), *record, "record {i}");
        }
    }

    fn sample_enriched() -> EnrichedDeclaration {
        let raw = raw(3);
        let received_at = chrono::DateTime::from_timestamp_millis(raw.received_at_ms).unwrap();
        let checked = validate(&raw.form, ReferenceData::embedded(), &Policy::default(), received_at).unwrap();
        let enrichment = enrich(&raw.form, &checked, ReferenceData::embedded(), &Policy::default(), "0.1.0");
        EnrichedDeclaration { raw, enrichment }
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
            enrichment.traveller_key = format!("{seed:064x}");
            enrichment.pepper_version = 1 + seed as i32 % 3;
            let raw_message = RAW.encode(&raw).unwrap();
            let record = EnrichedDeclaration { raw, enrichment };
            let bytes = ENRICHED.encode(&record).unwrap();
            assert_eq!(encode_enriched(&raw_message, &record.enrichment).unwrap().unwrap(), bytes, "seed {seed}");
            assert_eq!(bytes, reference_encoding(&ENRICHED, &record), "seed {seed}");
            assert_eq!(reference_decoding(&ENRICHED, &bytes), record);
            assert_eq!(ENRICHED.decode(&bytes).unwrap(), record);
        }
    }

    #[test]
    fn enriched_records_written_by_earlier_schema_versions_still_decode() {
        let reference = ReferenceData::embedded();
        let raw = raw(7);
        let received_at = chrono::DateTime::from_timestamp_millis(raw.received_at_ms).unwrap();
        let checked = validate(&raw.form, reference, &Policy::default(), received_at).unwrap();
        let record = EnrichedDeclaration { enrichment: enrich(&raw.form, &checked, reference, &Policy::default(), "0.1.0"), raw };
        assert_eq!(record.enrichment.home_district_code.len(), 6, "a citizen's record has a district code");
        // Written by an enricher of an earlier version: its schema, its fingerprint, without the
        // fields added since; they decode as their defaults.
        for (history, added) in [
            (ENRICHED_V1_AVSC, &["traveller_key", "pepper_version", "home_district_code"][..]),
            (ENRICHED_V2_AVSC, &["home_district_code"][..]),
        ] {
            let writer = Schema::parse_str(&with_raw_inlined(history)).unwrap();
            let mut value = apache_avro::to_value(&record).unwrap();
            if let apache_avro::types::Value::Record(fields) = &mut value {
                if let Some((_, apache_avro::types::Value::Record(enrichment))) = fields.iter_mut().find(|(name, _)| name == "enrichment") {
                    enrichment.retain(|(name, _)| !added.contains(&name.as_str()));
                }
            }
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&Codec::<EnrichedDeclaration>::fingerprint_of(&writer).to_le_bytes());
            bytes.extend(apache_avro::to_avro_datum(&writer, value).unwrap());
            assert_ne!(bytes[2..HEADER_LEN], ENRICHED.header[2..], "another fingerprint");
            let decoded = ENRICHED.decode(&bytes).unwrap();
            let mut expected = record.clone();
            expected.enrichment.home_district_code.clear();
            if added.contains(&"traveller_key") {
                expected.enrichment.traveller_key.clear();
                expected.enrichment.pepper_version = 0;
            }
            assert_eq!(decoded, expected, "written with {added:?} missing");
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
        let bytes = REJECTION.encode(&record).unwrap();
        assert_eq!(bytes, reference_encoding(&REJECTION, &record));
        assert_eq!(REJECTION.decode(&bytes).unwrap(), record);
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
        let whole = RAW.encode(&raw(2)).unwrap();
        for cut in [11, 40, whole.len() / 2, whole.len() - 1] {
            assert!(matches!(RAW.decode(&whole[..cut]), Err(CodecError::Decode { .. })), "cut at {cut}");
        }
        let mut longer = whole.clone();
        longer.push(0);
        assert!(matches!(RAW.decode(&longer), Err(CodecError::TrailingBytes(1, "raw_declaration"))));
        assert!(
            encode_enriched(
                &ENRICHED.encode(&ENRICHED.decode(&ENRICHED.encode(&sample_enriched()).unwrap()).unwrap()).unwrap(),
                &sample_enriched().enrichment
            )
            .is_none(),
            "not a raw message"
        );
        let mut flipped = whole.clone();
        for byte in &mut flipped[HEADER_LEN..] {
            *byte = !*byte;
        }
        assert!(RAW.decode(&flipped).is_err());
    }

    /// Fuzzing found this message of the earlier enriched schema (540 bytes) whose sequence
    /// length made apache-avro reserve over 512 MB before reading a single item.
    #[test]
    fn a_hostile_length_prefix_is_refused_before_anything_is_reserved() {
        let message = include_bytes!("../../../fuzz/regressions/avro_enriched/oom-c2934ddbd4b4b375f55884844e1d2817ab6b054b");
        let error = ENRICHED.decode(message).expect_err("the message is not a record").to_string();
        assert!(error.contains("Unable to allocate"), "refused for another reason: {error}");
    }

    #[test]
    fn a_message_over_the_limit_is_refused_unread() {
        let mut message = ENRICHED.header.to_vec();
        message.resize(MAX_MESSAGE_BYTES + 1, 0);
        assert!(matches!(ENRICHED.decode(&message), Err(CodecError::TooLarge(n, "enriched_declaration")) if n == MAX_MESSAGE_BYTES + 1));
    }
}
