//! Instances: idempotent insert, conflicts, tombstones, and starting operations.

use bindery::store::{BindingState, InstanceState, NewInstance, OperationKind};
use serde_json::json;

use crate::support::*;

store_tests!(
    insert_instance_stores_the_request_and_its_operation,
    a_repeated_or_conflicting_insert_changes_nothing,
    a_tombstone_is_revived_by_a_new_provision,
    begin_instance_operation_needs_an_idle_instance_in_an_allowed_state,
    a_deprovision_waits_for_binding_operations_in_flight,
    concurrent_writes_all_succeed,
    a_poll_reads_the_state_and_the_newest_instance_operation_at_once,
);

async fn insert_instance_stores_the_request_and_its_operation(t: TestStore) {
    let store = &t.store;
    let parameters = json!({"size": 1, "nested": {"a": [1, 2]}});
    let context = json!({"platform": "cloudfoundry", "space_name": "dev"});
    let new = NewInstance {
        context: Some(&context),
        ..instance("i-1", &parameters)
    };
    let op = inline("i-1", None, OperationKind::Provision);
    let before = now_micros();
    assert!(store.insert_instance(&new, &op).await.unwrap());

    let found = store.find_instance("i-1").await.unwrap().unwrap();
    assert_eq!(found.instance_id, "i-1");
    assert_eq!(found.service_id, "svc-1");
    assert_eq!(found.plan_id, "small");
    assert_eq!(found.parameters, parameters);
    assert_eq!(found.organization_guid.as_deref(), Some("org-1"));
    assert_eq!(found.space_guid.as_deref(), Some("space-1"));
    assert_eq!(
        found.dashboard_url.as_deref(),
        Some("https://dash.example/1")
    );
    assert_eq!(found.maintenance_version.as_deref(), Some("1.0"));
    assert_eq!(found.state, InstanceState::Provisioning);
    assert_eq!(found.active_operation_id, Some(op.operation_id));
    let row = instance_row(store, "i-1").await;
    assert_eq!(row.record.context, Some(context));
    assert_eq!(row.deleted_at, None);
    assert!(near(
        row.created_at,
        before,
        std::time::Duration::from_secs(5)
    ));

    // An inline operation is leased to its requester and counted as one attempt.
    let stored = operation(store, op.operation_id).await;
    assert_eq!(stored.kind, OperationKind::Provision);
    assert_eq!(stored.instance_id, "i-1");
    assert_eq!(stored.binding_id, None);
    assert_eq!(stored.state, bindery::osb::OperationState::InProgress);
    assert_eq!(stored.attempts, 1);
    assert!(near(
        stored.deadline_at,
        before + chrono::Duration::hours(1),
        std::time::Duration::from_secs(5)
    ));
    let row = operation_row(store, op.operation_id).await;
    assert_eq!(row.lease_owner.as_deref(), Some(OWNER));
    assert!(near(
        row.lease_expires_at.unwrap(),
        before + chrono::Duration::seconds(30),
        std::time::Duration::from_secs(5)
    ));
    assert_eq!(
        store
            .latest_instance_operation("i-1")
            .await
            .unwrap()
            .map(|o| o.operation_id),
        Some(op.operation_id)
    );
    assert!(store.find_instance("i-2").await.unwrap().is_none());

    // A queued operation has no lease and no attempt yet.
    let parameters = json!({});
    let queued_op = queued("i-2", None, OperationKind::Provision);
    assert!(
        store
            .insert_instance(&instance("i-2", &parameters), &queued_op)
            .await
            .unwrap()
    );
    let row = operation_row(store, queued_op.operation_id).await;
    assert_eq!(row.record.attempts, 0);
    assert_eq!(row.lease_owner, None);
    assert_eq!(row.lease_expires_at, None);
}

async fn a_repeated_or_conflicting_insert_changes_nothing(t: TestStore) {
    let store = &t.store;
    let first = provisioning(store, "i-1").await;
    let parameters = json!({"size": 1});

    let again = inline("i-1", None, OperationKind::Provision);
    assert!(
        !store
            .insert_instance(&instance("i-1", &parameters), &again)
            .await
            .unwrap()
    );
    assert!(
        store
            .find_operation(again.operation_id)
            .await
            .unwrap()
            .is_none()
    );

    let other_parameters = json!({"size": 9});
    let conflicting = NewInstance {
        plan_id: "large",
        ..instance("i-1", &other_parameters)
    };
    let op = inline("i-1", None, OperationKind::Provision);
    assert!(!store.insert_instance(&conflicting, &op).await.unwrap());
    assert!(
        store
            .find_operation(op.operation_id)
            .await
            .unwrap()
            .is_none()
    );

    let found = store.find_instance("i-1").await.unwrap().unwrap();
    assert_eq!(found.plan_id, "small");
    assert_eq!(found.parameters, parameters);
    assert_eq!(found.active_operation_id, Some(first));

    // A failed provision that nothing runs on is replaced by the next request (the
    // platform's corrected retry), with its attributes and a new operation.
    assert!(finish(store, first, failed("backend said no")).await);
    let op = inline("i-1", None, OperationKind::Provision);
    assert!(store.insert_instance(&conflicting, &op).await.unwrap());
    let found = store.find_instance("i-1").await.unwrap().unwrap();
    assert_eq!(found.state, InstanceState::Provisioning);
    assert_eq!(found.plan_id, "large");
    assert_eq!(found.parameters, other_parameters);
    assert_eq!(found.active_operation_id, Some(op.operation_id));

    // Still refused once the instance is ready: only tombstones and failures are replaced.
    assert!(finish(store, op.operation_id, succeeded()).await);
    let op = inline("i-1", None, OperationKind::Provision);
    assert!(
        !store
            .insert_instance(&instance("i-1", &parameters), &op)
            .await
            .unwrap()
    );
    assert_eq!(
        store.find_instance("i-1").await.unwrap().unwrap().state,
        InstanceState::Ready
    );
}

