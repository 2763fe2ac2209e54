//! What a pass says. Only what a gate officer needs to match the pass to the person in front of
//! them and send them on: name, date of birth, flight, arrival airport and date, triage. No NIK,
//! passport number, phone, address or test details: a pass is shown to strangers and photographed.

use chrono::{DateTime, NaiveDate, Utc};
use coset::cbor::Value;
use coset::cwt::{ClaimName, ClaimsSet, Timestamp};
use serde::Serialize;

/// The CWT claim holding the e-HAC data. RFC 8392 reserves keys below -65536 for private use;
/// HCERT's -260 is registered to the EU, and ours must not be mistaken for it.
pub const EHAC_CLAIM: i64 = -65537;

/// Version of the map inside [`EHAC_CLAIM`]; a verifier refuses versions it does not know.
pub const EHAC_CLAIM_VERSION: i64 = 1;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Triage {
    Green,
    Yellow,
    Red,
}

impl Triage {
    pub fn as_str(self) -> &'static str {
        match self {
            Triage::Green => "green",
            Triage::Yellow => "yellow",
            Triage::Red => "red",
        }
    }

    /// The names `ehac_domain::enrich::triage` returns.
    pub fn parse(text: &str) -> Option<Triage> {
        match text {
            "green" => Some(Triage::Green),
            "yellow" => Some(Triage::Yellow),
            "red" => Some(Triage::Red),
            _ => None,
        }
    }
}

/// What the gateway puts on a traveller's pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PassClaims {
    /// Opaque and unique per pass (CWT `cti`); revocation keys on it. 16 random bytes, or the
    /// declaration's UUID, so an officer's report can be traced back to the declaration.
    pub pass_id: [u8; 16],
    pub traveller_name: String,
    pub date_of_birth: NaiveDate,
    /// Flight designator (GA404).
    pub flight: String,
    /// IATA code of the port of entry; the gate there is the only one that accepts the pass.
    pub arrival_airport: String,
    /// Scheduled arrival: the pass expires a configurable window after it.
    pub arrival_at: DateTime<Utc>,
    /// Local date at the arrival airport, as the officer reads it on the ticket.
    pub arrival_date: NaiveDate,
    pub triage: Triage,
}

/// What the gate officer is shown for an accepted pass.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OfficerView {
    pub traveller_name: String,
    pub date_of_birth: NaiveDate,
    pub flight: String,
    pub arrival_airport: String,
    pub arrival_date: NaiveDate,
    pub triage: Triage,
    /// Hex, for an officer's report.
    pub pass_id: String,
    /// The issuing region (`iss`).
    pub issuer: String,
    pub expires_at: DateTime<Utc>,
}

/// The claims of a pass as they were signed.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct SignedClaims {
    pub issuer: String,
    pub issued_at: i64,
    pub not_before: i64,
    pub expires_at: i64,
    pub pass_id: Vec<u8>,
    pub traveller_name: String,
    pub date_of_birth: NaiveDate,
    pub flight: String,
    pub arrival_airport: String,
    pub arrival_date: NaiveDate,
    pub triage: Triage,
}

const NAME: &str = "n";
const DATE_OF_BIRTH: &str = "dob";
const FLIGHT: &str = "fl";
const ARRIVAL_AIRPORT: &str = "ap";
const ARRIVAL_DATE: &str = "ad";
const TRIAGE: &str = "t";
const VERSION: &str = "v";

/// The claims as CBOR bytes, written directly (see [`crate::cbor`]); the same bytes as
/// [`encode_with_coset`], which the tests check.
pub(crate) fn encode(claims: &PassClaims, issuer: &str, issued_at: i64, expires_at: i64) -> Vec<u8> {
    use crate::cbor::{self, MAP};
    let mut out = Vec::with_capacity(128 + claims.traveller_name.len() + issuer.len());
    // In coset's order: iss (1), exp (4), nbf (5), iat (6), cti (7), then the private claim.
    cbor::head(&mut out, MAP, 6);
    cbor::int(&mut out, 1);
    cbor::text(&mut out, issuer);
    cbor::int(&mut out, 4);
    cbor::int(&mut out, expires_at);
    cbor::int(&mut out, 5);
    cbor::int(&mut out, issued_at);
    cbor::int(&mut out, 6);
    cbor::int(&mut out, issued_at);
    cbor::int(&mut out, 7);
    cbor::bytes(&mut out, &claims.pass_id);
    cbor::int(&mut out, EHAC_CLAIM);
    cbor::head(&mut out, MAP, 7);
    cbor::text(&mut out, VERSION);
    cbor::int(&mut out, EHAC_CLAIM_VERSION);
    cbor::text(&mut out, NAME);
    cbor::text(&mut out, &claims.traveller_name);
    cbor::text(&mut out, DATE_OF_BIRTH);
    cbor::date(&mut out, claims.date_of_birth);
    cbor::text(&mut out, FLIGHT);
    cbor::text(&mut out, &claims.flight);
    cbor::text(&mut out, ARRIVAL_AIRPORT);
    cbor::text(&mut out, &claims.arrival_airport);
    cbor::text(&mut out, ARRIVAL_DATE);
    cbor::date(&mut out, claims.arrival_date);
    cbor::text(&mut out, TRIAGE);
    cbor::text(&mut out, claims.triage.as_str());
    out
}

