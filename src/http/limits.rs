//! Limits that protect the broker, each answered with an OSB error body instead of a
//! dropped connection: header size and an announced body size for every request
//! ([`refuse_oversized`]), and for the OSB API only a deadline per request and a bound
//! on requests in flight ([`bound`]). Probes and metrics stay outside the bound, so a
//! saturated API never makes a healthy broker look dead to Kubernetes.
//! (The size of a body without `Content-Length` is axum's `DefaultBodyLimit`, turned
//! into a JSON 413 by the `OsbJson` extractor.)

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tokio::sync::Semaphore;

use crate::error::BrokerError;

/// Sizes refused before a request is handled.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    /// Largest total size of the request's header names and values. (hyper's own read
    /// buffer bounds the memory a request can take before this check runs.)
    pub max_header_bytes: usize,
    /// Largest request body.
    pub max_body_bytes: usize,
}

/// Middleware: 431 for headers over the limit, 413 for a `Content-Length` over the body
/// limit, at once: such a body is never read, and no request slot is taken for it.
pub async fn refuse_oversized(
    State(sizes): State<Sizes>,
    request: Request,
    next: Next,
) -> Response {
    let header_bytes: usize = request
        .headers()
        .iter()
        .map(|(name, value)| name.as_str().len() + value.len())
        .sum();
    if header_bytes > sizes.max_header_bytes {
        return BrokerError::HeadersTooLarge(sizes.max_header_bytes).into_response();
    }
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|length| length > sizes.max_body_bytes as u64) {
        return BrokerError::PayloadTooLarge(sizes.max_body_bytes).into_response();
    }
    next.run(request).await
}

/// Settings of the OSB API's bound.
#[derive(Debug, Clone)]
pub struct Bound {
    /// Longest a request may take. An operation cut short keeps its lease and is
    /// finished by a worker once the lease expires, so nothing is lost.
    pub request_timeout: Duration,
    /// Requests handled at once; more are refused at once with 503.
    pub in_flight: Arc<Semaphore>,
}

/// Middleware: 503 when too many requests are in flight or one takes too long.
pub async fn bound(State(bound): State<Bound>, request: Request, next: Next) -> Response {
    let Ok(_permit) = bound.in_flight.clone().try_acquire_owned() else {
        return BrokerError::Unavailable(
            "The broker is handling too many requests; retry shortly.".to_owned(),
        )
        .into_response();
    };
    match tokio::time::timeout(bound.request_timeout, next.run(request)).await {
        Ok(response) => response,
        Err(_) => BrokerError::Unavailable(format!(
            "The request did not finish within {} seconds; retry it, or use accepts_incomplete=true.",
            bound.request_timeout.as_secs()
        ))
        .into_response(),
    }
}
