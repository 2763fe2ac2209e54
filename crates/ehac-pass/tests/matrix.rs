//! The gate verifier's matrix: one test per row, each built so it fails if the check it names is
//! missing or misordered (the passes are real passes, bent in exactly one way).

use chrono::{Duration, NaiveDate};
use coset::cbor::Value;
use coset::{iana, CborSerializable, CoseSign1, HeaderBuilder, TaggedCborSerializable};
use ehac_pass::trust::TrustError;
use ehac_pass::*;
use p256::ecdsa::Signature;

mod common;
use common::*;

#[test]
fn valid_pass_is_accepted_with_the_officer_view() {
    let mut world = World::new();
    let pass = world.pass(1);
    match world.verify(&pass) {
        Verdict::Accept(view) => {
            assert_eq!(view.traveller_name, "Siti Nurhaliza binti Abdullah");
            assert_eq!(view.date_of_birth, NaiveDate::from_ymd_opt(1988, 3, 14).unwrap());
            assert_eq!(view.flight, "GA404");
            assert_eq!(view.arrival_airport, "CGK");
            assert_eq!(view.arrival_date, NaiveDate::from_ymd_opt(2026, 5, 1).unwrap());
            assert_eq!(view.triage, Triage::Yellow);
            assert_eq!(view.issuer, "ID-JK");
            assert_eq!(view.pass_id, hex::encode([1u8; 16]));
            assert_eq!(view.expires_at, arrival() + Duration::hours(24));
        }
        other => panic!("expected ACCEPT, got {other:?}"),
    }
}

#[test]
fn tampered_payload_is_bad_signature() {
    let mut world = World::new();
    let mut sign1 = open(&world.pass(1));
    let payload = sign1.payload.as_mut().unwrap();
    let at = payload.windows(5).position(|w| w == b"GA404").unwrap();
    payload[at + 4] = b'5';
    let tampered = pack(sign1);
    assert_eq!(rejected(&world.verify(&tampered)), Some(RejectReason::BadSignature));
}

#[test]
fn unknown_kid_is_rejected() {
    let mut world = World::new();
    let stranger = IssuingKey::generate("ID-JK").unwrap();
    let pass = issue(&stranger, &claims(1), issued()).unwrap();
    assert_eq!(rejected(&world.verify(&pass)), Some(RejectReason::UnknownKid));
}

#[test]
fn kid_moved_to_the_unprotected_header_is_rejected() {
    let mut world = World::new();
    let payload = open(&world.pass(1)).payload.unwrap();
    let protected = HeaderBuilder::new().algorithm(iana::Algorithm::ES256).build();
    let unprotected = HeaderBuilder::new().key_id(world.issuing.kid().0.to_vec()).build();
    let pass = resign(&world.issuing, payload.clone(), protected, unprotected.clone());
    assert_eq!(rejected(&world.verify(&pass)), Some(RejectReason::KidUnprotected));
    // In both headers: still the unprotected one is refused, not looked up.
    let both = HeaderBuilder::new().algorithm(iana::Algorithm::ES256).key_id(world.issuing.kid().0.to_vec()).build();
    let pass = resign(&world.issuing, payload, both, unprotected);
    assert_eq!(rejected(&world.verify(&pass)), Some(RejectReason::KidUnprotected));
}

#[test]
fn expired_pass_is_rejected() {
    let mut world = World::new();
    let pass = world.pass(1);
    let exp = arrival() + Duration::hours(24);
    let list = world.gate_list(exp - Duration::hours(1));
    assert!(matches!(verify(&pass, &list, "CGK", exp + Duration::minutes(4)), Verdict::Accept(_)), "within the clock tolerance");
    assert_eq!(rejected(&verify(&pass, &list, "CGK", exp + Duration::minutes(6))), Some(RejectReason::Expired));
}

#[test]
fn not_yet_valid_pass_is_rejected() {
    let mut world = World::new();
    let pass = world.pass(1);
    let list = world.gate_list(issued() - Duration::hours(1));
    assert!(matches!(verify(&pass, &list, "CGK", issued() - Duration::minutes(4)), Verdict::Accept(_)), "within the clock tolerance");
    assert_eq!(rejected(&verify(&pass, &list, "CGK", issued() - Duration::minutes(6))), Some(RejectReason::NotYetValid));
}

