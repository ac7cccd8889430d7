//! The catalog: `catalog.yaml` loaded, validated and turned into lookups and the
//! pre-serialised `GET /v2/catalog` bodies.
//!
//! `catalog.yaml` is bindery's own format: the OSB catalog fields, plus per plan the
//! `backend` (kind and settings) and execution settings that are never served.

mod load;
pub mod schema;
mod serve;
mod validate;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::osb::ApiVersion;
pub use load::{CatalogError, load_catalog, parse_catalog};
use schema::ParameterSchema;
use serve::CatalogBodies;

/// How a plan runs its operations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Execution {
    /// Asynchronously when the platform sends `accepts_incomplete=true`, inline otherwise.
    Preferred,
    /// Only asynchronously: without `accepts_incomplete=true` the answer is 422 `AsyncRequired`.
    Required,
    /// Always inline, even when the platform would accept a 202.
    Never,
}

/// A plan, with everything bindery needs to act on it.
#[derive(Debug)]
pub struct Plan {
    /// OSB plan id (globally unique).
    pub id: String,
    /// OSB plan name (unique within its service).
    pub name: String,
    /// Effective `bindable`: the plan's value, else the service's.
    pub bindable: bool,
    /// Effective `plan_updateable`: the plan's value, else the service's.
    pub plan_updateable: bool,
    /// The backend kind that serves the plan.
    pub backend_kind: String,
    /// The backend settings for this plan (connection limits, extensions, ...).
    pub backend_settings: Value,
    /// Sync or async behaviour.
    pub execution: Execution,
    /// Whether a bind needs an `app_guid` (422 `RequiresApp` otherwise).
    pub requires_app: bool,
    /// How long an operation may run before it is failed.
    pub max_operation_duration: Duration,
    /// 2.15 `maintenance_info.version`, when the plan declares it.
    pub maintenance_version: Option<String>,
    /// 2.17 `binding_rotatable`.
    pub binding_rotatable: bool,
    /// How long bindings live (`expires_at`), when the plan sets it.
    pub binding_lifetime: Option<Duration>,
    /// Schema for provision parameters.
    pub create_schema: Option<ParameterSchema>,
    /// Schema for update parameters.
    pub update_schema: Option<ParameterSchema>,
    /// Schema for bind parameters.
    pub bind_schema: Option<ParameterSchema>,
}

/// A service offering and its plans.
#[derive(Debug)]
pub struct Service {
    /// OSB service id.
    pub id: String,
    /// OSB service name.
    pub name: String,
    /// The service's own `bindable`.
    pub bindable: bool,
    /// The service's own `plan_updateable`.
    pub plan_updateable: bool,
    /// 2.14 `instances_retrievable`.
    pub instances_retrievable: bool,
    /// 2.14 `bindings_retrievable`.
    pub bindings_retrievable: bool,
    /// The plans, in catalog order.
    pub plans: Vec<Plan>,
}

impl Service {
    /// The plan with `plan_id`, if it belongs to this service.
    pub fn plan(&self, plan_id: &str) -> Option<&Plan> {
        self.plans.iter().find(|p| p.id == plan_id)
    }
}

/// The validated catalog that the broker serves. Cheap to share (`Arc`).
#[derive(Debug)]
pub struct Catalog {
    services: Vec<Service>,
    service_index: HashMap<String, usize>,
    bodies: CatalogBodies,
}

/// Shared handle to the catalog.
pub type SharedCatalog = Arc<Catalog>;

impl Catalog {
    /// The service with `service_id`.
    pub fn service(&self, service_id: &str) -> Option<&Service> {
        self.service_index
            .get(service_id)
            .map(|&i| &self.services[i])
    }

    /// The plan `plan_id` of service `service_id`.
    pub fn plan(&self, service_id: &str, plan_id: &str) -> Option<(&Service, &Plan)> {
        let service = self.service(service_id)?;
        Some((service, service.plan(plan_id)?))
    }

    /// Every service served.
    pub fn services(&self) -> &[Service] {
        &self.services
    }

    /// The serialised `GET /v2/catalog` body for a client of `version`: fields that
    /// version does not define are left out.
    pub fn body_for(&self, version: ApiVersion) -> &bytes_body::Body {
        self.bodies.for_version(version)
    }
}

/// Re-export of the body type so callers need not know how it is stored.
pub mod bytes_body {
    /// A pre-serialised JSON body with its strong ETag.
    #[derive(Debug, Clone)]
    pub struct Body {
        /// The JSON bytes.
        pub json: bytes::Bytes,
        /// A strong ETag (quoted) of `json`.
        pub etag: String,
    }
}
