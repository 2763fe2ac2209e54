//! Building a pass: claims, CWT, COSE_Sign1 signed ES256, zlib, Base45, prefix.

use chrono::{DateTime, Duration, Utc};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

use crate::claims::{self, PassClaims};
use crate::cose;
use crate::key::{IssuingKey, Kid};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IssuePolicy {
    /// A pass expires this long after the scheduled arrival (`exp`), to cover delays.
    pub valid_after_arrival: Duration,
}

impl Default for IssuePolicy {
    fn default() -> IssuePolicy {
        IssuePolicy { valid_after_arrival: Duration::hours(24) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error("the pass would be expired when issued (arrival plus window is before now)")]
    AlreadyExpired,
    #[error("the signer failed (no randomness from the operating system)")]
    Signing,
}

/// A parsed issuing key ready to sign passes: parse once at start-up, sign many times.
///
/// Signing uses ring's P-256 (assembly, constant time), which measured several times faster
/// than RustCrypto's p256 within the gateway's budget per pass (see benches/pass.rs and
/// docs/PASS.md). ring draws the nonce from the OS random source mixed with the key and message.
pub struct Signer {
    kid: Kid,
    region: String,
    key_pair: EcdsaKeyPair,
    rng: SystemRandom,
    /// The protected header (ES256, kid), encoded once.
    protected: Vec<u8>,
    policy: IssuePolicy,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("kid", &self.kid).field("region", &self.region).finish_non_exhaustive()
    }
}

impl Signer {
    pub fn new(key: &IssuingKey, policy: IssuePolicy) -> Signer {
        let rng = SystemRandom::new();
        let secret = key.secret();
        let public = p256::EncodedPoint::from(secret.public_key());
        let key_pair =
            EcdsaKeyPair::from_private_key_and_public_key(&ECDSA_P256_SHA256_FIXED_SIGNING, &secret.to_bytes(), public.as_bytes(), &rng)
                .expect("a valid p256 key pair is a valid ring key pair");
        Signer {
            kid: key.kid(),
            region: key.region().to_owned(),
            key_pair,
            rng,
            protected: cose::protected_header_bytes(key.kid()),
            policy,
        }
    }

    pub fn kid(&self) -> Kid {
        self.kid
    }

    /// The issuing region, written as the pass's `iss`.
    pub fn region(&self) -> &str {
        &self.region
    }

    /// The pass text (`EH1:...`), ready for a QR code.
    pub fn issue(&self, claims: &PassClaims, now: DateTime<Utc>) -> Result<String, IssueError> {
        let expires_at = (claims.arrival_at + self.policy.valid_after_arrival).timestamp();
        if expires_at <= now.timestamp() {
            return Err(IssueError::AlreadyExpired);
        }
        let payload = claims::encode(claims, &self.region, now.timestamp(), expires_at);
        let mut failed = false;
        let cose = cose::sign1_direct(&self.protected, &payload, |data| match self.key_pair.sign(&self.rng, data) {
            Ok(signature) => signature.as_ref().to_vec(),
            Err(_) => {
                failed = true;
                Vec::new()
            }
        });
        if failed {
            return Err(IssueError::Signing);
        }
        let mut pass = String::with_capacity(crate::PREFIX.len() + cose.len() * 3 / 2);
        pass.push_str(crate::PREFIX);
        pass.push_str(&base45::encode(cose::zlib(&cose)));
        Ok(pass)
    }
}

/// One pass with the default policy. A service should keep a [`Signer`] instead: parsing the
/// key into ring's form costs more than signing.
pub fn issue(key: &IssuingKey, claims: &PassClaims, now: DateTime<Utc>) -> Result<String, IssueError> {
    Signer::new(key, IssuePolicy::default()).issue(claims, now)
}

/// For the benchmark that compares the two ES256 signers on the same bytes.
#[doc(hidden)]
pub fn sign_with_p256(key: &IssuingKey, data: &[u8]) -> Vec<u8> {
    cose::sign_p256(key.secret(), data)
}

#[doc(hidden)]
pub fn sign_with_ring(signer: &Signer, data: &[u8]) -> Vec<u8> {
    signer.key_pair.sign(&signer.rng, data).expect("randomness").as_ref().to_vec()
}
