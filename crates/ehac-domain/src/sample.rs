//! Synthetic but realistic declarations: CGK-heavy traffic, mostly citizens with valid NIKs,
//! some foreigners, and on request a flaw that one of the checks must catch.
//!
//! Deterministic for a given seed, so a failing test or demo run can be replayed.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use rand::distr::weighted::WeightedIndex;
use rand::prelude::*;
use rand::rngs::StdRng;

use crate::form::*;
use crate::reference::ReferenceData;

/// Which check, if any, a generated declaration should fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flaw {
    None,
    /// Caught by [`crate::check_form`]: the gateway answers 422.
    Form,
    /// Passes the form check, caught by [`crate::check_references`]: ends on the rejected topic.
    Reference,
}

/// Airports weighted by rough share of Indonesian passenger traffic.
const AIRPORTS: &[(&str, u32)] = &[
    ("CGK", 300),
    ("DPS", 120),
    ("SUB", 100),
    ("KNO", 80),
    ("UPG", 70),
    ("YIA", 50),
    ("BPN", 40),
    ("BTH", 40),
    ("PKU", 30),
    ("PLM", 30),
    ("PDG", 30),
    ("LOP", 30),
    ("SRG", 30),
    ("SOC", 20),
    ("BDJ", 20),
    ("PNK", 20),
    ("MDC", 20),
    ("AMQ", 10),
    ("DJJ", 10),
    ("KOE", 10),
    ("SIN", 50),
    ("KUL", 40),
    ("JED", 20),
    ("BKK", 20),
    ("HKG", 10),
    ("NRT", 10),
    ("ICN", 10),
    ("PER", 10),
    ("DOH", 10),
    ("MEL", 10),
];
const AIRLINES: &[(&str, &str)] = &[
    ("GA", "Garuda Indonesia"),
    ("JT", "Lion Air"),
    ("QG", "Citilink"),
    ("ID", "Batik Air"),
    ("IU", "Super Air Jet"),
    ("IW", "Wings Air"),
    ("SJ", "Sriwijaya Air"),
    ("SQ", "Singapore Airlines"),
    ("MH", "Malaysia Airlines"),
    ("QZ", "Indonesia AirAsia"),
];
const SEAPORTS: &[&str] = &["Tanjung Priok", "Tanjung Perak", "Bakauheni", "Merak", "Gilimanuk", "Ketapang", "Batam Centre"];
const GIVEN: &[&str] =
    &["Budi", "Siti", "Agus", "Dewi", "Rizky", "Putri", "Andi", "Nur", "Wayan", "Made", "Eko", "Sri", "Fajar", "Ayu", "Hendra", "Intan"];
const FAMILY: &[&str] =
    &["Santoso", "Wijaya", "Hidayat", "Saputra", "Lestari", "Kusuma", "Pratama", "Nasution", "Siregar", "Harahap", "Simanjuntak", "Wibowo"];
const FOREIGN: &[(&str, &str)] = &[
    ("SGP", "Tan Wei Ming"),
    ("MYS", "Ahmad Faizal"),
    ("AUS", "Olivia Smith"),
    ("JPN", "Yuki Tanaka"),
    ("KOR", "Kim Min-jun"),
    ("SAU", "Abdullah Al-Harbi"),
    ("NLD", "Sanne de Vries"),
];
const CITIES: &[(&str, &str)] = &[
    ("Jakarta Selatan", "DKI Jakarta"),
    ("Denpasar", "Bali"),
    ("Surabaya", "Jawa Timur"),
    ("Medan", "Sumatera Utara"),
    ("Makassar", "Sulawesi Selatan"),
    ("Yogyakarta", "DI Yogyakarta"),
    ("Bandung", "Jawa Barat"),
];

pub struct SampleGenerator {
    rng: StdRng,
    airports: Vec<&'static str>,
    airport_weights: WeightedIndex<u32>,
    districts: Vec<&'static str>,
}

