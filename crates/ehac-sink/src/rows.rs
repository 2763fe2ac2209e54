//! ClickHouse rows, borrowed from the decoded records: one field per column of
//! `ehac.declarations` / `ehac.rejections` (the analyst database) and of
//! `ehac_pii.identities` / `ehac_pii.rejected_payloads` (the identity database), in RowBinary
//! types (DateTime = u32 seconds, Date = u16 days, Enum8 = i8, Bool = u8).
//!
//! Every row carries `inserted_at`, the batch's own time (see `batch.rs`), rather than leaving
//! the column to its `DEFAULT now()`: a retried insert is then byte-identical, and a replicated
//! table drops the second copy of the block.
//!
//! What goes where is decided here: a field of the form that identifies or contacts the
//! traveller (NIK, passport number, name, exact date of birth, phone, email, street, postal
//! code, seat) has a column in [`IdentityRow`] only; a rejected record's bytes, JSON and
//! messages (which may quote values) in [`RejectedPayloadRow`] only.

use clickhouse::Row;
use ehac_domain::form::{TestKind, TestResult};
use ehac_domain::{EnrichedDeclaration, Rejection};
use serde::Serialize;

#[derive(Row, Serialize)]
pub struct DeclarationRow<'a> {
    declaration_id: &'a str,
    traveller_key: &'a str,
    pepper_version: u32,
    client_id: &'a str,
    channel: i8,
    submitted_at: u32,
    received_at: u32,
    nationality: &'a str,
    sex: i8,
    transport_mode: i8,
    carrier: &'a str,
    flight_number: &'a str,
    departure_port: &'a str,
    departure_port_name: &'a str,
    departure_city: &'a str,
    departure_subdivision: &'a str,
    departure_country: &'a str,
    departure_time_zone: &'a str,
    arrival_port: &'a str,
    arrival_port_name: &'a str,
    arrival_city: &'a str,
    arrival_subdivision: &'a str,
    arrival_country: &'a str,
    arrival_time_zone: &'a str,
    departure_at: u32,
    arrival_at: u32,
    arrival_date: u16,
    arrival_local_hour: u8,
    domestic: u8,
    destination_city: &'a str,
    destination_province: &'a str,
    fever: u8,
    cough: u8,
    shortness_of_breath: u8,
    contact_with_case: u8,
    vaccination_doses: u8,
    test_kind: i8,
    test_result: i8,
    test_taken_on: Option<u16>,
    home_province: &'a str,
    home_regency: &'a str,
    home_district_code: &'a str,
    age_years: u8,
    age_band: &'a str,
    risk_flags: &'a [String],
    triage: i8,
    warnings: &'a [String],
    verification_status: i8,
    gateway_version: &'a str,
    enricher_version: &'a str,
    kafka_partition: i32,
    kafka_offset: i64,
    inserted_at: u32,
}

fn seconds(ms: i64) -> u32 {
    (ms.div_euclid(1000)).clamp(0, u32::MAX as i64) as u32
}

fn days(date: &str) -> Option<u16> {
    let date = chrono::NaiveDate::parse_from_str(date, "%Y-%m-%d").ok()?;
    u16::try_from(ehac_domain::enrich::days_since_epoch(date)).ok()
}

impl<'a> DeclarationRow<'a> {
    /// `record` passed every check, so the enums and answers it carries are present; a missing
    /// one (from a record written by a future, looser enricher) maps to the column's zero value.
    pub fn new(record: &'a EnrichedDeclaration, kafka_partition: i32, kafka_offset: i64, inserted_at: u32) -> Self {
        let raw = &record.raw;
        let form = &raw.form;
        let (t, trip, address, health, e) = (&form.traveller, &form.trip, &form.destination_address, &form.health, &record.enrichment);
        let yes = |answer: Option<bool>| answer.unwrap_or(false) as u8;
        let test = health.latest_test.as_ref();
        DeclarationRow {
            declaration_id: &raw.declaration_id,
            traveller_key: &e.traveller_key,
            pepper_version: e.pepper_version.max(0) as u32,
            client_id: &form.client_id,
            channel: form.channel.map_or(0, |c| c as i8),
            submitted_at: seconds(e.submitted_at_ms),
            received_at: seconds(raw.received_at_ms),
            nationality: &e.nationality,
            sex: t.sex.map_or(0, |s| s as i8),
            transport_mode: trip.transport_mode.map_or(0, |m| m as i8),
            carrier: &trip.carrier,
            flight_number: &trip.flight_number,
            departure_port: &trip.departure_port,
            departure_port_name: &e.departure.name,
            departure_city: &e.departure.city,
            departure_subdivision: &e.departure.subdivision,
            departure_country: &e.departure.country,
            departure_time_zone: &e.departure.time_zone,
            arrival_port: &trip.arrival_port,
            arrival_port_name: &e.arrival.name,
            arrival_city: &e.arrival.city,
            arrival_subdivision: &e.arrival.subdivision,
            arrival_country: &e.arrival.country,
            arrival_time_zone: &e.arrival.time_zone,
            departure_at: seconds(e.departure_at_ms),
            arrival_at: seconds(e.arrival_at_ms),
            arrival_date: e.arrival_date.clamp(0, u16::MAX as i32) as u16,
            arrival_local_hour: e.arrival_local_hour as u8,
            domestic: e.domestic as u8,
            destination_city: &address.city,
            destination_province: &address.province,
            fever: yes(health.fever),
            cough: yes(health.cough),
            shortness_of_breath: yes(health.shortness_of_breath),
            contact_with_case: yes(health.contact_with_case),
            vaccination_doses: health.vaccination_doses.unwrap_or(0).clamp(0, 255) as u8,
            test_kind: test.and_then(|t| t.kind).map_or(0, |k: TestKind| k as i8),
            test_result: test.and_then(|t| t.result).map_or(0, |r: TestResult| r as i8),
            test_taken_on: test.and_then(|t| days(&t.taken_on)),
            home_province: &e.home_province,
            home_regency: &e.home_regency,
            home_district_code: &e.home_district_code,
            age_years: e.age_years.clamp(0, 255) as u8,
            age_band: &e.age_band,
            risk_flags: &e.risk_flags,
            triage: match e.triage.as_str() {
                "red" => 3,
                "yellow" => 2,
                _ => 1,
            },
            warnings: &e.warnings,
            verification_status: e.verification_status as i8,
            gateway_version: &raw.gateway_version,
            enricher_version: &e.enricher_version,
            kafka_partition,
            kafka_offset,
            inserted_at,
        }
    }
}

