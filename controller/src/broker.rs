//! ClusterServiceBroker reconcile: fetch the broker's catalog and turn it into one
//! ClusterServiceClass per service and one ClusterServicePlan per plan, on creation, on a spec
//! change (`relistRequests` included) and every `relistDuration`.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use kube::api::{ListParams, ObjectMeta, PostParams};
use kube::core::object::{HasSpec, HasStatus};
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde_json::Value;

use crate::conditions::{self, READY};
use crate::context::{self, Context, Error, Result};
use crate::crd::{
    CatalogEntryStatus, ClusterServiceBroker, ClusterServiceClass, ClusterServiceClassSpec,
    ClusterServicePlan, ClusterServicePlanSpec, NameRef, ServiceInstance,
};
use crate::{names, object};

/// Label on classes and plans naming their broker, to list them.
pub const BROKER_LABEL: &str = "servicecatalog.k8s.io/broker";

pub async fn reconcile(broker: Arc<ClusterServiceBroker>, ctx: Arc<Context>) -> Result<Action> {
    let api = Api::<ClusterServiceBroker>::all(ctx.client.clone());
    // Level-based: read the resource afresh rather than trust the informer's copy.
    let Some(broker) = api.get_opt(&broker.name_any()).await? else {
        return Ok(Action::await_change());
    };
    if broker.meta().deletion_timestamp.is_some() {
        // Classes and plans are owned by the broker: the garbage collector deletes them.
        return Ok(Action::await_change());
    }
    let generation = broker.meta().generation.unwrap_or(0);
    let status = broker.status.clone().unwrap_or_default();
    let relist = relist_interval(&broker, &ctx);
    let ready = conditions::is_true(&status.conditions, READY);
    if ready
        && status.reconciled_generation == Some(generation)
        && let Some(due) = relist_due_in(status.last_catalog_retrieval_time.as_deref(), relist)
    {
        return Ok(due.map_or(Action::await_change(), Action::requeue));
    }
    let key = context::key(&broker);
    let outcome = fetch_and_sync(&broker, &ctx).await;
    let mut status = status;
    status.observed_generation = Some(generation);
    let (ok, reason, message) = match &outcome {
        Ok((classes, plans)) => {
            status.reconciled_generation = Some(generation);
            status.last_catalog_retrieval_time = Some(conditions::now_rfc3339());
            let message = format!(
                "Successfully fetched catalog entries from broker ({classes} classes, {plans} plans)."
            );
            (true, "FetchedCatalog", message)
        }
        Err((reason, message)) => (false, *reason, message.clone()),
    };
    let mut events = Vec::new();
    conditions::record(
        &mut status.conditions,
        &mut status.last_condition_state,
        &mut events,
        (READY, ok),
        reason,
        &message,
    );
    let mut broker = broker;
    object::save(&api, &mut broker, &status, &mut events, &ctx).await?;
    metrics::counter!("bindery_controller_catalog_syncs_total", "result" => if outcome.is_ok() { "ok" } else { "error" }).increment(1);
    match outcome {
        Ok(_) => {
            ctx.reset_backoff(&key);
            Ok(relist.map_or(Action::await_change(), Action::requeue))
        }
        Err(_) => Ok(Action::requeue(ctx.backoff(&key))),
    }
}

/// `None`: relist only on spec changes (`relistBehavior: Manual`).
fn relist_interval(broker: &ClusterServiceBroker, ctx: &Context) -> Option<Duration> {
    if broker.spec.relist_behavior.as_deref() == Some("Manual") {
        return None;
    }
    Some(
        broker
            .spec
            .relist_duration
            .as_deref()
            .and_then(parse_go_duration)
            .unwrap_or(ctx.settings.default_relist),
    )
}

/// Some(wait) when the last fetch is recent enough (wait `None`: never due); None when due now.
fn relist_due_in(last: Option<&str>, interval: Option<Duration>) -> Option<Option<Duration>> {
    let Some(interval) = interval else {
        return Some(None);
    };
    let last = chrono::DateTime::parse_from_rfc3339(last?).ok()?;
    let elapsed = (chrono::Utc::now() - last.with_timezone(&chrono::Utc))
        .to_std()
        .unwrap_or_default();
    (elapsed < interval).then(|| Some(interval - elapsed))
}

/// A Go duration as Service Catalog wrote them (`15m0s`, `1h`, `500ms`).
pub fn parse_go_duration(text: &str) -> Option<Duration> {
    let mut total = 0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let number: f64 = rest[..digits].parse().ok()?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        total += number * seconds;
        rest = &rest[unit_len..];
    }
    Some(Duration::from_secs_f64(total))
}

