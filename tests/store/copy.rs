//! Copying all state between stores (`bindery migrate-store`): every record read back
//! equal, in both directions; a target holding state is refused.

use std::time::Duration;

use bindery::store::copy::{IncompleteCopy, copy_state};
use bindery::store::{
    AuditEvent, BindingState, InstanceState, NewBinding, NewInstance, OperationKind, Outcome,
    Store, StoreOptions,
};
use serde_json::json;
use uuid::Uuid;

use crate::support::*;

store_tests!(
    copy_moves_every_record_to_the_other_kind_of_store,
    copy_refuses_a_target_that_holds_state,
);

/// Fills a store with every kind of record: live and tombstoned instances and
/// bindings, credentials, contexts, leases, retries, failures and audit events.
pub async fn populate(store: &Store) {
    // A ready instance with its context, three bindings in three states.
    let parameters = json!({"size": 2, "flags": ["a", "b"], "nested": {"x": 1.5}});
    let context = json!({"platform": "cloudfoundry", "organization_name": "acme"});
    let op = inline("i-ready", None, OperationKind::Provision);
    assert!(
        store
            .insert_instance(
                &NewInstance {
                    context: Some(&context),
                    ..instance("i-ready", &parameters)
                },
                &op
            )
            .await
            .unwrap()
    );
    assert!(finish(store, op.operation_id, succeeded()).await);

    let bind_parameters = json!({"role": "owner"});
    let bind_resource = json!({"app_guid": "app-1", "route": "orders.example"});
    let bind_context = json!({"platform": "cloudfoundry", "space_guid": "space-1"});
    let op = inline("i-ready", Some("b-ready"), OperationKind::Bind);
    store
        .insert_binding(
            &NewBinding {
                route: Some("orders.example"),
                bind_resource: Some(&bind_resource),
                context: Some(&bind_context),
                expires_at: Some(now_micros() + chrono::Duration::days(7)),
                predecessor_binding_id: Some("b-unbound"),
                ..binding("b-ready", "i-ready", &bind_parameters)
            },
            &op,
        )
        .await
        .unwrap();
    assert!(
        finish(
            store,
            op.operation_id,
            Outcome::Succeeded {
                credentials: Some(sealed("primary", &[9, 8, 7, 0, 255])),
                facts: None,
            }
        )
        .await
    );
    bound(store, "i-ready", "b-unbound", Some(sealed("old", b"gone"))).await;
    let unbind = begin_on_binding(
        store,
        "i-ready",
        "b-unbound",
        &[BindingState::Ready],
        OperationKind::Unbind,
    )
    .await
    .unwrap();
    assert!(finish(store, unbind, succeeded()).await);
    let bind = binding_creating(store, "i-ready", "b-failed").await;
    assert!(finish(store, bind, failed("User limit reached")).await);

    // An update waiting for its retry.
    let update = begin_on_instance(
        store,
        "i-ready",
        &[InstanceState::Ready],
        OperationKind::Update,
        json!({"plan_id": "large", "parameters": {"size": 3}, "maintenance_version": "2.0"}),
        None,
    )
    .await
    .unwrap();
    assert!(
        store
            .retry_operation_later(
                update,
                update,
                Duration::from_secs(600),
                "Backend unavailable"
            )
            .await
            .unwrap()
    );

    // A deprovisioned instance and its binding: tombstones.
    ready(store, "i-gone").await;
    bound(store, "i-gone", "b-gone", Some(sealed("primary", b"x"))).await;
    deprovisioned(store, "i-gone").await;

    // A provision a worker holds, and a failed one.
    let empty = json!({});
    let op = queued("i-queued", None, OperationKind::Provision);
    assert!(
        store
            .insert_instance(&instance("i-queued", &empty), &op)
            .await
            .unwrap()
    );
    let claimed = store
        .claim_next_operation("worker-1", Duration::from_secs(600))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.operation_id, op.operation_id);
    let failing = provisioning(store, "i-failed").await;
    assert!(finish(store, failing, failed("Quota exceeded")).await);

    // Expired bindings: one whose credentials were revoked, one whose revocation a
    // worker holds.
    ready(store, "i-expiry").await;
    for binding_id in ["b-revoked", "b-expiring"] {
        let op = inline("i-expiry", Some(binding_id), OperationKind::Bind);
        let new = NewBinding {
            expires_at: Some(now_micros() - chrono::Duration::seconds(1)),
            ..binding(binding_id, "i-expiry", &empty)
        };
        store.insert_binding(&new, &op).await.unwrap();
        let credentials = Some(sealed("primary", b"expired"));
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
        let revocations = store
            .enqueue_revocations(1, Duration::from_secs(3600))
            .await
            .unwrap();
        assert_eq!(revocations, 1);
        // Both claimed, so the copy's own claim below finds nothing due.
        let revoke = store
            .claim_next_operation("worker-1", Duration::from_secs(600))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(revoke.binding_id.as_deref(), Some(binding_id));
        if binding_id == "b-revoked" {
            let token = revoke.lease_token.unwrap();
            assert!(
                store
                    .finish_operation(&revoke, token, &succeeded())
                    .await
                    .unwrap()
            );
        }
    }
    assert!(
        store
            .find_binding("b-revoked")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );

    let events: Vec<AuditEvent> = (0..5)
        .map(|n| AuditEvent {
            occurred_at: now_micros(),
            action: "provision".to_owned(),
            instance_id: format!("i-{n}"),
            binding_id: (n % 2 == 0).then(|| format!("b-{n}")),
            operation_id: (n % 2 == 0).then(Uuid::new_v4),
            status: 201,
            api_version: "2.13".to_owned(),
            request_id: Some(format!("req-{n}")),
            platform: (n % 2 == 1).then(|| "cloudfoundry".to_owned()),
            identity: (n % 2 == 1).then(|| json!({"user_id": format!("u-{n}")})),
        })
        .collect();
    store.record_audit_events(&events).await.unwrap();
}

