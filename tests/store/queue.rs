//! The operation queue: claims, leases, retries, releases, deadlines, supersession and
//! the queue's statistics.

use std::collections::HashSet;
use std::time::Duration;

use bindery::osb::OperationState;
use bindery::store::{BindingState, InstanceState, OperationKind, OperationTarget, Store};
use chrono::Utc;
use serde_json::json;
use uuid::Uuid;

use crate::support::*;

store_tests!(
    exactly_one_of_several_concurrent_claimers_gets_an_operation,
    concurrent_claimers_share_the_queue_without_duplicates,
    a_claim_skips_leased_and_finished_operations,
    an_expired_lease_is_taken_over,
    renew_retry_later_and_release_act_only_for_the_lease_holder,
    fail_expired_fails_an_operation_whoever_holds_it,
    supersede_fails_a_running_create_and_holds_the_delete_back,
    a_superseded_run_that_gives_its_claim_back_lets_the_delete_run_at_once,
    a_second_claim_by_the_same_process_fences_the_first,
    a_lease_of_a_process_known_to_be_gone_is_taken_over_at_once,
    at_start_up_a_sqlite_store_frees_the_leases_of_the_process_before,
    queue_stats_count_operations_in_progress,
);

const LEASE: Duration = Duration::from_secs(30);

/// An instance whose provision waits in the queue, unleased; the operation's id.
async fn queued_provision(store: &Store, instance_id: &str) -> Uuid {
    let parameters = json!({});
    let op = queued(instance_id, None, OperationKind::Provision);
    assert!(
        store
            .insert_instance(&instance(instance_id, &parameters), &op)
            .await
            .unwrap()
    );
    op.operation_id
}

