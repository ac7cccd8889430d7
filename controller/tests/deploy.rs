//! The controller's deployment files: `deploy/kubernetes/controller.yaml` and the Helm chart
//! `deploy/helm/bindery-controller`, rendered by Helm's own engine (the helm-python-sdk that
//! scripts/test installs for the broker's chart tests) and compared.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap()
}

fn documents(text: &str) -> Vec<Value> {
    text.split("\n---")
        .filter_map(|doc| serde_yaml::from_str::<Value>(doc).ok())
        .filter(|v| !v.is_null())
        .collect()
}

fn identity(doc: &Value) -> String {
    format!(
        "{} {}/{}",
        doc["kind"].as_str().unwrap(),
        doc["metadata"]["namespace"].as_str().unwrap_or("-"),
        doc["metadata"]["name"].as_str().unwrap()
    )
}

fn plain() -> BTreeMap<String, Value> {
    let text = std::fs::read_to_string(root().join("deploy/kubernetes/controller.yaml")).unwrap();
    documents(&text)
        .into_iter()
        .map(|d| (identity(&d), d))
        .collect()
}

/// The chart rendered as release `bindery-controller` in namespace `service-catalog`.
fn rendered(values: Value) -> BTreeMap<String, Value> {
    const SCRIPT: &str = r#"
import json, sys
import helm_python as helm
with helm.Chart.load(sys.argv[1]) as chart:
    manifests = chart.render(json.loads(sys.argv[2]), name="bindery-controller", namespace="service-catalog", is_install=True)
print(json.dumps({"manifests": manifests, "lint": helm.lint(sys.argv[1])}))
"#;
    let python = std::env::var_os("BINDERY_HELM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".dev/helm-venv/bin/python"));
    let output = Command::new(&python)
        .args(["-c", SCRIPT])
        .arg(root().join("deploy/helm/bindery-controller"))
        .arg(values.to_string())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): scripts/test installs Helm's engine there",
                python.display()
            )
        });
    assert!(
        output.status.success(),
        "rendering failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let result: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(result["lint"]["errors"], json!([]), "helm lint");
    let mut docs = BTreeMap::new();
    for (template, text) in result["manifests"].as_object().unwrap() {
        if template.ends_with(".tpl") || template.ends_with("NOTES.txt") {
            continue;
        }
        for mut doc in documents(text.as_str().unwrap()) {
            let labels = doc["metadata"]["labels"].as_object_mut().unwrap();
            assert_eq!(
                labels.remove("app.kubernetes.io/managed-by"),
                Some(json!("Helm"))
            );
            assert!(labels.remove("helm.sh/chart").is_some());
            docs.insert(identity(&doc), doc);
        }
    }
    docs
}

#[test]
fn the_chart_renders_the_plain_manifests() {
    let rendered = rendered(json!({}));
    let plain: BTreeMap<_, _> = plain()
        .into_iter()
        .filter(|(_, d)| d["kind"] != "Namespace")
        .collect();
    assert_eq!(
        rendered.keys().collect::<Vec<_>>(),
        plain.keys().collect::<Vec<_>>()
    );
    for (key, expected) in &plain {
        // Value equality: Helm's toYaml orders keys its own way.
        assert!(
            rendered[key] == *expected,
            "{key}: the chart differs from deploy/kubernetes/controller.yaml:\n{:#}\n{:#}",
            rendered[key],
            expected
        );
    }
}

#[test]
fn the_controller_may_do_what_it_does() {
    let docs = plain();
    let role = &docs["ClusterRole -/bindery-controller"];
    let allowed = |group: &str, resource: &str, verb: &str| {
        role["rules"].as_array().unwrap().iter().any(|r| {
            r["apiGroups"]
                .as_array()
                .unwrap()
                .iter()
                .any(|g| g == group)
                && r["resources"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|x| x == resource)
                && r["verbs"].as_array().unwrap().iter().any(|v| v == verb)
        })
    };
    for kind in [
        "clusterservicebrokers",
        "clusterserviceclasses",
        "clusterserviceplans",
        "serviceinstances",
        "servicebindings",
    ] {
        for verb in [
            "get", "list", "watch", "create", "update", "patch", "delete",
        ] {
            assert!(
                allowed("servicecatalog.k8s.io", kind, verb),
                "{verb} {kind}"
            );
        }
        assert!(
            allowed("servicecatalog.k8s.io", &format!("{kind}/status"), "update"),
            "{kind}/status"
        );
    }
    for verb in ["get", "create", "update", "delete"] {
        assert!(allowed("", "secrets", verb), "{verb} secrets");
    }
    assert!(allowed("", "namespaces", "get"));
    assert!(allowed("events.k8s.io", "events", "create"));
    let local = &docs["Role service-catalog/bindery-controller"];
    assert!(
        local["rules"].to_string().contains("leases")
            && local["rules"].to_string().contains("configmaps")
    );
    let deployment = &docs["Deployment service-catalog/bindery-controller"];
    let pod = &deployment["spec"]["template"]["spec"];
    assert_eq!(pod["serviceAccountName"], "bindery-controller");
    assert_eq!(deployment["spec"]["replicas"], 2, "a standby replica");
    let env = pod["containers"][0]["env"].to_string();
    assert!(
        env.contains("POD_NAMESPACE") && env.contains("POD_NAME"),
        "the Lease's namespace and holder come from the pod"
    );
}
