//! Rules a declaration must pass. Each failure is a [`FieldError`]: a stable [`ErrorCode`], the
//! path of the field (`traveller.nik`) and a message a traveller at a kiosk can act on. One
//! declaration can fail several rules; every failure is reported, not just the first.
//!
//! Two stages, because they need different things:
//! - [`check_form`] needs nothing but the form: presence, formats, ranges. The gateway runs it
//!   and answers 422 so the traveller can fix the form on the spot.
//! - [`check_references`] needs reference data (airports, region codes) and reads times in
//!   the ports' time zones.
//!
//! The gateway runs both ([`validate`]) and answers 422 so the traveller can fix the form on
//! the spot; the enricher runs them again, because a gateway may run an older version, and
//! sends failures to the rejected topic. Checks that depend on time take the gateway's receive
//! time as "now", so a replayed record is judged against the moment it was submitted.
//!
//! Some findings do not reject: they become data-quality warnings (see [`Warning`]).

use chrono::{DateTime, Datelike, Duration, FixedOffset, NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use serde::{Deserialize, Serialize};

use crate::country;
use crate::form::{DeclarationForm, Sex, TransportMode};
use crate::mrz;
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
    /// Well-formed, but not an ISO 3166-1 alpha-3 or ICAO nationality code.
    UnknownCountry,
    /// A check digit of the passport's machine-readable zone is wrong.
    MrzCheckDigit,
    /// The machine-readable zone says something else than the form (number, birth date ...).
    MrzMismatch,
    /// Departure too long before or after the declaration was submitted.
    DepartureOutsideWindow,
    /// The message on the topic could not be decoded at all (bad Avro, unknown schema).
    Undecodable,
    /// An air trip whose arrival airport is not in Indonesia: the e-HAC covers entering and
    /// travelling within Indonesia only.
    ArrivalOutsideIndonesia,
    /// A control, bidirectional-override or zero-width character in a free-text field: it can
    /// hide or reorder what a health officer reads (Trojan Source, CVE-2021-42574).
    ForbiddenCharacter,
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
            ErrorCode::UnknownCountry => "unknown_country",
            ErrorCode::MrzCheckDigit => "mrz_check_digit",
            ErrorCode::MrzMismatch => "mrz_mismatch",
            ErrorCode::DepartureOutsideWindow => "departure_outside_window",
            ErrorCode::Undecodable => "undecodable",
            ErrorCode::ArrivalOutsideIndonesia => "arrival_outside_indonesia",
            ErrorCode::ForbiddenCharacter => "forbidden_character",
        }
    }
}

/// One failed rule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// Rules that are policy rather than format: set by the health ministry, configurable per
/// deployment (the services take them as flags).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Policy {
    /// How long before receipt the departure may be: travellers who declare after take-off.
    pub departure_past: Duration,
    /// How long after receipt the departure may be: declarations filed ahead of the trip.
    pub departure_future: Duration,
    /// Oldest plausible traveller.
    pub max_age_years: i32,
    /// How long before departure a negative PCR test still counts.
    pub pcr_valid_for: Duration,
    /// How long before departure a negative antigen test still counts.
    pub antigen_valid_for: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            departure_past: Duration::days(3),
            departure_future: Duration::days(3),
            max_age_years: 120,
            // Indonesia's 2021-2022 travel rules: PCR within 3x24 h, antigen within 1x24 h.
            pcr_valid_for: Duration::hours(72),
            antigen_valid_for: Duration::hours(24),
        }
    }
}

/// A finding that does not reject the declaration but that analysts should see. Stable
/// strings, like error codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Warning {
    /// The NIK's district code is no longer in the latest Kemendagri list (it was split or
    /// renumbered); the NIK stays valid.
    DistrictCodeRetired,
    /// Filed after departure: on board or on arrival.
    SubmittedAfterDeparture,
    /// `submitted_at` is later than the gateway's receive time: the client's clock is ahead.
    SubmittedAtInFuture,
    /// The passport (from its MRZ) expired before arrival.
    PassportExpired,
    /// The passport (from its MRZ) expires within six months of arrival.
    PassportExpiresSoon,
    /// Vaccination doses declared for a child under six months, below any vaccine's minimum age.
    VaccinatedBelowMinimumAge,
}

