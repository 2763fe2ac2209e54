//! `ehac-gate serve` over real HTTP: the embedded gate app with the headers its service worker
//! and camera need, and the published trust list, read again at every request.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

struct Server {
    child: Child,
    address: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(trust_list: &std::path::Path, extra: &[&str]) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_ehac-gate"))
        .args(["serve", "--listen", "127.0.0.1:0", "--trust-list"])
        .arg(trust_list)
        .args(extra)
        .stdout(Stdio::piped())
        .spawn()
        .expect("ehac-gate serve starts");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let address = line.split("://").nth(1).and_then(|rest| rest.split('/').next()).expect("the address it listens on").to_owned();
    Server { child, address }
}

/// One HTTP/1.1 request over `stream`: (status, headers lower-cased, body).
fn exchange(mut stream: impl Read + Write, host: &str, path: &str, extra: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    write!(stream, "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{extra}\r\n").unwrap();
    let mut response = Vec::new();
    if let Err(e) = stream.read_to_end(&mut response) {
        // A TLS peer that closes without close_notify: what arrived is the whole response.
        assert_eq!(e.kind(), std::io::ErrorKind::UnexpectedEof, "{e}");
    }
    let split = response.windows(4).position(|w| w == b"\r\n\r\n").expect("a header block");
    let head = String::from_utf8(response[..split].to_vec()).unwrap();
    let mut lines = head.lines();
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines.filter_map(|l| l.split_once(": ")).map(|(k, v)| (k.to_ascii_lowercase(), v.to_owned())).collect();
    (status, headers, response[split + 4..].to_vec())
}

fn get(server: &Server, path: &str, extra: &str) -> (u16, Vec<(String, String)>, Vec<u8>) {
    exchange(TcpStream::connect(&server.address).unwrap(), &server.address, path, extra)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

#[test]
fn serves_the_embedded_app_and_the_current_trust_list() {
    let dir = tempfile::tempdir().unwrap();
    let list = dir.path().join("published.cose");
    let server = serve(&list, &[]);

    let (status, headers, body) = get(&server, "/", "");
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("text/html; charset=utf-8"));
    assert_eq!(header(&headers, "cache-control"), Some("no-cache"));
    assert!(header(&headers, "content-security-policy").is_some_and(|csp| csp.contains("connect-src 'self'")));
    assert_eq!(body, std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/../../web/gate/dist/index.html")).unwrap());
    // Unchanged since the last load: 304 with no body.
    let etag = header(&headers, "etag").unwrap().to_owned();
    let (status, _, body) = get(&server, "/", &format!("If-None-Match: {etag}\r\n"));
    assert_eq!((status, body.len()), (304, 0));

    let (status, headers, _) = get(&server, "/sw.js", "");
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-type"), Some("text/javascript; charset=utf-8"));
    assert_eq!(header(&headers, "service-worker-allowed"), Some("/"));
    let (_, headers, _) = get(&server, "/manifest.webmanifest", "");
    assert_eq!(header(&headers, "content-type"), Some("application/manifest+json"));
    assert_eq!(get(&server, "/no-such-file.js", "").0, 404);

    // No list published yet, then one, then a re-signed one: each request reads the file.
    assert_eq!(get(&server, "/trust-list.cose", "").0, 404);
    std::fs::write(&list, b"version one").unwrap();
    let (status, headers, body) = get(&server, "/trust-list.cose", "");
    assert_eq!((status, body.as_slice()), (200, &b"version one"[..]));
    assert_eq!(header(&headers, "cache-control"), Some("no-store"));
    assert!(header(&headers, "content-type").is_some_and(|t| t.starts_with("application/cose")));
    std::fs::write(&list, b"version two").unwrap();
    assert_eq!(get(&server, "/trust-list.cose", "").2, b"version two");
}

#[test]
fn serves_https_with_the_given_certificate() {
    use tokio_rustls::rustls::{self, pki_types::ServerName};
    let dir = tempfile::tempdir().unwrap();
    let certified = rcgen::generate_simple_self_signed(vec!["gate.cgk.example".into()]).unwrap();
    let (cert, key) = (dir.path().join("gate.pem"), dir.path().join("gate.key.pem"));
    std::fs::write(&cert, certified.cert.pem()).unwrap();
    std::fs::write(&key, certified.key_pair.serialize_pem()).unwrap();
    std::fs::write(dir.path().join("published.cose"), b"a list").unwrap();
    let server = serve(&dir.path().join("published.cose"), &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);

    // A device that trusts the certificate, as one whose CA was installed by device management.
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certified.cert.der().clone()).unwrap();
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connection = rustls::ClientConnection::new(std::sync::Arc::new(config), ServerName::try_from("gate.cgk.example").unwrap()).unwrap();
    let tls = rustls::StreamOwned::new(connection, TcpStream::connect(&server.address).unwrap());
    let (status, headers, body) = exchange(tls, "gate.cgk.example", "/trust-list.cose", "");
    assert_eq!((status, body.as_slice()), (200, &b"a list"[..]));
    assert!(header(&headers, "content-type").is_some_and(|t| t.starts_with("application/cose")));

    // Plain HTTP on the TLS port gets no page.
    let mut plain = TcpStream::connect(&server.address).unwrap();
    write!(plain, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = plain.read_to_end(&mut answer);
    assert!(!answer.starts_with(b"HTTP/1.1 200"), "served a page over plain HTTP");
}
