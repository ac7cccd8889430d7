//! ServiceInstance reconcile: provision, update, deprovision and poll, with Service Catalog's
//! rules (kubernetes-platform.md, A.3): 400 is terminal for provision and update, everything
//! else is retried with backoff up to the maximum retry duration; a provision that ended in a
//! 5xx, a timeout, an odd 2xx or `failed` is orphan-mitigated with a DELETE; a delete waits for
//! the instance's bindings, and 410 is success for it. Every pass starts from the stored status,
//! which is written before each broker call, so a restarted controller continues.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{ListParams, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde_json::{Value, json};

use crate::conditions::{self, FAILED, READY};
use crate::context::{self, Context, Error, Result};
use crate::crd::{
    ClusterServiceClass, ClusterServicePlan, InstanceProperties, NameRef, ServiceBinding,
    ServiceInstance, ServiceInstanceStatus,
};
use crate::object;
use crate::osb::{Ids, Reply, Unreachable};
use crate::parameters::{self, Parameters};

const PROVISION: &str = "Provision";
const UPDATE: &str = "Update";
const DEPROVISION: &str = "Deprovision";

pub async fn reconcile(si: Arc<ServiceInstance>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = si.namespace().unwrap_or_default();
    let api = Api::<ServiceInstance>::namespaced(ctx.client.clone(), &namespace);
    let si = match object::fresh(&api, &si.name_any(), |o| o.spec.external_id.as_deref()).await? {
        Ok(obj) => obj,
        Err(action) => return Ok(action),
    };
    let deleting = si.meta().deletion_timestamp.is_some();
    let mut pass = Pass::new(api, si, ctx);
    let action = if deleting {
        pass.delete().await
    } else {
        pass.run().await
    };
    metrics::counter!("bindery_controller_reconciliations_total", "kind" => "ServiceInstance",
        "result" => if action.is_ok() { "ok" } else { "error" })
    .increment(1);
    action
}

/// One reconcile of one instance: the object as read, the status being built, events to send.
struct Pass {
    api: Api<ServiceInstance>,
    si: ServiceInstance,
    status: ServiceInstanceStatus,
    ctx: Arc<Context>,
    key: String,
    events: Vec<object::PendingEvent>,
}

/// The class and plan an instance resolved to.
struct Target {
    class: ClusterServiceClass,
    plan: ClusterServicePlan,
}

impl Pass {
    fn new(api: Api<ServiceInstance>, si: ServiceInstance, ctx: Arc<Context>) -> Self {
        let status = si.status.clone().unwrap_or_default();
        let key = context::key(&si);
        Self {
            api,
            si,
            status,
            ctx,
            key,
            events: Vec::new(),
        }
    }

    fn generation(&self) -> i64 {
        self.si.meta().generation.unwrap_or(0)
    }

    /// Sets a condition; a transition becomes an event.
    fn condition(&mut self, type_: &str, ok: bool, reason: &str, message: &str) {
        let status = &mut self.status;
        conditions::record(
            &mut status.conditions,
            &mut status.last_condition_state,
            &mut self.events,
            (type_, ok),
            reason,
            message,
        );
    }

    /// Writes the status when it changed, then sends the events of its transitions.
    async fn save(&mut self) -> Result<()> {
        object::save(
            &self.api,
            &mut self.si,
            &self.status,
            &mut self.events,
            &self.ctx,
        )
        .await
    }

    /// Waits with backoff, then comes back.
    fn retry(&self) -> Action {
        Action::requeue(self.ctx.backoff(&self.key))
    }

