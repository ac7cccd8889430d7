//! Binding expiry: the sweep enqueues one revocation per expired, ready, idle binding,
//! a revocation records `revoked_at` without touching the binding's life cycle, and a
//! delete of the binding (or its instance) closes a revocation still pending.

use std::time::Duration;

use bindery::store::{
    BindingInsert, BindingState, InstanceState, NewBinding, OperationKind, OperationRecord,
    Outcome, Store,
};
use serde_json::json;

use crate::support::*;

store_tests!(
    the_sweep_enqueues_one_revocation_per_expired_ready_idle_binding,
    a_revocation_marks_the_binding_revoked_and_leaves_it_bound,
    a_failed_revocation_is_enqueued_again_only_after_a_minute,
    a_delete_closes_the_pending_revocation_and_a_revival_starts_afresh,
);

const DEADLINE: Duration = Duration::from_secs(3600);

/// A ready binding of `instance_id` whose `expires_at` is `offset` from now.
async fn bound_until(store: &Store, instance_id: &str, binding_id: &str, offset: chrono::Duration) {
    let parameters = json!({});
    let op = inline(instance_id, Some(binding_id), OperationKind::Bind);
    let new = NewBinding {
        expires_at: Some(now_micros() + offset),
        ..binding(binding_id, instance_id, &parameters)
    };
    assert_eq!(
        store.insert_binding(&new, &op).await.unwrap(),
        BindingInsert::Inserted
    );
    let credentials = Some(sealed("primary", b"sealed"));
    assert!(
        finish(
            store,
            op.operation_id,
            Outcome::Succeeded {
                credentials,
                facts: None
            }
        )
        .await
    );
}

fn past() -> chrono::Duration {
    chrono::Duration::seconds(-1)
}

/// Claims every runnable revocation (as a worker of another process would).
async fn claim_revocations(store: &Store) -> Vec<OperationRecord> {
    store
        .claim_operations("sweeper", Duration::from_secs(30), 100)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.operation)
        .filter(|op| op.kind == OperationKind::Revoke)
        .collect()
}

async fn the_sweep_enqueues_one_revocation_per_expired_ready_idle_binding(t: TestStore) {
    let store = &t.store;
    ready(store, "i-1").await;
    bound_until(store, "i-1", "b-expired", past()).await;
    bound_until(store, "i-1", "b-later", chrono::Duration::hours(1)).await;
    bound(store, "i-1", "b-forever", None).await;
    bound_until(store, "i-1", "b-unbinding", past()).await;
    begin_on_binding(
        store,
        "i-1",
        "b-unbinding",
        &[BindingState::Ready],
        OperationKind::Unbind,
    )
    .await
    .unwrap();
    // Expired while its bind still runs: swept once the bind has finished.
    let parameters = json!({});
    let creating = inline("i-1", Some("b-creating"), OperationKind::Bind);
    let new = NewBinding {
        expires_at: Some(now_micros() + past()),
        ..binding("b-creating", "i-1", &parameters)
    };
    store.insert_binding(&new, &creating).await.unwrap();

    assert_eq!(store.enqueue_revocations(100, DEADLINE).await.unwrap(), 1);
    assert_eq!(
        store.enqueue_revocations(100, DEADLINE).await.unwrap(),
        0,
        "one revocation per binding, however often (or by however many replicas) it sweeps"
    );
    let revocations = claim_revocations(store).await;
    assert_eq!(revocations.len(), 1);
    assert_eq!(revocations[0].binding_id.as_deref(), Some("b-expired"));
    assert_eq!(revocations[0].instance_id, "i-1");

    let binding = store.find_binding("b-expired").await.unwrap().unwrap();
    assert_eq!(
        binding.active_operation_id, None,
        "a revocation never owns the binding"
    );
    let latest = store
        .latest_binding_operation("b-expired")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        latest.kind,
        OperationKind::Bind,
        "last_operation never sees a revocation"
    );

    assert!(finish(store, creating.operation_id, succeeded()).await);
    assert_eq!(store.enqueue_revocations(100, DEADLINE).await.unwrap(), 1);
    let revocations = claim_revocations(store).await;
    assert_eq!(revocations[0].binding_id.as_deref(), Some("b-creating"));

    // The batch bound holds.
    for i in 0..3 {
        bound_until(store, "i-1", &format!("b-batch-{i}"), past()).await;
    }
    assert_eq!(store.enqueue_revocations(2, DEADLINE).await.unwrap(), 2);
    assert_eq!(store.enqueue_revocations(2, DEADLINE).await.unwrap(), 1);
}

