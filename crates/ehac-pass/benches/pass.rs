//! Signing and verifying one pass: the gateway's budget is 25 CPU-µs per pass.
//! `cargo bench -p ehac-pass --bench pass`

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use ehac_pass::{issue::sign_with_p256, issue::sign_with_ring, IssuePolicy, IssuingKey, PassClaims, RootKey, Signer, Triage, TrustList};
use ehac_pass::{verify, TrustedKey, VerifiedTrustList};

fn pass(c: &mut Criterion) {
    let key = IssuingKey::generate("ID-JK").unwrap();
    let arrival = Utc.with_ymd_and_hms(2026, 5, 1, 10, 0, 0).unwrap();
    let now = arrival - Duration::hours(3);
    let claims = PassClaims {
        pass_id: [7; 16],
        traveller_name: "Siti Nurhaliza binti Abdullah".into(),
        date_of_birth: NaiveDate::from_ymd_opt(1988, 3, 14).unwrap(),
        flight: "GA404".into(),
        arrival_airport: "CGK".into(),
        arrival_at: arrival,
        arrival_date: NaiveDate::from_ymd_opt(2026, 5, 1).unwrap(),
        triage: Triage::Green,
    };
    let signer = Signer::new(&key, IssuePolicy::default());
    // A Sig_structure of a pass's size, for the two signers alone.
    let tbs = vec![0x5a; 180];
    c.bench_function("es256 sign, ring (chosen)", |b| b.iter(|| sign_with_ring(&signer, &tbs)));
    c.bench_function("es256 sign, p256 (RustCrypto)", |b| b.iter(|| sign_with_p256(&key, &tbs)));
    c.bench_function("issue pass (claims, COSE, ES256, zlib, Base45)", |b| b.iter(|| signer.issue(&claims, now).unwrap()));

    let root = RootKey::generate().unwrap();
    let mut list = TrustList::new(Duration::hours(24));
    list.add_key(TrustedKey::new(&key.public_key(), "ID-JK", now - Duration::days(1), now + Duration::days(30)).unwrap()).unwrap();
    for i in 0..10_000u32 {
        list.revoke(&i.to_be_bytes(), now + Duration::days(1));
    }
    let trust = VerifiedTrustList::load(&list.sign(&root, now), &[root.public()]).unwrap();
    let pass = signer.issue(&claims, now).unwrap();
    let at_gate = arrival + Duration::minutes(20);
    assert!(matches!(verify(&pass, &trust, "CGK", at_gate), ehac_pass::Verdict::Accept(_)));
    c.bench_function("verify pass at the gate (10k revocations listed)", |b| b.iter(|| verify(&pass, &trust, "CGK", at_gate)));
}

criterion_group!(benches, pass);
criterion_main!(benches);