/// The reference encoding, through coset's claims set.
#[cfg(test)]
pub(crate) fn encode_with_coset(claims: &PassClaims, issuer: &str, issued_at: i64, expires_at: i64) -> Vec<u8> {
    let text = |s: &str| Value::Text(s.to_owned());
    let data = Value::Map(vec![
        (text(VERSION), Value::Integer(EHAC_CLAIM_VERSION.into())),
        (text(NAME), text(&claims.traveller_name)),
        (text(DATE_OF_BIRTH), text(&claims.date_of_birth.format("%Y-%m-%d").to_string())),
        (text(FLIGHT), text(&claims.flight)),
        (text(ARRIVAL_AIRPORT), text(&claims.arrival_airport)),
        (text(ARRIVAL_DATE), text(&claims.arrival_date.format("%Y-%m-%d").to_string())),
        (text(TRIAGE), text(claims.triage.as_str())),
    ]);
    let set = coset::cwt::ClaimsSetBuilder::new()
        .issuer(issuer.to_owned())
        .issued_at(Timestamp::WholeSeconds(issued_at))
        .not_before(Timestamp::WholeSeconds(issued_at))
        .expiration_time(Timestamp::WholeSeconds(expires_at))
        .cwt_id(claims.pass_id.to_vec())
        .private_claim(EHAC_CLAIM, data)
        .build();
    coset::CborSerializable::to_vec(set).expect("a claims set encodes")
}

/// Strict: every claim present with its type, nothing unknown, whole-second times.
pub(crate) fn decode(payload: &[u8]) -> Option<SignedClaims> {
    let set: ClaimsSet = coset::CborSerializable::from_slice(payload).ok()?;
    if set.subject.is_some() || set.audience.is_some() {
        return None;
    }
    let seconds = |t: Option<Timestamp>| match t {
        Some(Timestamp::WholeSeconds(s)) => Some(s),
        _ => None,
    };
    let [(ClaimName::PrivateUse(EHAC_CLAIM), Value::Map(data))] = set.rest.as_slice() else { return None };
    let mut fields: Vec<(&str, &Value)> = Vec::with_capacity(data.len());
    for (key, value) in data {
        let key = key.as_text()?;
        if fields.iter().any(|(k, _)| *k == key) {
            return None;
        }
        fields.push((key, value));
    }
    let field = |name: &str| fields.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let text = |name: &str| field(name).and_then(Value::as_text).map(str::to_owned);
    let date = |name: &str| text(name).and_then(|t| NaiveDate::parse_from_str(&t, "%Y-%m-%d").ok());
    let known = [VERSION, NAME, DATE_OF_BIRTH, FLIGHT, ARRIVAL_AIRPORT, ARRIVAL_DATE, TRIAGE];
    if fields.iter().any(|(k, _)| !known.contains(k)) {
        return None;
    }
    let version: i128 = field(VERSION)?.as_integer()?.into();
    if version != EHAC_CLAIM_VERSION as i128 {
        return None;
    }
    Some(SignedClaims {
        issuer: set.issuer?,
        issued_at: seconds(set.issued_at)?,
        not_before: seconds(set.not_before)?,
        expires_at: seconds(set.expiration_time)?,
        pass_id: set.cwt_id.filter(|id| !id.is_empty() && id.len() <= 64)?,
        traveller_name: text(NAME)?,
        date_of_birth: date(DATE_OF_BIRTH)?,
        flight: text(FLIGHT)?,
        arrival_airport: text(ARRIVAL_AIRPORT)?,
        arrival_date: date(ARRIVAL_DATE)?,
        triage: Triage::parse(&text(TRIAGE)?)?,
    })
}

impl SignedClaims {
    pub(crate) fn officer_view(self) -> OfficerView {
        OfficerView {
            traveller_name: self.traveller_name,
            date_of_birth: self.date_of_birth,
            flight: self.flight,
            arrival_airport: self.arrival_airport,
            arrival_date: self.arrival_date,
            triage: self.triage,
            pass_id: hex::encode(&self.pass_id),
            issuer: self.issuer,
            expires_at: DateTime::from_timestamp(self.expires_at, 0).unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn the_direct_encoding_is_cosets_byte_for_byte() {
        for (name, triage) in [("Siti Nurhaliza binti Abdullah", Triage::Green), ("", Triage::Red), (&"Ñ".repeat(120)[..], Triage::Yellow)]
        {
            let claims = PassClaims {
                pass_id: [0xab; 16],
                traveller_name: name.to_owned(),
                date_of_birth: NaiveDate::from_ymd_opt(1950, 1, 2).unwrap(),
                flight: "QZ7510".into(),
                arrival_airport: "DPS".into(),
                arrival_at: Utc.with_ymd_and_hms(2026, 12, 24, 1, 2, 3).unwrap(),
                arrival_date: NaiveDate::from_ymd_opt(2026, 12, 24).unwrap(),
                triage,
            };
            for (issued, expires) in [(1_766_000_000, 1_766_090_000), (0, 23), (24, 4_294_967_296)] {
                assert_eq!(encode(&claims, "ID-JK", issued, expires), encode_with_coset(&claims, "ID-JK", issued, expires));
            }
            assert_eq!(decode(&encode(&claims, "ID-BA", 10, 20)).unwrap().traveller_name, name);
        }
    }
}
