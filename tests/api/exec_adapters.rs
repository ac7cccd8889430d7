//! Issue 16 through the real broker over HTTP: plans of the `exec` kind served by
//! tests/adapters/test_adapter.py. A temporary adapter error is retried by the worker
//! with backoff until the adapter succeeds; a user's mistake the adapter reports fails
//! the operation with the adapter's words; the credentials an adapter returns reach
//! the platform and are stored encrypted only.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::{Spawn, TestApp, bind_body, new_id, provision_body};

const ADAPTER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/adapters/test_adapter.py"
);

fn catalog(state_dir: &std::path::Path, mode: &str) -> String {
    format!(
        r#"
services:
  - id: svc-exec
    name: exec-test
    description: A service served by a test adapter.
    bindable: true
    plan_updateable: true
    backend:
      kind: exec
      settings:
        command: ["{ADAPTER}"]
        timeout_seconds: 5
        config: {{state_dir: "{}", mode: {mode}}}
    plans:
      - id: plan-exec
        name: default
        description: The only plan.
"#,
        state_dir.display()
    )
}

async fn spawn(mode: &str) -> (TestApp, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!("bindery-exec-api-{}", new_id()));
    std::fs::create_dir_all(&dir).unwrap();
    let app = TestApp::spawn_with(Spawn {
        catalog: catalog(&dir, mode),
        registry: Some(crate::helpers::builtin_registry(&[])),
        ..Spawn::default()
    })
    .await;
    (app, dir)
}

/// Polls last_operation for up to `limit` (the worker's backoff is 2 s, then 4 s).
async fn finished(app: &TestApp, id: &str, limit: Duration) -> Value {
    let started = std::time::Instant::now();
    loop {
        let r = app.last_operation(id, "").await;
        if r.body["state"] != "in progress" || started.elapsed() > limit {
            return r.body;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test]
async fn a_temporary_adapter_error_is_retried_until_the_adapter_succeeds() {
    let (app, dir) = spawn("temporary_twice").await;
    let id = new_id();
    let r = app
        .provision_async(&id, provision_body("svc-exec", "plan-exec"))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.raw);
    let body = finished(&app, &id, Duration::from_secs(30)).await;
    assert_eq!(body["state"], "succeeded", "{body}");
    let calls = std::fs::read_to_string(dir.join("calls.log")).unwrap();
    assert_eq!(
        calls.lines().filter(|l| *l == "provision").count(),
        3,
        "{calls}"
    );
}

#[tokio::test]
async fn adapter_credentials_reach_the_platform_and_are_stored_encrypted() {
    let (app, _dir) = spawn("good").await;
    let id = new_id();
    let r = app
        .provision_async(&id, provision_body("svc-exec", "plan-exec"))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.raw);
    assert_eq!(
        finished(&app, &id, Duration::from_secs(10)).await["state"],
        "succeeded"
    );
    let binding = new_id();
    let r = app
        .bind(&id, &binding, bind_body("svc-exec", "plan-exec"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    let password = r.body["credentials"]["password"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        password.len(),
        32,
        "the broker's bind password, set by the adapter"
    );
    assert_eq!(r.body["credentials"]["type"], "test");
    assert!(!app.state_dump().await.contains(&password));
    let r = app
        .unbind(&id, &binding, "?service_id=svc-exec&plan_id=plan-exec")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    let r = app
        .deprovision(
            &id,
            "?service_id=svc-exec&plan_id=plan-exec&accepts_incomplete=true",
        )
        .await;
    assert!(r.status.is_success(), "{}", r.raw);
}

#[tokio::test]
async fn a_users_mistake_reported_by_the_adapter_fails_the_operation_with_its_words() {
    let (app, _dir) = spawn("good").await;
    let id = new_id();
    let mut body = provision_body("svc-exec", "plan-exec");
    body["parameters"] = json!({"size": 11});
    let r = app.provision_async(&id, body).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.raw);
    let body = finished(&app, &id, Duration::from_secs(10)).await;
    assert_eq!(body["state"], "failed", "{body}");
    assert_eq!(body["description"], "size: at most 10", "{body}");
}
