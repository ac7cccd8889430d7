//! Stand-ins for backend kinds that are known but have no server configured, so that
//! `bindery check-catalog` can validate every service and plan of a file where no
//! managed server is reachable or configured (a CI pipeline). A stand-in checks plan
//! settings with the kind's own checker (which needs no connection) and refuses every
//! action; it is never registered in a serving broker.

use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;

use super::{
    BackendError, BackendRegistry, BindingSpec, Credentials, Facts, InstanceSpec, KindStatus,
    ParameterBound, ServiceBackend, SettingsChecker, UpdateSpec, builtin_parameter_bounds,
};

/// A kind whose server is not configured, stood in for while checking a catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unconfigured {
    /// The backend kind.
    pub kind: String,
    /// How to configure it (e.g. "set BINDERY_POSTGRES_ADMIN_URL").
    pub reason: String,
}

/// A copy of `registry` in which every unconfigured kind is replaced by a stand-in, so
/// that the catalog keeps (and fully validates) their plans; and the kinds replaced.
pub fn for_checking(registry: &BackendRegistry) -> (BackendRegistry, Vec<Unconfigured>) {
    let mut checking = registry.clone();
    let mut unconfigured = Vec::new();
    for kind in registry.kinds() {
        if let KindStatus::Unconfigured { checker, reason } = registry.status(&kind) {
            checking.register(
                &kind,
                Arc::new(StandIn {
                    kind: kind.clone(),
                    checker,
                }),
            );
            unconfigured.push(Unconfigured { kind, reason });
        }
    }
    (checking, unconfigured)
}

#[derive(Debug)]
struct StandIn {
    kind: String,
    checker: SettingsChecker,
}

fn refused() -> BackendError {
    BackendError::Failed("this backend is not configured here".to_owned())
}

#[async_trait]
impl ServiceBackend for StandIn {
    fn check_plan_settings(&self, settings: &Value) -> Vec<String> {
        (self.checker)(settings)
    }
    /// The kind's own bounds, which need no connection either, so that check-catalog
    /// also finds schemas that admit what the plan refuses.
    fn parameter_bounds(&self, settings: &Value) -> Vec<ParameterBound> {
        builtin_parameter_bounds(&self.kind, settings)
    }
    async fn provision(&self, _: &InstanceSpec<'_>) -> Result<Facts, BackendError> {
        Err(refused())
    }
    async fn update(&self, _: &UpdateSpec<'_>) -> Result<Facts, BackendError> {
        Err(refused())
    }
    async fn deprovision(&self, _: &InstanceSpec<'_>) -> Result<(), BackendError> {
        Err(refused())
    }
    async fn bind(&self, _: &BindingSpec<'_>) -> Result<Credentials, BackendError> {
        Err(refused())
    }
    async fn unbind(&self, _: &BindingSpec<'_>) -> Result<(), BackendError> {
        Err(refused())
    }
}
