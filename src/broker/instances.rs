//! Provision, update and deprovision (OSB §4.1–4.3).

use serde_json::{Map, Value, json};

use super::fingerprint::{ProvisionFingerprint, same_instance};
use super::{Broker, DeleteOutcome, ProvisionOutcome, RequestContext, UpdateOutcome, busy, input};
use crate::backends::InstanceSpec;
use crate::error::{BrokerError, BrokerResult};
use crate::osb::{ProvisionRequest, ProvisionResponse, UpdateRequest};
use crate::store::{InstanceState, NewInstance, NewOperation, OperationKind, OperationTarget};
use crate::worker::Known;

impl Broker {
    /// `PUT /v2/service_instances/:instance_id`.
    ///
    /// New id: 201 (inline) or 202 (queued). Identical repeat: 200 when provisioned,
    /// 202 with the same operation while provisioning. Different request: 409.
    pub async fn provision(
        &self,
        ctx: &RequestContext,
        instance_id: &str,
        request: ProvisionRequest,
        accepts_incomplete: bool,
    ) -> BrokerResult<ProvisionOutcome> {
        input::platform_id(instance_id, "instance_id")?;
        let service_id = input::required(&request.service_id, "service_id")?;
        let plan_id = input::required(&request.plan_id, "plan_id")?;
        let organization_guid = input::required(&request.organization_guid, "organization_guid")?;
        let space_guid = input::required(&request.space_guid, "space_guid")?;
        let parameters = Value::Object(
            input::object(request.parameters.clone(), "parameters")?.unwrap_or_default(),
        );
        let context = input::object(request.context.clone(), "context")?.map(Value::Object);
        let (_, plan) = input::plan(&self.catalog, service_id, plan_id)?;
        input::maintenance_info(ctx.version, request.maintenance_info.as_ref(), plan)?;
        input::parameters(
            plan.create_schema.as_ref(),
            parameters.as_object().expect("built as an object"),
        )?;
        self.check_plan_bounds(plan, parameters.as_object().expect("built as an object"))?;
        let run_async = Self::runs_async(plan, accepts_incomplete)?;
        let backend = self.backend_for(plan)?;
        let dashboard_url = backend.dashboard_url(&InstanceSpec {
            instance_id,
            service_id,
            plan_id,
            plan_settings: &plan.backend_settings,
            parameters: parameters.as_object().expect("built as an object"),
        });

        let operation = self.new_operation(
            OperationKind::Provision,
            instance_id,
            None,
            json!({}),
            Some(plan),
            run_async,
        );
        let new = NewInstance {
            instance_id,
            service_id,
            plan_id,
            parameters: &parameters,
            organization_guid: Some(organization_guid),
            space_guid: Some(space_guid),
            context: context.as_ref(),
            dashboard_url: dashboard_url.as_deref(),
            maintenance_version: plan.maintenance_version.as_deref(),
            backend_kind: Some(&plan.backend_kind),
        };
        let metadata = self.instance_metadata(ctx, service_id, plan_id);
        let response = |operation: Option<String>| ProvisionResponse {
            dashboard_url: dashboard_url.clone(),
            operation,
            metadata: metadata.clone(),
        };
        if self.store.insert_instance(&new, &operation).await? {
            return if run_async {
                self.wake_worker();
                Ok(ProvisionOutcome::Accepted(response(Some(
                    operation.operation_id.to_string(),
                ))))
            } else {
                let created = new.to_record(operation.operation_id);
                self.run_inline(&operation, Known::instance(&created))
                    .await?;
                Ok(ProvisionOutcome::Created(response(None)))
            };
        }

        // The id is taken: decide between replay, conflict and "still running".
        let existing = self
            .store
            .find_instance(instance_id)
            .await?
            .ok_or_else(|| busy("service instance"))?;
        let fingerprint = ProvisionFingerprint {
            service_id,
            plan_id,
            parameters: &parameters,
            organization_guid,
            space_guid,
        };
        if !same_instance(&existing, &fingerprint) {
            return Err(BrokerError::Conflict(format!(
                "Service instance {instance_id} already exists with different attributes."
            )));
        }
        let replay = ProvisionResponse {
            dashboard_url: existing.dashboard_url.clone(),
            operation: None,
            metadata: metadata.clone(),
        };
        let active = self.store.active_instance_operation(&existing).await?;
        match (existing.state, active) {
            (InstanceState::Ready, None) => Ok(ProvisionOutcome::AlreadyExists(replay)),
            (InstanceState::Provisioning, Some(op))
                if op.kind == OperationKind::Provision && accepts_incomplete =>
            {
                Ok(ProvisionOutcome::Accepted(ProvisionResponse {
                    operation: Some(op.operation_id.to_string()),
                    ..replay
                }))
            }
            // A failed instance that nothing runs on was replaced by `insert_instance`
            // above; one seen here failed in between: the platform may simply retry.
            _ => Err(busy("service instance")),
        }
    }