#[test]
fn twin_signature_with_n_minus_s_still_verifies() {
    // Guards the revocation test below: the twin must be a pass the gate would otherwise accept.
    let mut world = World::new();
    let pass = world.pass(1);
    assert!(matches!(world.verify(&twin(&pass)), Verdict::Accept(_)));
}

#[test]
fn revoked_pass_and_its_n_minus_s_twin_are_rejected() {
    let mut world = World::new();
    let pass = world.pass(7);
    let other = world.pass(8);
    let view = inspect_unverified(&pass).unwrap();
    world.list.revoke(&view.pass_id, view.view.expires_at);
    assert_eq!(rejected(&world.verify(&pass)), Some(RejectReason::Revoked));
    assert_eq!(rejected(&world.verify(&twin(&pass))), Some(RejectReason::Revoked));
    assert!(matches!(world.verify(&other), Verdict::Accept(_)), "only the revoked pass");
}

#[test]
fn truncated_base45_is_rejected() {
    let mut world = World::new();
    let pass = world.pass(1);
    // Cut to leave a dangling single character, which no Base45 text ends with.
    let body = pass.len() - 4;
    let cut = (1..=3).find(|k| (body - k) % 3 == 1).unwrap();
    assert_eq!(rejected(&world.verify(&pass[..pass.len() - cut])), Some(RejectReason::BadBase45));
    assert_eq!(rejected(&world.verify(&pass.to_lowercase().replacen("eh1:", "EH1:", 1))), Some(RejectReason::BadBase45));
    // "GGW" is 65535 + 1: a three-character group out of range.
    assert_eq!(rejected(&world.verify(&format!("{pass}GGW"))), Some(RejectReason::BadBase45));
    // Two trailing characters worth more than one byte (":" ":" = 44 + 44 * 45).
    assert_eq!(rejected(&world.verify(&format!("{pass}::"))), Some(RejectReason::BadBase45));
}

#[test]
fn corrupt_zlib_is_rejected() {
    let mut world = World::new();
    let pass = world.pass(1);
    let mut compressed = base45::decode(&pass[4..]).unwrap();
    let middle = compressed.len() / 2;
    compressed[middle] ^= 0x55;
    let corrupt = format!("EH1:{}", base45::encode(&compressed));
    assert_eq!(rejected(&world.verify(&corrupt)), Some(RejectReason::BadCompression));
    // Cut short by two bytes: valid Base45, truncated zlib stream.
    let whole = base45::decode(&pass[4..]).unwrap();
    let cut = format!("EH1:{}", base45::encode(&whole[..whole.len() - 2]));
    assert_eq!(rejected(&world.verify(&cut)), Some(RejectReason::BadCompression));
    // Not compressed at all.
    let raw = format!("EH1:{}", base45::encode(cose_bytes(&pass)));
    assert_eq!(rejected(&world.verify(&raw)), Some(RejectReason::BadCompression));
}

#[test]
fn decompression_bomb_is_rejected_within_the_size_cap() {
    let mut world = World::new();
    let bomb = pack_bytes(&vec![0u8; 1 << 20]);
    assert!(bomb.len() < ehac_pass::verify::MAX_PASS_CHARS, "the bomb must get past the length cap: {}", bomb.len());
    let list = world.gate_list(issued());
    let started = std::time::Instant::now();
    assert_eq!(rejected(&verify(&bomb, &list, "CGK", at_gate())), Some(RejectReason::TooLarge));
    // Inflating the whole megabyte takes milliseconds in a debug build; stopping at the cap, far less.
    assert!(started.elapsed() < std::time::Duration::from_millis(200), "took {:?}", started.elapsed());
}

#[test]
fn der_encoded_signature_is_rejected() {
    let mut world = World::new();
    let mut sign1 = open(&world.pass(1));
    sign1.signature = Signature::from_slice(&sign1.signature).unwrap().to_der().as_bytes().to_vec();
    assert_eq!(rejected(&world.verify(&pack(sign1))), Some(RejectReason::BadSignatureFormat));
}