impl SampleGenerator {
    pub fn new(seed: u64) -> Self {
        let reference = ReferenceData::embedded();
        let known: Vec<(&'static str, u32)> = AIRPORTS.iter().copied().filter(|(code, _)| reference.airport(code).is_some()).collect();
        let mut districts: Vec<&'static str> = reference.districts().filter(|d| d.last_seen >= 2025).map(|d| d.code.as_str()).collect();
        districts.sort_unstable();
        SampleGenerator {
            rng: StdRng::seed_from_u64(seed),
            airports: known.iter().map(|(code, _)| *code).collect(),
            airport_weights: WeightedIndex::new(known.iter().map(|(_, w)| *w)).expect("airport weights are positive"),
            districts,
        }
    }

    /// One declaration for a trip departing around `now`, filed by `client_id`.
    pub fn declaration(&mut self, now: DateTime<Utc>, client_id: &str, flaw: Flaw) -> DeclarationForm {
        let rng = &mut self.rng;
        let sex = if rng.random_bool(0.5) { Sex::Male } else { Sex::Female };
        let born = NaiveDate::from_ymd_opt(1950, 1, 1).unwrap() + Duration::days(rng.random_range(0..365 * 70));
        let citizen = rng.random_bool(0.85);
        let traveller = if citizen {
            let district = self.districts.choose(rng).expect("districts are known");
            let day = born.format("%d").to_string().parse::<u32>().unwrap() + if sex == Sex::Female { 40 } else { 0 };
            let nik = format!("{district}{day:02}{}{:04}", born.format("%m%y"), rng.random_range(1..10_000));
            Traveller {
                nik: Some(nik),
                full_name: format!("{} {}", GIVEN.choose(rng).unwrap(), FAMILY.choose(rng).unwrap()),
                sex: Some(sex),
                date_of_birth: born.to_string(),
                phone: format!("+628{}", rng.random_range(100_000_000u64..9_999_999_999)),
                email: rng.random_bool(0.6).then(|| format!("traveller{}@example.id", rng.random_range(0..1_000_000))),
                ..Traveller::default()
            }
        } else {
            let (nationality, name) = FOREIGN.choose(rng).unwrap();
            let passport_number = format!("{}{:07}", (b'A' + rng.random_range(0..26)) as char, rng.random_range(0..10_000_000));
            // Kiosks scan the passport; apps and web forms rarely send the MRZ.
            let passport_mrz = rng.random_bool(0.3).then(|| {
                let (given, surname) = name.rsplit_once(' ').unwrap_or(("", name));
                let expiry = (now + Duration::days(rng.random_range(200..3650))).format("%y%m%d").to_string();
                let sex = if sex == Sex::Female { 'F' } else { 'M' };
                crate::mrz::compose(
                    nationality,
                    surname,
                    given,
                    &passport_number,
                    nationality,
                    &born.format("%y%m%d").to_string(),
                    sex,
                    &expiry,
                )
            });
            Traveller {
                passport_number: Some(passport_number),
                passport_mrz,
                nationality: Some((*nationality).to_owned()),
                full_name: (*name).to_owned(),
                sex: Some(sex),
                date_of_birth: born.to_string(),
                phone: format!("+65{}", rng.random_range(80_000_000u64..99_999_999)),
                email: Some("visitor@example.com".to_owned()),
                ..Traveller::default()
            }
        };

        let air = rng.random_bool(0.9);
        let departure_local = now + Duration::minutes(rng.random_range(-60..48 * 60));
        let duration = Duration::minutes(rng.random_range(60..240));
        let trip = if air {
            let from = self.airports[self.airport_weights.sample(rng)];
            let reference = ReferenceData::embedded();
            // An e-HAC covers trips that end in Indonesia: draw again until the arrival does.
            let mut to = from;
            while to == from || reference.airport(to).unwrap().country != "ID" {
                to = self.airports[self.airport_weights.sample(rng)];
            }
            let tz_from = reference.airport(from).unwrap().tz;
            let tz_to = reference.airport(to).unwrap().tz;
            let (code, carrier) = AIRLINES.choose(rng).unwrap();
            Trip {
                transport_mode: Some(TransportMode::Air),
                carrier: (*carrier).to_owned(),
                flight_number: format!("{code}{}", rng.random_range(1..9999)),
                seat: Some(format!("{}{}", rng.random_range(1..45), ['A', 'B', 'C', 'D', 'E', 'F'].choose(rng).unwrap())),
                departure_port: from.to_owned(),
                arrival_port: to.to_owned(),
                departure_time: departure_local.with_timezone(&tz_from).format("%Y-%m-%dT%H:%M").to_string(),
                arrival_time: (departure_local + duration).with_timezone(&tz_to).format("%Y-%m-%dT%H:%M").to_string(),
            }
        } else {
            let from = *SEAPORTS.choose(rng).unwrap();
            let mut to = from;
            while to == from {
                to = SEAPORTS.choose(rng).unwrap();
            }
            let wib = chrono_tz::Asia::Jakarta;
            Trip {
                transport_mode: Some(TransportMode::Sea),
                carrier: "PT ASDP Indonesia Ferry".to_owned(),
                flight_number: format!("KMP-{}", rng.random_range(100..999)),
                seat: None,
                departure_port: from.to_owned(),
                arrival_port: to.to_owned(),
                departure_time: departure_local.with_timezone(&wib).format("%Y-%m-%dT%H:%M").to_string(),
                arrival_time: (departure_local + duration).with_timezone(&wib).format("%Y-%m-%dT%H:%M").to_string(),
            }
        };

        let (city, province) = CITIES.choose(rng).unwrap();
        let symptomatic = rng.random_bool(0.03);
        let tested = rng.random_bool(0.3);
        let mut form = DeclarationForm {
            declaration_id: None,
            client_id: client_id.to_owned(),
            channel: Some(*[Channel::App, Channel::App, Channel::Web, Channel::Kiosk].choose(rng).unwrap()),
            submitted_at: Some(now.to_rfc3339()),
            traveller,
            trip,
            destination_address: Address {
                street: format!("Jl. Merdeka No. {}", rng.random_range(1..300)),
                city: (*city).to_owned(),
                province: (*province).to_owned(),
                postal_code: Some(format!("{}", rng.random_range(10_000..99_999))),
            },
            health: Health {
                fever: Some(symptomatic && rng.random_bool(0.5)),
                cough: Some(symptomatic),
                shortness_of_breath: Some(false),
                contact_with_case: Some(rng.random_bool(0.02)),
                vaccination_doses: Some(*[0, 1, 2, 2, 3, 3, 3].choose(rng).unwrap()),
                latest_test: tested.then(|| LatestTest {
                    kind: Some(if rng.random_bool(0.5) { TestKind::Pcr } else { TestKind::Antigen }),
                    result: Some(if rng.random_bool(0.01) { TestResult::Positive } else { TestResult::Negative }),
                    taken_on: (now - Duration::days(rng.random_range(0..3))).date_naive().to_string(),
                }),
            },
        };
        match flaw {
            Flaw::None => {}
            Flaw::Form => match rng.random_range(0..6) {
                0 => form.traveller.full_name.clear(),
                1 => form.traveller.date_of_birth = "31/12/1990".to_owned(),
                2 => form.traveller.phone = "0812".to_owned(),
                3 => form.health.fever = None,
                4 => form.health.vaccination_doses = Some(-1),
                _ => form.destination_address.street.clear(),
            },
            Flaw::Reference => match (rng.random_range(0..4), &mut form.traveller.nik) {
                (0, Some(nik)) => nik.replace_range(..6, "990101"),
                (1, _) if form.trip.transport_mode == Some(TransportMode::Air) => form.trip.arrival_port = "QQQ".to_owned(),
                // Filed for a trip ten days ahead: outside the departure window.
                (2, _) => {
                    for time in [&mut form.trip.departure_time, &mut form.trip.arrival_time] {
                        let shifted = chrono::NaiveDateTime::parse_from_str(time, "%Y-%m-%dT%H:%M").expect("generated times parse")
                            + Duration::days(10);
                        *time = shifted.format("%Y-%m-%dT%H:%M").to_string();
                    }
                }
                // A year typo: arrival long before departure in any time zone.
                _ => form.trip.arrival_time.replace_range(..4, "2020"),
            },
        }
        form
    }
}
