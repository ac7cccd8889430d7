//! The whole Service Catalog lifecycle against a real Kubernetes API server and a real bindery:
//! broker → classes and plans; an instance of each of the four services; a plan change; a
//! binding per instance whose Secret works with the real clients; unbind and deprovision that
//! leave nothing on the servers; bad parameters; a delete blocked by a binding; a broker that
//! goes down and comes back.

mod common;

use std::time::Duration;

use bindery_controller::crd::{
    ClusterServiceBroker, ClusterServiceClass, ClusterServicePlan, ServiceBinding, ServiceInstance,
};
use common::*;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kube::{Api, ResourceExt};
use serde_json::{Value, json};

const LONG: Duration = Duration::from_secs(120);

/// The four services, the plan each starts on, and how a binding's Secret proves it works.
const SERVICES: [(&str, &str); 4] = [
    ("postgresql", "small"),
    ("mariadb", "small"),
    ("redis", "shared"),
    ("rabbitmq", "small"),
];

fn condition(
    conditions: &[bindery_controller::crd::Condition],
    type_: &str,
) -> Option<(String, String, String)> {
    conditions.iter().find(|c| c.type_ == type_).map(|c| {
        (
            c.status.clone(),
            c.reason.clone().unwrap_or_default(),
            c.message.clone().unwrap_or_default(),
        )
    })
}

fn instance_yaml(name: &str, class: &str, plan: &str, parameters: &str) -> String {
    format!(
        "apiVersion: servicecatalog.k8s.io/v1beta1\nkind: ServiceInstance\nmetadata: {{name: {name}, namespace: app}}\n\
         spec:\n  clusterServiceClassExternalName: {class}\n  clusterServicePlanExternalName: {plan}\n  parameters: {parameters}\n"
    )
}

fn binding_yaml(name: &str, instance: &str) -> String {
    format!(
        "apiVersion: servicecatalog.k8s.io/v1beta1\nkind: ServiceBinding\nmetadata: {{name: {name}, namespace: app}}\n\
         spec:\n  instanceRef: {{name: {instance}}}\n  secretName: {name}-secret\n"
    )
}

async fn wait_ready(api: &Api<ServiceInstance>, name: &str) -> ServiceInstance {
    wait_for(&format!("ServiceInstance {name} Ready"), LONG, || async {
        let si = get(api, name).await?;
        let status = si.status.clone()?;
        let generation = si.metadata.generation;
        let ready = condition(&status.conditions, "Ready").is_some_and(|c| c.0 == "True");
        assert!(
            condition(&status.conditions, "Failed").is_none_or(|c| c.0 != "True"),
            "{name} failed: {status:?}"
        );
        (ready && status.reconciled_generation == generation).then_some(si)
    })
    .await
}

/// Whether the credentials of a binding's Secret work with the service's own client.
fn credentials_work(service: &str, data: &std::collections::BTreeMap<String, String>) -> bool {
    let q = |k: &str| {
        format!(
            "'{}'",
            data.get(k).cloned().unwrap_or_default().replace('\'', "")
        )
    };
    match service {
        "postgresql" => shell_ok(&format!("psql {} -qAtc 'select 1'", q("uri"))),
        "mariadb" => shell_ok(&format!(
            "mariadb -h 127.0.0.1 -P {} -u {} -p{} -D {} -e 'select 1'",
            q("port"),
            q("username"),
            q("password"),
            q("database")
        )),
        // redis-cli carries on as the default user when AUTH fails: ask who we are.
        "redis" => {
            let whoami = format!("redis-cli -u {} --no-auth-warning ACL WHOAMI", q("uri"));
            shell(&whoami) == data["username"]
        }
        "rabbitmq" => shell_ok(&format!(
            "timeout 20 amqp-publish --url={} -r nowhere -b hello",
            q("uri")
        )),
        other => panic!("no client for {other}"),
    }
}

/// What bindery left on the local servers under `prefix`.
fn leftovers(prefix: &str) -> Vec<String> {
    let mut found = Vec::new();
    let pg = shell(&format!(
        "psql -h 127.0.0.1 -U postgres -d postgres -qAtc \"select datname from pg_database where datname like '{prefix}%' \
         union all select rolname from pg_roles where rolname like '{prefix}%'\""
    ));
    let my = shell(&format!(
        "mariadb -h 127.0.0.1 -u root -N -e \"select schema_name from information_schema.schemata where schema_name like '{prefix}%' \
         union all select user from mysql.user where user like '{prefix}%'\""
    ));
    let redis = shell(&format!(
        "redis-cli -h 127.0.0.1 ACL USERS | grep '^{prefix}' || true"
    ));
    let rabbit = shell(&format!(
        "curl -sf -u guest:guest http://127.0.0.1:15672/api/vhosts | grep -o '\"name\":\"{prefix}[^\"]*\"' || true"
    ));
    for text in [pg, my, redis, rabbit] {
        found.extend(text.lines().filter(|l| !l.is_empty()).map(str::to_owned));
    }
    found
}

