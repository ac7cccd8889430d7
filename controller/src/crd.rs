//! The five `servicecatalog.k8s.io/v1beta1` kinds as Rust types. The committed CRD YAML
//! (deploy/kubernetes/crds/servicecatalog.k8s.io.yaml) is the source of truth for their schemas;
//! these structs follow it field by field (`tests/crd_types.rs` compares them), so no schema is
//! generated here.

use std::collections::BTreeMap;

use kube::CustomResource;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use serde_with::skip_serializing_none;

/// The API group and version of every kind here.
pub const GROUP: &str = "servicecatalog.k8s.io";
pub const API_VERSION: &str = "servicecatalog.k8s.io/v1beta1";

/// The finalizer Service Catalog put on instances and bindings: nothing goes on the Kubernetes
/// side before the broker said so.
pub const FINALIZER: &str = "kubernetes-incubator/service-catalog";

/// A condition of any of the kinds (`Ready`, `Failed`, `OrphanMitigation`).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    pub reason: Option<String>,
    pub message: Option<String>,
    pub last_transition_time: Option<String>,
}

/// `{namespace, name}` of a Secret, as a cluster-scoped broker names it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct SecretRef {
    pub namespace: String,
    pub name: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretRefAuth {
    pub secret_ref: SecretRef,
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct AuthInfo {
    pub basic: Option<SecretRefAuth>,
    pub bearer: Option<SecretRefAuth>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CatalogRestrictions {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_class: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_plan: Vec<String>,
}

/// A broker reached over the OSB API; its catalog becomes classes and plans.
#[skip_serializing_none]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "servicecatalog.k8s.io",
    version = "v1beta1",
    kind = "ClusterServiceBroker",
    status = "ClusterServiceBrokerStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterServiceBrokerSpec {
    pub url: String,
    pub auth_info: Option<AuthInfo>,
    pub ca_bundle: Option<String>,
    #[serde(rename = "insecureSkipTLSVerify")]
    pub insecure_skip_tls_verify: Option<bool>,
    pub relist_behavior: Option<String>,
    pub relist_duration: Option<String>,
    pub relist_requests: Option<i64>,
    pub catalog_restrictions: Option<CatalogRestrictions>,
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterServiceBrokerStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    pub observed_generation: Option<i64>,
    pub reconciled_generation: Option<i64>,
    pub operation_start_time: Option<String>,
    pub last_catalog_retrieval_time: Option<String>,
    pub last_condition_state: Option<String>,
}

/// A service of a broker's catalog.
#[skip_serializing_none]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "servicecatalog.k8s.io",
    version = "v1beta1",
    kind = "ClusterServiceClass",
    status = "CatalogEntryStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterServiceClassSpec {
    pub cluster_service_broker_name: String,
    pub external_name: String,
    #[serde(rename = "externalID")]
    pub external_id: String,
    pub description: Option<String>,
    #[serde(default)]
    pub bindable: bool,
    pub binding_retrievable: Option<bool>,
    #[serde(default)]
    pub plan_updatable: bool,
    pub external_metadata: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    pub default_provision_parameters: Option<Value>,
}

/// Status of a class or plan: whether the broker's catalog still has it.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CatalogEntryStatus {
    pub removed_from_broker_catalog: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    pub observed_generation: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct NameRef {
    pub name: String,
}

/// A plan of a class.
#[skip_serializing_none]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "servicecatalog.k8s.io",
    version = "v1beta1",
    kind = "ClusterServicePlan",
    status = "CatalogEntryStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct ClusterServicePlanSpec {
    pub cluster_service_broker_name: String,
    pub cluster_service_class_ref: NameRef,
    pub external_name: String,
    #[serde(rename = "externalID")]
    pub external_id: String,
    pub description: Option<String>,
    pub bindable: Option<bool>,
    #[serde(default)]
    pub free: bool,
    pub external_metadata: Option<Value>,
    pub instance_create_parameter_schema: Option<Value>,
    pub instance_update_parameter_schema: Option<Value>,
    pub service_binding_create_parameter_schema: Option<Value>,
    pub service_binding_create_response_schema: Option<Value>,
    pub default_provision_parameters: Option<Value>,
}

