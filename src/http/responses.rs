//! Status codes and bodies for everything the broker returns: its outcomes and its
//! `BrokerError`. The broker knows no HTTP; this is the one place a result becomes an
//! answer. An answer that started an operation carries its id in the response
//! extensions, for the audit trail (`http::audit`).

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::json;
use uuid::Uuid;

use super::errors::InternalErrorReport;
use crate::broker::{
    BindOutcome, DeleteOutcome, LastOperationOutcome, ProvisionOutcome, UpdateOutcome,
};
use crate::error::BrokerError;
use crate::osb::OperationResponse;

/// The operation an answer started or replayed (a 202's `operation`), placed in the
/// response extensions so the audit middleware can record it.
#[derive(Debug, Clone, Copy)]
pub struct AnsweredOperation(pub Uuid);

/// `status` with `body` as JSON, and the operation it names, if any, in the extensions.
fn answer(status: StatusCode, body: impl Serialize, operation: Option<Uuid>) -> Response {
    let mut response = (status, Json(body)).into_response();
    if let Some(id) = operation {
        response.extensions_mut().insert(AnsweredOperation(id));
    }
    response
}

/// The 202 of an operation that only has an id to poll.
fn accepted(operation: String) -> Response {
    let id = Uuid::parse_str(&operation).ok();
    let body = OperationResponse {
        operation: Some(operation),
        metadata: None,
    };
    answer(StatusCode::ACCEPTED, body, id)
}

/// The operation a 202's body names.
fn operation_id(operation: &Option<String>) -> Option<Uuid> {
    operation.as_deref().and_then(|o| Uuid::parse_str(o).ok())
}

impl IntoResponse for ProvisionOutcome {
    fn into_response(self) -> Response {
        match self {
            Self::Created(body) => answer(StatusCode::CREATED, body, None),
            Self::AlreadyExists(body) => answer(StatusCode::OK, body, None),
            Self::Accepted(body) => {
                let operation = operation_id(&body.operation);
                answer(StatusCode::ACCEPTED, body, operation)
            }
        }
    }
}

impl IntoResponse for UpdateOutcome {
    fn into_response(self) -> Response {
        match self {
            Self::Updated(body) => answer(StatusCode::OK, body, None),
            Self::Accepted(body) => {
                let operation = operation_id(&body.operation);
                answer(StatusCode::ACCEPTED, body, operation)
            }
        }
    }
}

impl IntoResponse for DeleteOutcome {
    fn into_response(self) -> Response {
        match self {
            Self::Deleted => answer(StatusCode::OK, json!({}), None),
            Self::Accepted { operation } => accepted(operation),
        }
    }
}

impl IntoResponse for BindOutcome {
    fn into_response(self) -> Response {
        match self {
            Self::Created(body) => answer(StatusCode::CREATED, body, None),
            Self::AlreadyExists(body) => answer(StatusCode::OK, body, None),
            Self::Accepted { operation } => accepted(operation),
        }
    }
}

/// A poll; `Retry-After` (2.15) rides along while an operation runs.
impl IntoResponse for LastOperationOutcome {
    fn into_response(self) -> Response {
        match self {
            Self::State(body, retry_after) => {
                let mut response = (StatusCode::OK, Json(body)).into_response();
                if let Some(seconds) = retry_after {
                    response
                        .headers_mut()
                        .insert(header::RETRY_AFTER, seconds.into());
                }
                response
            }
            Self::Gone => BrokerError::Gone.into_response(),
        }
    }
}

/// The HTTP status an error maps to; nothing else decides one for an error.
fn status(error: &BrokerError) -> StatusCode {
    match error {
        BrokerError::BadRequest(_) => StatusCode::BAD_REQUEST,
        BrokerError::Unauthorized => StatusCode::UNAUTHORIZED,
        BrokerError::NotFound(_) => StatusCode::NOT_FOUND,
        BrokerError::Conflict(_) => StatusCode::CONFLICT,
        BrokerError::Gone => StatusCode::GONE,
        BrokerError::PreconditionFailed(_) => StatusCode::PRECONDITION_FAILED,
        BrokerError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
        BrokerError::HeadersTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        BrokerError::AsyncRequired
        | BrokerError::Concurrency(_)
        | BrokerError::RequiresApp
        | BrokerError::MaintenanceInfoConflict
        | BrokerError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
        BrokerError::BackendFailed(_) => StatusCode::BAD_GATEWAY,
        BrokerError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
        BrokerError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The fixed status and OSB body; a 401 names the scheme, and a 500 carries its cause
/// in the extensions only (`http::errors` logs it under the request id).
impl IntoResponse for BrokerError {
    fn into_response(self) -> Response {
        let mut response = (status(&self), Json(self.body())).into_response();
        match &self {
            Self::Unauthorized => {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"bindery\""),
                );
            }
            Self::Internal(cause) => {
                response
                    .extensions_mut()
                    .insert(InternalErrorReport(format!("{cause:#}")));
            }
            _ => {}
        }
        response
    }
}
