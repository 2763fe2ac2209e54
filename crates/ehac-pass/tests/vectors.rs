//! The shared test vectors: every row of the matrix, plus the bends a second implementation
//! tends to get wrong, written as JSON for the other verifiers (the gate app in web/gate judges
//! each one under Node and in Chromium and must give the same verdict). Keys and signatures are
//! deterministic (fixed secrets, RFC 6979) so the file only changes when a verdict or the
//! format does. This test fails if the committed file is out of date; regenerate it with
//! `EHAC_UPDATE_VECTORS=1 cargo test -p ehac-pass --test vectors`.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use coset::{iana, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable};
use ehac_pass::trust::TrustError;
use ehac_pass::*;
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePrivateKey, LineEnding};
use serde_json::{json, Value};

mod common;
use common::*;

const VECTORS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vectors.json");

fn fixed_secret(byte: u8) -> String {
    p256::SecretKey::from_slice(&[byte; 32]).unwrap().to_pkcs8_pem(LineEnding::LF).unwrap().to_string()
}

fn issuing_key(byte: u8, region: &str) -> IssuingKey {
    IssuingKey::from_pkcs8_pem(&fixed_secret(byte), region).unwrap()
}

fn root_key(byte: u8) -> RootKey {
    RootKey::parse(&fixed_secret(byte)).unwrap()
}

// Raw CBOR, for bends coset will not write (duplicate keys, indefinite lengths, odd integers).

fn head(major: u8, argument: u64) -> Vec<u8> {
    let major = major << 5;
    match argument {
        0..=23 => vec![major | argument as u8],
        24..=0xff => vec![major | 24, argument as u8],
        0x100..=0xffff => [vec![major | 25], (argument as u16).to_be_bytes().to_vec()].concat(),
        _ => [vec![major | 26], (argument as u32).to_be_bytes().to_vec()].concat(),
    }
}

fn bstr(bytes: &[u8]) -> Vec<u8> {
    [head(2, bytes.len() as u64), bytes.to_vec()].concat()
}

fn sig_structure(protected: &[u8], payload: &[u8]) -> Vec<u8> {
    [vec![0x84, 0x6a], b"Signature1".to_vec(), bstr(protected), vec![0x40], bstr(payload)].concat()
}

fn sign(key: &IssuingKey, data: &[u8]) -> Vec<u8> {
    let signature: Signature = signing_key(key).sign(data);
    signature.to_bytes().to_vec()
}

/// `18([protected, unprotected, payload, signature])` from already-encoded items.
fn sign1_items(protected: &[u8], unprotected: &[u8], payload: &[u8], signature: &[u8]) -> Vec<u8> {
    [vec![0xd2, 0x84], protected.to_vec(), unprotected.to_vec(), payload.to_vec(), bstr(signature)].concat()
}

/// The protected header `{1: -7, 4: kid}` as the issuer writes it.
fn es256_header(key: &IssuingKey) -> Vec<u8> {
    [vec![0xa2, 0x01, 0x26, 0x04], bstr(&key.kid().0)].concat()
}

/// A correctly signed COSE_Sign1 over raw protected-header and payload bytes.
fn signed(key: &IssuingKey, protected: &[u8], payload: &[u8]) -> Vec<u8> {
    let signature = sign(key, &sig_structure(protected, payload));
    sign1_items(&bstr(protected), &[0xa0], &bstr(payload), &signature)
}

/// Stored-block zlib (as the issuer writes), Base45 and the prefix: independent of the
/// compressor's version, so the file does not change with it.
fn pack_stored(cose: &[u8]) -> String {
    format!("EH1:{}", base45::encode(ehac_pass::issue_stages::zlib(cose)))
}

fn payload_of(key: &IssuingKey, pass_id: u8) -> Vec<u8> {
    open(&issue(key, &claims(pass_id), issued()).unwrap()).payload.unwrap()
}

/// A valid pass with a deterministic signature.
fn pass_of(key: &IssuingKey, pass_id: u8) -> String {
    pack_stored(&signed(key, &es256_header(key), &payload_of(key, pass_id)))
}

fn trust_error_code(error: &TrustError) -> &'static str {
    match error {
        TrustError::Envelope => "envelope",
        TrustError::UnknownRoot(_) => "unknown_root",
        TrustError::BadSignature => "bad_signature",
        TrustError::TooLarge => "too_large",
        TrustError::Json(_) => "json",
        TrustError::Entry(..) => "entry",
        TrustError::DuplicateKey(_) => "duplicate_key",
        TrustError::NoSuchKey(_) => "no_such_key",
        TrustError::Rollback { .. } => "rollback",
        TrustError::NotNewer(_) => "not_newer",
    }
}

struct Vectors {
    roots: BTreeMap<&'static str, RootKey>,
    lists: BTreeMap<&'static str, Vec<u8>>,
    passes: Vec<Value>,
    updates: Vec<Value>,
}

impl Vectors {
    fn list(&mut self, name: &'static str, bytes: Vec<u8>) {
        assert!(self.lists.insert(name, bytes).is_none(), "list {name} named twice");
    }

