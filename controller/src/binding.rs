//! ServiceBinding reconcile: bind once the instance is Ready and write the credentials into a
//! Secret owned by the binding; on delete, remove the Secret, then unbind. Any HTTP error of a
//! bind is terminal (Service Catalog's rule); a 5xx, a timeout or an odd 2xx is orphan-mitigated
//! with an unbind. Unbind errors are retried with backoff.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::{Namespace, Secret};
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde_json::{Map, Value, json};

use crate::conditions::{self, FAILED, READY};
use crate::context::{self, Context, Error, Result};
use crate::crd::{
    BindingProperties, ClusterServiceClass, ClusterServicePlan, ServiceBinding,
    ServiceBindingStatus, ServiceInstance,
};
use crate::object;
use crate::osb::{Ids, Reply};
use crate::parameters;
use crate::transforms;

pub async fn reconcile(sb: Arc<ServiceBinding>, ctx: Arc<Context>) -> Result<Action> {
    let namespace = sb.namespace().unwrap_or_default();
    let api = Api::<ServiceBinding>::namespaced(ctx.client.clone(), &namespace);
    let sb = match object::fresh(&api, &sb.name_any(), |o| o.spec.external_id.as_deref()).await? {
        Ok(obj) => obj,
        Err(action) => return Ok(action),
    };
    let deleting = sb.meta().deletion_timestamp.is_some();
    let mut pass = Pass::new(api, sb, ctx);
    let action = if deleting {
        pass.delete().await
    } else {
        pass.run().await
    };
    metrics::counter!("bindery_controller_reconciliations_total", "kind" => "ServiceBinding",
        "result" => if action.is_ok() { "ok" } else { "error" })
    .increment(1);
    action
}

struct Pass {
    api: Api<ServiceBinding>,
    sb: ServiceBinding,
    status: ServiceBindingStatus,
    ctx: Arc<Context>,
    key: String,
    events: Vec<object::PendingEvent>,
}

/// What a bind needs to know about the instance.
struct Target {
    instance: ServiceInstance,
    class: ClusterServiceClass,
    plan: ClusterServicePlan,
}

impl Pass {
    fn new(api: Api<ServiceBinding>, sb: ServiceBinding, ctx: Arc<Context>) -> Self {
        let status = sb.status.clone().unwrap_or_default();
        let key = format!("binding:{}", context::key(&sb));
        Self {
            api,
            sb,
            status,
            ctx,
            key,
            events: Vec::new(),
        }
    }

    fn generation(&self) -> i64 {
        self.sb.meta().generation.unwrap_or(0)
    }

    fn namespace(&self) -> String {
        self.sb.namespace().unwrap_or_default()
    }

