//! Service binding routes (OSB §5, 2.14): bind, unbind, fetch, last_operation.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::extract::{OsbJson, OsbPath, OsbQuery};
use crate::broker::{BindOutcome, RequestContext};
use crate::error::BrokerError;
use crate::osb::{BindRequest, OperationResponse};

/// `PUT /v2/service_instances/{instance_id}/service_bindings/{binding_id}`: 201, 200, 202, 400, 404, 409, 422.
pub async fn bind(
    State(state): State<AppState>,
    ctx: RequestContext,
    OsbPath((instance_id, binding_id)): OsbPath<(String, String)>,
    query: OsbQuery,
    body: Result<OsbJson<BindRequest>, BrokerError>,
) -> Response {
    let result = async {
        let accepts_incomplete = query.accepts_incomplete()?;
        let OsbJson(request) = body?;
        state
            .broker
            .bind(&ctx, &instance_id, &binding_id, request, accepts_incomplete)
            .await
    }
    .await;
    let (response, operation) = match result {
        Ok(BindOutcome::Created(b)) => ((StatusCode::CREATED, Json(b)).into_response(), None),
        Ok(BindOutcome::AlreadyExists(b)) => ((StatusCode::OK, Json(b)).into_response(), None),
        Ok(BindOutcome::Accepted { operation }) => (
            (
                StatusCode::ACCEPTED,
                Json(OperationResponse {
                    operation: Some(operation.clone()),
                }),
            )
                .into_response(),
            Some(operation),
        ),
        Err(e) => (e.into_response(), None),
    };
    super::audit(
        &state,
        &ctx,
        "bind",
        &instance_id,
        Some(&binding_id),
        operation.as_deref(),
        response.status(),
    )
    .await;
    response
}

/// `DELETE /v2/service_instances/{instance_id}/service_bindings/{binding_id}`: 200, 202, 400, 410, 422.
pub async fn unbind(
    State(state): State<AppState>,
    ctx: RequestContext,
    OsbPath((instance_id, binding_id)): OsbPath<(String, String)>,
    query: OsbQuery,
) -> Response {
    let result = async {
        let accepts_incomplete = query.accepts_incomplete()?;
        state
            .broker
            .unbind(
                &ctx,
                &instance_id,
                &binding_id,
                query.get("service_id"),
                query.get("plan_id"),
                accepts_incomplete,
            )
            .await
    }
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

/// `GET /v2/service_instances/{instance_id}/service_bindings/{binding_id}` (2.14): 200, 404.
pub async fn get_binding(
    State(state): State<AppState>,
    ctx: RequestContext,
    OsbPath((instance_id, binding_id)): OsbPath<(String, String)>,
) -> Result<Response, BrokerError> {
    if !ctx.version.has(crate::osb::ApiVersion::V2_14) {
        return Err(BrokerError::NotFound(
            "Fetching a binding needs X-Broker-API-Version 2.14 or later.".to_owned(),
        ));
    }
    let body = state.broker.get_binding(&instance_id, &binding_id).await?;
    Ok((StatusCode::OK, Json(body)).into_response())
}

/// `GET /v2/service_instances/{instance_id}/service_bindings/{binding_id}/last_operation` (2.14): 200, 400, 404, 410.
pub async fn last_operation(
    State(state): State<AppState>,
    ctx: RequestContext,
    OsbPath((instance_id, binding_id)): OsbPath<(String, String)>,
    query: OsbQuery,
) -> Result<Response, BrokerError> {
    let outcome = state
        .broker
        .binding_last_operation(&ctx, &instance_id, &binding_id, query.get("operation"))
        .await?;
    Ok(super::instances::poll_response(outcome))
}
