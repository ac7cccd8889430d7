//! Bind and unbind (OSB §5.2–5.3). Synchronous, as in 2.13.

use serde_json::{Map, Value, json};

use super::fingerprint::{BindFingerprint, same_binding};
use super::{BindOutcome, Broker, DeleteOutcome, RequestContext, busy, input};
use crate::error::{BrokerError, BrokerResult};
use crate::osb::{BindRequest, BindResponse};
use crate::store::{
    BindingInsert, BindingRecord, BindingState, InstanceState, NewBinding, OperationKind,
};

impl Broker {
    /// `PUT /v2/service_instances/:instance_id/service_bindings/:binding_id`.
    ///
    /// New id: 201 with fresh credentials. Identical repeat: 200 with the same
    /// credentials. Different request, or the id used under another instance: 409.
    pub async fn bind(
        &self,
        _ctx: &RequestContext,
        instance_id: &str,
        binding_id: &str,
        request: BindRequest,
    ) -> BrokerResult<BindOutcome> {
        let service_id = input::required(&request.service_id, "service_id")?;
        let plan_id = input::required(&request.plan_id, "plan_id")?;
        input::optional(&request.app_guid, "app_guid")?;
        let parameters = Value::Object(
            input::object(request.parameters.clone(), "parameters")?.unwrap_or_default(),
        );
        let bind_resource =
            input::object(request.bind_resource.clone(), "bind_resource")?.map(Value::Object);
        let context = input::object(request.context.clone(), "context")?.map(Value::Object);
        let (service, plan) = input::plan(&self.catalog, service_id, plan_id)?;
        if !plan.bindable {
            return Err(BrokerError::bad_request(format!(
                "plan `{}` of service `{}` is not bindable",
                plan.name, service.name
            )));
        }
        let app_guid = request.effective_app_guid();
        if plan.requires_app && app_guid.is_none() {
            return Err(BrokerError::RequiresApp);
        }
        input::parameters(
            plan.bind_schema.as_ref(),
            parameters.as_object().expect("built as an object"),
        )?;

        let instance = match self.store.find_instance(instance_id).await? {
            Some(i) if i.state != InstanceState::Deleted => i,
            _ => {
                return Err(BrokerError::NotFound(format!(
                    "Service instance {instance_id} does not exist."
                )));
            }
        };
        if instance.service_id != service_id || instance.plan_id != plan_id {
            return Err(BrokerError::bad_request(format!(
                "service_id and plan_id must be those of instance {instance_id} (plan `{}`)",
                instance.plan_id
            )));
        }

        let operation = self.new_operation(
            OperationKind::Bind,
            instance_id,
            Some(binding_id),
            json!({}),
            Some(plan),
            false,
        );
        let new = NewBinding {
            binding_id,
            instance_id,
            service_id,
            plan_id,
            parameters: &parameters,
            app_guid,
            route: request.route(),
            bind_resource: bind_resource.as_ref(),
            context: context.as_ref(),
        };
        match self.store.insert_binding(&new, &operation).await? {
            BindingInsert::Inserted => {
                let credentials = self.run_inline(&operation).await?;
                return Ok(BindOutcome::Created(BindResponse {
                    credentials: Some(credentials.map(|c| c.to_json()).unwrap_or_default()),
                    ..BindResponse::default()
                }));
            }
            BindingInsert::InstanceUnavailable => {
                return Err(match self.store.find_instance(instance_id).await? {
                    Some(i)
                        if i.state == InstanceState::Failed && i.active_operation_id.is_none() =>
                    {
                        BrokerError::Unprocessable(format!(
                            "Service instance {instance_id} failed to provision and cannot be bound."
                        ))
                    }
                    Some(i) if i.state != InstanceState::Deleted => busy("service instance"),
                    _ => BrokerError::NotFound(format!(
                        "Service instance {instance_id} does not exist."
                    )),
                });
            }
            BindingInsert::Exists => {}
        }

        let existing = self
            .store
            .find_binding(binding_id)
            .await?
            .ok_or_else(|| busy("service binding"))?;
        let fingerprint = BindFingerprint {
            instance_id,
            service_id,
            plan_id,
            parameters: &parameters,
            app_guid,
            route: request.route(),
        };
        if !same_binding(&existing, &fingerprint) {
            return Err(BrokerError::Conflict(format!(
                "Service binding {binding_id} already exists with different attributes."
            )));
        }
        match (existing.state, existing.active_operation_id) {
            (BindingState::Ready, None) => Ok(BindOutcome::AlreadyExists(BindResponse {
                credentials: Some(self.open_credentials(&existing)?),
                ..BindResponse::default()
            })),
            (BindingState::Failed, None) => {
                let retry = self.new_operation(
                    OperationKind::Bind,
                    instance_id,
                    Some(binding_id),
                    json!({}),
                    Some(plan),
                    false,
                );
                if !self
                    .store
                    .begin_binding_operation(
                        binding_id,
                        &[BindingState::Failed],
                        &retry,
                        Some(BindingState::Creating),
                    )
                    .await?
                {
                    return Err(busy("service binding"));
                }
                let credentials = self.run_inline(&retry).await?;
                Ok(BindOutcome::Created(BindResponse {
                    credentials: Some(credentials.map(|c| c.to_json()).unwrap_or_default()),
                    ..BindResponse::default()
                }))
            }
            _ => Err(busy("service binding")),
        }
    }

    /// `DELETE /v2/service_instances/:instance_id/service_bindings/:binding_id`.
    /// Also cleans up a binding whose bind failed (orphan mitigation).
    pub async fn unbind(
        &self,
        _ctx: &RequestContext,
        instance_id: &str,
        binding_id: &str,
        service_id: Option<&str>,
        plan_id: Option<&str>,
    ) -> BrokerResult<DeleteOutcome> {
        input::required_query(service_id, "service_id")?;
        input::required_query(plan_id, "plan_id")?;
        let binding = match self.store.find_binding(binding_id).await? {
            Some(b) if b.state != BindingState::Deleted && b.instance_id == instance_id => b,
            _ => return Err(BrokerError::Gone),
        };
        if binding.active_operation_id.is_some() {
            return Err(busy("service binding"));
        }
        let plan = self
            .catalog
            .plan(&binding.service_id, &binding.plan_id)
            .map(|(_, p)| p);
        let operation = self.new_operation(
            OperationKind::Unbind,
            instance_id,
            Some(binding_id),
            json!({}),
            plan,
            false,
        );
        if !self
            .store
            .begin_binding_operation(
                binding_id,
                &[
                    BindingState::Ready,
                    BindingState::Failed,
                    BindingState::Creating,
                ],
                &operation,
                None,
            )
            .await?
        {
            return Err(busy("service binding"));
        }
        self.run_inline(&operation).await?;
        Ok(DeleteOutcome::Deleted)
    }

    fn open_credentials(&self, binding: &BindingRecord) -> BrokerResult<Map<String, Value>> {
        let Some(sealed) = &binding.credentials else {
            return Ok(Map::new());
        };
        let plain = self
            .keyring
            .open(sealed, &binding.binding_id)
            .map_err(|e| BrokerError::Internal(anyhow::Error::new(e)))?;
        let map: std::collections::BTreeMap<String, String> = serde_json::from_slice(&plain)
            .map_err(|e| {
                BrokerError::Internal(
                    anyhow::Error::new(e).context("stored credentials are not a JSON object"),
                )
            })?;
        Ok(map
            .into_iter()
            .map(|(k, v)| (k, Value::String(v)))
            .collect())
    }
}
