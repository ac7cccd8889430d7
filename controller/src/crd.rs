//! The five `servicecatalog.k8s.io/v1beta1` kinds as Rust types. The committed CRD YAML
//! (deploy/kubernetes/crds/servicecatalog.k8s.io.yaml) is the source of truth for their schemas;
//! these structs follow it field by field (`tests/crd_types.rs` compares them), so no schema is
//! generated here.

use std::collections::BTreeMap;

use kube::CustomResource;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The API group and version of every kind here.
pub const GROUP: &str = "servicecatalog.k8s.io";
pub const API_VERSION: &str = "servicecatalog.k8s.io/v1beta1";

/// The finalizer Service Catalog put on instances and bindings: nothing goes on the Kubernetes
/// side before the broker said so.
pub const FINALIZER: &str = "kubernetes-incubator/service-catalog";

/// A condition of any of the kinds (`Ready`, `Failed`, `OrphanMitigation`).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    #[serde(rename = "type")]
    pub type_: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
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

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct AuthInfo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<SecretRefAuth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth_info: Option<AuthInfo>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_bundle: Option<String>,
    #[serde(
        rename = "insecureSkipTLSVerify",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub insecure_skip_tls_verify: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relist_behavior: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relist_duration: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub relist_requests: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub catalog_restrictions: Option<CatalogRestrictions>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ClusterServiceBrokerStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciled_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_catalog_retrieval_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_condition_state: Option<String>,
}

/// A service of a broker's catalog.
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default)]
    pub bindable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binding_retrievable: Option<bool>,
    #[serde(default)]
    pub plan_updatable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_metadata: Option<Value>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub requires: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_provision_parameters: Option<Value>,
}

/// Status of a class or plan: whether the broker's catalog still has it.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct CatalogEntryStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub removed_from_broker_catalog: Option<bool>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct NameRef {
    pub name: String,
}

/// A plan of a class.
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bindable: Option<bool>,
    #[serde(default)]
    pub free: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_metadata: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_create_parameter_schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_update_parameter_schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_binding_create_parameter_schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_binding_create_response_schema: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_service_class_external_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_service_plan_external_name: Option<String>,
    #[serde(
        rename = "clusterServiceClassExternalID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cluster_service_class_external_id: Option<String>,
    #[serde(
        rename = "clusterServicePlanExternalID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cluster_service_plan_external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_service_class_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_service_plan_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_service_class_ref: Option<NameRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_service_plan_ref: Option<NameRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters_from: Vec<ParametersFromSource>,
    #[serde(
        rename = "externalID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub update_requests: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_info: Option<UserInfo>,
}

/// What was sent to the broker (in progress) or what the broker is known to have (external).
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InstanceProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cluster_service_plan_external_name: Option<String>,
    #[serde(
        rename = "clusterServicePlanExternalID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub cluster_service_plan_external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter_checksum: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_info: Option<Value>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceInstanceStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub async_op_in_progress: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orphan_mitigation_in_progress: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_operation: Option<String>,
    #[serde(
        rename = "dashboardURL",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub dashboard_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_operation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciled_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress_properties: Option<InstanceProperties>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_properties: Option<InstanceProperties>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provision_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deprovision_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_provision_parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_specified_class_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_specified_plan_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_condition_state: Option<String>,
}

/// A binding to an instance; its credentials go into a Secret.
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
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Map<String, Value>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub parameters_from: Vec<ParametersFromSource>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secret_transforms: Vec<Value>,
    #[serde(
        rename = "externalID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub external_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_info: Option<UserInfo>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct BindingProperties {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameters: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parameter_checksum: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_info: Option<Value>,
}

#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ServiceBindingStatus {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conditions: Vec<Condition>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub async_op_in_progress: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_operation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_operation: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reconciled_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation_start_time: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub in_progress_properties: Option<BindingProperties>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_properties: Option<BindingProperties>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub orphan_mitigation_in_progress: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unbind_status: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_condition_state: Option<String>,
}
