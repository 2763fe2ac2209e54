//! The signed e-HAC pass a traveller shows at the arrival gate, its trust list, and the gate
//! verifier.
//!
//! The pass borrows the mechanics of the EU Digital COVID Certificate (HCERT): the claims are a
//! CBOR Web Token inside a COSE_Sign1 (CBOR tag 18) signed ES256 with the issuing key's `kid` in
//! the protected header, zlib-compressed, Base45-encoded (RFC 9285) and prefixed `EH1:` so no EU
//! app mistakes it for a certificate. See docs/PASS.md for the format and the procedures.
//!
//! Everything here is a pure function of its inputs (strings, bytes, the clock value passed in):
//! no files, no network, so the gate verifier runs offline. Reading key files, trust-list files
//! and QR images is the job of the `ehac-gate` binary.
//!
//! - [`key`]: issuing keys (regional, sign passes) and root keys (sign trust lists).
//! - [`claims`]: what a pass says, and what the gate officer is shown.
//! - [`issue`]: building a pass ([`Signer`], [`issue()`]).
//! - [`trust`]: the trust list, its maintenance and its root signature.
//! - [`verify`]: the gate's checks, in order, each with its own reason code.

mod cbor;
pub mod claims;
mod cose;
pub mod issue;
pub mod key;
pub mod trust;
pub mod verify;

pub use claims::{OfficerView, PassClaims, Triage};
pub use issue::{issue, IssueError, IssuePolicy, Signer};
pub use key::{IssuingKey, KeyError, Kid, RootKey, RootPublicKey};
pub use trust::{pass_hash, Revocation, TrustError, TrustList, TrustedKey, VerifiedTrustList};
pub use verify::{inspect_unverified, verify, DegradedReason, RejectReason, UnverifiedPass, Verdict};

/// What every pass starts with; EU apps look for `HC1:`.
pub const PREFIX: &str = "EH1:";

/// The two ES256 verifiers side by side on the same bytes, for `ehac bench pass`.
#[doc(hidden)]
pub mod verifier_comparison {
    /// The verifier [`crate::verify`] uses (format check, then ring).
    pub fn ring(key: &p256::PublicKey, signature: &[u8], data: &[u8]) -> bool {
        crate::cose::verify_es256(key, signature, data).is_ok()
    }

    /// RustCrypto's `VerifyingKey`.
    pub fn p256(key: &p256::PublicKey, signature: &[u8], data: &[u8]) -> bool {
        crate::cose::verify_es256_p256(key, signature, data)
    }
}

/// The issue path's stages one by one, for `ehac bench pass`'s breakdown.
#[doc(hidden)]
pub mod issue_stages {
    use crate::{Kid, PassClaims};

    pub fn claims(claims: &PassClaims) -> Vec<u8> {
        crate::claims::encode(claims, "ID-JK", 1_766_000_000, 1_766_090_000)
    }

    /// The COSE_Sign1 around `payload`, with a constant in place of the signature.
    pub fn envelope(kid: Kid, payload: &[u8]) -> Vec<u8> {
        crate::cose::sign1_direct(&crate::cose::protected_header_bytes(kid), payload, |_| vec![0; 64])
    }

    pub fn zlib(bytes: &[u8]) -> Vec<u8> {
        crate::cose::zlib(bytes)
    }

    pub fn base45(bytes: &[u8]) -> String {
        base45::encode(bytes)
    }
}
