//! The shape of `GET /v2/catalog`, for the OpenAPI document only: the served body is
//! built from `catalog.yaml` by `catalog::serve` and pre-serialised.

#![allow(dead_code)]

use serde::Serialize;
use serde_json::Value;

/// The catalog.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CatalogResponse {
    /// The services offered (may be empty).
    pub services: Vec<ServiceOffering>,
}

/// A service offering.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServiceOffering {
    /// CLI-friendly name, unique in the catalog.
    pub name: String,
    /// Stable, globally unique id.
    pub id: String,
    /// Short description.
    pub description: String,
    /// Classification tags.
    #[schema(nullable = false)]
    pub tags: Option<Vec<String>>,
    /// Permissions the service needs (`syslog_drain`, `route_forwarding`, `volume_mount`).
    #[schema(nullable = false)]
    pub requires: Option<Vec<String>>,
    /// Whether plans are bindable unless they say otherwise.
    pub bindable: bool,
    /// Free-form metadata.
    #[schema(value_type = Option<Object>, nullable = false)]
    pub metadata: Option<Value>,
    /// Whether plan changes are supported.
    #[schema(nullable = false)]
    pub plan_updateable: Option<bool>,
    /// 2.14+: GET instance is supported.
    #[schema(nullable = false)]
    pub instances_retrievable: Option<bool>,
    /// 2.14+: GET binding is supported.
    #[schema(nullable = false)]
    pub bindings_retrievable: Option<bool>,
    /// The plans (at least one).
    pub plans: Vec<ServicePlan>,
}

/// A plan.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ServicePlan {
    /// Stable, globally unique id.
    pub id: String,
    /// CLI-friendly name, unique within the service.
    pub name: String,
    /// Short description.
    pub description: String,
    /// Free-form metadata.
    #[schema(value_type = Option<Object>, nullable = false)]
    pub metadata: Option<Value>,
    /// Whether instances cost money (default true = free).
    #[schema(nullable = false)]
    pub free: Option<bool>,
    /// Overrides the service's `bindable`.
    #[schema(nullable = false)]
    pub bindable: Option<bool>,
    /// JSON Schemas (draft-04) of the parameters.
    #[schema(value_type = Option<Object>, nullable = false)]
    pub schemas: Option<Value>,
    /// 2.15+: the plan's maintenance version.
    #[schema(value_type = Option<Object>, nullable = false)]
    pub maintenance_info: Option<Value>,
}
