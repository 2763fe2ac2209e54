//! TLS on the public listener, and kiosk client certificates (mutual TLS).
//!
//! A kiosk stands in a public hall: a bearer key copied off it works from anywhere, a private
//! key in its certificate store does not leave it. So a kiosk may present a certificate from
//! the e-HAC private CA; its subject alternative name `urn:ehac:client:<client id>` names the
//! client, which must be in the client registry (for its quota and policy).
//!
//! The CA bundle, the CRL and the server's own certificate are polled every second, like the
//! client registry ([`crate::clients`]): a changed file builds a new rustls config that the next
//! handshake uses, and the serials the CRL revokes are refused on every request, so a revoked
//! kiosk is cut off on connections it already holds open too. A file that does not parse is
//! logged and the config in force stays.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use anyhow::Context;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{self, RootCertStore, ServerConfig};
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;

/// The SAN URI prefix that names a client in its certificate.
pub const CLIENT_URI_PREFIX: &str = "urn:ehac:client:";

#[derive(clap::Args, Debug, Clone, Default)]
pub struct TlsArgs {
    /// The gateway's certificate chain (PEM); with `--tls-key`, the public listener speaks TLS.
    #[arg(long, env = "EHAC_GATEWAY_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    #[arg(long, env = "EHAC_GATEWAY_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// CA certificates (PEM) that sign kiosk client certificates; turns on mutual TLS.
    #[arg(long, env = "EHAC_GATEWAY_TLS_CLIENT_CA", requires = "tls_cert")]
    pub tls_client_ca: Option<PathBuf>,
    /// Certificate revocation lists (PEM) of that CA; re-read while running.
    #[arg(long, env = "EHAC_GATEWAY_TLS_CLIENT_CRL", requires = "tls_client_ca")]
    pub tls_client_crl: Option<PathBuf>,
    /// With a client CA: refuse the handshake without a client certificate (a kiosk-only
    /// listener), rather than let API-key clients connect without one.
    #[arg(long, env = "EHAC_GATEWAY_TLS_CLIENT_CERT_REQUIRED")]
    pub tls_client_cert_required: bool,
}

/// The client a connection's certificate names, and the certificate's serial.
#[derive(Clone, Debug)]
pub struct CertifiedClient {
    pub client_id: String,
    pub serial: Vec<u8>,
}

/// What a connection's handshake and every request on it are checked against.
struct InForce {
    acceptor: TlsAcceptor,
    revoked_serials: HashSet<Vec<u8>>,
}

#[derive(Clone)]
pub struct Tls {
    args: TlsArgs,
    current: Arc<RwLock<Arc<InForce>>>,
}

impl Tls {
    /// `None` without `--tls-cert`; an error when a file is missing or does not parse (a gateway
    /// that cannot set up the TLS it was asked for does not start).
    pub fn load(args: &TlsArgs) -> anyhow::Result<Option<Tls>> {
        if args.tls_cert.is_none() {
            return Ok(None);
        }
        let in_force = build(args)?;
        tracing::info!(client_ca = args.tls_client_ca.is_some(), revoked = in_force.revoked_serials.len(), "TLS configured");
        Ok(Some(Tls { args: args.clone(), current: Arc::new(RwLock::new(Arc::new(in_force))) }))
    }

    pub fn acceptor(&self) -> TlsAcceptor {
        self.current.read().expect("tls lock").acceptor.clone()
    }

    pub fn is_revoked(&self, serial: &[u8]) -> bool {
        self.current.read().expect("tls lock").revoked_serials.contains(serial)
    }

    /// Rebuilds the config whenever one of its files changes.
    pub async fn watch(self, every: Duration, shutdown: CancellationToken) {
        let files: Vec<PathBuf> = [&self.args.tls_cert, &self.args.tls_key, &self.args.tls_client_ca, &self.args.tls_client_crl]
            .into_iter()
            .flatten()
            .cloned()
            .collect();
        let mut seen = stamps(&files);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let now = stamps(&files);
            if now == seen {
                continue;
            }
            match build(&self.args) {
                Ok(in_force) => {
                    tracing::info!(revoked = in_force.revoked_serials.len(), "TLS files reloaded");
                    *self.current.write().expect("tls lock") = Arc::new(in_force);
                    seen = now;
                }
                Err(e) => tracing::error!(error = format!("{e:#}"), "TLS files not reloaded; the previous config stays in force"),
            }
        }
    }
}

fn stamps(files: &[PathBuf]) -> Vec<Option<(SystemTime, u64)>> {
    files.iter().map(|f| std::fs::metadata(f).ok().map(|m| (m.modified().unwrap_or(SystemTime::UNIX_EPOCH), m.len()))).collect()
}

fn build(args: &TlsArgs) -> anyhow::Result<InForce> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let (cert, key) = (args.tls_cert.as_ref().context("--tls-cert")?, args.tls_key.as_ref().context("--tls-key")?);
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading certificates from {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("reading the private key from {}", key.display()))?;
    let builder = ServerConfig::builder_with_provider(provider.clone()).with_safe_default_protocol_versions()?;
    let mut revoked_serials = HashSet::new();
    let builder = match &args.tls_client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in CertificateDer::pem_file_iter(ca).with_context(|| format!("reading {}", ca.display()))? {
                roots.add(cert.with_context(|| format!("reading {}", ca.display()))?)?;
            }
            let crls = match &args.tls_client_crl {
                None => Vec::new(),
                Some(path) => read_crls(path)?,
            };
            for crl in &crls {
                revoked_serials
                    .extend(revoked_in(crl).with_context(|| format!("reading {}", args.tls_client_crl.as_ref().unwrap().display()))?);
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider).with_crls(crls);
            let verifier = if args.tls_client_cert_required { verifier } else { verifier.allow_unauthenticated() };
            builder.with_client_cert_verifier(verifier.build()?)
        }
    };
    let mut config = builder.with_single_cert(chain, key).context("the gateway's certificate and key")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(InForce { acceptor: TlsAcceptor::from(Arc::new(config)), revoked_serials })
}

fn read_crls(path: &Path) -> anyhow::Result<Vec<CertificateRevocationListDer<'static>>> {
    CertificateRevocationListDer::pem_file_iter(path)
        .and_then(|crls| crls.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading CRLs from {}", path.display()))
}

/// Serials (big-endian bytes, no leading zeros) that a CRL revokes.
fn revoked_in(crl: &CertificateRevocationListDer) -> anyhow::Result<Vec<Vec<u8>>> {
    let (_, crl) = x509_parser::parse_x509_crl(crl.as_ref()).map_err(|e| anyhow::anyhow!("not a CRL: {e}"))?;
    Ok(crl.iter_revoked_certificates().map(|r| trim(r.raw_serial())).collect())
}

fn trim(serial: &[u8]) -> Vec<u8> {
    let start = serial.iter().position(|b| *b != 0).unwrap_or(serial.len().saturating_sub(1));
    serial[start..].to_vec()
}

/// The client a verified client certificate names: its SAN URI `urn:ehac:client:<id>`.
pub fn certified_client(cert: &CertificateDer) -> Option<CertifiedClient> {
    let (_, parsed) = x509_parser::parse_x509_certificate(cert.as_ref()).ok()?;
    let names = parsed.subject_alternative_name().ok()??;
    let client_id = names.value.general_names.iter().find_map(|name| match name {
        x509_parser::extensions::GeneralName::URI(uri) => uri.strip_prefix(CLIENT_URI_PREFIX).filter(|id| !id.is_empty()),
        _ => None,
    })?;
    Some(CertifiedClient { client_id: client_id.to_owned(), serial: trim(parsed.raw_serial()) })
}
