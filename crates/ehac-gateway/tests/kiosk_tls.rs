//! Kiosk client certificates (mutual TLS) on a real gateway: a private CA made here with
//! rcgen, kiosk certificates naming their client in a SAN URI, a CRL the gateway re-reads while
//! running. As in access.rs, nothing listens on the broker port, so accepted declarations go to
//! the spool. Requests are written by hand over TLS, so a kept-alive connection is really one.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ehac_domain::sample::{Flaw, SampleGenerator};
use ehac_gateway::tls::{TlsArgs, CLIENT_URI_PREFIX};
use ehac_gateway::{AccessArgs, Config};
use rcgen::{
    BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair,
    KeyUsagePurpose, RevokedCertParams, SanType, SerialNumber,
};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufStream};
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio_rustls::rustls::{self, ClientConfig, RootCertStore};
use tokio_util::sync::CancellationToken;

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().unwrap();
        Ca { cert: params.self_signed(&key).unwrap(), key }
    }

    /// (certificate PEM, key PEM) of a kiosk that names `client_id`.
    fn kiosk(&self, client_id: &str, serial: u8) -> (String, String) {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(DnType::CommonName, client_id);
        params.subject_alt_names = vec![SanType::URI(format!("{CLIENT_URI_PREFIX}{client_id}").try_into().unwrap())];
        params.serial_number = Some(SerialNumber::from(vec![serial]));
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        (params.signed_by(&key, &self.cert, &self.key).unwrap().pem(), key.serialize_pem())
    }

    fn server(&self) -> (String, String) {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().unwrap();
        (params.signed_by(&key, &self.cert, &self.key).unwrap().pem(), key.serialize_pem())
    }

    fn crl(&self, number: u8, revoked_serials: &[u8]) -> String {
        let revoked_certs = revoked_serials
            .iter()
            .map(|s| RevokedCertParams {
                serial_number: SerialNumber::from(vec![*s]),
                revocation_time: rcgen::date_time_ymd(2026, 1, 1),
                reason_code: Some(rcgen::RevocationReason::KeyCompromise),
                invalidity_date: None,
            })
            .collect();
        let params = CertificateRevocationListParams {
            this_update: rcgen::date_time_ymd(2026, 1, 1),
            next_update: rcgen::date_time_ymd(2036, 1, 1),
            crl_number: SerialNumber::from(vec![number]),
            issuing_distribution_point: None,
            revoked_certs,
            key_identifier_method: KeyIdMethod::Sha256,
        };
        params.signed_by(&self.cert, &self.key).unwrap().pem().unwrap()
    }
}

struct Gateway {
    addr: std::net::SocketAddr,
    crl_file: PathBuf,
    api_key: String,
    shutdown: CancellationToken,
    _dir: tempfile::TempDir,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// A gateway whose registry has kiosk-a, kiosk-b and an app with an API key; TLS with `ca`
/// as the client CA and an empty CRL.
async fn gateway(ca: &Ca, cert_required: bool) -> Gateway {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, text: &str| -> PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let clients_file = dir.path().join("clients.json");
    let api_key = ehac_clients::provision_for_tests(&clients_file, &["app-1", "kiosk-a", "kiosk-b"]).unwrap().remove(0);
    let (server_cert, server_key) = ca.server();
    let tls = TlsArgs {
        tls_cert: Some(write("server.pem", &server_cert)),
        tls_key: Some(write("server.key", &server_key)),
        tls_client_ca: Some(write("ca.pem", &ca.cert.pem())),
        tls_client_crl: Some(write("ca.crl.pem", &ca.crl(1, &[]))),
        tls_client_cert_required: cert_required,
    };
    let crl_file = tls.tls_client_crl.clone().unwrap();
    let shutdown = CancellationToken::new();
    let config = Config {
        accept_after: ehac_gateway::AcceptAfter::BrokerAck,
        produce_timeout_ms: 50,
        // Its broker never comes: no drain of the spool on exit.
        spool_drain_on_exit_secs: 0,
        ..Config::on_loopback(
            "127.0.0.1:1",
            dir.path().join("spool"),
            AccessArgs { clients_file: Some(clients_file), tls, ..AccessArgs::default() },
        )
    };
    let running = ehac_gateway::start(config, shutdown.clone()).await.unwrap();
    Gateway { addr: running.addr, crl_file, api_key, shutdown, _dir: dir }
}

type Connection = BufStream<tokio_rustls::client::TlsStream<tokio::net::TcpStream>>;

/// A TLS connection trusting `ca` for the server, presenting `kiosk` if given.
async fn connect(gateway: &Gateway, ca: &Ca, kiosk: Option<&(String, String)>) -> std::io::Result<Connection> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.cert.der().clone()).unwrap();
    let builder = ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match kiosk {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => {
            let chain = vec![CertificateDer::from_pem_slice(cert.as_bytes()).unwrap()];
            builder.with_client_auth_cert(chain, PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap()).unwrap()
        }
    };
    let tcp = tokio::net::TcpStream::connect(gateway.addr).await?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(ServerName::try_from("localhost").unwrap(), tcp).await?;
    Ok(BufStream::new(stream))
}

fn declaration() -> Vec<u8> {
    // No client_id: the certificate's (or the key's) client is the declaration's.
    serde_json::to_vec(&SampleGenerator::new(7).declaration(chrono::Utc::now(), "", Flaw::None)).unwrap()
}

