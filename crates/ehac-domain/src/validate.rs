//! Rules a declaration must pass. Each failure is a [`FieldError`]: a stable [`ErrorCode`], the
//! path of the field (`traveller.nik`) and a message a traveller at a kiosk can act on. One
//! declaration can fail several rules; every failure is reported, not just the first.
//!
//! Two stages, because they need different things:
//! - [`check_form`] needs nothing but the form: presence, formats, ranges. The gateway runs it
//!   and answers 422 so the traveller can fix the form on the spot.
//! - [`check_references`] needs reference data (airports, region codes) and reads times in
//!   the ports' time zones. The enricher runs it; failures go to the rejected topic.

use chrono::{DateTime, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::form::{DeclarationForm, Sex, TransportMode};
use crate::reference::{Airport, ReferenceData, Region};

/// Stable machine-readable reason. Clients and analysts match on these strings: add new
/// codes freely, never rename one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    Required,
    InvalidFormat,
    OutOfRange,
    IdentityConflict,
    UnknownAirport,
    UnknownDistrict,
    SamePort,
    ArrivalBeforeDeparture,
    /// The NIK's DDMMYY part does not match the declared date of birth.
    NikDateOfBirthMismatch,
    /// The NIK's day (+40 for women) does not match the declared sex.
    NikSexMismatch,
    /// The message on the topic could not be decoded at all (bad Avro, unknown schema).
    Undecodable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Required => "required",
            ErrorCode::InvalidFormat => "invalid_format",
            ErrorCode::OutOfRange => "out_of_range",
            ErrorCode::IdentityConflict => "identity_conflict",
            ErrorCode::UnknownAirport => "unknown_airport",
            ErrorCode::UnknownDistrict => "unknown_district",
            ErrorCode::SamePort => "same_port",
            ErrorCode::ArrivalBeforeDeparture => "arrival_before_departure",
            ErrorCode::NikDateOfBirthMismatch => "nik_date_of_birth_mismatch",
            ErrorCode::NikSexMismatch => "nik_sex_mismatch",
            ErrorCode::Undecodable => "undecodable",
        }
    }
}

/// One failed rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FieldError {
    pub code: String,
    /// Dotted path into the form, e.g. `trip.arrival_port`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(code: ErrorCode, field: &str, message: impl Into<String>) -> Self {
        FieldError { code: code.as_str().to_owned(), field: field.to_owned(), message: message.into() }
    }
}

/// A time as written on the form: either a wall-clock time at a port, or an absolute instant.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FormTime {
    Local(NaiveDateTime),
    Absolute(DateTime<FixedOffset>),
}

impl FormTime {
    /// The instant this time names when read in `tz`. `None` for a wall-clock time that does not
    /// exist there (a daylight-saving gap).
    pub fn at(self, tz: Tz) -> Option<DateTime<Utc>> {
        match self {
            FormTime::Local(naive) => tz.from_local_datetime(&naive).earliest().map(|t| t.with_timezone(&Utc)),
            FormTime::Absolute(t) => Some(t.with_timezone(&Utc)),
        }
    }
}

/// What [`check_form`] learned while checking.
#[derive(Debug, Clone, PartialEq)]
pub struct FormFacts {
    pub date_of_birth: NaiveDate,
    pub submitted_at: Option<DateTime<Utc>>,
    pub departure_time: FormTime,
    pub arrival_time: FormTime,
}