    async fn run(&mut self) -> Result<Action> {
        if self.status.async_op_in_progress == Some(true) {
            return self.poll().await;
        }
        if self.status.orphan_mitigation_in_progress == Some(true) {
            return self.deprovision(true).await;
        }
        let failed_here = conditions::is_true(&self.status.conditions, FAILED)
            && self.status.reconciled_generation == Some(self.generation());
        if failed_here {
            return Ok(Action::await_change());
        }
        let target = match self.resolve().await? {
            Ok(target) => target,
            Err((reason, message)) => {
                self.condition(READY, false, reason, &message);
                self.save().await?;
                return Ok(self.retry());
            }
        };
        if self.set_refs(&target).await? {
            return Ok(Action::await_change());
        }
        let namespace = self.si.namespace().unwrap_or_default();
        let params = match parameters::resolve(
            &self.ctx,
            &namespace,
            self.si.spec.parameters.as_ref(),
            &self.si.spec.parameters_from,
        )
        .await
        {
            Ok(p) => p,
            Err(e) => {
                self.condition(READY, false, "ErrorWithParameters", &e.to_string());
                self.save().await?;
                return Ok(self.retry());
            }
        };
        let provisioned = self.status.provision_status.as_deref() == Some("Provisioned");
        if !provisioned {
            return self.provision(&target, &params).await;
        }
        if self.status.reconciled_generation.unwrap_or(0) < self.generation() {
            let known_plan = self
                .status
                .external_properties
                .as_ref()
                .and_then(|p| p.cluster_service_plan_external_id.as_deref());
            if known_plan != Some(target.plan.spec.external_id.as_str())
                && !target.class.spec.plan_updatable
            {
                // Service Catalog's webhook refused this; without a webhook it is a terminal failure.
                let message = format!(
                    "the class {:?} does not allow plan changes",
                    target.class.spec.external_name
                );
                self.update_failed(&message);
                self.save().await?;
                return Ok(Action::await_change());
            }
            return self.update(&target, &params).await;
        }
        Ok(Action::await_change())
    }

    /// The class and plan the spec names; the error is `(reason, message)` for `Ready`.
    async fn resolve(&self) -> Result<std::result::Result<Target, (&'static str, String)>> {
        let spec = &self.si.spec;
        let classes = Api::<ClusterServiceClass>::all(self.ctx.client.clone())
            .list(&ListParams::default())
            .await?;
        let class = classes.into_iter().find(|c| {
            spec.cluster_service_class_name.as_deref() == Some(c.name_any().as_str())
                || spec.cluster_service_class_external_name.as_deref()
                    == Some(c.spec.external_name.as_str())
                || spec.cluster_service_class_external_id.as_deref()
                    == Some(c.spec.external_id.as_str())
        });
        let Some(class) = class else {
            return Ok(Err((
                "ReferencesNonexistentServiceClass",
                format!("no ClusterServiceClass matches {}", self.class_wanted()),
            )));
        };
        let plans = Api::<ClusterServicePlan>::all(self.ctx.client.clone())
            .list(&ListParams::default())
            .await?;
        let plans: Vec<_> = plans
            .into_iter()
            .filter(|p| p.spec.cluster_service_class_ref.name == class.name_any())
            .collect();
        let named = spec.cluster_service_plan_name.is_some()
            || spec.cluster_service_plan_external_name.is_some()
            || spec.cluster_service_plan_external_id.is_some();
        let plan = if named {
            plans.into_iter().find(|p| {
                spec.cluster_service_plan_name.as_deref() == Some(p.name_any().as_str())
                    || spec.cluster_service_plan_external_name.as_deref()
                        == Some(p.spec.external_name.as_str())
                    || spec.cluster_service_plan_external_id.as_deref()
                        == Some(p.spec.external_id.as_str())
            })
        } else if plans.len() == 1 {
            plans.into_iter().next()
        } else {
            return Ok(Err((
                "ReferencesNonexistentServicePlan",
                "no plan named and the class has more than one".to_owned(),
            )));
        };
        let Some(plan) = plan else {
            return Ok(Err((
                "ReferencesNonexistentServicePlan",
                format!("no plan of class {:?} matches", class.spec.external_name),
            )));
        };
        let removed = |s: Option<&crate::crd::CatalogEntryStatus>| {
            s.and_then(|s| s.removed_from_broker_catalog) == Some(true)
        };
        let moving = self
            .status
            .external_properties
            .as_ref()
            .and_then(|p| p.cluster_service_plan_external_id.as_deref())
            != Some(plan.spec.external_id.as_str());
        if moving && (removed(class.status.as_ref()) || removed(plan.status.as_ref())) {
            return Ok(Err((
                "ReferencesDeletedServicePlan",
                "the plan is no longer in the broker's catalog".to_owned(),
            )));
        }
        Ok(Ok(Target { class, plan }))
    }