async fn copy_moves_every_record_to_the_other_kind_of_store(t: TestStore) {
    populate(&t.store).await;
    let source = everything(&t.store).await;
    assert_eq!(source.instances.len(), 5);
    assert_eq!(source.bindings.len(), 6);
    assert_eq!(source.audit_events.len(), 5);
    let target = TestStore::unmigrated(t.kind.other()).await;
    assert!(!target.store.is_ready().await);

    // Pages of two rows: every table takes several.
    let copied = copy_state(&t.store, &target.store, 2).await.unwrap();
    let counts = t.store.count_rows().await.unwrap();
    assert_eq!(copied, counts);
    assert_eq!(copied.instances, 5);
    assert_eq!(copied.bindings, 6);
    assert_eq!(copied.audit_events, 5);
    assert!(target.store.is_ready().await, "the target was migrated");
    assert_eq!(target.store.count_rows().await.unwrap(), counts);
    assert_eq!(everything(&target.store).await, source);

    // The copy carries on where the source stopped: the worker's lease still holds,
    // the retry is not due, and the lease holder finishes its operation there.
    let s = &target.store;
    assert!(
        s.claim_next_operation("worker-2", Duration::from_secs(30))
            .await
            .unwrap()
            .is_none()
    );
    let held = s
        .latest_instance_operation("i-queued")
        .await
        .unwrap()
        .unwrap();
    assert!(
        s.finish_operation(&held, held.lease_token.unwrap(), &succeeded())
            .await
            .unwrap()
    );
    assert_eq!(
        s.find_instance("i-queued").await.unwrap().unwrap().state,
        InstanceState::Ready
    );
    assert_eq!(
        s.find_binding("b-ready")
            .await
            .unwrap()
            .unwrap()
            .credentials,
        Some(sealed("primary", &[9, 8, 7, 0, 255]))
    );
    assert_eq!(
        s.credential_key_labels().await.unwrap(),
        vec![("primary".to_owned(), 3)],
        "b-ready's, and the expired bindings' (kept until they are unbound)"
    );
    assert!(
        s.find_binding("b-revoked")
            .await
            .unwrap()
            .unwrap()
            .revoked_at
            .is_some()
    );
    // A tombstone copied is still revivable.
    let parameters = json!({});
    assert!(
        s.insert_instance(
            &instance("i-gone", &parameters),
            &inline("i-gone", None, OperationKind::Provision)
        )
        .await
        .unwrap()
    );
}

