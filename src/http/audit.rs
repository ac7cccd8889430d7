//! The audit trail of mutating requests, written by one middleware: the route names the
//! action and the ids, the answer gives the status and (in its extensions, see
//! `http::responses`) the operation it started. Handlers know nothing of it.

use std::collections::HashMap;

use axum::extract::{FromRequestParts, MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::extract::{OsbPath, OsbQuery};
use super::responses::AnsweredOperation;
use crate::broker::{AuditedRequest, RequestContext};

/// The audited action of a route and method; `None` for reads.
fn action(method: &Method, route: &str) -> Option<&'static str> {
    let binding = route.ends_with("/service_bindings/{binding_id}");
    let instance = route.ends_with("/service_instances/{instance_id}");
    match *method {
        Method::PUT if instance => Some("provision"),
        Method::PATCH if instance => Some("update"),
        Method::DELETE if instance => Some("deprovision"),
        Method::PUT if binding => Some("bind"),
        Method::DELETE if binding => Some("unbind"),
        _ => None,
    }
}

/// Middleware (innermost on the OSB routes, so only requests that passed authentication
/// and the version check reach it): runs the request and records its answer.
///
/// The path and the query go through the handlers' own extractors first: a request
/// they refuse (an id the stores cannot index, a NUL) is answered with that refusal
/// before anything is recorded, as it was before any handler ran.
pub async fn record(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().cloned();
    let Some(action) = route.and_then(|r| action(request.method(), r.as_str())) else {
        return next.run(request).await;
    };
    let (mut parts, body) = request.into_parts();
    let ids = match OsbPath::<HashMap<String, String>>::from_request_parts(&mut parts, &()).await {
        Ok(OsbPath(ids)) => ids,
        Err(refused) => return refused.into_response(),
    };
    if let Err(refused) = OsbQuery::from_request_parts(&mut parts, &()).await {
        return refused.into_response();
    }
    let Ok(ctx) = RequestContext::from_request_parts(&mut parts, &()).await;
    let response = next.run(Request::from_parts(parts, body)).await;
    let operation_id = response
        .extensions()
        .get::<AnsweredOperation>()
        .map(|o| o.0);
    state
        .broker
        .record_audit(
            &ctx,
            AuditedRequest {
                action,
                instance_id: ids.get("instance_id").map_or("", String::as_str),
                binding_id: ids.get("binding_id").map(String::as_str),
                operation_id,
                status: response.status().as_u16(),
            },
        )
        .await;
    response
}
