//! The operational endpoints every service serves: `/healthz` (the process is alive),
//! `/readyz` (its dependencies answer, with the reason when they do not) and `/metrics`.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use prometheus::Registry;
use tokio_util::sync::CancellationToken;

/// Named readiness checks; the service is ready when every check is. Details are shown in
/// `/readyz` without deciding readiness (e.g. the broker's state at a gateway that spools).
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Arc<RwLock<BTreeMap<&'static str, Result<(), String>>>>,
    details: Arc<RwLock<BTreeMap<&'static str, String>>>,
}

impl Readiness {
    /// Registers a check that starts out not ready.
    pub fn check(&self, name: &'static str, initially: &str) {
        self.checks.write().unwrap().insert(name, Err(initially.to_owned()));
    }

    pub fn ready(&self, name: &'static str) {
        self.checks.write().unwrap().insert(name, Ok(()));
    }

    pub fn not_ready(&self, name: &'static str, reason: impl Into<String>) {
        self.checks.write().unwrap().insert(name, Err(reason.into()));
    }

    pub fn detail(&self, name: &'static str, value: impl Into<String>) {
        self.details.write().unwrap().insert(name, value.into());
    }

    pub fn is_ready(&self) -> bool {
        self.checks.read().unwrap().values().all(Result::is_ok)
    }
}

#[derive(Clone)]
struct AdminState {
    registry: Registry,
    readiness: Readiness,
}

/// Routes for `/healthz`, `/readyz` and `/metrics`, to merge into a service's router or serve
/// alone with [`serve`].
pub fn routes<S>(registry: Registry, readiness: Readiness) -> Router<S> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .with_state(AdminState { registry, readiness })
}

async fn readyz(State(state): State<AdminState>) -> impl IntoResponse {
    let checks = state.readiness.checks.read().unwrap().clone();
    let ready = checks.values().all(Result::is_ok);
    let body: BTreeMap<&str, String> = checks.into_iter().map(|(k, v)| (k, v.err().unwrap_or_else(|| "ok".into()))).collect();
    let status = if ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    let details = state.readiness.details.read().unwrap().clone();
    (status, Json(serde_json::json!({ "ready": ready, "checks": body, "details": details })))
}

async fn metrics(State(state): State<AdminState>) -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::telemetry::render(&state.registry))
}

/// Serves the admin routes on `listen` until `shutdown` fires. Returns the bound address (the
/// port may have been 0).
pub async fn serve(
    listen: SocketAddr,
    registry: Registry,
    readiness: Readiness,
    shutdown: CancellationToken,
) -> anyhow::Result<SocketAddr> {
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| anyhow::anyhow!("binding admin endpoint {listen}: {e}"))?;
    let bound = listener.local_addr()?;
    let app: Router = routes(registry, readiness);
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await {
            tracing::error!(error = %e, "admin endpoint failed");
        }
    });
    Ok(bound)
}
