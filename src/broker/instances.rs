//! Provision, update and deprovision (OSB §4.1–4.3).

use serde_json::{Map, Value, json};

use super::fingerprint::same_instance;
use super::requests::{DeleteHints, NewInstanceRequest, UpdateFields};
use super::{
    Broker, DeleteOutcome, ProvisionOutcome, RequestContext, Started, UpdateOutcome, busy, input,
    taken,
};
use crate::backends::InstanceSpec;
use crate::catalog::Plan;
use crate::error::{BrokerError, BrokerResult};
use crate::osb::{OperationResponse, ProvisionRequest, ProvisionResponse, UpdateRequest};
use crate::store::{InstanceRecord, InstanceState, NewInstance, OperationKind, OperationTarget};
use crate::worker::Known;

/// What an update changes, resolved against the stored instance.
struct UpdateChange<'a> {
    /// The plan the instance will have.
    target: &'a Plan,
    plan_change: bool,
    maintenance_change: bool,
    /// The stored parameters with the request's changes applied.
    parameters: Value,
}

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
        let request = NewInstanceRequest::parse(&self.catalog, ctx.version, instance_id, &request)?;
        let plan = request.plan;
        self.check_plan_bounds(plan, &request.parameters)?;
        let run_async = Self::runs_async(plan, accepts_incomplete)?;
        let dashboard_url = self.backend_for(plan)?.dashboard_url(&InstanceSpec {
            instance_id,
            service_id: request.service_id,
            plan_id: &plan.id,
            plan_settings: &plan.backend_settings,
            parameters: &request.parameters,
            context: request.context.as_ref(),
            facts: None,
        });

        let operation = self.new_operation(
            OperationKind::Provision,
            instance_id,
            None,
            json!({}),
            Some(plan),
            run_async,
        );
        let parameters = Value::Object(request.parameters.clone());
        let new = NewInstance {
            instance_id,
            service_id: request.service_id,
            plan_id: &plan.id,
            parameters: &parameters,
            organization_guid: Some(request.organization_guid),
            space_guid: Some(request.space_guid),
            context: request.context.as_ref(),
            dashboard_url: dashboard_url.as_deref(),
            maintenance_version: plan.maintenance_version.as_deref(),
            backend_kind: Some(&plan.backend_kind),
        };
        let metadata = self.instance_metadata(ctx, request.service_id, &plan.id);
        if !self.store.insert_instance(&new, &operation).await? {
            return self
                .provision_again(&request, metadata, accepts_incomplete)
                .await;
        }
        let created = new.to_record(operation.operation_id);
        let started = self
            .start(&operation, run_async, Known::instance(&created))
            .await?;
        let response = |operation| ProvisionResponse {
            dashboard_url,
            operation,
            metadata,
        };
        Ok(match started {
            Started::Queued(operation) => ProvisionOutcome::Accepted(response(Some(operation))),
            Started::Done(_) => ProvisionOutcome::Created(response(None)),
        })
    }

    /// A provision whose instance id is taken: a replay (200, or 202 with the running
    /// operation), a conflict (409), or "still running" for the platform to retry.
    async fn provision_again(
        &self,
        request: &NewInstanceRequest<'_>,
        metadata: Option<Map<String, Value>>,
        accepts_incomplete: bool,
    ) -> BrokerResult<ProvisionOutcome> {
        let existing = self
            .store
            .find_instance(request.instance_id)
            .await?
            .ok_or_else(|| busy("service instance"))?;
        if !same_instance(&existing, request) {
            return Err(taken("instance", request.instance_id));
        }
        let replay = ProvisionResponse {
            dashboard_url: existing.dashboard_url.clone(),
            operation: None,
            metadata,
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
        let fields = UpdateFields::parse(&request)?;
        let instance = self.live_instance(instance_id).await?;
        let change = self.update_change(ctx, &instance, &fields)?;
        let run_async = Self::runs_async(change.target, accepts_incomplete)?;
        let op_request = json!({
            "plan_id": change.target.id,
            "parameters": change.parameters,
            "maintenance_version": change.target.maintenance_version,
        });
        let metadata = self.instance_metadata(ctx, fields.service_id, &change.target.id);
        let body = |operation| OperationResponse {
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
        if !change.plan_change
            && !change.maintenance_change
            && change.parameters == instance.parameters
        {
            return Ok(UpdateOutcome::Updated(body(None)));
        }

        let operation = self.new_operation(
            OperationKind::Update,
            instance_id,
            None,
            op_request,
            Some(change.target),
            run_async,
        );
        if !self
            .store
            .begin_instance_operation(instance_id, &[InstanceState::Ready], &operation, None)
            .await?
        {
            return Err(busy("service instance"));
        }
        Ok(
            match self
                .start(&operation, run_async, Known::instance(&instance))
                .await?
            {
                Started::Queued(operation) => UpdateOutcome::Accepted(body(Some(operation))),
                Started::Done(_) => UpdateOutcome::Updated(body(None)),
            },
        )
    }

    /// Resolves an update against the stored instance: the target plan (400 when the
    /// service is not the instance's or a plan is not offered, 422 when the plan may
    /// not change), and the merged parameters, checked against the target plan.
    fn update_change(
        &self,
        ctx: &RequestContext,
        instance: &InstanceRecord,
        fields: &UpdateFields<'_>,
    ) -> BrokerResult<UpdateChange<'_>> {
        let instance_id = &instance.instance_id;
        let service_id = fields.service_id;
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
        let target_plan_id = fields.plan_id.unwrap_or(&instance.plan_id);
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
        input::maintenance_info(ctx.version, fields.maintenance_info, target)?;
        let parameters = match &fields.parameters {
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
        if let Some(merged) = parameters.as_object() {
            self.check_plan_bounds(target, merged)?;
        }
        Ok(UpdateChange {
            target,
            plan_change,
            // The instance takes the target plan's maintenance version.
            maintenance_change: fields
                .changes_maintenance(ctx.version, instance.maintenance_version.as_deref()),
            parameters,
        })
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
        let hints = DeleteHints::parse(service_id, plan_id)?;
        let instance = match self.store.find_instance(instance_id).await? {
            Some(i) if i.state != InstanceState::Deleted => i,
            _ => return Err(BrokerError::Gone),
        };
        if instance.service_id != hints.service_id || instance.plan_id != hints.plan_id {
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
                OperationKind::Provision if accepts_incomplete => {
                    self.supersede_create(
                        OperationTarget::Instance(instance_id),
                        active.operation_id,
                        operation,
                        "Cancelled: the instance was deleted before provisioning finished.",
                    )
                    .await
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
        let started = self
            .start(&operation, run_async, Known::instance(&instance))
            .await?;
        Ok(started.into())
    }
}

impl From<Started> for DeleteOutcome {
    fn from(started: Started) -> Self {
        match started {
            Started::Queued(operation) => Self::Accepted { operation },
            Started::Done(_) => Self::Deleted,
        }
    }
}
