//! Platform ids the stores cannot index: refused with 400 on both stores before
//! anything is stored or audited (osb::ids, docs/decisions.md).

use reqwest::{Method, StatusCode};

use crate::helpers::*;

/// `len` random hex digits (pglz finds no repeats to compress in them).
fn random_id(len: usize) -> String {
    let mut id = String::new();
    while id.len() < len {
        id.push_str(&uuid::Uuid::new_v4().simple().to_string());
    }
    id.truncate(len);
    id
}

fn lost_audit_events(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with("bindery_audit_events_lost_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn ids_over_255_bytes_are_a_400_naming_the_id_and_leave_no_trace() {
    let app = TestApp::spawn().await;
    let long = random_id(3000);
    let r = app
        .provision(&long, provision_body("svc-db", "plan-small"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.raw);
    let description = r.body["description"].as_str().unwrap();
    assert!(
        description.contains("instance_id") && description.contains("255"),
        "{description}"
    );
    let r = app
        .provision_async(&long, provision_body("svc-db", "plan-small"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.raw);
    let r = app
        .deprovision(&long, "?service_id=svc-db&plan_id=plan-small")
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.raw);

    // A binding id over the limit, on an instance that exists.
    let id = new_id();
    app.provisioned(&id, "plan-small").await;
    let long_binding = random_id(3000);
    let r = app
        .bind(&id, &long_binding, bind_body("svc-db", "plan-small"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.raw);
    assert!(
        r.body["description"]
            .as_str()
            .unwrap()
            .contains("binding_id"),
        "{}",
        r.raw
    );
    assert_eq!(app.backend.count("bind", &id), 0, "no backend work");

    // 255 bytes is accepted (multi-byte characters count as bytes).
    let at_limit = format!("{}{}", "é".repeat(100), random_id(55));
    assert_eq!(at_limit.len(), 255);
    let r = app
        .provision(&at_limit, provision_body("svc-db", "plan-small"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);

    app.flush_audit().await;
    let metrics = app
        .send_with(Method::GET, "/metrics", None, &[], false)
        .await
        .raw;
    assert_eq!(lost_audit_events(&metrics), 0.0, "no audit batch failed");
    let dump = app.state_dump().await;
    assert!(
        !dump.contains(&long[..64]),
        "the long instance id was stored"
    );
    assert!(
        !dump.contains(&long_binding[..64]),
        "the long binding id was stored"
    );
    assert!(dump.contains(&id), "the state dump sees what was stored");
}
