//! Service binding routes (OSB §5, 2.14): bind, unbind, fetch, last_operation.

use axum::Json;
use axum::extract::State;

use super::AppState;
use super::extract::{AcceptsIncomplete, OsbJson, OsbPath, OsbQuery};
use super::openapi::{
    BindingPath, ChangeErrors, DeleteQuery, Gone, NotFound, OsbHeaders, PollErrors,
};
use crate::broker::{BindOutcome, DeleteOutcome, LastOperationOutcome, RequestContext};
use crate::error::BrokerError;
use crate::osb::{
    ApiVersion, BindRequest, BindResponse, ErrorBody, LastOperationResponse, OperationResponse,
};

#[utoipa::path(put, path = "/v2/service_instances/{instance_id}/service_bindings/{binding_id}", tag = "bindings",
    params(
        ("instance_id" = String, Path, description = "The instance"),
        ("binding_id" = String, Path, description = "Platform-chosen id"),
        ("accepts_incomplete" = Option<bool>, Query, description = "2.14+: the platform accepts a 202"),
        OsbHeaders,
    ),
    request_body = BindRequest,
    responses(
        (status = 201, description = "Bound; the credentials", body = BindResponse),
        (status = 200, description = "An identical binding exists; the same credentials", body = BindResponse),
        (status = 202, description = "2.14+: binding in progress", body = OperationResponse),
        NotFound,
        (status = 409, description = "The id exists with different attributes", body = ErrorBody),
        ChangeErrors,
    )
)]
/// `PUT /v2/service_instances/{instance_id}/service_bindings/{binding_id}`: 201, 200, 202, 400, 404, 409, 422.
pub async fn bind(
    State(state): State<AppState>,
    ctx: RequestContext,
    OsbPath((instance_id, binding_id)): OsbPath<(String, String)>,
    AcceptsIncomplete(accepts_incomplete): AcceptsIncomplete,
    OsbJson(request): OsbJson<BindRequest>,
) -> Result<BindOutcome, BrokerError> {
    state
        .broker
        .bind(&ctx, &instance_id, &binding_id, request, accepts_incomplete)
        .await
}

#[utoipa::path(delete, path = "/v2/service_instances/{instance_id}/service_bindings/{binding_id}", tag = "bindings",
    params(
        BindingPath,
        DeleteQuery,
        ("accepts_incomplete" = Option<bool>, Query, description = "2.14+: the platform accepts a 202"),
        OsbHeaders,
    ),
    responses(
        (status = 200, description = "Unbound", body = OperationResponse),
        (status = 202, description = "2.14+: unbinding in progress", body = OperationResponse),
        Gone,
        ChangeErrors,
    )
)]
/// `DELETE /v2/service_instances/{instance_id}/service_bindings/{binding_id}`: 200, 202, 400, 410, 422.
pub async fn unbind(
    State(state): State<AppState>,
    ctx: RequestContext,
    OsbPath((instance_id, binding_id)): OsbPath<(String, String)>,
    query: OsbQuery,
    AcceptsIncomplete(accepts_incomplete): AcceptsIncomplete,
) -> Result<DeleteOutcome, BrokerError> {
    let (service_id, plan_id) = (query.get("service_id"), query.get("plan_id"));
    state
        .broker
        .unbind(
            &ctx,
            &instance_id,
            &binding_id,
            service_id,
            plan_id,
            accepts_incomplete,
        )
        .await
}

#[utoipa::path(get, path = "/v2/service_instances/{instance_id}/service_bindings/{binding_id}", tag = "bindings",
    params(BindingPath, OsbHeaders),
    responses(
        (status = 200, description = "2.14+: the binding with its credentials", body = BindResponse),
        NotFound,
    )
)]
/// `GET /v2/service_instances/{instance_id}/service_bindings/{binding_id}` (2.14): 200, 404.
pub async fn get_binding(
    State(state): State<AppState>,
    ctx: RequestContext,
    OsbPath((instance_id, binding_id)): OsbPath<(String, String)>,
) -> Result<Json<BindResponse>, BrokerError> {
    if !ctx.version.has(ApiVersion::V2_14) {
        return Err(BrokerError::NotFound(
            "Fetching a binding needs X-Broker-API-Version 2.14 or later.".to_owned(),
        ));
    }
    state
        .broker
        .get_binding(&ctx, &instance_id, &binding_id)
        .await
        .map(Json)
}

#[utoipa::path(get, path = "/v2/service_instances/{instance_id}/service_bindings/{binding_id}/last_operation", tag = "bindings",
    operation_id = "binding_last_operation",
    params(
        BindingPath,
        ("operation" = Option<String>, Query, description = "The operation returned with the 202"),
        OsbHeaders,
    ),
    responses(
        (status = 200, description = "2.14+: the binding operation's state", body = LastOperationResponse),
        PollErrors,
    )
)]
/// `GET /v2/service_instances/{instance_id}/service_bindings/{binding_id}/last_operation` (2.14): 200, 400, 404, 410.
pub async fn last_operation(
    State(state): State<AppState>,
    ctx: RequestContext,
    OsbPath((instance_id, binding_id)): OsbPath<(String, String)>,
    query: OsbQuery,
) -> Result<LastOperationOutcome, BrokerError> {
    let operation = query.get("operation");
    state
        .broker
        .binding_last_operation(&ctx, &instance_id, &binding_id, operation)
        .await
}
