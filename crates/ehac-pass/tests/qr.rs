//! A realistic pass must fit a QR code of version 15 or less at error-correction level Q, so a
//! phone screen or a printout scans quickly at a gate.

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use ehac_pass::{issue, IssuingKey, PassClaims, Triage};
use qrcode::{EcLevel, QrCode, Version};

#[test]
fn realistic_pass_fits_qr_version_15_at_level_q() {
    let key = IssuingKey::generate("ID-JK").unwrap();
    let arrival = Utc.with_ymd_and_hms(2026, 5, 1, 10, 0, 0).unwrap();
    let claims = PassClaims {
        pass_id: *b"0123456789abcdef",
        // 68 characters: long for an Indonesian name (a typical 30-character one gives version 13 or 14).
        traveller_name: "Raden Ajeng Kartini Sosroningrat Purwaningsih Wijayakusuma-Hadiprojo".into(),
        date_of_birth: NaiveDate::from_ymd_opt(1979, 4, 21).unwrap(),
        flight: "GA4040".into(),
        arrival_airport: "CGK".into(),
        arrival_at: arrival,
        arrival_date: NaiveDate::from_ymd_opt(2026, 5, 1).unwrap(),
        triage: Triage::Yellow,
    };
    let pass = issue(&key, &claims, arrival - Duration::hours(3)).unwrap();
    let code = QrCode::with_error_correction_level(pass.as_bytes(), EcLevel::Q).unwrap();
    let Version::Normal(version) = code.version() else { panic!("a micro QR for a pass?") };
    println!("pass of {} characters: QR version {version} at level Q, {} modules a side", pass.len(), code.width());
    assert!(version <= 15, "QR version {version} > 15 for {} characters", pass.len());
}
