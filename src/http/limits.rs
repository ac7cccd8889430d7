//! Limits that protect the broker: header size, a deadline per request and a bound on
//! requests in flight, each answered with an OSB error body instead of a dropped
//! connection.
//! (The body size limit is axum's `DefaultBodyLimit`, turned into a JSON 413 by the
//! `OsbJson` extractor.)

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::error::BrokerError;

/// Settings of the limits middleware.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Longest a request may take. An operation cut short keeps its lease and is
    /// finished by a worker once the lease expires, so nothing is lost.
    pub request_timeout: Duration,
    /// Requests handled at once; more are refused at once with 503.
    pub in_flight: Arc<Semaphore>,
    /// Largest total size of the request's header names and values. (hyper's own read
    /// buffer bounds the memory a request can take before this check runs.)
    pub max_header_bytes: usize,
}

/// Middleware: 503 when too many requests are in flight or one takes too long.
pub async fn enforce(State(limits): State<Limits>, request: Request, next: Next) -> Response {
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > limits.max_header_bytes {
        return BrokerError::HeadersTooLarge(limits.max_header_bytes).into_response();
    }
    let Ok(_permit) = limits.in_flight.clone().try_acquire_owned() else {
        return BrokerError::Unavailable(
            "The broker is handling too many requests; retry shortly.".to_owned(),
        )
        .into_response();
    };
    match tokio::time::timeout(limits.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => BrokerError::Unavailable(format!(
            "The request did not finish within {} seconds; retry it, or use accepts_incomplete=true.",
            limits.request_timeout.as_secs()
        ))
        .into_response(),
    }
}