#[test]
fn wrong_length_signature_is_rejected() {
    let mut world = World::new();
    for length in [0, 63, 65, 96] {
        let mut sign1 = open(&world.pass(1));
        sign1.signature.resize(length, 1);
        assert_eq!(rejected(&world.verify(&pack(sign1))), Some(RejectReason::BadSignatureFormat), "{length} bytes");
    }
}

#[test]
fn alg_none_is_rejected() {
    let mut world = World::new();
    let payload = open(&world.pass(1)).payload.unwrap();
    let kid = world.issuing.kid().0.to_vec();
    let absent = HeaderBuilder::new().key_id(kid.clone()).build();
    let pass = resign(&world.issuing, payload.clone(), absent, Default::default());
    assert_eq!(rejected(&world.verify(&pass)), Some(RejectReason::AlgorithmNotAllowed));
    let mut none = HeaderBuilder::new().key_id(kid.clone()).build();
    none.alg = Some(coset::RegisteredLabelWithPrivate::Text("none".into()));
    let pass = resign(&world.issuing, payload.clone(), none, Default::default());
    assert_eq!(rejected(&world.verify(&pass)), Some(RejectReason::AlgorithmNotAllowed));
    // ES256 protected, but an alg in the unprotected header too: ambiguous, refused.
    let protected = HeaderBuilder::new().algorithm(iana::Algorithm::ES256).key_id(kid).build();
    let unprotected = HeaderBuilder::new().algorithm(iana::Algorithm::ES256).build();
    let pass = resign(&world.issuing, payload, protected, unprotected);
    assert_eq!(rejected(&world.verify(&pass)), Some(RejectReason::AlgorithmNotAllowed));
}

#[test]
fn hs256_is_rejected() {
    let mut world = World::new();
    let mut sign1 = open(&world.pass(1));
    // An attacker's HMAC "keyed" with the public key: the classic confusion.
    sign1.protected = coset::ProtectedHeader {
        original_data: None,
        header: HeaderBuilder::new().algorithm(iana::Algorithm::HMAC_256_256).key_id(world.issuing.kid().0.to_vec()).build(),
    };
    sign1.signature = vec![0x42; 32];
    assert_eq!(rejected(&world.verify(&pack(sign1))), Some(RejectReason::AlgorithmNotAllowed));
}

#[test]
fn wrong_prefix_is_rejected() {
    let mut world = World::new();
    let pass = world.pass(1);
    for prefix in ["HC1:", "eh1:", "EH2:", ""] {
        let bent = format!("{prefix}{}", &pass[4..]);
        assert_eq!(rejected(&world.verify(&bent)), Some(RejectReason::BadPrefix), "{prefix:?}");
    }
    let too_long = format!("{pass}{}", "0".repeat(ehac_pass::verify::MAX_PASS_CHARS));
    assert_eq!(rejected(&world.verify(&too_long)), Some(RejectReason::TooLong));
}

#[test]
fn wrong_arrival_airport_is_rejected() {
    let mut world = World::new();
    let pass = world.pass(1);
    let list = world.gate_list(issued());
    assert_eq!(rejected(&verify(&pass, &list, "DPS", at_gate())), Some(RejectReason::WrongAirport));
    assert!(matches!(verify(&pass, &list, "cgk", at_gate()), Verdict::Accept(_)));
}

#[test]
fn pass_from_a_key_listed_for_another_region_is_wrong_issuer() {
    let mut world = World::new();
    let mut list = TrustList::new(Duration::hours(24));
    let public = world.issuing.public_key();
    list.add_key(TrustedKey::new(&public, "ID-BA", issued() - Duration::days(1), issued() + Duration::days(1)).unwrap()).unwrap();
    world.list = list;
    assert_eq!(rejected(&world.verify(&world.pass(1))), Some(RejectReason::WrongIssuer));
}

