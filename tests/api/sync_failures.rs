//! Synchronous requests that fail: the answer says what the platform should do, and
//! nothing left behind refuses the platform's corrected retry (issue 19).

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn a_failed_synchronous_provision_or_bind_accepts_the_corrected_retry() {
    let app = TestApp::spawn().await;
    // plan-large has no parameter schema; the test backend fails when asked to.
    let id = new_id();
    let mut wrong = provision_body("svc-db", "plan-large");
    wrong["parameters"] = json!({"fail": "provision"});
    let r = app.provision(&id, wrong).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.raw);
    let description = r.body["description"].as_str().unwrap();
    assert!(
        description.contains("correct the request and send it again"),
        "the description says what to do: {description}"
    );
    assert!(!description.contains("will be retried"), "{description}");

    // The corrected request: same id, different parameters.
    let r = app
        .provision(&id, provision_body("svc-db", "plan-large"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    let r = app
        .provision(&id, provision_body("svc-db", "plan-large"))
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the replaced request is the one stored"
    );
    assert_eq!(app.backend.count("provision", &id), 2);

    // The same for a binding.
    let b = new_id();
    let mut wrong = bind_body("svc-db", "plan-large");
    wrong["parameters"] = json!({"fail": "bind"});
    let r = app.bind(&id, &b, wrong).await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.raw);
    assert!(
        r.body["description"]
            .as_str()
            .unwrap()
            .contains("same binding id"),
        "{}",
        r.raw
    );
    let r = app.bind(&id, &b, bind_body("svc-db", "plan-large")).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    assert!(r.body["credentials"]["password"].is_string(), "{}", r.raw);
    let r = app.bind(&id, &b, bind_body("svc-db", "plan-large")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);

    // A failed binding of one instance is not taken over from another.
    let other = new_id();
    app.provisioned(&other, "plan-small").await;
    let r = app
        .bind(&other, &b, bind_body("svc-db", "plan-small"))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.raw);
}

#[tokio::test]
async fn an_unreachable_server_on_a_synchronous_provision_does_not_promise_a_retry() {
    // Redis on a port where nothing listens.
    let env = [("BINDERY_REDIS_ADMIN_URL", "redis://127.0.0.1:1")];
    let app = spawn_shipped_with(&env).await;
    let (service, plan) = (
        "4c6e8a20-1b3d-4f59-9e72-8d0a6c4b2e50",
        "7f3b9d52-4e6a-4c18-b2d5-1a8e0f6c3d91",
    );
    let id = new_id();
    let r = app.provision(&id, provision_body(service, plan)).await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.raw);
    let description = r.body["description"].as_str().unwrap();
    assert!(!description.contains("will be retried"), "{description}");
    assert!(
        description.contains("send the request again later"),
        "{description}"
    );
    let r = app.last_operation(&id, "").await;
    assert_eq!(r.body["state"], "failed", "{}", r.raw);
    assert!(
        !r.raw.contains("will be retried"),
        "nothing retries the stored operation either: {}",
        r.raw
    );
}
