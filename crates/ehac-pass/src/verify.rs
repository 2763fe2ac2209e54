//! The gate verifier. The checks run in a fixed order, cheapest and least trusting first; each
//! failure has its own reason code (docs/PASS.md lists them). Nothing from the payload is
//! believed before the signature over it verified.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::claims::{self, OfficerView, SignedClaims};
use crate::cose::{self, Envelope, Inflate, SignatureError};
use crate::key::Kid;
use crate::trust::VerifiedTrustList;

/// The longest pass a QR code can carry: version 40 at level Q holds 2,420 alphanumeric
/// characters. Anything longer did not come from a pass QR.
pub const MAX_PASS_CHARS: usize = 2420;

/// The most a pass may inflate to. A real pass is under 300 bytes of COSE.
pub const MAX_COSE_BYTES: usize = 4096;

/// How far the gate's clock and the gateway's may disagree when judging nbf and exp.
pub const CLOCK_TOLERANCE: Duration = Duration::minutes(5);

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Verdict {
    Accept(OfficerView),
    Reject {
        reason: RejectReason,
    },
    /// The gate cannot fully decide: the officer follows the manual procedure. `view` is set
    /// when every check passed but the trust list is stale (a revocation may be missing).
    Degraded {
        reason: DegradedReason,
        view: Option<OfficerView>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectReason {
    TooLong,
    BadPrefix,
    BadBase45,
    BadCompression,
    TooLarge,
    BadCbor,
    AlgorithmNotAllowed,
    KidUnprotected,
    KidMissing,
    UnknownKid,
    KeyNotValid,
    BadSignatureFormat,
    BadSignature,
    BadClaims,
    WrongIssuer,
    NotYetValid,
    Expired,
    Revoked,
    WrongAirport,
}

impl RejectReason {
    pub fn code(self) -> &'static str {
        match self {
            RejectReason::TooLong => "too_long",
            RejectReason::BadPrefix => "bad_prefix",
            RejectReason::BadBase45 => "bad_base45",
            RejectReason::BadCompression => "bad_compression",
            RejectReason::TooLarge => "too_large",
            RejectReason::BadCbor => "bad_cbor",
            RejectReason::AlgorithmNotAllowed => "algorithm_not_allowed",
            RejectReason::KidUnprotected => "kid_unprotected",
            RejectReason::KidMissing => "kid_missing",
            RejectReason::UnknownKid => "unknown_kid",
            RejectReason::KeyNotValid => "key_not_valid",
            RejectReason::BadSignatureFormat => "bad_signature_format",
            RejectReason::BadSignature => "bad_signature",
            RejectReason::BadClaims => "bad_claims",
            RejectReason::WrongIssuer => "wrong_issuer",
            RejectReason::NotYetValid => "not_yet_valid",
            RejectReason::Expired => "expired",
            RejectReason::Revoked => "revoked",
            RejectReason::WrongAirport => "wrong_airport",
        }
    }
}

impl std::fmt::Display for RejectReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DegradedReason {
    /// The kid is not in a stale trust list: it may have been added since. Never accepted.
    UnknownKidStaleTrustList,
    /// Every check passed, but against a stale trust list.
    StaleTrustList,
}

impl DegradedReason {
    pub fn code(self) -> &'static str {
        match self {
            DegradedReason::UnknownKidStaleTrustList => "unknown_kid_stale_trust_list",
            DegradedReason::StaleTrustList => "stale_trust_list",
        }
    }
}

impl std::fmt::Display for DegradedReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.code())
    }
}

fn reject(reason: RejectReason) -> Verdict {
    Verdict::Reject { reason }
}

/// Steps 1 to 4: prefix and length, Base45, zlib, COSE_Sign1 with ES256 and a protected kid.
fn unwrap(pass: &str) -> Result<(coset::CoseSign1, Vec<u8>), RejectReason> {
    if pass.len() > MAX_PASS_CHARS {
        return Err(RejectReason::TooLong);
    }
    let body = pass.strip_prefix(crate::PREFIX).ok_or(RejectReason::BadPrefix)?;
    let compressed = cose::unbase45(body).ok_or(RejectReason::BadBase45)?;
    let bytes = cose::unzlib(&compressed, MAX_COSE_BYTES).map_err(|e| match e {
        Inflate::Corrupt => RejectReason::BadCompression,
        Inflate::TooLarge => RejectReason::TooLarge,
    })?;
    cose::open_sign1(&bytes).map_err(|e| match e {
        Envelope::Cbor => RejectReason::BadCbor,
        Envelope::Algorithm => RejectReason::AlgorithmNotAllowed,
        Envelope::KidUnprotected => RejectReason::KidUnprotected,
        Envelope::KidMissing => RejectReason::KidMissing,
    })
}

/// Judges a scanned pass at the gate of `gate_airport` (IATA) at time `now`.
pub fn verify(pass: &str, trust: &VerifiedTrustList, gate_airport: &str, now: DateTime<Utc>) -> Verdict {
    let (sign1, payload) = match unwrap(pass) {
        Ok(opened) => opened,
        Err(reason) => return reject(reason),
    };
    let stale = trust.is_stale(now);
    let Some((public, entry)) = Kid::from_bytes(&sign1.protected.header.key_id).and_then(|kid| trust.key(&kid)) else {
        return if stale {
            Verdict::Degraded { reason: DegradedReason::UnknownKidStaleTrustList, view: None }
        } else {
            reject(RejectReason::UnknownKid)
        };
    };
    if now + CLOCK_TOLERANCE < entry.valid_from || now - CLOCK_TOLERANCE > entry.valid_until {
        return reject(RejectReason::KeyNotValid);
    }
    // Over the protected header exactly as received: coset keeps its original bytes.
    match sign1.verify_signature(b"", |signature, data| cose::verify_es256(public, signature, data)) {
        Ok(()) => {}
        Err(SignatureError::Format) => return reject(RejectReason::BadSignatureFormat),
        Err(SignatureError::Mismatch) => return reject(RejectReason::BadSignature),
    }
    let Some(claims) = claims::decode(&payload) else { return reject(RejectReason::BadClaims) };
    if claims.issuer != entry.region {
        return reject(RejectReason::WrongIssuer);
    }
    let tolerance = CLOCK_TOLERANCE.num_seconds();
    if claims.not_before > now.timestamp() + tolerance {
        return reject(RejectReason::NotYetValid);
    }
    if claims.expires_at < now.timestamp() - tolerance {
        return reject(RejectReason::Expired);
    }
    if trust.is_revoked(&claims.pass_id) {
        return reject(RejectReason::Revoked);
    }
    if !claims.arrival_airport.eq_ignore_ascii_case(gate_airport.trim()) {
        return reject(RejectReason::WrongAirport);
    }
    let view = claims.officer_view();
    if stale {
        Verdict::Degraded { reason: DegradedReason::StaleTrustList, view: Some(view) }
    } else {
        Verdict::Accept(view)
    }
}

/// What a pass says, WITHOUT checking its signature: for revoking a pass or explaining a
/// rejection, never for letting anyone through.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UnverifiedPass {
    pub kid: String,
    pub pass_id: Vec<u8>,
    pub view: OfficerView,
}

pub fn inspect_unverified(pass: &str) -> Result<UnverifiedPass, RejectReason> {
    let (sign1, payload) = unwrap(pass)?;
    let claims: SignedClaims = claims::decode(&payload).ok_or(RejectReason::BadClaims)?;
    Ok(UnverifiedPass { kid: hex::encode(&sign1.protected.header.key_id), pass_id: claims.pass_id.clone(), view: claims.officer_view() })
}
