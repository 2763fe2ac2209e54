//! The client registry: which clients exist, their limits, and their keys (only hashes).
//!
//! Clients and keys are kept apart (`clients` by client id, `keys` by key id) because a client
//! has several keys over its life, two at once while it rotates, and its channel, ports and
//! quota belong to the client, not to one key.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ehac_domain::form::Channel;
use serde::{Deserialize, Serialize};

use crate::token::{Token, TokenError};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClientRegistry {
    #[serde(default)]
    pub clients: BTreeMap<String, Client>,
    #[serde(default)]
    pub keys: BTreeMap<String, Key>,
}

/// A submitting system: an airline app, a web form, a bank of kiosks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Client {
    /// The only channel its declarations may name; any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    /// Departure ports its declarations may name (a kiosk at CGK declares CGK); any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_ports: Option<Vec<String>>,
    /// Sustained declarations per second.
    #[serde(default = "default_rate")]
    pub rate_per_second: u32,
    /// Declarations it may send at once above the sustained rate: a planeload checking in at a
    /// kiosk bank within a minute.
    #[serde(default = "default_burst")]
    pub burst: u32,
}

fn default_rate() -> u32 {
    50
}

fn default_burst() -> u32 {
    300
}

impl Default for Client {
    fn default() -> Self {
        Client { channel: None, allowed_ports: None, rate_per_second: default_rate(), burst: default_burst() }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Key {
    pub client_id: String,
    /// SHA-256 of the secret, hex ([`Token::secret_hash`]).
    pub secret_sha256: String,
    pub status: KeyStatus,
    pub created_at: DateTime<Utc>,
    /// The key is refused from this instant on; never when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_after: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyStatus {
    Active,
    Revoked,
}

/// A presented key that is valid now, and whose it is.
#[derive(Debug, Clone, Copy)]
pub struct Authenticated<'a> {
    pub key_id: &'a str,
    pub client_id: &'a str,
    pub client: &'a Client,
}

/// Why a presented key is refused. The gateway answers every variant but [`AuthError::Token`]
/// with the same 401, so a caller cannot tell a key id that exists from one that does not; the
/// variant is for the gateway's log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error(transparent)]
    Token(#[from] TokenError),
    #[error("no key {0}")]
    UnknownKey(String),
    #[error("wrong secret for key {0}")]
    WrongSecret(String),
    #[error("key {0} is revoked")]
    Revoked(String),
    #[error("key {0} expired")]
    Expired(String),
    #[error("key {0} belongs to client {1}, which is not registered")]
    UnknownClient(String, String),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RegistryError {
    #[error("client {0} is already registered")]
    ClientExists(String),
    #[error("no client {0}")]
    UnknownClient(String),
    #[error("no key {0}")]
    UnknownKey(String),
    #[error("client id {0:?} must be 1-64 characters of A-Z, a-z, 0-9, '.', '-' or '_'")]
    InvalidClientId(String),
}

/// Compared against when a key id is unknown, so that answer takes as long as a wrong secret.
const NO_SUCH_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

impl ClientRegistry {
    /// Decides whether `presented` is a valid key at `now`.
    pub fn authenticate(&self, presented: &str, now: DateTime<Utc>) -> Result<Authenticated<'_>, AuthError> {
        let token = Token::parse(presented)?;
        let Some((key_id, key)) = self.keys.get_key_value(&token.key_id) else {
            let _ = token.matches(NO_SUCH_HASH);
            return Err(AuthError::UnknownKey(token.key_id));
        };
        if !token.matches(&key.secret_sha256) {
            return Err(AuthError::WrongSecret(token.key_id));
        }
        if key.status == KeyStatus::Revoked {
            return Err(AuthError::Revoked(token.key_id));
        }
        if key.not_after.is_some_and(|end| end <= now) {
            return Err(AuthError::Expired(token.key_id));
        }
        let Some((client_id, client)) = self.clients.get_key_value(&key.client_id) else {
            return Err(AuthError::UnknownClient(token.key_id, key.client_id.clone()));
        };
        Ok(Authenticated { key_id, client_id, client })
    }

    pub fn add_client(&mut self, client_id: &str, client: Client) -> Result<(), RegistryError> {
        let valid = (1..=64).contains(&client_id.len()) && client_id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !valid {
            return Err(RegistryError::InvalidClientId(client_id.to_owned()));
        }
        if self.clients.contains_key(client_id) {
            return Err(RegistryError::ClientExists(client_id.to_owned()));
        }
        self.clients.insert(client_id.to_owned(), client);
        Ok(())
    }

    /// A new active key for a client. The returned token is the only copy of its secret.
    pub fn issue_key(&mut self, client_id: &str, now: DateTime<Utc>, not_after: Option<DateTime<Utc>>) -> Result<Token, RegistryError> {
        if !self.clients.contains_key(client_id) {
            return Err(RegistryError::UnknownClient(client_id.to_owned()));
        }
        let token = loop {
            let token = Token::generate();
            if !self.keys.contains_key(&token.key_id) {
                break token;
            }
        };
        let key = Key {
            client_id: client_id.to_owned(),
            secret_sha256: token.secret_hash(),
            status: KeyStatus::Active,
            created_at: now,
            not_after,
        };
        self.keys.insert(token.key_id.clone(), key);
        Ok(token)
    }

    /// Issues a new key and lets the client's other active keys run out after `overlap`, so the
    /// client can deploy the new key while the old one still works.
    pub fn rotate(&mut self, client_id: &str, now: DateTime<Utc>, overlap: chrono::Duration) -> Result<Token, RegistryError> {
        let token = self.issue_key(client_id, now, None)?;
        let end = now + overlap;
        for (key_id, key) in self.keys.iter_mut() {
            if key.client_id == client_id && *key_id != token.key_id && key.status == KeyStatus::Active {
                key.not_after = Some(key.not_after.map_or(end, |e| e.min(end)));
            }
        }
        Ok(token)
    }

    pub fn revoke_key(&mut self, key_id: &str) -> Result<(), RegistryError> {
        let key = self.keys.get_mut(key_id).ok_or_else(|| RegistryError::UnknownKey(key_id.to_owned()))?;
        key.status = KeyStatus::Revoked;
        Ok(())
    }

    /// Revokes every key of a client; returns how many were active.
    pub fn revoke_client(&mut self, client_id: &str) -> Result<usize, RegistryError> {
        if !self.clients.contains_key(client_id) {
            return Err(RegistryError::UnknownClient(client_id.to_owned()));
        }
        let mut revoked = 0;
        for key in self.keys.values_mut().filter(|k| k.client_id == client_id && k.status == KeyStatus::Active) {
            key.status = KeyStatus::Revoked;
            revoked += 1;
        }
        Ok(revoked)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-12-20T08:00:00Z".parse().unwrap()
    }

    fn with_client(id: &str) -> (ClientRegistry, String) {
        let mut registry = ClientRegistry::default();
        registry.add_client(id, Client::default()).unwrap();
        let token = registry.issue_key(id, now(), None).unwrap().to_string();
        (registry, token)
    }

    #[test]
    fn a_valid_key_names_its_client() {
        let (registry, token) = with_client("kiosk-cgk-t3");
        let auth = registry.authenticate(&token, now()).unwrap();
        assert_eq!(auth.client_id, "kiosk-cgk-t3");
        assert_eq!(auth.client.burst, 300);
    }

    #[test]
    fn unknown_key_wrong_secret_revoked_and_expired_are_refused() {
        let (mut registry, token) = with_client("app");
        let parsed = Token::parse(&token).unwrap();
        let other = Token { key_id: "ZZZZZZZZZZZZ".into(), ..parsed.clone() }.to_string();
        assert_eq!(registry.authenticate(&other, now()).unwrap_err(), AuthError::UnknownKey("ZZZZZZZZZZZZ".into()));
        let wrong = Token { secret: [7; 32], ..parsed.clone() }.to_string();
        assert_eq!(registry.authenticate(&wrong, now()).unwrap_err(), AuthError::WrongSecret(parsed.key_id.clone()));

        registry.keys.get_mut(&parsed.key_id).unwrap().not_after = Some(now());
        assert_eq!(registry.authenticate(&token, now()).unwrap_err(), AuthError::Expired(parsed.key_id.clone()));
        assert!(registry.authenticate(&token, now() - chrono::Duration::seconds(1)).is_ok());

        registry.revoke_key(&parsed.key_id).unwrap();
        assert_eq!(registry.authenticate(&token, now() - chrono::Duration::seconds(1)).unwrap_err(), AuthError::Revoked(parsed.key_id));
    }

    #[test]
    fn rotation_keeps_both_keys_valid_during_the_overlap_only() {
        let (mut registry, old) = with_client("web");
        let new = registry.rotate("web", now(), chrono::Duration::hours(24)).unwrap().to_string();
        for token in [&old, &new] {
            assert!(registry.authenticate(token, now() + chrono::Duration::hours(23)).is_ok());
        }
        let later = now() + chrono::Duration::hours(24);
        assert!(matches!(registry.authenticate(&old, later), Err(AuthError::Expired(_))));
        assert!(registry.authenticate(&new, later).is_ok());
    }

    #[test]
    fn revoking_a_client_revokes_all_its_keys() {
        let (mut registry, old) = with_client("web");
        let new = registry.rotate("web", now(), chrono::Duration::hours(1)).unwrap().to_string();
        assert_eq!(registry.revoke_client("web"), Ok(2));
        for token in [old, new] {
            assert!(matches!(registry.authenticate(&token, now()), Err(AuthError::Revoked(_))));
        }
    }

    #[test]
    fn client_ids_are_checked() {
        let mut registry = ClientRegistry::default();
        assert!(matches!(registry.add_client("", Client::default()), Err(RegistryError::InvalidClientId(_))));
        assert!(matches!(registry.add_client("a b", Client::default()), Err(RegistryError::InvalidClientId(_))));
        registry.add_client("a", Client::default()).unwrap();
        assert_eq!(registry.add_client("a", Client::default()), Err(RegistryError::ClientExists("a".into())));
        assert!(matches!(registry.issue_key("b", now(), None), Err(RegistryError::UnknownClient(_))));
    }
}