async fn a_tombstone_is_revived_by_a_new_provision(t: TestStore) {
    let store = &t.store;
    ready(store, "i-1").await;
    let first_created = instance_row(store, "i-1").await.created_at;
    let deprovision = begin_on_instance(
        store,
        "i-1",
        &[InstanceState::Ready, InstanceState::Failed],
        OperationKind::Deprovision,
        json!({}),
        None,
    )
    .await
    .expect("deprovision starts");
    assert!(finish(store, deprovision, succeeded()).await);
    let tombstone = instance_row(store, "i-1").await;
    assert_eq!(tombstone.record.state, InstanceState::Deleted);
    assert!(tombstone.deleted_at.is_some());
    assert_eq!(tombstone.record.active_operation_id, None);
    tokio::time::sleep(std::time::Duration::from_millis(5)).await;

    let parameters = json!({"size": 2});
    let revived = NewInstance {
        plan_id: "large",
        maintenance_version: None,
        dashboard_url: None,
        ..instance("i-1", &parameters)
    };
    let op = inline("i-1", None, OperationKind::Provision);
    assert!(store.insert_instance(&revived, &op).await.unwrap());
    let found = store.find_instance("i-1").await.unwrap().unwrap();
    assert_eq!(found.state, InstanceState::Provisioning);
    assert_eq!(found.plan_id, "large");
    assert_eq!(found.parameters, parameters);
    assert_eq!(found.maintenance_version, None);
    assert_eq!(found.dashboard_url, None);
    assert_eq!(found.active_operation_id, Some(op.operation_id));
    let row = instance_row(store, "i-1").await;
    assert_eq!(row.deleted_at, None);
    assert!(row.created_at > first_created);
    assert_eq!(
        store
            .latest_instance_operation("i-1")
            .await
            .unwrap()
            .map(|o| o.operation_id),
        Some(op.operation_id)
    );
    // The deprovision's record is kept.
    assert_eq!(
        operation(store, deprovision).await.state,
        bindery::osb::OperationState::Succeeded
    );
}

async fn begin_instance_operation_needs_an_idle_instance_in_an_allowed_state(t: TestStore) {
    let store = &t.store;
    let any = [
        InstanceState::Provisioning,
        InstanceState::Ready,
        InstanceState::Failed,
    ];
    assert_eq!(
        begin_on_instance(
            store,
            "missing",
            &any,
            OperationKind::Update,
            json!({}),
            None
        )
        .await,
        None
    );

    let provision = provisioning(store, "i-1").await;
    assert_eq!(
        begin_on_instance(store, "i-1", &any, OperationKind::Update, json!({}), None).await,
        None,
        "an instance with an active operation is refused"
    );
    assert!(finish(store, provision, succeeded()).await);

    assert_eq!(
        begin_on_instance(
            store,
            "i-1",
            &[InstanceState::Failed],
            OperationKind::Update,
            json!({}),
            None
        )
        .await,
        None,
        "a state not allowed is refused"
    );
    assert_eq!(
        store
            .latest_instance_operation("i-1")
            .await
            .unwrap()
            .unwrap()
            .operation_id,
        provision,
        "a refused operation is not stored"
    );

    let update = begin_on_instance(
        store,
        "i-1",
        &[InstanceState::Ready],
        OperationKind::Update,
        json!({"plan_id": "large"}),
        None,
    )
    .await
    .expect("an idle ready instance takes an update");
    let found = store.find_instance("i-1").await.unwrap().unwrap();
    assert_eq!(found.state, InstanceState::Ready, "no new state: unchanged");
    assert_eq!(found.active_operation_id, Some(update));
    let stored = operation(store, update).await;
    assert_eq!(stored.kind, OperationKind::Update);
    assert_eq!(stored.request, json!({"plan_id": "large"}));
    assert_eq!(
        store
            .active_instance_operation(&found)
            .await
            .unwrap()
            .map(|o| o.operation_id),
        Some(update)
    );

    assert_eq!(
        begin_on_instance(
            store,
            "i-1",
            &[InstanceState::Ready],
            OperationKind::Deprovision,
            json!({}),
            None
        )
        .await,
        None,
        "an update in flight blocks a deprovision"
    );
    assert!(finish(store, update, failed("no")).await);

    // A new state is applied with the claim (a failed instance provisioned again).
    let failing = provisioning(store, "i-2").await;
    assert!(finish(store, failing, failed("no")).await);
    let retry = begin_on_instance(
        store,
        "i-2",
        &[InstanceState::Failed],
        OperationKind::Provision,
        json!({}),
        Some(InstanceState::Provisioning),
    )
    .await
    .expect("a failed instance takes a new provision");
    let found = store.find_instance("i-2").await.unwrap().unwrap();
    assert_eq!(found.state, InstanceState::Provisioning);
    assert_eq!(found.active_operation_id, Some(retry));

    // A tombstone takes nothing.
    deprovisioned(store, "i-1").await;
    assert_eq!(
        begin_on_instance(
            store,
            "i-1",
            &[InstanceState::Deleted, InstanceState::Ready],
            OperationKind::Deprovision,
            json!({}),
            None
        )
        .await,
        None
    );
}

