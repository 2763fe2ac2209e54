//! The registry file (JSON). It is replaced atomically (write a sibling, fsync, rename), so a
//! gateway re-reading it never sees half a file.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::ClientRegistry;

#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("reading {0}: {1}")]
    Read(PathBuf, std::io::Error),
    #[error("{0} is not a client registry: {1}")]
    Parse(PathBuf, serde_json::Error),
    #[error("writing {0}: {1}")]
    Write(PathBuf, std::io::Error),
}

pub fn load(path: &Path) -> Result<ClientRegistry, FileError> {
    let bytes = std::fs::read(path).map_err(|e| FileError::Read(path.to_owned(), e))?;
    serde_json::from_slice(&bytes).map_err(|e| FileError::Parse(path.to_owned(), e))
}

/// The registry in `path`, or an empty one when there is no such file yet.
pub fn load_or_default(path: &Path) -> Result<ClientRegistry, FileError> {
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ClientRegistry::default()),
        _ => load(path),
    }
}

pub fn save(path: &Path, registry: &ClientRegistry) -> Result<(), FileError> {
    let write = |e| FileError::Write(path.to_owned(), e);
    let mut text = serde_json::to_vec_pretty(registry).expect("a registry serializes");
    text.push(b'\n');
    let mut temporary = path.as_os_str().to_owned();
    temporary.push(".tmp");
    let temporary = PathBuf::from(temporary);
    let mut file = std::fs::File::create(&temporary).map_err(write)?;
    file.write_all(&text).map_err(write)?;
    file.sync_all().map_err(write)?;
    std::fs::rename(&temporary, path).map_err(write)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Client;

    #[test]
    fn a_saved_registry_loads_back_and_a_missing_file_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clients.json");
        assert_eq!(load_or_default(&path).unwrap(), ClientRegistry::default());
        let mut registry = ClientRegistry::default();
        registry.add_client("kiosk", Client { allowed_ports: Some(vec!["CGK".into()]), ..Client::default() }).unwrap();
        let token = registry.issue_key("kiosk", chrono::Utc::now(), None).unwrap();
        save(&path, &registry).unwrap();
        let loaded = load(&path).unwrap();
        assert_eq!(loaded, registry);
        assert!(loaded.authenticate(&token.to_string(), chrono::Utc::now()).is_ok());
        std::fs::write(&path, "{\"clients\": 1}").unwrap();
        assert!(matches!(load(&path), Err(FileError::Parse(..))));
    }

    #[test]
    fn provisioned_tokens_authenticate_as_their_clients() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("clients.json");
        let tokens = crate::provision_for_tests(&path, &["a", "b"]).unwrap();
        let registry = load(&path).unwrap();
        assert_eq!(registry.authenticate(&tokens[1], chrono::Utc::now()).unwrap().client_id, "b");
    }
}
