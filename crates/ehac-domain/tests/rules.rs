//! Every validation and enrichment rule, table-driven: each case edits a valid declaration and
//! states the outcome (valid, valid with warnings, or exactly which codes on which fields).

use chrono::{DateTime, Duration, NaiveDateTime, TimeZone, Utc};
use ehac_domain::form::*;
use ehac_domain::sample::{Flaw, SampleGenerator};
use ehac_domain::{check_form, enrich, mrz, validate, DeclarationForm, Policy, ReferenceData, VerificationStatus};

/// The gateway's receive time in every case: 08:00 WIB on 20 Dec 2026.
fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 12, 20, 1, 0, 0).unwrap()
}

/// A complete, valid citizen declaration: CGK to DPS on 20 Dec 2026.
fn citizen() -> DeclarationForm {
    serde_json::from_value(serde_json::json!({
        "client_id": "kiosk-cgk-t3-07",
        "channel": "kiosk",
        "submitted_at": "2026-12-20T07:55:00+07:00",
        "traveller": {
            "nik": "3171044512900001", "full_name": "Siti Lestari", "sex": "female",
            "date_of_birth": "1990-12-05", "phone": "+6281234567890", "email": "siti@example.id"
        },
        "trip": {
            "transport_mode": "air", "carrier": "Garuda Indonesia", "flight_number": "GA404", "seat": "12A",
            "departure_port": "CGK", "arrival_port": "DPS",
            "departure_time": "2026-12-20T08:30", "arrival_time": "2026-12-20T11:20"
        },
        "destination_address": { "street": "Jl. Raya Kuta 1", "city": "Badung", "province": "Bali" },
        "health": { "fever": false, "cough": false, "shortness_of_breath": false, "contact_with_case": false,
                    "vaccination_doses": 3 }
    }))
    .unwrap()
}

/// A complete, valid foreigner declaration with a scanned passport: SIN to CGK.
fn foreigner() -> DeclarationForm {
    let mut f = citizen();
    f.traveller.nik = None;
    f.traveller.passport_number = Some("K1234567".into());
    f.traveller.nationality = Some("SGP".into());
    f.traveller.full_name = "Tan Wei Ming".into();
    f.traveller.sex = Some(Sex::Male);
    f.traveller.date_of_birth = "1985-03-14".into();
    f.traveller.passport_mrz = Some(mrz::compose("SGP", "Tan", "Wei Ming", "K1234567", "SGP", "850314", 'M', "300101"));
    f.trip.carrier = "Singapore Airlines".into();
    f.trip.flight_number = "SQ956".into();
    f.trip.departure_port = "SIN".into();
    f.trip.arrival_port = "CGK".into();
    f.trip.departure_time = "2026-12-20T09:40".into();
    f.trip.arrival_time = "2026-12-20T10:25".into();
    f
}

fn set_mrz(f: &mut DeclarationForm, nationality: &str, number: &str, born: &str, sex: char, expiry: &str) {
    f.traveller.passport_mrz = Some(mrz::compose(nationality, "Tan", "Wei Ming", number, nationality, born, sex, expiry));
}

/// Replaces one character of the MRZ's second line.
fn alter_mrz_line2(f: &mut DeclarationForm, position: usize, c: char) {
    let text = f.traveller.passport_mrz.take().unwrap();
    let mut chars: Vec<char> = text.chars().collect();
    chars[45 + position] = c;
    f.traveller.passport_mrz = Some(chars.into_iter().collect());
}

/// Moves departure and arrival by `hours`, keeping the flight's length.
fn shift_trip(f: &mut DeclarationForm, hours: i64) {
    for time in [&mut f.trip.departure_time, &mut f.trip.arrival_time] {
        let t = NaiveDateTime::parse_from_str(time, "%Y-%m-%dT%H:%M").unwrap() + Duration::hours(hours);
        *time = t.format("%Y-%m-%dT%H:%M").to_string();
    }
}

fn sea(f: &mut DeclarationForm) {
    f.trip.transport_mode = Some(TransportMode::Sea);
    f.trip.carrier = "PT ASDP Indonesia Ferry".into();
    f.trip.flight_number = "KMP Portlink III".into();
    f.trip.seat = None;
    f.trip.departure_port = "Merak".into();
    f.trip.arrival_port = "Bakauheni".into();
}

fn test_result(f: &mut DeclarationForm, kind: TestKind, result: TestResult, taken_on: &str) {
    f.health.latest_test = Some(LatestTest { kind: Some(kind), result: Some(result), taken_on: taken_on.into() });
}

#[derive(Debug)]
enum Expect {
    /// Passes with exactly these warnings.
    Valid(&'static [&'static str]),
    /// Fails with exactly these (code, field) pairs.
    Invalid(&'static [(&'static str, &'static str)]),
}

struct Case {
    name: &'static str,
    base: fn() -> DeclarationForm,
    edit: fn(&mut DeclarationForm),
    expect: Expect,
}

const OK: Expect = Expect::Valid(&[]);

fn case(name: &'static str, base: fn() -> DeclarationForm, edit: fn(&mut DeclarationForm), expect: Expect) -> Case {
    Case { name, base, edit, expect }
}

