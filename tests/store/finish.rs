//! Finishing an operation: the effect of every kind, succeeded and failed, applied with
//! the outcome, and only by the lease holder.

use bindery::osb::OperationState;
use bindery::store::{BindingState, InstanceState, OperationKind, Outcome};
use serde_json::json;

use crate::support::*;

store_tests!(
    provision_succeeded_or_failed,
    update_succeeded_applies_plan_parameters_and_maintenance_version,
    update_failed_changes_nothing_but_frees_the_instance,
    deprovision_succeeded_tombstones_the_instance_and_its_bindings,
    deprovision_failed_keeps_the_instance,
    bind_succeeded_stores_sealed_credentials,
    bind_failed_marks_the_binding_failed,
    unbind_succeeded_tombstones_the_binding,
    unbind_failed_keeps_the_binding,
    a_finish_by_another_owner_changes_nothing,
    backend_facts_are_kept_from_provision_and_update_and_cleared_by_a_new_provision,
);

async fn provision_succeeded_or_failed(t: TestStore) {
    let store = &t.store;
    let ok = provisioning(store, "i-1").await;
    assert!(finish(store, ok, succeeded()).await);
    let found = store.find_instance("i-1").await.unwrap().unwrap();
    assert_eq!(found.state, InstanceState::Ready);
    assert_eq!(found.active_operation_id, None);
    let row = operation_row(store, ok).await;
    assert_eq!(row.record.state, OperationState::Succeeded);
    assert_eq!(row.record.description, None);
    assert!(row.finished_at.is_some());
    assert_eq!(row.lease_owner, None);
    assert_eq!(row.lease_expires_at, None);

    let bad = provisioning(store, "i-2").await;
    assert!(finish(store, bad, failed("The server refused: quota exceeded")).await);
    let found = store.find_instance("i-2").await.unwrap().unwrap();
    assert_eq!(found.state, InstanceState::Failed);
    assert_eq!(found.active_operation_id, None);
    let latest = store
        .latest_instance_operation("i-2")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.operation_id, bad);
    assert_eq!(latest.state, OperationState::Failed);
    assert_eq!(
        latest.description.as_deref(),
        Some("The server refused: quota exceeded")
    );
    // Finishing twice records nothing more.
    assert!(!finish(store, bad, succeeded()).await);
    assert_eq!(
        store.find_instance("i-2").await.unwrap().unwrap().state,
        InstanceState::Failed
    );
}

async fn update_succeeded_applies_plan_parameters_and_maintenance_version(t: TestStore) {
    let store = &t.store;
    ready(store, "i-1").await;
    let update = begin_on_instance(
        store,
        "i-1",
        &[InstanceState::Ready],
        OperationKind::Update,
        json!({"plan_id": "large", "parameters": {"size": 3, "tier": "gold"}, "maintenance_version": "2.0"}),
        None,
    )
    .await
    .unwrap();
    assert!(finish(store, update, succeeded()).await);
    let found = store.find_instance("i-1").await.unwrap().unwrap();
    assert_eq!(found.plan_id, "large");
    assert_eq!(found.parameters, json!({"size": 3, "tier": "gold"}));
    assert_eq!(found.maintenance_version.as_deref(), Some("2.0"));
    assert_eq!(found.state, InstanceState::Ready);
    assert_eq!(found.active_operation_id, None);

    // A null maintenance version is applied (the target plan has none); missing fields
    // leave the instance as it is.
    let update = begin_on_instance(
        store,
        "i-1",
        &[InstanceState::Ready],
        OperationKind::Update,
        json!({"maintenance_version": null}),
        None,
    )
    .await
    .unwrap();
    assert!(finish(store, update, succeeded()).await);
    let found = store.find_instance("i-1").await.unwrap().unwrap();
    assert_eq!(found.plan_id, "large");
    assert_eq!(found.parameters, json!({"size": 3, "tier": "gold"}));
    assert_eq!(found.maintenance_version, None);

    let update = begin_on_instance(
        store,
        "i-1",
        &[InstanceState::Ready],
        OperationKind::Update,
        json!({"plan_id": "small"}),
        None,
    )
    .await
    .unwrap();
    let before = instance_row(store, "i-1").await.updated_at;
    assert!(finish(store, update, succeeded()).await);
    let row = instance_row(store, "i-1").await;
    assert_eq!(row.record.plan_id, "small");
    assert_eq!(row.record.parameters, json!({"size": 3, "tier": "gold"}));
    assert_eq!(row.record.maintenance_version, None);
    assert!(row.updated_at >= before);
}

