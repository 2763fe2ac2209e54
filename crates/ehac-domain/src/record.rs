//! The records that travel between services, one Avro schema each (see `schemas/avro/`).
//!
//! Field names and types here must match those schemas: the codec in `ehac-stream` serialises
//! these structs with serde against the `.avsc` files, and a mismatch fails its round-trip tests.

use serde::{Deserialize, Serialize};

use crate::form::DeclarationForm;
use crate::validate::FieldError;
use crate::verification::VerificationStatus;

/// A declaration the gateway accepted, as it was submitted, plus what the gateway knows.
/// Topic: raw. Key: `declaration_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RawDeclaration {
    pub declaration_id: String,
    /// When the gateway accepted it (Unix milliseconds, UTC).
    pub received_at_ms: i64,
    pub gateway_version: String,
    pub form: DeclarationForm,
}

/// A declaration that passed every rule, with the columns enrichment added.
/// Topic: enriched. Key: `declaration_id`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrichedDeclaration {
    pub raw: RawDeclaration,
    pub enrichment: Enrichment,
}

/// What the pipeline adds to a declaration: normalised times, places, the traveller's home
/// region, and the health officer's triage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Enrichment {
    pub enricher_version: String,
    pub submitted_at_ms: i64,
    pub departure_at_ms: i64,
    pub arrival_at_ms: i64,
    /// Local calendar date at the port of entry, as days since 1970-01-01.
    pub arrival_date: i32,
    /// Local hour (0-23) at the port of entry.
    pub arrival_local_hour: i32,
    pub departure: PortDetails,
    pub arrival: PortDetails,
    /// Both ports are in Indonesia.
    pub domestic: bool,
    /// ISO 3166-1 alpha-3; IDN for NIK holders.
    pub nationality: String,
    /// The traveller's home region from the NIK; empty for foreigners.
    pub home_province: String,
    pub home_regency: String,
    pub age_years: i32,
    pub age_band: String,
    pub risk_flags: Vec<String>,
    pub triage: String,
    /// Problems that do not reject the declaration but that analysts should see.
    pub warnings: Vec<String>,
    /// Where the NIK stands with the population registry; `pending` until it answered.
    pub verification_status: VerificationStatus,
    /// The keyed pseudonym of the traveller (see [`crate::pseudonym`]); set by the enricher,
    /// which holds the pepper. Empty only in records from before keys existed.
    #[serde(default)]
    pub traveller_key: String,
    /// The pepper version that computed `traveller_key`; 0 when there is none.
    #[serde(default)]
    pub pepper_version: i32,
    /// The home district's six-digit Kemendagri code (the NIK's first six digits, when the
    /// reference data knows them): the finest region analysts get. Empty for foreigners.
    #[serde(default)]
    pub home_district_code: String,
}

/// A port (airport, seaport, land crossing) as reference data describes it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PortDetails {
    pub code: String,
    pub name: String,
    pub city: String,
    pub subdivision: String,
    /// ISO 3166-1 alpha-2.
    pub country: String,
    /// IANA time zone in which the traveller's local times were read.
    pub time_zone: String,
}

/// A record that could not be accepted downstream, with every reason. Topic: rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    /// Absent when the payload could not even be decoded.
    pub declaration_id: Option<String>,
    pub client_id: String,
    /// The service that rejected it (`ehac-enricher`, `ehac-sink`).
    pub service: String,
    pub service_version: String,
    pub source_topic: String,
    pub source_partition: i32,
    pub source_offset: i64,
    pub rejected_at_ms: i64,
    pub errors: Vec<FieldError>,
    /// The message exactly as it was read, so it can be replayed after a fix.
    #[serde(with = "serde_bytes")]
    pub payload: Vec<u8>,
    /// The decoded form as JSON, for people; empty when the payload was undecodable.
    pub payload_json: String,
}