    fn secret_name(&self) -> String {
        self.sb
            .spec
            .secret_name
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| self.sb.name_any())
    }

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

    async fn save(&mut self) -> Result<()> {
        object::save(
            &self.api,
            &mut self.sb,
            &self.status,
            &mut self.events,
            &self.ctx,
        )
        .await
    }

    fn retry(&self) -> Action {
        Action::requeue(self.ctx.backoff(&self.key))
    }

    fn end(&mut self) {
        self.status.current_operation = None;
        self.status.operation_start_time = None;
        self.status.async_op_in_progress = None;
        self.status.last_operation = None;
        self.ctx.reset_backoff(&self.key);
    }

    async fn run(&mut self) -> Result<Action> {
        if self.status.orphan_mitigation_in_progress == Some(true) {
            return self.unbind().await;
        }
        let settled = conditions::is_true(&self.status.conditions, FAILED)
            || conditions::is_true(&self.status.conditions, READY);
        if settled && self.status.reconciled_generation.is_some() {
            return Ok(Action::await_change());
        }
        let target = match self.target().await? {
            Ok(target) => target,
            Err((reason, message)) => {
                self.condition(READY, false, reason, &message);
                self.save().await?;
                return Ok(self.retry());
            }
        };
        if !target
            .plan
            .spec
            .bindable
            .unwrap_or(target.class.spec.bindable)
        {
            let message = format!(
                "the service {:?} is not bindable",
                target.class.spec.external_name
            );
            self.terminal("ErrorNonbindableServiceClass", &message);
            self.save().await?;
            return Ok(Action::await_change());
        }
        let params = match parameters::resolve(
            &self.ctx,
            &self.namespace(),
            self.sb.spec.parameters.as_ref(),
            &self.sb.spec.parameters_from,
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
        self.bind(&target, &params).await
    }

    /// Records the bind in the status, then sends it.
    async fn bind(&mut self, target: &Target, params: &parameters::Parameters) -> Result<Action> {
        if self.status.current_operation.is_none() {
            self.status.operation_start_time = Some(conditions::now_rfc3339());
        }
        self.status.current_operation = Some("Bind".into());
        self.status.observed_generation = Some(self.generation());
        self.status.unbind_status = Some("Required".into());
        self.status.in_progress_properties = Some(BindingProperties {
            parameters: Some(Value::Object(params.redacted.clone())),
            parameter_checksum: Some(params.checksum.clone()),
            user_info: self
                .sb
                .spec
                .user_info
                .as_ref()
                .and_then(|u| serde_json::to_value(u).ok()),
        });
        self.save().await?;
        let namespace = Api::<Namespace>::all(self.ctx.client.clone())
            .get(&self.namespace())
            .await?;
        let iid = target.instance.spec.external_id.clone().unwrap_or_default();
        let body = json!({
            "service_id": target.class.spec.external_id,
            "plan_id": target.plan.spec.external_id,
            "parameters": params.merged,
            "bind_resource": {"app_guid": namespace.metadata.uid},
            "context": {
                "platform": "kubernetes",
                "namespace": self.namespace(),
                "clusterid": self.ctx.cluster_id,
                "instance_name": target.instance.name_any(),
            },
        });
        let broker = self
            .ctx
            .broker(&target.class.spec.cluster_service_broker_name)
            .await?;
        let bid = self.sb.spec.external_id.clone().unwrap_or_default();
        match broker
            .bind(&iid, &bid, &body, self.sb.spec.user_info.as_ref())
            .await
        {
            Ok(reply) => self.bind_reply(target, reply).await,
            Err(e) if e.timed_out => {
                self.terminal("BindCallFailed", &format!("Error binding: {e}"));
                self.start_orphan_mitigation().await
            }
            Err(e) => {
                self.condition(
                    READY,
                    false,
                    "BindCallFailed",
                    &format!("Error binding: {e}"),
                );
                self.save().await?;
                Ok(self.retry())
            }
        }
    }

    /// The instance (Ready), its class and plan; the error is `(reason, message)`.
    async fn target(&self) -> Result<std::result::Result<Target, (&'static str, String)>> {
        let name = &self.sb.spec.instance_ref.name;
        let instances =
            Api::<ServiceInstance>::namespaced(self.ctx.client.clone(), &self.namespace());
        let Some(instance) = instances.get_opt(name).await? else {
            return Ok(Err((
                "ReferencesNonexistentInstance",
                format!("the ServiceInstance {name:?} does not exist"),
            )));
        };
        let provisioned = instance
            .status
            .as_ref()
            .and_then(|s| s.provision_status.as_deref())
            == Some("Provisioned");
        if instance.meta().deletion_timestamp.is_some() || !provisioned {
            return Ok(Err((
                "ErrorInstanceNotReady",
                format!("the ServiceInstance {name:?} is not ready"),
            )));
        }
        let class_name = instance
            .spec
            .cluster_service_class_ref
            .as_ref()
            .map(|r| r.name.clone())
            .unwrap_or_default();
        let plan_name = instance
            .spec
            .cluster_service_plan_ref
            .as_ref()
            .map(|r| r.name.clone())
            .unwrap_or_default();
        let class = Api::<ClusterServiceClass>::all(self.ctx.client.clone())
            .get_opt(&class_name)
            .await?;
        let plan = Api::<ClusterServicePlan>::all(self.ctx.client.clone())
            .get_opt(&plan_name)
            .await?;
        match (class, plan) {
            (Some(class), Some(plan)) => Ok(Ok(Target {
                instance,
                class,
                plan,
            })),
            _ => Ok(Err((
                "ReferencesNonexistentServiceClass",
                "the instance's class or plan does not exist".to_owned(),
            ))),
        }
    }

    /// A failure that is not retried: the binding must be recreated.
    fn terminal(&mut self, reason: &str, message: &str) {
        self.condition(FAILED, true, reason, message);
        self.condition(READY, false, reason, message);
        self.status.reconciled_generation = Some(self.generation());
        self.status.in_progress_properties = None;
        self.end();
    }

    async fn bind_reply(&mut self, target: &Target, reply: Reply) -> Result<Action> {
        let credentials = reply
            .body
            .as_ref()
            .and_then(|b| b.get("credentials"))
            .and_then(Value::as_object)
            .cloned();
        match (reply.status, credentials) {
            (200 | 201, Some(credentials)) => {
                if let Err(e) = self.write_secret(target, credentials).await {
                    self.condition(
                        READY,
                        false,
                        "ErrorInjectingBindResult",
                        &format!("Error writing the Secret: {e}"),
                    );
                    self.save().await?;
                    return Ok(self.retry());
                }
                self.status.external_properties = self.status.in_progress_properties.take();
                self.status.reconciled_generation = self.status.observed_generation;
                conditions::remove(&mut self.status.conditions, FAILED);
                self.condition(READY, true, "InjectedBindResult", "Injected bind result");
                self.end();
                self.save().await?;
                Ok(Action::await_change())
            }
            (status, _) => {
                let message = format!("Error binding: {}", reply.error_message());
                self.terminal("BindCallFailed", &message);
                if (200..300).contains(&status) || status >= 500 {
                    return self.start_orphan_mitigation().await;
                }
                self.status.unbind_status = Some("NotRequired".into());
                self.save().await?;
                Ok(Action::await_change())
            }
        }
    }

    /// One key per credential (strings as they are, anything else as its JSON), plus `type` and
    /// `provider` for servicebinding.io; then the spec's secretTransforms.
    async fn write_secret(&self, target: &Target, credentials: Map<String, Value>) -> Result<()> {
        let mut data: BTreeMap<String, Vec<u8>> = credentials
            .into_iter()
            .map(|(k, v)| {
                let text = match v {
                    Value::String(s) => s,
                    other => other.to_string(),
                };
                (k, text.into_bytes())
            })
            .collect();
        data.entry("type".into())
            .or_insert_with(|| target.class.spec.external_name.clone().into_bytes());
        data.entry("provider".into()).or_insert_with(|| {
            target
                .class
                .spec
                .cluster_service_broker_name
                .clone()
                .into_bytes()
        });
        // servicebinding.io: the Secret's type is `servicebinding.io/<type entry>`.
        let binding_type = String::from_utf8_lossy(&data["type"]).into_owned();
        transforms::apply(
            &self.ctx,
            &self.namespace(),
            &self.sb.spec.secret_transforms,
            &mut data,
        )
        .await?;
        let owner = self
            .sb
            .controller_owner_ref(&())
            .ok_or_else(|| Error::Other("the binding has no uid".into()))?;
        let name = self.secret_name();
        let secret = Secret {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                owner_references: Some(vec![owner]),
                ..Default::default()
            },
            data: Some(data.into_iter().map(|(k, v)| (k, ByteString(v))).collect()),
            type_: Some(format!("servicebinding.io/{binding_type}")),
            ..Default::default()
        };
        let secrets = Api::<Secret>::namespaced(self.ctx.client.clone(), &self.namespace());
        match secrets.get_opt(&name).await? {
            None => {
                secrets.create(&PostParams::default(), &secret).await?;
            }
            Some(existing) if self.owns(&existing) => {
                let mut updated = secret;
                updated.metadata.resource_version = existing.resource_version();
                updated.type_ = existing.type_;
                secrets
                    .replace(&name, &PostParams::default(), &updated)
                    .await?;
            }
            Some(_) => {
                return Err(Error::Other(format!(
                    "Secret {name:?} exists and is not owned by this binding"
                )));
            }
        }
        Ok(())
    }

    fn owns(&self, secret: &Secret) -> bool {
        let uid = self.sb.uid();
        secret
            .owner_references()
            .iter()
            .any(|o| Some(&o.uid) == uid.as_ref())
    }

    async fn start_orphan_mitigation(&mut self) -> Result<Action> {
        self.status.orphan_mitigation_in_progress = Some(true);
        self.save().await?;
        self.unbind().await
    }

    async fn delete(&mut self) -> Result<Action> {
        if !matches!(
            self.status.unbind_status.as_deref(),
            Some("Required" | "Failed")
        ) {
            self.delete_secret().await?;
            object::remove_finalizer(&self.api, &self.sb).await?;
            return Ok(Action::await_change());
        }
        self.unbind().await
    }

    /// The Secret goes first, so the application loses the credentials before they stop working.
    async fn delete_secret(&self) -> Result<()> {
        let secrets = Api::<Secret>::namespaced(self.ctx.client.clone(), &self.namespace());
        if let Some(secret) = secrets.get_opt(&self.secret_name()).await?
            && self.owns(&secret)
        {
            match secrets
                .delete(&self.secret_name(), &Default::default())
                .await
            {
                Err(kube::Error::Api(e)) if e.code == 404 => {}
                other => {
                    other?;
                }
            }
        }
        Ok(())
    }

    /// Sends the unbind, for a deleted binding or as orphan mitigation.
    async fn unbind(&mut self) -> Result<Action> {
        self.delete_secret().await?;
        let instance =
            Api::<ServiceInstance>::namespaced(self.ctx.client.clone(), &self.namespace())
                .get_opt(&self.sb.spec.instance_ref.name)
                .await?;
        let Some(instance) = instance else {
            // Without its instance nothing can be unbound; the instance's own delete waited for
            // this binding, so the broker has nothing left either.
            return self.unbound().await;
        };
        let class_name = instance
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
        let status = instance.status.clone().unwrap_or_default();
        let props = status
            .external_properties
            .or(status.in_progress_properties)
            .unwrap_or_default();
        let plan = props.cluster_service_plan_external_id.unwrap_or_default();
        let broker = self
            .ctx
            .broker(&class.spec.cluster_service_broker_name)
            .await?;
        let ids = Ids {
            service: &class.spec.external_id,
            plan: &plan,
        };
        let iid = instance.spec.external_id.clone().unwrap_or_default();
        let bid = self.sb.spec.external_id.clone().unwrap_or_default();
        match broker
            .unbind(&iid, &bid, &ids, self.sb.spec.user_info.as_ref())
            .await
        {
            Ok(r) if r.is(200) || r.is(410) => self.unbound().await,
            Ok(r) => self.unbind_failed(&r.error_message()).await,
            Err(e) => self.unbind_failed(&e.to_string()).await,
        }
    }

    async fn unbind_failed(&mut self, why: &str) -> Result<Action> {
        let message = format!("Error unbinding: {why}");
        self.condition(READY, false, "UnbindCallFailed", &message);
        self.save().await?;
        Ok(self.retry())
    }

    async fn unbound(&mut self) -> Result<Action> {
        let orphan = self.status.orphan_mitigation_in_progress == Some(true);
        self.status.orphan_mitigation_in_progress = None;
        self.status.unbind_status = Some(if orphan { "NotRequired" } else { "Succeeded" }.into());
        self.status.external_properties = None;
        if !orphan {
            self.condition(
                READY,
                false,
                "UnboundSuccessfully",
                "The binding was unbound successfully",
            );
        }
        self.ctx.reset_backoff(&self.key);
        self.save().await?;
        if self.sb.meta().deletion_timestamp.is_some() {
            object::remove_finalizer(&self.api, &self.sb).await?;
        }
        Ok(Action::await_change())
    }
}
