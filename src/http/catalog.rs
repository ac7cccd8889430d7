//! `GET /v2/catalog` (OSB §2): the body pre-serialised for the request's version.

use axum::Extension;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::openapi::OsbHeaders;
use crate::osb::ApiVersion;

#[utoipa::path(get, path = "/v2/catalog", tag = "catalog",
    params(
        OsbHeaders,
    ),
    responses(
        (status = 200, description = "The catalog; fields of later versions only for clients of those versions", body = crate::osb::catalog::CatalogResponse),
        (status = 304, description = "2.16+: If-None-Match matched the ETag"),
    )
)]
/// Serves the catalog. From 2.16 on it carries a strong `ETag` and answers
/// `If-None-Match` with 304.
pub async fn get_catalog(
    State(state): State<AppState>,
    Extension(version): Extension<ApiVersion>,
    headers: HeaderMap,
) -> Response {
    let body = state.broker.catalog().body_for(version);
    let caching = version.has(ApiVersion::V2_16);
    if caching
        && headers
            .get(header::IF_NONE_MATCH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|tags| {
                tags.split(',')
                    .any(|t| t.trim() == body.etag || t.trim() == "*")
            })
    {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(etag) = HeaderValue::from_str(&body.etag) {
            response.headers_mut().insert(header::ETAG, etag);
        }
        return response;
    }
    let mut response = (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body.json.clone(),
    )
        .into_response();
    if caching && let Ok(etag) = HeaderValue::from_str(&body.etag) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}