fn validation_cases() -> Vec<Case> {
    use Expect::{Invalid as Bad, Valid};
    let c = citizen as fn() -> DeclarationForm;
    let f = foreigner as fn() -> DeclarationForm;
    vec![
        // The bases.
        case("valid citizen", c, |_| {}, OK),
        case("valid foreigner with MRZ", f, |_| {}, OK),
        case("valid foreigner without MRZ", f, |f| f.traveller.passport_mrz = None, OK),
        // NIK: 16 digits.
        case("NIK of 15 digits", c, |f| f.traveller.nik = Some("317104451290001".into()), Bad(&[("invalid_format", "traveller.nik")])),
        case("NIK of 17 digits", c, |f| f.traveller.nik = Some("31710445129000011".into()), Bad(&[("invalid_format", "traveller.nik")])),
        case("NIK with letters", c, |f| f.traveller.nik = Some("31710445129000AB".into()), Bad(&[("invalid_format", "traveller.nik")])),
        case("NIK with spaces", c, |f| f.traveller.nik = Some("3171 0445 1290 0001".into()), Bad(&[("invalid_format", "traveller.nik")])),
        case("NIK empty", c, |f| f.traveller.nik = Some(String::new()), Bad(&[("invalid_format", "traveller.nik")])),
        // NIK: serial and birth date DDMMYY (+40 for women).
        case("NIK serial 0000", c, |f| f.traveller.nik = Some("3171044512900000".into()), Bad(&[("invalid_format", "traveller.nik")])),
        case("NIK serial 9999", c, |f| f.traveller.nik = Some("3171044512909999".into()), OK),
        case("NIK day 00", c, |f| f.traveller.nik = Some("3171040012900001".into()), Bad(&[("invalid_format", "traveller.nik")])),
        case("NIK day 32", c, |f| f.traveller.nik = Some("3171043212900001".into()), Bad(&[("invalid_format", "traveller.nik")])),
        case("NIK woman's day 72", c, |f| f.traveller.nik = Some("3171047212900001".into()), Bad(&[("invalid_format", "traveller.nik")])),
        case("NIK month 00", c, |f| f.traveller.nik = Some("3171044500900001".into()), Bad(&[("invalid_format", "traveller.nik")])),
        case("NIK month 13", c, |f| f.traveller.nik = Some("3171044513900001".into()), Bad(&[("invalid_format", "traveller.nik")])),
        case(
            "NIK day differs from date of birth",
            c,
            |f| f.traveller.nik = Some("3171044612900001".into()),
            Bad(&[("nik_date_of_birth_mismatch", "traveller.nik")]),
        ),
        case(
            "NIK month differs from date of birth",
            c,
            |f| f.traveller.nik = Some("3171044511900001".into()),
            Bad(&[("nik_date_of_birth_mismatch", "traveller.nik")]),
        ),
        case(
            "NIK year differs from date of birth",
            c,
            |f| f.traveller.nik = Some("3171044512910001".into()),
            Bad(&[("nik_date_of_birth_mismatch", "traveller.nik")]),
        ),
        case(
            "NIK of a man, declared female",
            c,
            |f| f.traveller.nik = Some("3171040512900001".into()),
            Bad(&[("nik_sex_mismatch", "traveller.nik")]),
        ),
        case("declared male, NIK of a woman", c, |f| f.traveller.sex = Some(Sex::Male), Bad(&[("nik_sex_mismatch", "traveller.nik")])),
        case(
            "NIK of a man, declared male",
            c,
            |f| {
                f.traveller.nik = Some("3171040512900001".into());
                f.traveller.sex = Some(Sex::Male)
            },
            OK,
        ),
        case(
            "NIK year 00: the declared date of birth settles the century",
            c,
            |f| {
                f.traveller.nik = Some("3171040101000001".into());
                f.traveller.sex = Some(Sex::Male);
                f.traveller.date_of_birth = "2000-01-01".into();
            },
            OK,
        ),
        case(
            "NIK woman born on the 31st (day 71)",
            c,
            |f| {
                f.traveller.nik = Some("3171047112900001".into());
                f.traveller.date_of_birth = "1990-12-31".into()
            },
            OK,
        ),
        // NIK: the district of issue (Kemendagri, any list 2016-2025).
        case(
            "NIK district unknown",
            c,
            |f| f.traveller.nik = Some("9901014512900001".into()),
            Bad(&[("unknown_district", "traveller.nik")]),
        ),
        case(
            "NIK starts with a regency code, not a district",
            c,
            |f| f.traveller.nik = Some("3171004512900001".into()),
            Bad(&[("unknown_district", "traveller.nik")]),
        ),
        case("NIK district in Aceh", c, |f| f.traveller.nik = Some("1101014512900001".into()), OK),
        case(
            "NIK district retired in 2023 (Merauke before the Papua split)",
            c,
            |f| f.traveller.nik = Some("9101014512900001".into()),
            Valid(&["district_code_retired"]),
        ),
        case("NIK district new in 2022", c, |f| f.traveller.nik = Some("1172034512900001".into()), OK),
        // Identity: citizens or foreigners.
        case("NIK and passport", c, |f| f.traveller.passport_number = Some("A1234567".into()), Bad(&[("identity_conflict", "traveller")])),
        case("neither NIK nor passport", c, |f| f.traveller.nik = None, Bad(&[("required", "traveller.nik")])),
        case(
            "NIK with a foreign nationality",
            c,
            |f| f.traveller.nationality = Some("SGP".into()),
            Bad(&[("identity_conflict", "traveller.nationality")]),
        ),
        case("NIK with nationality IDN", c, |f| f.traveller.nationality = Some("IDN".into()), OK),
        // Passport number.
        case(
            "passport of 5 characters",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.passport_number = Some("K1234".into())
            },
            Bad(&[("invalid_format", "traveller.passport_number")]),
        ),
        case(
            "passport of 10 characters",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.passport_number = Some("K123456789".into())
            },
            Bad(&[("invalid_format", "traveller.passport_number")]),
        ),
        case(
            "passport in lowercase",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.passport_number = Some("k1234567".into())
            },
            Bad(&[("invalid_format", "traveller.passport_number")]),
        ),
        case(
            "passport without a digit",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.passport_number = Some("ABCDEFG".into())
            },
            Bad(&[("invalid_format", "traveller.passport_number")]),
        ),
        case(
            "passport with a dash",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.passport_number = Some("K-123456".into())
            },
            Bad(&[("invalid_format", "traveller.passport_number")]),
        ),
        case(
            "passport of 6 characters",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.passport_number = Some("K12345".into())
            },
            OK,
        ),
        case(
            "passport of 9 characters",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.passport_number = Some("L898902C3".into())
            },
            OK,
        ),
        // Nationality: ISO 3166-1 alpha-3, ICAO codes where an MRZ uses them.
        case("passport without nationality", f, |f| f.traveller.nationality = None, Bad(&[("required", "traveller.nationality")])),
        case(
            "nationality in lowercase",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.nationality = Some("sgp".into())
            },
            Bad(&[("invalid_format", "traveller.nationality")]),
        ),
        case(
            "nationality of four letters",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.nationality = Some("SGPO".into())
            },
            Bad(&[("invalid_format", "traveller.nationality")]),
        ),
        case(
            "nationality empty",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.nationality = Some(String::new())
            },
            Bad(&[("invalid_format", "traveller.nationality")]),
        ),
        case(
            "nationality alpha-2",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.nationality = Some("SG".into())
            },
            Bad(&[("unknown_country", "traveller.nationality")]),
        ),
        case(
            "nationality not a country",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.nationality = Some("XYZ".into())
            },
            Bad(&[("unknown_country", "traveller.nationality")]),
        ),
        case(
            "nationality UTO (ICAO's specimen state)",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.nationality = Some("UTO".into())
            },
            Bad(&[("unknown_country", "traveller.nationality")]),
        ),
        case(
            "nationality AUS",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.nationality = Some("AUS".into())
            },
            OK,
        ),
        case(
            "nationality D (ICAO: Germany)",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.nationality = Some("D".into())
            },
            OK,
        ),
        case(
            "nationality XXA (stateless)",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.nationality = Some("XXA".into())
            },
            OK,
        ),
        case(
            "nationality GBN (British National Overseas)",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.nationality = Some("GBN".into())
            },
            OK,
        ),
        case(
            "nationality DEU with an MRZ saying D",
            f,
            |f| {
                f.traveller.nationality = Some("DEU".into());
                set_mrz(f, "D", "K1234567", "850314", 'M', "300101")
            },
            OK,
        ),
        case(
            "nationality D with an MRZ saying D",
            f,
            |f| {
                f.traveller.nationality = Some("D".into());
                set_mrz(f, "D", "K1234567", "850314", 'M', "300101")
            },
            OK,
        ),
        // MRZ: ICAO 9303 check digits (7, 3, 1) and the composite.
        case("MRZ document number altered", f, |f| alter_mrz_line2(f, 3, '9'), Bad(&[("mrz_check_digit", "traveller.passport_mrz")])),
        case("MRZ date of birth altered", f, |f| alter_mrz_line2(f, 14, '6'), Bad(&[("mrz_check_digit", "traveller.passport_mrz")])),
        case("MRZ expiry altered", f, |f| alter_mrz_line2(f, 22, '1'), Bad(&[("mrz_check_digit", "traveller.passport_mrz")])),
        case("MRZ optional data altered", f, |f| alter_mrz_line2(f, 30, '7'), Bad(&[("mrz_check_digit", "traveller.passport_mrz")])),
        case(
            "MRZ composite digit altered",
            f,
            |f| {
                let c = if f.traveller.passport_mrz.as_ref().unwrap().ends_with('0') { '1' } else { '0' };
                alter_mrz_line2(f, 43, c)
            },
            Bad(&[("mrz_check_digit", "traveller.passport_mrz")]),
        ),
        case(
            "MRZ of one 44-character line",
            f,
            |f| f.traveller.passport_mrz = Some(f.traveller.passport_mrz.clone().unwrap()[..44].into()),
            Bad(&[("invalid_format", "traveller.passport_mrz")]),
        ),
        case(
            "MRZ in lowercase",
            f,
            |f| f.traveller.passport_mrz = Some(f.traveller.passport_mrz.clone().unwrap().to_lowercase()),
            Bad(&[("invalid_format", "traveller.passport_mrz")]),
        ),
        case(
            "MRZ of a visa, not a passport",
            f,
            |f| f.traveller.passport_mrz = Some(f.traveller.passport_mrz.clone().unwrap().replacen('P', "V", 1)),
            Bad(&[("invalid_format", "traveller.passport_mrz")]),
        ),
        case(
            "MRZ as 88 characters run together",
            f,
            |f| f.traveller.passport_mrz = Some(f.traveller.passport_mrz.clone().unwrap().replace('\n', "")),
            OK,
        ),
        case(
            "MRZ with a CRLF line break",
            f,
            |f| f.traveller.passport_mrz = Some(f.traveller.passport_mrz.clone().unwrap().replace('\n', "\r\n")),
            OK,
        ),
        case(
            "MRZ number differs from the form",
            f,
            |f| set_mrz(f, "SGP", "K7654321", "850314", 'M', "300101"),
            Bad(&[("mrz_mismatch", "traveller.passport_mrz")]),
        ),
        case(
            "MRZ nationality differs from the form",
            f,
            |f| set_mrz(f, "MYS", "K1234567", "850314", 'M', "300101"),
            Bad(&[("mrz_mismatch", "traveller.passport_mrz")]),
        ),
        case(
            "MRZ date of birth differs from the form",
            f,
            |f| set_mrz(f, "SGP", "K1234567", "850315", 'M', "300101"),
            Bad(&[("mrz_mismatch", "traveller.passport_mrz")]),
        ),
        case(
            "MRZ sex differs from the form",
            f,
            |f| set_mrz(f, "SGP", "K1234567", "850314", 'F', "300101"),
            Bad(&[("mrz_mismatch", "traveller.passport_mrz")]),
        ),
        case("MRZ sex unspecified", f, |f| set_mrz(f, "SGP", "K1234567", "850314", '<', "300101"), OK),
        case(
            "MRZ passport expired before arrival",
            f,
            |f| set_mrz(f, "SGP", "K1234567", "850314", 'M', "261201"),
            Valid(&["passport_expired"]),
        ),
        case(
            "MRZ passport expires within six months",
            f,
            |f| set_mrz(f, "SGP", "K1234567", "850314", 'M', "270301"),
            Valid(&["passport_expires_soon"]),
        ),
        case(
            "citizen with an Indonesian passport MRZ",
            c,
            |f| f.traveller.passport_mrz = Some(mrz::compose("IDN", "Lestari", "Siti", "C1234567", "IDN", "901205", 'F', "310101")),
            OK,
        ),
        case(
            "citizen with a Malaysian passport MRZ",
            c,
            |f| f.traveller.passport_mrz = Some(mrz::compose("MYS", "Lestari", "Siti", "C1234567", "MYS", "901205", 'F', "310101")),
            Bad(&[("mrz_mismatch", "traveller.passport_mrz")]),
        ),
        // Name and sex.
        case("name empty", c, |f| f.traveller.full_name.clear(), Bad(&[("required", "traveller.full_name")])),
        case("name of spaces", c, |f| f.traveller.full_name = "   ".into(), Bad(&[("required", "traveller.full_name")])),
        case("name of 201 characters", c, |f| f.traveller.full_name = "a".repeat(201), Bad(&[("out_of_range", "traveller.full_name")])),
        case("name of 200 characters", c, |f| f.traveller.full_name = "é".repeat(200), OK),
        case(
            "sex missing",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.sex = None
            },
            Bad(&[("required", "traveller.sex")]),
        ),
        // Date of birth: a date, not in the future, age at most 120.
        case(
            "date of birth missing",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.date_of_birth.clear()
            },
            Bad(&[("required", "traveller.date_of_birth")]),
        ),
        case(
            "date of birth as DD/MM/YYYY",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.date_of_birth = "14/03/1985".into()
            },
            Bad(&[("invalid_format", "traveller.date_of_birth")]),
        ),
        case(
            "date of birth 30 February",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.date_of_birth = "1985-02-30".into()
            },
            Bad(&[("invalid_format", "traveller.date_of_birth")]),
        ),
        case(
            "date of birth tomorrow+1",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.date_of_birth = "2026-12-22".into()
            },
            Bad(&[("out_of_range", "traveller.date_of_birth")]),
        ),
        case(
            "date of birth aged 121",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.date_of_birth = "1905-12-19".into()
            },
            Bad(&[("out_of_range", "traveller.date_of_birth")]),
        ),
        case(
            "date of birth aged exactly 120",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.date_of_birth = "1906-12-20".into()
            },
            OK,
        ),
        case(
            "newborn, not vaccinated",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.date_of_birth = "2026-12-01".into();
                f.health.vaccination_doses = Some(0)
            },
            OK,
        ),
        case(
            "newborn with vaccination doses",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.date_of_birth = "2026-12-01".into();
                f.health.vaccination_doses = Some(1)
            },
            Valid(&["vaccinated_below_minimum_age"]),
        ),
        // Phone and email.
        case("phone missing", c, |f| f.traveller.phone.clear(), Bad(&[("required", "traveller.phone")])),
        case("phone without country code", c, |f| f.traveller.phone = "081234567890".into(), Bad(&[("invalid_format", "traveller.phone")])),
        case("phone too short", c, |f| f.traveller.phone = "+6281234".into(), Bad(&[("invalid_format", "traveller.phone")])),
        case("phone of 16 digits", c, |f| f.traveller.phone = "+6281234567890123".into(), Bad(&[("invalid_format", "traveller.phone")])),
        case("phone with spaces", c, |f| f.traveller.phone = "+62 812 3456 7890".into(), Bad(&[("invalid_format", "traveller.phone")])),
        case("phone of Singapore", c, |f| f.traveller.phone = "+6591234567".into(), OK),
        case("email without domain", c, |f| f.traveller.email = Some("siti@".into()), Bad(&[("invalid_format", "traveller.email")])),
        case("email without @", c, |f| f.traveller.email = Some("siti.example.id".into()), Bad(&[("invalid_format", "traveller.email")])),
        case(
            "email domain without dot",
            c,
            |f| f.traveller.email = Some("siti@localhost".into()),
            Bad(&[("invalid_format", "traveller.email")]),
        ),
        case(
            "email with a space",
            c,
            |f| f.traveller.email = Some("siti lestari@example.id".into()),
            Bad(&[("invalid_format", "traveller.email")]),
        ),
        case("email with subdomain", c, |f| f.traveller.email = Some("siti@mail.example.co.id".into()), OK),
        case("email absent", c, |f| f.traveller.email = None, OK),
        case(
            "phone and email both wrong: both reported",
            c,
            |f| {
                f.traveller.phone = "0812".into();
                f.traveller.email = Some("x".into())
            },
            Bad(&[("invalid_format", "traveller.phone"), ("invalid_format", "traveller.email")]),
        ),
        // The declaration itself.
        case("client id missing", c, |f| f.client_id.clear(), Bad(&[("required", "client_id")])),
        case("channel missing", c, |f| f.channel = None, Bad(&[("required", "channel")])),
        case(
            "declaration id with spaces",
            c,
            |f| f.declaration_id = Some("has spaces".into()),
            Bad(&[("invalid_format", "declaration_id")]),
        ),
        case(
            "declaration id of 65 characters",
            c,
            |f| f.declaration_id = Some("a".repeat(65)),
            Bad(&[("invalid_format", "declaration_id")]),
        ),
        case("declaration id empty", c, |f| f.declaration_id = Some(String::new()), Bad(&[("invalid_format", "declaration_id")])),
        case("declaration id a UUID", c, |f| f.declaration_id = Some("01936f3e-8c1a-7b2e-9a4f-3c2d1e0f9a8b".into()), OK),
        case("submitted_at not RFC 3339", c, |f| f.submitted_at = Some("yesterday".into()), Bad(&[("invalid_format", "submitted_at")])),
        case(
            "submitted_at without offset",
            c,
            |f| f.submitted_at = Some("2026-12-20T07:55:00".into()),
            Bad(&[("invalid_format", "submitted_at")]),
        ),
        case("submitted_at absent", c, |f| f.submitted_at = None, OK),
        case(
            "submitted_at an hour after receipt",
            c,
            |f| f.submitted_at = Some("2026-12-20T09:00:00+07:00".into()),
            Valid(&["submitted_at_in_future"]),
        ),
        case("submitted_at two minutes after receipt (clock skew)", c, |f| f.submitted_at = Some("2026-12-20T08:02:00+07:00".into()), OK),
        // Trip: mode, carrier, flight designator.
        case("transport mode missing", c, |f| f.trip.transport_mode = None, Bad(&[("required", "trip.transport_mode")])),
        case("carrier missing", c, |f| f.trip.carrier.clear(), Bad(&[("required", "trip.carrier")])),
        case("flight number missing", c, |f| f.trip.flight_number.clear(), Bad(&[("required", "trip.flight_number")])),
        case("flight with a space", c, |f| f.trip.flight_number = "GA 404".into(), Bad(&[("invalid_format", "trip.flight_number")])),
        case("flight in lowercase", c, |f| f.trip.flight_number = "ga404".into(), Bad(&[("invalid_format", "trip.flight_number")])),
        case("flight of five digits", c, |f| f.trip.flight_number = "GA40404".into(), Bad(&[("invalid_format", "trip.flight_number")])),
        case("flight without number", c, |f| f.trip.flight_number = "GA".into(), Bad(&[("invalid_format", "trip.flight_number")])),
        case(
            "flight with a numeric airline code",
            c,
            |f| f.trip.flight_number = "12345".into(),
            Bad(&[("invalid_format", "trip.flight_number")]),
        ),
        case(
            "flight with ICAO 3-letter airline code",
            c,
            |f| f.trip.flight_number = "GIA404".into(),
            Bad(&[("invalid_format", "trip.flight_number")]),
        ),
        case(
            "flight with two suffix letters",
            c,
            |f| f.trip.flight_number = "GA404AB".into(),
            Bad(&[("invalid_format", "trip.flight_number")]),
        ),
        case("flight of one digit", c, |f| f.trip.flight_number = "GA1".into(), OK),
        case("flight of four digits", c, |f| f.trip.flight_number = "JT3456".into(), OK),
        case("flight with digit-letter airline code", c, |f| f.trip.flight_number = "8B123".into(), OK),
        case("flight with operational suffix", c, |f| f.trip.flight_number = "QZ7510A".into(), OK),
        case("ship's name as voyage", c, sea, OK),
        case(
            "voyage of 33 characters",
            c,
            |f| {
                sea(f);
                f.trip.flight_number = "K".repeat(33)
            },
            Bad(&[("out_of_range", "trip.flight_number")]),
        ),
        // Seat.
        case("seat 1A", c, |f| f.trip.seat = Some("1A".into()), OK),
        case("seat 100K", c, |f| f.trip.seat = Some("100K".into()), OK),
        case("seat 88L", c, |f| f.trip.seat = Some("88L".into()), OK),
        case("seat row 0", c, |f| f.trip.seat = Some("0A".into()), Bad(&[("invalid_format", "trip.seat")])),
        case("seat with leading zero", c, |f| f.trip.seat = Some("012A".into()), Bad(&[("invalid_format", "trip.seat")])),
        case("seat letter first", c, |f| f.trip.seat = Some("A12".into()), Bad(&[("invalid_format", "trip.seat")])),
        case("seat letter M", c, |f| f.trip.seat = Some("12M".into()), Bad(&[("invalid_format", "trip.seat")])),
        case("seat row of four digits", c, |f| f.trip.seat = Some("1234A".into()), Bad(&[("invalid_format", "trip.seat")])),
        case("seat in lowercase", c, |f| f.trip.seat = Some("12a".into()), Bad(&[("invalid_format", "trip.seat")])),
        case("seat empty", c, |f| f.trip.seat = Some(String::new()), Bad(&[("invalid_format", "trip.seat")])),
        case("seat absent", c, |f| f.trip.seat = None, OK),
        case(
            "ferry deck as seat",
            c,
            |f| {
                sea(f);
                f.trip.seat = Some("Deck 2".into())
            },
            OK,
        ),
        // Ports: IATA codes that exist, origin differs from destination.
        case("departure port missing", c, |f| f.trip.departure_port.clear(), Bad(&[("required", "trip.departure_port")])),
        case("arrival port in lowercase", c, |f| f.trip.arrival_port = "dps".into(), Bad(&[("invalid_format", "trip.arrival_port")])),
        case("arrival port of four letters", c, |f| f.trip.arrival_port = "WADD".into(), Bad(&[("invalid_format", "trip.arrival_port")])),
        case(
            "arrival port as a city name",
            c,
            |f| f.trip.arrival_port = "Denpasar".into(),
            Bad(&[("invalid_format", "trip.arrival_port")]),
        ),
        case("arrival airport unknown", c, |f| f.trip.arrival_port = "QQQ".into(), Bad(&[("unknown_airport", "trip.arrival_port")])),
        case("departure airport unknown", c, |f| f.trip.departure_port = "QQQ".into(), Bad(&[("unknown_airport", "trip.departure_port")])),
        case("same airport", c, |f| f.trip.arrival_port = "CGK".into(), Bad(&[("same_port", "trip.arrival_port")])),
        case("Kualanamu (corrected locally)", c, |f| f.trip.arrival_port = "KNO".into(), OK),
        case("ferry between two ports", c, sea, OK),
        case(
            "ferry to the same port",
            c,
            |f| {
                sea(f);
                f.trip.arrival_port = " merak ".into()
            },
            Bad(&[("same_port", "trip.arrival_port")]),
        ),
        case(
            "land crossing",
            c,
            |f| {
                sea(f);
                f.trip.transport_mode = Some(TransportMode::Land);
                f.trip.departure_port = "Entikong".into();
                f.trip.arrival_port = "Pontianak".into()
            },
            OK,
        ),
        // Times: read in the ports' zones, arrival after departure, departure in the window.
        case("departure time missing", c, |f| f.trip.departure_time.clear(), Bad(&[("required", "trip.departure_time")])),
        case(
            "departure time without date",
            c,
            |f| f.trip.departure_time = "08:30".into(),
            Bad(&[("invalid_format", "trip.departure_time")]),
        ),
        case(
            "arrival time in another format",
            c,
            |f| f.trip.arrival_time = "20/12/2026 11:20".into(),
            Bad(&[("invalid_format", "trip.arrival_time")]),
        ),
        case(
            "times in RFC 3339 with offsets",
            c,
            |f| {
                f.trip.departure_time = "2026-12-20T08:30:00+07:00".into();
                f.trip.arrival_time = "2026-12-20T11:20:00+08:00".into()
            },
            OK,
        ),
        case(
            "local times with seconds",
            c,
            |f| {
                f.trip.departure_time = "2026-12-20T08:30:00".into();
                f.trip.arrival_time = "2026-12-20T11:20:00".into()
            },
            OK,
        ),
        case(
            "times with an offset but without seconds",
            c,
            |f| {
                f.trip.departure_time = "2026-12-20T08:30+07:00".into();
                f.trip.arrival_time = "2026-12-20T11:20+08:00".into()
            },
            OK,
        ),
        case(
            "UTC times without seconds",
            c,
            |f| {
                f.trip.departure_time = "2026-12-20T01:30Z".into();
                f.trip.arrival_time = "2026-12-20T03:20Z".into()
            },
            OK,
        ),
        case(
            "an offset without seconds followed by garbage",
            c,
            |f| f.trip.departure_time = "2026-12-20T08:30+07:00x".into(),
            Bad(&[("invalid_format", "trip.departure_time")]),
        ),
        case(
            "an offset out of range",
            c,
            |f| f.trip.arrival_time = "2026-12-20T11:20+25:00".into(),
            Bad(&[("invalid_format", "trip.arrival_time")]),
        ),
        case(
            "a trip that ends abroad (CGK to KUL)",
            c,
            |f| f.trip.arrival_port = "KUL".into(),
            Bad(&[("arrival_outside_indonesia", "trip.arrival_port")]),
        ),
        case("a trip from abroad into Indonesia (SIN to CGK)", foreigner, |_| {}, OK),
        case(
            "a NUL in the name",
            c,
            |f| f.traveller.full_name = "Siti\u{0}Lestari".into(),
            Bad(&[("forbidden_character", "traveller.full_name")]),
        ),
        case(
            "a right-to-left override in the name",
            c,
            |f| f.traveller.full_name = "Siti \u{202E}irateseL".into(),
            Bad(&[("forbidden_character", "traveller.full_name")]),
        ),
        case(
            "a bidi isolate in the carrier",
            c,
            |f| f.trip.carrier = "Garuda \u{2067}Indonesia".into(),
            Bad(&[("forbidden_character", "trip.carrier")]),
        ),
        case(
            "a zero-width space in the street",
            c,
            |f| f.destination_address.street = "Jl. Raya\u{200B} Kuta 1".into(),
            Bad(&[("forbidden_character", "destination_address.street")]),
        ),
        case(
            "a byte-order mark in the city",
            c,
            |f| f.destination_address.city = "\u{FEFF}Badung".into(),
            Bad(&[("forbidden_character", "destination_address.city")]),
        ),
        case(
            "a C1 control (NEL) in the province",
            c,
            |f| f.destination_address.province = "Bali\u{85}".into(),
            Bad(&[("forbidden_character", "destination_address.province")]),
        ),
        case(
            "a newline in the name",
            c,
            |f| f.traveller.full_name = "Siti\nLestari".into(),
            Bad(&[("forbidden_character", "traveller.full_name")]),
        ),
        case("letters beyond ASCII, apostrophes and hyphens in a name", c, |f| f.traveller.full_name = "Nur'aini Pérez-Ñúñez".into(), OK),
        // 09:20 WITA is 08:20 WIB: before the 08:30 WIB departure, though the digits are later.
        case(
            "arrival before departure across zones",
            c,
            |f| f.trip.arrival_time = "2026-12-20T09:20".into(),
            Bad(&[("arrival_before_departure", "trip.arrival_time")]),
        ),
        case(
            "arrival at the departure instant",
            c,
            |f| f.trip.arrival_time = "2026-12-20T09:30".into(),
            Bad(&[("arrival_before_departure", "trip.arrival_time")]),
        ),
        case(
            "arrival a year before departure",
            c,
            |f| f.trip.arrival_time = "2025-12-20T11:20".into(),
            Bad(&[("arrival_before_departure", "trip.arrival_time")]),
        ),
        case("departure four days ahead", c, |f| shift_trip(f, 96), Bad(&[("departure_outside_window", "trip.departure_time")])),
        case("departure four days ago", c, |f| shift_trip(f, -96), Bad(&[("departure_outside_window", "trip.departure_time")])),
        case("departure two days ahead", c, |f| shift_trip(f, 48), OK),
        case("departure 71 hours ahead", c, |f| shift_trip(f, 71), OK),
        case("declared 12 hours after take-off", c, |f| shift_trip(f, -12), Valid(&["submitted_after_departure"])),
        // Destination address.
        case("street missing", c, |f| f.destination_address.street.clear(), Bad(&[("required", "destination_address.street")])),
        case("city missing", c, |f| f.destination_address.city.clear(), Bad(&[("required", "destination_address.city")])),
        case("province missing", c, |f| f.destination_address.province.clear(), Bad(&[("required", "destination_address.province")])),
        case(
            "postal code of four digits",
            c,
            |f| f.destination_address.postal_code = Some("8036".into()),
            Bad(&[("invalid_format", "destination_address.postal_code")]),
        ),
        case(
            "postal code with letters",
            c,
            |f| f.destination_address.postal_code = Some("80A61".into()),
            Bad(&[("invalid_format", "destination_address.postal_code")]),
        ),
        case("postal code of five digits", c, |f| f.destination_address.postal_code = Some("80361".into()), OK),
        // Health questionnaire, vaccination, test.
        case("fever unanswered", c, |f| f.health.fever = None, Bad(&[("required", "health.fever")])),
        case("cough unanswered", c, |f| f.health.cough = None, Bad(&[("required", "health.cough")])),
        case(
            "shortness of breath unanswered",
            c,
            |f| f.health.shortness_of_breath = None,
            Bad(&[("required", "health.shortness_of_breath")]),
        ),
        case("contact with a case unanswered", c, |f| f.health.contact_with_case = None, Bad(&[("required", "health.contact_with_case")])),
        case("vaccination doses missing", c, |f| f.health.vaccination_doses = None, Bad(&[("required", "health.vaccination_doses")])),
        case(
            "vaccination doses negative",
            c,
            |f| f.health.vaccination_doses = Some(-1),
            Bad(&[("out_of_range", "health.vaccination_doses")]),
        ),
        case("vaccination doses 11", c, |f| f.health.vaccination_doses = Some(11), Bad(&[("out_of_range", "health.vaccination_doses")])),
        case("vaccination doses 10", c, |f| f.health.vaccination_doses = Some(10), OK),
        case("vaccination doses 0", c, |f| f.health.vaccination_doses = Some(0), OK),
        case(
            "test without kind",
            c,
            |f| {
                test_result(f, TestKind::Pcr, TestResult::Negative, "2026-12-19");
                f.health.latest_test.as_mut().unwrap().kind = None
            },
            Bad(&[("required", "health.latest_test.kind")]),
        ),
        case(
            "test without result",
            c,
            |f| {
                test_result(f, TestKind::Pcr, TestResult::Negative, "2026-12-19");
                f.health.latest_test.as_mut().unwrap().result = None
            },
            Bad(&[("required", "health.latest_test.result")]),
        ),
        case(
            "test without date",
            c,
            |f| test_result(f, TestKind::Pcr, TestResult::Negative, ""),
            Bad(&[("required", "health.latest_test.taken_on")]),
        ),
        case(
            "test date in another format",
            c,
            |f| test_result(f, TestKind::Pcr, TestResult::Negative, "19-12-2026"),
            Bad(&[("invalid_format", "health.latest_test.taken_on")]),
        ),
        case(
            "test taken in the future",
            c,
            |f| test_result(f, TestKind::Pcr, TestResult::Negative, "2026-12-22"),
            Bad(&[("out_of_range", "health.latest_test.taken_on")]),
        ),
        case(
            "test taken before birth",
            c,
            |f| test_result(f, TestKind::Pcr, TestResult::Negative, "1989-01-01"),
            Bad(&[("out_of_range", "health.latest_test.taken_on")]),
        ),
        case("positive test: flagged, not rejected", c, |f| test_result(f, TestKind::Antigen, TestResult::Positive, "2026-12-19"), OK),
        case("negative PCR yesterday", c, |f| test_result(f, TestKind::Pcr, TestResult::Negative, "2026-12-19"), OK),
        case("test taken today", c, |f| test_result(f, TestKind::Antigen, TestResult::Negative, "2026-12-20"), OK),
    ]
}

