//! Columns the form does not carry but analysts and health officers need.
//!
//! Risk flags:
//! - `symptomatic`: fever, cough or shortness of breath;
//! - `contact_with_case`: close contact with a confirmed case in the last 14 days;
//! - `positive_test`: the latest test was positive (flagged, never rejected);
//! - `stale_test`: the latest test was negative but older at departure than the policy allows
//!   (PCR 72 h, antigen 24 h by default; a test counts as taken at the end of its day);
//! - `unvaccinated`: zero doses.
//!
//! Triage (for the health officer at the port of entry):
//! - red: `positive_test`, or `symptomatic` together with `contact_with_case`;
//! - yellow: any other flag;
//! - green: no flag.
//!
//! Warnings are data-quality findings that do not reject (see [`crate::Warning`]).

use chrono::{DateTime, Datelike, Duration, NaiveDate, Timelike, Utc};

use crate::country;
use crate::form::{DeclarationForm, TestKind, TestResult};
use crate::record::{Enrichment, PortDetails};
use crate::reference::ReferenceData;
use crate::validate::{Checked, Policy, ResolvedPort};
use crate::verification::VerificationStatus;

/// Adds the enrichment columns to a declaration that passed both checks.
pub fn enrich(
    form: &DeclarationForm,
    checked: &Checked<'_>,
    reference: &ReferenceData,
    policy: &Policy,
    enricher_version: &str,
) -> Enrichment {
    let arrival_tz = checked.arrival.time_zone();
    let arrival_local = checked.arrival_at.with_timezone(&arrival_tz);
    let arrival_date = arrival_local.date_naive();
    let departure = port_details(&form.trip.departure_port, &checked.departure);
    let arrival = port_details(&form.trip.arrival_port, &checked.arrival);
    let domestic = is_indonesian(&departure) && is_indonesian(&arrival);

    let (home_province, home_regency, home_district_code) = match checked.district {
        Some(district) => {
            let (province, regency) = reference.parents(district);
            (
                province.map(|r| r.name.clone()).unwrap_or_default(),
                regency.map(|r| r.name.clone()).unwrap_or_default(),
                district.code.clone(),
            )
        }
        None => (String::new(), String::new(), String::new()),
    };
    let nationality = match (&form.traveller.nik, &form.traveller.nationality) {
        (Some(_), _) => "IDN".to_owned(),
        (None, Some(code)) => country::normalise_nationality(code).to_owned(),
        (None, None) => String::new(),
    };

    let age_years = age_on(checked.date_of_birth, arrival_date);
    let risk_flags: Vec<String> = risk_flags(form, checked, policy).into_iter().map(str::to_owned).collect();
    let triage = triage_of(&risk_flags);
    let verification_status = if form.traveller.nik.is_some() { VerificationStatus::Pending } else { VerificationStatus::NotApplicable };

    Enrichment {
        enricher_version: enricher_version.to_owned(),
        submitted_at_ms: checked.submitted_at.timestamp_millis(),
        departure_at_ms: checked.departure_at.timestamp_millis(),
        arrival_at_ms: checked.arrival_at.timestamp_millis(),
        arrival_date: days_since_epoch(arrival_date),
        arrival_local_hour: arrival_local.hour() as i32,
        departure,
        arrival,
        domestic,
        nationality,
        home_province,
        home_regency,
        age_years,
        age_band: age_band(age_years).to_owned(),
        triage: triage.to_owned(),
        risk_flags,
        warnings: checked.warnings.iter().map(|w| w.as_str().to_owned()).collect(),
        verification_status,
        traveller_key: String::new(),
        pepper_version: 0,
        home_district_code,
    }
}

/// The risk flags of a declaration that passed both checks, in the order analysts see them.
/// Public so the gateway can print the triage on a traveller's pass exactly as the enricher
/// computes it.
pub fn risk_flags(form: &DeclarationForm, checked: &Checked<'_>, policy: &Policy) -> Vec<&'static str> {
    let health = &form.health;
    let symptomatic = health.fever == Some(true) || health.cough == Some(true) || health.shortness_of_breath == Some(true);
    let contact = health.contact_with_case == Some(true);
    let positive = health.latest_test.as_ref().is_some_and(|t| t.result == Some(TestResult::Positive));
    let stale = health.latest_test.as_ref().is_some_and(|t| {
        let valid_for = match t.kind {
            Some(TestKind::Pcr) => policy.pcr_valid_for,
            Some(TestKind::Antigen) | None => policy.antigen_valid_for,
        };
        let taken_on = crate::timefmt::date(&t.taken_on);
        let departure_local = checked.departure_at.with_timezone(&checked.departure.time_zone()).naive_local();
        t.result == Some(TestResult::Negative)
            && taken_on.is_some_and(|d| departure_local - (d + Duration::days(1)).and_time(Default::default()) > valid_for)
    });
    let unvaccinated = health.vaccination_doses == Some(0);
    [
        ("symptomatic", symptomatic),
        ("contact_with_case", contact),
        ("positive_test", positive),
        ("stale_test", stale),
        ("unvaccinated", unvaccinated),
    ]
    .into_iter()
    .filter_map(|(flag, set)| set.then_some(flag))
    .collect()
}

/// The triage level ("green", "yellow", "red") of a set of risk flags; see the module docs.
pub fn triage_of<S: AsRef<str>>(flags: &[S]) -> &'static str {
    let has = |wanted: &str| flags.iter().any(|f| f.as_ref() == wanted);
    if has("positive_test") || (has("symptomatic") && has("contact_with_case")) {
        "red"
    } else if !flags.is_empty() {
        "yellow"
    } else {
        "green"
    }
}

/// The triage of a declaration that passed both checks, exactly as [`enrich`] computes it.
pub fn triage(form: &DeclarationForm, checked: &Checked<'_>, policy: &Policy) -> &'static str {
    triage_of(&risk_flags(form, checked, policy))
}

fn port_details(code: &str, port: &ResolvedPort<'_>) -> PortDetails {
    match port {
        ResolvedPort::Airport(a) => PortDetails {
            code: a.iata.clone(),
            name: a.name.clone(),
            city: a.city.clone(),
            subdivision: a.subdivision.clone(),
            country: a.country.clone(),
            time_zone: a.tz.name().to_owned(),
        },
        ResolvedPort::Unlisted => {
            PortDetails { code: code.to_owned(), time_zone: port.time_zone().name().to_owned(), ..PortDetails::default() }
        }
    }
}

/// Sea and land ports are not in reference data; the e-HAC only covers travel into or within
/// Indonesia, so an unlisted port counts as Indonesian.
fn is_indonesian(port: &PortDetails) -> bool {
    port.country.is_empty() || port.country == "ID"
}

/// Whole years between birth and `on`.
pub fn age_on(born: NaiveDate, on: NaiveDate) -> i32 {
    let mut age = on.year() - born.year();
    if (on.month(), on.day()) < (born.month(), born.day()) {
        age -= 1;
    }
    age
}

/// Bands follow Indonesia's vaccination programme: children, adolescents, adults, elderly.
pub fn age_band(age: i32) -> &'static str {
    match age {
        i32::MIN..=5 => "0-5",
        6..=11 => "6-11",
        12..=17 => "12-17",
        18..=59 => "18-59",
        _ => "60+",
    }
}

pub fn days_since_epoch(date: NaiveDate) -> i32 {
    (date - DateTime::<Utc>::UNIX_EPOCH.date_naive()).num_days() as i32
}