    /// `PATCH /v2/service_instances/:instance_id`.
    pub async fn update(
        &self,
        ctx: &RequestContext,
        instance_id: &str,
        request: UpdateRequest,
        accepts_incomplete: bool,
    ) -> BrokerResult<UpdateOutcome> {
        let service_id = input::required(&request.service_id, "service_id")?;
        let requested_plan = input::optional(&request.plan_id, "plan_id")?;
        let new_parameters = input::object(request.parameters.clone(), "parameters")?;
        input::object(request.context.clone(), "context")?;

        let instance = match self.store.find_instance(instance_id).await? {
            Some(i) if i.state != InstanceState::Deleted => i,
            _ => {
                return Err(BrokerError::NotFound(format!(
                    "Service instance {instance_id} does not exist."
                )));
            }
        };
        if instance.service_id != service_id {
            return Err(BrokerError::bad_request(format!(
                "service_id `{service_id}` is not the service of instance {instance_id}"
            )));
        }
        if self
            .catalog
            .plan(&instance.service_id, &instance.plan_id)
            .is_none()
        {
            return Err(BrokerError::bad_request(format!(
                "plan `{}` of instance {instance_id} is no longer offered by the broker: the instance can be fetched, unbound and deleted, but not updated",
                instance.plan_id
            )));
        }
        let target_plan_id = requested_plan.unwrap_or(&instance.plan_id);
        let (service, target) = input::plan(&self.catalog, service_id, target_plan_id)?;
        let plan_change = target_plan_id != instance.plan_id;
        if plan_change {
            let updateable = service
                .plan(&instance.plan_id)
                .map_or(service.plan_updateable, |current| current.plan_updateable);
            if !updateable {
                return Err(BrokerError::Unprocessable(format!(
                    "The plan of an instance of {} cannot be changed.",
                    service.name
                )));
            }
        }
        input::maintenance_info(ctx.version, request.maintenance_info.as_ref(), target)?;
        let merged = match &new_parameters {
            Some(changes) => {
                input::parameters(target.update_schema.as_ref(), changes)?;
                let mut merged: Map<String, Value> =
                    instance.parameters.as_object().cloned().unwrap_or_default();
                merged.extend(changes.clone());
                Value::Object(merged)
            }
            None => instance.parameters.clone(),
        };
        // The merged parameters must suit the target plan: a plan change can make
        // stored parameters exceed what the new plan allows.
        if let Some(merged) = merged.as_object() {
            self.check_plan_bounds(target, merged)?;
        }
        let run_async = Self::runs_async(target, accepts_incomplete)?;
        // The instance takes the target plan's maintenance version; a request that only
        // carries a newer maintenance_info (2.15) is an upgrade the backend performs by
        // applying the plan's current settings again.
        let maintenance_change = ctx.version.has(crate::osb::ApiVersion::V2_15)
            && request
                .maintenance_info
                .as_ref()
                .and_then(|m| m.get("version"))
                .and_then(Value::as_str)
                .is_some_and(|v| Some(v) != instance.maintenance_version.as_deref());
        let op_request = json!({
            "plan_id": target_plan_id,
            "parameters": merged,
            "maintenance_version": target.maintenance_version,
        });
        let metadata = self.instance_metadata(ctx, service_id, target_plan_id);
        let body = |operation: Option<String>| crate::osb::OperationResponse {
            operation,
            metadata: metadata.clone(),
        };

        if let Some(active) = self.store.active_instance_operation(&instance).await? {
            return if active.kind == OperationKind::Update
                && active.request == op_request
                && accepts_incomplete
            {
                Ok(UpdateOutcome::Accepted(body(Some(
                    active.operation_id.to_string(),
                ))))
            } else {
                Err(busy("service instance"))
            };
        }
        match instance.state {
            InstanceState::Ready => {}
            InstanceState::Failed => {
                return Err(BrokerError::Unprocessable(
                    "The instance failed to provision; delete it and provision it again."
                        .to_owned(),
                ));
            }
            _ => return Err(busy("service instance")),
        }
        if !plan_change && !maintenance_change && merged == instance.parameters {
            return Ok(UpdateOutcome::Updated(body(None)));
        }

        let operation = self.new_operation(
            OperationKind::Update,
            instance_id,
            None,
            op_request,
            Some(target),
            run_async,
        );
        if !self
            .store
            .begin_instance_operation(instance_id, &[InstanceState::Ready], &operation, None)
            .await?
        {
            return Err(busy("service instance"));
        }
        if run_async {
            self.wake_worker();
            Ok(UpdateOutcome::Accepted(body(Some(
                operation.operation_id.to_string(),
            ))))
        } else {
            self.run_inline(&operation, Known::instance(&instance))
                .await?;
            Ok(UpdateOutcome::Updated(body(None)))
        }
    }

