//! Secrets and access: nothing secret leaves except through bind and fetch-binding,
//! keys rotate, several users and bearer tokens authenticate, limits answer in JSON.

use std::io::Write;
use std::sync::{Arc, Mutex};

use bindery::config::Settings;
use bindery::startup::Application;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;

const KEY_A: &str = "a:q1ZQDkyvSO0jD0b1S1OEBlJGwqvbCuX1B6e4MZq0C5c=";
const KEY_B: &str = "b:AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

#[tokio::test]
async fn no_secret_appears_in_logs_database_or_responses_at_the_most_verbose_level() {
    let logs = Captured::default();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .try_init()
        .expect("each test runs in its own process under nextest");
    let app = spawn_shipped_with(&[
        (
            "BINDERY_POSTGRES_ADMIN_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        ),
        ("BINDERY_POSTGRES_NAME_PREFIX", "bdleak"),
    ])
    .await;
    let (service, plan) = (
        "6f0a9d4e-2c1b-4d8e-9a57-0b3e1c2d4f60",
        "1c7e5b90-8f3a-4e21-b6d4-5a0c9e8f7d11",
    );
    let id = new_id();
    let mut bodies = Vec::new();
    let mut secrets: Vec<String> = vec![
        PASSWORD.to_owned(),
        TEST_KEY.split(':').nth(1).unwrap().to_owned(),
    ];
    bodies.push(app.provision(&id, provision_body(service, plan)).await.raw);
    bodies.push(app.last_operation(&id, "").await.raw);
    for b in [new_id(), new_id()] {
        let created = app.bind(&id, &b, bind_body(service, plan)).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.raw);
        secrets.push(
            created.body["credentials"]["password"]
                .as_str()
                .unwrap()
                .to_owned(),
        );
        let again = app.bind(&id, &b, bind_body(service, plan)).await;
        assert_eq!(again.body, created.body);
        bodies.push(
            app.unbind(&id, &b, &format!("?service_id={service}&plan_id={plan}"))
                .await
                .raw,
        );
    }
    bodies.push(
        app.update(
            &id,
            "",
            json!({"service_id": service, "parameters": {"connection_limit": 3}}),
        )
        .await
        .raw,
    );
    bodies.push(
        app.send_with(
            Method::GET,
            "/v2/catalog",
            None,
            &[
                ("Authorization", &basic(USER, "wrong")),
                ("X-Broker-API-Version", "2.13"),
            ],
            false,
        )
        .await
        .raw,
    );
    bodies.push(
        app.deprovision(&id, &format!("?service_id={service}&plan_id={plan}"))
            .await
            .raw,
    );

    app.flush_audit().await;
    let database_dump = app.state_dump().await;
    assert!(
        database_dump.contains(&id),
        "the dump holds the state it searches"
    );
    let log_text = String::from_utf8_lossy(&logs.0.lock().unwrap()).into_owned();
    assert!(
        log_text.contains("TRACE") || log_text.contains("DEBUG"),
        "the logs were captured at a verbose level"
    );
    assert!(log_text.len() > 1000, "there are logs to search");
    for secret in &secrets {
        let hex_form: String = secret.bytes().map(|b| format!("{b:02x}")).collect();
        assert!(
            !log_text.contains(secret.as_str()),
            "a secret is in the logs"
        );
        assert!(
            !database_dump.contains(secret.as_str()) && !database_dump.contains(&hex_form),
            "a secret is in the database"
        );
        for body in &bodies {
            assert!(
                !body.contains(secret.as_str()),
                "a secret is in a response: {body}"
            );
        }
    }
}

async fn build(url: &str, keys: &str) -> anyhow::Result<Application> {
    let env = [
        ("DATABASE_URL", url.to_owned()),
        ("BINDERY_LISTEN", "127.0.0.1:0".to_owned()),
        ("BINDERY_CATALOG", write_catalog()),
        ("BINDERY_USERNAME", USER.to_owned()),
        ("BINDERY_PASSWORD", PASSWORD.to_owned()),
        ("BINDERY_ENCRYPTION_KEYS", keys.to_owned()),
    ];
    let settings = Settings::load_from(None, |n| {
        env.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone())
    })?;
    let mut registry = bindery::backends::BackendRegistry::new();
    registry.register(
        "recording",
        Arc::new(crate::support::RecordingBackend::default()),
    );
    Application::build(&settings, registry).await
}

