//! Bind and unbind (OSB §5.2–5.3): synchronous as in 2.13, asynchronous for 2.14+
//! clients that send `accepts_incomplete=true`.

use chrono::SubsecRound as _;
use serde_json::{Map, Value, json};

use super::fingerprint::{BindFingerprint, same_binding};
use super::{BindOutcome, Broker, DeleteOutcome, RequestContext, busy, input};
use crate::catalog::Execution as PlanExecution;
use crate::error::{BrokerError, BrokerResult};
use crate::osb::{ApiVersion, BindRequest, BindResponse};
use crate::store::{
    BindingInsert, BindingRecord, BindingState, InstanceState, NewBinding, NewOperation,
    OperationKind, OperationTarget,
};
use crate::worker::Known;

impl Broker {
    /// Whether a bind or unbind runs in the worker: only for 2.14+ clients that accept
    /// it (a 2.13 platform reads any 202 on a binding as a failure).
    fn binding_runs_async(
        ctx: &RequestContext,
        execution: PlanExecution,
        accepts_incomplete: bool,
    ) -> BrokerResult<bool> {
        if !ctx.version.has(ApiVersion::V2_14) {
            return Ok(false);
        }
        match (execution, accepts_incomplete) {
            (PlanExecution::Required, false) => Err(BrokerError::AsyncRequired),
            (PlanExecution::Never, _) => Ok(false),
            (_, accepts) => Ok(accepts),
        }
    }

