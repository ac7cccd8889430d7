//! Service binding routes (OSB §5, 2.14): bind, unbind, fetch, last_operation.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::extract::{OsbJson, OsbPath, OsbQuery};
use crate::broker::{BindOutcome, RequestContext};
use crate::error::BrokerError;
use crate::osb::{BindRequest, BindResponse, ErrorBody, LastOperationResponse, OperationResponse};

#[utoipa::path(put, path = "/v2/service_instances/{instance_id}/service_bindings/{binding_id}", tag = "bindings",
    params(
        ("instance_id" = String, Path, description = "The instance"),
        ("binding_id" = String, Path, description = "Platform-chosen id"),
        ("accepts_incomplete" = Option<bool>, Query, description = "2.14+: the platform accepts a 202"),
        ("X-Broker-API-Version" = String, Header, description = "OSB API version, 2.13 or later", example = "2.13"),
        ("X-Broker-API-Originating-Identity" = Option<String>, Header, description = "`<platform> <base64 JSON>` of the user behind the request"),
        ("X-Broker-API-Request-Identity" = Option<String>, Header, description = "2.15: a request id, echoed in the response"),
    ),
    request_body = BindRequest,
    responses(
        (status = 201, description = "Bound; the credentials", body = BindResponse),
        (status = 200, description = "An identical binding exists; the same credentials", body = BindResponse),
        (status = 202, description = "2.14+: binding in progress", body = OperationResponse),
        (status = 400, description = "Malformed request or invalid data; the description names the field", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials", body = ErrorBody),
        (status = 404, description = "No such resource", body = ErrorBody),
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
                    metadata: None,
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

#[utoipa::path(delete, path = "/v2/service_instances/{instance_id}/service_bindings/{binding_id}", tag = "bindings",
    params(
        ("instance_id" = String, Path, description = "The instance"),
        ("binding_id" = String, Path, description = "The binding"),
        ("service_id" = String, Query, description = "The instance's service"),
        ("plan_id" = String, Query, description = "The instance's plan"),
        ("accepts_incomplete" = Option<bool>, Query, description = "2.14+: the platform accepts a 202"),
        ("X-Broker-API-Version" = String, Header, description = "OSB API version, 2.13 or later", example = "2.13"),
        ("X-Broker-API-Originating-Identity" = Option<String>, Header, description = "`<platform> <base64 JSON>` of the user behind the request"),
        ("X-Broker-API-Request-Identity" = Option<String>, Header, description = "2.15: a request id, echoed in the response"),
    ),
    responses(
        (status = 200, description = "Unbound", body = OperationResponse),
        (status = 202, description = "2.14+: unbinding in progress", body = OperationResponse),
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

#[utoipa::path(get, path = "/v2/service_instances/{instance_id}/service_bindings/{binding_id}", tag = "bindings",
    params(
        ("instance_id" = String, Path, description = "The instance"),
        ("binding_id" = String, Path, description = "The binding"),
        ("X-Broker-API-Version" = String, Header, description = "OSB API version, 2.13 or later", example = "2.13"),
        ("X-Broker-API-Originating-Identity" = Option<String>, Header, description = "`<platform> <base64 JSON>` of the user behind the request"),
        ("X-Broker-API-Request-Identity" = Option<String>, Header, description = "2.15: a request id, echoed in the response"),
    ),
    responses(
        (status = 200, description = "2.14+: the binding with its credentials", body = BindResponse),
        (status = 401, description = "Missing or wrong credentials", body = ErrorBody),
        (status = 404, description = "No such resource", body = ErrorBody),
        (status = 412, description = "Missing or unsupported X-Broker-API-Version", body = ErrorBody),
        (status = 503, description = "The broker's database or the managed server is unavailable; retry", body = ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
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
    let body = state
        .broker
        .get_binding(&ctx, &instance_id, &binding_id)
        .await?;
    Ok((StatusCode::OK, Json(body)).into_response())
}

#[utoipa::path(get, path = "/v2/service_instances/{instance_id}/service_bindings/{binding_id}/last_operation", tag = "bindings",
    operation_id = "binding_last_operation",
    params(
        ("instance_id" = String, Path, description = "The instance"),
        ("binding_id" = String, Path, description = "The binding"),
        ("operation" = Option<String>, Query, description = "The operation returned with the 202"),
        ("X-Broker-API-Version" = String, Header, description = "OSB API version, 2.13 or later", example = "2.13"),
        ("X-Broker-API-Originating-Identity" = Option<String>, Header, description = "`<platform> <base64 JSON>` of the user behind the request"),
        ("X-Broker-API-Request-Identity" = Option<String>, Header, description = "2.15: a request id, echoed in the response"),
    ),
    responses(
        (status = 200, description = "2.14+: the binding operation's state", body = LastOperationResponse),
        (status = 400, description = "Malformed request or invalid data; the description names the field", body = ErrorBody),
        (status = 401, description = "Missing or wrong credentials", body = ErrorBody),
        (status = 404, description = "No such resource", body = ErrorBody),
        (status = 410, description = "Nothing to delete, or an asynchronous delete has finished", body = ErrorBody),
        (status = 412, description = "Missing or unsupported X-Broker-API-Version", body = ErrorBody),
        (status = 503, description = "The broker's database or the managed server is unavailable; retry", body = ErrorBody),
    ),
    security(("basic" = []), ("bearer" = []))
)]
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