async fn copy_refuses_a_target_that_holds_state(t: TestStore) {
    populate(&t.store).await;
    let target = TestStore::new(t.kind.other()).await;
    ready(&target.store, "i-already-there").await;
    let before = everything(&target.store).await;
    let error = copy_state(&t.store, &target.store, 100).await.unwrap_err();
    let message = format!("{error:#}");
    assert!(message.contains("already holds state"), "{message}");
    assert!(message.contains("1 instance(s)"), "{message}");
    assert_eq!(
        everything(&target.store).await,
        before,
        "nothing was copied"
    );

    // Audit events alone do not count as state: they are appended to.
    let target = TestStore::new(t.kind.other()).await;
    let earlier = AuditEvent {
        occurred_at: now_micros(),
        action: "deprovision".to_owned(),
        instance_id: "i-x".to_owned(),
        binding_id: None,
        operation_id: None,
        status: 410,
        api_version: "2.13".to_owned(),
        request_id: None,
        platform: None,
        identity: None,
    };
    target
        .store
        .record_audit_events(std::slice::from_ref(&earlier))
        .await
        .unwrap();
    copy_state(&t.store, &target.store, 100).await.unwrap();
    let events = everything(&target.store).await.audit_events;
    assert_eq!(events.len(), 6);
    assert_eq!(events[0], earlier);
    assert_eq!(events[1..], everything(&t.store).await.audit_events[..]);
}

#[tokio::test]
async fn copy_refuses_a_source_that_does_not_exist() {
    let (missing_file, _place) = Place::fresh(Kind::Sqlite);
    let error = Store::open_existing(&missing_file, &StoreOptions::default())
        .await
        .unwrap_err();
    assert!(format!("{error:#}").contains("does not exist"), "{error:#}");

    let (missing_database, _place) = Place::fresh(Kind::Postgres);
    let source = Store::open_existing(&missing_database, &StoreOptions::default())
        .await
        .unwrap();
    let target = TestStore::new(Kind::Sqlite).await;
    let error = copy_state(&source, &target.store, 100).await.unwrap_err();
    assert!(format!("{error:#}").contains("not migrated"), "{error:#}");
    assert_eq!(target.store.count_rows().await.unwrap().instances, 0);
}

/// `len` random hex digits.
fn long_id(len: usize) -> String {
    let mut id = String::new();
    while id.len() < len {
        id.push_str(&Uuid::new_v4().simple().to_string());
    }
    id.truncate(len);
    id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_lists_the_rows_the_target_refuses_with_their_ids_and_copies_the_rest() {
    // SQLite keeps an id PostgreSQL's btree index cannot hold (a broker before the id
    // bound accepted one); the copy names it instead of failing blind.
    let source = TestStore::new(Kind::Sqlite).await;
    populate(&source.store).await;
    let long = long_id(9000);
    let long_binding = long_id(9000);
    ready(&source.store, &long).await;
    bound(&source.store, &long, "b-of-long", None).await;
    ready(&source.store, "i-fine-after").await;
    bound(&source.store, "i-fine-after", &long_binding, None).await;
    let target = TestStore::unmigrated(Kind::Postgres).await;

    let error = copy_state(&source.store, &target.store, 2)
        .await
        .unwrap_err();
    let message = format!("{error:#}");
    let incomplete = error
        .downcast_ref::<IncompleteCopy>()
        .unwrap_or_else(|| panic!("not an IncompleteCopy: {message}"));
    let refused: Vec<(&str, &str)> = incomplete
        .refused
        .iter()
        .map(|r| (r.table, r.id.as_str()))
        .collect();
    assert!(
        refused.contains(&("service_instance", long.as_str())),
        "{message}"
    );
    assert!(
        refused.contains(&("service_binding", "b-of-long")),
        "{message}"
    );
    assert!(
        refused.contains(&("service_binding", long_binding.as_str())),
        "{message}"
    );
    assert!(
        incomplete.refused.iter().any(|r| r.table == "operation"),
        "the long instance's operations are left out with it: {message}"
    );
    assert!(
        message.contains(&long[..100]),
        "the message shows the id: {message}"
    );
    assert!(message.contains("9000 bytes"), "{message}");
    assert!(
        !message.contains(&long[..101]),
        "a long id is shortened: {message}"
    );

    // Everything else is there.
    let copied = everything(&target.store).await;
    let source_rows = everything(&source.store).await;
    assert_eq!(copied.instances.len(), source_rows.instances.len() - 1);
    assert_eq!(copied.bindings.len(), source_rows.bindings.len() - 2);
    assert!(
        copied
            .instances
            .iter()
            .any(|i| i.record.instance_id == "i-fine-after")
    );
    assert_eq!(copied.audit_events, source_rows.audit_events);
    assert_eq!(incomplete.copied.instances, copied.instances.len() as i64);
}
