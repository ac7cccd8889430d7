//! A backend registered by the tests through bindery's public API. It records every
//! call and behaves as its plan settings say (fail, be unavailable, be slow), so the
//! OSB rules can be tested for every outcome. Real managed servers are exercised by
//! `postgres_e2e` and `tests/postgres_backend.rs`.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use bindery::backends::{
    BackendError, BindingSpec, Credentials, Facts, InstanceSpec, ServiceBackend, UpdateSpec,
};
use serde_json::Value;

/// One recorded call: (action, instance id, binding id).
pub type Call = (String, String, Option<String>);

#[derive(Debug, Default, Clone)]
pub struct RecordingBackend {
    pub calls: Arc<Mutex<Vec<Call>>>,
}

impl RecordingBackend {
    pub fn calls(&self) -> Vec<Call> {
        self.calls.lock().unwrap().clone()
    }

    pub fn count(&self, action: &str, instance_id: &str) -> usize {
        self.calls()
            .iter()
            .filter(|c| c.0 == action && c.1 == instance_id)
            .count()
    }

    async fn act(
        &self,
        action: &str,
        instance: &InstanceSpec<'_>,
        binding: Option<&str>,
    ) -> Result<(), BackendError> {
        self.calls.lock().unwrap().push((
            action.to_owned(),
            instance.instance_id.to_owned(),
            binding.map(str::to_owned),
        ));
        let settings = instance.plan_settings;
        let fails = |key: &str| {
            settings
                .get(key)
                .and_then(Value::as_array)
                .is_some_and(|a| a.iter().any(|v| v == action))
        };
        // `delay_ms` slows every action, or only those `delay_only` lists.
        if let Some(ms) = settings.get("delay_ms").and_then(Value::as_u64)
            && (settings.get("delay_only").is_none() || fails("delay_only"))
        {
            tokio::time::sleep(Duration::from_millis(ms)).await;
        }
        if fails("fail") {
            return Err(BackendError::Failed(format!(
                "the test backend refused to {action}"
            )));
        }
        if fails("unavailable") {
            return Err(BackendError::Unavailable(format!(
                "the test server is down for {action}"
            )));
        }
        if instance.parameters.get("fail").is_some_and(|v| v == action) {
            return Err(BackendError::Failed(format!("asked to fail {action}")));
        }
        Ok(())
    }
}

#[async_trait]
impl ServiceBackend for RecordingBackend {
    fn check_plan_settings(&self, settings: &Value) -> Vec<String> {
        let mut problems = Vec::new();
        if let Some(map) = settings.as_object() {
            for key in map.keys() {
                if !["delay_ms", "delay_only", "fail", "unavailable", "dashboard"]
                    .contains(&key.as_str())
                {
                    problems.push(format!("unknown setting `{key}`"));
                }
            }
        }
        problems
    }

    fn dashboard_url(&self, instance: &InstanceSpec<'_>) -> Option<String> {
        instance
            .plan_settings
            .get("dashboard")
            .and_then(Value::as_bool)
            .filter(|d| *d)
            .map(|_| {
                format!(
                    "https://dashboard.example.com/instances/{}",
                    instance.instance_id
                )
            })
    }

    async fn provision(&self, instance: &InstanceSpec<'_>) -> Result<Facts, BackendError> {
        self.act("provision", instance, None).await.map(|()| None)
    }

    async fn update(&self, change: &UpdateSpec<'_>) -> Result<Facts, BackendError> {
        self.act("update", &change.target, None)
            .await
            .map(|()| None)
    }

    async fn deprovision(&self, instance: &InstanceSpec<'_>) -> Result<(), BackendError> {
        self.act("deprovision", instance, None).await
    }

    async fn bind(&self, binding: &BindingSpec<'_>) -> Result<Credentials, BackendError> {
        self.act("bind", &binding.instance, Some(binding.binding_id))
            .await?;
        if binding.parameters.get("fail").is_some_and(|v| v == "bind") {
            return Err(BackendError::Failed("asked to fail bind".to_owned()));
        }
        let password = uuid::Uuid::new_v4().simple().to_string();
        Ok(Credentials::default()
            .with("username", format!("user-{}", binding.binding_id))
            .with("password", password)
            .with("uri", format!("test://{}", binding.instance.instance_id)))
    }

    async fn unbind(&self, binding: &BindingSpec<'_>) -> Result<(), BackendError> {
        self.act("unbind", &binding.instance, Some(binding.binding_id))
            .await
    }
}

/// The catalog most tests use: service ids `svc-*`, plan ids `plan-*`.
pub const TEST_CATALOG: &str = r##"
services:
  - id: svc-db
    name: test-db
    description: A test service backed by the recording backend.
    bindable: true
    plan_updateable: true
    tags: [test]
    metadata: {displayName: Test DB}
    backend: {kind: recording}
    plans:
      - id: plan-small
        name: small
        description: The default plan.
        schemas:
          service_instance:
            create:
              parameters:
                $schema: "http://json-schema.org/draft-04/schema#"
                type: object
                additionalProperties: false
                properties:
                  size: {type: integer, minimum: 1, maximum: 10}
                  fail: {type: string}
            update:
              parameters:
                $schema: "http://json-schema.org/draft-04/schema#"
                type: object
                additionalProperties: false
                properties:
                  size: {type: integer, minimum: 1, maximum: 10}
          service_binding:
            create:
              parameters:
                $schema: "http://json-schema.org/draft-04/schema#"
                type: object
                additionalProperties: false
                properties:
                  read_only: {type: boolean}
      - id: plan-large
        name: large
        description: A second plan to change to.
        free: false
        maintenance_info: {version: 2.0.0, description: new engine}
        maximum_polling_duration: 3600
        plan_updateable: true
        binding_rotatable: true
      - id: plan-async
        name: async-only
        description: Only runs asynchronously.
        asynchronous: required
      - id: plan-unbindable
        name: unbindable
        description: Cannot be bound.
        bindable: false
      - id: plan-needs-app
        name: needs-app
        description: Binds only to applications.
        requires_app: true
      - id: plan-failing
        name: failing
        description: Its backend refuses to provision.
        backend: {settings: {fail: [provision]}}
      - id: plan-bind-fails
        name: bind-fails
        description: Its backend refuses to bind.
        backend: {settings: {fail: [bind]}}
      - id: plan-down
        name: server-down
        description: Its backend's server is unreachable.
        backend: {settings: {unavailable: [provision, bind]}}
      - id: plan-slow
        name: slow
        description: Its backend takes a while.
        backend: {settings: {delay_ms: 300}}
      - id: plan-dashboard
        name: dashboard
        description: Has a dashboard.
        backend: {settings: {dashboard: true}}
      - id: plan-update-fails
        name: update-fails
        description: Its backend refuses updates.
        backend: {settings: {fail: [update]}}
      - id: plan-expiring
        name: expiring
        description: Bindings live an hour and can be rotated.
        binding_lifetime: 3600
        binding_rotatable: true
  - id: svc-fixed
    name: test-fixed
    description: A service whose plans cannot be changed.
    bindable: false
    instances_retrievable: true
    backend: {kind: recording}
    plans:
      - id: plan-fixed-a
        name: a
        description: Plan A.
      - id: plan-fixed-b
        name: b
        description: Plan B.
"##;