async fn update_failed_changes_nothing_but_frees_the_instance(t: TestStore) {
    let store = &t.store;
    ready(store, "i-1").await;
    let update = begin_on_instance(
        store,
        "i-1",
        &[InstanceState::Ready],
        OperationKind::Update,
        json!({"plan_id": "large", "parameters": {"size": 3}, "maintenance_version": "2.0"}),
        None,
    )
    .await
    .unwrap();
    assert!(finish(store, update, failed("Plan change refused")).await);
    let found = store.find_instance("i-1").await.unwrap().unwrap();
    assert_eq!(found.plan_id, "small");
    assert_eq!(found.parameters, json!({"size": 1}));
    assert_eq!(found.maintenance_version.as_deref(), Some("1.0"));
    assert_eq!(found.state, InstanceState::Ready);
    assert_eq!(found.active_operation_id, None);
    let op = operation(store, update).await;
    assert_eq!(op.state, OperationState::Failed);
    assert_eq!(op.description.as_deref(), Some("Plan change refused"));
}

async fn deprovision_succeeded_tombstones_the_instance_and_its_bindings(t: TestStore) {
    let store = &t.store;
    ready(store, "i-1").await;
    bound(store, "i-1", "b-ready", Some(sealed("k1", b"secret-1"))).await;
    let failing = binding_creating(store, "i-1", "b-failed").await;
    assert!(finish(store, failing, failed("no")).await);
    ready(store, "i-other").await;
    bound(store, "i-other", "b-other", Some(sealed("k1", b"secret-2"))).await;

    deprovisioned(store, "i-1").await;
    let row = instance_row(store, "i-1").await;
    assert_eq!(row.record.state, InstanceState::Deleted);
    assert!(row.deleted_at.is_some());
    assert_eq!(row.record.active_operation_id, None);
    for id in ["b-ready", "b-failed"] {
        let binding = binding_row(store, id).await;
        assert_eq!(binding.record.state, BindingState::Deleted, "{id}");
        assert_eq!(binding.record.credentials, None, "{id}");
        assert_eq!(binding.record.active_operation_id, None, "{id}");
        assert!(binding.deleted_at.is_some(), "{id}");
    }
    let other = store.find_binding("b-other").await.unwrap().unwrap();
    assert_eq!(other.state, BindingState::Ready);
    assert_eq!(other.credentials, Some(sealed("k1", b"secret-2")));
    assert_eq!(
        store.find_instance("i-other").await.unwrap().unwrap().state,
        InstanceState::Ready
    );
}

async fn deprovision_failed_keeps_the_instance(t: TestStore) {
    let store = &t.store;
    ready(store, "i-1").await;
    bound(store, "i-1", "b-1", Some(sealed("k1", b"secret"))).await;
    let deprovision = begin_on_instance(
        store,
        "i-1",
        &[InstanceState::Ready],
        OperationKind::Deprovision,
        json!({}),
        None,
    )
    .await
    .unwrap();
    assert!(finish(store, deprovision, failed("Database in use")).await);
    let row = instance_row(store, "i-1").await;
    assert_eq!(row.record.state, InstanceState::Ready);
    assert_eq!(row.deleted_at, None);
    assert_eq!(row.record.active_operation_id, None);
    let binding = store.find_binding("b-1").await.unwrap().unwrap();
    assert_eq!(binding.state, BindingState::Ready);
    assert_eq!(binding.credentials, Some(sealed("k1", b"secret")));
}

async fn bind_succeeded_stores_sealed_credentials(t: TestStore) {
    let store = &t.store;
    ready(store, "i-1").await;
    let bind = binding_creating(store, "i-1", "b-1").await;
    let credentials = sealed("primary", &[0, 1, 2, 255, 254, 0, 7]);
    assert!(
        finish(
            store,
            bind,
            Outcome::Succeeded {
                credentials: Some(credentials.clone()),
                facts: None,
            }
        )
        .await
    );
    let found = store.find_binding("b-1").await.unwrap().unwrap();
    assert_eq!(found.state, BindingState::Ready);
    assert_eq!(found.credentials, Some(credentials));
    assert_eq!(found.active_operation_id, None);
    assert_eq!(
        operation(store, bind).await.state,
        OperationState::Succeeded
    );
}