async fn a_revocation_marks_the_binding_revoked_and_leaves_it_bound(t: TestStore) {
    let store = &t.store;
    ready(store, "i-1").await;
    bound_until(store, "i-1", "b-1", past()).await;
    store.enqueue_revocations(100, DEADLINE).await.unwrap();
    let revoke = claim_revocations(store).await.remove(0);
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    assert!(
        store
            .finish_operation(&revoke, revoke.lease_token.unwrap(), &succeeded())
            .await
            .unwrap()
    );
    let binding = store.find_binding("b-1").await.unwrap().unwrap();
    assert!(binding.revoked_at.is_some_and(|t| t > before));
    assert_eq!(binding.state, BindingState::Ready, "still there to unbind");
    assert!(binding.credentials.is_some());
    assert_eq!(
        store.enqueue_revocations(100, DEADLINE).await.unwrap(),
        0,
        "revoked once"
    );

    // The platform's unbind still runs and removes it.
    let unbind = begin_on_binding(
        store,
        "i-1",
        "b-1",
        &[BindingState::Ready],
        OperationKind::Unbind,
    )
    .await
    .expect("a revoked binding can be unbound");
    assert!(finish(store, unbind, succeeded()).await);
    let binding = store.find_binding("b-1").await.unwrap().unwrap();
    assert_eq!(binding.state, BindingState::Deleted);
}

async fn a_failed_revocation_is_enqueued_again_only_after_a_minute(t: TestStore) {
    let store = &t.store;
    ready(store, "i-1").await;
    bound_until(store, "i-1", "b-1", past()).await;
    store.enqueue_revocations(100, DEADLINE).await.unwrap();
    let revoke = claim_revocations(store).await.remove(0);
    assert!(
        store
            .finish_operation(&revoke, revoke.lease_token.unwrap(), &failed("server away"))
            .await
            .unwrap()
    );
    let binding = store.find_binding("b-1").await.unwrap().unwrap();
    assert_eq!(binding.revoked_at, None);
    assert_eq!(
        store.enqueue_revocations(100, DEADLINE).await.unwrap(),
        0,
        "not again at every sweep"
    );
}

async fn a_delete_closes_the_pending_revocation_and_a_revival_starts_afresh(t: TestStore) {
    let store = &t.store;
    ready(store, "i-1").await;
    bound_until(store, "i-1", "b-1", past()).await;
    store.enqueue_revocations(100, DEADLINE).await.unwrap();
    let pending = claim_revocations(store).await.remove(0);
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
    let closed = operation(store, pending.operation_id).await;
    assert_eq!(closed.state, bindery::osb::OperationState::Succeeded);
    assert!(
        !store
            .renew_lease(
                pending.operation_id,
                pending.lease_token.unwrap(),
                Duration::from_secs(30)
            )
            .await
            .unwrap(),
        "the running revocation learns at its next renewal that it must stop"
    );

    // Revived under the same id: a fresh binding, not revoked, swept on its own.
    bound_until(store, "i-1", "b-1", past()).await;
    assert_eq!(
        store.find_binding("b-1").await.unwrap().unwrap().revoked_at,
        None
    );
    assert_eq!(store.enqueue_revocations(100, DEADLINE).await.unwrap(), 1);
    let revoke = claim_revocations(store).await.remove(0);
    assert!(
        store
            .finish_operation(&revoke, revoke.lease_token.unwrap(), &succeeded())
            .await
            .unwrap()
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
    bound_until(store, "i-1", "b-1", chrono::Duration::hours(1)).await;
    assert_eq!(
        store.find_binding("b-1").await.unwrap().unwrap().revoked_at,
        None,
        "a revival clears revoked_at"
    );

    // A deprovision closes the revocations of the instance's bindings.
    ready(store, "i-2").await;
    bound_until(store, "i-2", "b-2", past()).await;
    store.enqueue_revocations(100, DEADLINE).await.unwrap();
    let pending = claim_revocations(store).await.remove(0);
    assert_eq!(pending.binding_id.as_deref(), Some("b-2"));
    let deprovision = begin_on_instance(
        store,
        "i-2",
        &[InstanceState::Ready],
        OperationKind::Deprovision,
        json!({}),
        None,
    )
    .await
    .expect("a pending revocation does not block a deprovision");
    assert!(finish(store, deprovision, succeeded()).await);
    let closed = operation(store, pending.operation_id).await;
    assert_eq!(closed.state, bindery::osb::OperationState::Succeeded);
}