    fn class_wanted(&self) -> String {
        let spec = &self.si.spec;
        let name = spec.cluster_service_class_external_name.as_ref();
        let name = name
            .or(spec.cluster_service_class_external_id.as_ref())
            .or(spec.cluster_service_class_name.as_ref());
        format!("{:?}", name.cloned().unwrap_or_default())
    }

    /// Records the resolved class and plan in the spec (as Service Catalog did) and the names
    /// the user gave in the status; true when the spec was patched (a new pass follows).
    async fn set_refs(&mut self, target: &Target) -> Result<bool> {
        let class_ref = NameRef {
            name: target.class.name_any(),
        };
        let plan_ref = NameRef {
            name: target.plan.name_any(),
        };
        self.status.user_specified_class_name = Some(format!(
            "ClusterServiceClass/{}",
            target.class.spec.external_name
        ));
        self.status.user_specified_plan_name = Some(target.plan.spec.external_name.clone());
        if self.si.spec.cluster_service_class_ref.as_ref() == Some(&class_ref)
            && self.si.spec.cluster_service_plan_ref.as_ref() == Some(&plan_ref)
        {
            return Ok(false);
        }
        let patch = json!({
            "metadata": {"resourceVersion": self.si.resource_version()},
            "spec": {"clusterServiceClassRef": class_ref, "clusterServicePlanRef": plan_ref},
        });
        self.api
            .patch(
                &self.si.name_any(),
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await?;
        Ok(true)
    }

    /// `context` of provision, update and bind.
    fn osb_context(&self) -> Value {
        json!({
            "platform": "kubernetes",
            "namespace": self.si.namespace().unwrap_or_default(),
            "clusterid": self.ctx.cluster_id,
            "instance_name": self.si.name_any(),
        })
    }

    fn iid(&self) -> String {
        self.si.spec.external_id.clone().unwrap_or_default()
    }

    /// Starts an operation: what is sent, when, for which generation; written before the call.
    fn begin(&mut self, operation: &str, target: &Target, params: &Parameters) {
        if self.status.current_operation.as_deref() != Some(operation)
            || self.status.operation_start_time.is_none()
        {
            self.status.operation_start_time = Some(conditions::now_rfc3339());
        }
        self.status.current_operation = Some(operation.to_owned());
        self.status.observed_generation = Some(self.generation());
        self.status.in_progress_properties = Some(InstanceProperties {
            cluster_service_plan_external_name: Some(target.plan.spec.external_name.clone()),
            cluster_service_plan_external_id: Some(target.plan.spec.external_id.clone()),
            parameters: Some(Value::Object(params.redacted.clone())),
            parameter_checksum: Some(params.checksum.clone()),
            user_info: self
                .si
                .spec
                .user_info
                .as_ref()
                .and_then(|u| serde_json::to_value(u).ok()),
        });
    }

    /// Whether the current operation has been retried for longer than allowed.
    fn retries_exhausted(&self) -> bool {
        let Some(start) = self.status.operation_start_time.as_deref() else {
            return false;
        };
        let Ok(start) = chrono::DateTime::parse_from_rfc3339(start) else {
            return false;
        };
        let elapsed = (chrono::Utc::now() - start.with_timezone(&chrono::Utc))
            .to_std()
            .unwrap_or_default();
        elapsed > self.ctx.settings.max_retry_duration
    }

    /// The operation is over (success or terminal failure): the next one starts afresh.
    fn end(&mut self) {
        self.status.current_operation = None;
        self.status.operation_start_time = None;
        self.status.async_op_in_progress = None;
        self.status.last_operation = None;
        self.ctx.reset_backoff(&self.key);
    }

    async fn provision(&mut self, target: &Target, params: &Parameters) -> Result<Action> {
        if self.status.current_operation.as_deref() == Some(PROVISION) && self.retries_exhausted() {
            self.condition(
                FAILED,
                true,
                "ReconciliationRetryTimeout",
                "Stopped retrying the provision: the maximum retry duration passed",
            );
            self.condition(
                READY,
                false,
                "ReconciliationRetryTimeout",
                "Stopped retrying the provision",
            );
            self.status.reconciled_generation = Some(self.generation());
            self.end();
            return self.start_orphan_mitigation().await;
        }
        self.begin(PROVISION, target, params);
        self.status.deprovision_status = Some("Required".into());
        if !conditions::is_true(&self.status.conditions, READY)
            && self.status.conditions.iter().all(|c| c.type_ != READY)
        {
            self.condition(
                READY,
                false,
                "Provisioning",
                "The instance is being provisioned",
            );
        }
        self.save().await?;
        let space = self.namespace_uid().await?;
        let body = json!({
            "service_id": target.class.spec.external_id,
            "plan_id": target.plan.spec.external_id,
            "organization_guid": self.ctx.cluster_id,
            "space_guid": space,
            "parameters": params.merged,
            "context": self.osb_context(),
        });
        let broker = self
            .ctx
            .broker(&target.class.spec.cluster_service_broker_name)
            .await?;
        let reply = broker
            .provision(&self.iid(), &body, self.si.spec.user_info.as_ref())
            .await;
        self.provision_reply(reply).await
    }

    async fn provision_reply(
        &mut self,
        reply: std::result::Result<Reply, Unreachable>,
    ) -> Result<Action> {
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) => {
                let message = format!("Error provisioning the instance: {e}");
                self.condition(READY, false, "ProvisionCallFailed", &message);
                if e.timed_out {
                    return self.start_orphan_mitigation().await;
                }
                self.save().await?;
                return Ok(self.retry());
            }
        };
        let message = format!("Error provisioning the instance: {}", reply.error_message());
        match reply.status {
            200 | 201 if reply.body.is_some() => {
                self.status.dashboard_url = reply
                    .field("dashboard_url")
                    .map(str::to_owned)
                    .or(self.status.dashboard_url.take());
                self.provisioned();
                self.save().await?;
                Ok(Action::await_change())
            }
            202 => {
                self.status.dashboard_url = reply
                    .field("dashboard_url")
                    .map(str::to_owned)
                    .or(self.status.dashboard_url.take());
                self.start_polling(
                    &reply,
                    "Provisioning",
                    "The instance is being provisioned asynchronously",
                )
                .await
            }
            400 => {
                self.condition(FAILED, true, "ProvisionCallFailed", &message);
                self.condition(READY, false, "ProvisionCallFailed", &message);
                self.status.provision_status = Some("NotProvisioned".into());
                self.status.deprovision_status = Some("NotRequired".into());
                self.status.reconciled_generation = Some(self.generation());
                self.status.in_progress_properties = None;
                self.end();
                self.save().await?;
                Ok(Action::await_change())
            }
            s if (200..300).contains(&s) || s >= 500 => {
                self.condition(READY, false, "ProvisionCallFailed", &message);
                self.start_orphan_mitigation().await
            }
            _ => {
                self.condition(READY, false, "ProvisionCallFailed", &message);
                self.save().await?;
                Ok(self.retry())
            }
        }
    }

    fn provisioned(&mut self) {
        self.status.provision_status = Some("Provisioned".into());
        self.finished(
            "ProvisionedSuccessfully",
            "The instance was provisioned successfully",
        );
    }

    /// A provision or update succeeded: what was sent is what the broker has.
    fn finished(&mut self, reason: &str, message: &str) {
        self.status.external_properties = self.status.in_progress_properties.take();
        self.status.reconciled_generation = self.status.observed_generation;
        conditions::remove(&mut self.status.conditions, FAILED);
        self.condition(READY, true, reason, message);
        self.end();
    }

    async fn start_polling(
        &mut self,
        reply: &Reply,
        reason: &str,
        message: &str,
    ) -> Result<Action> {
        self.status.async_op_in_progress = Some(true);
        self.status.last_operation = reply.field("operation").map(str::to_owned);
        self.condition(READY, false, reason, message);
        self.save().await?;
        self.ctx.reset_backoff(&self.key);
        Ok(self.retry())
    }

    /// Marks the instance for an orphan-mitigation DELETE, then sends it.
    async fn start_orphan_mitigation(&mut self) -> Result<Action> {
        self.status.orphan_mitigation_in_progress = Some(true);
        self.status.async_op_in_progress = None;
        self.status.last_operation = None;
        self.save().await?;
        self.deprovision(true).await
    }

    async fn update(&mut self, target: &Target, params: &Parameters) -> Result<Action> {
        if self.status.current_operation.as_deref() == Some(UPDATE) && self.retries_exhausted() {
            self.condition(
                FAILED,
                true,
                "ReconciliationRetryTimeout",
                "Stopped retrying the update: the maximum retry duration passed",
            );
            self.status.reconciled_generation = Some(self.generation());
            self.end();
            self.save().await?;
            return Ok(Action::await_change());
        }
        let known = self.status.external_properties.clone().unwrap_or_default();
        self.begin(UPDATE, target, params);
        self.save().await?;
        let old_plan = known
            .cluster_service_plan_external_id
            .clone()
            .unwrap_or_default();
        let mut body = json!({
            "service_id": target.class.spec.external_id,
            "context": self.osb_context(),
            "previous_values": {"plan_id": old_plan, "service_id": target.class.spec.external_id},
        });
        if old_plan != target.plan.spec.external_id {
            body["plan_id"] = json!(target.plan.spec.external_id);
        }
        if known.parameter_checksum.as_deref() != Some(params.checksum.as_str()) {
            body["parameters"] = Value::Object(params.merged.clone());
        }
        let broker = self
            .ctx
            .broker(&target.class.spec.cluster_service_broker_name)
            .await?;
        let reply = broker
            .update(&self.iid(), &body, self.si.spec.user_info.as_ref())
            .await;
        let reply = match reply {
            Ok(reply) => reply,
            Err(e) => {
                self.condition(
                    READY,
                    false,
                    "UpdateInstanceCallFailed",
                    &format!("Error updating the instance: {e}"),
                );
                self.save().await?;
                return Ok(self.retry());
            }
        };
        let message = format!("Error updating the instance: {}", reply.error_message());
        match reply.status {
            200 => {
                self.finished(
                    "InstanceUpdatedSuccessfully",
                    "The instance was updated successfully",
                );
                self.save().await?;
                Ok(Action::await_change())
            }
            202 => {
                self.start_polling(
                    &reply,
                    "UpdatingInstance",
                    "The instance is being updated asynchronously",
                )
                .await
            }
            400 => {
                self.update_failed(&message);
                self.save().await?;
                Ok(Action::await_change())
            }
            _ => {
                self.condition(READY, false, "UpdateInstanceCallFailed", &message);
                self.save().await?;
                Ok(self.retry())
            }
        }
    }

    /// A terminal update failure: the broker still has the old plan and parameters.
    fn update_failed(&mut self, message: &str) {
        self.condition(FAILED, true, "UpdateInstanceCallFailed", message);
        self.condition(READY, false, "UpdateInstanceCallFailed", message);
        self.status.reconciled_generation = Some(self.generation());
        self.status.in_progress_properties = None;
        self.end();
    }

    /// The service and plan ids of the current operation: the plan being moved to while
    /// provisioning or updating, the last one the broker accepted when deleting.
    async fn ids(&self, deleting: bool) -> Result<(String, String, String)> {
        let class_name = self
            .si
            .spec
            .cluster_service_class_ref
            .as_ref()
            .map(|r| r.name.clone())
            .unwrap_or_default();
        let class = Api::<ClusterServiceClass>::all(self.ctx.client.clone())
            .get_opt(&class_name)
            .await?
            .ok_or_else(|| {
                Error::Other(format!("ClusterServiceClass {class_name:?} does not exist"))
            })?;
        let (known, sent) = (
            self.status.external_properties.as_ref(),
            self.status.in_progress_properties.as_ref(),
        );
        let props = if deleting {
            known.or(sent)
        } else {
            sent.or(known)
        };
        let plan = props
            .and_then(|p| p.cluster_service_plan_external_id.clone())
            .unwrap_or_default();
        Ok((
            class.spec.cluster_service_broker_name,
            class.spec.external_id,
            plan,
        ))
    }

    async fn poll(&mut self) -> Result<Action> {
        let operation = self.status.current_operation.clone().unwrap_or_default();
        let deleting = operation == DEPROVISION;
        let (broker, service, plan) = self.ids(deleting).await?;
        let broker = self.ctx.broker(&broker).await?;
        let ids = Ids {
            service: &service,
            plan: &plan,
        };
        let reply = broker
            .last_operation(
                &self.iid(),
                self.status.last_operation.as_deref(),
                &ids,
                self.si.spec.user_info.as_ref(),
            )
            .await;
        if !deleting && self.retries_exhausted() {
            // Polled for longer than allowed: given up as if the broker had said `failed`.
            let body =
                json!({"state": "failed", "description": "the maximum retry duration passed"});
            let reply = Reply {
                status: 200,
                body: Some(body),
            };
            return self.poll_reply(&operation, reply).await;
        }
        let Ok(reply) = reply else {
            return Ok(self.retry());
        };
        self.poll_reply(&operation, reply).await
    }

    /// What a `last_operation` answer means for the operation being polled.
    async fn poll_reply(&mut self, operation: &str, reply: Reply) -> Result<Action> {
        let deleting = operation == DEPROVISION;
        if deleting && reply.is(410) {
            return self.deprovisioned().await;
        }
        let state = if reply.is(200) {
            reply.field("state").unwrap_or_default().to_owned()
        } else {
            String::new()
        };
        let description = reply.field("description").unwrap_or_default().to_owned();
        match (operation, state.as_str(), reply.status) {
            (_, "in progress", _) => {
                if !description.is_empty() {
                    let reason = self
                        .status
                        .conditions
                        .iter()
                        .find(|c| c.type_ == READY)
                        .and_then(|c| c.reason.clone());
                    self.condition(
                        READY,
                        false,
                        reason.as_deref().unwrap_or("Provisioning"),
                        &description,
                    );
                    self.save().await?;
                }
                Ok(self.retry())
            }
            (PROVISION, "succeeded", _) => {
                self.provisioned();
                self.save().await?;
                Ok(Action::await_change())
            }
            (UPDATE, "succeeded", _) => {
                self.finished(
                    "InstanceUpdatedSuccessfully",
                    "The instance was updated successfully",
                );
                self.save().await?;
                Ok(Action::await_change())
            }
            (DEPROVISION, "succeeded", _) => self.deprovisioned().await,
            (PROVISION, "failed", _) | (PROVISION, _, 400) => {
                let message = format!(
                    "Error provisioning the instance: {}",
                    if description.is_empty() {
                        reply.error_message()
                    } else {
                        description
                    }
                );
                self.condition(FAILED, true, "ProvisionCallFailed", &message);
                self.condition(READY, false, "ProvisionCallFailed", &message);
                self.status.reconciled_generation = Some(self.generation());
                self.end();
                self.start_orphan_mitigation().await
            }
            (UPDATE, "failed", _) | (UPDATE, _, 400) => {
                let message = format!(
                    "Error updating the instance: {}",
                    if description.is_empty() {
                        reply.error_message()
                    } else {
                        description
                    }
                );
                self.update_failed(&message);
                self.save().await?;
                Ok(Action::await_change())
            }
            (DEPROVISION, "failed", _) => {
                // Service Catalog sends the DELETE again.
                self.status.async_op_in_progress = None;
                self.status.last_operation = None;
                let message = format!("Error deprovisioning the instance: {description}");
                self.condition(READY, false, "DeprovisionCallFailed", &message);
                self.save().await?;
                Ok(self.retry())
            }
            _ => Ok(self.retry()),
        }
    }

    async fn namespace_uid(&self) -> Result<String> {
        let namespace = Api::<Namespace>::all(self.ctx.client.clone())
            .get(&self.si.namespace().unwrap_or_default())
            .await?;
        Ok(namespace.metadata.uid.unwrap_or_default())
    }

    /// The instance is being deleted.
    async fn delete(&mut self) -> Result<Action> {
        let bindings = Api::<ServiceBinding>::namespaced(
            self.ctx.client.clone(),
            &self.si.namespace().unwrap_or_default(),
        )
        .list(&ListParams::default())
        .await?;
        let mine = bindings
            .iter()
            .filter(|b| b.spec.instance_ref.name == self.si.name_any())
            .count();
        if mine > 0 {
            let message = format!(
                "All associated ServiceBindings must be removed before this ServiceInstance can be deleted ({mine} left)"
            );
            self.condition(
                READY,
                false,
                "DeprovisionBlockedByExistingCredentials",
                &message,
            );
            self.save().await?;
            return Ok(Action::requeue(Duration::from_secs(2)));
        }
        let required = matches!(
            self.status.deprovision_status.as_deref(),
            Some("Required" | "Failed")
        );
        if !required {
            object::remove_finalizer(&self.api, &self.si).await?;
            return Ok(Action::await_change());
        }
        if self.status.async_op_in_progress == Some(true)
            && self.status.current_operation.as_deref() == Some(DEPROVISION)
        {
            return self.poll().await;
        }
        self.deprovision(false).await
    }

    /// Sends the DELETE: for a deleted instance, or as orphan mitigation.
    async fn deprovision(&mut self, orphan: bool) -> Result<Action> {
        if !orphan
            && self.retries_exhausted()
            && self.status.current_operation.as_deref() == Some(DEPROVISION)
        {
            self.status.deprovision_status = Some("Failed".into());
            self.condition(
                READY,
                false,
                "ReconciliationRetryTimeout",
                "Stopped retrying the deprovision",
            );
            self.save().await?;
            return Ok(Action::await_change());
        }
        if self.status.current_operation.as_deref() != Some(DEPROVISION) {
            self.status.operation_start_time = Some(conditions::now_rfc3339());
        }
        self.status.current_operation = Some(DEPROVISION.to_owned());
        if !orphan {
            self.condition(
                READY,
                false,
                "Deprovisioning",
                "The instance is being deprovisioned",
            );
        }
        self.save().await?;
        let (broker, service, plan) = self.ids(true).await?;
        let broker = self.ctx.broker(&broker).await?;
        let ids = Ids {
            service: &service,
            plan: &plan,
        };
        let reply = broker
            .deprovision(&self.iid(), &ids, self.si.spec.user_info.as_ref())
            .await;
        match reply {
            Ok(r) if r.is(200) || r.is(410) => self.deprovisioned().await,
            Ok(r) if r.is(202) => {
                self.status.async_op_in_progress = Some(true);
                self.status.last_operation = r.field("operation").map(str::to_owned);
                self.save().await?;
                self.ctx.reset_backoff(&self.key);
                Ok(self.retry())
            }
            Ok(r) => self.deprovision_failed(&r.error_message()).await,
            Err(e) => self.deprovision_failed(&e.to_string()).await,
        }
    }

    async fn deprovision_failed(&mut self, why: &str) -> Result<Action> {
        let message = format!("Error deprovisioning the instance: {why}");
        self.condition(READY, false, "DeprovisionCallFailed", &message);
        self.save().await?;
        Ok(self.retry())
    }

    /// The broker has no instance any more: an orphan mitigation is over (a retriable provision
    /// starts again), a deleted instance may go.
    async fn deprovisioned(&mut self) -> Result<Action> {
        let orphan = self.status.orphan_mitigation_in_progress == Some(true);
        self.end();
        self.status.orphan_mitigation_in_progress = None;
        self.status.provision_status = Some("NotProvisioned".into());
        self.status.deprovision_status =
            Some(if orphan { "NotRequired" } else { "Succeeded" }.into());
        self.status.external_properties = None;
        if !orphan {
            self.condition(
                READY,
                false,
                "DeprovisionedSuccessfully",
                "The instance was deprovisioned successfully",
            );
        }
        self.save().await?;
        if self.si.meta().deletion_timestamp.is_some() {
            object::remove_finalizer(&self.api, &self.si).await?;
            return Ok(Action::await_change());
        }
        // After orphan mitigation a retriable provision is tried again (a Failed one waits).
        Ok(Action::requeue(self.ctx.backoff(&self.key)))
    }
}

/// The ServiceInstance a binding names, for watching bindings from the instance controller.
pub fn owner_of(
    binding: &ServiceBinding,
) -> Option<kube::runtime::reflector::ObjectRef<ServiceInstance>> {
    let namespace = binding.namespace()?;
    Some(
        kube::runtime::reflector::ObjectRef::new(&binding.spec.instance_ref.name)
            .within(&namespace),
    )
}