#[test]
fn trust_list_with_a_bad_signature_is_refused() {
    let mut world = World::new();
    let bytes = world.list.sign(&world.root, issued());
    let mut sign1 = CoseSign1::from_tagged_slice(&bytes).unwrap();
    let payload = sign1.payload.as_mut().unwrap();
    let at = payload.windows(5).position(|w| w == b"ID-JK").unwrap();
    payload[at + 3] = b'B';
    let forged = sign1.to_tagged_vec().unwrap();
    assert_eq!(VerifiedTrustList::load(&forged, &[world.root.public()]).unwrap_err(), TrustError::BadSignature);
    // Signed by a root the gate does not pin.
    let other_root = RootKey::generate().unwrap();
    let foreign = world.list.sign(&other_root, issued());
    assert!(matches!(VerifiedTrustList::load(&foreign, &[world.root.public()]), Err(TrustError::UnknownRoot(_))));
    // The genuine one loads.
    assert!(VerifiedTrustList::load(&bytes, &[other_root.public(), world.root.public()]).is_ok());
}

#[test]
fn stale_trust_list_is_degraded_and_never_accepts_an_unknown_kid() {
    let mut world = World::new();
    let pass = world.pass(1);
    let stranger = issue(&IssuingKey::generate("ID-JK").unwrap(), &claims(2), issued()).unwrap();
    // Signed two days before the gate reads it, with a 24-hour max age.
    let list = world.gate_list(at_gate() - Duration::hours(48));
    assert!(list.is_stale(at_gate()));
    assert_eq!(
        verify(&stranger, &list, "CGK", at_gate()),
        Verdict::Degraded { reason: DegradedReason::UnknownKidStaleTrustList, view: None }
    );
    match verify(&pass, &list, "CGK", at_gate()) {
        Verdict::Degraded { reason: DegradedReason::StaleTrustList, view: Some(view) } => assert_eq!(view.flight, "GA404"),
        other => panic!("expected DEGRADED with the view, got {other:?}"),
    }
    // Stale does not soften a failed check.
    assert_eq!(rejected(&verify(&pass, &list, "DPS", at_gate())), Some(RejectReason::WrongAirport));
}

#[test]
fn rotation_passes_of_old_and_new_key_both_accept_during_the_overlap() {
    let mut world = World::new();
    let old_pass = world.pass(1);
    let new_key = IssuingKey::generate("ID-JK").unwrap();
    world.list.add_key(trusted(&new_key)).unwrap();
    // The old key signs no more; its last pass expires a day after the last arrival it covered.
    let last_expiry = arrival() + Duration::hours(24);
    world.list.retire_key(world.issuing.kid(), last_expiry).unwrap();
    let new_pass = issue(&new_key, &claims(2), issued()).unwrap();
    assert!(matches!(world.verify(&old_pass), Verdict::Accept(_)));
    assert!(matches!(world.verify(&new_pass), Verdict::Accept(_)));
    // After the old key's last pass expired, purging drops it; the new key still works.
    let later = last_expiry + Duration::hours(1);
    assert_eq!(world.list.purge(later), (1, 0));
    let list = world.gate_list(later);
    assert_eq!(rejected(&verify(&old_pass, &list, "CGK", later)), Some(RejectReason::UnknownKid));
}

#[test]
fn compromised_key_removed_rejects_its_passes_at_once() {
    let mut world = World::new();
    let pass = world.pass(1);
    world.list.remove_key(world.issuing.kid()).unwrap();
    assert_eq!(rejected(&world.verify(&pass)), Some(RejectReason::UnknownKid));
}

#[test]
fn retired_key_past_its_valid_until_is_rejected() {
    let mut world = World::new();
    let pass = world.pass(1);
    world.list.retire_key(world.issuing.kid(), at_gate() - Duration::hours(1)).unwrap();
    assert_eq!(rejected(&world.verify(&pass)), Some(RejectReason::KeyNotValid));
}

#[test]
fn purge_drops_only_expired_revocations() {
    let mut list = TrustList::new(Duration::hours(24));
    list.revoke(&[1; 16], arrival());
    list.revoke(&[2; 16], arrival() + Duration::days(2));
    list.revoke(&[2; 16], arrival() + Duration::days(1));
    assert_eq!(list.revoked_passes.len(), 2);
    assert_eq!(list.purge(arrival() + Duration::hours(1)), (0, 1));
    assert_eq!(list.revoked_passes[0].pass_hash, hex::encode(pass_hash(&[2; 16])));
    assert_eq!(list.revoked_passes[0].expires, arrival() + Duration::days(2));
}