async fn exactly_one_of_several_concurrent_claimers_gets_an_operation(t: TestStore) {
    let id = queued_provision(&t.store, "i-1").await;
    let mut claimers = Vec::new();
    for n in 0..8 {
        let store = t.store.clone();
        claimers.push(tokio::spawn(async move {
            let owner = format!("worker-{n}");
            let claimed = store.claim_next_operation(&owner, LEASE).await.unwrap();
            claimed.map(|op| (owner, op))
        }));
    }
    let mut winners = Vec::new();
    for claimer in claimers {
        if let Some(won) = claimer.await.unwrap() {
            winners.push(won);
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let (owner, op) = &winners[0];
    assert_eq!(op.operation_id, id);
    assert_eq!(op.attempts, 1);
    let row = operation_row(&t.store, id).await;
    assert_eq!(row.lease_owner.as_deref(), Some(owner.as_str()));
}

async fn concurrent_claimers_share_the_queue_without_duplicates(t: TestStore) {
    let mut queued_ids = HashSet::new();
    for n in 0..6 {
        queued_ids.insert(queued_provision(&t.store, &format!("i-{n}")).await);
    }
    let mut claimers = Vec::new();
    for n in 0..10 {
        let store = t.store.clone();
        claimers.push(tokio::spawn(async move {
            let owner = format!("worker-{n}");
            let mut claimed = Vec::new();
            // Bounded: a queue that hands out leased operations again must fail, not hang.
            for _ in 0..20 {
                let Some(op) = store.claim_next_operation(&owner, LEASE).await.unwrap() else {
                    break;
                };
                claimed.push((op.operation_id, owner.clone()));
            }
            claimed
        }));
    }
    let mut claims = Vec::new();
    for claimer in claimers {
        claims.extend(claimer.await.unwrap());
    }
    assert_eq!(claims.len(), 6, "each operation claimed once: {claims:?}");
    let claimed_ids: HashSet<Uuid> = claims.iter().map(|(id, _)| *id).collect();
    assert_eq!(claimed_ids, queued_ids);
    for (id, owner) in &claims {
        let row = operation_row(&t.store, *id).await;
        assert_eq!(row.lease_owner.as_ref(), Some(owner));
        assert_eq!(row.record.attempts, 1);
    }
}

async fn a_claim_skips_leased_and_finished_operations(t: TestStore) {
    let store = &t.store;
    let leased = provisioning(store, "i-leased").await;
    let finished = provisioning(store, "i-finished").await;
    assert!(finish(store, finished, succeeded()).await);
    assert!(
        store
            .claim_next_operation("w", LEASE)
            .await
            .unwrap()
            .is_none()
    );

    let first = queued_provision(store, "i-1").await;
    tokio::time::sleep(Duration::from_millis(5)).await;
    let second = queued_provision(store, "i-2").await;
    let claimed = store
        .claim_next_operation("w", LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.operation_id, first, "the one due first");
    assert_eq!(claimed.kind, OperationKind::Provision);
    assert_eq!(claimed.instance_id, "i-1");
    assert_eq!(claimed.state, OperationState::InProgress);
    let claimed = store
        .claim_next_operation("w", LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.operation_id, second);
    assert!(
        store
            .claim_next_operation("w", LEASE)
            .await
            .unwrap()
            .is_none()
    );
    assert_eq!(
        operation_row(store, leased).await.lease_owner.as_deref(),
        Some(OWNER)
    );
}

async fn an_expired_lease_is_taken_over(t: TestStore) {
    let store = &t.store;
    let id = queued_provision(store, "i-1").await;
    let short = Duration::from_millis(300);
    let first = store
        .claim_next_operation("a", short)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first.operation_id, id);
    assert!(
        store
            .claim_next_operation("b", LEASE)
            .await
            .unwrap()
            .is_none()
    );

    tokio::time::sleep(Duration::from_millis(600)).await;
    let second = store
        .claim_next_operation("b", LEASE)
        .await
        .unwrap()
        .expect("an expired lease is free");
    assert_eq!(second.operation_id, id);
    assert_eq!(second.attempts, 2);
    assert_eq!(
        operation_row(store, id).await.lease_owner.as_deref(),
        Some("b")
    );

    // The first worker has lost it: it can neither renew nor finish.
    let (first_token, second_token) = (first.lease_token.unwrap(), second.lease_token.unwrap());
    assert_ne!(
        first_token, second_token,
        "every claim has a token of its own"
    );
    assert!(!store.renew_lease(id, first_token, LEASE).await.unwrap());
    assert!(
        !store
            .finish_operation(&first, first_token, &succeeded())
            .await
            .unwrap()
    );
    assert_eq!(
        store.find_instance("i-1").await.unwrap().unwrap().state,
        InstanceState::Provisioning
    );
    assert!(
        store
            .finish_operation(&second, second_token, &succeeded())
            .await
            .unwrap()
    );
    assert_eq!(
        store.find_instance("i-1").await.unwrap().unwrap().state,
        InstanceState::Ready
    );
}

async fn renew_retry_later_and_release_act_only_for_the_lease_holder(t: TestStore) {
    let store = &t.store;
    let id = queued_provision(store, "i-1").await;
    let a = store
        .claim_next_operation("a", LEASE)
        .await
        .unwrap()
        .unwrap()
        .lease_token
        .unwrap();
    let stranger = Uuid::new_v4();

    assert!(
        store
            .renew_lease(id, a, Duration::from_secs(600))
            .await
            .unwrap()
    );
    let row = operation_row(store, id).await;
    assert!(near(
        row.lease_expires_at.unwrap(),
        Utc::now() + chrono::Duration::seconds(600),
        Duration::from_secs(10)
    ));
    assert!(!store.renew_lease(id, stranger, LEASE).await.unwrap());

    // Release: only by the holder; the attempt is given back.
    store.release_lease(id, stranger).await.unwrap();
    assert_eq!(
        operation_row(store, id).await.lease_owner.as_deref(),
        Some("a")
    );
    store.release_lease(id, a).await.unwrap();
    let row = operation_row(store, id).await;
    assert_eq!(row.lease_owner, None);
    assert_eq!(row.lease_expires_at, None);
    assert_eq!(row.record.attempts, 0);
    assert_eq!(row.record.state, OperationState::InProgress);

    let claimed = store
        .claim_next_operation("b", LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.operation_id, id);
    assert_eq!(claimed.attempts, 1);
    let b = claimed.lease_token.unwrap();

    // Retry later: only by the holder; the lease is freed and the next attempt delayed.
    assert!(
        !store
            .retry_operation_later(id, a, Duration::ZERO, "not mine")
            .await
            .unwrap()
    );
    assert!(
        store
            .retry_operation_later(
                id,
                b,
                Duration::from_secs(3600),
                "Backend unavailable; retrying"
            )
            .await
            .unwrap()
    );
    let row = operation_row(store, id).await;
    assert_eq!(row.lease_owner, None);
    assert_eq!(row.lease_expires_at, None);
    assert_eq!(
        row.record.description.as_deref(),
        Some("Backend unavailable; retrying")
    );
    assert_eq!(row.record.state, OperationState::InProgress);
    assert!(near(
        row.record.next_attempt_at,
        Utc::now() + chrono::Duration::hours(1),
        Duration::from_secs(10)
    ));
    let found = operation(store, id).await;
    assert_eq!(found.next_attempt_at, row.record.next_attempt_at);
    assert_eq!(
        found.description.as_deref(),
        Some("Backend unavailable; retrying")
    );
    assert!(
        store
            .claim_next_operation("c", LEASE)
            .await
            .unwrap()
            .is_none(),
        "not due yet"
    );

    // Nothing acts on a finished operation.
    let done = provisioning(store, "i-2").await;
    assert!(finish(store, done, succeeded()).await);
    assert!(!store.renew_lease(done, done, LEASE).await.unwrap());
    assert!(
        !store
            .retry_operation_later(done, done, Duration::ZERO, "again")
            .await
            .unwrap()
    );
    store.release_lease(done, done).await.unwrap();
    let row = operation_row(store, done).await;
    assert_eq!(row.record.state, OperationState::Succeeded);
    assert_eq!(row.record.attempts, 1);
}

async fn fail_expired_fails_an_operation_whoever_holds_it(t: TestStore) {
    let store = &t.store;
    let id = provisioning(store, "i-1").await;
    let op = operation(store, id).await;
    assert!(
        store
            .fail_expired_operation(&op, "The operation exceeded its maximum duration.")
            .await
            .unwrap()
    );
    let row = operation_row(store, id).await;
    assert_eq!(row.record.state, OperationState::Failed);
    assert_eq!(
        row.record.description.as_deref(),
        Some("The operation exceeded its maximum duration.")
    );
    assert!(row.finished_at.is_some());
    assert_eq!(row.lease_owner, None);
    let found = store.find_instance("i-1").await.unwrap().unwrap();
    assert_eq!(found.state, InstanceState::Failed);
    assert_eq!(found.active_operation_id, None);

    assert!(!store.fail_expired_operation(&op, "again").await.unwrap());
    assert!(!store.finish_operation(&op, id, &succeeded()).await.unwrap());
    assert_eq!(
        operation_row(store, id).await.record.description.as_deref(),
        Some("The operation exceeded its maximum duration.")
    );
}

async fn supersede_fails_a_running_create_and_holds_the_delete_back(t: TestStore) {
    let store = &t.store;
    let reason = "Cancelled: a deprovision was requested.";

    // A provision running inline (leased for 30 s) is superseded by a deprovision.
    let provision = provisioning(store, "i-1").await;
    let deprovision = queued("i-1", None, OperationKind::Deprovision);
    assert!(
        store
            .supersede_operation(
                OperationTarget::Instance("i-1"),
                provision,
                &deprovision,
                reason
            )
            .await
            .unwrap()
    );
    let failed_row = operation_row(store, provision).await;
    assert_eq!(failed_row.record.state, OperationState::Failed);
    assert_eq!(failed_row.record.description.as_deref(), Some(reason));
    assert!(failed_row.finished_at.is_some());
    let found = store.find_instance("i-1").await.unwrap().unwrap();
    assert_eq!(found.state, InstanceState::Failed);
    assert_eq!(found.active_operation_id, Some(deprovision.operation_id));
    let replacement = operation_row(store, deprovision.operation_id).await;
    assert_eq!(replacement.record.state, OperationState::InProgress);
    assert_eq!(replacement.record.kind, OperationKind::Deprovision);
    assert_eq!(replacement.waits_for, Some(provision));
    assert_eq!(
        failed_row.record.lease_token,
        Some(provision),
        "the superseded run's claim stays until it gives it back"
    );
    assert!(
        store
            .claim_next_operation("w", LEASE)
            .await
            .unwrap()
            .is_none(),
        "held back while the superseded run holds its lease"
    );
    // The superseded attempt can no longer record anything.
    assert!(!finish(store, provision, succeeded()).await);
    assert!(
        !store
            .renew_lease(provision, provision, LEASE)
            .await
            .unwrap()
    );
    // And it is no longer active: superseding it again is refused.
    let another = queued("i-1", None, OperationKind::Deprovision);
    assert!(
        !store
            .supersede_operation(
                OperationTarget::Instance("i-1"),
                provision,
                &another,
                reason
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .find_operation(another.operation_id)
            .await
            .unwrap()
            .is_none()
    );

    // A bind is superseded by an unbind the same way; the binding fails.
    ready(store, "i-2").await;
    let bind = binding_creating(store, "i-2", "b-1").await;
    let unbind = queued("i-2", Some("b-1"), OperationKind::Unbind);
    assert!(
        store
            .supersede_operation(OperationTarget::Binding("b-1"), bind, &unbind, reason)
            .await
            .unwrap()
    );
    let found = store.find_binding("b-1").await.unwrap().unwrap();
    assert_eq!(found.state, BindingState::Failed);
    assert_eq!(found.active_operation_id, Some(unbind.operation_id));
    assert_eq!(operation(store, bind).await.state, OperationState::Failed);

    // A create that no worker holds: the delete may run at once.
    let waiting = queued_provision(store, "i-3").await;
    let delete = queued("i-3", None, OperationKind::Deprovision);
    let before = Utc::now();
    assert!(
        store
            .supersede_operation(OperationTarget::Instance("i-3"), waiting, &delete, reason)
            .await
            .unwrap()
    );
    assert!(near(
        operation_row(store, delete.operation_id)
            .await
            .record
            .next_attempt_at,
        before,
        Duration::from_secs(5)
    ));
    let claimed = store
        .claim_next_operation("w", LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.operation_id, delete.operation_id);
}

async fn a_superseded_run_that_gives_its_claim_back_lets_the_delete_run_at_once(t: TestStore) {
    let store = &t.store;
    let reason = "Cancelled: a deprovision was requested.";
    let provision = queued_provision(store, "i-1").await;
    let running = store
        .claim_next_operation("a", LEASE)
        .await
        .unwrap()
        .unwrap();
    let token = running.lease_token.unwrap();
    let deprovision = queued("i-1", None, OperationKind::Deprovision);
    assert!(
        store
            .supersede_operation(
                OperationTarget::Instance("i-1"),
                provision,
                &deprovision,
                reason
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_next_operation("b", LEASE)
            .await
            .unwrap()
            .is_none()
    );
    // The run learns at its next renewal, stops, and gives its claim back.
    assert!(!store.renew_lease(provision, token, LEASE).await.unwrap());
    store.release_lease(provision, token).await.unwrap();
    let row = operation_row(store, provision).await;
    assert_eq!(
        row.record.state,
        OperationState::Failed,
        "still failed, as superseded"
    );
    assert_eq!(row.record.lease_token, None);
    assert_eq!(
        row.record.attempts, 1,
        "a finished operation keeps its attempt count"
    );
    let claimed = store
        .claim_next_operation("b", LEASE)
        .await
        .unwrap()
        .expect("the delete runs without waiting for the lease to expire");
    assert_eq!(claimed.operation_id, deprovision.operation_id);

    // A superseded run that never gives its claim back holds the delete only until its
    // lease expires.
    let provision = queued_provision(store, "i-2").await;
    store
        .claim_next_operation("a", Duration::from_millis(300))
        .await
        .unwrap()
        .unwrap();
    let deprovision = queued("i-2", None, OperationKind::Deprovision);
    assert!(
        store
            .supersede_operation(
                OperationTarget::Instance("i-2"),
                provision,
                &deprovision,
                reason
            )
            .await
            .unwrap()
    );
    assert!(
        store
            .claim_next_operation("b", LEASE)
            .await
            .unwrap()
            .is_none()
    );
    tokio::time::sleep(Duration::from_millis(600)).await;
    let claimed = store
        .claim_next_operation("b", LEASE)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.operation_id, deprovision.operation_id);
}

/// One process claims the same operation twice (its first run hung past the lease,
/// for example while the state database was away): the owner names are equal, the
/// tokens are not, and only the newest claim can renew, retry or finish.
async fn a_second_claim_by_the_same_process_fences_the_first(t: TestStore) {
    let store = &t.store;
    let id = queued_provision(store, "i-1").await;
    let stale = store
        .claim_next_operation(OWNER, Duration::from_millis(300))
        .await
        .unwrap()
        .unwrap();
    tokio::time::sleep(Duration::from_millis(600)).await;
    let current = store
        .claim_next_operation(OWNER, LEASE)
        .await
        .unwrap()
        .expect("the expired lease is claimed again by the same process");
    let (stale_token, current_token) = (stale.lease_token.unwrap(), current.lease_token.unwrap());
    assert_ne!(stale_token, current_token);

    assert!(!store.renew_lease(id, stale_token, LEASE).await.unwrap());
    assert!(
        !store
            .retry_operation_later(id, stale_token, Duration::ZERO, "stale")
            .await
            .unwrap()
    );
    store.release_lease(id, stale_token).await.unwrap();
    assert!(
        !store
            .finish_operation(&stale, stale_token, &failed("stale run"))
            .await
            .unwrap()
    );
    let row = operation_row(store, id).await;
    assert_eq!(row.record.state, OperationState::InProgress);
    assert_eq!(
        row.record.lease_token,
        Some(current_token),
        "the stale release did nothing"
    );

    assert!(store.renew_lease(id, current_token, LEASE).await.unwrap());
    assert!(
        store
            .finish_operation(&current, current_token, &succeeded())
            .await
            .unwrap()
    );
    assert_eq!(
        store.find_instance("i-1").await.unwrap().unwrap().state,
        InstanceState::Ready
    );
}

async fn a_lease_of_a_process_known_to_be_gone_is_taken_over_at_once(t: TestStore) {
    let store = &t.store;
    // A live process's lease is respected; so is one of a process without a record.
    store
        .heartbeat("alive", Some(Duration::from_secs(60)))
        .await
        .unwrap();
    store
        .heartbeat("dying", Some(Duration::from_millis(300)))
        .await
        .unwrap();
    queued_provision(store, "i-alive").await;
    queued_provision(store, "i-dying").await;
    queued_provision(store, "i-unknown").await;
    for owner in ["alive", "dying", "unknown"] {
        store
            .claim_next_operation(owner, LEASE)
            .await
            .unwrap()
            .unwrap();
    }
    assert!(
        store
            .claim_next_operation("w", LEASE)
            .await
            .unwrap()
            .is_none()
    );
    // "dying" stops renewing its promise: its operation is free long before its lease.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let taken = store
        .claim_next_operation("w", LEASE)
        .await
        .unwrap()
        .expect("the gone process's operation is taken over");
    assert_eq!(taken.instance_id, "i-dying");
    assert_eq!(taken.attempts, 2);
    assert!(
        store
            .claim_next_operation("w", LEASE)
            .await
            .unwrap()
            .is_none(),
        "the live and the unknown process keep theirs"
    );
    // A process that stops says so, and what it held is free at once.
    store.heartbeat("alive", None).await.unwrap();
    let taken = store
        .claim_next_operation("w", LEASE)
        .await
        .unwrap()
        .expect("a stopped process's operation is taken over");
    assert_eq!(taken.instance_id, "i-alive");
}

/// One process per SQLite file (its lock file): at start-up whatever a lease names is a
/// process that is gone. PostgreSQL may have live replicas, so nothing is freed there.
async fn at_start_up_a_sqlite_store_frees_the_leases_of_the_process_before(t: TestStore) {
    let store = &t.store;
    queued_provision(store, "i-1").await;
    store
        .claim_next_operation("killed", LEASE)
        .await
        .unwrap()
        .unwrap();
    store.release_orphaned_leases().await.unwrap();
    let claimed = store.claim_next_operation("next", LEASE).await.unwrap();
    match t.kind {
        Kind::Sqlite => assert!(claimed.is_some(), "the dead process's lease is free"),
        Kind::Postgres => assert!(claimed.is_none(), "another replica may hold it"),
    }
}

async fn queue_stats_count_operations_in_progress(t: TestStore) {
    let store = &t.store;
    assert_eq!(store.queue_stats().await.unwrap(), (0, 0.0));
    let first = provisioning(store, "i-1").await;
    queued_provision(store, "i-2").await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (count, age) = store.queue_stats().await.unwrap();
    assert_eq!(count, 2);
    assert!((0.3..60.0).contains(&age), "age {age}");
    assert!(finish(store, first, succeeded()).await);
    let (count, age) = store.queue_stats().await.unwrap();
    assert_eq!(count, 1);
    assert!((0.3..60.0).contains(&age), "age {age}");
}
