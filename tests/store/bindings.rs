//! Bindings: a ready idle instance to bind to, idempotent insert, tombstones, and
//! starting operations.

use bindery::store::{BindingInsert, BindingState, InstanceState, NewBinding, OperationKind};
use serde_json::json;

use crate::support::*;

store_tests!(
    insert_binding_needs_a_ready_idle_instance,
    insert_binding_is_idempotent_and_revives_tombstones,
    begin_binding_operation_needs_an_idle_binding_in_an_allowed_state,
);

async fn try_bind(t: &TestStore, instance_id: &str, binding_id: &str) -> BindingInsert {
    let parameters = json!({});
    let op = inline(instance_id, Some(binding_id), OperationKind::Bind);
    let result = t
        .store
        .insert_binding(&binding(binding_id, instance_id, &parameters), &op)
        .await
        .unwrap();
    let stored = t.store.find_operation(op.operation_id).await.unwrap();
    assert_eq!(
        stored.is_some(),
        result == BindingInsert::Inserted,
        "the operation is stored exactly when the binding is"
    );
    result
}

async fn insert_binding_needs_a_ready_idle_instance(t: TestStore) {
    let store = &t.store;
    assert_eq!(
        try_bind(&t, "missing", "b-1").await,
        BindingInsert::InstanceUnavailable
    );
    assert!(store.find_binding("b-1").await.unwrap().is_none());

    let provision = provisioning(store, "i-1").await;
    assert_eq!(
        try_bind(&t, "i-1", "b-1").await,
        BindingInsert::InstanceUnavailable,
        "still provisioning"
    );
    assert!(finish(store, provision, succeeded()).await);

    let update = begin_on_instance(
        store,
        "i-1",
        &[InstanceState::Ready],
        OperationKind::Update,
        json!({}),
        None,
    )
    .await
    .unwrap();
    assert_eq!(
        try_bind(&t, "i-1", "b-1").await,
        BindingInsert::InstanceUnavailable,
        "an update is in flight"
    );
    assert!(finish(store, update, succeeded()).await);
    assert_eq!(try_bind(&t, "i-1", "b-1").await, BindingInsert::Inserted);

    let failing = provisioning(store, "i-2").await;
    assert!(finish(store, failing, failed("no")).await);
    assert_eq!(
        try_bind(&t, "i-2", "b-2").await,
        BindingInsert::InstanceUnavailable,
        "a failed instance"
    );

    ready(store, "i-3").await;
    deprovisioned(store, "i-3").await;
    assert_eq!(
        try_bind(&t, "i-3", "b-3").await,
        BindingInsert::InstanceUnavailable,
        "a deleted instance"
    );
}

