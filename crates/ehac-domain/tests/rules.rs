//! Form and reference checks, and enrichment, on hand-written and generated declarations.

use chrono::{DateTime, TimeZone, Utc};
use ehac_domain::form::*;
use ehac_domain::sample::{Flaw, SampleGenerator};
use ehac_domain::{check_form, check_references, enrich, DeclarationForm, ReferenceData};

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

fn codes(errors: &[ehac_domain::FieldError]) -> Vec<(String, String)> {
    errors.iter().map(|e| (e.code.clone(), e.field.clone())).collect()
}

#[test]
fn a_complete_declaration_passes_and_is_enriched() {
    let form = citizen();
    let reference = ReferenceData::embedded();
    let facts = check_form(&form).expect("form is valid");
    let checked = check_references(&form, &facts, reference, now()).expect("references are valid");
    // 08:30 WIB (UTC+7) is 01:30Z; 11:20 WITA (UTC+8) is 03:20Z.
    assert_eq!(checked.departure_at, Utc.with_ymd_and_hms(2026, 12, 20, 1, 30, 0).unwrap());
    assert_eq!(checked.arrival_at, Utc.with_ymd_and_hms(2026, 12, 20, 3, 20, 0).unwrap());
    let e = enrich(&form, &checked, reference, "test");
    assert_eq!(e.arrival.city, "Denpasar-Bali Island");
    assert_eq!(e.arrival.time_zone, "Asia/Makassar");
    assert_eq!(e.arrival_local_hour, 11);
    assert!(e.domestic);
    assert_eq!(e.nationality, "IDN");
    assert_eq!(e.home_province, "Daerah Khusus Ibukota Jakarta");
    assert_eq!(e.home_regency, "Kota Administrasi Jakarta Pusat");
    assert_eq!(e.age_years, 36);
    assert_eq!(e.age_band, "18-59");
    assert_eq!(e.triage, "green");
    assert!(e.risk_flags.is_empty());
}

#[test]
fn an_empty_form_lists_every_missing_field() {
    let errors = check_form(&DeclarationForm::default()).unwrap_err();
    let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
    for field in ["client_id", "channel", "traveller.nik", "traveller.full_name", "traveller.sex", "traveller.date_of_birth",
        "traveller.phone", "trip.transport_mode", "trip.carrier", "trip.flight_number", "trip.departure_port",
        "trip.arrival_port", "trip.departure_time", "trip.arrival_time", "destination_address.street",
        "health.fever", "health.vaccination_doses"] {
        assert!(fields.contains(&field), "{field} missing from {fields:?}");
    }
    assert!(errors.iter().all(|e| e.code == "required"), "{errors:?}");
}

#[test]
fn form_rules_each_catch_their_case() {
    type Edit = fn(&mut DeclarationForm);
    let cases: &[(&str, Edit, &str, &str)] = &[
        ("short NIK", |f| f.traveller.nik = Some("31710445129".into()), "invalid_format", "traveller.nik"),
        ("NIK with letters", |f| f.traveller.nik = Some("31710445129000AB".into()), "invalid_format", "traveller.nik"),
        // The sample citizen: 317104 district, 45-12-90 (5 Dec 1990 + 40: a woman), serial 0001.
        ("NIK serial 0000", |f| f.traveller.nik = Some("3171044512900000".into()), "invalid_format", "traveller.nik"),
        ("NIK birth date not a date", |f| f.traveller.nik = Some("3171047512900001".into()), "invalid_format", "traveller.nik"),
        ("NIK month 13", |f| f.traveller.nik = Some("3171044513900001".into()), "invalid_format", "traveller.nik"),
        ("NIK day differs from date of birth", |f| f.traveller.nik = Some("3171044612900001".into()), "nik_date_of_birth_mismatch", "traveller.nik"),
        ("NIK year differs from date of birth", |f| f.traveller.nik = Some("3171044512910001".into()), "nik_date_of_birth_mismatch", "traveller.nik"),
        ("NIK of a man, declared female", |f| f.traveller.nik = Some("3171040512900001".into()), "nik_sex_mismatch", "traveller.nik"),
        ("declared male, NIK of a woman", |f| f.traveller.sex = Some(Sex::Male), "nik_sex_mismatch", "traveller.nik"),
        ("NIK and passport", |f| f.traveller.passport_number = Some("A1234567".into()), "identity_conflict", "traveller"),
        ("passport without nationality", |f| { f.traveller.nik = None; f.traveller.passport_number = Some("A1234567".into()); }, "required", "traveller.nationality"),
        ("lowercase nationality", |f| { f.traveller.nik = None; f.traveller.passport_number = Some("A1234567".into()); f.traveller.nationality = Some("sgp".into()); }, "invalid_format", "traveller.nationality"),
        ("date of birth in another format", |f| f.traveller.date_of_birth = "05/12/1990".into(), "invalid_format", "traveller.date_of_birth"),
        ("impossible date", |f| f.traveller.date_of_birth = "1990-02-30".into(), "invalid_format", "traveller.date_of_birth"),
        ("local phone number", |f| f.traveller.phone = "081234567890".into(), "invalid_format", "traveller.phone"),
        ("email without domain", |f| f.traveller.email = Some("siti@".into()), "invalid_format", "traveller.email"),
        ("airport code as name", |f| f.trip.arrival_port = "Denpasar".into(), "invalid_format", "trip.arrival_port"),
        ("time without date", |f| f.trip.departure_time = "08:30".into(), "invalid_format", "trip.departure_time"),
        ("unanswered question", |f| f.health.cough = None, "required", "health.cough"),
        ("negative doses", |f| f.health.vaccination_doses = Some(-1), "out_of_range", "health.vaccination_doses"),
        ("test without result", |f| f.health.latest_test = Some(LatestTest { kind: Some(TestKind::Pcr), result: None, taken_on: "2026-12-19".into() }), "required", "health.latest_test.result"),
        ("bad declaration id", |f| f.declaration_id = Some("has spaces".into()), "invalid_format", "declaration_id"),
        ("bad submitted_at", |f| f.submitted_at = Some("yesterday".into()), "invalid_format", "submitted_at"),
    ];
    for (name, edit, code, field) in cases {
        let mut form = citizen();
        edit(&mut form);
        let errors = check_form(&form).expect_err(name);
        assert_eq!(codes(&errors), vec![(code.to_string(), field.to_string())], "{name}");
    }
}

