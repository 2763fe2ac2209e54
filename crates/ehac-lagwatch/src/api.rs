//! The HTTP JSON API, after Burrow's: `GET /v1/groups` lists the watched groups with their
//! status, `GET /v1/groups/{group}/status` gives one group's partitions, lags and windows.

use std::sync::{Arc, RwLock};

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

use crate::watch::Snapshot;

#[derive(Clone)]
pub struct ApiState {
    pub groups: Arc<Vec<String>>,
    pub snapshot: Arc<RwLock<Option<Snapshot>>>,
}

pub fn routes(state: ApiState) -> Router {
    Router::new().route("/v1/groups", get(groups)).route("/v1/groups/{group}/status", get(group_status)).with_state(state)
}

async fn groups(State(state): State<ApiState>) -> Response {
    let snapshot = state.snapshot.read().unwrap();
    let list: Vec<_> = state
        .groups
        .iter()
        .map(|name| match snapshot.as_ref().and_then(|s| s.groups.get(name)) {
            Some(g) => json!({
                "group": g.group, "status": g.status, "members": g.members, "total_lag": g.total_lag,
                "max_lag_seconds": g.max_lag_seconds, "partitions": g.partitions.len(), "error": g.error,
            }),
            None => json!({ "group": name, "status": null, "members": null, "total_lag": null, "max_lag_seconds": null, "partitions": 0 }),
        })
        .collect();
    let at = snapshot.as_ref().map(|s| s.at.clone());
    let window = snapshot.as_ref().map(|s| s.window_seconds);
    Json(json!({ "at": at, "window_seconds": window, "groups": list })).into_response()
}

async fn group_status(State(state): State<ApiState>, Path(group): Path<String>) -> Response {
    if !state.groups.contains(&group) {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "error": "unknown_group", "message": format!("{group} is not watched; watched: {}", state.groups.join(", ")) })),
        )
            .into_response();
    }
    let snapshot = state.snapshot.read().unwrap();
    match snapshot.as_ref().and_then(|s| s.groups.get(&group).map(|g| (s, g))) {
        Some((s, g)) => {
            let mut body = serde_json::to_value(g).expect("views serialise");
            body["at"] = json!(s.at);
            body["window_seconds"] = json!(s.window_seconds);
            Json(body).into_response()
        }
        None => {
            (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "error": "not_polled_yet", "message": "the cluster has not been read yet" })))
                .into_response()
        }
    }
}
