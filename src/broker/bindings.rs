//! Bind and unbind (OSB §5.2–5.3): synchronous as in 2.13, asynchronous for 2.14+
//! clients that send `accepts_incomplete=true`.

use chrono::SubsecRound as _;
use serde_json::{Map, Value, json};

use super::fingerprint::same_binding;
use super::requests::{DeleteHints, NewBindingRequest};
use super::{
    BindOutcome, Broker, DeleteOutcome, RequestContext, Started, busy, input, no_such, taken,
};
use crate::catalog::Execution as PlanExecution;
use crate::error::{BrokerError, BrokerResult};
use crate::osb::{ApiVersion, BindRequest, BindResponse};
use crate::store::{
    BindingInsert, BindingRecord, BindingState, InstanceState, NewBinding, OperationKind,
    OperationTarget,
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
        let request = NewBindingRequest::parse(
            &self.catalog,
            (instance_id, binding_id),
            &request,
            rotates.as_deref(),
        )?;
        let plan = request.plan;
        let run_async = Self::binding_runs_async(ctx, plan.execution, accepts_incomplete)?;
        let instance = self.live_instance(instance_id).await?;
        if instance.service_id != request.service_id || instance.plan_id != plan.id {
            return Err(BrokerError::bad_request(format!(
                "service_id and plan_id must be those of instance {instance_id} (plan `{}`)",
                instance.plan_id
            )));
        }

        let expires_at = plan
            .binding_lifetime
            .map(|lifetime| chrono::Utc::now().trunc_subsecs(3) + lifetime);
        let operation = self.new_operation(
            OperationKind::Bind,
            instance_id,
            Some(binding_id),
            json!({}),
            Some(plan),
            run_async,
        );
        let parameters = Value::Object(request.parameters.clone());
        let new = NewBinding {
            binding_id,
            instance_id,
            service_id: request.service_id,
            plan_id: &plan.id,
            parameters: &parameters,
            app_guid: request.app_guid,
            route: request.route,
            bind_resource: request.bind_resource.as_ref(),
            context: request.context.as_ref(),
            expires_at,
            predecessor_binding_id: request.predecessor,
        };
        match self.store.insert_binding(&new, &operation).await? {
            BindingInsert::Inserted => {}
            BindingInsert::InstanceUnavailable => {
                return Err(self.unbindable_instance(instance_id).await?);
            }
            BindingInsert::Exists => return self.bind_again(ctx, &request, run_async).await,
        }
        let known = Known {
            instance: Some(&instance),
            binding_parameters: Some(&request.parameters),
        };
        Ok(match self.start(&operation, run_async, known).await? {
            Started::Queued(operation) => BindOutcome::Accepted { operation },
            Started::Done(credentials) => BindOutcome::Created(BindResponse {
                credentials: Some(credentials.map(|c| c.to_json()).unwrap_or_default()),
                metadata: Self::binding_metadata(ctx, expires_at, plan.binding_lifetime),
                ..BindResponse::default()
            }),
        })
    }

    /// Why a bind found its instance unable to take a binding: it failed to provision
    /// (422), something runs on it (422 `ConcurrencyError`), or it is gone (404).
    async fn unbindable_instance(&self, instance_id: &str) -> BrokerResult<BrokerError> {
        Ok(match self.store.find_instance(instance_id).await? {
            Some(i) if i.state == InstanceState::Failed && i.active_operation_id.is_none() => {
                BrokerError::Unprocessable(format!(
                    "Service instance {instance_id} failed to provision and cannot be bound."
                ))
            }
            Some(i) if i.state != InstanceState::Deleted => busy("service instance"),
            _ => no_such("instance", instance_id),
        })
    }

    /// A bind whose binding id is taken: a replay (200 with the same credentials, or
    /// 202 with the running operation), a conflict (409), or "still running".
    async fn bind_again(
        &self,
        ctx: &RequestContext,
        request: &NewBindingRequest<'_>,
        run_async: bool,
    ) -> BrokerResult<BindOutcome> {
        let existing = self
            .store
            .find_binding(request.binding_id)
            .await?
            .ok_or_else(|| busy("service binding"))?;
        if !same_binding(&existing, request) {
            return Err(taken("binding", request.binding_id));
        }
        match (existing.state, existing.active_operation_id) {
            (BindingState::Ready, None) => Ok(BindOutcome::AlreadyExists(BindResponse {
                credentials: Some(self.unexpired_credentials(&existing)?),
                metadata: Self::binding_metadata(
                    ctx,
                    existing.expires_at,
                    request.plan.binding_lifetime,
                ),
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
        DeleteHints::parse(service_id, plan_id)?;
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
                    self.supersede_create(
                        OperationTarget::Binding(binding_id),
                        active_id,
                        operation,
                        "Cancelled: the binding was deleted before it was created.",
                    )
                    .await
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
        let known = Known {
            instance: None,
            binding_parameters: binding.parameters.as_object(),
        };
        let started = self.start(&operation, run_async, known).await?;
        Ok(started.into())
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
        let binding = match self.store.find_binding(binding_id).await? {
            Some(b) if b.instance_id == instance_id && b.state == BindingState::Ready => b,
            _ => return Err(no_such("binding", binding_id)),
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