async fn bind_failed_marks_the_binding_failed(t: TestStore) {
    let store = &t.store;
    ready(store, "i-1").await;
    let bind = binding_creating(store, "i-1", "b-1").await;
    assert!(finish(store, bind, failed("User limit reached")).await);
    let found = store.find_binding("b-1").await.unwrap().unwrap();
    assert_eq!(found.state, BindingState::Failed);
    assert_eq!(found.credentials, None);
    assert_eq!(found.active_operation_id, None);
    let op = store
        .latest_binding_operation("b-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(op.state, OperationState::Failed);
    assert_eq!(op.description.as_deref(), Some("User limit reached"));
}

async fn unbind_succeeded_tombstones_the_binding(t: TestStore) {
    let store = &t.store;
    ready(store, "i-1").await;
    bound(store, "i-1", "b-1", Some(sealed("k1", b"secret"))).await;
    let unbind = begin_on_binding(
        store,
        "i-1",
        "b-1",
        &[BindingState::Ready],
        OperationKind::Unbind,
    )
    .await
    .unwrap();
    assert!(finish(store, unbind, succeeded()).await);
    let row = binding_row(store, "b-1").await;
    assert_eq!(row.record.state, BindingState::Deleted);
    assert_eq!(row.record.credentials, None);
    assert_eq!(row.record.active_operation_id, None);
    assert!(row.deleted_at.is_some());
    assert_eq!(
        store.find_instance("i-1").await.unwrap().unwrap().state,
        InstanceState::Ready
    );
}

async fn unbind_failed_keeps_the_binding(t: TestStore) {
    let store = &t.store;
    ready(store, "i-1").await;
    bound(store, "i-1", "b-1", Some(sealed("k1", b"secret"))).await;
    let unbind = begin_on_binding(
        store,
        "i-1",
        "b-1",
        &[BindingState::Ready],
        OperationKind::Unbind,
    )
    .await
    .unwrap();
    assert!(finish(store, unbind, failed("User has open sessions")).await);
    let row = binding_row(store, "b-1").await;
    assert_eq!(row.record.state, BindingState::Ready);
    assert_eq!(row.record.credentials, Some(sealed("k1", b"secret")));
    assert_eq!(row.record.active_operation_id, None);
    assert_eq!(row.deleted_at, None);
}

async fn a_finish_by_another_owner_changes_nothing(t: TestStore) {
    let store = &t.store;
    let provision = provisioning(store, "i-1").await;
    let op = operation(store, provision).await;
    assert!(
        !store
            .finish_operation(&op, uuid::Uuid::new_v4(), &succeeded())
            .await
            .unwrap()
    );
    let row = operation_row(store, provision).await;
    assert_eq!(row.record.state, OperationState::InProgress);
    assert_eq!(row.finished_at, None);
    assert_eq!(row.lease_owner.as_deref(), Some(OWNER));
    let found = store.find_instance("i-1").await.unwrap().unwrap();
    assert_eq!(found.state, InstanceState::Provisioning);
    assert_eq!(found.active_operation_id, Some(provision));

    // A bind finished by a non-owner stores no credentials.
    assert!(finish(store, provision, succeeded()).await);
    let bind = binding_creating(store, "i-1", "b-1").await;
    let op = operation(store, bind).await;
    let outcome = Outcome::Succeeded {
        credentials: Some(sealed("k1", b"stolen")),
        facts: None,
    };
    assert!(
        !store
            .finish_operation(&op, uuid::Uuid::new_v4(), &outcome)
            .await
            .unwrap()
    );
    let found = store.find_binding("b-1").await.unwrap().unwrap();
    assert_eq!(found.state, BindingState::Creating);
    assert_eq!(found.credentials, None);
}

async fn backend_facts_are_kept_from_provision_and_update_and_cleared_by_a_new_provision(
    t: TestStore,
) {
    let store = &t.store;
    let with_facts = |facts| Outcome::Succeeded {
        credentials: None,
        facts: Some(facts),
    };
    let op = provisioning(store, "i-1").await;
    assert!(finish(store, op, with_facts(json!({"cluster": "c-7"}))).await);
    let found = store.find_instance("i-1").await.unwrap().unwrap();
    assert_eq!(found.backend_facts, Some(json!({"cluster": "c-7"})));

    // An update without facts keeps them; one with facts replaces them.
    let update = |request| {
        begin_on_instance(
            store,
            "i-1",
            &[InstanceState::Ready],
            OperationKind::Update,
            request,
            None,
        )
    };
    let op = update(json!({"plan_id": "large"})).await.unwrap();
    assert!(finish(store, op, succeeded()).await);
    let found = store.find_instance("i-1").await.unwrap().unwrap();
    assert_eq!(found.backend_facts, Some(json!({"cluster": "c-7"})));
    let op = update(json!({"plan_id": "small"})).await.unwrap();
    assert!(finish(store, op, with_facts(json!({"cluster": "c-8"}))).await);
    let found = store.find_instance("i-1").await.unwrap().unwrap();
    assert_eq!(found.backend_facts, Some(json!({"cluster": "c-8"})));
    // A failed update changes nothing, facts included.
    let op = update(json!({"plan_id": "large"})).await.unwrap();
    assert!(finish(store, op, failed("no")).await);
    assert_eq!(
        store
            .find_instance("i-1")
            .await
            .unwrap()
            .unwrap()
            .backend_facts,
        Some(json!({"cluster": "c-8"}))
    );

    // An instance deprovisioned and provisioned again under its id starts without facts.
    deprovisioned(store, "i-1").await;
    let op = provisioning(store, "i-1").await;
    assert_eq!(
        store
            .find_instance("i-1")
            .await
            .unwrap()
            .unwrap()
            .backend_facts,
        None
    );
    assert!(finish(store, op, succeeded()).await);
    assert_eq!(
        store
            .find_instance("i-1")
            .await
            .unwrap()
            .unwrap()
            .backend_facts,
        None
    );
}