/// Fetches the catalog and writes classes and plans; the error is `(reason, message)`.
async fn fetch_and_sync(
    broker: &ClusterServiceBroker,
    ctx: &Context,
) -> Result<(usize, usize), (&'static str, String)> {
    let client = ctx
        .osb_client(broker)
        .await
        .map_err(|e| ("ErrorFetchingCatalog", e.to_string()))?;
    let reply = client
        .catalog()
        .await
        .map_err(|e| ("ErrorFetchingCatalog", e.to_string()))?;
    if !reply.is(200) {
        return Err((
            "ErrorFetchingCatalog",
            format!("Error getting catalog: {}", reply.error_message()),
        ));
    }
    let services = reply
        .body
        .as_ref()
        .and_then(|b| b.get("services"))
        .and_then(Value::as_array)
        .ok_or((
            "ErrorFetchingCatalog",
            "the catalog has no services array".to_owned(),
        ))?;
    validate(services).map_err(|m| ("ErrorSyncingCatalog", m))?;
    sync(broker, services, ctx)
        .await
        .map_err(|e| ("ErrorSyncingCatalog", e.to_string()))
}

/// Service Catalog's checks, which refuse the whole catalog.
fn validate(services: &[Value]) -> Result<(), String> {
    let text = |v: &Value, field: &str| {
        v.get(field)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    for service in services {
        let (id, name) = (text(service, "id"), text(service, "name"));
        check_entry("service", &id, &name, &text(service, "description"))?;
        let plans = service
            .get("plans")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        if plans.is_empty() {
            return Err(format!("service {name:?} has no plans"));
        }
        for plan in plans {
            check_entry(
                "plan",
                &text(plan, "id"),
                &text(plan, "name"),
                &text(plan, "description"),
            )?;
        }
    }
    Ok(())
}

fn check_entry(what: &str, id: &str, name: &str, description: &str) -> Result<(), String> {
    for (field, value) in [("id", id), ("name", name)] {
        if value.is_empty() || value.len() > 63 {
            return Err(format!(
                "a {what}'s {field} {value:?} is empty or longer than 63 characters"
            ));
        }
    }
    if description.is_empty() {
        return Err(format!("{what} {name:?} has no description"));
    }
    Ok(())
}

/// Creates or updates the classes and plans of `services`; marks those no longer in the catalog
/// as removed, and deletes them once no instance uses them.
async fn sync(
    broker: &ClusterServiceBroker,
    services: &[Value],
    ctx: &Context,
) -> Result<(usize, usize)> {
    let classes = Api::<ClusterServiceClass>::all(ctx.client.clone());
    let plans = Api::<ClusterServicePlan>::all(ctx.client.clone());
    let broker_name = broker.name_any();
    let owner = broker
        .controller_owner_ref(&())
        .ok_or_else(|| Error::Other("the broker has no uid".into()))?;
    let meta = |name: String| ObjectMeta {
        name: Some(name),
        labels: Some([(BROKER_LABEL.to_owned(), broker_name.clone())].into()),
        owner_references: Some(vec![owner.clone()]),
        ..Default::default()
    };
    let (mut class_names, mut plan_names) = (BTreeSet::new(), BTreeSet::new());
    for service in services {
        let class_spec = class_spec(&broker_name, service);
        let class_name = names::from_osb_id(&class_spec.external_id);
        let mut class = ClusterServiceClass::new(&class_name, class_spec);
        class.metadata = meta(class_name.clone());
        upsert(&classes, class).await?;
        for plan in service
            .get("plans")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let plan_spec = plan_spec(&broker_name, &class_name, plan);
            let plan_name = names::from_osb_id(&plan_spec.external_id);
            let mut object = ClusterServicePlan::new(&plan_name, plan_spec);
            object.metadata = meta(plan_name.clone());
            upsert(&plans, object).await?;
            plan_names.insert(plan_name);
        }
        class_names.insert(class_name);
    }
    let selector = ListParams::default().labels(&format!("{BROKER_LABEL}={broker_name}"));
    let in_use = instances_in_use(ctx).await?;
    for class in classes.list(&selector).await? {
        if !class_names.contains(&class.name_any()) {
            retire(&classes, &class, in_use.0.contains(&class.name_any())).await?;
        }
    }
    for plan in plans.list(&selector).await? {
        if !plan_names.contains(&plan.name_any()) {
            retire(&plans, &plan, in_use.1.contains(&plan.name_any())).await?;
        }
    }
    Ok((class_names.len(), plan_names.len()))
}

/// Names of the classes and of the plans some ServiceInstance uses.
async fn instances_in_use(ctx: &Context) -> Result<(BTreeSet<String>, BTreeSet<String>)> {
    let mut used = (BTreeSet::new(), BTreeSet::new());
    for si in Api::<ServiceInstance>::all(ctx.client.clone())
        .list(&ListParams::default())
        .await?
    {
        if let Some(r) = &si.spec.cluster_service_class_ref {
            used.0.insert(r.name.clone());
        }
        if let Some(r) = &si.spec.cluster_service_plan_ref {
            used.1.insert(r.name.clone());
        }
    }
    Ok(used)
}

/// An entry gone from the catalog: deleted when unused, else marked removedFromBrokerCatalog.
async fn retire<K>(api: &Api<K>, object: &K, used: bool) -> Result<()>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + HasStatus<Status = CatalogEntryStatus>,
{
    if !used {
        api.delete(&object.name_any(), &Default::default()).await?;
        return Ok(());
    }
    if object.status().and_then(|s| s.removed_from_broker_catalog) != Some(true) {
        let mut updated = object.clone();
        *updated.status_mut() = Some(CatalogEntryStatus {
            removed_from_broker_catalog: Some(true),
            ..Default::default()
        });
        object::write_status(api, &updated).await?;
    }
    Ok(())
}

