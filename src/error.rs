//! `BrokerError`: every failure a request can end in, each with its fixed status and body.
//!
//! The broker layer returns these; the HTTP layer turns them into responses
//! (`http::responses`) and nothing else decides a status code for an error. Internal
//! errors never reach the client: the body carries a generic description and the
//! request id, and the cause chain goes to the log (see `http::errors`).

use crate::osb::{ErrorBody, ErrorCode};

/// A failure of an OSB request.
#[derive(Debug, thiserror::Error)]
pub enum BrokerError {
    /// 400: malformed request, missing or invalid data. The text names the field.
    #[error("{0}")]
    BadRequest(String),
    /// 401: missing or wrong credentials.
    #[error("unauthorized")]
    Unauthorized,
    /// 404: the resource does not exist (where the spec allows 404).
    #[error("{0}")]
    NotFound(String),
    /// 409: the id exists with different attributes.
    #[error("{0}")]
    Conflict(String),
    /// 410 with `{}`: nothing to delete, or an async delete has finished.
    #[error("gone")]
    Gone,
    /// 412: missing or unsupported `X-Broker-API-Version`.
    #[error("{0}")]
    PreconditionFailed(String),
    /// 413: the request body is over the configured limit.
    #[error("request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    /// 431: the request's headers are over the configured limit.
    #[error("request headers are larger than {0} bytes")]
    HeadersTooLarge(usize),
    /// 422 `AsyncRequired`: the plan needs `accepts_incomplete=true`.
    #[error("This service plan requires client support for asynchronous service operations.")]
    AsyncRequired,
    /// 422 `ConcurrencyError`: another operation is running on the resource.
    #[error("{0}")]
    Concurrency(String),
    /// 422 `RequiresApp`: the bind needs an `app_guid`.
    #[error("This service supports generation of credentials through binding an application only.")]
    RequiresApp,
    /// 422 `MaintenanceInfoConflict` (2.15).
    #[error("The maintenance information for the requested Service Plan has changed.")]
    MaintenanceInfoConflict,
    /// 422 without a code: the change is not supported or the state forbids it.
    #[error("{0}")]
    Unprocessable(String),
    /// 502: a managed service failed the operation; the text is user-safe.
    #[error("{0}")]
    BackendFailed(String),
    /// 503: bindery's own database (or a managed server) is unreachable; retry later.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug or an unexpected failure. Never shown to the client.
    #[error(transparent)]
    Internal(anyhow::Error),
}

/// Shorthand for results of broker operations.
pub type BrokerResult<T> = Result<T, BrokerError>;

impl BrokerError {
    /// Builds a 400 with a description.
    pub fn bad_request(description: impl Into<String>) -> Self {
        Self::BadRequest(description.into())
    }

    /// The OSB body. `ConcurrencyError` is sent to 2.13 clients too: the spec
    /// says it is harmless there and it tells a human what happened.
    pub fn body(&self) -> ErrorBody {
        let code = match self {
            Self::AsyncRequired => Some(ErrorCode::AsyncRequired),
            Self::Concurrency(_) => Some(ErrorCode::ConcurrencyError),
            Self::RequiresApp => Some(ErrorCode::RequiresApp),
            Self::MaintenanceInfoConflict => Some(ErrorCode::MaintenanceInfoConflict),
            _ => None,
        };
        let description = match self {
            Self::Gone => None,
            Self::Internal(_) => Some(
                "Internal broker error. The broker log has the cause under this request's id."
                    .to_owned(),
            ),
            other => Some(other.to_string()),
        };
        ErrorBody {
            error: code,
            description,
        }
    }
}

impl From<sqlx::Error> for BrokerError {
    fn from(error: sqlx::Error) -> Self {
        if crate::store::is_unavailable(&error) {
            return Self::Unavailable(
                "The broker's database is unavailable; retry the request later.".to_owned(),
            );
        }
        Self::Internal(anyhow::Error::new(error).context("database query failed"))
    }
}

impl From<anyhow::Error> for BrokerError {
    /// An outage of bindery's database anywhere in the cause chain is a 503 (retry
    /// later, nothing was lost), not a 500.
    fn from(error: anyhow::Error) -> Self {
        let unavailable = error
            .chain()
            .filter_map(|cause| cause.downcast_ref::<sqlx::Error>())
            .any(crate::store::is_unavailable);
        if unavailable {
            return Self::Unavailable(
                "The broker's database is unavailable; retry the request later.".to_owned(),
            );
        }
        Self::Internal(error)
    }
}