#[derive(Row, Serialize)]
pub struct RejectionRow<'a> {
    declaration_id: &'a str,
    client_id: &'a str,
    service: &'a str,
    service_version: &'a str,
    source_topic: &'a str,
    source_partition: i32,
    source_offset: i64,
    rejected_at: u32,
    error_codes: Vec<&'a str>,
    error_fields: Vec<&'a str>,
    kafka_partition: i32,
    kafka_offset: i64,
    inserted_at: u32,
}

impl<'a> RejectionRow<'a> {
    pub fn new(r: &'a Rejection, kafka_partition: i32, kafka_offset: i64, inserted_at: u32) -> Self {
        RejectionRow {
            declaration_id: r.declaration_id.as_deref().unwrap_or(""),
            client_id: &r.client_id,
            service: &r.service,
            service_version: &r.service_version,
            source_topic: &r.source_topic,
            source_partition: r.source_partition,
            source_offset: r.source_offset,
            rejected_at: seconds(r.rejected_at_ms),
            error_codes: r.errors.iter().map(|e| e.code.as_str()).collect(),
            error_fields: r.errors.iter().map(|e| e.field.as_str()).collect(),
            kafka_partition,
            kafka_offset,
            inserted_at,
        }
    }
}

/// Who travelled and how to reach them: `ehac_pii.identities`, one row per stored declaration.
#[derive(Row, Serialize)]
pub struct IdentityRow<'a> {
    declaration_id: &'a str,
    traveller_key: &'a str,
    pepper_version: u32,
    nik: Option<&'a str>,
    passport_number: Option<&'a str>,
    nationality: &'a str,
    full_name: &'a str,
    date_of_birth: &'a str,
    phone: &'a str,
    email: Option<&'a str>,
    seat: Option<&'a str>,
    destination_street: &'a str,
    destination_postal_code: Option<&'a str>,
    kafka_partition: i32,
    kafka_offset: i64,
    inserted_at: u32,
}

impl<'a> IdentityRow<'a> {
    pub fn new(record: &'a EnrichedDeclaration, kafka_partition: i32, kafka_offset: i64, inserted_at: u32) -> Self {
        let form = &record.raw.form;
        let (t, e) = (&form.traveller, &record.enrichment);
        IdentityRow {
            declaration_id: &record.raw.declaration_id,
            traveller_key: &e.traveller_key,
            pepper_version: e.pepper_version.max(0) as u32,
            nik: t.nik.as_deref(),
            passport_number: t.passport_number.as_deref(),
            nationality: &e.nationality,
            full_name: &t.full_name,
            date_of_birth: &t.date_of_birth,
            phone: &t.phone,
            email: t.email.as_deref(),
            seat: form.trip.seat.as_deref(),
            destination_street: &form.destination_address.street,
            destination_postal_code: form.destination_address.postal_code.as_deref(),
            kafka_partition,
            kafka_offset,
            inserted_at,
        }
    }
}

/// What a rejected record said: `ehac_pii.rejected_payloads`, one row per rejection, keyed by
/// the same source position as its row in `ehac.rejections`.
#[derive(Row, Serialize)]
pub struct RejectedPayloadRow<'a> {
    declaration_id: &'a str,
    source_topic: &'a str,
    source_partition: i32,
    source_offset: i64,
    error_messages: Vec<&'a str>,
    #[serde(with = "serde_bytes")]
    payload: &'a [u8],
    payload_json: &'a str,
    kafka_partition: i32,
    kafka_offset: i64,
    inserted_at: u32,
}

impl<'a> RejectedPayloadRow<'a> {
    pub fn new(r: &'a Rejection, kafka_partition: i32, kafka_offset: i64, inserted_at: u32) -> Self {
        RejectedPayloadRow {
            declaration_id: r.declaration_id.as_deref().unwrap_or(""),
            source_topic: &r.source_topic,
            source_partition: r.source_partition,
            source_offset: r.source_offset,
            error_messages: r.errors.iter().map(|e| e.message.as_str()).collect(),
            payload: &r.payload,
            payload_json: &r.payload_json,
            kafka_partition,
            kafka_offset,
            inserted_at,
        }
    }
}
