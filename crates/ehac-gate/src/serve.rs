//! `ehac-gate serve`: the gate app (web/gate, built into dist/ and embedded here) and the
//! current signed trust list, over HTTP for the gates on the local network. The app verifies
//! passes on the device; this server only hands out the app's files and the list, and never
//! sees a pass.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use include_dir::{include_dir, Dir};

/// The built app, committed so that cargo builds without npm (the test command checks it is
/// the build of the sources).
static APP: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../../web/gate/dist");

/// Where the app looks for the trust list unless set up otherwise.
pub const TRUST_LIST_PATH: &str = "/trust-list.cose";

/// What the app may do in the browser: load its own files, fetch its own origin (the trust
/// list), use the camera. Nothing scanned can be sent anywhere else.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; media-src 'self' blob: mediastream:; connect-src 'self'; worker-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

struct Served {
    trust_list: PathBuf,
}

pub fn router(trust_list: PathBuf) -> Router {
    Router::new().route(TRUST_LIST_PATH, get(trust_list_file)).fallback(app_file).with_state(Arc::new(Served { trust_list }))
}

/// The certificate (chain, PEM) and private key (PEM) to serve HTTPS with.
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Serves until SIGINT or SIGTERM. Prints the address it listens on (port 0 picks one).
pub fn run(listen: SocketAddr, trust_list: PathBuf, tls: Option<TlsFiles>) -> Result<()> {
    let acceptor = tls.as_ref().map(tls_acceptor).transpose()?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("binding {listen}"))?;
        let address = listener.local_addr()?;
        let scheme = if acceptor.is_some() { "https" } else { "http" };
        println!("serving the gate app on {scheme}://{address}/ and the trust list {} as {TRUST_LIST_PATH}", trust_list.display());
        let app = router(trust_list);
        match acceptor {
            None => axum::serve(listener, app).with_graceful_shutdown(shutdown()).await.context("serving"),
            Some(acceptor) => {
                serve_tls(listener, app, acceptor).await;
                Ok(())
            }
        }
    })
}

fn tls_acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls::{crypto, ServerConfig};
    let chain = CertificateDer::pem_file_iter(&files.cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading certificates from {}", files.cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(&files.key).with_context(|| format!("reading the private key from {}", files.key.display()))?;
    let mut config = ServerConfig::builder_with_provider(Arc::new(crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the certificate and key")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// axum::serve speaks plain HTTP only: each connection's handshake runs in its own task (a
/// slow or broken client holds up no one), then HTTP/1.1 over it.
async fn serve_tls(listener: tokio::net::TcpListener, app: Router, acceptor: tokio_rustls::TlsAcceptor) {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let shutdown = shutdown();
    tokio::pin!(shutdown);
    loop {
        let stream = tokio::select! {
            _ = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of file descriptors, mostly: wait rather than spin.
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            let Ok(Ok(tls)) = tokio::time::timeout(std::time::Duration::from_secs(10), acceptor.accept(stream)).await else { return };
            let service = hyper_util::service::TowerToHyperService::new(app);
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(tls), service).await;
        });
    }
}

async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit('.').next() {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("webmanifest") => "application/manifest+json",
        Some("json") => "application/json",
        _ => "application/octet-stream",
    }
}

/// A strong validator for the embedded file: the app's files are checked again on every load
/// (`no-cache`) and answered 304 while unchanged, so a new build reaches the gates at once.
fn etag(contents: &[u8]) -> String {
    let mut hasher = std::hash::DefaultHasher::new();
    contents.hash(&mut hasher);
    format!("\"{:016x}\"", hasher.finish())
}

fn set(headers: &mut HeaderMap, name: header::HeaderName, value: &str) {
    headers.insert(name, HeaderValue::from_str(value).expect("a valid header value"));
}

async fn app_file(method: Method, uri: Uri, request_headers: HeaderMap) -> Response {
    if method != Method::GET && method != Method::HEAD {
        return (StatusCode::METHOD_NOT_ALLOWED, [(header::ALLOW, "GET, HEAD")]).into_response();
    }
    let path = match uri.path().trim_start_matches('/') {
        "" => "index.html",
        path => path,
    };
    let Some(file) = APP.get_file(path) else { return StatusCode::NOT_FOUND.into_response() };
    let tag = etag(file.contents());
    let mut response = if request_headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(tag.as_str()) {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        Response::new(Body::from(file.contents()))
    };
    let headers = response.headers_mut();
    set(headers, header::CONTENT_TYPE, content_type(path));
    set(headers, header::ETAG, &tag);
    set(headers, header::CACHE_CONTROL, "no-cache");
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    set(headers, header::CONTENT_SECURITY_POLICY, CONTENT_SECURITY_POLICY);
    set(headers, header::HeaderName::from_static("permissions-policy"), "camera=(self), microphone=(), geolocation=()");
    if path == "sw.js" {
        // The worker sits at the root already; the header lets a proxy mount the app under a
        // path and still give the worker the app's whole scope.
        set(headers, header::HeaderName::from_static("service-worker-allowed"), "/");
    }
    response
}

/// The list as published: read at every request, so a re-signed list (written atomically by
/// the `trust-list` commands) is served at once. Never cached on the way: the gate must see
/// the newest list, and it judges the signature and the version itself.
async fn trust_list_file(State(served): State<Arc<Served>>) -> Response {
    match tokio::fs::read(&served.trust_list).await {
        Ok(bytes) => (
            [
                (header::CONTENT_TYPE, "application/cose; cose-type=\"cose-sign1\""),
                (header::CACHE_CONTROL, "no-store"),
                (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            ],
            bytes,
        )
            .into_response(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => (StatusCode::NOT_FOUND, "no trust list published yet\n").into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("reading the trust list: {e}\n")).into_response(),
    }
}
