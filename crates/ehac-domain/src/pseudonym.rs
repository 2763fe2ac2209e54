//! The traveller key: a keyed pseudonym that lets analysts count distinct travellers and link one
//! traveller's trips without seeing who they are.
//!
//! `traveller_key = HMAC-SHA256(pepper, canonical identity)`, hex. The canonical identity is the
//! NIK for citizens and nationality + passport number for foreigners. An unkeyed hash would not
//! do: a NIK is a district code, a birth date with sex, and a serial of about 10^4 values per
//! district and day, so every NIK can be hashed and the table reversed in seconds. Without the
//! pepper nobody can compute a key from an identity, nor an identity from a key.
//!
//! The pepper has a version. Rotating it means a new version with a new secret: keys computed
//! under the old version stay as they are (history is not rewritten), and trips link within one
//! version. The pepper never leaves the process that holds it: it is not in any record, log line
//! or `Debug` output.

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::form::Traveller;

/// The shortest pepper accepted, in bytes. HMAC-SHA256 keys shorter than its output weaken it.
pub const MIN_PEPPER_BYTES: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PepperError {
    #[error("the pepper is {0} bytes; at least {MIN_PEPPER_BYTES} are needed (e.g. `openssl rand -hex 32`)")]
    TooShort(usize),
    #[error("pepper version 0 is reserved for rows stored before traveller keys existed")]
    VersionZero,
}

/// The secret key of the traveller pseudonym, with its version.
#[derive(Clone)]
pub struct Pepper {
    version: u32,
    secret: Vec<u8>,
}

impl std::fmt::Debug for Pepper {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pepper").field("version", &self.version).field("secret", &"<redacted>").finish()
    }
}

impl Pepper {
    /// A pepper from its secret bytes. Surrounding whitespace is dropped, so a file written by
    /// `openssl rand -hex 32 > pepper` (with its newline) works; the text is used as it is.
    pub fn new(version: u32, secret: &[u8]) -> Result<Pepper, PepperError> {
        let secret = secret.trim_ascii();
        if version == 0 {
            return Err(PepperError::VersionZero);
        }
        if secret.len() < MIN_PEPPER_BYTES {
            return Err(PepperError::TooShort(secret.len()));
        }
        Ok(Pepper { version, secret: secret.to_vec() })
    }

    pub fn version(&self) -> u32 {
        self.version
    }

    /// The traveller key of `identity` under this pepper: 64 lowercase hex digits.
    pub fn traveller_key(&self, identity: &TravellerIdentity) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.secret).expect("HMAC takes keys of any length");
        mac.update(identity.canonical().as_bytes());
        let digest = mac.finalize().into_bytes();
        digest.iter().map(|b| format!("{b:02x}")).collect()
    }
}

/// Who a traveller is, as the pseudonym sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TravellerIdentity {
    Citizen { nik: String },
    Foreigner { nationality: String, passport_number: String },
}

impl TravellerIdentity {
    /// The identity a traveller's form gives: the NIK when there is one, else nationality and
    /// passport number. `nationality` is the normalised alpha-3 code the enrichment computed.
    pub fn of(traveller: &Traveller, nationality: &str) -> Option<TravellerIdentity> {
        match (&traveller.nik, &traveller.passport_number) {
            (Some(nik), _) => Some(TravellerIdentity::citizen(nik)),
            (None, Some(passport)) => Some(TravellerIdentity::foreigner(nationality, passport)),
            (None, None) => None,
        }
    }

    pub fn citizen(nik: &str) -> TravellerIdentity {
        TravellerIdentity::Citizen { nik: nik.trim().to_owned() }
    }

    /// Passport numbers are compared without case, spaces or dashes, as border systems do.
    pub fn foreigner(nationality: &str, passport_number: &str) -> TravellerIdentity {
        TravellerIdentity::Foreigner {
            nationality: nationality.trim().to_ascii_uppercase(),
            passport_number: passport_number.chars().filter(|c| c.is_ascii_alphanumeric()).collect::<String>().to_ascii_uppercase(),
        }
    }

    /// The text the key is computed over. Prefixed by kind, so a NIK and a passport number with
    /// the same characters never share a key.
    fn canonical(&self) -> String {
        match self {
            TravellerIdentity::Citizen { nik } => format!("nik:{nik}"),
            TravellerIdentity::Foreigner { nationality, passport_number } => format!("passport:{nationality}:{passport_number}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pepper(version: u32, secret: &str) -> Pepper {
        Pepper::new(version, secret.as_bytes()).unwrap()
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn the_key_is_hmac_sha256_of_the_canonical_identity() {
        // Checked against an independent computation:
        // printf 'nik:3171044512900001' | openssl dgst -sha256 -hmac 0123456789abcdef0123456789abcdef
        let key = pepper(1, SECRET).traveller_key(&TravellerIdentity::citizen("3171044512900001"));
        assert_eq!(key, "cf6dd989864f9462aba6004d86a42ab68ff410c2df626cb8e35dca1d27d7ce6c");
    }

    #[test]
    fn one_traveller_one_key_and_another_pepper_another_key() {
        let p = pepper(1, SECRET);
        let a = p.traveller_key(&TravellerIdentity::citizen("3171044512900001"));
        assert_eq!(a, p.traveller_key(&TravellerIdentity::citizen(" 3171044512900001 ")));
        assert_ne!(a, p.traveller_key(&TravellerIdentity::citizen("3171044512900002")));
        assert_ne!(a, pepper(2, "another pepper of at least 32 bytes!").traveller_key(&TravellerIdentity::citizen("3171044512900001")));
        let f = p.traveller_key(&TravellerIdentity::foreigner("aus", "pa 123-456"));
        assert_eq!(f, p.traveller_key(&TravellerIdentity::foreigner("AUS", "PA123456")));
        assert_ne!(f, p.traveller_key(&TravellerIdentity::foreigner("NZL", "PA123456")), "a passport number is unique per country only");
    }

    #[test]
    fn short_peppers_and_version_zero_are_refused_and_debug_hides_the_secret() {
        assert_eq!(Pepper::new(1, b"short\n").unwrap_err(), PepperError::TooShort(5));
        assert_eq!(Pepper::new(0, SECRET.as_bytes()).unwrap_err(), PepperError::VersionZero);
        let shown = format!("{:?}", pepper(3, &format!("{SECRET}\n")));
        assert!(!shown.contains(SECRET) && shown.contains("version: 3"), "{shown}");
    }
}
