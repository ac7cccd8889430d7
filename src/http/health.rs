//! `/healthz` (the process answers) and `/readyz` (the database answers and every
//! migration is applied). Both sit outside authentication for probes.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;

/// Longest the readiness check waits for the store. Kubernetes' probes (deploy/) give up
/// after 2 s; an unreachable database must be reported as not ready before that, not
/// after the pool's own connect timeout.
const READY_CHECK_TIMEOUT: Duration = Duration::from_millis(800);

#[utoipa::path(get, path = "/healthz", tag = "operations", responses((status = 200, description = "The process serves requests")))]
/// Liveness: always 200 while the process serves requests.
pub async fn healthz() -> Response {
    Json(json!({"status": "ok"})).into_response()
}

#[utoipa::path(get, path = "/readyz", tag = "operations", responses(
    (status = 200, description = "The state database answers and is migrated"),
    (status = 503, description = "Not ready"),
))]
/// Readiness: 200 when the store is usable, 503 otherwise.
pub async fn readyz(State(state): State<AppState>) -> Response {
    let ready = tokio::time::timeout(READY_CHECK_TIMEOUT, state.broker.store().is_ready())
        .await
        .unwrap_or(false);
    if ready {
        Json(json!({"status": "ready"})).into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "unavailable", "description": "the state database is unreachable or not migrated"})),
        )
            .into_response()
    }
}
