//! The audit trail: batches appended in order, every field kept.

use bindery::store::AuditEvent;
use serde_json::json;
use uuid::Uuid;

use crate::support::*;

store_tests!(audit_events_are_appended_in_batches_and_in_order);

fn event(n: u16, full: bool) -> AuditEvent {
    AuditEvent {
        occurred_at: now_micros(),
        action: if full { "bind" } else { "provision" }.to_owned(),
        instance_id: format!("i-{n}"),
        binding_id: full.then(|| format!("b-{n}")),
        operation_id: full.then(Uuid::new_v4),
        status: 200 + n,
        api_version: "2.17".to_owned(),
        request_id: full.then(|| format!("req-{n}")),
        platform: full.then(|| "kubernetes".to_owned()),
        identity: full.then(|| json!({"username": "alice", "groups": ["dev", "ops"]})),
    }
}

async fn audit_events_are_appended_in_batches_and_in_order(t: TestStore) {
    let store = &t.store;
    store.record_audit_events(&[]).await.unwrap();
    assert_eq!(store.count_rows().await.unwrap().audit_events, 0);

    let first = vec![event(1, true), event(2, false), event(3, true)];
    store.record_audit_events(&first).await.unwrap();
    let second = vec![event(4, false), event(5, true)];
    store.record_audit_events(&second).await.unwrap();

    let stored = store.export_audit_events(None, 100).await.unwrap();
    let numbers: Vec<i64> = stored.iter().map(|(n, _)| *n).collect();
    assert!(numbers.windows(2).all(|w| w[0] < w[1]), "{numbers:?}");
    let events: Vec<AuditEvent> = stored.into_iter().map(|(_, e)| e).collect();
    let expected: Vec<AuditEvent> = first.into_iter().chain(second).collect();
    assert_eq!(events, expected);

    // Paged by number.
    let page = store
        .export_audit_events(Some(numbers[1]), 2)
        .await
        .unwrap();
    assert_eq!(page.len(), 2);
    assert_eq!(page[0].0, numbers[2]);
    assert_eq!(page[0].1, expected[2]);
    assert_eq!(page[1].1, expected[3]);
}