fn codes(errors: &[ehac_domain::FieldError]) -> Vec<(String, String)> {
    errors.iter().map(|e| (e.code.clone(), e.field.clone())).collect()
}

#[test]
fn every_validation_rule_with_valid_and_invalid_cases() {
    let reference = ReferenceData::embedded();
    let policy = Policy::default();
    let cases = validation_cases();
    let mut failures = Vec::new();
    for case in &cases {
        let mut form = (case.base)();
        (case.edit)(&mut form);
        let result = validate(&form, reference, &policy, now());
        let ok = match (&case.expect, &result) {
            (Expect::Valid(warnings), Ok(checked)) => checked.warnings.iter().map(|w| w.as_str()).collect::<Vec<_>>() == *warnings,
            (Expect::Invalid(expected), Err(errors)) => {
                codes(errors) == expected.iter().map(|(c, f)| (c.to_string(), f.to_string())).collect::<Vec<_>>()
            }
            _ => false,
        };
        if !ok {
            let got = result.map(|c| format!("valid, warnings {:?}", c.warnings)).unwrap_or_else(|e| format!("{:?}", codes(&e)));
            failures.push(format!("{}: expected {:?}, got {got}", case.name, case.expect));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
    let invalid = cases.iter().filter(|c| matches!(c.expect, Expect::Invalid(_))).count();
    assert!(cases.len() >= 150 && invalid >= 75 && cases.len() - invalid >= 40, "{} cases, {invalid} invalid", cases.len());
}

#[test]
fn an_empty_form_lists_every_missing_field() {
    let errors = check_form(&DeclarationForm::default(), &Policy::default(), now()).unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    for field in [
        "client_id",
        "channel",
        "traveller.nik",
        "traveller.full_name",
        "traveller.sex",
        "traveller.date_of_birth",
        "traveller.phone",
        "trip.transport_mode",
        "trip.carrier",
        "trip.flight_number",
        "trip.departure_port",
        "trip.arrival_port",
        "trip.departure_time",
        "trip.arrival_time",
        "destination_address.street",
        "health.fever",
        "health.vaccination_doses",
    ] {
        assert!(fields.contains(&field), "{field} missing from {fields:?}");
    }
    assert!(errors.iter().all(|e| e.code == "required"), "{errors:?}");
    assert!(errors.iter().all(|e| !e.message.is_empty()));
}

#[test]
fn the_departure_window_is_policy() {
    let reference = ReferenceData::embedded();
    let mut form = citizen();
    shift_trip(&mut form, 5 * 24);
    assert!(validate(&form, reference, &Policy::default(), now()).is_err());
    let wider = Policy { departure_future: Duration::days(7), ..Policy::default() };
    assert!(validate(&form, reference, &wider, now()).is_ok());
}

#[test]
fn a_local_time_in_a_daylight_saving_gap_is_out_of_range() {
    // Melbourne's clocks jumped from 02:00 to 03:00 on 4 Oct 2026.
    let mut form = foreigner();
    form.trip.departure_port = "MEL".into();
    form.trip.departure_time = "2026-10-04T02:30".into();
    form.trip.arrival_time = "2026-10-04T08:00".into();
    let received = Utc.with_ymd_and_hms(2026, 10, 3, 12, 0, 0).unwrap();
    let errors = validate(&form, ReferenceData::embedded(), &Policy::default(), received).unwrap_err();
    assert_eq!(codes(&errors), vec![("out_of_range".to_string(), "trip.departure_time".to_string())]);
}

// Enrichment: each case edits a valid declaration and checks the columns it adds.

struct Enriched {
    name: &'static str,
    base: fn() -> DeclarationForm,
    edit: fn(&mut DeclarationForm),
    check: fn(&ehac_domain::Enrichment) -> bool,
}

fn enrichment_cases() -> Vec<Enriched> {
    let c = citizen as fn() -> DeclarationForm;
    let f = foreigner as fn() -> DeclarationForm;
    let e = |name, base, edit, check| Enriched { name, base, edit, check };
    vec![
        e(
            "citizen: home region from the NIK",
            c,
            |_| {},
            |x| {
                x.home_province == "Daerah Khusus Ibukota Jakarta"
                    && x.home_regency == "Kota Administrasi Jakarta Pusat"
                    && x.home_district_code == "317104"
            },
        ),
        e("citizen: nationality IDN", c, |_| {}, |x| x.nationality == "IDN"),
        e("citizen: verification pending until the registry answers", c, |_| {}, |x| x.verification_status == VerificationStatus::Pending),
        e("foreigner: verification not applicable", f, |_| {}, |x| x.verification_status == VerificationStatus::NotApplicable),
        e(
            "foreigner: no home region",
            f,
            |_| {},
            |x| x.home_province.is_empty() && x.home_regency.is_empty() && x.home_district_code.is_empty(),
        ),
        e(
            "foreigner: nationality D counted as DEU",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.nationality = Some("D".into())
            },
            |x| x.nationality == "DEU",
        ),
        e(
            "arrival port details",
            c,
            |_| {},
            |x| {
                x.arrival.code == "DPS"
                    && x.arrival.country == "ID"
                    && x.arrival.time_zone == "Asia/Makassar"
                    && x.arrival.city.starts_with("Denpasar")
                    && !x.arrival.subdivision.is_empty()
            },
        ),
        e("departure port details", c, |_| {}, |x| x.departure.code == "CGK" && x.departure.time_zone == "Asia/Jakarta"),
        e("local arrival hour at the port of entry", c, |_| {}, |x| x.arrival_local_hour == 11),
        e(
            "arrival date is the local date",
            c,
            |f| {
                f.trip.departure_time = "2026-12-20T22:00".into();
                f.trip.arrival_time = "2026-12-21T00:50".into()
            },
            |x| x.arrival_date == 20808 && x.arrival_local_hour == 0,
        ),
        e("domestic flight", c, |_| {}, |x| x.domestic),
        e("international flight", f, |_| {}, |x| !x.domestic && x.departure.country == "SG"),
        e("ferry counts as domestic", c, sea, |x| x.domestic && x.arrival.time_zone == "Asia/Jakarta"),
        e("age 36, adult band", c, |_| {}, |x| x.age_years == 36 && x.age_band == "18-59"),
        e(
            "age 5, band 0-5",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.date_of_birth = "2021-01-01".into()
            },
            |x| x.age_years == 5 && x.age_band == "0-5",
        ),
        e(
            "age 6, band 6-11",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.date_of_birth = "2020-12-20".into()
            },
            |x| x.age_years == 6 && x.age_band == "6-11",
        ),
        e(
            "age 17, band 12-17",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.date_of_birth = "2009-06-01".into()
            },
            |x| x.age_years == 17 && x.age_band == "12-17",
        ),
        e(
            "age 59 the day before the 60th birthday",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.date_of_birth = "1966-12-21".into()
            },
            |x| x.age_years == 59 && x.age_band == "18-59",
        ),
        e(
            "age 60, band 60+",
            f,
            |f| {
                f.traveller.passport_mrz = None;
                f.traveller.date_of_birth = "1966-12-20".into()
            },
            |x| x.age_years == 60 && x.age_band == "60+",
        ),
        e("green: no risk", c, |_| {}, |x| x.triage == "green" && x.risk_flags.is_empty()),
        e(
            "yellow: unvaccinated",
            c,
            |f| f.health.vaccination_doses = Some(0),
            |x| x.triage == "yellow" && x.risk_flags == ["unvaccinated"],
        ),
        e("yellow: fever", c, |f| f.health.fever = Some(true), |x| x.triage == "yellow" && x.risk_flags == ["symptomatic"]),
        e(
            "yellow: contact with a case",
            c,
            |f| f.health.contact_with_case = Some(true),
            |x| x.triage == "yellow" && x.risk_flags == ["contact_with_case"],
        ),
        e(
            "red: symptoms and contact",
            c,
            |f| {
                f.health.cough = Some(true);
                f.health.contact_with_case = Some(true)
            },
            |x| x.triage == "red" && x.risk_flags == ["symptomatic", "contact_with_case"],
        ),
        e(
            "red: positive test",
            c,
            |f| test_result(f, TestKind::Antigen, TestResult::Positive, "2026-12-19"),
            |x| x.triage == "red" && x.risk_flags == ["positive_test"],
        ),
        e(
            "PCR two days before departure is fresh",
            c,
            |f| test_result(f, TestKind::Pcr, TestResult::Negative, "2026-12-18"),
            |x| x.triage == "green",
        ),
        e(
            "PCR five days before departure is stale",
            c,
            |f| test_result(f, TestKind::Pcr, TestResult::Negative, "2026-12-15"),
            |x| x.triage == "yellow" && x.risk_flags == ["stale_test"],
        ),
        e(
            "antigen the day before departure is fresh",
            c,
            |f| test_result(f, TestKind::Antigen, TestResult::Negative, "2026-12-19"),
            |x| x.triage == "green",
        ),
        e(
            "antigen two days before departure is stale",
            c,
            |f| test_result(f, TestKind::Antigen, TestResult::Negative, "2026-12-18"),
            |x| x.risk_flags == ["stale_test"],
        ),
        e("warnings are carried into enrichment", c, |f| shift_trip(f, -12), |x| x.warnings == ["submitted_after_departure"]),
        e(
            "submission time kept from the form",
            c,
            |_| {},
            |x| x.submitted_at_ms == Utc.with_ymd_and_hms(2026, 12, 20, 0, 55, 0).unwrap().timestamp_millis(),
        ),
        e(
            "departure and arrival instants in UTC",
            c,
            |_| {},
            |x| {
                x.departure_at_ms == Utc.with_ymd_and_hms(2026, 12, 20, 1, 30, 0).unwrap().timestamp_millis()
                    && x.arrival_at_ms == Utc.with_ymd_and_hms(2026, 12, 20, 3, 20, 0).unwrap().timestamp_millis()
            },
        ),
    ]
}

