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
use crate::osb::{
    ErrorBody, InstanceResponse, LastOperationResponse, OperationResponse, ProvisionRequest,
    ProvisionResponse, UpdateRequest,
};

#[utoipa::path(put, path = "/v2/service_instances/{instance_id}", tag = "instances",
    params(
        ("instance_id" = String, Path, description = "Platform-chosen id"),
        ("accepts_incomplete" = Option<bool>, Query, description = "The platform accepts a 202"),
        ("X-Broker-API-Version" = String, Header, description = "OSB API version, 2.13 or later", example = "2.13"),
        ("X-Broker-API-Originating-Identity" = Option<String>, Header, description = "`<platform> <base64 JSON>` of the user behind the request"),
        ("X-Broker-API-Request-Identity" = Option<String>, Header, description = "2.15: a request id, echoed in the response"),
    ),
    request_body = ProvisionRequest,
    responses(
        (status = 201, description = "Provisioned", body = ProvisionResponse),
        (status = 200, description = "An identical instance exists", body = ProvisionResponse),
        (status = 202, description = "Provisioning in progress", body = ProvisionResponse),
        (status = 400, description = "Malformed request or invalid data; the description names the field", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials", body = ErrorBody),
        (status = 409, description = "The id exists with different attributes", body = ErrorBody),
        (status = 412, description = "Missing or unsupported X-Broker-API-Version", body = ErrorBody),
        (status = 413, description = "Request body over the limit", body = ErrorBody),
        (status = 422, description = "AsyncRequired, ConcurrencyError, RequiresApp, MaintenanceInfoConflict, or a change the state does not allow", body = ErrorBody),
        (status = 500, description = "Broker fault; the description carries the request id", body = ErrorBody),
        (status = 502, description = "The managed server refused the operation", body = ErrorBody),
        (status = 503, description = "The broker's database or the managed server is unavailable; retry", body = ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
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

#[utoipa::path(patch, path = "/v2/service_instances/{instance_id}", tag = "instances",
    params(
        ("instance_id" = String, Path, description = "Platform-chosen id"),
        ("accepts_incomplete" = Option<bool>, Query, description = "The platform accepts a 202"),
        ("X-Broker-API-Version" = String, Header, description = "OSB API version, 2.13 or later", example = "2.13"),
        ("X-Broker-API-Originating-Identity" = Option<String>, Header, description = "`<platform> <base64 JSON>` of the user behind the request"),
        ("X-Broker-API-Request-Identity" = Option<String>, Header, description = "2.15: a request id, echoed in the response"),
    ),
    request_body = UpdateRequest,
    responses(
        (status = 200, description = "Updated (or nothing to change)", body = OperationResponse),
        (status = 202, description = "Update in progress", body = OperationResponse),
        (status = 400, description = "Malformed request or invalid data; the description names the field", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials", body = ErrorBody),
        (status = 404, description = "No such resource", body = ErrorBody),
        (status = 412, description = "Missing or unsupported X-Broker-API-Version", body = ErrorBody),
        (status = 413, description = "Request body over the limit", body = ErrorBody),
        (status = 422, description = "AsyncRequired, ConcurrencyError, RequiresApp, MaintenanceInfoConflict, or a change the state does not allow", body = ErrorBody),
        (status = 500, description = "Broker fault; the description carries the request id", body = ErrorBody),
        (status = 502, description = "The managed server refused the operation", body = ErrorBody),
        (status = 503, description = "The broker's database or the managed server is unavailable; retry", body = ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
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
        Ok(UpdateOutcome::Updated(b)) => ((StatusCode::OK, Json(b)).into_response(), None),
        Ok(UpdateOutcome::Accepted(b)) => {
            let op = b.operation.clone();
            ((StatusCode::ACCEPTED, Json(b)).into_response(), op)
        }
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

#[utoipa::path(delete, path = "/v2/service_instances/{instance_id}", tag = "instances",
    params(
        ("instance_id" = String, Path, description = "Platform-chosen id"),
        ("service_id" = String, Query, description = "The instance's service"),
        ("plan_id" = String, Query, description = "The instance's plan"),
        ("accepts_incomplete" = Option<bool>, Query, description = "The platform accepts a 202"),
        ("X-Broker-API-Version" = String, Header, description = "OSB API version, 2.13 or later", example = "2.13"),
        ("X-Broker-API-Originating-Identity" = Option<String>, Header, description = "`<platform> <base64 JSON>` of the user behind the request"),
        ("X-Broker-API-Request-Identity" = Option<String>, Header, description = "2.15: a request id, echoed in the response"),
    ),
    responses(
        (status = 200, description = "Deleted", body = OperationResponse),
        (status = 202, description = "Deletion in progress", body = OperationResponse),
        (status = 400, description = "Malformed request or invalid data; the description names the field", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials", body = ErrorBody),
        (status = 410, description = "Nothing to delete, or an asynchronous delete has finished", body = ErrorBody),
        (status = 412, description = "Missing or unsupported X-Broker-API-Version", body = ErrorBody),
        (status = 422, description = "AsyncRequired, ConcurrencyError, RequiresApp, MaintenanceInfoConflict, or a change the state does not allow", body = ErrorBody),
        (status = 500, description = "Broker fault; the description carries the request id", body = ErrorBody),
        (status = 502, description = "The managed server refused the operation", body = ErrorBody),
        (status = 503, description = "The broker's database or the managed server is unavailable; retry", body = ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
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

#[utoipa::path(get, path = "/v2/service_instances/{instance_id}/last_operation", tag = "instances",
    params(
        ("instance_id" = String, Path, description = "Platform-chosen id"),
        ("service_id" = Option<String>, Query, description = "Hint"),
        ("plan_id" = Option<String>, Query, description = "Hint"),
        ("operation" = Option<String>, Query, description = "The operation returned with the 202"),
        ("X-Broker-API-Version" = String, Header, description = "OSB API version, 2.13 or later", example = "2.13"),
        ("X-Broker-API-Originating-Identity" = Option<String>, Header, description = "`<platform> <base64 JSON>` of the user behind the request"),
        ("X-Broker-API-Request-Identity" = Option<String>, Header, description = "2.15: a request id, echoed in the response"),
    ),
    responses(
        (status = 200, description = "The operation's state; 2.15+ clients get Retry-After while it runs", body = LastOperationResponse),
        (status = 400, description = "Malformed request or invalid data; the description names the field", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials", body = ErrorBody),
        (status = 404, description = "No such resource", body = ErrorBody),
        (status = 410, description = "Nothing to delete, or an asynchronous delete has finished", body = ErrorBody),
        (status = 412, description = "Missing or unsupported X-Broker-API-Version", body = ErrorBody),
        (status = 503, description = "The broker's database or the managed server is unavailable; retry", body = ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
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

#[utoipa::path(get, path = "/v2/service_instances/{instance_id}", tag = "instances",
    params(
        ("instance_id" = String, Path, description = "Platform-chosen id"),
        ("X-Broker-API-Version" = String, Header, description = "OSB API version, 2.13 or later", example = "2.13"),
        ("X-Broker-API-Originating-Identity" = Option<String>, Header, description = "`<platform> <base64 JSON>` of the user behind the request"),
        ("X-Broker-API-Request-Identity" = Option<String>, Header, description = "2.15: a request id, echoed in the response"),
    ),
    responses(
        (status = 200, description = "2.14+: the stored instance", body = InstanceResponse),
        (status = 401, description = "Missing or wrong credentials", body = ErrorBody),
        (status = 404, description = "No such resource", body = ErrorBody),
        (status = 412, description = "Missing or unsupported X-Broker-API-Version", body = ErrorBody),
        (status = 422, description = "AsyncRequired, ConcurrencyError, RequiresApp, MaintenanceInfoConflict, or a change the state does not allow", body = ErrorBody),
        (status = 503, description = "The broker's database or the managed server is unavailable; retry", body = ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
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
                    metadata: None,
                }),
            )
                .into_response(),
            Some(operation),
        ),
        Err(e) => (e.into_response(), None),
    }
}