impl Warning {
    pub fn as_str(self) -> &'static str {
        match self {
            Warning::DistrictCodeRetired => "district_code_retired",
            Warning::SubmittedAfterDeparture => "submitted_after_departure",
            Warning::SubmittedAtInFuture => "submitted_at_in_future",
            Warning::PassportExpired => "passport_expired",
            Warning::PassportExpiresSoon => "passport_expires_soon",
            Warning::VaccinatedBelowMinimumAge => "vaccinated_below_minimum_age",
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
    /// Expiry date from the passport's MRZ, when one was scanned.
    pub passport_expiry: Option<NaiveDate>,
    pub warnings: Vec<Warning>,
}

/// Checks a form on its own: every required field present, every field well-formed, dates
/// plausible at `received_at` (the gateway's receive time).
pub fn check_form(form: &DeclarationForm, policy: &Policy, received_at: DateTime<Utc>) -> Result<FormFacts, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let e = &mut errors;
    // Dates on the form are local somewhere between UTC-12 and UTC+14: allow for that before
    // calling one "in the future".
    let latest_local_date = (received_at + Duration::hours(14)).date_naive();

    if let Some(id) = &form.declaration_id {
        if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            e.push(FieldError::new(ErrorCode::InvalidFormat, "declaration_id", "must be 1-64 characters of A-Z, a-z, 0-9, '-' or '_'"));
        }
    }
    required(e, "client_id", &form.client_id);
    forbidden_characters(e, form);
    if form.channel.is_none() {
        e.push(FieldError::new(ErrorCode::Required, "channel", "is required: one of app, web, kiosk"));
    }
    let submitted_at = match &form.submitted_at {
        None => None,
        Some(s) => match DateTime::parse_from_rfc3339(s) {
            Ok(t) => Some(t.with_timezone(&Utc)),
            Err(_) => {
                e.push(FieldError::new(
                    ErrorCode::InvalidFormat,
                    "submitted_at",
                    "must be an RFC 3339 date-time with offset, e.g. 2026-12-20T08:30:00+07:00",
                ));
                None
            }
        },
    };
    if submitted_at.is_some_and(|s| s > received_at + Duration::minutes(5)) {
        warnings.push(Warning::SubmittedAtInFuture);
    }

    let t = &form.traveller;
    match (&t.nik, &t.passport_number) {
        (Some(_), Some(_)) => e.push(FieldError::new(
            ErrorCode::IdentityConflict,
            "traveller",
            "give either nik (citizens) or passport_number (foreigners), not both",
        )),
        (None, None) => e.push(FieldError::new(
            ErrorCode::Required,
            "traveller.nik",
            "citizens give their 16-digit NIK; foreigners give passport_number and nationality",
        )),
        (Some(nik), None) => {
            if nik.len() != 16 || !nik.bytes().all(|b| b.is_ascii_digit()) {
                e.push(FieldError::new(ErrorCode::InvalidFormat, "traveller.nik", "must be exactly 16 digits"));
            }
            if t.nationality.as_deref().is_some_and(|n| n != "IDN") {
                e.push(FieldError::new(
                    ErrorCode::IdentityConflict,
                    "traveller.nationality",
                    "a NIK belongs to an Indonesian citizen: leave nationality empty or IDN",
                ));
            }
        }
        (None, Some(passport)) => {
            if !is_passport_number(passport) {
                e.push(FieldError::new(
                    ErrorCode::InvalidFormat,
                    "traveller.passport_number",
                    "must be 6-9 characters of A-Z and 0-9, with at least one digit, as printed in the passport",
                ));
            }
            match &t.nationality {
                None => e.push(FieldError::new(
                    ErrorCode::Required,
                    "traveller.nationality",
                    "is required with a passport: ISO 3166-1 alpha-3, e.g. SGP",
                )),
                Some(n) if n.is_empty() || n.len() > 3 || !n.bytes().all(|b| b.is_ascii_uppercase()) => e.push(FieldError::new(
                    ErrorCode::InvalidFormat,
                    "traveller.nationality",
                    "must be an ISO 3166-1 alpha-3 code in capitals, e.g. SGP",
                )),
                Some(n) if !country::is_nationality(n) => e.push(FieldError::new(
                    ErrorCode::UnknownCountry,
                    "traveller.nationality",
                    format!("{n} is not an ISO 3166-1 alpha-3 or ICAO nationality code"),
                )),
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
    let mut date_of_birth = date(e, "traveller.date_of_birth", &t.date_of_birth);
    if let Some(dob) = date_of_birth {
        if dob > latest_local_date {
            e.push(FieldError::new(ErrorCode::OutOfRange, "traveller.date_of_birth", "is in the future"));
            date_of_birth = None;
        } else if crate::enrich::age_on(dob, received_at.date_naive()) > policy.max_age_years {
            e.push(FieldError::new(
                ErrorCode::OutOfRange,
                "traveller.date_of_birth",
                format!("means an age over {} years", policy.max_age_years),
            ));
            date_of_birth = None;
        }
    }
    if let (Some(nik), None) = (&t.nik, &t.passport_number) {
        if nik.len() == 16 && nik.bytes().all(|b| b.is_ascii_digit()) {
            check_nik_birth(e, nik, date_of_birth, t.sex);
        }
    }
    let passport_expiry = match &t.passport_mrz {
        Some(text) => check_mrz(e, form, text, date_of_birth),
        None => None,
    };
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
    let air = trip.transport_mode == Some(TransportMode::Air);
    required(e, "trip.carrier", &trip.carrier);
    if required(e, "trip.flight_number", &trip.flight_number) {
        if air && !is_flight_designator(&trip.flight_number) {
            e.push(FieldError::new(
                ErrorCode::InvalidFormat,
                "trip.flight_number",
                "must be a flight designator: 2-character airline code, 1-4 digits, optional letter, e.g. GA404",
            ));
        } else if trip.flight_number.chars().count() > 32 {
            e.push(FieldError::new(ErrorCode::OutOfRange, "trip.flight_number", "must be at most 32 characters"));
        }
    }
    if let Some(seat) = &trip.seat {
        if air && !is_seat(seat) {
            e.push(FieldError::new(ErrorCode::InvalidFormat, "trip.seat", "must be a row of 1-3 digits and a letter A-L, e.g. 12A"));
        } else if seat.chars().count() > 16 {
            e.push(FieldError::new(ErrorCode::OutOfRange, "trip.seat", "must be at most 16 characters"));
        }
    }
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
    if let Some(code) = &a.postal_code {
        if code.len() != 5 || !code.bytes().all(|b| b.is_ascii_digit()) {
            e.push(FieldError::new(
                ErrorCode::InvalidFormat,
                "destination_address.postal_code",
                "must be a 5-digit Indonesian postal code",
            ));
        }
    }

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
        Some(n) if !(0..=10).contains(&n) => {
            e.push(FieldError::new(ErrorCode::OutOfRange, "health.vaccination_doses", "must be between 0 and 10"))
        }
        Some(n) => {
            if n > 0 && date_of_birth.is_some_and(|dob| received_at.date_naive() < dob + Duration::days(182)) {
                warnings.push(Warning::VaccinatedBelowMinimumAge);
            }
        }
    }
    if let Some(test) = &h.latest_test {
        if test.kind.is_none() {
            e.push(FieldError::new(ErrorCode::Required, "health.latest_test.kind", "is required: pcr or antigen"));
        }
        if test.result.is_none() {
            e.push(FieldError::new(ErrorCode::Required, "health.latest_test.result", "is required: negative or positive"));
        }
        if let Some(taken_on) = date(e, "health.latest_test.taken_on", &test.taken_on) {
            if taken_on > latest_local_date {
                e.push(FieldError::new(
                    ErrorCode::OutOfRange,
                    "health.latest_test.taken_on",
                    "is in the future: give the date the sample was taken",
                ));
            } else if date_of_birth.is_some_and(|dob| taken_on < dob) {
                e.push(FieldError::new(ErrorCode::OutOfRange, "health.latest_test.taken_on", "is before the date of birth"));
            }
        }
    }

    match (date_of_birth, departure_time, arrival_time) {
        (Some(date_of_birth), Some(departure_time), Some(arrival_time)) if errors.is_empty() => {
            Ok(FormFacts { date_of_birth, submitted_at, departure_time, arrival_time, passport_expiry, warnings })
        }
        _ => Err(errors),
    }
}

/// Reads the passport's MRZ, verifies its check digits and compares it with the form. Returns
/// the passport's expiry date.
fn check_mrz(errors: &mut Vec<FieldError>, form: &DeclarationForm, text: &str, date_of_birth: Option<NaiveDate>) -> Option<NaiveDate> {
    const FIELD: &str = "traveller.passport_mrz";
    let mrz = match mrz::parse(text) {
        Ok(mrz) => mrz,
        Err(e @ mrz::MrzError::CheckDigit { .. }) => {
            errors.push(FieldError::new(ErrorCode::MrzCheckDigit, FIELD, e.to_string()));
            return None;
        }
        Err(e) => {
            errors.push(FieldError::new(ErrorCode::InvalidFormat, FIELD, e.to_string()));
            return None;
        }
    };
    let t = &form.traveller;
    let mut mismatch = |what: &str, mrz_says: &str, form_says: &str| {
        errors.push(FieldError::new(
            ErrorCode::MrzMismatch,
            FIELD,
            format!("the passport's {what} is {mrz_says}, the form says {form_says}"),
        ));
    };
    if let Some(number) = &t.passport_number {
        if *number != mrz.document_number {
            mismatch("number", &mrz.document_number, number);
        }
    }
    // Citizens carry a NIK and an Indonesian passport.
    let declared = if t.nik.is_some() { Some("IDN") } else { t.nationality.as_deref() };
    if let Some(declared) = declared {
        if country::normalise_nationality(declared) != country::normalise_nationality(&mrz.nationality) {
            mismatch("nationality", &mrz.nationality, declared);
        }
    }
    if let Some(dob) = date_of_birth {
        let written = dob.format("%y%m%d").to_string();
        if written != mrz.birth_date {
            mismatch("date of birth (YYMMDD)", &mrz.birth_date, &written);
        }
    }
    let sex = match mrz.sex {
        'M' => Some(Sex::Male),
        'F' => Some(Sex::Female),
        _ => None,
    };
    if let (Some(sex), Some(declared)) = (sex, t.sex) {
        if sex != declared {
            mismatch("sex", &mrz.sex.to_string(), if declared == Sex::Female { "female" } else { "male" });
        }
    }
    // Passports are valid for at most ten years, so every expiry YY is 20YY for this century.
    NaiveDate::parse_from_str(&format!("20{}", mrz.expiry_date), "%Y%m%d").ok()
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
    pub received_at: DateTime<Utc>,
    pub submitted_at: DateTime<Utc>,
    pub departure_at: DateTime<Utc>,
    pub arrival_at: DateTime<Utc>,
    pub departure: ResolvedPort<'r>,
    pub arrival: ResolvedPort<'r>,
    /// The NIK's district of issue, for citizens.
    pub district: Option<&'r Region>,
    pub passport_expiry: Option<NaiveDate>,
    pub warnings: Vec<Warning>,
}

/// Both checks, as the gateway and the enricher run them: the form first, then (when the form
/// is well-formed) the references.
pub fn validate<'r>(
    form: &DeclarationForm,
    reference: &'r ReferenceData,
    policy: &Policy,
    received_at: DateTime<Utc>,
) -> Result<Checked<'r>, Vec<FieldError>> {
    let facts = check_form(form, policy, received_at)?;
    check_references(form, facts, reference, policy, received_at)
}