async fn insert_binding_is_idempotent_and_revives_tombstones(t: TestStore) {
    let store = &t.store;
    ready(store, "i-1").await;
    let parameters = json!({"role": "reader"});
    let bind_resource = json!({"app_guid": "app-1", "route": "r.example"});
    let context = json!({"platform": "kubernetes", "namespace": "ns"});
    let expires_at = now_micros() + chrono::Duration::hours(2);
    let new = NewBinding {
        route: Some("r.example"),
        bind_resource: Some(&bind_resource),
        context: Some(&context),
        expires_at: Some(expires_at),
        predecessor_binding_id: Some("b-0"),
        ..binding("b-1", "i-1", &parameters)
    };
    let op = inline("i-1", Some("b-1"), OperationKind::Bind);
    assert_eq!(
        store.insert_binding(&new, &op).await.unwrap(),
        BindingInsert::Inserted
    );
    let found = store.find_binding("b-1").await.unwrap().unwrap();
    assert_eq!(found.instance_id, "i-1");
    assert_eq!(found.service_id, "svc-1");
    assert_eq!(found.plan_id, "small");
    assert_eq!(found.parameters, parameters);
    assert_eq!(found.app_guid.as_deref(), Some("app-1"));
    assert_eq!(found.route.as_deref(), Some("r.example"));
    assert_eq!(found.credentials, None);
    assert_eq!(found.state, BindingState::Creating);
    assert_eq!(found.active_operation_id, Some(op.operation_id));
    assert_eq!(found.expires_at, Some(expires_at));
    let row = binding_row(store, "b-1").await;
    assert_eq!(row.bind_resource.as_ref(), Some(&bind_resource));
    assert_eq!(row.context.as_ref(), Some(&context));
    assert_eq!(row.predecessor_binding_id.as_deref(), Some("b-0"));
    let stored = operation(store, op.operation_id).await;
    assert_eq!(stored.kind, OperationKind::Bind);
    assert_eq!(stored.binding_id.as_deref(), Some("b-1"));
    assert_eq!(
        store
            .latest_binding_operation("b-1")
            .await
            .unwrap()
            .map(|o| o.operation_id),
        Some(op.operation_id)
    );

    // The same request again, or a different one: nothing changes.
    let again = inline("i-1", Some("b-1"), OperationKind::Bind);
    assert_eq!(
        store.insert_binding(&new, &again).await.unwrap(),
        BindingInsert::Exists
    );
    let other_parameters = json!({"role": "writer"});
    let different = inline("i-1", Some("b-1"), OperationKind::Bind);
    assert_eq!(
        store
            .insert_binding(&binding("b-1", "i-1", &other_parameters), &different)
            .await
            .unwrap(),
        BindingInsert::Exists
    );
    assert!(
        store
            .find_operation(again.operation_id)
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .find_operation(different.operation_id)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        store.find_binding("b-1").await.unwrap().unwrap().parameters,
        parameters
    );

    // Bound, unbound: a tombstone without credentials.
    let credentials = sealed("k1", b"nonce-and-ciphertext");
    assert!(
        finish(
            store,
            op.operation_id,
            bindery::store::Outcome::Succeeded {
                credentials: Some(credentials.clone()),
                facts: None,
            }
        )
        .await
    );
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
    let tombstone = binding_row(store, "b-1").await;
    assert_eq!(tombstone.record.state, BindingState::Deleted);
    assert_eq!(tombstone.record.credentials, None);
    assert!(tombstone.deleted_at.is_some());
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;

    // The id is reused: the tombstone becomes the new binding.
    let revive = inline("i-1", Some("b-1"), OperationKind::Bind);
    assert_eq!(
        store
            .insert_binding(&binding("b-1", "i-1", &other_parameters), &revive)
            .await
            .unwrap(),
        BindingInsert::Inserted
    );
    let revived = binding_row(store, "b-1").await;
    assert_eq!(revived.record.state, BindingState::Creating);
    assert_eq!(revived.record.parameters, other_parameters);
    assert_eq!(revived.record.route, None);
    assert_eq!(revived.bind_resource, None);
    assert_eq!(revived.context, None);
    assert_eq!(revived.record.expires_at, None);
    assert_eq!(revived.predecessor_binding_id, None);
    assert_eq!(revived.record.credentials, None);
    assert_eq!(revived.deleted_at, None);
    assert_eq!(
        revived.record.active_operation_id,
        Some(revive.operation_id)
    );
    assert!(revived.created_at > row.created_at);
}

async fn begin_binding_operation_needs_an_idle_binding_in_an_allowed_state(t: TestStore) {
    let store = &t.store;
    let any = [
        BindingState::Creating,
        BindingState::Ready,
        BindingState::Failed,
    ];
    ready(store, "i-1").await;
    assert_eq!(
        begin_on_binding(store, "i-1", "missing", &any, OperationKind::Unbind).await,
        None
    );
    let bind = binding_creating(store, "i-1", "b-1").await;
    assert_eq!(
        begin_on_binding(store, "i-1", "b-1", &any, OperationKind::Unbind).await,
        None,
        "a bind in flight"
    );
    assert!(finish(store, bind, succeeded()).await);
    assert_eq!(
        begin_on_binding(
            store,
            "i-1",
            "b-1",
            &[BindingState::Failed],
            OperationKind::Unbind
        )
        .await,
        None,
        "a state not allowed"
    );
    assert_eq!(
        store
            .latest_binding_operation("b-1")
            .await
            .unwrap()
            .unwrap()
            .operation_id,
        bind,
        "a refused operation is not stored"
    );

    let op = inline("i-1", Some("b-1"), OperationKind::Unbind);
    assert!(
        store
            .begin_binding_operation(
                "b-1",
                &[BindingState::Ready],
                &op,
                Some(BindingState::Failed)
            )
            .await
            .unwrap()
    );
    let found = store.find_binding("b-1").await.unwrap().unwrap();
    assert_eq!(
        found.state,
        BindingState::Failed,
        "the new state is applied"
    );
    assert_eq!(found.active_operation_id, Some(op.operation_id));
    assert_eq!(
        begin_on_binding(store, "i-1", "b-1", &any, OperationKind::Unbind).await,
        None,
        "an unbind in flight"
    );
    assert!(finish(store, op.operation_id, succeeded()).await);
    assert_eq!(
        begin_on_binding(
            store,
            "i-1",
            "b-1",
            &[BindingState::Deleted, BindingState::Failed],
            OperationKind::Unbind
        )
        .await,
        None,
        "a tombstone"
    );
}