fn write_catalog() -> String {
    let path = std::env::temp_dir().join(format!(
        "bindery-cat-{}.yaml",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::write(&path, crate::support::TEST_CATALOG).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn credentials_survive_a_key_rotation_and_an_unknown_key_fails_closed() {
    let first = TestApp::spawn_with(Spawn {
        env: vec![("BINDERY_ENCRYPTION_KEYS".into(), KEY_A.into())],
        ..Spawn::default()
    })
    .await;
    let url = format!("{}/{}", server_url(), first.database);
    let id = new_id();
    first.provisioned(&id, "plan-small").await;
    let b = new_id();
    let created = first.bind(&id, &b, bind_body("svc-db", "plan-small")).await;

    // B becomes primary while A can still decrypt; rotate; then A is removed.
    let both = build(&url, &format!("{KEY_B},{KEY_A}")).await.unwrap();
    let report = bindery::keys::rotate(
        both.store(),
        &bindery::crypto::Keyring::parse(&format!("{KEY_B},{KEY_A}")).unwrap(),
    )
    .await
    .unwrap();
    assert!(report.failed.is_empty());
    let label: String =
        sqlx::query_scalar("select credentials_key from service_binding where binding_id = $1")
            .bind(&b)
            .fetch_one(first.db_pool())
            .await
            .unwrap();
    assert_eq!(label, "b");
    let only_b = build(&url, KEY_B)
        .await
        .expect("starts without key A once nothing needs it");
    let replay = only_b
        .broker()
        .bind(
            &bindery::broker::RequestContext::new(bindery::osb::ApiVersion::V2_13),
            &id,
            &b,
            serde_json::from_value(bind_body("svc-db", "plan-small")).unwrap(),
            false,
        )
        .await
        .unwrap();
    let bindery::broker::BindOutcome::AlreadyExists(body) = replay else {
        panic!("expected a replay")
    };
    assert_eq!(
        serde_json::to_value(body).unwrap(),
        created.body,
        "the same credentials after rotation"
    );

    let unknown = build(&url, "c:AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=")
        .await
        .expect_err("must refuse to start");
    let message = format!("{unknown:#}");
    assert!(
        message.contains("`b`") && message.contains("BINDERY_ENCRYPTION_KEYS"),
        "{message}"
    );
}

#[tokio::test]
async fn several_users_and_bearer_tokens_authenticate_and_wrong_ones_do_not() {
    let app = TestApp::spawn_with(Spawn {
        env: vec![
            (
                "BINDERY_EXTRA_USERS".into(),
                "next:next-password,ops:ops:with:colons".into(),
            ),
            ("BINDERY_BEARER_TOKENS".into(), "token-one,token-two".into()),
        ],
        ..Spawn::default()
    })
    .await;
    let ok = [
        basic(USER, PASSWORD),
        basic("next", "next-password"),
        basic("ops", "ops:with:colons"),
        "Bearer token-one".into(),
        "Bearer token-two".into(),
    ];
    for header in &ok {
        let r = app
            .send_with(
                Method::GET,
                "/v2/catalog",
                None,
                &[("Authorization", header), ("X-Broker-API-Version", "2.13")],
                false,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{header}");
    }
    let wrong = [
        basic("next", PASSWORD),
        "Bearer token-three".into(),
        "Bearer ".into(),
        "Token token-one".into(),
    ];
    for header in &wrong {
        let r = app
            .send_with(
                Method::GET,
                "/v2/catalog",
                None,
                &[("Authorization", header), ("X-Broker-API-Version", "2.13")],
                false,
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{header}");
        assert!(r.body["description"].is_string());
    }
}

#[tokio::test]
async fn a_request_over_its_deadline_gets_a_json_503_and_its_operation_is_not_lost() {
    let app = TestApp::spawn_with(Spawn {
        env: vec![
            ("BINDERY_REQUEST_TIMEOUT_SECONDS".into(), "1".into()),
            ("BINDERY_LEASE_SECONDS".into(), "3".into()),
        ],
        catalog: crate::support::TEST_CATALOG.replace("delay_ms: 300", "delay_ms: 2500"),
        ..Spawn::default()
    })
    .await;
    let id = new_id();
    let r = app
        .provision(&id, provision_body("svc-db", "plan-slow"))
        .await;
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.raw);
    assert!(
        r.body["description"]
            .as_str()
            .unwrap()
            .contains("did not finish")
    );
    // The worker finishes the cut-short operation once its lease expires.
    let mut state = String::new();
    for _ in 0..80 {
        state = app.last_operation_state_in_db(&id).await;
        if state != "in progress" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(state, "succeeded");
}

#[tokio::test]
async fn requests_beyond_the_concurrency_bound_get_a_json_503() {
    let app = TestApp::spawn_with(Spawn {
        env: vec![("BINDERY_MAX_CONCURRENT_REQUESTS".into(), "1".into())],
        catalog: crate::support::TEST_CATALOG.replace("delay_ms: 300", "delay_ms: 1000"),
        ..Spawn::default()
    })
    .await;
    let id = new_id();
    let slow = app.provision(&id, provision_body("svc-db", "plan-slow"));
    let refused = async {
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
        app.catalog().await
    };
    let (slow, refused) = tokio::join!(slow, refused);
    assert_eq!(slow.status, StatusCode::CREATED);
    assert_eq!(refused.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        refused.body["description"]
            .as_str()
            .unwrap()
            .contains("too many")
    );
}

#[tokio::test]
async fn headers_over_the_limit_get_a_json_431() {
    let app = TestApp::spawn_with(Spawn {
        env: vec![("BINDERY_MAX_HEADER_BYTES".into(), "2048".into())],
        ..Spawn::default()
    })
    .await;
    let big = "x".repeat(3000);
    let r = app
        .send_with(
            Method::GET,
            "/v2/catalog",
            None,
            &[("X-Broker-API-Version", "2.13"), ("X-Padding", &big)],
            true,
        )
        .await;
    assert_eq!(r.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    assert!(r.body["description"].as_str().unwrap().contains("2048"));
    assert_eq!(app.catalog().await.status, StatusCode::OK);
}
