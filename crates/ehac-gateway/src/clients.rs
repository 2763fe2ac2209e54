//! The client registry as this gateway sees it: loaded at start, re-read while running.
//!
//! The file's modification time and length are polled every second rather than watched with
//! inotify (`notify`): `ehac clients` replaces the file by rename, which a watch on the file
//! itself misses, and a one-second poll of one `stat` is cheap and keeps revocation well inside
//! its 5 s promise. Every request is checked against the registry current at that moment, so a
//! revoked key stops working on connections that are already open.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use ehac_clients::file;
pub use ehac_clients::provision_for_tests;
use ehac_clients::ClientRegistry;
use tokio_util::sync::CancellationToken;

/// The registry currently in force; cheap to read on every request.
#[derive(Clone)]
pub struct Registry {
    current: Arc<RwLock<Arc<ClientRegistry>>>,
    /// The file's stamp as it was just before the registry in force was read.
    loaded_stamp: Option<Stamp>,
}

type Stamp = (SystemTime, u64);

fn stamp(path: &Path) -> Option<Stamp> {
    std::fs::metadata(path).ok().map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))
}

impl Registry {
    /// Loads `path`; a gateway with a clients file it cannot read does not start.
    pub fn load(path: &Path) -> anyhow::Result<Registry> {
        // Stamped before reading: a change in between is read again on the first poll.
        let loaded_stamp = stamp(path);
        let registry = file::load(path)?;
        tracing::info!(path = %path.display(), clients = registry.clients.len(), keys = registry.keys.len(), "client registry loaded");
        Ok(Registry { current: Arc::new(RwLock::new(Arc::new(registry))), loaded_stamp })
    }

    pub fn current(&self) -> Arc<ClientRegistry> {
        self.current.read().expect("registry lock").clone()
    }

    /// Re-reads `path` whenever its modification time or length changes. A file that does not
    /// parse is logged and the registry in force stays: a typo must not lock every client out.
    pub async fn watch(self, path: PathBuf, every: Duration, shutdown: CancellationToken) {
        let mut seen = self.loaded_stamp;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let now = stamp(&path);
            if now == seen {
                continue;
            }
            match file::load(&path) {
                Ok(registry) => {
                    tracing::info!(clients = registry.clients.len(), keys = registry.keys.len(), "client registry reloaded");
                    *self.current.write().expect("registry lock") = Arc::new(registry);
                    seen = now;
                }
                // Retried on the next tick: the stamp is not recorded.
                Err(e) => tracing::error!(error = %e, "client registry not reloaded; the previous one stays in force"),
            }
        }
    }
}