#[test]
fn reference_rules_each_catch_their_case() {
    type Edit = fn(&mut DeclarationForm);
    let cases: &[(&str, Edit, &str, &str)] = &[
        ("unknown district", |f| f.traveller.nik = Some("9901014512900001".into()), "unknown_district", "traveller.nik"),
        ("unknown airport", |f| f.trip.arrival_port = "QQQ".into(), "unknown_airport", "trip.arrival_port"),
        ("same airport", |f| f.trip.arrival_port = "CGK".into(), "same_port", "trip.arrival_port"),
        // 09:20 WITA is 08:20 WIB: before the 08:30 WIB departure, though the digits are later.
        ("arrival before departure across zones", |f| f.trip.arrival_time = "2026-12-20T09:20".into(), "arrival_before_departure", "trip.arrival_time"),
    ];
    for (name, edit, code, field) in cases {
        let mut form = citizen();
        edit(&mut form);
        let facts = check_form(&form).expect(name);
        let errors = check_references(&form, &facts, ReferenceData::embedded(), now()).expect_err(name);
        assert_eq!(codes(&errors), vec![(code.to_string(), field.to_string())], "{name}");
    }
}

#[test]
fn triage_follows_the_documented_rules() {
    let reference = ReferenceData::embedded();
    let triage = |edit: fn(&mut Health)| {
        let mut form = citizen();
        edit(&mut form.health);
        let facts = check_form(&form).unwrap();
        let checked = check_references(&form, &facts, reference, now()).unwrap();
        enrich(&form, &checked, reference, "test").triage
    };
    assert_eq!(triage(|_| {}), "green");
    assert_eq!(triage(|h| h.vaccination_doses = Some(0)), "yellow");
    assert_eq!(triage(|h| h.fever = Some(true)), "yellow");
    assert_eq!(triage(|h| { h.fever = Some(true); h.contact_with_case = Some(true) }), "red");
    assert_eq!(
        triage(|h| h.latest_test = Some(LatestTest { kind: Some(TestKind::Antigen), result: Some(TestResult::Positive), taken_on: "2026-12-19".into() })),
        "red"
    );
}

#[test]
fn generated_declarations_fail_exactly_the_check_their_flaw_targets() {
    let reference = ReferenceData::embedded();
    let mut generator = SampleGenerator::new(7);
    for i in 0..3000 {
        let flaw = [Flaw::None, Flaw::Form, Flaw::Reference][i % 3];
        let form = generator.declaration(now(), "test", flaw);
        let form_result = check_form(&form);
        match flaw {
            Flaw::Form => assert!(form_result.is_err(), "{form:?}"),
            Flaw::None | Flaw::Reference => {
                let facts = form_result.unwrap_or_else(|e| panic!("{e:?} in {form:?}"));
                let result = check_references(&form, &facts, reference, now());
                assert_eq!(result.is_ok(), flaw == Flaw::None, "{flaw:?}: {result:?} for {form:?}");
            }
        }
    }
}
