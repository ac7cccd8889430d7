//! Wire types of the service instance endpoints: provision, update, deprovision.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

// Required fields are `Option`s so that a missing one is the broker's 400 naming it,
// not serde's; `#[schema(...)]` still documents them required and non-nullable
// (tests/api/openapi.rs checks the two agree).
/// Body of `PUT /v2/service_instances/:instance_id`.
///
/// No `deny_unknown_fields`: platforms add fields and receivers must ignore them.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct ProvisionRequest {
    /// Id of a service in the catalog.
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 1)]
    pub service_id: Option<String>,
    /// Id of a plan of that service.
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 1)]
    pub plan_id: Option<String>,
    /// Platform context (opaque).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub context: Option<Value>,
    /// Deprecated but required in 2.13.
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 1)]
    pub organization_guid: Option<String>,
    /// Deprecated but required in 2.13.
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 1)]
    pub space_guid: Option<String>,
    /// Service-specific configuration, validated against the plan's schema.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// 2.15: the plan version the platform believes it provisions.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub maintenance_info: Option<Value>,
}

/// Body of `PATCH /v2/service_instances/:instance_id`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct UpdateRequest {
    /// Required: the instance's service.
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 1)]
    pub service_id: Option<String>,
    /// The target plan; absent means "keep the plan".
    #[serde(default)]
    pub plan_id: Option<String>,
    /// New parameters; absent means "keep the parameters".
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// Platform context (opaque).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub context: Option<Value>,
    /// What the platform believes the instance looked like (informational only).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub previous_values: Option<Value>,
    /// 2.15: the plan version the platform wants.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub maintenance_info: Option<Value>,
}

/// Success body of provision (201, 200, 202).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ProvisionResponse {
    /// A web UI for the instance, when the backend has one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dashboard_url: Option<String>,
    /// The operation to poll (202 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// 2.16+: instance labels and attributes.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

/// Success body of update and deprovision (200, 202).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct OperationResponse {
    /// The operation to poll (202 only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// 2.16+ on update: instance labels (and 2.17 attributes).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}

/// Body of `GET /v2/service_instances/:instance_id` (2.14).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct InstanceResponse {
    /// The instance's service.
    pub service_id: String,
    /// The instance's current plan.
    pub plan_id: String,
    /// Its dashboard, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dashboard_url: Option<String>,
    /// The current parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
    /// 2.17: the maintenance version applied.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub maintenance_info: Option<Value>,
    /// 2.17: instance labels and attributes.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}
