//! `X-Broker-API-Version` on every `/v2` request: 412 when it is missing or unusable,
//! otherwise the parsed version goes into the request's extensions for the handlers.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::BrokerError;
use crate::osb::ApiVersion;
use crate::osb::version::VERSION_HEADER;

/// Middleware state: the lowest minor version accepted.
#[derive(Debug, Clone, Copy)]
pub struct MinimumVersion(pub ApiVersion);

/// Middleware: checks the header and records the version.
pub async fn require_version(
    State(min): State<MinimumVersion>,
    mut request: Request,
    next: Next,
) -> Response {
    let supported = || {
        format!(
            "this broker supports X-Broker-API-Version {} and every later 2.x version",
            min.0
        )
    };
    let version = match request.headers().get(VERSION_HEADER).map(|v| v.to_str()) {
        None => {
            return BrokerError::PreconditionFailed(format!(
                "the X-Broker-API-Version header is missing; {}",
                supported()
            ))
            .into_response();
        }
        Some(Err(_)) => Err(()),
        Some(Ok(raw)) => raw.parse::<ApiVersion>().map_err(|_| ()),
    };
    match version {
        Ok(v) if v.major == min.0.major && v >= min.0 => {
            request.extensions_mut().insert(v);
            next.run(request).await
        }
        Ok(v) => BrokerError::PreconditionFailed(format!(
            "X-Broker-API-Version {v} is not supported; {}",
            supported()
        ))
        .into_response(),
        Err(()) => BrokerError::PreconditionFailed(format!(
            "X-Broker-API-Version must be MAJOR.MINOR, e.g. 2.13; {}",
            supported()
        ))
        .into_response(),
    }
}
