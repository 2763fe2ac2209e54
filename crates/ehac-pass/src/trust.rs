//! The trust list: which issuing keys a gate accepts, for which region and until when, and which
//! passes are revoked. It is JSON, signed by a root key as the payload of a COSE_Sign1 (tag 18,
//! ES256, root kid and content type `application/json` protected). The signature covers the exact
//! JSON bytes, so there is no canonicalisation for two implementations to disagree on, and the
//! gate reuses the checks it already runs on passes. Gates pin the root public key(s).

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Duration, DurationRound, Utc};
use p256::PublicKey;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cose::{self, Envelope};
use crate::key::{self, Kid, RootKey, RootPublicKey};

/// A trust list larger than this is refused unread.
pub const MAX_TRUST_LIST_BYTES: usize = 16 << 20;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TrustError {
    #[error("the trust list is not a COSE_Sign1 (tag 18) with an ES256 protected header and kid")]
    Envelope,
    #[error("the trust list is signed by root kid {0}, which is not pinned")]
    UnknownRoot(String),
    #[error("the trust list's root signature does not verify")]
    BadSignature,
    #[error("the trust list is too large")]
    TooLarge,
    #[error("the trust list's JSON is invalid: {0}")]
    Json(String),
    #[error("trust list entry {0}: {1}")]
    Entry(String, String),
    #[error("issuing key {0} is already listed")]
    DuplicateKey(String),
    #[error("issuing key {0} is not listed")]
    NoSuchKey(String),
    #[error("offered trust list version {offered} is older than the installed version {installed}: refused (a rollback could bring back a removed key or an unrevoked pass)")]
    Rollback { installed: u64, offered: u64 },
    #[error("offered trust list version {0} is the installed version")]
    NotNewer(u64),
}