/// `{name, key}` of a Secret in the object's own namespace.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct SecretKeyRef {
    pub name: String,
    pub key: String,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ParametersFromSource {
    pub secret_key_ref: SecretKeyRef,
}

/// The user that last changed a spec (Service Catalog's webhook recorded it; without a webhook
/// it is only there when the user wrote it).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct UserInfo {
    #[serde(default)]
    pub username: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, Vec<String>>,
}

/// An instance of a plan, provisioned through the class's broker.
#[skip_serializing_none]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "servicecatalog.k8s.io",
    version = "v1beta1",
    kind = "ServiceInstance",
    status = "ServiceInstanceStatus",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInstanceSpec {
    pub cluster_service_class_external_name: Option<String>,
    pub cluster_service_plan_external_name: Option<String>,
    #[serde(rename = "clusterServiceClassExternalID")]
    pub cluster_service_class_external_id: Option<String>,
    #[serde(rename = "clusterServicePlanExternalID")]
    pub cluster_service_plan_external_id: Option<String>,
    pub cluster_service_class_name: Option<String>,
    pub cluster_service_plan_name: Option<String>,
    pub cluster_service_class_ref: Option<NameRef>,
    pub cluster_service_plan_ref: Option<NameRef>,
    pub parameters: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters_from: Vec<ParametersFromSource>,
    #[serde(rename = "externalID")]
    pub external_id: Option<String>,
    pub update_requests: Option<i64>,
    pub user_info: Option<UserInfo>,
}

/// What was sent to the broker (in progress) or what the broker is known to have (external).
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceProperties {
    pub cluster_service_plan_external_name: Option<String>,
    #[serde(rename = "clusterServicePlanExternalID")]
    pub cluster_service_plan_external_id: Option<String>,
    pub parameters: Option<Value>,
    pub parameter_checksum: Option<String>,
    pub user_info: Option<Value>,
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInstanceStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    pub async_op_in_progress: Option<bool>,
    pub orphan_mitigation_in_progress: Option<bool>,
    pub last_operation: Option<String>,
    #[serde(rename = "dashboardURL")]
    pub dashboard_url: Option<String>,
    pub current_operation: Option<String>,
    pub reconciled_generation: Option<i64>,
    pub observed_generation: Option<i64>,
    pub operation_start_time: Option<String>,
    pub in_progress_properties: Option<InstanceProperties>,
    pub external_properties: Option<InstanceProperties>,
    pub provision_status: Option<String>,
    pub deprovision_status: Option<String>,
    pub default_provision_parameters: Option<Value>,
    pub user_specified_class_name: Option<String>,
    pub user_specified_plan_name: Option<String>,
    pub last_condition_state: Option<String>,
}

/// A binding to an instance; its credentials go into a Secret.
#[skip_serializing_none]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "servicecatalog.k8s.io",
    version = "v1beta1",
    kind = "ServiceBinding",
    status = "ServiceBindingStatus",
    namespaced,
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct ServiceBindingSpec {
    pub instance_ref: NameRef,
    pub secret_name: Option<String>,
    pub parameters: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters_from: Vec<ParametersFromSource>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_transforms: Vec<Value>,
    #[serde(rename = "externalID")]
    pub external_id: Option<String>,
    pub user_info: Option<UserInfo>,
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BindingProperties {
    pub parameters: Option<Value>,
    pub parameter_checksum: Option<String>,
    pub user_info: Option<Value>,
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceBindingStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    pub async_op_in_progress: Option<bool>,
    pub last_operation: Option<String>,
    pub current_operation: Option<String>,
    pub reconciled_generation: Option<i64>,
    pub observed_generation: Option<i64>,
    pub operation_start_time: Option<String>,
    pub in_progress_properties: Option<BindingProperties>,
    pub external_properties: Option<BindingProperties>,
    pub orphan_mitigation_in_progress: Option<bool>,
    pub unbind_status: Option<String>,
    pub last_condition_state: Option<String>,
}