/// Checks a form against reference data and reads its times in the ports' time zones.
/// `received_at` is the gateway's receive time, the "now" of the departure window.
pub fn check_references<'r>(
    form: &DeclarationForm,
    facts: FormFacts,
    reference: &'r ReferenceData,
    policy: &Policy,
    received_at: DateTime<Utc>,
) -> Result<Checked<'r>, Vec<FieldError>> {
    let mut errors = Vec::new();
    let mut warnings = facts.warnings;
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
    if trip.departure_port.trim().eq_ignore_ascii_case(trip.arrival_port.trim()) {
        errors.push(FieldError::new(ErrorCode::SamePort, "trip.arrival_port", "must differ from the departure port"));
    }
    if let ResolvedPort::Airport(a) = arrival {
        if a.country != "ID" {
            errors.push(FieldError::new(
                ErrorCode::ArrivalOutsideIndonesia,
                "trip.arrival_port",
                format!("{} is in {}: an e-HAC is for trips that end in Indonesia", a.iata, a.country),
            ));
        }
    }

    let district = match &form.traveller.nik {
        Some(nik) => {
            let code = &nik[..6.min(nik.len())];
            let found = reference.district(code);
            match found {
                None => errors.push(FieldError::new(
                    ErrorCode::UnknownDistrict,
                    "traveller.nik",
                    format!("the first six digits ({code}) are not a Kemendagri district code"),
                )),
                Some(d) if d.last_seen < reference.latest_region_list() => warnings.push(Warning::DistrictCodeRetired),
                Some(_) => {}
            }
            found
        }
        None => None,
    };

    let departure_at = instant(&mut errors, "trip.departure_time", facts.departure_time, departure.time_zone());
    let arrival_at = instant(&mut errors, "trip.arrival_time", facts.arrival_time, arrival.time_zone());
    if let Some(d) = departure_at {
        if d < received_at - policy.departure_past || d > received_at + policy.departure_future {
            errors.push(FieldError::new(
                ErrorCode::DepartureOutsideWindow,
                "trip.departure_time",
                format!(
                    "must be between {} days before and {} days after the declaration is submitted",
                    policy.departure_past.num_days(),
                    policy.departure_future.num_days()
                ),
            ));
        } else if d < received_at {
            warnings.push(Warning::SubmittedAfterDeparture);
        }
    }
    if let (Some(d), Some(a)) = (departure_at, arrival_at) {
        if a <= d {
            errors.push(FieldError::new(
                ErrorCode::ArrivalBeforeDeparture,
                "trip.arrival_time",
                "must be after the departure time (both read in their ports' local time)",
            ));
        }
    }

    match (departure_at, arrival_at) {
        (Some(departure_at), Some(arrival_at)) if errors.is_empty() => {
            if let Some(expiry) = facts.passport_expiry {
                let arrival_date = arrival_at.with_timezone(&arrival.time_zone()).date_naive();
                if expiry < arrival_date {
                    warnings.push(Warning::PassportExpired);
                } else if expiry < arrival_date + Duration::days(183) {
                    warnings.push(Warning::PassportExpiresSoon);
                }
            }
            Ok(Checked {
                date_of_birth: facts.date_of_birth,
                received_at,
                submitted_at: facts.submitted_at.unwrap_or(received_at),
                departure_at,
                arrival_at,
                departure,
                arrival,
                district,
                passport_expiry: facts.passport_expiry,
                warnings,
            })
        }
        _ => Err(errors),
    }
}

