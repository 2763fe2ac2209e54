//! Who may submit declarations.
//!
//! - [`token`]: the API key format `ehac_<key id>_<secret>_<checksum>`, its parser, the
//!   checksum and the hash the gateway keeps instead of the secret. Pure, no I/O.
//! - [`registry`]: the client registry (clients and their keys) and the decision whether a
//!   presented token is a client's valid key right now. Pure, no I/O.
//! - [`file`]: reading and atomically replacing the registry file; used by the gateway (which
//!   re-reads it while running) and by `ehac clients`.
//!
//! The crate sits beside `ehac-domain` so that the CLI manages keys without depending on the
//! gateway, and so the rules of a key can be tested without a server.

pub mod file;
pub mod registry;
pub mod token;

pub use registry::{AuthError, Authenticated, Client, ClientRegistry, Key, KeyStatus, RegistryError};
pub use token::{Token, TokenError};

/// Writes a registry file with one active key per client (default quota) and returns the
/// tokens in the same order: for tests that start a gateway with `--clients-file`.
pub fn provision_for_tests(path: &std::path::Path, client_ids: &[&str]) -> Result<Vec<String>, file::FileError> {
    let mut registry = if path.exists() { file::load(path)? } else { ClientRegistry::default() };
    let now = chrono::Utc::now();
    let tokens = client_ids
        .iter()
        .map(|id| {
            if !registry.clients.contains_key(*id) {
                registry.add_client(id, Client::default()).expect("a new client");
            }
            registry.issue_key(id, now, None).expect("the client exists").to_string()
        })
        .collect();
    file::save(path, &registry)?;
    Ok(tokens)
}
