//! Issuing keys (one per region's gateway, they sign passes) and root keys (they sign trust
//! lists; gates pin their public halves). All are ECDSA P-256 keys.
//!
//! Keys are parsed from strings only (PKCS#8 / SPKI PEM, or a JWK with our `kid` and `region`
//! members added); reading the files is the caller's business.

use std::fmt;

use p256::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey, LineEnding};
use p256::{PublicKey, SecretKey};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("not a P-256 key in PEM: {0}")]
    Pem(String),
    #[error("not a P-256 JWK: {0}")]
    Jwk(String),
    #[error("the JWK's kid {given} is not the one of its public key ({derived})")]
    KidMismatch { given: String, derived: String },
    #[error("an issuing key needs a region")]
    NoRegion,
    #[error("key generation failed")]
    Generate,
}

/// A key identifier: the first 8 bytes of SHA-256 over the uncompressed SEC1 public key, the
/// same length HCERT uses. Derived, never chosen, so a kid cannot point at the wrong key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kid(pub [u8; 8]);

impl Kid {
    pub fn of(public: &PublicKey) -> Kid {
        let digest = Sha256::digest(public.to_sec1_bytes());
        let mut kid = [0; 8];
        kid.copy_from_slice(&digest[..8]);
        Kid(kid)
    }

    pub fn from_hex(text: &str) -> Option<Kid> {
        let mut kid = [0; 8];
        hex::decode_to_slice(text, &mut kid).ok()?;
        Some(Kid(kid))
    }

    pub fn from_bytes(bytes: &[u8]) -> Option<Kid> {
        bytes.try_into().ok().map(Kid)
    }
}

impl fmt::Display for Kid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Kid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kid({self})")
    }
}

/// A region's pass-signing key. The region is also the pass's `iss`, and the trust list binds
/// each kid to its region, so one region's key cannot issue another region's passes.
#[derive(Clone)]
pub struct IssuingKey {
    kid: Kid,
    region: String,
    secret: SecretKey,
}

impl fmt::Debug for IssuingKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the secret scalar.
        f.debug_struct("IssuingKey").field("kid", &self.kid).field("region", &self.region).finish_non_exhaustive()
    }
}

impl IssuingKey {
    /// A fresh key from the operating system's random source.
    pub fn generate(region: &str) -> Result<IssuingKey, KeyError> {
        if region.is_empty() {
            return Err(KeyError::NoRegion);
        }
        Ok(IssuingKey::from_secret(generate_secret()?, region))
    }

    fn from_secret(secret: SecretKey, region: &str) -> IssuingKey {
        IssuingKey { kid: Kid::of(&secret.public_key()), region: region.to_owned(), secret }
    }

    /// A PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`); PEM carries no region.
    pub fn from_pkcs8_pem(pem: &str, region: &str) -> Result<IssuingKey, KeyError> {
        if region.is_empty() {
            return Err(KeyError::NoRegion);
        }
        let secret = SecretKey::from_pkcs8_pem(pem).map_err(|e| KeyError::Pem(e.to_string()))?;
        Ok(IssuingKey::from_secret(secret, region))
    }

    /// A private JWK (`kty` EC, `crv` P-256, `x`, `y`, `d`) with a `region` member and an
    /// optional `kid` (hex) that must match the key.
    pub fn from_jwk(json: &str) -> Result<IssuingKey, KeyError> {
        let (jwk, kid, region) = split_jwk(json)?;
        let secret = SecretKey::from_jwk_str(&jwk).map_err(|e| KeyError::Jwk(e.to_string()))?;
        let key = IssuingKey::from_secret(secret, &region.ok_or(KeyError::NoRegion)?);
        check_kid(kid, key.kid)?;
        Ok(key)
    }

    /// Either format, told apart by the first character.
    pub fn parse(text: &str, region: Option<&str>) -> Result<IssuingKey, KeyError> {
        if text.trim_start().starts_with('{') {
            IssuingKey::from_jwk(text)
        } else {
            IssuingKey::from_pkcs8_pem(text, region.unwrap_or_default())
        }
    }

    pub fn kid(&self) -> Kid {
        self.kid
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    pub fn public_key(&self) -> PublicKey {
        self.secret.public_key()
    }

    pub(crate) fn secret(&self) -> &SecretKey {
        &self.secret
    }

    /// The private JWK with `kid` and `region`: the issuing key file.
    pub fn to_jwk(&self) -> String {
        let mut members = jwk_members(&self.secret.to_jwk_string());
        members.insert("kid".into(), self.kid.to_string().into());
        members.insert("region".into(), self.region.clone().into());
        serde_json::to_string_pretty(&Value::Object(members)).expect("a JSON object serialises")
    }

    pub fn to_pkcs8_pem(&self) -> String {
        self.secret.to_pkcs8_pem(LineEnding::LF).expect("a P-256 key encodes as PKCS#8").to_string()
    }

    /// The public JWK with `kid` and `region`: what goes into the trust list.
    pub fn public_jwk(&self) -> String {
        public_jwk(&self.public_key(), Some(&self.region))
    }
}

/// A trust-list signing key. Kept offline; only its public half travels (pinned in every gate).
#[derive(Clone)]
pub struct RootKey {
    kid: Kid,
    secret: SecretKey,
}

impl fmt::Debug for RootKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RootKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl RootKey {
    pub fn generate() -> Result<RootKey, KeyError> {
        Ok(RootKey::from_secret(generate_secret()?))
    }

