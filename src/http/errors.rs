//! Cross-cutting responses: JSON bodies for unknown routes, wrong methods and panics,
//! and the one place internal errors are logged (with the request id, which the
//! client gets back so an operator can find the log line).

use std::any::Any;

use axum::Json;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::osb::ErrorBody;

/// Marker placed in the extensions of a 500 response so that the logging middleware,
/// which knows the request id, can log the cause without the response carrying it.
#[derive(Debug, Clone)]
pub struct InternalErrorReport(pub String);

/// 404 for any path bindery does not serve.
pub async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"description": "no such endpoint"})),
    )
        .into_response()
}

/// 405 for a known path with the wrong method.
pub async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({"description": "this endpoint does not support that HTTP method"})),
    )
        .into_response()
}

/// Turns a panic into a JSON 500 instead of a dropped connection.
pub fn panic_response(_payload: Box<dyn Any + Send + 'static>) -> Response {
    tracing::error!("a request handler panicked");
    (
        StatusCode::INTERNAL_SERVER_ERROR,
        Json(json!({"description": "Internal broker error."})),
    )
        .into_response()
}

/// Logs internal errors inside the request span and puts the request id into the
/// client's description.
pub async fn log_internal_errors(request: Request, next: Next) -> Response {
    let request_id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let response = next.run(request).await;
    let Some(report) = response.extensions().get::<InternalErrorReport>().cloned() else {
        return response;
    };
    tracing::error!(cause = %report.0, "internal error");
    let description = match &request_id {
        Some(id) => {
            format!("Internal broker error; the broker log has the cause under request id {id}.")
        }
        None => "Internal broker error.".to_owned(),
    };
    (
        response.status(),
        Json(ErrorBody {
            error: None,
            description: Some(description),
        }),
    )
        .into_response()
}

/// Echoes `X-Broker-API-Request-Identity` (2.15) on every response, errors included.
pub async fn echo_request_identity(request: Request, next: Next) -> Response {
    let identity = request
        .headers()
        .get(crate::osb::REQUEST_IDENTITY_HEADER)
        .cloned();
    let mut response = next.run(request).await;
    if let Some(identity) = identity {
        response
            .headers_mut()
            .insert(crate::osb::REQUEST_IDENTITY_HEADER, identity);
    }
    response
}
