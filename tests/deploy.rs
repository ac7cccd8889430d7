//! The deployment files: `Dockerfile`, `deploy/kubernetes/*.yaml` and the Helm chart in
//! `deploy/helm/bindery`. No cluster and no Docker engine: the files are parsed and the
//! fields that decide whether bindery runs correctly are checked.
//!
//! The Helm chart is rendered with Helm's own template engine (Helm's Go SDK, through the
//! PyPI package `helm-python-sdk`, which bundles it as a shared library) and compared with
//! the plain manifests. `scripts/test` installs it into `.dev/helm-venv`; set
//! `BINDERY_HELM_PYTHON` to use another Python that has it. Without it those tests fail.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde::Deserialize as _;
use serde_json::{Value, json};
use sha2::Digest as _;

const HELM_INSTALL: &str = "python3 -m venv .dev/helm-venv && \
     .dev/helm-venv/bin/pip install helm-python-sdk==0.2.2";

// ---------------------------------------------------------------------------------------
// Reading the files

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()))
}

/// Every YAML document of `text` as JSON values; empty documents are skipped.
fn documents(text: &str, origin: &str) -> Vec<Value> {
    serde_yaml::Deserializer::from_str(text)
        .map(|document| {
            Value::deserialize(document).unwrap_or_else(|e| panic!("{origin}: invalid YAML: {e}"))
        })
        .filter(|value| !value.is_null())
        .collect()
}

/// The documents of every `deploy/kubernetes/*.yaml`, with the file they came from.
fn plain_files() -> BTreeMap<String, Vec<Value>> {
    let dir = root().join("deploy/kubernetes");
    let mut files = BTreeMap::new();
    for entry in std::fs::read_dir(&dir).expect("deploy/kubernetes exists") {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let text = std::fs::read_to_string(&path).unwrap();
            files.insert(name.clone(), documents(&text, &name));
        }
    }
    assert!(
        files.contains_key("bindery.yaml"),
        "deploy/kubernetes/bindery.yaml is missing"
    );
    assert!(
        files.contains_key("examples.yaml"),
        "deploy/kubernetes/examples.yaml is missing"
    );
    files
}

/// The installation: the documents of `deploy/kubernetes/bindery.yaml`.
fn installation() -> Vec<Value> {
    plain_files().remove("bindery.yaml").unwrap()
}

fn kind(doc: &Value) -> &str {
    doc["kind"].as_str().unwrap_or_default()
}

fn name(doc: &Value) -> &str {
    doc["metadata"]["name"].as_str().unwrap_or_default()
}

/// The one document of `kind` named `name`.
fn find<'a>(docs: &'a [Value], wanted_kind: &str, wanted_name: &str) -> &'a Value {
    let found: Vec<&Value> = docs
        .iter()
        .filter(|d| kind(d) == wanted_kind && name(d) == wanted_name)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "expected exactly one {wanted_kind} {wanted_name:?}"
    );
    found[0]
}

/// The one document of `kind`.
fn only<'a>(docs: &'a [Value], wanted_kind: &str) -> &'a Value {
    let found: Vec<&Value> = docs.iter().filter(|d| kind(d) == wanted_kind).collect();
    assert_eq!(found.len(), 1, "expected exactly one {wanted_kind}");
    found[0]
}

fn text<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what} must be a string, is {value}"))
}

/// The variables of docs/configuration.md's table: name → is a secret.
fn documented_variables() -> BTreeMap<String, bool> {
    let doc = read("docs/configuration.md");
    let mut variables = BTreeMap::new();
    for line in doc.lines().filter(|l| l.starts_with("| `")) {
        let first_cell = line.split('|').nth(1).unwrap();
        let name = first_cell.split('`').nth(1).unwrap();
        variables.insert(name.to_owned(), first_cell.contains("(secret)"));
    }
    assert!(
        variables.len() > 10,
        "docs/configuration.md's table was not found"
    );
    variables
}

fn container(deployment: &Value) -> &Value {
    let containers = deployment["spec"]["template"]["spec"]["containers"]
        .as_array()
        .expect("containers");
    assert_eq!(containers.len(), 1, "one container");
    &containers[0]
}

/// The container's environment: name → the env entry.
fn environment(deployment: &Value) -> BTreeMap<String, Value> {
    let mut env = BTreeMap::new();
    for entry in container(deployment)["env"].as_array().expect("env") {
        let var = text(&entry["name"], "env name").to_owned();
        assert!(
            env.insert(var.clone(), entry.clone()).is_none(),
            "{var} is set twice"
        );
    }
    env
}

