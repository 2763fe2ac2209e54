//! The public listener's accept loop. It is ours rather than `axum::serve` for what a front
//! door on the internet needs and axum does not set: a deadline for a request's headers (a
//! client that trickles them, slowloris, is cut off), a cap on open connections, a cap on
//! requests in flight (over it: 503 at once instead of a queue), and the peer address for the
//! per-address rate limit.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use axum::response::IntoResponse;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

pub struct Limits {
    pub header_read_timeout: Duration,
    pub max_connections: usize,
    pub max_requests_in_flight: usize,
}

/// Serves `app` on `listener` until `shutdown`, then lets open requests finish (up to 30 s).
pub async fn serve(listener: TcpListener, app: Router, limits: Limits, shutdown: CancellationToken) {
    let mut builder = Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).header_read_timeout(Some(limits.header_read_timeout));
    builder.http2().timer(TokioTimer::new());
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let requests = Arc::new(Semaphore::new(limits.max_requests_in_flight));
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
        let (app, requests) = (app.clone(), requests.clone());
        let service = hyper::service::service_fn(move |mut request: Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            let permit = requests.clone().try_acquire_owned();
            let app = app.clone();
            async move {
                let Ok(_permit) = permit else {
                    let overloaded =
                        crate::problem(StatusCode::SERVICE_UNAVAILABLE, "overloaded", "too many requests in flight; retry", vec![]);
                    let mut response = overloaded.into_response();
                    response.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("1"));
                    return Ok::<_, Infallible>(response);
                };
                app.oneshot(request.map(axum::body::Body::new)).await
            }
        });
        let connection = graceful.watch(builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned());
        tokio::spawn(async move {
            if let Err(e) = connection.await {
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
