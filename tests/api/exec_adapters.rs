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

/// What the adapter was told by its last call of `action`.
fn seen(dir: &std::path::Path, action: &str) -> Value {
    let text = std::fs::read_to_string(dir.join(format!("seen-{action}.json"))).unwrap();
    serde_json::from_str(&text).unwrap()
}

#[tokio::test]
async fn the_adapter_gets_the_platform_context_and_its_own_facts_back() {
    let (app, dir) = spawn("good").await;
    let id = new_id();
    let context = json!({"platform": "kubernetes", "clusterid": "c-1", "namespace": "team-a"});
    let mut body = provision_body("svc-exec", "plan-exec");
    body["context"] = context.clone();
    let r = app.provision(&id, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    let provisioned = seen(&dir, "provision");
    assert_eq!(provisioned["context"], context);
    assert_eq!(
        provisioned["facts"],
        Value::Null,
        "nothing is known before provision"
    );

    // The facts provision returned come back with every later call; an update that
    // returns none keeps them.
    let facts = json!({"resource": format!("r-{}", &sha256_hex(&id)[..16])});
    let r = app
        .update(
            &id,
            "",
            json!({"service_id": "svc-exec", "parameters": {"size": 2}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    assert_eq!(seen(&dir, "update")["facts"], facts);
    let binding = new_id();
    let r = app
        .bind(&id, &binding, bind_body("svc-exec", "plan-exec"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    assert_eq!(seen(&dir, "bind")["facts"], facts);
    assert_eq!(seen(&dir, "bind")["context"], context);
    let r = app
        .deprovision(&id, "?service_id=svc-exec&plan_id=plan-exec")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    assert_eq!(seen(&dir, "deprovision")["facts"], facts);
}

#[tokio::test]
async fn a_users_mistake_on_a_synchronous_request_is_a_400_and_a_corrected_retry_succeeds() {
    let (app, _dir) = spawn("good").await;
    let id = new_id();
    let mut body = provision_body("svc-exec", "plan-exec");
    body["parameters"] = json!({"size": 11});
    let r = app.provision(&id, body.clone()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.raw);
    assert_eq!(r.body["description"], "size: at most 10", "{}", r.raw);
    // The platform corrects the parameter and sends the same instance id again.
    body["parameters"] = json!({"size": 3});
    let r = app.provision(&id, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(text.as_bytes()))
}

#[tokio::test]
async fn the_worker_checks_adapter_health_and_exports_it_per_plan() {
    for (mode, healthy) in [("good", true), ("unhealthy", false)] {
        let (app, dir) = spawn(mode).await;
        let checked = app.worker.check_backend_health().await;
        assert_eq!(checked.len(), 1, "{checked:?}");
        assert_eq!(
            (checked[0].service.as_str(), checked[0].plan.as_str()),
            ("exec-test", "default")
        );
        assert_eq!(checked[0].problem.is_none(), healthy, "{checked:?}");
        if !healthy {
            assert_eq!(
                checked[0].problem.as_deref(),
                Some("the test service is down")
            );
        }
        let calls = std::fs::read_to_string(dir.join("calls.log")).unwrap();
        assert!(calls.lines().any(|l| l == "health"), "{calls}");
        let metrics = app
            .send_with(reqwest::Method::GET, "/metrics", None, &[], false)
            .await
            .raw;
        let line = metrics
            .lines()
            .find(|l| l.starts_with("bindery_backend_healthy{"))
            .unwrap_or_else(|| panic!("no gauge in {metrics}"));
        assert!(
            line.contains("service=\"exec-test\"") && line.contains("plan=\"default\""),
            "{line}"
        );
        assert!(line.ends_with(if healthy { " 1" } else { " 0" }), "{line}");
    }
}