/// Checks a form on its own: every required field present, every field well-formed.
pub fn check_form(form: &DeclarationForm) -> Result<FormFacts, Vec<FieldError>> {
    let mut errors = Vec::new();
    let e = &mut errors;

    if let Some(id) = &form.declaration_id {
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            e.push(FieldError::new(ErrorCode::InvalidFormat, "declaration_id", "must be 1-64 characters of A-Z, a-z, 0-9, '-' or '_'"));
        }
    }
    required(e, "client_id", &form.client_id);
    if form.channel.is_none() {
        e.push(FieldError::new(ErrorCode::Required, "channel", "is required: one of app, web, kiosk"));
    }
    let submitted_at = match &form.submitted_at {
        None => None,
        Some(s) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => {
                e.push(FieldError::new(ErrorCode::InvalidFormat, "submitted_at", "must be an RFC 3339 date-time with offset, e.g. 2026-12-20T08:30:00+07:00"));
                None
            }
        },
    };

    let t = &form.traveller;
    match (&t.nik, &t.passport_number) {
        (Some(_), Some(_)) => e.push(FieldError::new(ErrorCode::IdentityConflict, "traveller", "give either nik (citizens) or passport_number (foreigners), not both")),
        (None, None) => e.push(FieldError::new(ErrorCode::Required, "traveller.nik", "citizens give their 16-digit NIK; foreigners give passport_number and nationality")),
        (Some(nik), None) => {
            if nik.len() != 16 || !nik.bytes().all(|b| b.is_ascii_digit()) {
                e.push(FieldError::new(ErrorCode::InvalidFormat, "traveller.nik", "must be exactly 16 digits"));
            }
        }
        (None, Some(passport)) => {
            if passport.len() < 5 || passport.len() > 20 || !passport.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit()) {
                e.push(FieldError::new(ErrorCode::InvalidFormat, "traveller.passport_number", "must be 5-20 characters of A-Z and 0-9"));
            }
            match &t.nationality {
                None => e.push(FieldError::new(ErrorCode::Required, "traveller.nationality", "is required with a passport: ISO 3166-1 alpha-3, e.g. SGP")),
                Some(n) if n.len() != 3 || !n.bytes().all(|b| b.is_ascii_uppercase()) => {
                    e.push(FieldError::new(ErrorCode::InvalidFormat, "traveller.nationality", "must be an ISO 3166-1 alpha-3 code, e.g. SGP"))
                }
                Some(_) => {}
            }
        }
    }
    required(e, "traveller.full_name", &t.full_name);
    if t.full_name.chars().count() > 200 {
        e.push(FieldError::new(ErrorCode::OutOfRange, "traveller.full_name", "must be at most 200 characters"));
    }
    if t.sex.is_none() {
        e.push(FieldError::new(ErrorCode::Required, "traveller.sex", "is required: male or female"));
    }
    let date_of_birth = date(e, "traveller.date_of_birth", &t.date_of_birth);
    if let (Some(nik), None) = (&t.nik, &t.passport_number) {
        if nik.len() == 16 && nik.bytes().all(|b| b.is_ascii_digit()) {
            check_nik_birth(e, nik, date_of_birth, t.sex);
        }
    }
    if required(e, "traveller.phone", &t.phone) && !is_phone(&t.phone) {
        e.push(FieldError::new(ErrorCode::InvalidFormat, "traveller.phone", "must be + and 8-15 digits, e.g. +6281234567890"));
    }
    if let Some(email) = &t.email {
        if !is_email(email) {
            e.push(FieldError::new(ErrorCode::InvalidFormat, "traveller.email", "must look like name@example.com"));
        }
    }

    let trip = &form.trip;
    if trip.transport_mode.is_none() {
        e.push(FieldError::new(ErrorCode::Required, "trip.transport_mode", "is required: air, sea or land"));
    }
    required(e, "trip.carrier", &trip.carrier);
    required(e, "trip.flight_number", &trip.flight_number);
    let air = trip.transport_mode == Some(TransportMode::Air);
    for (field, port) in [("trip.departure_port", &trip.departure_port), ("trip.arrival_port", &trip.arrival_port)] {
        if required(e, field, port) && air && !(port.len() == 3 && port.bytes().all(|b| b.is_ascii_uppercase())) {
            e.push(FieldError::new(ErrorCode::InvalidFormat, field, "must be a 3-letter IATA airport code, e.g. CGK"));
        }
    }
    let departure_time = form_time(e, "trip.departure_time", &trip.departure_time);
    let arrival_time = form_time(e, "trip.arrival_time", &trip.arrival_time);

    let a = &form.destination_address;
    required(e, "destination_address.street", &a.street);
    required(e, "destination_address.city", &a.city);
    required(e, "destination_address.province", &a.province);

    let h = &form.health;
    for (field, answer) in [
        ("health.fever", h.fever),
        ("health.cough", h.cough),
        ("health.shortness_of_breath", h.shortness_of_breath),
        ("health.contact_with_case", h.contact_with_case),
    ] {
        if answer.is_none() {
            e.push(FieldError::new(ErrorCode::Required, field, "must be answered true or false"));
        }
    }
    match h.vaccination_doses {
        None => e.push(FieldError::new(ErrorCode::Required, "health.vaccination_doses", "is required (0 if not vaccinated)")),
        Some(n) if !(0..=10).contains(&n) => e.push(FieldError::new(ErrorCode::OutOfRange, "health.vaccination_doses", "must be between 0 and 10")),
        Some(_) => {}
    }
    if let Some(test) = &h.latest_test {
        if test.kind.is_none() {
            e.push(FieldError::new(ErrorCode::Required, "health.latest_test.kind", "is required: pcr or antigen"));
        }
        if test.result.is_none() {
            e.push(FieldError::new(ErrorCode::Required, "health.latest_test.result", "is required: negative or positive"));
        }
        date(e, "health.latest_test.taken_on", &test.taken_on);
    }

    match (date_of_birth, departure_time, arrival_time) {
        (Some(date_of_birth), Some(departure_time), Some(arrival_time)) if errors.is_empty() => {
            Ok(FormFacts { date_of_birth, submitted_at, departure_time, arrival_time })
        }
        _ => Err(errors),
    }
}