#[tokio::test(flavor = "multi_thread")]
async fn service_catalog_lifecycle_against_bindery() {
    let plane = ControlPlane::start();
    let mut bindery = Bindery::start(&plane);
    // The controller runs with the RBAC that deploy/kubernetes/controller.yaml grants it.
    let kubeconfig = plane.service_account_kubeconfig();
    let _controller = Controller::start_with(&plane, "lifecycle", &kubeconfig, "service-catalog");
    let client = plane.client().await;
    plane.apply(&broker_yaml("bindery", &bindery));

    // The broker becomes Ready with a class per service and a plan per plan, named by id.
    let brokers = Api::<ClusterServiceBroker>::all(client.clone());
    wait_for("the broker Ready", LONG, || async {
        let b = get(&brokers, "bindery").await?;
        condition(&b.status?.conditions, "Ready").filter(|c| c.0 == "True")
    })
    .await;
    let catalog: Value = serde_json::from_str(&shell(&format!(
        "curl -sf -u {BROKER_USER}:{BROKER_PASSWORD} -H 'X-Broker-API-Version: 2.14' {}/v2/catalog",
        bindery.url()
    )))
    .unwrap();
    let classes = Api::<ClusterServiceClass>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    let plans = Api::<ClusterServicePlan>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    let services = catalog["services"].as_array().unwrap();
    assert_eq!(classes.items.len(), services.len());
    assert_eq!(
        plans.items.len(),
        services
            .iter()
            .map(|s| s["plans"].as_array().unwrap().len())
            .sum::<usize>()
    );
    for service in services {
        let class = classes
            .iter()
            .find(|c| c.name_any() == service["id"].as_str().unwrap())
            .expect("a class named by the service id");
        assert_eq!(class.spec.external_name, service["name"].as_str().unwrap());
        assert_eq!(class.owner_references()[0].name, "bindery");
        for plan in service["plans"].as_array().unwrap() {
            let p = plans
                .iter()
                .find(|p| p.name_any() == plan["id"].as_str().unwrap())
                .expect("a plan named by the plan id");
            assert_eq!(p.spec.external_name, plan["name"].as_str().unwrap());
            assert_eq!(p.spec.cluster_service_class_ref.name, class.name_any());
        }
    }

    // An instance of each service becomes Ready.
    plane.kubectl(&["create", "namespace", "app"]);
    let instances = Api::<ServiceInstance>::namespaced(client.clone(), "app");
    for (service, plan) in SERVICES {
        plane.apply(&instance_yaml(service, service, plan, "{}"));
    }
    for (service, _) in SERVICES {
        let si = wait_ready(&instances, service).await;
        let status = si.status.unwrap();
        assert_eq!(status.provision_status.as_deref(), Some("Provisioned"));
        assert_eq!(
            status.user_specified_class_name.as_deref(),
            Some(format!("ClusterServiceClass/{service}").as_str())
        );
        assert!(
            si.metadata
                .finalizers
                .unwrap_or_default()
                .contains(&bindery_controller::crd::FINALIZER.to_owned())
        );
    }

    // Every transition is an event, as `kubectl describe` shows them.
    let events = Api::<k8s_openapi::api::core::v1::Event>::namespaced(client.clone(), "app");
    let reasons: Vec<String> = events
        .list(&ListParams::default().fields("involvedObject.name=postgresql"))
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|e| e.reason)
        .collect();
    assert!(
        reasons.iter().any(|r| r == "ProvisionedSuccessfully"),
        "events: {reasons:?}"
    );

    // A plan change is applied: the database gets the medium plan's connection limit.
    let patch = json!({"spec": {"clusterServicePlanExternalName": "medium"}});
    instances
        .patch("postgresql", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let si = wait_for("the plan change", LONG, || async {
        let si = wait_ready(&instances, "postgresql").await;
        let plan = si
            .status
            .as_ref()?
            .external_properties
            .as_ref()?
            .cluster_service_plan_external_name
            .clone();
        (plan.as_deref() == Some("medium")).then_some(si)
    })
    .await;
    assert_eq!(
        si.spec.cluster_service_plan_ref.unwrap().name,
        "3a9d2f64-7b1e-4c08-8e5f-2d6b4a1c9e22"
    );
    let limit = shell(&format!(
        "psql -h 127.0.0.1 -U postgres -d postgres -qAtc \"select datconnlimit from pg_database where datname like '{}%'\"",
        bindery.prefix
    ));
    assert_eq!(
        limit, "50",
        "the medium plan's connection limit on the server"
    );

    // A binding per instance: a Secret whose credentials work with the real clients.
    let bindings = Api::<ServiceBinding>::namespaced(client.clone(), "app");
    let secrets = Api::<Secret>::namespaced(client.clone(), "app");
    let mut credentials = Vec::new();
    for (service, _) in SERVICES {
        plane.apply(&binding_yaml(service, service));
    }
    for (service, _) in SERVICES {
        let secret = wait_for(
            &format!("the Secret of binding {service}"),
            LONG,
            || async {
                let b = get(&bindings, service).await?;
                condition(&b.status?.conditions, "Ready").filter(|c| c.0 == "True")?;
                get(&secrets, &format!("{service}-secret")).await
            },
        )
        .await;
        let data: std::collections::BTreeMap<String, String> = secret
            .data
            .clone()
            .unwrap()
            .into_iter()
            .map(|(k, v)| (k, String::from_utf8(v.0).unwrap()))
            .collect();
        assert!(
            data.contains_key("type") && data.contains_key("provider") && data.contains_key("uri"),
            "{service}: {:?}",
            data.keys()
        );
        assert_eq!(secret.owner_references()[0].kind, "ServiceBinding");
        assert!(
            credentials_work(service, &data),
            "the {service} credentials work"
        );
        credentials.push((service, data));
    }

    // Deleting an instance waits for its bindings.
    instances
        .delete("redis", &DeleteParams::default())
        .await
        .unwrap();
    wait_for(
        "the redis deprovision blocked by its binding",
        LONG,
        || async {
            let si = get(&instances, "redis").await?;
            condition(&si.status?.conditions, "Ready")
                .filter(|c| c.1 == "DeprovisionBlockedByExistingCredentials")
        },
    )
    .await;

    // Deleting a binding removes its Secret and its credentials.
    for (service, data) in &credentials {
        bindings
            .delete(service, &DeleteParams::default())
            .await
            .unwrap();
        wait_for(&format!("binding {service} gone"), LONG, || async {
            get(&bindings, service).await.is_none().then_some(())
        })
        .await;
        assert!(
            get(&secrets, &format!("{service}-secret")).await.is_none(),
            "the {service} Secret is deleted with its binding"
        );
        assert!(
            !credentials_work(service, data),
            "the {service} credentials no longer work"
        );
    }

    // Bad parameters: Failed, with the broker's description.
    plane.apply(&instance_yaml(
        "bad",
        "postgresql",
        "small",
        "{connection_limit: 1000}",
    ));
    let failed = wait_for("the bad instance Failed", LONG, || async {
        let si = get(&instances, "bad").await?;
        condition(&si.status?.conditions, "Failed").filter(|c| c.0 == "True")
    })
    .await;
    assert!(
        failed.2.contains("Status: 400") && failed.2.contains("connection_limit"),
        "the broker's words: {}",
        failed.2
    );

    // Deleting every instance deprovisions it and leaves nothing on the servers (which do
    // hold the three remaining instances' databases and vhost now).
    let before = leftovers(&bindery.prefix);
    assert!(
        before.len() >= 3,
        "the instances are on the servers: {before:?}"
    );
    for name in ["postgresql", "mariadb", "rabbitmq", "bad"] {
        instances
            .delete(name, &DeleteParams::default())
            .await
            .unwrap();
    }
    for name in ["postgresql", "mariadb", "redis", "rabbitmq", "bad"] {
        wait_for(&format!("instance {name} gone"), LONG, || async {
            get(&instances, name).await.is_none().then_some(())
        })
        .await;
    }
    assert_eq!(
        leftovers(&bindery.prefix),
        Vec::<String>::new(),
        "nothing left on the managed servers"
    );

    // A broker that is down: not Ready, then Ready again once it is back.
    bindery.stop();
    let patch = json!({"spec": {"relistRequests": 1}});
    brokers
        .patch("bindery", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    wait_for(
        "the broker not Ready while bindery is down",
        LONG,
        || async {
            let b = get(&brokers, "bindery").await?;
            condition(&b.status?.conditions, "Ready")
                .filter(|c| c.0 == "False" && c.1 == "ErrorFetchingCatalog")
        },
    )
    .await;
    bindery.restart(&plane);
    wait_for("the broker Ready again", LONG, || async {
        let b = get(&brokers, "bindery").await?;
        condition(&b.status?.conditions, "Ready").filter(|c| c.0 == "True")
    })
    .await;
}
