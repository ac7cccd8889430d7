//! The committed CRD YAML is the source of truth for the five kinds; the Rust structs of
//! src/crd.rs must follow it. For each kind a sample object with every field the schema
//! declares is made from the schema, read into the struct and written back: a field the struct
//! lacks or names differently is lost on the way, and the comparison fails.
//! Also: the Helm chart's copy of the CRDs is the same file.

use std::path::Path;

use bindery_controller::crd::{
    ClusterServiceBroker, ClusterServiceClass, ClusterServicePlan, ServiceBinding, ServiceInstance,
};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn read(relative: &str) -> String {
    std::fs::read_to_string(root().join(relative)).unwrap_or_else(|e| panic!("{relative}: {e}"))
}

/// The openAPIV3Schema of each CRD, by kind.
fn schemas() -> Vec<(String, Value)> {
    let text = read("deploy/kubernetes/crds/servicecatalog.k8s.io.yaml");
    let mut found = Vec::new();
    for doc in text.split("\n---\n") {
        let crd: Value = serde_yaml::from_str(doc).unwrap();
        let kind = crd["spec"]["names"]["kind"].as_str().unwrap().to_owned();
        found.push((
            kind,
            crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"].clone(),
        ));
    }
    found
}

/// A value with every property `schema` declares.
fn sample(schema: &Value) -> Value {
    if let Some(values) = schema["enum"].as_array() {
        return values
            .iter()
            .find(|v| *v != "")
            .cloned()
            .unwrap_or(Value::Null);
    }
    match schema["type"].as_str() {
        Some("string") => match schema["format"].as_str() {
            Some("date-time") => json!("2020-11-04T10:00:00Z"),
            Some("byte") => json!("aGk="),
            _ => json!("text"),
        },
        Some("integer") => json!(3),
        Some("boolean") => json!(true),
        Some("array") => json!([sample(&schema["items"])]),
        Some("object") => {
            let mut object = Map::new();
            if let Some(properties) = schema["properties"].as_object() {
                for (name, property) in properties {
                    object.insert(name.clone(), sample(property));
                }
            } else if schema["additionalProperties"].is_object() {
                object.insert("key".into(), sample(&schema["additionalProperties"]));
            } else if schema["x-kubernetes-preserve-unknown-fields"] == true {
                object.insert("free".into(), json!({"form": [1, "two"]}));
            }
            Value::Object(object)
        }
        other => panic!("no sample for type {other:?} in {schema}"),
    }
}

/// The sample read into `K` and written back.
fn round_trip<K: DeserializeOwned + Serialize>(object: &Value) -> Value {
    let typed: K =
        serde_json::from_value(object.clone()).unwrap_or_else(|e| panic!("{e}: {object:#}"));
    serde_json::to_value(typed).unwrap()
}

#[test]
fn the_structs_carry_every_field_of_the_crd_schemas() {
    let schemas = schemas();
    assert_eq!(schemas.len(), 5);
    for (kind, schema) in schemas {
        let mut object = sample(&schema);
        object["apiVersion"] = json!("servicecatalog.k8s.io/v1beta1");
        object["kind"] = json!(kind);
        object["metadata"] = json!({"name": "sample"});
        let back = match kind.as_str() {
            "ClusterServiceBroker" => round_trip::<ClusterServiceBroker>(&object),
            "ClusterServiceClass" => round_trip::<ClusterServiceClass>(&object),
            "ClusterServicePlan" => round_trip::<ClusterServicePlan>(&object),
            "ServiceInstance" => round_trip::<ServiceInstance>(&object),
            "ServiceBinding" => round_trip::<ServiceBinding>(&object),
            other => panic!("a kind without a struct: {other}"),
        };
        for part in ["spec", "status"] {
            assert_eq!(
                serde_json::to_string_pretty(&back[part]).unwrap(),
                serde_json::to_string_pretty(&object[part]).unwrap(),
                "{kind}.{part}: the struct (left) differs from the CRD schema (right)"
            );
        }
    }
}

#[test]
fn the_helm_chart_installs_the_same_crds() {
    assert!(
        read("deploy/helm/bindery-controller/crds/servicecatalog.k8s.io.yaml")
            == read("deploy/kubernetes/crds/servicecatalog.k8s.io.yaml"),
        "the chart's CRDs differ: cp deploy/kubernetes/crds/servicecatalog.k8s.io.yaml deploy/helm/bindery-controller/crds/"
    );
}
