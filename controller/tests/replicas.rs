//! Restarts and replicas: a controller killed in the middle of a provision finishes it once
//! started again; of two replicas only the Lease holder acts, and the other takes over when the
//! holder dies.

mod common;

use std::time::Duration;

use bindery_controller::crd::{ClusterServiceBroker, ServiceInstance};
use common::*;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::api::DeleteParams;

const LONG: Duration = Duration::from_secs(120);

fn ready(si: &ServiceInstance) -> bool {
    si.status.as_ref().is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_controller_finishes_on_restart_and_only_the_leader_acts() {
    let plane = ControlPlane::start();
    let bindery = Bindery::start(&plane);
    let client = plane.client().await;
    let mut first = Controller::start(&plane, "first");
    plane.apply(&broker_yaml("bindery", &bindery));
    let brokers = Api::<ClusterServiceBroker>::all(client.clone());
    wait_for("the broker Ready", LONG, || async {
        let b = get(&brokers, "bindery").await?;
        b.status?
            .conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True")
            .then_some(())
    })
    .await;

    // Kill the controller as soon as it has started the provision (status written, PUT sent
    // or about to be), before the instance is Ready.
    plane.kubectl(&["create", "namespace", "app"]);
    let instances = Api::<ServiceInstance>::namespaced(client.clone(), "app");
    plane.apply(
        "apiVersion: servicecatalog.k8s.io/v1beta1\nkind: ServiceInstance\nmetadata: {name: db, namespace: app}\n\
         spec: {clusterServiceClassExternalName: postgresql, clusterServicePlanExternalName: small}\n",
    );
    let caught = wait_for("the provision started", LONG, || async {
        let si = get(&instances, "db").await?;
        let started = si
            .status
            .as_ref()
            .is_some_and(|s| s.current_operation.as_deref() == Some("Provision"));
        started.then_some(si)
    })
    .await;
    first.process.kill();
    assert!(!ready(&caught), "killed before the instance was Ready");
    let si = get(&instances, "db").await.unwrap();
    assert!(
        !ready(&si),
        "nothing finished the provision while no controller ran"
    );

    // Started again, it finishes the provision.
    let restarted = Controller::start(&plane, "first");
    wait_for("the instance Ready after the restart", LONG, || async {
        get(&instances, "db").await.filter(ready).map(|_| ())
    })
    .await;

    // A second replica waits: the first holds the Lease, the second never reconciles.
    let second = Controller::start(&plane, "second");
    let leases = Api::<Lease>::namespaced(client.clone(), "default");
    let lease = get(&leases, "bindery-controller").await.unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity.as_deref(),
        Some("first")
    );
    wait_for("the replicas' metrics", LONG, || async {
        (restarted.is_leader() && !second.metrics().is_empty()).then_some(())
    })
    .await;
    // Work for the leader: delete the instance; the standby must not see any of it.
    instances
        .delete("db", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("the instance deprovisioned", LONG, || async {
        get(&instances, "db").await.is_none().then_some(())
    })
    .await;
    let standby = second.metrics();
    assert!(!second.is_leader(), "the second replica does not lead");
    assert!(
        !standby.contains("bindery_controller_reconciliations_total{")
            && !standby.contains("bindery_controller_osb_requests_total{"),
        "the standby acted:\n{standby}"
    );

    // The leader dies: the standby takes over and acts.
    drop(restarted);
    wait_for("the standby leading", LONG, || async {
        second.is_leader().then_some(())
    })
    .await;
    plane.apply(
        "apiVersion: servicecatalog.k8s.io/v1beta1\nkind: ServiceInstance\nmetadata: {name: db2, namespace: app}\n\
         spec: {clusterServiceClassExternalName: postgresql, clusterServicePlanExternalName: small}\n",
    );
    wait_for("db2 Ready through the new leader", LONG, || async {
        get(&instances, "db2").await.filter(ready).map(|_| ())
    })
    .await;
    let lease = get(&leases, "bindery-controller").await.unwrap();
    assert_eq!(
        lease.spec.unwrap().holder_identity.as_deref(),
        Some("second")
    );
    instances
        .delete("db2", &DeleteParams::default())
        .await
        .unwrap();
    wait_for("db2 deprovisioned", LONG, || async {
        get(&instances, "db2").await.is_none().then_some(())
    })
    .await;
}