/// The trust list as signed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustList {
    /// Raised by one on every signing.
    pub version: u64,
    pub issued: DateTime<Utc>,
    /// When gates should fetch a new list: half of `max_age_secs` after `issued`, so one missed
    /// fetch does not make a gate stale.
    pub next_update: DateTime<Utc>,
    /// A gate whose list is older than this no longer trusts it fully (DEGRADED).
    pub max_age_secs: u64,
    pub issuing_keys: Vec<TrustedKey>,
    pub revoked_passes: Vec<Revocation>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKey {
    /// Hex of the 8-byte [`Kid`]; must be the kid of `public_key`.
    pub kid: String,
    /// The issuing region; a pass's `iss` must equal it.
    pub region: String,
    /// Public JWK (EC, P-256).
    pub public_key: serde_json::Value,
    pub valid_from: DateTime<Utc>,
    /// A retired key stays listed until its last pass expires.
    pub valid_until: DateTime<Utc>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revocation {
    /// Hex of the first 16 bytes of SHA-256 over the pass id (`cti`). Keyed on the signed
    /// payload, never on the signature bytes, which are malleable (s and n - s both verify).
    pub pass_hash: String,
    /// The pass's `exp`: after it the entry can be purged, the pass being dead anyway.
    pub expires: DateTime<Utc>,
}

/// The revocation key of a pass id.
pub fn pass_hash(pass_id: &[u8]) -> [u8; 16] {
    let digest = Sha256::digest(pass_id);
    let mut hash = [0; 16];
    hash.copy_from_slice(&digest[..16]);
    hash
}

impl TrustedKey {
    /// An entry for a public JWK that carries `kid` (optional) and `region`.
    pub fn from_public_jwk(json: &str, valid_from: DateTime<Utc>, valid_until: DateTime<Utc>) -> Result<TrustedKey, TrustError> {
        let value: serde_json::Value = serde_json::from_str(json).map_err(|e| TrustError::Json(e.to_string()))?;
        let public = key::parse_public_jwk(&value).map_err(|e| TrustError::Entry("new key".into(), e.to_string()))?;
        let region = value.get("region").and_then(|r| r.as_str()).unwrap_or_default().to_owned();
        TrustedKey::new(&public, &region, valid_from, valid_until)
    }

    pub fn new(public: &PublicKey, region: &str, valid_from: DateTime<Utc>, valid_until: DateTime<Utc>) -> Result<TrustedKey, TrustError> {
        let kid = Kid::of(public);
        if region.is_empty() {
            return Err(TrustError::Entry(kid.to_string(), "no region".into()));
        }
        let jwk = serde_json::from_str(&key::public_jwk(public, None)).expect("our own JWK parses");
        Ok(TrustedKey { kid: kid.to_string(), region: region.to_owned(), public_key: jwk, valid_from, valid_until })
    }
}

impl TrustList {
    /// An empty list; nothing is trusted until [`TrustList::add_key`].
    pub fn new(max_age: Duration) -> TrustList {
        TrustList {
            version: 0,
            issued: DateTime::UNIX_EPOCH,
            next_update: DateTime::UNIX_EPOCH,
            max_age_secs: max_age.num_seconds().max(0) as u64,
            issuing_keys: Vec::new(),
            revoked_passes: Vec::new(),
        }
    }

    pub fn add_key(&mut self, key: TrustedKey) -> Result<(), TrustError> {
        if self.issuing_keys.iter().any(|k| k.kid == key.kid) {
            return Err(TrustError::DuplicateKey(key.kid));
        }
        self.issuing_keys.push(key);
        Ok(())
    }

    /// The key signs no more passes; it stays listed until its last pass expires.
    pub fn retire_key(&mut self, kid: Kid, last_pass_expires: DateTime<Utc>) -> Result<(), TrustError> {
        let key = self.key_mut(kid)?;
        key.valid_until = key.valid_until.min(last_pass_expires);
        Ok(())
    }

    /// A compromised key: gone at once, and every pass it signed with it.
    pub fn remove_key(&mut self, kid: Kid) -> Result<TrustedKey, TrustError> {
        let at = self.issuing_keys.iter().position(|k| k.kid == kid.to_string()).ok_or(TrustError::NoSuchKey(kid.to_string()))?;
        Ok(self.issuing_keys.remove(at))
    }

    /// Revokes one pass until its expiry. Revoking twice keeps one entry, with the later expiry.
    pub fn revoke(&mut self, pass_id: &[u8], expires: DateTime<Utc>) {
        let pass_hash = hex::encode(pass_hash(pass_id));
        match self.revoked_passes.iter_mut().find(|r| r.pass_hash == pass_hash) {
            Some(entry) => entry.expires = entry.expires.max(expires),
            None => self.revoked_passes.push(Revocation { pass_hash, expires }),
        }
    }

    /// Drops revocations of passes that expired, and retired keys past their last pass.
    /// Returns (keys, revocations) dropped.
    pub fn purge(&mut self, now: DateTime<Utc>) -> (usize, usize) {
        let (keys, revocations) = (self.issuing_keys.len(), self.revoked_passes.len());
        self.issuing_keys.retain(|k| k.valid_until >= now);
        self.revoked_passes.retain(|r| r.expires >= now);
        (keys - self.issuing_keys.len(), revocations - self.revoked_passes.len())
    }

    fn key_mut(&mut self, kid: Kid) -> Result<&mut TrustedKey, TrustError> {
        self.issuing_keys.iter_mut().find(|k| k.kid == kid.to_string()).ok_or(TrustError::NoSuchKey(kid.to_string()))
    }

    /// Raises the version, stamps `issued` (whole seconds) and `next_update`, and signs with the
    /// root key: the bytes of the trust-list file.
    pub fn sign(&mut self, root: &RootKey, now: DateTime<Utc>) -> Vec<u8> {
        self.version += 1;
        self.issued = now.duration_trunc(Duration::seconds(1)).unwrap_or(now);
        self.next_update = self.issued + Duration::seconds((self.max_age_secs / 2) as i64);
        let json = serde_json::to_vec_pretty(self).expect("a trust list serialises");
        let header = cose::protected_header(root.kid(), Some("application/json"));
        cose::sign1(header, json, |data| cose::sign_p256(root.secret(), data))
    }

    /// Checks the root signature against the pinned roots and parses. A list with a bad
    /// signature, an unpinned root or an inconsistent entry is refused whole.
    pub fn open(bytes: &[u8], roots: &[RootPublicKey]) -> Result<TrustList, TrustError> {
        if bytes.len() > MAX_TRUST_LIST_BYTES {
            return Err(TrustError::TooLarge);
        }
        let (sign1, json) = cose::open_sign1(bytes).map_err(|_: Envelope| TrustError::Envelope)?;
        let kid = Kid::from_bytes(&sign1.protected.header.key_id);
        let root = roots
            .iter()
            .find(|r| Some(r.kid) == kid)
            .ok_or_else(|| TrustError::UnknownRoot(hex::encode(&sign1.protected.header.key_id)))?;
        sign1
            .verify_signature(b"", |signature, data| cose::verify_es256(&root.key, signature, data))
            .map_err(|_| TrustError::BadSignature)?;
        let list: TrustList = serde_json::from_slice(&json).map_err(|e| TrustError::Json(e.to_string()))?;
        Ok(list)
    }
}

/// A trust list whose root signature was checked, indexed for the gate.
#[derive(Clone, Debug)]
pub struct VerifiedTrustList {
    list: TrustList,
    keys: HashMap<Kid, (PublicKey, usize)>,
    revoked: HashSet<[u8; 16]>,
}

impl VerifiedTrustList {
    /// What a gate does with the trust-list file. Age is not judged here but at every
    /// verification, so a long-running gate notices its list going stale.
    pub fn load(bytes: &[u8], roots: &[RootPublicKey]) -> Result<VerifiedTrustList, TrustError> {
        VerifiedTrustList::index(TrustList::open(bytes, roots)?)
    }

    fn index(list: TrustList) -> Result<VerifiedTrustList, TrustError> {
        let mut keys = HashMap::with_capacity(list.issuing_keys.len());
        for (at, entry) in list.issuing_keys.iter().enumerate() {
            let bad = |why: &str| TrustError::Entry(entry.kid.clone(), why.to_owned());
            let public = key::parse_public_jwk(&entry.public_key).map_err(|e| bad(&e.to_string()))?;
            let kid = Kid::of(&public);
            if Kid::from_hex(&entry.kid) != Some(kid) {
                return Err(bad("kid is not the kid of the public key"));
            }
            if entry.region.is_empty() {
                return Err(bad("no region"));
            }
            if keys.insert(kid, (public, at)).is_some() {
                return Err(TrustError::DuplicateKey(entry.kid.clone()));
            }
        }
        let mut revoked = HashSet::with_capacity(list.revoked_passes.len());
        for entry in &list.revoked_passes {
            let mut hash = [0; 16];
            hex::decode_to_slice(&entry.pass_hash, &mut hash)
                .map_err(|_| TrustError::Entry(entry.pass_hash.clone(), "not 16 bytes of hex".into()))?;
            revoked.insert(hash);
        }
        Ok(VerifiedTrustList { list, keys, revoked })
    }

    pub fn list(&self) -> &TrustList {
        &self.list
    }

    /// What a gate does with a list it fetched or was handed, with this one installed: only a
    /// newer version replaces it. Every older list stays validly signed forever, so without
    /// this a stale mirror or an attacker could bring back an issuing key removed as
    /// compromised, or un-revoke a pass, simply by offering the old file.
    pub fn update(&self, offered: &[u8], roots: &[RootPublicKey]) -> Result<VerifiedTrustList, TrustError> {
        let list = TrustList::open(offered, roots)?;
        let installed = self.list.version;
        match list.version.cmp(&installed) {
            std::cmp::Ordering::Less => Err(TrustError::Rollback { installed, offered: list.version }),
            std::cmp::Ordering::Equal => Err(TrustError::NotNewer(installed)),
            std::cmp::Ordering::Greater => VerifiedTrustList::index(list),
        }
    }

    /// Older than its `max_age_secs`: keys added or passes revoked since may be missing.
    pub fn is_stale(&self, now: DateTime<Utc>) -> bool {
        now - self.list.issued > Duration::seconds(self.list.max_age_secs.min(i64::MAX as u64) as i64)
    }

    pub(crate) fn key(&self, kid: &Kid) -> Option<(&PublicKey, &TrustedKey)> {
        self.keys.get(kid).map(|(public, at)| (public, &self.list.issuing_keys[*at]))
    }

    pub(crate) fn is_revoked(&self, pass_id: &[u8]) -> bool {
        self.revoked.contains(&pass_hash(pass_id))
    }
}