fn env_value(deployment: &Value, var: &str) -> Option<String> {
    environment(deployment)
        .get(var)
        .map(|entry| text(&entry["value"], var).to_owned())
}

/// The port number of the container port `port` (a name or a number) refers to.
fn container_port(deployment: &Value, port: &Value) -> u64 {
    let ports = container(deployment)["ports"].as_array().expect("ports");
    let found = ports.iter().find(|p| match port {
        Value::String(name) => p["name"].as_str() == Some(name),
        Value::Number(n) => p["containerPort"].as_u64() == n.as_u64(),
        _ => false,
    });
    found.unwrap_or_else(|| panic!("no container port {port}"))["containerPort"]
        .as_u64()
        .unwrap()
}

/// True when every label of `selector` is among `labels`.
fn selects(selector: &Value, labels: &Value) -> bool {
    let selector = selector.as_object().expect("a selector is a mapping");
    !selector.is_empty() && selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

/// The keys a Secret document defines (stringData and data).
fn secret_keys(secret: &Value) -> BTreeSet<String> {
    ["stringData", "data"]
        .iter()
        .filter_map(|field| secret[field].as_object())
        .flat_map(|map| map.keys().cloned())
        .collect()
}

// ---------------------------------------------------------------------------------------
// Checks shared by the plain manifests and the rendered chart

/// Every variable the Deployment sets is documented, every `*_FILE` names a documented
/// secret and a file that a mounted Secret provides, and every secretKeyRef resolves to a
/// key of a Secret among `docs` (or, when `external_secrets` lists its name, of a Secret the
/// operator creates).
fn check_environment(docs: &[Value], external_secrets: &[&str]) {
    let deployment = only(docs, "Deployment");
    let documented = documented_variables();
    let pod = &deployment["spec"]["template"]["spec"];
    let mounts = container(deployment)["volumeMounts"]
        .as_array()
        .expect("volumeMounts");
    let volumes = pod["volumes"].as_array().expect("volumes");
    let secret_has = |secret: &str, key: &str| -> bool {
        if external_secrets.contains(&secret) {
            return true;
        }
        let secret = find(docs, "Secret", secret);
        secret_keys(secret).contains(key)
    };

    for (var, entry) in environment(deployment) {
        // BINDERY_TLS_CERT_FILE is a setting of its own; DATABASE_URL_FILE is the file
        // form of the secret DATABASE_URL.
        let file_form = if documented.contains_key(&var) {
            None
        } else {
            var.strip_suffix("_FILE")
        };
        if let Some(base) = file_form {
            assert_eq!(
                documented.get(base),
                Some(&true),
                "{var}: {base} is not a secret in docs/configuration.md, so bindery ignores {var}"
            );
            // The file must come from a mounted Secret's item.
            let path = Path::new(text(&entry["value"], &var));
            let mount = mounts
                .iter()
                .find(|m| path.parent() == Some(Path::new(text(&m["mountPath"], "mountPath"))))
                .unwrap_or_else(|| panic!("{var}: no volume is mounted at {}", path.display()));
            let file = path.file_name().unwrap().to_str().unwrap();
            let volume = volumes
                .iter()
                .find(|v| v["name"] == mount["name"])
                .expect("the mounted volume exists");
            let mut sources = Vec::new();
            if volume["secret"].is_object() {
                sources.push(json!({"secret": {
                    "name": volume["secret"]["secretName"], "items": volume["secret"]["items"]}}));
            }
            sources.extend(
                volume["projected"]["sources"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default(),
            );
            let provided = sources.iter().any(|source| {
                let Some(secret) = source["secret"]["name"].as_str() else {
                    return false;
                };
                source["secret"]["items"]
                    .as_array()
                    .expect("list the items of mounted Secrets, so a missing key stops the pod")
                    .iter()
                    .any(|item| {
                        item["path"] == file && secret_has(secret, text(&item["key"], "item key"))
                    })
            });
            assert!(
                provided,
                "{var}: no mounted Secret provides {}",
                path.display()
            );
        } else {
            assert!(
                documented.contains_key(&var),
                "{var} is not in docs/configuration.md"
            );
        }
        if let Some(reference) = entry["valueFrom"]["secretKeyRef"].as_object() {
            let secret = text(&reference["name"], "secretKeyRef.name");
            let key = text(&reference["key"], "secretKeyRef.key");
            assert!(
                secret_has(secret, key),
                "{var}: Secret {secret} has no key {key}"
            );
        }
    }

    // What bindery cannot start without, and what a cluster needs.
    let env = environment(deployment);
    for required in [
        "BINDERY_USERNAME",
        "BINDERY_PASSWORD",
        "BINDERY_ENCRYPTION_KEYS",
        "DATABASE_URL",
    ] {
        assert!(
            env.contains_key(required) || env.contains_key(&format!("{required}_FILE")),
            "{required} is not set"
        );
    }
    for secret in [
        "BINDERY_PASSWORD",
        "BINDERY_ENCRYPTION_KEYS",
        "DATABASE_URL",
    ] {
        assert!(
            env.get(secret).is_none_or(|e| e.get("value").is_none()),
            "{secret} is written into the Deployment: use {secret}_FILE or a secretKeyRef"
        );
    }
    assert_eq!(
        env_value(deployment, "BINDERY_LOG_FORMAT").as_deref(),
        Some("json")
    );
}

/// The Deployment, Service, PodDisruptionBudget, ConfigMap and ClusterServiceBroker fit
/// together: selectors, ports, the catalog file, the broker's URL and credentials.
fn check_wiring(docs: &[Value]) {
    let deployment = only(docs, "Deployment");
    let namespace = text(&deployment["metadata"]["namespace"], "namespace");
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let pod = &deployment["spec"]["template"]["spec"];
    assert!(selects(
        &deployment["spec"]["selector"]["matchLabels"],
        pod_labels
    ));

    // The listen address and the port the probes and the Service use are the same.
    let listen = env_value(deployment, "BINDERY_LISTEN").unwrap_or("0.0.0.0:8080".into());
    let listen_port: u64 = listen.rsplit(':').next().unwrap().parse().unwrap();
    for probe in ["startupProbe", "readinessProbe", "livenessProbe"] {
        let port = &container(deployment)[probe]["httpGet"]["port"];
        assert_eq!(
            container_port(deployment, port),
            listen_port,
            "{probe} port"
        );
        // Explicit, and the same in the manifests and the chart: /readyz gives up on the
        // store after 800 ms (src/http/health.rs), so a probe reads its 503 in time.
        assert_eq!(
            container(deployment)[probe]["timeoutSeconds"],
            2,
            "{probe} timeoutSeconds"
        );
    }

    let service = only(docs, "Service");
    assert_eq!(service["metadata"]["namespace"], namespace);
    assert_eq!(service["spec"]["type"], "ClusterIP");
    assert!(
        selects(&service["spec"]["selector"], pod_labels),
        "the Service selects no pod"
    );
    let ports = service["spec"]["ports"].as_array().expect("Service ports");
    assert_eq!(ports.len(), 1);
    assert_eq!(ports[0]["name"], "http");
    assert_eq!(ports[0]["port"], 80);
    assert_eq!(
        container_port(deployment, &ports[0]["targetPort"]),
        listen_port
    );

    let budget = only(docs, "PodDisruptionBudget");
    assert_eq!(
        budget["spec"]["selector"]["matchLabels"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    assert_eq!(budget["spec"]["minAvailable"], 1);

    // BINDERY_CATALOG is the ConfigMap's catalog.yaml.
    let catalog_path = env_value(deployment, "BINDERY_CATALOG").expect("BINDERY_CATALOG is set");
    let catalog_path = Path::new(&catalog_path);
    let mount = container(deployment)["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| catalog_path.parent() == Some(Path::new(text(&m["mountPath"], "mountPath"))))
        .expect("BINDERY_CATALOG is in a mounted volume");
    let volume = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == mount["name"])
        .unwrap();
    let config_map = find(
        docs,
        "ConfigMap",
        text(&volume["configMap"]["name"], "configMap name"),
    );
    let key = catalog_path.file_name().unwrap().to_str().unwrap();
    assert!(
        config_map["data"][key].is_string(),
        "the ConfigMap has no {key}"
    );

    // The broker reaches the Service and authenticates with the broker's own credentials.
    let broker = only(docs, "ClusterServiceBroker");
    assert_eq!(
        broker["spec"]["url"],
        format!("http://{}.{namespace}.svc.cluster.local", name(service)),
        "the broker's URL is not the Service's (port 80)"
    );
    let secret_ref = &broker["spec"]["authInfo"]["basic"]["secretRef"];
    assert_eq!(secret_ref["namespace"], namespace);
    let auth_secret = text(&secret_ref["name"], "secretRef.name");
    let keys = secret_keys(find(docs, "Secret", auth_secret));
    assert_eq!(
        keys,
        BTreeSet::from(["password".to_owned(), "username".to_owned()])
    );
    let env = environment(deployment);
    assert_eq!(
        env["BINDERY_USERNAME"]["valueFrom"]["secretKeyRef"],
        json!({"name": auth_secret, "key": "username"}),
        "the broker's user name is not the one Service Catalog sends"
    );
    let password_file = text(
        &env["BINDERY_PASSWORD_FILE"]["value"],
        "BINDERY_PASSWORD_FILE",
    );
    let password_source = pod["volumes"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|v| {
            v["projected"]["sources"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .find(|s| {
            s["secret"]["items"].as_array().is_some_and(|items| {
                items
                    .iter()
                    .any(|i| password_file.ends_with(&format!("/{}", text(&i["path"], "path"))))
            })
        })
        .expect("the password file comes from a projected Secret");
    assert_eq!(
        password_source["secret"]["name"], auth_secret,
        "the broker's password is not the one Service Catalog sends"
    );
}

// ---------------------------------------------------------------------------------------
// The plain manifests

#[test]
fn every_manifest_is_a_named_kubernetes_object() {
    let mut seen = BTreeSet::new();
    for (file, docs) in plain_files() {
        assert!(!docs.is_empty(), "{file} has no document");
        for doc in &docs {
            assert!(
                doc["apiVersion"].is_string(),
                "{file}: a document without apiVersion"
            );
            assert!(
                !kind(doc).is_empty() && !name(doc).is_empty(),
                "{file}: {doc}"
            );
            let key = (
                kind(doc).to_owned(),
                doc["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                name(doc).to_owned(),
            );
            assert!(
                seen.insert(key),
                "{file}: {} {} is defined twice",
                kind(doc),
                name(doc)
            );
        }
    }
    let docs = installation();
    let kinds: BTreeSet<&str> = docs.iter().map(kind).collect();
    let expected = [
        "ClusterServiceBroker",
        "ConfigMap",
        "Deployment",
        "Namespace",
        "PodDisruptionBudget",
        "Secret",
        "Service",
    ];
    assert_eq!(kinds, expected.into_iter().collect());
    // Everything namespaced lives in the Namespace the file creates.
    let namespace = name(only(&docs, "Namespace"));
    assert_eq!(namespace, "bindery");
    for doc in &docs {
        if !matches!(kind(doc), "Namespace" | "ClusterServiceBroker") {
            assert_eq!(
                doc["metadata"]["namespace"],
                namespace,
                "{} {}",
                kind(doc),
                name(doc)
            );
        }
    }
}

#[test]
fn deployment_runs_two_hardened_replicas() {
    let docs = installation();
    let deployment = find(&docs, "Deployment", "bindery");
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    let c = container(deployment);

    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert!(
        pod["securityContext"]["runAsUser"]
            .as_u64()
            .is_some_and(|u| u > 0)
    );
    assert_eq!(
        pod["securityContext"]["seccompProfile"]["type"],
        "RuntimeDefault"
    );
    assert_eq!(pod["automountServiceAccountToken"], false);
    assert_eq!(c["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(c["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(c["securityContext"]["runAsNonRoot"], true);
    assert_eq!(c["securityContext"]["capabilities"]["drop"], json!(["ALL"]));
    assert_eq!(c["args"], json!(["serve"]));
    for bound in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                c["resources"][bound][resource].is_string(),
                "resources.{bound}.{resource}"
            );
        }
    }

    // Probes: readiness follows the database, liveness only the process.
    assert_eq!(c["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(c["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(c["startupProbe"]["httpGet"]["path"], "/healthz");

    // SIGTERM arrives after preStop; the worker then has its grace period, and all of it
    // must fit before Kubernetes sends SIGKILL.
    let pre_stop: u64 = match c["lifecycle"]["preStop"]["exec"]["command"].as_array() {
        Some(command) if command[0] == "sleep" => text(&command[1], "sleep").parse().unwrap(),
        _ => 0,
    };
    let grace: u64 =
        env_value(deployment, "BINDERY_SHUTDOWN_GRACE_SECONDS").map_or(20, |v| v.parse().unwrap());
    let termination = pod["terminationGracePeriodSeconds"]
        .as_u64()
        .expect("terminationGracePeriodSeconds");
    assert!(
        pre_stop + grace < termination,
        "preStop {pre_stop} s + shutdown grace {grace} s must be less than terminationGracePeriodSeconds {termination}"
    );

    // Replicas are spread over nodes.
    let labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let spread = pod["topologySpreadConstraints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let anti =
        pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"]
            .as_array()
            .cloned()
            .unwrap_or_default();
    let spreads = spread.iter().any(|s| {
        s["topologyKey"] == "kubernetes.io/hostname"
            && selects(&s["labelSelector"]["matchLabels"], labels)
    }) || anti.iter().any(|a| {
        a["podAffinityTerm"]["topologyKey"] == "kubernetes.io/hostname"
            && selects(
                &a["podAffinityTerm"]["labelSelector"]["matchLabels"],
                labels,
            )
    });
    assert!(
        spreads,
        "no topology spread or anti-affinity selects bindery's pods"
    );
}

#[test]
fn every_environment_variable_is_documented_and_every_secret_resolves() {
    check_environment(&installation(), &[]);
}

#[test]
fn objects_are_wired_together() {
    check_wiring(&installation());
}

#[test]
fn catalog_config_map_is_the_repository_catalog() {
    let docs = installation();
    let config_map = find(&docs, "ConfigMap", "bindery-catalog");
    let catalog = read("catalog.yaml");
    assert!(
        config_map["data"]["catalog.yaml"].as_str() == Some(catalog.as_str()),
        "deploy/kubernetes/bindery.yaml's catalog differs from catalog.yaml; regenerate it:\n  \
         sed -i '/^  catalog.yaml: |$/q' deploy/kubernetes/bindery.yaml && \
         sed 's/^./    &/' catalog.yaml >> deploy/kubernetes/bindery.yaml"
    );
}

#[test]
fn secrets_in_the_manifests_are_placeholders() {
    for (file, docs) in plain_files() {
        for secret in docs.iter().filter(|d| kind(d) == "Secret") {
            assert!(
                secret["data"].is_null(),
                "{file}: use stringData, so placeholders stay visible"
            );
            for (key, value) in secret["stringData"].as_object().expect("stringData") {
                if key != "username" {
                    assert!(
                        text(value, key).contains("CHANGE-ME"),
                        "{file}: Secret {} key {key} is not a CHANGE-ME placeholder",
                        name(secret)
                    );
                }
            }
        }
    }
}

#[test]
fn examples_use_a_served_service_with_valid_parameters() {
    let catalog: Value = serde_yaml::from_str(&read("catalog.yaml")).unwrap();
    let examples = plain_files().remove("examples.yaml").unwrap();
    let instance = only(&examples, "ServiceInstance");
    let binding = only(&examples, "ServiceBinding");
    assert_eq!(instance["apiVersion"], "servicecatalog.k8s.io/v1beta1");
    assert_eq!(binding["apiVersion"], "servicecatalog.k8s.io/v1beta1");

    let service_name = &instance["spec"]["clusterServiceClassExternalName"];
    let plan_name = &instance["spec"]["clusterServicePlanExternalName"];
    assert_eq!(service_name, "postgresql");
    let service = catalog["services"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| &s["name"] == service_name)
        .expect("the example's service is in catalog.yaml");
    let plan = service["plans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| &p["name"] == plan_name)
        .expect("the example's plan is in catalog.yaml");
    let valid = |schema: &Value, parameters: &Value, what: &str| {
        assert!(schema.is_object(), "the plan has no {what} schema");
        if let Err(error) = jsonschema::validate(schema, parameters) {
            panic!("the example's {what} parameters {parameters} are invalid: {error}");
        }
    };
    assert_eq!(
        instance["spec"]["parameters"],
        json!({"connection_limit": 10})
    );
    valid(
        &plan["schemas"]["service_instance"]["create"]["parameters"],
        &instance["spec"]["parameters"],
        "instance",
    );

    assert_eq!(
        binding["metadata"]["namespace"],
        instance["metadata"]["namespace"]
    );
    assert_eq!(
        binding["spec"]["instanceRef"]["name"],
        instance["metadata"]["name"]
    );
    assert_eq!(binding["spec"]["secretName"], "orders-db-credentials");
    assert_eq!(binding["spec"]["parameters"], json!({"read_only": false}));
    valid(
        &plan["schemas"]["service_binding"]["create"]["parameters"],
        &binding["spec"]["parameters"],
        "binding",
    );
}

// ---------------------------------------------------------------------------------------
// The Dockerfile

/// The Dockerfile's instructions (comments dropped, continuation lines joined), split into
/// stages at each FROM.
fn dockerfile_stages(text: &str) -> Vec<Vec<(String, String)>> {
    let mut instructions = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        if let Some(start) = trimmed.strip_suffix('\\') {
            current.push_str(start);
            current.push(' ');
            continue;
        }
        current.push_str(trimmed);
        let (keyword, rest) = current
            .split_once(char::is_whitespace)
            .unwrap_or((&current, ""));
        instructions.push((keyword.to_uppercase(), rest.trim().to_owned()));
        current.clear();
    }
    let mut stages: Vec<Vec<(String, String)>> = Vec::new();
    for instruction in instructions {
        if instruction.0 == "FROM" {
            stages.push(Vec::new());
        }
        stages
            .last_mut()
            .expect("the Dockerfile starts with FROM")
            .push(instruction);
    }
    stages
}

#[test]
fn dockerfile_ships_catalog_and_migrations_and_runs_as_non_root() {
    let stages = dockerfile_stages(&read("Dockerfile"));
    assert!(stages.len() >= 2, "a multi-stage build");
    // Every cargo build of the builder (the dependency cache's too) is a locked release
    // build of the binary, and the last one builds it from the real sources.
    let builds: Vec<&str> = stages[0]
        .iter()
        .filter(|(k, v)| k == "RUN" && v.contains("cargo build"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(!builds.is_empty(), "the builder runs cargo build");
    for build in &builds {
        for command in build.split("&&").filter(|c| c.contains("cargo build")) {
            assert_eq!(
                command.split_whitespace().collect::<Vec<_>>(),
                [
                    "cargo",
                    "build",
                    "--release",
                    "--locked",
                    "--bin",
                    "bindery"
                ],
                "the builder runs `{}`",
                command.trim()
            );
        }
    }
    let sources_copied = stages[0]
        .iter()
        .position(|(k, v)| k == "COPY" && v.starts_with("src "))
        .expect("the builder copies src/");
    assert!(
        stages[0][sources_copied..]
            .iter()
            .any(|(k, v)| k == "RUN" && v.contains("cargo build")),
        "the binary is built after the real sources are copied"
    );
    let last = stages.last().unwrap();
    let all = |keyword: &str| -> Vec<&str> {
        last.iter()
            .filter(|(k, _)| k == keyword)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    let copies = all("COPY");
    let copy_to = |source: &str| -> Option<&str> {
        copies.iter().find_map(|c| {
            let words: Vec<&str> = c.split_whitespace().collect();
            (words.len() >= 2 && words[words.len() - 2] == source).then(|| words[words.len() - 1])
        })
    };
    assert_eq!(
        copy_to("/build/target/release/bindery").or(copy_to("target/release/bindery")),
        Some("/usr/local/bin/bindery"),
        "the binary is copied to /usr/local/bin/bindery"
    );
    let catalog = copy_to("catalog.yaml").expect("the final image has catalog.yaml");
    assert!(
        copy_to("migrations").is_some(),
        "the final image has migrations/"
    );

    let env: String = all("ENV").join(" ");
    assert!(
        env.contains(&format!("BINDERY_CATALOG={catalog}")),
        "BINDERY_CATALOG is {catalog}, where catalog.yaml is copied"
    );
    assert!(env.contains("BINDERY_LOG_FORMAT=json"));
    assert!(env.contains("BINDERY_LISTEN=0.0.0.0:8080"));
    assert_eq!(all("EXPOSE"), ["8080"]);

    // Non-root, numerically, and the same user the Deployment runs as.
    let user = all("USER");
    let user = user.last().expect("the final stage sets USER");
    let uid = user.split(':').next().unwrap();
    assert!(!matches!(uid, "root" | "0"), "runs as root");
    let uid: u64 = uid
        .parse()
        .expect("USER is numeric, so runAsNonRoot can verify it");
    let docs = installation();
    let pod = &only(&docs, "Deployment")["spec"]["template"]["spec"];
    assert_eq!(pod["securityContext"]["runAsUser"], uid);

    assert_eq!(all("ENTRYPOINT"), [r#"["/usr/local/bin/bindery"]"#]);
    assert_eq!(all("CMD"), [r#"["serve"]"#]);
    assert!(
        !all("HEALTHCHECK").is_empty(),
        "a HEALTHCHECK for plain Docker"
    );

    // .dockerignore keeps the build context small but keeps what the build copies.
    let ignore = read(".dockerignore");
    let ignored: BTreeSet<&str> = ignore
        .lines()
        .map(|l| l.trim().trim_end_matches('/'))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for needed in ["target", ".git"] {
        assert!(ignored.contains(needed), ".dockerignore misses {needed}");
    }
    for used in [
        "src",
        "migrations",
        "catalog.yaml",
        "Cargo.toml",
        "Cargo.lock",
    ] {
        assert!(
            !ignored.contains(used),
            ".dockerignore excludes {used}, which the build copies"
        );
    }
}

// ---------------------------------------------------------------------------------------
// The Helm chart, rendered by Helm's engine

const CHART: &str = "deploy/helm/bindery";

/// Renders the chart with `values` as release `bindery` in namespace `bindery`, with
/// Helm's Go SDK; also lints it. Returns (manifest documents, lint messages).
fn helm_render(values: Value) -> (Vec<Value>, Value) {
    const SCRIPT: &str = r#"
import json, sys
import helm_python as helm
chart_dir, values = sys.argv[1], json.loads(sys.argv[2])
with helm.Chart.load(chart_dir) as chart:
    manifests = chart.render(values, name="bindery", namespace="bindery", is_install=True)
print(json.dumps({"manifests": manifests, "lint": helm.lint(chart_dir), "sdk": helm.helm_sdk_version()}))
"#;
    let python = std::env::var_os("BINDERY_HELM_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".dev/helm-venv/bin/python"));
    let output = Command::new(&python)
        .arg("-c")
        .arg(SCRIPT)
        .arg(root().join(CHART))
        .arg(values.to_string())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {} ({e}): the Helm tests render the chart with Helm's engine from \
                 the PyPI package helm-python-sdk. Install it with `{HELM_INSTALL}` \
                 (scripts/test does), or set BINDERY_HELM_PYTHON",
                python.display()
            )
        });
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !stderr.contains("No module named 'helm_python'"),
        "{} has no helm-python-sdk: install Helm's engine with `{HELM_INSTALL}`",
        python.display()
    );
    assert!(
        output.status.success(),
        "rendering the chart failed:\n{stderr}"
    );
    let result: Value = serde_json::from_slice(&output.stdout).expect("the renderer prints JSON");
    assert!(
        result["sdk"]
            .as_str()
            .is_some_and(|v| v.starts_with("v3.") || v.starts_with("v4.")),
        "not a Helm engine: {}",
        result["sdk"]
    );
    let mut docs = Vec::new();
    for (template, rendered) in result["manifests"].as_object().expect("manifests") {
        // `helm template` prints neither NOTES.txt nor partials.
        let file = template.rsplit('/').next().unwrap();
        if file == "NOTES.txt" || file.starts_with('_') {
            continue;
        }
        docs.extend(documents(text(rendered, template), template));
    }
    (docs, result["lint"].clone())
}

/// Removes what only Helm adds: its two labels and the pods' checksum annotation,
/// checking that they are there.
fn without_helm_additions(mut doc: Value) -> Value {
    let what = format!("{} {}", kind(&doc), name(&doc));
    let labels = doc["metadata"]["labels"]
        .as_object_mut()
        .unwrap_or_else(|| panic!("{what} has no labels"));
    assert_eq!(
        labels.remove("app.kubernetes.io/managed-by"),
        Some(json!("Helm")),
        "{what}"
    );
    assert!(
        labels.remove("helm.sh/chart").is_some(),
        "{what} has no helm.sh/chart label"
    );
    if kind(&doc) == "Deployment" {
        let template = doc["spec"]["template"]["metadata"].as_object_mut().unwrap();
        let annotations = template["annotations"]
            .as_object_mut()
            .expect("pod annotations");
        let checksum = annotations
            .remove("checksum/catalog")
            .expect("a checksum/catalog annotation");
        let expected = hex::encode(sha2::Sha256::digest(read("catalog.yaml").as_bytes()));
        assert_eq!(
            checksum, expected,
            "checksum/catalog is not the catalog's SHA-256"
        );
        if annotations.is_empty() {
            template.remove("annotations");
        }
    }
    doc
}

fn by_identity(docs: Vec<Value>) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    for doc in docs {
        let key = format!(
            "{} {}/{}",
            kind(&doc),
            doc["metadata"]["namespace"].as_str().unwrap_or("-"),
            name(&doc)
        );
        assert!(map.insert(key.clone(), doc).is_none(), "{key} twice");
    }
    map
}

#[test]
fn helm_chart_renders_the_plain_manifests() {
    let (rendered, lint) = helm_render(json!({}));
    let rendered = by_identity(rendered.into_iter().map(without_helm_additions).collect());
    // A chart does not create its release's namespace (`helm install --create-namespace`).
    let plain = by_identity(
        installation()
            .into_iter()
            .filter(|d| kind(d) != "Namespace")
            .collect(),
    );
    assert_eq!(
        rendered.keys().collect::<Vec<_>>(),
        plain.keys().collect::<Vec<_>>(),
        "the chart renders other objects than deploy/kubernetes/bindery.yaml"
    );
    for (key, expected) in &plain {
        assert_eq!(
            serde_json::to_string_pretty(&rendered[key]).unwrap(),
            serde_json::to_string_pretty(expected).unwrap(),
            "{key}: the chart (left) differs from deploy/kubernetes/bindery.yaml (right)"
        );
    }

    // helm lint: no error and no warning (severity 1 is information).
    for message in lint["messages"].as_array().expect("lint messages") {
        assert!(
            message["severity"].as_u64().unwrap() < 2,
            "helm lint: {message}"
        );
    }
    assert_eq!(lint["errors"], json!([]), "helm lint");
}

#[test]
fn helm_chart_catalog_file_is_the_repository_catalog() {
    assert!(
        read(&format!("{CHART}/files/catalog.yaml")) == read("catalog.yaml"),
        "{CHART}/files/catalog.yaml differs from catalog.yaml: cp catalog.yaml {CHART}/files/"
    );
}

#[test]
fn helm_chart_with_every_backend_still_fits_together() {
    let catalog = "services: []\n";
    let (docs, _) = helm_render(json!({
        "catalog": catalog,
        "log": {"filter": "bindery=debug"},
        "extraEnv": [{"name": "BINDERY_WORKER_CONCURRENCY", "value": "4"}],
        "backends": {
            "postgresql": {"credentialsHost": "pg.example", "credentialsPort": 6432, "namePrefix": "k8s"},
            "mariadb": {"enabled": true, "adminUrl": "mysql://root:CHANGE-ME@mariadb:3306",
                        "namePrefix": "k8s"},
            "redis": {"enabled": true, "adminUrl": "redis://admin:CHANGE-ME@redis:6379",
                      "credentialsHost": "redis.example"},
            "rabbitmq": {"enabled": true, "apiUrl": "http://rabbitmq:15672", "adminUsername": "admin",
                         "adminPassword": "CHANGE-ME", "amqpPort": 5672},
        },
    }));
    check_environment(&docs, &[]);
    check_wiring(&docs);
    let deployment = only(&docs, "Deployment");
    for var in [
        "BINDERY_LOG",
        "BINDERY_WORKER_CONCURRENCY",
        "BINDERY_POSTGRES_CREDENTIALS_PORT",
        "BINDERY_MARIADB_ADMIN_URL_FILE",
        "BINDERY_MARIADB_NAME_PREFIX",
        "BINDERY_REDIS_ADMIN_URL_FILE",
        "BINDERY_REDIS_CREDENTIALS_HOST",
        "BINDERY_RABBITMQ_API_URL",
        "BINDERY_RABBITMQ_ADMIN_PASSWORD_FILE",
        "BINDERY_RABBITMQ_AMQP_PORT",
    ] {
        assert!(
            environment(deployment).contains_key(var),
            "{var} is not set"
        );
    }
    assert_eq!(
        env_value(deployment, "BINDERY_POSTGRES_CREDENTIALS_PORT").as_deref(),
        Some("6432")
    );
    let config_map = find(&docs, "ConfigMap", "bindery-catalog");
    assert_eq!(config_map["data"]["catalog.yaml"], catalog);
}

#[test]
fn helm_chart_can_use_existing_secrets() {
    let (docs, _) = helm_render(json!({
        "auth": {"existingSecret": "platform-auth"},
        "existingSecret": "bindery-secrets",
        "broker": {"relistDuration": "1h0m0s"},
    }));
    assert!(
        docs.iter().all(|d| kind(d) != "Secret"),
        "the chart still creates a Secret"
    );
    check_environment(&docs, &["platform-auth", "bindery-secrets"]);
    let broker = only(&docs, "ClusterServiceBroker");
    assert_eq!(
        broker["spec"]["authInfo"]["basic"]["secretRef"],
        json!({"namespace": "bindery", "name": "platform-auth"})
    );
    assert_eq!(broker["spec"]["relistDuration"], "1h0m0s");
}

#[test]
fn helm_chart_installs_without_the_cluster_service_broker() {
    // Service Catalog is archived; on a cluster that does not serve
    // servicecatalog.k8s.io/v1beta1 the chart must install without it (docs/kubernetes.md).
    let (docs, _) = helm_render(json!({"broker": {"create": false}}));
    assert!(
        docs.iter().all(|d| kind(d) != "ClusterServiceBroker"),
        "broker.create=false still renders a ClusterServiceBroker"
    );
    assert!(
        docs.iter().all(|d| !d["apiVersion"]
            .as_str()
            .unwrap_or("")
            .starts_with("servicecatalog.k8s.io")),
        "broker.create=false still renders a servicecatalog.k8s.io object"
    );
    // check_wiring wants the broker; the rest of the installation is the same.
    check_environment(&docs, &[]);
    only(&docs, "Deployment");
    let doc = read("docs/kubernetes.md");
    assert!(
        doc.contains("broker.create=false"),
        "docs/kubernetes.md explains broker.create=false"
    );
    let values = read(&format!("{CHART}/values.yaml"));
    assert!(
        values.contains("broker:\n  create: true"),
        "the value exists"
    );
}
