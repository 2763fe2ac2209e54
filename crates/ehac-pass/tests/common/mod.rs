//! Taking a pass apart and putting it back together, to bend it in one way: shared by the
//! matrix and the vectors written for the other verifiers.

#![allow(dead_code)]

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use coset::{CoseSign1, TaggedCborSerializable};
use ehac_pass::*;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey;

pub fn arrival() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 5, 1, 10, 0, 0).unwrap()
}

/// When the gateway issued the passes: three hours before arrival.
pub fn issued() -> DateTime<Utc> {
    arrival() - Duration::hours(3)
}

/// At the gate, just after landing.
pub fn at_gate() -> DateTime<Utc> {
    arrival() + Duration::minutes(20)
}

pub fn claims(pass_id: u8) -> PassClaims {
    PassClaims {
        pass_id: [pass_id; 16],
        traveller_name: "Siti Nurhaliza binti Abdullah".into(),
        date_of_birth: NaiveDate::from_ymd_opt(1988, 3, 14).unwrap(),
        flight: "GA404".into(),
        arrival_airport: "CGK".into(),
        arrival_at: arrival(),
        arrival_date: NaiveDate::from_ymd_opt(2026, 5, 1).unwrap(),
        triage: Triage::Yellow,
    }
}

pub struct World {
    pub root: RootKey,
    pub issuing: IssuingKey,
    pub list: TrustList,
}

impl World {
    pub fn new() -> World {
        let root = RootKey::generate().unwrap();
        let issuing = IssuingKey::generate("ID-JK").unwrap();
        let mut list = TrustList::new(Duration::hours(24));
        list.add_key(trusted(&issuing)).unwrap();
        World { root, issuing, list }
    }

    /// The list as a gate holds it, signed `signed_at`.
    pub fn gate_list(&mut self, signed_at: DateTime<Utc>) -> VerifiedTrustList {
        let bytes = self.list.sign(&self.root, signed_at);
        VerifiedTrustList::load(&bytes, &[self.root.public()]).unwrap()
    }

    pub fn pass(&self, pass_id: u8) -> String {
        issue(&self.issuing, &claims(pass_id), issued()).unwrap()
    }

    pub fn verify(&mut self, pass: &str) -> Verdict {
        let list = self.gate_list(issued());
        verify(pass, &list, "CGK", at_gate())
    }
}

pub fn trusted(key: &IssuingKey) -> TrustedKey {
    TrustedKey::new(&key.public_key(), key.region(), issued() - Duration::days(30), issued() + Duration::days(365)).unwrap()
}

pub fn rejected(verdict: &Verdict) -> Option<RejectReason> {
    match verdict {
        Verdict::Reject { reason } => Some(*reason),
        _ => None,
    }
}

pub fn cose_bytes(pass: &str) -> Vec<u8> {
    let compressed = base45::decode(pass.strip_prefix("EH1:").unwrap()).unwrap();
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::ZlibDecoder::new(&compressed[..]), &mut out).unwrap();
    out
}

pub fn pack_bytes(cose: &[u8]) -> String {
    let mut encoder = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    std::io::Write::write_all(&mut encoder, cose).unwrap();
    format!("EH1:{}", base45::encode(encoder.finish().unwrap()))
}

pub fn open(pass: &str) -> CoseSign1 {
    CoseSign1::from_tagged_slice(&cose_bytes(pass)).unwrap()
}

pub fn pack(sign1: CoseSign1) -> String {
    pack_bytes(&sign1.to_tagged_vec().unwrap())
}

pub fn signing_key(key: &IssuingKey) -> SigningKey {
    SigningKey::from_pkcs8_pem(&key.to_pkcs8_pem()).unwrap()
}

/// A correctly signed pass with headers of our choosing: only the header check can stop it.
pub fn resign(key: &IssuingKey, payload: Vec<u8>, protected: coset::Header, unprotected: coset::Header) -> String {
    let signer = signing_key(key);
    let sign1 = coset::CoseSign1Builder::new()
        .protected(protected)
        .unprotected(unprotected)
        .payload(payload)
        .create_signature(b"", |data| {
            let signature: Signature = signer.sign(data);
            signature.to_bytes().to_vec()
        })
        .build();
    pack(sign1)
}

/// The same payload and protected header with the other valid signature, (r, n - s).
pub fn twin(pass: &str) -> String {
    let mut sign1 = open(pass);
    let signature = Signature::from_slice(&sign1.signature).unwrap();
    let (r, s) = signature.split_scalars();
    let twin = Signature::from_scalars(r.to_bytes(), (-*s).to_bytes()).unwrap();
    assert_ne!(twin.to_bytes().to_vec(), sign1.signature);
    sign1.signature = twin.to_bytes().to_vec();
    pack(sign1)
}