/// A port after looking it up: airports come from reference data; sea and land ports are not
/// listed there, so their times are read in Indonesia's western time zone (WIB).
#[derive(Debug, Clone, Copy)]
pub enum ResolvedPort<'r> {
    Airport(&'r Airport),
    Unlisted,
}

impl ResolvedPort<'_> {
    pub fn time_zone(&self) -> Tz {
        match self {
            ResolvedPort::Airport(a) => a.tz,
            ResolvedPort::Unlisted => chrono_tz::Asia::Jakarta,
        }
    }
}

/// Everything both checks established, ready for [`crate::enrich`].
#[derive(Debug, Clone)]
pub struct Checked<'r> {
    pub date_of_birth: NaiveDate,
    pub submitted_at: DateTime<Utc>,
    pub departure_at: DateTime<Utc>,
    pub arrival_at: DateTime<Utc>,
    pub departure: ResolvedPort<'r>,
    pub arrival: ResolvedPort<'r>,
    /// The NIK's district of issue, for citizens.
    pub district: Option<&'r Region>,
}

/// Checks a form against reference data. `received_at` stands in for a missing `submitted_at`.
pub fn check_references<'r>(
    form: &DeclarationForm,
    facts: &FormFacts,
    reference: &'r ReferenceData,
    received_at: DateTime<Utc>,
) -> Result<Checked<'r>, Vec<FieldError>> {
    let mut errors = Vec::new();
    let trip = &form.trip;
    let air = trip.transport_mode == Some(TransportMode::Air);
    let mut port = |field: &str, code: &str| -> ResolvedPort<'r> {
        if !air {
            return ResolvedPort::Unlisted;
        }
        match reference.airport(code) {
            Some(a) => ResolvedPort::Airport(a),
            None => {
                errors.push(FieldError::new(ErrorCode::UnknownAirport, field, format!("{code} is not a known IATA airport code")));
                ResolvedPort::Unlisted
            }
        }
    };
    let departure = port("trip.departure_port", &trip.departure_port);
    let arrival = port("trip.arrival_port", &trip.arrival_port);
    if trip.departure_port.eq_ignore_ascii_case(&trip.arrival_port) {
        errors.push(FieldError::new(ErrorCode::SamePort, "trip.arrival_port", "must differ from the departure port"));
    }

    let district = match &form.traveller.nik {
        Some(nik) => {
            let code = &nik[..6.min(nik.len())];
            let found = reference.district(code);
            if found.is_none() {
                errors.push(FieldError::new(ErrorCode::UnknownDistrict, "traveller.nik", format!("the first six digits ({code}) are not a Kemendagri district code")));
            }
            found
        }
        None => None,
    };

    let departure_at = instant(&mut errors, "trip.departure_time", facts.departure_time, departure.time_zone());
    let arrival_at = instant(&mut errors, "trip.arrival_time", facts.arrival_time, arrival.time_zone());
    if let (Some(d), Some(a)) = (departure_at, arrival_at) {
        if a <= d {
            errors.push(FieldError::new(ErrorCode::ArrivalBeforeDeparture, "trip.arrival_time", "must be after the departure time (both read in their ports' local time)"));
        }
    }

    match (departure_at, arrival_at) {
        (Some(departure_at), Some(arrival_at)) if errors.is_empty() => Ok(Checked {
            date_of_birth: facts.date_of_birth,
            submitted_at: facts.submitted_at.unwrap_or(received_at),
            departure_at,
            arrival_at,
            departure,
            arrival,
            district,
        }),
        _ => Err(errors),
    }
}

