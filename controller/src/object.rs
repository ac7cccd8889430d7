//! Writes shared by the instance and binding reconcilers: the finalizer, the external id, the
//! status. Each is guarded by the object's resourceVersion, so a pass that read a stale copy
//! fails and the next pass starts from the truth.

use kube::api::{Patch, PatchParams, PostParams};
use kube::core::object::HasStatus;
use kube::runtime::controller::Action;
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::context::{Context, Error, Result};
use crate::crd::FINALIZER;

pub fn has_finalizer<K: Resource>(obj: &K) -> bool {
    obj.finalizers().iter().any(|f| f == FINALIZER)
}

/// Adds our finalizer before anything is sent to a broker.
pub async fn add_finalizer<K>(api: &Api<K>, obj: &K) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let mut finalizers = obj.finalizers().to_vec();
    finalizers.push(FINALIZER.to_owned());
    patch_finalizers(api, obj, finalizers).await
}

/// Lets the object go: the broker has said the instance or binding is gone.
pub async fn remove_finalizer<K>(api: &Api<K>, obj: &K) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let finalizers: Vec<String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != FINALIZER)
        .cloned()
        .collect();
    patch_finalizers(api, obj, finalizers).await
}

async fn patch_finalizers<K>(api: &Api<K>, obj: &K, finalizers: Vec<String>) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch =
        json!({"metadata": {"finalizers": finalizers, "resourceVersion": obj.resource_version()}});
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Sets `spec.externalID` to a new UUID (Service Catalog's webhook did this at creation).
pub async fn set_external_id<K>(api: &Api<K>, obj: &K) -> Result<()>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({
        "metadata": {"resourceVersion": obj.resource_version()},
        "spec": {"externalID": uuid::Uuid::new_v4().to_string()},
    });
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await?;
    Ok(())
}

/// Writes the status of `obj` (whose status field holds the new status) through the status
/// subresource, guarded by its resourceVersion; returns the stored object.
pub async fn write_status<K>(api: &Api<K>, obj: &K) -> Result<K>
where
    K: Resource + Clone + DeserializeOwned + Serialize + std::fmt::Debug,
{
    let body = serde_json::to_vec(obj).map_err(|e| Error::Other(e.to_string()))?;
    Ok(api
        .replace_status(&obj.name_any(), &PostParams::default(), body)
        .await?)
}

/// An event to publish once the status that records its transition is stored:
/// (warning, reason, message).
pub type PendingEvent = (bool, String, String);

/// Reads `name` afresh (level-based: not the informer's copy) and readies it for a pass: our
/// finalizer on a live object, an external id. `Err(action)` when there is nothing more to do
/// in this pass (gone, just patched, or deleted without our finalizer).
pub async fn fresh<K>(
    api: &Api<K>,
    name: &str,
    external_id: impl Fn(&K) -> Option<&str>,
) -> Result<Result<K, Action>>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    let Some(obj) = api.get_opt(name).await? else {
        return Ok(Err(Action::await_change()));
    };
    let deleting = obj.meta().deletion_timestamp.is_some();
    if !has_finalizer(&obj) {
        if !deleting {
            add_finalizer(api, &obj).await?;
        }
        return Ok(Err(Action::await_change()));
    }
    if !deleting && external_id(&obj).unwrap_or_default().is_empty() {
        set_external_id(api, &obj).await?;
        return Ok(Err(Action::await_change()));
    }
    Ok(Ok(obj))
}

/// Writes `status` when it differs from the stored one (an identical write would still wake
/// the reconciler), then publishes the events of its transitions.
pub async fn save<K>(
    api: &Api<K>,
    obj: &mut K,
    status: &K::Status,
    events: &mut Vec<PendingEvent>,
    ctx: &Context,
) -> Result<()>
where
    K: Resource<DynamicType = ()>
        + HasStatus
        + Clone
        + DeserializeOwned
        + Serialize
        + std::fmt::Debug,
    K::Status: PartialEq + Clone,
{
    if obj.status() != Some(status) {
        let mut updated = obj.clone();
        *updated.status_mut() = Some(status.clone());
        *obj = write_status(api, &updated).await?;
    }
    for (warning, reason, message) in std::mem::take(events) {
        ctx.event(obj, warning, &reason, &message).await;
    }
    Ok(())
}