async fn a_deprovision_waits_for_binding_operations_in_flight(t: TestStore) {
    let store = &t.store;
    let deprovision_allowed = [InstanceState::Ready, InstanceState::Failed];
    ready(store, "i-1").await;
    let bind = binding_creating(store, "i-1", "b-1").await;
    assert_eq!(
        begin_on_instance(
            store,
            "i-1",
            &deprovision_allowed,
            OperationKind::Deprovision,
            json!({}),
            None
        )
        .await,
        None,
        "a bind in flight blocks the deprovision"
    );
    assert_eq!(
        store
            .find_instance("i-1")
            .await
            .unwrap()
            .unwrap()
            .active_operation_id,
        None
    );
    assert!(finish(store, bind, succeeded()).await);

    // An unbind in flight blocks it too.
    let unbind = begin_on_binding(
        store,
        "i-1",
        "b-1",
        &[BindingState::Ready],
        OperationKind::Unbind,
    )
    .await
    .expect("unbind starts");
    assert_eq!(
        begin_on_instance(
            store,
            "i-1",
            &deprovision_allowed,
            OperationKind::Deprovision,
            json!({}),
            None
        )
        .await,
        None,
        "an unbind in flight blocks the deprovision"
    );
    assert!(finish(store, unbind, succeeded()).await);

    let deprovision = begin_on_instance(
        store,
        "i-1",
        &deprovision_allowed,
        OperationKind::Deprovision,
        json!({}),
        None,
    )
    .await
    .expect("with no binding operation in flight, the deprovision starts");
    assert_eq!(
        store
            .find_instance("i-1")
            .await
            .unwrap()
            .unwrap()
            .active_operation_id,
        Some(deprovision)
    );
}

/// Many writers at once: none fails (on SQLite, no `SQLITE_BUSY` reaches a caller).
async fn concurrent_writes_all_succeed(t: TestStore) {
    let mut tasks = Vec::new();
    for n in 0..24 {
        let store = t.store.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("i-{n}");
            let op = provisioning(&store, &id).await;
            assert!(finish(&store, op, succeeded()).await);
            let update = begin_on_instance(
                &store,
                &id,
                &[InstanceState::Ready],
                OperationKind::Update,
                json!({}),
                None,
            )
            .await
            .expect("update starts");
            assert!(finish(&store, update, succeeded()).await);
            store.find_instance(&id).await.unwrap().unwrap()
        }));
    }
    for task in tasks {
        let found = task.await.expect("every writer succeeds");
        assert_eq!(found.state, InstanceState::Ready);
        assert_eq!(found.active_operation_id, None);
    }
    assert_eq!(t.store.count_rows().await.unwrap().instances, 24);
    assert_eq!(t.store.count_rows().await.unwrap().operations, 48);
}

async fn a_poll_reads_the_state_and_the_newest_instance_operation_at_once(t: TestStore) {
    let store = &t.store;
    assert_eq!(store.instance_poll("i-none").await.unwrap(), None);
    let provision = provisioning(store, "i-1").await;
    let poll = store.instance_poll("i-1").await.unwrap().unwrap();
    assert_eq!(poll.state, InstanceState::Provisioning);
    assert_eq!(
        poll.latest.as_ref().map(|op| op.operation_id),
        Some(provision)
    );
    // The same record the two reads it replaces give.
    assert_eq!(
        poll.latest,
        store.latest_instance_operation("i-1").await.unwrap()
    );
    assert!(finish(store, provision, succeeded()).await);
    // A binding's operation is not the instance's.
    let bind = binding_creating(store, "i-1", "b-1").await;
    assert!(finish(store, bind, succeeded()).await);
    let poll = store.instance_poll("i-1").await.unwrap().unwrap();
    assert_eq!(poll.state, InstanceState::Ready);
    assert_eq!(poll.latest.map(|op| op.operation_id), Some(provision));
    let deprovision = deprovisioned(store, "i-1").await;
    let poll = store.instance_poll("i-1").await.unwrap().unwrap();
    assert_eq!(poll.state, InstanceState::Deleted);
    let latest = poll.latest.unwrap();
    assert_eq!(latest.operation_id, deprovision);
    assert_eq!(latest.kind, OperationKind::Deprovision);
}
