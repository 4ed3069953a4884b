//! Probes and metrics: `/healthz` (the process answers), `/readyz` (the store and
//! short-lived state answer, the IAM view and keys are loaded; 503 with the reason
//! otherwise) and `/metrics` (Prometheus text).

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::server::AppState;

/// `GET /healthz`.
pub async fn healthz() -> Response {
    Json(json!({ "status": "ok" })).into_response()
}

/// `GET /readyz`.
pub async fn readyz(State(state): State<AppState>) -> Response {
    match state.readiness().await {
        Ok(()) => {
            Json(json!({ "status": "ready", "change_seq": state.applied_seq() })).into_response()
        }
        Err(reason) => {
            tracing::warn!(%reason, "not ready");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                Json(json!({ "status": "unavailable", "reason": reason })),
            )
                .into_response()
        }
    }
}

/// `GET /metrics`.
pub async fn metrics(State(state): State<AppState>) -> Response {
    let (size, idle) = state.store.pool_usage();
    let m = &state.metrics;
    m.gauge("db_pool_connections", &[("state", "open")], f64::from(size));
    m.gauge("db_pool_connections", &[("state", "idle")], idle as f64);
    m.gauge(
        "db_pool_connections",
        &[("state", "in_use")],
        f64::from(size).max(idle as f64) - idle as f64,
    );
    m.gauge(
        "db_pool_connections_max",
        &[],
        f64::from(state.config.database_max_connections),
    );
    m.gauge("change_seq_applied", &[], state.applied_seq() as f64);
    m.upkeep();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        m.render(),
    )
        .into_response()
}

/// Anything unrouted.
pub async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, Json(json!({ "error": "not_found" }))).into_response()
}

/// The router a node serves while it starts: alive, not ready.
pub fn starting_app() -> axum::Router {
    let unavailable = || async {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({ "status": "unavailable", "reason": "starting: opening the stores and loading IAM data" }),
            ),
        )
    };
    axum::Router::new()
        .route("/healthz", axum::routing::get(healthz))
        .route("/readyz", axum::routing::get(unavailable))
        .fallback(unavailable)
}