/// A NIK is PPKKCC DDMMYY SSSS: district of issue, birth date (day + 40 for women), serial.
/// Checks the birth part against the declared date of birth and sex. The two-digit year is
/// compared as is: the declared date of birth settles the century.
fn check_nik_birth(errors: &mut Vec<FieldError>, nik: &str, date_of_birth: Option<NaiveDate>, sex: Option<Sex>) {
    let number = |range: std::ops::Range<usize>| nik[range].parse::<u32>().expect("all digits");
    let (coded_day, month, year, serial) = (number(6..8), number(8..10), number(10..12), number(12..16));
    let (day, coded_sex) = if coded_day > 40 { (coded_day - 40, Sex::Female) } else { (coded_day, Sex::Male) };
    if !(1..=31).contains(&day) || !(1..=12).contains(&month) {
        errors.push(FieldError::new(
            ErrorCode::InvalidFormat,
            "traveller.nik",
            "digits 7-12 must be a birth date DDMMYY (day + 40 for women)",
        ));
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

/// Whether `c` may hide or reorder text: C0 and C1 controls and DEL, bidirectional embeddings,
/// overrides and isolates (U+202A-U+202E, U+2066-U+2069), zero-width characters (U+200B-U+200D,
/// U+2060, U+FEFF).
pub fn is_forbidden_character(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{1f}' | '\u{7f}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200b}'..='\u{200d}' | '\u{2060}' | '\u{feff}')
}

/// Free text a person reads is refused when it holds a character that can hide or reorder it;
/// it is not cleaned, because what is accepted is stored as sent.
fn forbidden_characters(errors: &mut Vec<FieldError>, form: &DeclarationForm) {
    let (t, trip, a) = (&form.traveller, &form.trip, &form.destination_address);
    let fields = [
        ("client_id", Some(&form.client_id)),
        ("traveller.full_name", Some(&t.full_name)),
        ("traveller.email", t.email.as_ref()),
        ("trip.carrier", Some(&trip.carrier)),
        ("trip.flight_number", Some(&trip.flight_number)),
        ("trip.seat", trip.seat.as_ref()),
        ("trip.departure_port", Some(&trip.departure_port)),
        ("trip.arrival_port", Some(&trip.arrival_port)),
        ("destination_address.street", Some(&a.street)),
        ("destination_address.city", Some(&a.city)),
        ("destination_address.province", Some(&a.province)),
    ];
    for (field, value) in fields {
        let Some(value) = value else { continue };
        if let Some((position, c)) = value.chars().enumerate().find(|(_, c)| is_forbidden_character(*c)) {
            errors.push(FieldError::new(
                ErrorCode::ForbiddenCharacter,
                field,
                format!("character {} holds U+{:04X}, a control, bidirectional or zero-width character", position + 1, c as u32),
            ));
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
    let parsed = crate::timefmt::date(value);
    if parsed.is_none() {
        errors.push(FieldError::new(ErrorCode::InvalidFormat, field, "must be a date YYYY-MM-DD"));
    }
    parsed
}

fn form_time(errors: &mut Vec<FieldError>, field: &str, value: &str) -> Option<FormTime> {
    if !required(errors, field, value) {
        return None;
    }
    let parsed = crate::timefmt::local_time(value)
        .map(FormTime::Local)
        .or_else(|| DateTime::parse_from_rfc3339(value).ok().or_else(|| crate::timefmt::offset_time(value)).map(FormTime::Absolute));
    if parsed.is_none() {
        errors.push(FieldError::new(
            ErrorCode::InvalidFormat,
            field,
            "must be a local time YYYY-MM-DDTHH:MM at the port, or RFC 3339 with offset",
        ));
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

/// 6-9 characters (the MRZ's document number field holds 9), at least one digit.
fn is_passport_number(number: &str) -> bool {
    (6..=9).contains(&number.len())
        && number.bytes().all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        && number.bytes().any(|b| b.is_ascii_digit())
}

/// IATA flight designator: a 2-character airline code (letters and digits, not two digits),
/// a 1-4 digit flight number and an optional operational suffix letter, e.g. GA404, 8B123A.
fn is_flight_designator(designator: &str) -> bool {
    let b = designator.as_bytes();
    if b.len() < 3 || b.len() > 7 {
        return false;
    }
    let airline = &b[..2];
    if !airline.iter().all(|c| c.is_ascii_uppercase() || c.is_ascii_digit()) || airline.iter().all(u8::is_ascii_digit) {
        return false;
    }
    let rest = &b[2..];
    let digits = rest.iter().take_while(|c| c.is_ascii_digit()).count();
    (1..=4).contains(&digits)
        && match &rest[digits..] {
            [] => true,
            [suffix] => suffix.is_ascii_uppercase(),
            _ => false,
        }
}

/// A seat such as 12A: row 1-999 without a leading zero, then a letter A-L.
fn is_seat(seat: &str) -> bool {
    let b = seat.as_bytes();
    let Some((letter, row)) = b.split_last() else { return false };
    (1..=3).contains(&row.len()) && row[0] != b'0' && row.iter().all(u8::is_ascii_digit) && (b'A'..=b'L').contains(letter)
}

fn is_phone(phone: &str) -> bool {
    let digits = phone.strip_prefix('+').unwrap_or("");
    (8..=15).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit())
}

fn is_email(email: &str) -> bool {
    match email.split_once('@') {
        Some((local, domain)) => {
            !local.is_empty()
                && domain.contains('.')
                && !domain.starts_with('.')
                && !domain.ends_with('.')
                && !email.contains(char::is_whitespace)
        }
        None => false,
    }
}
