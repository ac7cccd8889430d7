//! Service binding routes (OSB §5): bind and unbind.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::extract::{OsbJson, OsbPath, OsbQuery};
use crate::broker::{BindOutcome, RequestContext};
use crate::error::BrokerError;
use crate::osb::BindRequest;

/// `PUT /v2/service_instances/{instance_id}/service_bindings/{binding_id}`: 201, 200, 400, 404, 409, 422.
pub async fn bind(
    State(state): State<AppState>,
    ctx: RequestContext,
    OsbPath((instance_id, binding_id)): OsbPath<(String, String)>,
    body: Result<OsbJson<BindRequest>, BrokerError>,
) -> Response {
    let result = async {
        let OsbJson(request) = body?;
        state
            .broker
            .bind(&ctx, &instance_id, &binding_id, request)
            .await
    }
    .await;
    let response = match result {
        Ok(BindOutcome::Created(b)) => (StatusCode::CREATED, Json(b)).into_response(),
        Ok(BindOutcome::AlreadyExists(b)) => (StatusCode::OK, Json(b)).into_response(),
        Err(e) => e.into_response(),
    };
    super::audit(
        &state,
        &ctx,
        "bind",
        &instance_id,
        Some(&binding_id),
        None,
        response.status(),
    )
    .await;
    response
}

/// `DELETE /v2/service_instances/{instance_id}/service_bindings/{binding_id}`: 200, 400, 410, 422.
pub async fn unbind(
    State(state): State<AppState>,
    ctx: RequestContext,
    OsbPath((instance_id, binding_id)): OsbPath<(String, String)>,
    query: OsbQuery,
) -> Response {
    let result = state
        .broker
        .unbind(
            &ctx,
            &instance_id,
            &binding_id,
            query.get("service_id"),
            query.get("plan_id"),
        )
        .await;
    let (response, operation) = super::instances::delete_response(result);
    super::audit(
        &state,
        &ctx,
        "unbind",
        &instance_id,
        Some(&binding_id),
        operation.as_deref(),
        response.status(),
    )
    .await;
    response
}
