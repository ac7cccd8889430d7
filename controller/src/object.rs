//! Writes shared by the instance and binding reconcilers: the finalizer, the external id, the
//! status. Each is guarded by the object's resourceVersion, so a pass that read a stale copy
//! fails and the next pass starts from the truth.

use kube::api::{Patch, PatchParams, PostParams};
use kube::{Api, Resource, ResourceExt};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::context::{Error, Result};
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