    /// `DELETE /v2/service_instances/:instance_id`. Removes the instance and every
    /// binding of it. Works on failed and half-created instances (orphan mitigation).
    pub async fn deprovision(
        &self,
        _ctx: &RequestContext,
        instance_id: &str,
        service_id: Option<&str>,
        plan_id: Option<&str>,
        accepts_incomplete: bool,
    ) -> BrokerResult<DeleteOutcome> {
        let service_id = input::required_query(service_id, "service_id")?;
        input::required_query(plan_id, "plan_id")?;
        let instance = match self.store.find_instance(instance_id).await? {
            Some(i) if i.state != InstanceState::Deleted => i,
            _ => return Err(BrokerError::Gone),
        };
        if instance.service_id != service_id || Some(instance.plan_id.as_str()) != plan_id {
            // Hints only: the stored instance is the truth. Never block a delete over them.
            tracing::info!(
                instance_id,
                "deprovision hints differ from the stored instance; using the stored values"
            );
        }
        let plan = self
            .catalog
            .plan(&instance.service_id, &instance.plan_id)
            .map(|(_, p)| p);
        let run_async = match plan {
            Some(plan) => Self::runs_async(plan, accepts_incomplete)?,
            None => accepts_incomplete,
        };
        let operation = self.new_operation(
            OperationKind::Deprovision,
            instance_id,
            None,
            json!({}),
            plan,
            run_async,
        );
        if let Some(active) = self.store.active_instance_operation(&instance).await? {
            return match active.kind {
                OperationKind::Deprovision if accepts_incomplete => Ok(DeleteOutcome::Accepted {
                    operation: active.operation_id.to_string(),
                }),
                // Orphan mitigation of a provision that has not finished (2.15, "deprovision
                // during provisioning"): stop it, then delete whatever it created.
                OperationKind::Provision if accepts_incomplete => {
                    let queued = NewOperation {
                        inline_owner: None,
                        ..operation
                    };
                    if !self
                        .store
                        .supersede_operation(
                            OperationTarget::Instance(instance_id),
                            active.operation_id,
                            &queued,
                            "Cancelled: the instance was deleted before provisioning finished.",
                        )
                        .await?
                    {
                        return Err(busy("service instance"));
                    }
                    self.wake_worker();
                    Ok(DeleteOutcome::Accepted {
                        operation: queued.operation_id.to_string(),
                    })
                }
                _ => Err(busy("service instance")),
            };
        }
        if !self
            .store
            .begin_instance_operation(
                instance_id,
                &[InstanceState::Ready, InstanceState::Failed],
                &operation,
                None,
            )
            .await?
        {
            return Err(busy("service instance"));
        }
        if run_async {
            self.wake_worker();
            Ok(DeleteOutcome::Accepted {
                operation: operation.operation_id.to_string(),
            })
        } else {
            self.run_inline(&operation, Known::instance(&instance))
                .await?;
            Ok(DeleteOutcome::Deleted)
        }
    }
}