    fn from_secret(secret: SecretKey) -> RootKey {
        RootKey { kid: Kid::of(&secret.public_key()), secret }
    }

    /// PKCS#8 PEM or a private JWK.
    pub fn parse(text: &str) -> Result<RootKey, KeyError> {
        if text.trim_start().starts_with('{') {
            let (jwk, kid, _) = split_jwk(text)?;
            let key = RootKey::from_secret(SecretKey::from_jwk_str(&jwk).map_err(|e| KeyError::Jwk(e.to_string()))?);
            check_kid(kid, key.kid)?;
            Ok(key)
        } else {
            Ok(RootKey::from_secret(SecretKey::from_pkcs8_pem(text).map_err(|e| KeyError::Pem(e.to_string()))?))
        }
    }

    pub fn kid(&self) -> Kid {
        self.kid
    }

    pub fn public(&self) -> RootPublicKey {
        RootPublicKey { kid: self.kid, key: self.secret.public_key() }
    }

    pub(crate) fn secret(&self) -> &SecretKey {
        &self.secret
    }

    pub fn to_pkcs8_pem(&self) -> String {
        self.secret.to_pkcs8_pem(LineEnding::LF).expect("a P-256 key encodes as PKCS#8").to_string()
    }
}

/// A root public key as a gate pins it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RootPublicKey {
    pub kid: Kid,
    pub key: PublicKey,
}

impl RootPublicKey {
    /// SPKI PEM (`-----BEGIN PUBLIC KEY-----`) or a public JWK.
    pub fn parse(text: &str) -> Result<RootPublicKey, KeyError> {
        let key = if text.trim_start().starts_with('{') {
            let (jwk, kid, _) = split_jwk(text)?;
            let key = PublicKey::from_jwk_str(&jwk).map_err(|e| KeyError::Jwk(e.to_string()))?;
            check_kid(kid, Kid::of(&key))?;
            key
        } else {
            PublicKey::from_public_key_pem(text).map_err(|e| KeyError::Pem(e.to_string()))?
        };
        Ok(RootPublicKey { kid: Kid::of(&key), key })
    }

    pub fn to_pem(&self) -> String {
        self.key.to_public_key_pem(LineEnding::LF).expect("a P-256 key encodes as SPKI")
    }
}

/// A public JWK with our `kid` (and `region` for issuing keys).
pub fn public_jwk(key: &PublicKey, region: Option<&str>) -> String {
    let mut members = jwk_members(&key.to_jwk_string());
    members.insert("kid".into(), Kid::of(key).to_string().into());
    if let Some(region) = region {
        members.insert("region".into(), region.into());
    }
    serde_json::to_string_pretty(&Value::Object(members)).expect("a JSON object serialises")
}

/// Parses a public JWK as the trust list carries it (our extra members ignored).
pub(crate) fn parse_public_jwk(value: &Value) -> Result<PublicKey, KeyError> {
    let mut members = value.as_object().cloned().ok_or_else(|| KeyError::Jwk("not an object".into()))?;
    members.remove("kid");
    members.remove("region");
    if members.contains_key("d") {
        // A private key pasted where a public one belongs must not travel in a trust list.
        return Err(KeyError::Jwk("a private key where a public key belongs".into()));
    }
    PublicKey::from_jwk_str(&Value::Object(members).to_string()).map_err(|e| KeyError::Jwk(e.to_string()))
}

fn generate_secret() -> Result<SecretKey, KeyError> {
    // ring generates from the OS random source, so this crate needs no RNG plumbing of its own.
    let rng = ring::rand::SystemRandom::new();
    let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(&ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
        .map_err(|_| KeyError::Generate)?;
    SecretKey::from_pkcs8_der(pkcs8.as_ref()).map_err(|_| KeyError::Generate)
}

fn jwk_members(jwk: &str) -> Map<String, Value> {
    match serde_json::from_str(jwk) {
        Ok(Value::Object(members)) => members,
        _ => unreachable!("elliptic-curve writes a JWK as a JSON object"),
    }
}

/// Splits our members (`kid`, `region`) from the JWK proper.
fn split_jwk(json: &str) -> Result<(String, Option<String>, Option<String>), KeyError> {
    let mut members = match serde_json::from_str(json) {
        Ok(Value::Object(members)) => members,
        Ok(_) => return Err(KeyError::Jwk("not a JSON object".into())),
        Err(e) => return Err(KeyError::Jwk(e.to_string())),
    };
    let text = |v: Value| v.as_str().map(str::to_owned).ok_or_else(|| KeyError::Jwk("kid and region must be strings".into()));
    let kid = members.remove("kid").map(text).transpose()?;
    let region = members.remove("region").map(text).transpose()?;
    Ok((Value::Object(members).to_string(), kid, region))
}

fn check_kid(given: Option<String>, derived: Kid) -> Result<(), KeyError> {
    match given {
        Some(given) if Kid::from_hex(&given) != Some(derived) => Err(KeyError::KidMismatch { given, derived: derived.to_string() }),
        _ => Ok(()),
    }
}