#[test]
fn extra_claims_or_tagless_cose_are_rejected() {
    let mut world = World::new();
    let pass = world.pass(1);
    // The COSE_Sign1 without its tag 18.
    let untagged = pack_bytes(&open(&pass).to_vec().unwrap());
    assert_eq!(rejected(&world.verify(&untagged)), Some(RejectReason::BadCbor));
    // Trailing bytes after the COSE object.
    let mut trailing = cose_bytes(&pass);
    trailing.push(0);
    assert_eq!(rejected(&world.verify(&pack_bytes(&trailing))), Some(RejectReason::BadCbor));
    // A correctly signed pass with an unknown claim in it.
    let mut claims: coset::cwt::ClaimsSet = CborSerializable::from_slice(&open(&pass).payload.unwrap()).unwrap();
    claims.rest.push((coset::cwt::ClaimName::PrivateUse(-70000), Value::Text("NIK 3171...".into())));
    let protected = HeaderBuilder::new().algorithm(iana::Algorithm::ES256).key_id(world.issuing.kid().0.to_vec()).build();
    let bent = resign(&world.issuing, claims.to_vec().unwrap(), protected, Default::default());
    assert_eq!(rejected(&world.verify(&bent)), Some(RejectReason::BadClaims));
}

#[test]
fn keys_round_trip_through_pem_and_jwk() {
    let key = IssuingKey::generate("ID-JK").unwrap();
    let from_jwk = IssuingKey::from_jwk(&key.to_jwk()).unwrap();
    let from_pem = IssuingKey::from_pkcs8_pem(&key.to_pkcs8_pem(), "ID-JK").unwrap();
    assert_eq!((from_jwk.kid(), from_jwk.region()), (key.kid(), "ID-JK"));
    assert_eq!(from_pem.kid(), key.kid());
    let mut jwk: serde_json::Value = serde_json::from_str(&key.to_jwk()).unwrap();
    jwk["kid"] = "0011223344556677".into();
    assert!(matches!(IssuingKey::from_jwk(&jwk.to_string()), Err(KeyError::KidMismatch { .. })));
    let root = RootKey::generate().unwrap();
    assert_eq!(RootPublicKey::parse(&root.public().to_pem()).unwrap(), root.public());
    assert_eq!(RootKey::parse(&root.to_pkcs8_pem()).unwrap().kid(), root.kid());
}

/// A list signed before a key was removed stays validly signed: a gate holding the newer list
/// must refuse it, or offering the old file would bring the compromised key back.
#[test]
fn an_older_trust_list_cannot_roll_back_a_removed_key() {
    let mut world = World::new();
    let pass = world.pass(1);
    let roots = [world.root.public()];
    let before_removal = world.list.sign(&world.root, issued());
    world.list.remove_key(world.issuing.kid()).unwrap();
    let after_removal = world.list.sign(&world.root, issued() + Duration::minutes(5));
    let installed = VerifiedTrustList::load(&after_removal, &roots).unwrap();
    assert!(matches!(installed.update(&before_removal, &roots), Err(TrustError::Rollback { installed: 2, offered: 1 })));
    assert!(matches!(installed.update(&after_removal, &roots), Err(TrustError::NotNewer(2))));
    assert_eq!(rejected(&verify(&pass, &installed, "CGK", at_gate())), Some(RejectReason::UnknownKid));

    // Forward is fine, and the newer list is what the gate then judges by.
    let old = VerifiedTrustList::load(&before_removal, &roots).unwrap();
    assert!(matches!(verify(&pass, &old, "CGK", at_gate()), Verdict::Accept(_)));
    let updated = old.update(&after_removal, &roots).unwrap();
    assert_eq!(updated.list().version, 2);
    assert_eq!(rejected(&verify(&pass, &updated, "CGK", at_gate())), Some(RejectReason::UnknownKid));
}