    /// Judges `pass` with ehac_pass and records the verdict, which must carry `expected` (the
    /// reason code, or ACCEPT): the file is generated, but each case says what it is for.
    fn case(&mut self, name: &str, pass: &str, list: &str, now: DateTime<Utc>, airport: &str, expected: &str) {
        let verified = VerifiedTrustList::load(&self.lists[list], &[self.roots["root"].public()]).unwrap();
        let verdict = verify(pass, &verified, airport, now);
        let got = match &verdict {
            Verdict::Accept(_) => "ACCEPT".to_owned(),
            Verdict::Reject { reason } => reason.code().to_owned(),
            Verdict::Degraded { reason, .. } => reason.code().to_owned(),
        };
        assert_eq!(got, expected, "case {name}");
        assert!(!self.passes.iter().any(|c| c["name"] == name), "case {name} named twice");
        self.passes.push(json!({
            "name": name,
            "pass": pass,
            "trust_list": list,
            "roots": ["root"],
            "now": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "airport": airport,
            "expected": serde_json::to_value(&verdict).unwrap(),
        }));
    }

    /// A list offered to a gate holding `installed` (none: a first install).
    fn update(&mut self, name: &str, installed: Option<&str>, offered: &str, roots: &[&str], expected: &str) {
        let pinned: Vec<RootPublicKey> = roots.iter().map(|r| self.roots[r].public()).collect();
        let result = match installed {
            None => VerifiedTrustList::load(&self.lists[offered], &pinned),
            Some(installed) => VerifiedTrustList::load(&self.lists[installed], &pinned).unwrap().update(&self.lists[offered], &pinned),
        };
        let outcome = match &result {
            Ok(list) => json!({ "installed": list.list().version }),
            Err(error) => json!({ "refused": trust_error_code(error) }),
        };
        let got = match &result {
            Ok(_) => "installed",
            Err(error) => trust_error_code(error),
        };
        assert_eq!(got, expected, "update {name}");
        self.updates.push(json!({ "name": name, "installed": installed, "offered": offered, "roots": roots, "expected": outcome }));
    }

    fn to_json(&self) -> String {
        let b64 = |bytes: &[u8]| base64_encode(bytes);
        let document = json!({
            "about": "Written by crates/ehac-pass/tests/vectors.rs (EHAC_UPDATE_VECTORS=1 to regenerate). Trust lists are Base64 (standard, padded) COSE_Sign1 files; roots are SPKI PEM; now is the gate's clock; expected is ehac_pass::verify's verdict as JSON.",
            "roots": self.roots.iter().map(|(name, key)| (name.to_string(), json!(key.public().to_pem()))).collect::<serde_json::Map<_, _>>(),
            "trust_lists": self.lists.iter().map(|(name, bytes)| (name.to_string(), json!(b64(bytes)))).collect::<serde_json::Map<_, _>>(),
            "passes": self.passes,
            "trust_list_updates": self.updates,
        });
        serde_json::to_string_pretty(&document).unwrap() + "\n"
    }
}

