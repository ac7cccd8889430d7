//! Wire types of the binding endpoints: bind and unbind.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Body of `PUT /v2/service_instances/:instance_id/service_bindings/:binding_id`.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct BindRequest {
    /// Required: the instance's service.
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 1)]
    pub service_id: Option<String>,
    /// Required: the instance's plan.
    #[serde(default)]
    #[schema(value_type = String, required = true, min_length = 1)]
    pub plan_id: Option<String>,
    /// Deprecated top-level application id.
    #[serde(default)]
    pub app_guid: Option<String>,
    /// What the binding is for (`app_guid`, `route`, platform extras).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub bind_resource: Option<Value>,
    /// Binding configuration, validated against the plan's bind schema.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// Platform context (opaque).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub context: Option<Value>,
    /// 2.17: the binding this one rotates.
    #[serde(default)]
    pub predecessor_binding_id: Option<String>,
}

impl BindRequest {
    /// The application the binding is for: `bind_resource.app_guid`, else the top-level field.
    pub fn effective_app_guid(&self) -> Option<&str> {
        self.bind_resource
            .as_ref()
            .and_then(|r| r.get("app_guid"))
            .and_then(Value::as_str)
            .or(self.app_guid.as_deref())
            .filter(|s| !s.is_empty())
    }

    /// `bind_resource.route`, for route services.
    pub fn route(&self) -> Option<&str> {
        self.bind_resource
            .as_ref()
            .and_then(|r| r.get("route"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    }
}

/// Success body of bind (201, 200).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct BindResponse {
    /// Flat string credentials, one key per Kubernetes Secret key.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub credentials: Option<Map<String, Value>>,
    /// The operation to poll (2.14 async bind only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub operation: Option<String>,
    /// Fetch binding (2.14): the binding's parameters.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Map<String, Value>>,
    /// 2.16+: `expires_at` / `renew_before`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Map<String, Value>>,
}
