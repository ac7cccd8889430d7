//! Extractors that turn HTTP into typed input and every rejection into an OSB error
//! body, instead of axum's plain-text 4xx answers.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, RawPathParams, Request};
use axum::http::StatusCode;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::broker::RequestContext;
use crate::error::BrokerError;
use crate::osb::ApiVersion;
use crate::osb::identity::{ORIGINATING_IDENTITY_HEADER, OriginatingIdentity};
use crate::osb::ids::check_id;
use crate::osb::text::has_nul;

/// The answer to input holding U+0000, which no store keeps (`osb::text`).
const NUL_REFUSED: &str =
    "the request holds a NUL character (U+0000), which the broker cannot store";

/// A JSON object body deserialised into `T`; anything else is a 400 (413 when too big).
#[derive(Debug)]
pub struct OsbJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for OsbJson<T> {
    type Rejection = BrokerError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let limit = request
            .extensions()
            .get::<BodyLimit>()
            .map(|l| l.0)
            .unwrap_or(0);
        let bytes = Bytes::from_request(request, state)
            .await
            .map_err(|rejection| {
                if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
                    BrokerError::PayloadTooLarge(limit)
                } else {
                    BrokerError::bad_request("the request body could not be read")
                }
            })?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(BrokerError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        let value: Value = serde_json::from_slice(&bytes).map_err(|e| {
            BrokerError::bad_request(format!("the request body is not valid JSON: {e}"))
        })?;
        if !value.is_object() {
            return Err(BrokerError::bad_request(
                "the request body must be a JSON object",
            ));
        }
        if has_nul(&value) {
            return Err(BrokerError::bad_request(NUL_REFUSED));
        }
        serde_json::from_value(value)
            .map(OsbJson)
            .map_err(|e| BrokerError::bad_request(format!("the request body is invalid: {e}")))
    }
}

/// The configured body limit, placed in extensions so a 413 can say it.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimit(pub usize);

/// Percent-decoded path parameters; a decoding failure is a 400, and so is an id
/// longer than the stores can index (`osb::ids`), before any handler runs, so such a
/// request is neither stored nor audited.
#[derive(Debug)]
pub struct OsbPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for OsbPath<T> {
    type Rejection = BrokerError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        if parts.uri.path().contains("%00") {
            return Err(BrokerError::bad_request(NUL_REFUSED));
        }
        // Every path parameter of the OSB routes is a platform-chosen id.
        if let Ok(params) = RawPathParams::from_request_parts(parts, state).await {
            for (name, value) in &params {
                check_id(name, value).map_err(BrokerError::bad_request)?;
            }
        }
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| OsbPath(v))
            .map_err(|e| BrokerError::bad_request(format!("invalid path: {e}")))
    }
}

/// Percent-decoded query parameters.
#[derive(Debug, Default)]
pub struct OsbQuery(pub HashMap<String, String>);

impl OsbQuery {
    /// A parameter's value, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    fn accepts_incomplete(&self) -> Result<bool, BrokerError> {
        match self.get("accepts_incomplete") {
            None => Ok(false),
            Some(v) if v.eq_ignore_ascii_case("true") => Ok(true),
            Some(v) if v.eq_ignore_ascii_case("false") => Ok(false),
            Some(_) => Err(BrokerError::bad_request(
                "accepts_incomplete must be true or false",
            )),
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for OsbQuery {
    type Rejection = BrokerError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or("");
        if query.contains("%00") {
            return Err(BrokerError::bad_request(NUL_REFUSED));
        }
        Ok(OsbQuery(
            url::form_urlencoded::parse(query.as_bytes())
                .map(|(k, v)| (k.into_owned(), v.into_owned()))
                .collect(),
        ))
    }
}

/// `accepts_incomplete` of the query: only `true` and `false` are accepted; absent is
/// false.
#[derive(Debug, Clone, Copy)]
pub struct AcceptsIncomplete(pub bool);

impl<S: Send + Sync> FromRequestParts<S> for AcceptsIncomplete {
    type Rejection = BrokerError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let query = OsbQuery::from_request_parts(parts, state).await?;
        query.accepts_incomplete().map(AcceptsIncomplete)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for RequestContext {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let version = parts
            .extensions
            .get::<ApiVersion>()
            .copied()
            .unwrap_or(ApiVersion::V2_13);
        let identity = parts
            .headers
            .get(ORIGINATING_IDENTITY_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|raw| {
                let parsed = OriginatingIdentity::parse(raw);
                if parsed.is_none() {
                    tracing::info!("ignoring a malformed X-Broker-API-Originating-Identity header");
                }
                parsed
            });
        let request_id = parts
            .headers
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(RequestContext {
            version,
            identity,
            request_id,
        })
    }
}
