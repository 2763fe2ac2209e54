//! The raw declaration written field by field, as `schemas/avro/raw_declaration.avsc` lays it
//! out: the gateway encodes every declaration it accepts, and serde_avro_fast's generic path
//! (a schema node matched per field, an enum symbol looked up by name) was a noticeable part of
//! a request's cost. This writes the same bytes for a fraction of that; the
//! tests in `lib.rs` hold it to serde_avro_fast's and apache-avro's output, so a schema change
//! that this file does not follow fails them.
//!
//! Avro binary: a record is its fields in schema order; `long`/`int` a zigzag varint; `string`
//! its byte length then the bytes; `boolean` one byte; an enum its symbol's index; a union the
//! index of the branch then the value (every union here is `["null", T]`).

use ehac_domain::form::{Address, Channel, DeclarationForm, Health, LatestTest, Sex, TestKind, TestResult, TransportMode, Traveller, Trip};
use ehac_domain::RawDeclaration;

pub(super) fn write(out: &mut Vec<u8>, raw: &RawDeclaration) {
    string(out, &raw.declaration_id);
    long(out, raw.received_at_ms);
    string(out, &raw.gateway_version);
    form(out, &raw.form);
}

fn form(out: &mut Vec<u8>, f: &DeclarationForm) {
    optional(out, f.declaration_id.as_deref(), string);
    string(out, &f.client_id);
    optional(out, f.channel.map(channel), long);
    optional(out, f.submitted_at.as_deref(), string);
    traveller(out, &f.traveller);
    trip(out, &f.trip);
    address(out, &f.destination_address);
    health(out, &f.health);
}

fn traveller(out: &mut Vec<u8>, t: &Traveller) {
    optional(out, t.nik.as_deref(), string);
    optional(out, t.passport_number.as_deref(), string);
    optional(out, t.nationality.as_deref(), string);
    optional(out, t.passport_mrz.as_deref(), string);
    string(out, &t.full_name);
    optional(out, t.sex.map(sex), long);
    string(out, &t.date_of_birth);
    string(out, &t.phone);
    optional(out, t.email.as_deref(), string);
}

fn trip(out: &mut Vec<u8>, t: &Trip) {
    optional(out, t.transport_mode.map(transport_mode), long);
    string(out, &t.carrier);
    string(out, &t.flight_number);
    optional(out, t.seat.as_deref(), string);
    string(out, &t.departure_port);
    string(out, &t.arrival_port);
    string(out, &t.departure_time);
    string(out, &t.arrival_time);
}

fn address(out: &mut Vec<u8>, a: &Address) {
    string(out, &a.street);
    string(out, &a.city);
    string(out, &a.province);
    optional(out, a.postal_code.as_deref(), string);
}

fn health(out: &mut Vec<u8>, h: &Health) {
    optional(out, h.fever, boolean);
    optional(out, h.cough, boolean);
    optional(out, h.shortness_of_breath, boolean);
    optional(out, h.contact_with_case, boolean);
    optional(out, h.vaccination_doses.map(i64::from), long);
    optional(out, h.latest_test.as_ref(), latest_test);
}

fn latest_test(out: &mut Vec<u8>, t: &LatestTest) {
    optional(out, t.kind.map(test_kind), long);
    optional(out, t.result.map(test_result), long);
    string(out, &t.taken_on);
}

// Enum symbols' indexes in the schema (not the Rust discriminants, which are ClickHouse's).
fn channel(c: Channel) -> i64 {
    match c {
        Channel::App => 0,
        Channel::Web => 1,
        Channel::Kiosk => 2,
    }
}

fn sex(s: Sex) -> i64 {
    match s {
        Sex::Male => 0,
        Sex::Female => 1,
    }
}

fn transport_mode(m: TransportMode) -> i64 {
    match m {
        TransportMode::Air => 0,
        TransportMode::Sea => 1,
        TransportMode::Land => 2,
    }
}

fn test_kind(k: TestKind) -> i64 {
    match k {
        TestKind::Pcr => 0,
        TestKind::Antigen => 1,
    }
}

fn test_result(r: TestResult) -> i64 {
    match r {
        TestResult::Negative => 0,
        TestResult::Positive => 1,
    }
}

/// `["null", T]`: branch 0 for null, branch 1 and the value otherwise.
fn optional<T>(out: &mut Vec<u8>, value: Option<T>, write: impl FnOnce(&mut Vec<u8>, T)) {
    match value {
        None => long(out, 0),
        Some(value) => {
            long(out, 1);
            write(out, value);
        }
    }
}

fn string(out: &mut Vec<u8>, s: &str) {
    long(out, s.len() as i64);
    out.extend_from_slice(s.as_bytes());
}

fn boolean(out: &mut Vec<u8>, b: bool) {
    out.push(u8::from(b));
}

/// Zigzag, then 7 bits a byte, low bits first.
fn long(out: &mut Vec<u8>, n: i64) {
    let mut z = ((n << 1) ^ (n >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}
