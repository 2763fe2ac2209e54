//! The public listener's accept loop. It is ours rather than `axum::serve` for what a front
//! door on the internet needs and axum does not set: a deadline for a request's headers (a
//! client that trickles them, slowloris, is cut off), a cap on open connections, the peer
//! address for the per-address limits, and TLS with kiosk client certificates ([`crate::tls`]).
//! The body's deadline and the caps on requests in flight are the handlers' ([`crate::in_flight`]):
//! they depend on who the caller is and on when the body has arrived.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::Request;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::tls::{certified_client, CertifiedClient, Tls};

pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
}

/// Serves `app` on `listener` until `shutdown`, then lets open requests finish (up to 30 s).
/// With `tls`, each connection's handshake runs in its own task under the header deadline, and
/// the client a verified certificate names rides on every request of that connection.
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, tls: Option<Tls>, shutdown: CancellationToken) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(Some(limits.header_read_timeout));
    builder.http2().timer(TokioTimer::new());
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors, mostly: wait rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(connection_permit) = connections.clone().try_acquire_owned() else {
            tracing::warn!(%peer, "connection refused: too many open connections");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (app, builder, watcher) = (app.clone(), builder.clone(), graceful.watcher());
        let acceptor = tls.as_ref().map(Tls::acceptor);
        let handshake_deadline = limits.header_read_timeout;
        tokio::spawn(async move {
            let ended = match acceptor {
                None => {
                    let service = service(app, peer, None);
                    watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned()).await
                }
                Some(acceptor) => {
                    let stream = match tokio::time::timeout(handshake_deadline, acceptor.accept(stream)).await {
                        Ok(Ok(stream)) => stream,
                        Ok(Err(e)) => return tracing::info!(error = %e, %peer, "TLS handshake refused"),
                        Err(_) => return tracing::info!(%peer, "TLS handshake not finished within the header deadline"),
                    };
                    let certified = stream.get_ref().1.peer_certificates().and_then(|chain| chain.first()).and_then(certified_client);
                    let service = service(app, peer, certified);
                    watcher.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned()).await
                }
            };
            if let Err(e) = ended {
                tracing::debug!(error = %e, %peer, "connection ended");
            }
            drop(connection_permit);
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(30), graceful.shutdown()).await.is_err() {
        tracing::warn!("requests still open 30 s after shutdown; closing them");
    }
}

/// One connection's request handler: the peer address (and the certified client) on each
/// request.
fn service(
    app: Router,
    peer: SocketAddr,
    certified: Option<CertifiedClient>,
) -> impl hyper::service::Service<Request<Incoming>, Response = axum::response::Response, Error = Infallible, Future: Send> + Clone {
    hyper::service::service_fn(move |mut request: Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        if let Some(certified) = &certified {
            request.extensions_mut().insert(certified.clone());
        }
        app.clone().oneshot(request.map(axum::body::Body::new))
    })
}