    /// `PUT /v2/service_instances/:instance_id/service_bindings/:binding_id`.
    ///
    /// New id: 201 with fresh credentials (202 when asynchronous). Identical repeat: 200
    /// with the same credentials (none once expired: the repeat never recreates them),
    /// or 202 with the same operation while it runs.
    /// Different request, or the id used under another instance: 409.
    pub async fn bind(
        &self,
        ctx: &RequestContext,
        instance_id: &str,
        binding_id: &str,
        mut request: BindRequest,
        accepts_incomplete: bool,
    ) -> BrokerResult<BindOutcome> {
        input::platform_id(instance_id, "instance_id")?;
        input::platform_id(binding_id, "binding_id")?;
        let rotates = self
            .rotation_predecessor(ctx, instance_id, &mut request)
            .await?;
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
        if rotates.is_some() && !plan.binding_rotatable {
            return Err(BrokerError::Unprocessable(format!(
                "Bindings of plan `{}` cannot be rotated.",
                plan.name
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
        let run_async = Self::binding_runs_async(ctx, plan.execution, accepts_incomplete)?;

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

        let expires_at = plan
            .binding_lifetime
            .map(|lifetime| chrono::Utc::now().trunc_subsecs(3) + lifetime);
        let metadata = Self::binding_metadata(ctx, expires_at, plan.binding_lifetime);
        let operation = self.new_operation(
            OperationKind::Bind,
            instance_id,
            Some(binding_id),
            json!({}),
            Some(plan),
            run_async,
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
            expires_at,
            predecessor_binding_id: rotates.as_deref(),
        };
        let known = Known {
            instance: Some(&instance),
            binding_parameters: parameters.as_object(),
        };
        match self.store.insert_binding(&new, &operation).await? {
            BindingInsert::Inserted => {
                return self
                    .finish_bind_start(&operation, run_async, metadata, known)
                    .await;
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
                credentials: Some(self.unexpired_credentials(&existing)?),
                metadata: Self::binding_metadata(ctx, existing.expires_at, plan.binding_lifetime),
                ..BindResponse::default()
            })),
            (BindingState::Creating, Some(op)) if run_async => Ok(BindOutcome::Accepted {
                operation: op.to_string(),
            }),
            // A failed binding that nothing runs on was replaced by `insert_binding`
            // above; one seen here failed in between: the platform may simply retry.
            _ => Err(busy("service binding")),
        }
    }

    async fn finish_bind_start(
        &self,
        operation: &NewOperation<'_>,
        run_async: bool,
        metadata: Option<Map<String, Value>>,
        known: Known<'_>,
    ) -> BrokerResult<BindOutcome> {
        if run_async {
            self.wake_worker();
            return Ok(BindOutcome::Accepted {
                operation: operation.operation_id.to_string(),
            });
        }
        let credentials = self.run_inline(operation, known).await?;
        Ok(BindOutcome::Created(BindResponse {
            credentials: Some(credentials.map(|c| c.to_json()).unwrap_or_default()),
            metadata,
            ..BindResponse::default()
        }))
    }

    /// 2.17 binding rotation: checks `predecessor_binding_id` and fills what the
    /// request leaves out (service, plan, parameters, bind resource) from the
    /// predecessor, so the successor is an identical binding with new credentials.
    /// Returns the predecessor's id when the request rotates.
    async fn rotation_predecessor(
        &self,
        ctx: &RequestContext,
        instance_id: &str,
        request: &mut BindRequest,
    ) -> BrokerResult<Option<String>> {
        if !ctx.version.has(ApiVersion::V2_17) {
            return Ok(None);
        }
        let Some(predecessor_id) = request
            .predecessor_binding_id
            .clone()
            .filter(|p| !p.is_empty())
        else {
            return Ok(None);
        };
        let predecessor = self.store.find_binding(&predecessor_id).await?.filter(|p| {
            p.instance_id == instance_id
                && p.state == BindingState::Ready
                && p.expires_at.is_none_or(|t| t > chrono::Utc::now())
        });
        let Some(predecessor) = predecessor else {
            return Err(BrokerError::bad_request(format!(
                "predecessor_binding_id `{predecessor_id}` is not a live, unexpired binding of instance {instance_id}"
            )));
        };
        request
            .service_id
            .get_or_insert(predecessor.service_id.clone());
        request.plan_id.get_or_insert(predecessor.plan_id.clone());
        if request.parameters.is_none() {
            request.parameters = Some(predecessor.parameters.clone());
        }
        if request.bind_resource.is_none() && request.app_guid.is_none() {
            let mut resource = Map::new();
            if let Some(app) = &predecessor.app_guid {
                resource.insert("app_guid".to_owned(), Value::String(app.clone()));
            }
            if let Some(route) = &predecessor.route {
                resource.insert("route".to_owned(), Value::String(route.clone()));
            }
            if !resource.is_empty() {
                request.bind_resource = Some(Value::Object(resource));
            }
        }
        Ok(Some(predecessor_id))
    }

    /// `DELETE /v2/service_instances/:instance_id/service_bindings/:binding_id`.
    /// Also cleans up a binding whose bind failed or is still running (orphan mitigation).
    pub async fn unbind(
        &self,
        ctx: &RequestContext,
        instance_id: &str,
        binding_id: &str,
        service_id: Option<&str>,
        plan_id: Option<&str>,
        accepts_incomplete: bool,
    ) -> BrokerResult<DeleteOutcome> {
        input::required_query(service_id, "service_id")?;
        input::required_query(plan_id, "plan_id")?;
        let binding = match self.store.find_binding(binding_id).await? {
            Some(b) if b.state != BindingState::Deleted && b.instance_id == instance_id => b,
            _ => return Err(BrokerError::Gone),
        };
        let plan = self
            .catalog
            .plan(&binding.service_id, &binding.plan_id)
            .map(|(_, p)| p);
        let execution = plan.map_or(PlanExecution::Preferred, |p| p.execution);
        let run_async = Self::binding_runs_async(ctx, execution, accepts_incomplete)?;
        let operation = self.new_operation(
            OperationKind::Unbind,
            instance_id,
            Some(binding_id),
            json!({}),
            plan,
            run_async,
        );
        if let Some(active_id) = binding.active_operation_id {
            let active = self.store.find_operation(active_id).await?;
            return match active.map(|a| a.kind) {
                Some(OperationKind::Unbind) if run_async => Ok(DeleteOutcome::Accepted {
                    operation: active_id.to_string(),
                }),
                Some(OperationKind::Bind) if run_async => {
                    let queued = NewOperation {
                        inline_owner: None,
                        ..operation
                    };
                    if !self
                        .store
                        .supersede_operation(
                            OperationTarget::Binding(binding_id),
                            active_id,
                            &queued,
                            "Cancelled: the binding was deleted before it was created.",
                        )
                        .await?
                    {
                        return Err(busy("service binding"));
                    }
                    self.wake_worker();
                    Ok(DeleteOutcome::Accepted {
                        operation: queued.operation_id.to_string(),
                    })
                }
                _ => Err(busy("service binding")),
            };
        }
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
        if run_async {
            self.wake_worker();
            return Ok(DeleteOutcome::Accepted {
                operation: operation.operation_id.to_string(),
            });
        }
        let known = Known {
            instance: None,
            binding_parameters: binding.parameters.as_object(),
        };
        self.run_inline(&operation, known).await?;
        Ok(DeleteOutcome::Deleted)
    }

    /// `GET /v2/service_instances/:instance_id/service_bindings/:binding_id` (2.14):
    /// the stored binding with its credentials; 404 while it is being created. An
    /// expired binding is still returned, with empty credentials and (2.16+) its past
    /// `metadata.expires_at`.
    pub async fn get_binding(
        &self,
        ctx: &RequestContext,
        instance_id: &str,
        binding_id: &str,
    ) -> BrokerResult<BindResponse> {
        let not_found =
            || BrokerError::NotFound(format!("Service binding {binding_id} does not exist."));
        let binding = match self.store.find_binding(binding_id).await? {
            Some(b) if b.instance_id == instance_id && b.state == BindingState::Ready => b,
            _ => return Err(not_found()),
        };
        Ok(BindResponse {
            credentials: Some(self.unexpired_credentials(&binding)?),
            parameters: binding
                .parameters
                .as_object()
                .filter(|p| !p.is_empty())
                .cloned(),
            metadata: Self::binding_metadata(
                ctx,
                binding.expires_at,
                self.catalog
                    .plan(&binding.service_id, &binding.plan_id)
                    .and_then(|(_, p)| p.binding_lifetime),
            ),
            ..BindResponse::default()
        })
    }

    /// The credentials a repeated bind or a fetch hands out: the stored ones, or an
    /// empty object once the binding has expired. Its credentials are then revoked (or
    /// about to be), and a platform sees that there is nothing to use rather than a
    /// password the server refuses (docs/decisions.md, binding expiry).
    fn unexpired_credentials(&self, binding: &BindingRecord) -> BrokerResult<Map<String, Value>> {
        if binding.has_expired(chrono::Utc::now()) {
            return Ok(Map::new());
        }
        self.open_credentials(binding)
    }

    pub(super) fn open_credentials(
        &self,
        binding: &BindingRecord,
    ) -> BrokerResult<Map<String, Value>> {
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