fn base64_encode(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = (u32::from(chunk[0]) << 16) | (u32::from(*chunk.get(1).unwrap_or(&0)) << 8) | u32::from(*chunk.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A root-signed list whose JSON is given as is (for bent lists the library will not write).
fn sign_list_json(root_secret: &str, root: &RootKey, json: &str) -> Vec<u8> {
    use p256::pkcs8::DecodePrivateKey;
    let signer = SigningKey::from_pkcs8_pem(root_secret).unwrap();
    let protected = HeaderBuilder::new()
        .algorithm(iana::Algorithm::ES256)
        .key_id(root.kid().0.to_vec())
        .content_type("application/json".into())
        .build();
    TaggedCborSerializable::to_tagged_vec(
        CoseSign1Builder::new()
            .protected(protected)
            .payload(json.as_bytes().to_vec())
            .create_signature(b"", |data| {
                let signature: Signature = signer.sign(data);
                signature.to_bytes().to_vec()
            })
            .build(),
    )
    .unwrap()
}

fn build() -> Vectors {
    let root = root_key(0x01);
    let other_root = root_key(0x02);
    let issuing = issuing_key(0x11, "ID-JK");
    let stranger = issuing_key(0x12, "ID-JK");
    let new_key = issuing_key(0x13, "ID-JK");
    let mut v = Vectors { roots: BTreeMap::new(), lists: BTreeMap::new(), passes: Vec::new(), updates: Vec::new() };
    v.roots.insert("root", root.clone());
    v.roots.insert("other_root", other_root.clone());

    let mut list = TrustList::new(Duration::hours(24));
    list.add_key(trusted(&issuing)).unwrap();
    v.list("current", list.clone().sign(&root, issued()));
    v.list("stale", list.clone().sign(&root, at_gate() - Duration::hours(48)));
    let exp = arrival() + Duration::hours(24);
    v.list("current_before_expiry", list.clone().sign(&root, exp - Duration::hours(1)));
    v.list("current_before_issue", list.clone().sign(&root, issued() - Duration::hours(1)));
    let mut revoked = list.clone();
    revoked.revoke(&[7; 16], exp);
    v.list("revoked", revoked.sign(&root, issued()));
    let mut removed = list.clone();
    removed.remove_key(issuing.kid()).unwrap();
    v.list("removed", removed.sign(&root, issued()));
    let mut retired = list.clone();
    retired.retire_key(issuing.kid(), at_gate() - Duration::hours(1)).unwrap();
    v.list("retired", retired.sign(&root, issued()));
    let mut other_region = TrustList::new(Duration::hours(24));
    other_region
        .add_key(TrustedKey::new(&issuing.public_key(), "ID-BA", issued() - Duration::days(1), issued() + Duration::days(1)).unwrap())
        .unwrap();
    v.list("other_region", other_region.sign(&root, issued()));
    let mut rotation = list.clone();
    rotation.add_key(trusted(&new_key)).unwrap();
    rotation.retire_key(issuing.kid(), exp).unwrap();
    v.list("rotation", rotation.clone().sign(&root, issued()));
    let later = exp + Duration::hours(1);
    rotation.purge(later);
    v.list("rotation_purged", rotation.sign(&root, later));

    let now = at_gate();
    let pass = pass_of(&issuing, 1);
    let payload = payload_of(&issuing, 1);
    let header = es256_header(&issuing);
    // The valid pass's header and payload under a signature of our choosing.
    let with_signature = |signature: &[u8]| pack_stored(&sign1_items(&bstr(&header), &[0xa0], &bstr(&payload), signature));

    // The matrix's rows.
    v.case("valid", &pass, "current", now, "CGK", "ACCEPT");
    v.case("valid_airport_lower_case", &pass, "current", now, "cgk", "ACCEPT");
    v.case("wrong_airport", &pass, "current", now, "DPS", "wrong_airport");
    let mut dps = claims(4);
    dps.arrival_airport = "DPS".into();
    let dps_payload = open(&issue(&issuing, &dps, issued()).unwrap()).payload.unwrap();
    v.case("pass_for_another_airport", &pack_stored(&signed(&issuing, &header, &dps_payload)), "current", now, "CGK", "wrong_airport");
    let mut tampered = payload.clone();
    let at = tampered.windows(5).position(|w| w == b"GA404").unwrap();
    tampered[at + 4] = b'5';
    let signature = sign(&issuing, &sig_structure(&header, &payload));
    v.case(
        "tampered_payload",
        &pack_stored(&sign1_items(&bstr(&header), &[0xa0], &bstr(&tampered), &signature)),
        "current",
        now,
        "CGK",
        "bad_signature",
    );
    v.case("unknown_kid", &pass_of(&stranger, 1), "current", now, "CGK", "unknown_kid");
    let unprotected_kid = [vec![0xa1, 0x04], bstr(&issuing.kid().0)].concat();
    let alg_only = [0xa1, 0x01, 0x26];
    let signature = sign(&issuing, &sig_structure(&alg_only, &payload));
    v.case(
        "kid_unprotected",
        &pack_stored(&sign1_items(&bstr(&alg_only), &unprotected_kid, &bstr(&payload), &signature)),
        "current",
        now,
        "CGK",
        "kid_unprotected",
    );
    let signature = sign(&issuing, &sig_structure(&header, &payload));
    v.case(
        "kid_in_both_headers",
        &pack_stored(&sign1_items(&bstr(&header), &unprotected_kid, &bstr(&payload), &signature)),
        "current",
        now,
        "CGK",
        "kid_unprotected",
    );
    v.case("kid_missing", &pack_stored(&signed(&issuing, &alg_only, &payload)), "current", now, "CGK", "kid_missing");
    v.case("expired_within_tolerance", &pass, "current_before_expiry", exp + Duration::minutes(4), "CGK", "ACCEPT");
    v.case("expired", &pass, "current_before_expiry", exp + Duration::minutes(6), "CGK", "expired");
    v.case("not_yet_valid_within_tolerance", &pass, "current_before_issue", issued() - Duration::minutes(4), "CGK", "ACCEPT");
    v.case("not_yet_valid", &pass, "current_before_issue", issued() - Duration::minutes(6), "CGK", "not_yet_valid");
    v.case("n_minus_s_twin", &twin(&pass), "current", now, "CGK", "ACCEPT");
    let revoked_pass = pass_of(&issuing, 7);
    v.case("revoked", &revoked_pass, "revoked", now, "CGK", "revoked");
    v.case("revoked_n_minus_s_twin", &twin(&revoked_pass), "revoked", now, "CGK", "revoked");
    v.case("not_revoked_on_a_list_with_revocations", &pass_of(&issuing, 8), "revoked", now, "CGK", "ACCEPT");
    let body = pass.len() - 4;
    let cut = (1..=3).find(|k| (body - k) % 3 == 1).unwrap();
    v.case("base45_dangling_character", &pass[..pass.len() - cut], "current", now, "CGK", "bad_base45");
    v.case("base45_lower_case", &pass.to_lowercase().replacen("eh1:", "EH1:", 1), "current", now, "CGK", "bad_base45");
    v.case("base45_group_above_65535", &format!("{pass}GGW"), "current", now, "CGK", "bad_base45");
    v.case("base45_pair_above_255", &format!("{pass}::"), "current", now, "CGK", "bad_base45");
    let compressed = base45::decode(&pass[4..]).unwrap();
    let mut corrupt = compressed.clone();
    let middle = corrupt.len() / 2;
    corrupt[middle] ^= 0x55;
    v.case("zlib_corrupt", &format!("EH1:{}", base45::encode(&corrupt)), "current", now, "CGK", "bad_compression");
    v.case(
        "zlib_cut_short",
        &format!("EH1:{}", base45::encode(&compressed[..compressed.len() - 2])),
        "current",
        now,
        "CGK",
        "bad_compression",
    );
    let cose = cose_bytes(&pass);
    v.case("not_compressed", &format!("EH1:{}", base45::encode(&cose)), "current", now, "CGK", "bad_compression");
    v.case("decompression_bomb", &pack_bytes(&vec![0u8; 1 << 20]), "current", now, "CGK", "too_large");
    v.case("inflates_to_one_byte_over_the_cap", &pack_bytes(&vec![0u8; 4097]), "current", now, "CGK", "too_large");
    let der = Signature::from_slice(&sign(&issuing, &sig_structure(&header, &payload))).unwrap().to_der().as_bytes().to_vec();
    v.case("signature_der", &with_signature(&der), "current", now, "CGK", "bad_signature_format");
    for length in [0, 63, 65, 96] {
        let mut signature = sign(&issuing, &sig_structure(&header, &payload));
        signature.resize(length, 1);
        let name = format!("signature_{length}_bytes");
        v.case(&name, &with_signature(&signature), "current", now, "CGK", "bad_signature_format");
    }
    let kid_only = [vec![0xa1, 0x04], bstr(&issuing.kid().0)].concat();
    v.case("alg_absent", &pack_stored(&signed(&issuing, &kid_only, &payload)), "current", now, "CGK", "algorithm_not_allowed");
    let alg_none = [vec![0xa2, 0x01, 0x64], b"none".to_vec(), vec![0x04], bstr(&issuing.kid().0)].concat();
    v.case("alg_none", &pack_stored(&signed(&issuing, &alg_none, &payload)), "current", now, "CGK", "algorithm_not_allowed");
    let signature = sign(&issuing, &sig_structure(&header, &payload));
    v.case(
        "alg_also_unprotected",
        &pack_stored(&sign1_items(&bstr(&header), &[0xa1, 0x01, 0x26], &bstr(&payload), &signature)),
        "current",
        now,
        "CGK",
        "algorithm_not_allowed",
    );
    // HMAC 256/256 is COSE algorithm 5.
    let hs256 = [vec![0xa2, 0x01, 0x05, 0x04], bstr(&issuing.kid().0)].concat();
    v.case(
        "alg_hs256",
        &pack_stored(&sign1_items(&bstr(&hs256), &[0xa0], &bstr(&payload), &[0x42; 32])),
        "current",
        now,
        "CGK",
        "algorithm_not_allowed",
    );
    for prefix in ["HC1:", "eh1:", "EH2:", ""] {
        let name = format!("prefix_{}", if prefix.is_empty() { "none".to_owned() } else { prefix.trim_end_matches(':').to_owned() });
        v.case(&name, &format!("{prefix}{}", &pass[4..]), "current", now, "CGK", "bad_prefix");
    }
    v.case("too_long", &format!("{pass}{}", "0".repeat(ehac_pass::verify::MAX_PASS_CHARS)), "current", now, "CGK", "too_long");
    v.case("wrong_issuer", &pass, "other_region", now, "CGK", "wrong_issuer");
    v.case("stale_list_unknown_kid", &pass_of(&stranger, 2), "stale", now, "CGK", "unknown_kid_stale_trust_list");
    v.case("stale_list", &pass, "stale", now, "CGK", "stale_trust_list");
    v.case("stale_list_wrong_airport", &pass, "stale", now, "DPS", "wrong_airport");
    v.case("rotation_old_key", &pass, "rotation", now, "CGK", "ACCEPT");
    v.case("rotation_new_key", &pass_of(&new_key, 2), "rotation", now, "CGK", "ACCEPT");
    v.case("rotation_old_key_after_purge", &pass, "rotation_purged", later, "CGK", "unknown_kid");
    v.case("removed_key", &pass, "removed", now, "CGK", "unknown_kid");
    v.case("retired_key", &pass, "retired", now, "CGK", "key_not_valid");
    v.case("cose_untagged", &pack_stored(&cose[1..]), "current", now, "CGK", "bad_cbor");
    v.case("cose_trailing_byte", &pack_stored(&[cose.clone(), vec![0]].concat()), "current", now, "CGK", "bad_cbor");
    let mut extra: Vec<u8> = payload.clone();
    // One more claim: the map's count goes from 6 to 7, and -70000 => "NIK 3171..." follows.
    extra[0] = 0xa7;
    extra.extend([vec![0x3a], 69_999u32.to_be_bytes().to_vec(), vec![0x6b], b"NIK 3171...".to_vec()].concat());
    v.case("unknown_claim", &pack_stored(&signed(&issuing, &header, &extra)), "current", now, "CGK", "bad_claims");

    // What a second implementation tends to get wrong.
    v.case(
        "zlib_trailing_bytes",
        &format!("EH1:{}", base45::encode([compressed.clone(), vec![0, 0]].concat())),
        "current",
        now,
        "CGK",
        "bad_compression",
    );
    let mut bad_adler = compressed.clone();
    let last = bad_adler.len() - 1;
    bad_adler[last] ^= 1;
    v.case("zlib_bad_checksum", &format!("EH1:{}", base45::encode(&bad_adler)), "current", now, "CGK", "bad_compression");
    v.case("zlib_deflated_not_stored", &pack_bytes(&cose), "current", now, "CGK", "ACCEPT");
    v.case("base45_trailing_newline", &format!("{pass}\n"), "current", now, "CGK", "bad_base45");
    v.case("base45_space_inside", &format!("{} {}", &pass[..20], &pass[20..]), "current", now, "CGK", "bad_base45");
    v.case("empty_after_prefix", "EH1:", "current", now, "CGK", "bad_compression");
    let mut zero_s = sign(&issuing, &sig_structure(&header, &payload));
    zero_s[32..].fill(0);
    v.case("signature_s_zero", &with_signature(&zero_s), "current", now, "CGK", "bad_signature_format");
    let mut s_is_n = sign(&issuing, &sig_structure(&header, &payload));
    s_is_n[32..].copy_from_slice(&hex_bytes("ffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551"));
    v.case("signature_s_equals_n", &with_signature(&s_is_n), "current", now, "CGK", "bad_signature_format");
    let mut flipped = sign(&issuing, &sig_structure(&header, &payload));
    flipped[40] ^= 1;
    v.case("signature_one_bit_off", &with_signature(&flipped), "current", now, "CGK", "bad_signature");
    let duplicate_alg = [vec![0xa3, 0x01, 0x26, 0x01, 0x26, 0x04], bstr(&issuing.kid().0)].concat();
    v.case("protected_header_duplicate_key", &pack_stored(&signed(&issuing, &duplicate_alg, &payload)), "current", now, "CGK", "bad_cbor");
    // {1: -7} written with a one-byte argument for 6: valid CBOR, not preferred, and signed so.
    let long_alg = [vec![0xa2, 0x01, 0x38, 0x06, 0x04], bstr(&issuing.kid().0)].concat();
    v.case("protected_header_non_preferred_integer", &pack_stored(&signed(&issuing, &long_alg, &payload)), "current", now, "CGK", "ACCEPT");
    let indefinite_header = [vec![0xbf, 0x01, 0x26, 0x04], bstr(&issuing.kid().0), vec![0xff]].concat();
    v.case(
        "protected_header_indefinite_map",
        &pack_stored(&signed(&issuing, &indefinite_header, &payload)),
        "current",
        now,
        "CGK",
        "ACCEPT",
    );
    let signature = sign(&issuing, &sig_structure(&header, &payload));
    let indefinite_array = [vec![0xd2, 0x9f], bstr(&header), vec![0xa0], bstr(&payload), bstr(&signature), vec![0xff]].concat();
    v.case("cose_indefinite_array", &pack_stored(&indefinite_array), "current", now, "CGK", "ACCEPT");
    let half = payload.len() / 2;
    let chunked_payload = [vec![0x5f], bstr(&payload[..half]), bstr(&payload[half..]), vec![0xff]].concat();
    v.case(
        "payload_indefinite_bytes",
        &pack_stored(&sign1_items(&bstr(&header), &[0xa0], &chunked_payload, &signature)),
        "current",
        now,
        "CGK",
        "ACCEPT",
    );
    v.case("payload_detached", &pack_stored(&sign1_items(&bstr(&header), &[0xa0], &[0xf6], &signature)), "current", now, "CGK", "bad_cbor");
    v.case("cose_other_tag", &pack_stored(&[vec![0xd8, 0x62], cose[1..].to_vec()].concat()), "current", now, "CGK", "bad_cbor");
    v.case(
        "cose_three_items",
        &pack_stored(&[vec![0xd2, 0x83], bstr(&header), vec![0xa0], bstr(&payload)].concat()),
        "current",
        now,
        "CGK",
        "bad_cbor",
    );
    v.case(
        "unprotected_unknown_label",
        &pack_stored(&sign1_items(&bstr(&header), &[0xa1, 0x18, 0x63, 0x61, b'x'], &bstr(&payload), &signature)),
        "current",
        now,
        "CGK",
        "ACCEPT",
    );
    let short_kid = [vec![0xa2, 0x01, 0x26, 0x04], bstr(&issuing.kid().0[..7])].concat();
    v.case("kid_seven_bytes", &pack_stored(&signed(&issuing, &short_kid, &payload)), "current", now, "CGK", "unknown_kid");
    let rewrite = |from: &[u8], to: &[u8]| {
        let at = payload.windows(from.len()).position(|w| w == from).unwrap();
        [&payload[..at], to, &payload[at + from.len()..]].concat()
    };
    // A second "n" in place of "t" (the triage): the e-HAC map with a duplicate key.
    let duplicate_field = rewrite(b"\x61t\x66yellow", b"\x61n\x66yellow");
    v.case("claims_duplicate_field", &pack_stored(&signed(&issuing, &header, &duplicate_field)), "current", now, "CGK", "bad_claims");
    // iss written twice, as the first and the second claim (exp dropped to keep the count).
    let iss = [vec![0x01, 0x65], b"ID-JK".to_vec()].concat();
    let at = payload.windows(iss.len()).position(|w| w == iss).unwrap();
    let exp_item_len = 1 + 5; // 0x04, then a 32-bit unsigned
    let duplicate_claim = [&payload[..at + iss.len()], &iss[..], &payload[at + iss.len() + exp_item_len..]].concat();
    v.case("claims_duplicate_key", &pack_stored(&signed(&issuing, &header, &duplicate_claim)), "current", now, "CGK", "bad_claims");
    let version_two = rewrite(b"\x61v\x01", b"\x61v\x02");
    v.case("claims_version_2", &pack_stored(&signed(&issuing, &header, &version_two)), "current", now, "CGK", "bad_claims");
    let mut indefinite_claims = vec![0xbf];
    indefinite_claims.extend(&payload[1..]);
    indefinite_claims.push(0xff);
    v.case("claims_indefinite_map", &pack_stored(&signed(&issuing, &header, &indefinite_claims)), "current", now, "CGK", "ACCEPT");
    let fractional_exp = {
        let at = payload.windows(2).position(|w| w == [0x04, 0x1a]).unwrap();
        let seconds = u32::from_be_bytes(payload[at + 2..at + 6].try_into().unwrap());
        let float = [vec![0x04, 0xfb], (f64::from(seconds) + 0.5).to_be_bytes().to_vec()].concat();
        [&payload[..at], &float[..], &payload[at + 6..]].concat()
    };
    v.case("claims_fractional_exp", &pack_stored(&signed(&issuing, &header, &fractional_exp)), "current", now, "CGK", "bad_claims");
    let bad_triage = rewrite(b"\x61t\x66yellow", b"\x61t\x66purple");
    v.case("claims_unknown_triage", &pack_stored(&signed(&issuing, &header, &bad_triage)), "current", now, "CGK", "bad_claims");
    let bad_date = rewrite(b"1988-03-14", b"1988-02-30");
    v.case("claims_impossible_date", &pack_stored(&signed(&issuing, &header, &bad_date)), "current", now, "CGK", "bad_claims");

    let padless_date = rewrite(b"\x6a1988-03-14", b"\x691988-3-14");
    v.case("claims_date_without_zero_padding", &pack_stored(&signed(&issuing, &header, &padless_date)), "current", now, "CGK", "ACCEPT");
    let signed_year = rewrite(b"\x6a1988-03-14", b"\x6b+1988-03-14");
    v.case("claims_date_with_a_sign", &pack_stored(&signed(&issuing, &header, &signed_year)), "current", now, "CGK", "ACCEPT");
    let lower_airport = rewrite(b"\x62ap\x63CGK", b"\x62ap\x63cgk");
    v.case("claims_airport_lower_case", &pack_stored(&signed(&issuing, &header, &lower_airport)), "current", now, "CGK", "ACCEPT");
    v.case("gate_airport_with_spaces", &pass, "current", now, " CGK ", "ACCEPT");
    let accented = rewrite(b"Siti", "S\u{ec}t".as_bytes());
    v.case("claims_name_not_ascii", &pack_stored(&signed(&issuing, &header, &accented)), "current", now, "CGK", "ACCEPT");
    let not_utf8 = rewrite(b"Siti", b"\xffiti");
    v.case("claims_name_not_utf8", &pack_stored(&signed(&issuing, &header, &not_utf8)), "current", now, "CGK", "bad_claims");
    let no_cti = rewrite(&[&[0x07, 0x50][..], &[1; 16]].concat(), &[0x07, 0x40]);
    v.case("claims_empty_pass_id", &pack_stored(&signed(&issuing, &header, &no_cti)), "current", now, "CGK", "bad_claims");
    let long_cti = rewrite(&[&[0x07, 0x50][..], &[1; 16]].concat(), &[&[0x07, 0x58, 65][..], &[1; 65]].concat());
    v.case("claims_pass_id_65_bytes", &pack_stored(&signed(&issuing, &header, &long_cti)), "current", now, "CGK", "bad_claims");
    let mut audience = payload.clone();
    audience[0] = 0xa7;
    audience.extend([0x03, 0x61, b'x']);
    v.case("claims_audience", &pack_stored(&signed(&issuing, &header, &audience)), "current", now, "CGK", "bad_claims");
    let int_field = rewrite(b"\x61v\x01", b"\x01\x01");
    v.case("claims_field_with_an_integer_key", &pack_stored(&signed(&issuing, &header, &int_field)), "current", now, "CGK", "bad_claims");
    v.case("protected_header_empty", &pack_stored(&signed(&issuing, &[], &payload)), "current", now, "CGK", "algorithm_not_allowed");
    let empty_kid = [0xa2, 0x01, 0x26, 0x04, 0x40];
    // coset reads an empty kid as malformed, not as absent.
    v.case("kid_empty", &pack_stored(&signed(&issuing, &empty_kid, &payload)), "current", now, "CGK", "bad_cbor");
    let alg_text = [vec![0xa2, 0x01, 0x65], b"ES256".to_vec(), vec![0x04], bstr(&issuing.kid().0)].concat();
    v.case("alg_as_text", &pack_stored(&signed(&issuing, &alg_text, &payload)), "current", now, "CGK", "algorithm_not_allowed");
    let alg_unassigned = [vec![0xa2, 0x01, 0x19, 0x30, 0x39], vec![0x04], bstr(&issuing.kid().0)].concat();
    v.case("alg_unassigned_number", &pack_stored(&signed(&issuing, &alg_unassigned, &payload)), "current", now, "CGK", "bad_cbor");
    let kid_item = bstr(&issuing.kid().0);
    let content_type_text = [vec![0xa3, 0x01, 0x26, 0x03, 0x64], b"json".to_vec(), vec![0x04], kid_item.clone()].concat();
    v.case(
        "content_type_not_type_slash_subtype",
        &pack_stored(&signed(&issuing, &content_type_text, &payload)),
        "current",
        now,
        "CGK",
        "bad_cbor",
    );
    let content_type_number = [vec![0xa3, 0x01, 0x26, 0x03, 0x18, 50, 0x04], kid_item.clone()].concat();
    v.case(
        "content_type_registered_number",
        &pack_stored(&signed(&issuing, &content_type_number, &payload)),
        "current",
        now,
        "CGK",
        "ACCEPT",
    );
    let crit_empty = [vec![0xa3, 0x01, 0x26, 0x02, 0x80, 0x04], kid_item.clone()].concat();
    v.case("crit_empty", &pack_stored(&signed(&issuing, &crit_empty, &payload)), "current", now, "CGK", "bad_cbor");
    let both_ivs = [vec![0xa4, 0x01, 0x26, 0x04], kid_item.clone(), vec![0x05, 0x41, 0x01, 0x06, 0x41, 0x02]].concat();
    v.case("iv_and_partial_iv", &pack_stored(&signed(&issuing, &both_ivs, &payload)), "current", now, "CGK", "bad_cbor");
    let spaced_date = rewrite(b"\x6a1988-03-14", b"\x6b 1988-03-14");
    v.case("claims_date_after_a_space", &pack_stored(&signed(&issuing, &header, &spaced_date)), "current", now, "CGK", "ACCEPT");
    let signature = sign(&issuing, &sig_structure(&header, &payload));
    v.case(
        "unprotected_not_a_map",
        &pack_stored(&sign1_items(&bstr(&header), &[0x80], &bstr(&payload), &signature)),
        "current",
        now,
        "CGK",
        "bad_cbor",
    );
    v.case(
        "unprotected_duplicate_key",
        &pack_stored(&sign1_items(&bstr(&header), &[0xa2, 0x18, 0x63, 0x00, 0x18, 0x63, 0x00], &bstr(&payload), &signature)),
        "current",
        now,
        "CGK",
        "bad_cbor",
    );
    let text_signature = [vec![0xd2, 0x84], bstr(&header), vec![0xa0], bstr(&payload), vec![0x78, 64], vec![b'a'; 64]].concat();
    v.case("signature_as_text", &pack_stored(&text_signature), "current", now, "CGK", "bad_cbor");
    v.case("cose_tagged_twice", &pack_stored(&[vec![0xd2], cose.clone()].concat()), "current", now, "CGK", "bad_cbor");
    let mut revoked_upper: Value =
        serde_json::from_slice(coset::CoseSign1::from_tagged_slice(&v.lists["revoked"]).unwrap().payload.as_ref().unwrap()).unwrap();
    let hash = revoked_upper["revoked_passes"][0]["pass_hash"].as_str().unwrap().to_uppercase();
    revoked_upper["revoked_passes"][0]["pass_hash"] = json!(hash);
    v.list("revoked_upper_case", sign_list_json(&fixed_secret(0x01), &root, &revoked_upper.to_string()));
    v.case("revoked_listed_in_upper_case_hex", &revoked_pass, "revoked_upper_case", now, "CGK", "revoked");

    // Trust lists offered to a gate.
    let mut versions = list.clone();
    v.list("v1", versions.sign(&root, issued()));
    v.list("v2", versions.sign(&root, issued() + Duration::minutes(5)));
    let mut forged = coset::CoseSign1::from_tagged_slice(&v.lists["v2"]).unwrap();
    let json_bytes = forged.payload.as_mut().unwrap();
    let at = json_bytes.windows(5).position(|w| w == b"ID-JK").unwrap();
    json_bytes[at + 3] = b'B';
    v.list("forged", TaggedCborSerializable::to_tagged_vec(forged).unwrap());
    v.list("other_root", list.clone().sign(&other_root, issued()));
    let mut json_list: Value =
        serde_json::from_slice(coset::CoseSign1::from_tagged_slice(&v.lists["v2"]).unwrap().payload.as_ref().unwrap()).unwrap();
    json_list["version"] = json!(3);
    json_list["note"] = json!("an unknown field");
    v.list("unknown_field", sign_list_json(&fixed_secret(0x01), &root, &json_list.to_string()));
    json_list.as_object_mut().unwrap().remove("note");
    json_list["issuing_keys"][0]["kid"] = json!("0011223344556677");
    v.list("kid_mismatch", sign_list_json(&fixed_secret(0x01), &root, &json_list.to_string()));
    let duplicate_version = json_list.to_string().replacen("{", "{\"version\":4,", 1);
    v.list("duplicate_field", sign_list_json(&fixed_secret(0x01), &root, &duplicate_version));
    let original = json_list.clone();
    let mut bent = |name: &'static str, change: &dyn Fn(&mut Value)| {
        let mut json = original.clone();
        json["issuing_keys"][0]["kid"] = json!(issuing.kid().to_string());
        change(&mut json);
        v.list(name, sign_list_json(&fixed_secret(0x01), &root, &json.to_string()));
    };
    bent("private_key_listed", &|json| json["issuing_keys"][0]["public_key"]["d"] = json!("AAAA"));
    bent("empty_region", &|json| json["issuing_keys"][0]["region"] = json!(""));
    bent("fractional_max_age", &|json| json["max_age_secs"] = json!(86400.0));
    bent("time_without_offset", &|json| json["issued"] = json!("2026-05-01T07:00:00"));
    bent("time_with_offset", &|json| json["issued"] = json!("2026-05-01T14:00:00+07:00"));
    bent("bad_revocation_hash", &|json| json["revoked_passes"] = json!([{ "pass_hash": "abc", "expires": "2026-05-02T10:00:00Z" }]));
    bent("kid_upper_case", &|json| {
        let kid = json["issuing_keys"][0]["kid"].as_str().unwrap().to_uppercase();
        json["issuing_keys"][0]["kid"] = json!(kid);
    });
    bent("duplicate_key", &|json| {
        let key = json["issuing_keys"][0].clone();
        json["issuing_keys"].as_array_mut().unwrap().push(key);
    });
    bent("public_key_not_on_the_curve", &|json| {
        json["issuing_keys"][0]["public_key"]["y"] = json!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
    });
    v.update("first_install", None, "v1", &["root"], "installed");
    v.update("newer", Some("v1"), "v2", &["root"], "installed");
    v.update("rollback", Some("v2"), "v1", &["root"], "rollback");
    v.update("same_version", Some("v2"), "v2", &["root"], "not_newer");
    v.update("forged", Some("v1"), "forged", &["root"], "bad_signature");
    v.update("unpinned_root", Some("v1"), "other_root", &["root"], "unknown_root");
    v.update("second_pinned_root", None, "other_root", &["root", "other_root"], "installed");
    v.update("unknown_field", Some("v1"), "unknown_field", &["root"], "json");
    v.update("kid_mismatch", Some("v1"), "kid_mismatch", &["root"], "entry");
    v.update("duplicate_field", Some("v1"), "duplicate_field", &["root"], "json");
    v.update("private_key_listed", Some("v1"), "private_key_listed", &["root"], "entry");
    v.update("empty_region", Some("v1"), "empty_region", &["root"], "entry");
    v.update("fractional_max_age", Some("v1"), "fractional_max_age", &["root"], "json");
    v.update("time_without_offset", Some("v1"), "time_without_offset", &["root"], "json");
    v.update("time_with_offset", Some("v1"), "time_with_offset", &["root"], "installed");
    v.update("bad_revocation_hash", Some("v1"), "bad_revocation_hash", &["root"], "entry");
    v.update("kid_upper_case", Some("v1"), "kid_upper_case", &["root"], "installed");
    v.update("duplicate_key", Some("v1"), "duplicate_key", &["root"], "duplicate_key");
    v.update("public_key_not_on_the_curve", Some("v1"), "public_key_not_on_the_curve", &["root"], "entry");
    v
}

fn hex_bytes(text: &str) -> Vec<u8> {
    (0..text.len()).step_by(2).map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap()).collect()
}

#[test]
fn the_committed_vectors_are_up_to_date() {
    let fresh = build().to_json();
    if std::env::var_os("EHAC_UPDATE_VECTORS").is_some() {
        std::fs::write(VECTORS, &fresh).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(VECTORS).unwrap_or_default();
    assert!(
        committed == fresh,
        "{VECTORS} is out of date (a verdict or the format changed): regenerate it with EHAC_UPDATE_VECTORS=1 cargo test -p ehac-pass --test vectors, and check the gate app agrees (web/gate: npm test)"
    );
}
