//! Service instance routes (OSB §4): provision, update, deprovision, last_operation.
//! Each handler parses and calls the broker; `http::responses` maps the outcome to a
//! status and `http::audit` records it. `http::openapi` adds the errors every
//! operation shares to the document.

use axum::Json;
use axum::extract::State;

use super::AppState;
use super::extract::{AcceptsIncomplete, OsbJson, OsbPath, OsbQuery};
use super::openapi::{
    ChangeErrors, DeleteQuery, Gone, InstancePath, NotFound, OsbHeaders, PollErrors, Unprocessable,
};
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
        InstancePath,
        ("accepts_incomplete" = Option<bool>, Query, description = "The platform accepts a 202"),
        OsbHeaders,
    ),
    request_body = ProvisionRequest,
    responses(
        (status = 201, description = "Provisioned", body = ProvisionResponse),
        (status = 200, description = "An identical instance exists", body = ProvisionResponse),
        (status = 202, description = "Provisioning in progress", body = ProvisionResponse),
        (status = 409, description = "The id exists with different attributes", body = ErrorBody),
        ChangeErrors,
    )
)]
/// `PUT /v2/service_instances/{instance_id}`: 201, 200, 202, 400, 409, 422.
pub async fn provision(
    State(state): State<AppState>,
    ctx: RequestContext,
    OsbPath(instance_id): OsbPath<String>,
    AcceptsIncomplete(accepts_incomplete): AcceptsIncomplete,
    OsbJson(request): OsbJson<ProvisionRequest>,
) -> Result<ProvisionOutcome, BrokerError> {
    state
        .broker
        .provision(&ctx, &instance_id, request, accepts_incomplete)
        .await
}

#[utoipa::path(patch, path = "/v2/service_instances/{instance_id}", tag = "instances",
    params(
        InstancePath,
        ("accepts_incomplete" = Option<bool>, Query, description = "The platform accepts a 202"),
        OsbHeaders,
    ),
    request_body = UpdateRequest,
    responses(
        (status = 200, description = "Updated (or nothing to change)", body = OperationResponse),
        (status = 202, description = "Update in progress", body = OperationResponse),
        NotFound,
        ChangeErrors,
    )
)]
/// `PATCH /v2/service_instances/{instance_id}`: 200, 202, 400, 404, 422.
pub async fn update(
    State(state): State<AppState>,
    ctx: RequestContext,
    OsbPath(instance_id): OsbPath<String>,
    AcceptsIncomplete(accepts_incomplete): AcceptsIncomplete,
    OsbJson(request): OsbJson<UpdateRequest>,
) -> Result<UpdateOutcome, BrokerError> {
    state
        .broker
        .update(&ctx, &instance_id, request, accepts_incomplete)
        .await
}

#[utoipa::path(delete, path = "/v2/service_instances/{instance_id}", tag = "instances",
    params(
        InstancePath,
        DeleteQuery,
        ("accepts_incomplete" = Option<bool>, Query, description = "The platform accepts a 202"),
        OsbHeaders,
    ),
    responses(
        (status = 200, description = "Deleted", body = OperationResponse),
        (status = 202, description = "Deletion in progress", body = OperationResponse),
        Gone,
        ChangeErrors,
    )
)]
/// `DELETE /v2/service_instances/{instance_id}`: 200, 202, 400, 410, 422.
pub async fn deprovision(
    State(state): State<AppState>,
    ctx: RequestContext,
    OsbPath(instance_id): OsbPath<String>,
    query: OsbQuery,
    AcceptsIncomplete(accepts_incomplete): AcceptsIncomplete,
) -> Result<DeleteOutcome, BrokerError> {
    let (service_id, plan_id) = (query.get("service_id"), query.get("plan_id"));
    state
        .broker
        .deprovision(&ctx, &instance_id, service_id, plan_id, accepts_incomplete)
        .await
}

#[utoipa::path(get, path = "/v2/service_instances/{instance_id}/last_operation", tag = "instances",
    params(
        InstancePath,
        ("service_id" = Option<String>, Query, description = "Hint"),
        ("plan_id" = Option<String>, Query, description = "Hint"),
        ("operation" = Option<String>, Query, description = "The operation returned with the 202"),
        OsbHeaders,
    ),
    responses(
        (status = 200, description = "The operation's state; 2.15+ clients get Retry-After while it runs", body = LastOperationResponse),
        PollErrors,
    )
)]
/// `GET /v2/service_instances/{instance_id}/last_operation`: 200, 400, 404, 410.
pub async fn last_operation(
    State(state): State<AppState>,
    ctx: RequestContext,
    OsbPath(instance_id): OsbPath<String>,
    query: OsbQuery,
) -> Result<LastOperationOutcome, BrokerError> {
    let operation = query.get("operation");
    state
        .broker
        .last_operation(&ctx, &instance_id, operation)
        .await
}

#[utoipa::path(get, path = "/v2/service_instances/{instance_id}", tag = "instances",
    params(InstancePath, OsbHeaders),
    responses(
        (status = 200, description = "2.14+: the stored instance", body = InstanceResponse),
        NotFound,
        Unprocessable,
    )
)]
/// `GET /v2/service_instances/{instance_id}` (2.14): 200, 404, 422.
pub async fn get_instance(
    State(state): State<AppState>,
    ctx: RequestContext,
    OsbPath(instance_id): OsbPath<String>,
) -> Result<Json<InstanceResponse>, BrokerError> {
    state
        .broker
        .get_instance(&ctx, &instance_id)
        .await
        .map(Json)
}
