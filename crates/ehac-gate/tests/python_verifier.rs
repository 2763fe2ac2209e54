//! The independent check: passes issued by the Rust code, judged by tests/python/verify_pass.py
//! (cbor2, cryptography, base45), which must reach the same verdict and reason as the Rust
//! verifier for each. The bent passes follow the negative cases of the EU dgc-testdata
//! repository: wrong prefix, broken Base45, broken compression, tampered payload, wrong
//! signature length, unknown kid, expired, plus our own (revoked, wrong airport, bomb).

use std::io::{Read, Write};
use std::process::Command;

use chrono::{Duration, NaiveDate, Utc};
use ehac_pass::{IssuePolicy, IssuingKey, PassClaims, RootKey, Signer, Triage, TrustList, TrustedKey, Verdict, VerifiedTrustList};

fn claims(pass_id: u8, airport: &str, arrival: chrono::DateTime<Utc>) -> PassClaims {
    PassClaims {
        pass_id: [pass_id; 16],
        traveller_name: "Budi Santoso".into(),
        date_of_birth: NaiveDate::from_ymd_opt(1990, 1, 2).unwrap(),
        flight: "GA404".into(),
        arrival_airport: airport.into(),
        arrival_at: arrival,
        arrival_date: arrival.date_naive(),
        triage: Triage::Red,
    }
}

fn cose(pass: &str) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::ZlibDecoder::new(&base45::decode(&pass[4..]).unwrap()[..]).read_to_end(&mut out).unwrap();
    out
}

fn pack(cose: &[u8]) -> String {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(cose).unwrap();
    format!("EH1:{}", base45::encode(encoder.finish().unwrap()))
}

fn python_has_modules() {
    let check = Command::new("python3").args(["-c", "import cbor2, cryptography, base45"]).output();
    match check {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "the Python verifier needs cbor2, cryptography and base45: pip install -r tests/python/requirements.txt\n{}",
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("python3 is not on PATH ({e}); install Python 3 and pip install -r tests/python/requirements.txt"),
    }
}

#[test]
fn python_verifier_agrees_with_the_rust_verifier() {
    python_has_modules();
    let now = chrono::DurationRound::duration_trunc(Utc::now(), Duration::seconds(1)).unwrap();
    let arrival = now + Duration::hours(2);
    let root = RootKey::generate().unwrap();
    let key = IssuingKey::generate("ID-JK").unwrap();
    let mut list = TrustList::new(Duration::hours(24));
    list.add_key(TrustedKey::new(&key.public_key(), "ID-JK", now - Duration::days(30), now + Duration::days(30)).unwrap()).unwrap();
    let signer = Signer::new(&key, IssuePolicy::default());
    let issue = |id, airport| signer.issue(&claims(id, airport, arrival), now).unwrap();

    let valid = issue(1, "CGK");
    let revoked = issue(2, "CGK");
    list.revoke(&[2; 16], arrival + Duration::days(1));
    let bytes = list.sign(&root, now);

    let mut tampered = cose(&valid);
    let at = tampered.windows(5).position(|w| w == b"GA404").unwrap();
    tampered[at + 4] = b'5';
    let body = valid.len() - 4;
    let cut = (1..=3).find(|k| (body - k) % 3 == 1).unwrap();
    let mut corrupt = base45::decode(&valid[4..]).unwrap();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0x55;
    // The signature is the last item: bstr header 0x58 0x40, then 64 bytes. Make it 63.
    let mut short = cose(&valid);
    let header = short.len() - 66;
    assert_eq!(&short[header..header + 2], &[0x58, 0x40]);
    short[header + 1] = 63;
    short.pop();
    let past = now - Duration::days(3);
    let expired = signer.issue(&claims(3, "CGK", past), past - Duration::hours(3)).unwrap();
    let stranger = ehac_pass::issue(&IssuingKey::generate("ID-JK").unwrap(), &claims(4, "CGK", arrival), now).unwrap();

    let cases: Vec<(&str, String)> = vec![
        ("valid", valid.clone()),
        ("tampered payload", pack(&tampered)),
        ("wrong prefix", valid.replacen("EH1:", "HC1:", 1)),
        ("truncated Base45", valid[..valid.len() - cut].to_owned()),
        ("corrupt zlib", format!("EH1:{}", base45::encode(&corrupt))),
        ("decompression bomb", pack(&vec![0; 1 << 20])),
        ("63-byte signature", pack(&short)),
        ("unknown kid", stranger),
        ("expired", expired),
        ("revoked", revoked),
        ("wrong airport", issue(5, "DPS")),
    ];

    let dir = tempfile::tempdir().unwrap();
    let (trust_path, root_path) = (dir.path().join("trust-list.cose"), dir.path().join("root.pub.pem"));
    std::fs::write(&trust_path, &bytes).unwrap();
    std::fs::write(&root_path, root.public().to_pem()).unwrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/python/verify_pass.py");
    let out = Command::new("python3")
        .arg(script)
        .args(["--trust-list", trust_path.to_str().unwrap(), "--root-key", root_path.to_str().unwrap(), "--airport", "CGK"])
        .args(["--now", &now.to_rfc3339()])
        .args(cases.iter().map(|(_, pass)| pass))
        .output()
        .unwrap();
    assert!(out.status.success(), "verify_pass.py failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let python: Vec<String> = String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect();
    assert_eq!(python.len(), cases.len());

    let trust = VerifiedTrustList::load(&bytes, &[root.public()]).unwrap();
    for ((case, pass), python) in cases.iter().zip(&python) {
        let rust = match ehac_pass::verify(pass, &trust, "CGK", now) {
            Verdict::Accept(view) => format!("ACCEPT {}", view.traveller_name),
            Verdict::Reject { reason } => format!("REJECT {reason}"),
            Verdict::Degraded { reason, .. } => format!("DEGRADED {reason}"),
        };
        println!("{case:20} rust: {rust:28} python: {python}");
        assert_eq!(&rust, python, "{case}");
        if *case == "valid" {
            assert_eq!(python, "ACCEPT Budi Santoso");
        } else {
            assert!(python.starts_with("REJECT "), "{case}: {python}");
        }
    }
}