/// A NIK is PPKKCC DDMMYY SSSS: district of issue, birth date (day + 40 for women), serial.
/// Checks the birth part against the declared date of birth and sex. The two-digit year is
/// compared as is: the declared date of birth settles the century.
fn check_nik_birth(errors: &mut Vec<FieldError>, nik: &str, date_of_birth: Option<NaiveDate>, sex: Option<Sex>) {
    use chrono::Datelike;
    let number = |range: std::ops::Range<usize>| nik[range].parse::<u32>().expect("all digits");
    let (coded_day, month, year, serial) = (number(6..8), number(8..10), number(10..12), number(12..16));
    let (day, coded_sex) = if coded_day > 40 { (coded_day - 40, Sex::Female) } else { (coded_day, Sex::Male) };
    if !(1..=31).contains(&day) || !(1..=12).contains(&month) {
        errors.push(FieldError::new(ErrorCode::InvalidFormat, "traveller.nik", "digits 7-12 must be a birth date DDMMYY (day + 40 for women)"));
        return;
    }
    if serial == 0 {
        errors.push(FieldError::new(ErrorCode::InvalidFormat, "traveller.nik", "the last four digits (serial) cannot be 0000"));
    }
    if let Some(dob) = date_of_birth {
        if (dob.day(), dob.month(), dob.year().rem_euclid(100) as u32) != (day, month, year) {
            errors.push(FieldError::new(
                ErrorCode::NikDateOfBirthMismatch,
                "traveller.nik",
                format!("digits 7-12 say born {day:02}-{month:02}-{year:02}, but date_of_birth is {dob}"),
            ));
        }
    }
    if let Some(sex) = sex {
        if sex != coded_sex {
            let expected = if sex == Sex::Female { "41-71 (day + 40) for women" } else { "01-31 for men" };
            errors.push(FieldError::new(ErrorCode::NikSexMismatch, "traveller.nik", format!("digits 7-8 must be {expected}")));
        }
    }
}

fn required(errors: &mut Vec<FieldError>, field: &str, value: &str) -> bool {
    if value.trim().is_empty() {
        errors.push(FieldError::new(ErrorCode::Required, field, "is required"));
        false
    } else {
        true
    }
}

fn date(errors: &mut Vec<FieldError>, field: &str, value: &str) -> Option<NaiveDate> {
    if !required(errors, field, value) {
        return None;
    }
    let parsed = NaiveDate::parse_from_str(value, "%Y-%m-%d").ok();
    if parsed.is_none() {
        errors.push(FieldError::new(ErrorCode::InvalidFormat, field, "must be a date YYYY-MM-DD"));
    }
    parsed
}

fn form_time(errors: &mut Vec<FieldError>, field: &str, value: &str) -> Option<FormTime> {
    if !required(errors, field, value) {
        return None;
    }
    let parsed = NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M")
        .or_else(|_| NaiveDateTime::parse_from_str(value, "%Y-%m-%dT%H:%M:%S"))
        .map(FormTime::Local)
        .or_else(|_| DateTime::parse_from_rfc3339(value).map(FormTime::Absolute))
        .ok();
    if parsed.is_none() {
        errors.push(FieldError::new(ErrorCode::InvalidFormat, field, "must be a local time YYYY-MM-DDTHH:MM at the port, or RFC 3339 with offset"));
    }
    parsed
}

fn instant(errors: &mut Vec<FieldError>, field: &str, time: FormTime, tz: Tz) -> Option<DateTime<Utc>> {
    let at = time.at(tz);
    if at.is_none() {
        errors.push(FieldError::new(ErrorCode::OutOfRange, field, format!("does not exist in {tz} (daylight-saving gap)")));
    }
    at
}

fn is_phone(phone: &str) -> bool {
    let digits = phone.strip_prefix('+').unwrap_or("");
    (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

fn is_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.') && !email.contains(char::is_whitespace),
        None => false,
    }
}