#[test]
fn every_enrichment_rule() {
    let reference = ReferenceData::embedded();
    let policy = Policy::default();
    let mut failures = Vec::new();
    let cases = enrichment_cases();
    for case in &cases {
        let mut form = (case.base)();
        (case.edit)(&mut form);
        match validate(&form, reference, &policy, now()) {
            Err(e) => failures.push(format!("{}: invalid: {:?}", case.name, codes(&e))),
            Ok(checked) => {
                let enrichment = enrich(&form, &checked, reference, &policy, "test");
                if !(case.check)(&enrichment) {
                    failures.push(format!("{}: {enrichment:?}", case.name));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

#[test]
fn generated_declarations_fail_exactly_the_check_their_flaw_targets() {
    let reference = ReferenceData::embedded();
    let policy = Policy::default();
    let mut generator = SampleGenerator::new(7);
    for i in 0..3000 {
        let flaw = [Flaw::None, Flaw::Form, Flaw::Reference][i % 3];
        let form = generator.declaration(now(), "test", flaw);
        let form_result = check_form(&form, &policy, now());
        match flaw {
            Flaw::Form => assert!(form_result.is_err(), "{form:?}"),
            Flaw::None | Flaw::Reference => {
                let facts = form_result.unwrap_or_else(|e| panic!("{e:?} in {form:?}"));
                let result = ehac_domain::check_references(&form, facts, reference, &policy, now());
                assert_eq!(result.is_ok(), flaw == Flaw::None, "{flaw:?}: {result:?} for {form:?}");
            }
        }
    }
}

#[test]
fn generated_air_trips_end_in_indonesia() {
    let reference = ReferenceData::embedded();
    let mut generator = SampleGenerator::new(11);
    let mut abroad_departures = 0;
    for _ in 0..3000 {
        let form = generator.declaration(now(), "test", Flaw::None);
        if form.trip.transport_mode != Some(ehac_domain::form::TransportMode::Air) {
            continue;
        }
        assert_eq!(reference.airport(&form.trip.arrival_port).unwrap().country, "ID", "{:?}", form.trip);
        abroad_departures += usize::from(reference.airport(&form.trip.departure_port).unwrap().country != "ID");
    }
    // International arrivals are still generated, only no trip leaves the country.
    assert!(abroad_departures > 50, "{abroad_departures} trips from abroad");
}