/// Creates `object`, or replaces the spec of the existing one when it differs; an entry back
/// in the catalog loses its removedFromBrokerCatalog mark.
async fn upsert<K>(api: &Api<K>, object: K) -> Result<()>
where
    K: Resource<DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + HasStatus<Status = CatalogEntryStatus>
        + HasSpec,
    K::Spec: PartialEq + Clone,
{
    let name = object.name_any();
    let Some(existing) = api.get_opt(&name).await? else {
        api.create(&PostParams::default(), &object).await?;
        return Ok(());
    };
    if existing.spec() != object.spec() {
        let mut updated = existing.clone();
        *updated.spec_mut() = object.spec().clone();
        updated.meta_mut().labels = object.meta().labels.clone();
        updated.meta_mut().owner_references = object.meta().owner_references.clone();
        api.replace(&name, &PostParams::default(), &updated).await?;
    }
    if existing
        .status()
        .and_then(|s| s.removed_from_broker_catalog)
        == Some(true)
    {
        let mut updated = api.get(&name).await?;
        *updated.status_mut() = Some(CatalogEntryStatus::default());
        object::write_status(api, &updated).await?;
    }
    Ok(())
}

fn str_field(v: &Value, field: &str) -> String {
    v.get(field)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn strings(v: &Value, field: &str) -> Vec<String> {
    v.get(field)
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_owned))
        .collect()
}

/// The class of a catalog service: the fields Service Catalog copied (A.4).
pub fn class_spec(broker: &str, service: &Value) -> ClusterServiceClassSpec {
    ClusterServiceClassSpec {
        cluster_service_broker_name: broker.to_owned(),
        external_name: str_field(service, "name"),
        external_id: str_field(service, "id"),
        description: Some(str_field(service, "description")),
        bindable: service
            .get("bindable")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        binding_retrievable: service.get("bindings_retrievable").and_then(Value::as_bool),
        plan_updatable: service
            .get("plan_updateable")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        external_metadata: service.get("metadata").filter(|m| m.is_object()).cloned(),
        tags: strings(service, "tags"),
        requires: strings(service, "requires"),
        default_provision_parameters: None,
    }
}

/// The plan of a catalog plan, with its three parameter schemas.
pub fn plan_spec(broker: &str, class_name: &str, plan: &Value) -> ClusterServicePlanSpec {
    let schema = |path: &[&str]| {
        let mut v = plan.get("schemas")?;
        for p in path {
            v = v.get(p)?;
        }
        v.get("parameters").filter(|s| s.is_object()).cloned()
    };
    ClusterServicePlanSpec {
        cluster_service_broker_name: broker.to_owned(),
        cluster_service_class_ref: NameRef {
            name: class_name.to_owned(),
        },
        external_name: str_field(plan, "name"),
        external_id: str_field(plan, "id"),
        description: Some(str_field(plan, "description")),
        bindable: plan.get("bindable").and_then(Value::as_bool),
        free: plan.get("free").and_then(Value::as_bool).unwrap_or(false),
        external_metadata: plan.get("metadata").filter(|m| m.is_object()).cloned(),
        instance_create_parameter_schema: schema(&["service_instance", "create"]),
        instance_update_parameter_schema: schema(&["service_instance", "update"]),
        service_binding_create_parameter_schema: schema(&["service_binding", "create"]),
        service_binding_create_response_schema: None,
        default_provision_parameters: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn go_durations() {
        assert_eq!(parse_go_duration("15m0s"), Some(Duration::from_secs(900)));
        assert_eq!(parse_go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(parse_go_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_go_duration("5x"), None);
    }

    #[test]
    fn a_catalog_with_a_planless_service_or_long_id_is_refused() {
        let ok = json!([{"id": "s", "name": "n", "description": "d", "plans": [{"id": "p", "name": "n", "description": "d"}]}]);
        assert!(validate(ok.as_array().unwrap()).is_ok());
        let planless = json!([{"id": "s", "name": "n", "description": "d", "plans": []}]);
        assert!(
            validate(planless.as_array().unwrap())
                .unwrap_err()
                .contains("no plans")
        );
        let long = json!([{"id": "x".repeat(64), "name": "n", "description": "d", "plans": [{"id": "p", "name": "n", "description": "d"}]}]);
        assert!(validate(long.as_array().unwrap()).is_err());
    }

    #[test]
    fn plan_schemas_are_copied() {
        let plan = json!({"id": "p", "name": "small", "description": "d", "free": true,
            "schemas": {"service_instance": {"create": {"parameters": {"type": "object"}}}}});
        let spec = plan_spec("b", "c", &plan);
        assert_eq!(
            spec.instance_create_parameter_schema,
            Some(json!({"type": "object"}))
        );
        assert!(spec.free);
        assert_eq!(spec.cluster_service_class_ref.name, "c");
    }
}