/// One request on the connection: the status and the answer, or the I/O error (a refused
/// handshake shows on the client only once it reads: TLS 1.3 finishes the client's side first).
async fn post(connection: &mut Connection, authorization: Option<&str>) -> std::io::Result<(u16, serde_json::Value)> {
    let body = declaration();
    let authorization = authorization.map(|token| format!("authorization: Bearer {token}\r\n")).unwrap_or_default();
    let head = format!(
        "POST /v1/declarations HTTP/1.1\r\nhost: gateway\r\n{authorization}content-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    connection.write_all(head.as_bytes()).await?;
    connection.write_all(&body).await?;
    connection.flush().await?;
    let mut status_line = String::new();
    if connection.read_line(&mut status_line).await? == 0 {
        return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "closed before an answer"));
    }
    let mut length = 0;
    loop {
        let mut line = String::new();
        connection.read_line(&mut line).await?;
        if line == "\r\n" {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("content-length:") {
            length = value.trim().parse().unwrap();
        }
    }
    let mut answer = vec![0; length];
    connection.read_exact(&mut answer).await?;
    Ok((status_line[9..12].parse().unwrap(), serde_json::from_slice(&answer).unwrap_or_default()))
}

/// The handshake or the first request on the connection fails.
async fn refused(gateway: &Gateway, ca: &Ca, kiosk: Option<&(String, String)>) -> bool {
    match connect(gateway, ca, kiosk).await {
        Err(_) => true,
        Ok(mut connection) => post(&mut connection, None).await.is_err(),
    }
}

#[tokio::test]
async fn a_kiosk_certificate_from_the_ca_is_its_client_and_needs_no_key() {
    let ca = Ca::new("e-HAC kiosk CA");
    let gateway = gateway(&ca, true).await;
    let kiosk = ca.kiosk("kiosk-a", 0x11);
    let mut connection = connect(&gateway, &ca, Some(&kiosk)).await.unwrap();
    let (status, answer) = post(&mut connection, None).await.unwrap();
    assert_eq!(status, 202, "{answer}");
    assert!(answer["declaration_id"].is_string(), "{answer}");
    // A key of another client on the kiosk's connection is refused, its own key is not needed.
    let (status, answer) = post(&mut connection, Some(&gateway.api_key)).await.unwrap();
    assert_eq!((status, answer["errors"][0]["field"].as_str()), (403, Some("Authorization")), "{answer}");
}

#[tokio::test]
async fn no_certificate_or_one_from_a_foreign_ca_is_refused_at_the_handshake() {
    let ca = Ca::new("e-HAC kiosk CA");
    let gateway = gateway(&ca, true).await;
    assert!(refused(&gateway, &ca, None).await, "no client certificate on a kiosk-only listener");
    let foreign = Ca::new("someone else's CA").kiosk("kiosk-a", 0x12);
    assert!(refused(&gateway, &ca, Some(&foreign)).await, "a certificate from another CA");
    // The listener still serves the kiosk that has a good certificate.
    let mut connection = connect(&gateway, &ca, Some(&ca.kiosk("kiosk-b", 0x13))).await.unwrap();
    assert_eq!(post(&mut connection, None).await.unwrap().0, 202);
}

#[tokio::test]
async fn a_certificate_of_an_unregistered_client_gets_401() {
    let ca = Ca::new("e-HAC kiosk CA");
    let gateway = gateway(&ca, true).await;
    let mut connection = connect(&gateway, &ca, Some(&ca.kiosk("kiosk-nobody-registered", 0x14))).await.unwrap();
    assert_eq!(post(&mut connection, None).await.unwrap().0, 401);
}

#[tokio::test]
async fn a_revoked_certificate_is_refused_within_5_s_on_a_kept_alive_connection_and_at_the_next_handshake() {
    let ca = Ca::new("e-HAC kiosk CA");
    let gateway = gateway(&ca, true).await;
    let kiosk = ca.kiosk("kiosk-a", 0x21);
    let mut kept_alive = connect(&gateway, &ca, Some(&kiosk)).await.unwrap();
    assert_eq!(post(&mut kept_alive, None).await.unwrap().0, 202);

    std::fs::write(&gateway.crl_file, ca.crl(2, &[0x21])).unwrap();
    let revoked_at = Instant::now();
    let status = loop {
        let (status, _) = post(&mut kept_alive, None).await.expect("the connection stays open");
        if status != 202 || revoked_at.elapsed() > Duration::from_secs(10) {
            break status;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(status, 401);
    assert!(revoked_at.elapsed() < Duration::from_secs(5), "refused after {:?}", revoked_at.elapsed());
    assert!(refused(&gateway, &ca, Some(&kiosk)).await, "a new handshake with the revoked certificate");
    let mut other = connect(&gateway, &ca, Some(&ca.kiosk("kiosk-b", 0x22))).await.unwrap();
    assert_eq!(post(&mut other, None).await.unwrap().0, 202, "other kiosks keep working");
}

#[tokio::test]
async fn with_certificates_optional_api_key_clients_connect_without_one() {
    let ca = Ca::new("e-HAC kiosk CA");
    let gateway = gateway(&ca, false).await;
    let mut app = connect(&gateway, &ca, None).await.unwrap();
    assert_eq!(post(&mut app, Some(&gateway.api_key)).await.unwrap().0, 202);
    assert_eq!(post(&mut app, None).await.unwrap().0, 401, "and without a certificate a key is required");
    let mut kiosk = connect(&gateway, &ca, Some(&ca.kiosk("kiosk-a", 0x31))).await.unwrap();
    assert_eq!(post(&mut kiosk, None).await.unwrap().0, 202);
    let foreign = Ca::new("someone else's CA").kiosk("kiosk-a", 0x32);
    assert!(refused(&gateway, &ca, Some(&foreign)).await, "a presented certificate is still verified");
}
