//! Service instance routes (OSB §4): provision, update, deprovision, last_operation.
//! Each handler parses, calls the broker, and maps the outcome to a status here only.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::AppState;
use super::extract::{OsbJson, OsbPath, OsbQuery};
use crate::broker::{
    DeleteOutcome, LastOperationOutcome, ProvisionOutcome, RequestContext, UpdateOutcome,
};
use crate::error::BrokerError;
use crate::osb::{OperationResponse, ProvisionRequest, UpdateRequest};

/// `PUT /v2/service_instances/{instance_id}`: 201, 200, 202, 400, 409, 422.
pub async fn provision(
    State(state): State<AppState>,
    ctx: RequestContext,
    OsbPath(instance_id): OsbPath<String>,
    query: OsbQuery,
    body: Result<OsbJson<ProvisionRequest>, BrokerError>,
) -> Response {
    let result = async {
        let accepts_incomplete = query.accepts_incomplete()?;
        let OsbJson(request) = body?;
        state
            .broker
            .provision(&ctx, &instance_id, request, accepts_incomplete)
            .await
    }
    .await;
    let (response, operation) = match result {
        Ok(ProvisionOutcome::Created(b)) => ((StatusCode::CREATED, Json(b)).into_response(), None),
        Ok(ProvisionOutcome::AlreadyExists(b)) => ((StatusCode::OK, Json(b)).into_response(), None),
        Ok(ProvisionOutcome::Accepted(b)) => {
            let op = b.operation.clone();
            ((StatusCode::ACCEPTED, Json(b)).into_response(), op)
        }
        Err(e) => (e.into_response(), None),
    };
    super::audit(
        &state,
        &ctx,
        "provision",
        &instance_id,
        None,
        operation.as_deref(),
        response.status(),
    )
    .await;
    response
}

/// `PATCH /v2/service_instances/{instance_id}`: 200, 202, 400, 404, 422.
pub async fn update(
    State(state): State<AppState>,
    ctx: RequestContext,
    OsbPath(instance_id): OsbPath<String>,
    query: OsbQuery,
    body: Result<OsbJson<UpdateRequest>, BrokerError>,
) -> Response {
    let result = async {
        let accepts_incomplete = query.accepts_incomplete()?;
        let OsbJson(request) = body?;
        state
            .broker
            .update(&ctx, &instance_id, request, accepts_incomplete)
            .await
    }
    .await;
    let (response, operation) = match result {
        Ok(UpdateOutcome::Updated) => ((StatusCode::OK, Json(json!({}))).into_response(), None),
        Ok(UpdateOutcome::Accepted { operation }) => (
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
        "update",
        &instance_id,
        None,
        operation.as_deref(),
        response.status(),
    )
    .await;
    response
}

/// `DELETE /v2/service_instances/{instance_id}`: 200, 202, 400, 410, 422.
pub async fn deprovision(
    State(state): State<AppState>,
    ctx: RequestContext,
    OsbPath(instance_id): OsbPath<String>,
    query: OsbQuery,
) -> Response {
    let result = async {
        let accepts_incomplete = query.accepts_incomplete()?;
        state
            .broker
            .deprovision(
                &ctx,
                &instance_id,
                query.get("service_id"),
                query.get("plan_id"),
                accepts_incomplete,
            )
            .await
    }
    .await;
    let (response, operation) = delete_response(result);
    super::audit(
        &state,
        &ctx,
        "deprovision",
        &instance_id,
        None,
        operation.as_deref(),
        response.status(),
    )
    .await;
    response
}

/// `GET /v2/service_instances/{instance_id}/last_operation`: 200, 400, 404, 410.
pub async fn last_operation(
    State(state): State<AppState>,
    ctx: RequestContext,
    OsbPath(instance_id): OsbPath<String>,
    query: OsbQuery,
) -> Result<Response, BrokerError> {
    let outcome = state
        .broker
        .last_operation(&ctx, &instance_id, query.get("operation"))
        .await?;
    Ok(poll_response(outcome))
}

/// `GET /v2/service_instances/{instance_id}` (2.14): 200, 404, 422.
pub async fn get_instance(
    State(state): State<AppState>,
    ctx: RequestContext,
    OsbPath(instance_id): OsbPath<String>,
) -> Result<Response, BrokerError> {
    let body = state.broker.get_instance(&ctx, &instance_id).await?;
    Ok((StatusCode::OK, Json(body)).into_response())
}

/// Maps a poll outcome; `Retry-After` (2.15) rides along while an operation runs.
pub(super) fn poll_response(outcome: LastOperationOutcome) -> Response {
    match outcome {
        LastOperationOutcome::State(body, retry_after) => {
            let mut response = (StatusCode::OK, Json(body)).into_response();
            if let Some(seconds) = retry_after {
                response
                    .headers_mut()
                    .insert(axum::http::header::RETRY_AFTER, seconds.into());
            }
            response
        }
        LastOperationOutcome::Gone => BrokerError::Gone.into_response(),
    }
}

/// Maps a delete outcome (deprovision or unbind) to its status and body.
pub(super) fn delete_response(
    result: Result<DeleteOutcome, BrokerError>,
) -> (Response, Option<String>) {
    match result {
        Ok(DeleteOutcome::Deleted) => ((StatusCode::OK, Json(json!({}))).into_response(), None),
        Ok(DeleteOutcome::Accepted { operation }) => (
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
    }
}
