//! Columns the form does not carry but analysts and health officers need.
//!
//! Triage (for the health officer at the port of entry):
//! - red: a positive latest test, or symptoms together with contact with a case;
//! - yellow: symptoms, contact with a case, or no vaccination;
//! - green: none of the above.

use chrono::{DateTime, Datelike, NaiveDate, Timelike, Utc};

use crate::form::{DeclarationForm, TestResult};
use crate::record::{Enrichment, PortDetails};
use crate::reference::ReferenceData;
use crate::validate::{Checked, ResolvedPort};

/// Adds the enrichment columns to a declaration that passed both checks.
pub fn enrich(form: &DeclarationForm, checked: &Checked<'_>, reference: &ReferenceData, enricher_version: &str) -> Enrichment {
    let arrival_tz = checked.arrival.time_zone();
    let arrival_local = checked.arrival_at.with_timezone(&arrival_tz);
    let arrival_date = arrival_local.date_naive();
    let departure = port_details(&form.trip.departure_port, &checked.departure);
    let arrival = port_details(&form.trip.arrival_port, &checked.arrival);
    let domestic = is_indonesian(&departure) && is_indonesian(&arrival);

    let (home_province, home_regency) = match checked.district {
        Some(district) => {
            let (province, regency) = reference.parents(district);
            (province.map(|r| r.name.clone()).unwrap_or_default(), regency.map(|r| r.name.clone()).unwrap_or_default())
        }
        None => (String::new(), String::new()),
    };
    let nationality = if form.traveller.nik.is_some() { "IDN".to_owned() } else { form.traveller.nationality.clone().unwrap_or_default() };

    let age_years = age_on(checked.date_of_birth, arrival_date);
    let health = &form.health;
    let symptomatic = health.fever == Some(true) || health.cough == Some(true) || health.shortness_of_breath == Some(true);
    let contact = health.contact_with_case == Some(true);
    let positive = health.latest_test.as_ref().is_some_and(|t| t.result == Some(TestResult::Positive));
    let unvaccinated = health.vaccination_doses == Some(0);
    let mut risk_flags = Vec::new();
    for (flag, set) in [("symptomatic", symptomatic), ("contact_with_case", contact), ("positive_test", positive), ("unvaccinated", unvaccinated)] {
        if set {
            risk_flags.push(flag.to_owned());
        }
    }
    let triage = if positive || (symptomatic && contact) {
        "red"
    } else if symptomatic || contact || unvaccinated {
        "yellow"
    } else {
        "green"
    };

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
        risk_flags,
        triage: triage.to_owned(),
        warnings: Vec::new(),
    }
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
        ResolvedPort::Unlisted => PortDetails { code: code.to_owned(), time_zone: port.time_zone().name().to_owned(), ..PortDetails::default() },
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
