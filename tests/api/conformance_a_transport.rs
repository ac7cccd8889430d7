//! Group A: transport, headers, authentication. OSB spec (`spec.md`): "Headers" ("API
//! Version Header", "Originating Identity"), "Platform to Service Broker Authentication",
//! "URL Properties", "Vendor Extension Fields" (unknown fields are ignored).

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;

/// Every OSB endpoint, with a body where it takes one.
fn endpoints() -> Vec<(Method, String, Option<serde_json::Value>)> {
    let i = "inst-a";
    vec![
        (Method::GET, "/v2/catalog".into(), None),
        (
            Method::PUT,
            format!("/v2/service_instances/{i}"),
            Some(provision_body("svc-db", "plan-small")),
        ),
        (
            Method::PATCH,
            format!("/v2/service_instances/{i}"),
            Some(json!({"service_id": "svc-db"})),
        ),
        (
            Method::DELETE,
            format!("/v2/service_instances/{i}?service_id=svc-db&plan_id=plan-small"),
            None,
        ),
        (
            Method::GET,
            format!("/v2/service_instances/{i}/last_operation"),
            None,
        ),
        (
            Method::PUT,
            format!("/v2/service_instances/{i}/service_bindings/b1"),
            Some(bind_body("svc-db", "plan-small")),
        ),
        (
            Method::DELETE,
            format!(
                "/v2/service_instances/{i}/service_bindings/b1?service_id=svc-db&plan_id=plan-small"
            ),
            None,
        ),
    ]
}

#[tokio::test]
async fn a01_every_response_body_is_a_json_object() {
    let app = TestApp::spawn().await;
    let id = new_id();
    let mut replies = vec![
        app.catalog().await,
        app.send_with(Method::GET, "/v2/catalog", None, &[], false)
            .await,
        app.send_with(Method::GET, "/v2/catalog", None, &[], true)
            .await,
        app.provision(&id, provision_body("svc-db", "plan-small"))
            .await,
        app.provision(&id, provision_body("svc-db", "plan-small"))
            .await,
        app.provision(&new_id(), json!({})).await,
        app.last_operation(&id, "").await,
        app.bind(&id, "b", bind_body("svc-db", "plan-small")).await,
        app.unbind(&id, "b", "?service_id=svc-db&plan_id=plan-small")
            .await,
        app.unbind(&id, "b", "?service_id=svc-db&plan_id=plan-small")
            .await,
        app.deprovision(&id, "?service_id=svc-db&plan_id=plan-small")
            .await,
        app.deprovision(&id, "?service_id=svc-db&plan_id=plan-small")
            .await,
        app.send(Method::GET, "/v2/nothing-here", None).await,
        app.send(Method::POST, "/v2/catalog", None).await,
        app.send_raw(
            Method::PUT,
            &format!("/v2/service_instances/{}", new_id()),
            "{not json",
        )
        .await,
    ];
    replies.push(app.send(Method::GET, "/healthz", None).await);
    for r in replies {
        assert!(
            r.body.is_object(),
            "status {} had a non-object body: {:?}",
            r.status,
            r.raw
        );
        assert_eq!(
            r.headers.get("content-type").map(|v| v.to_str().unwrap()),
            Some("application/json"),
            "status {} without a JSON content type",
            r.status
        );
    }
}

#[tokio::test]
async fn a02_a03_a_request_without_credentials_gets_401_on_every_endpoint() {
    let app = TestApp::spawn().await;
    for (method, path, body) in endpoints() {
        let r = app
            .send_with(
                method.clone(),
                &path,
                body,
                &[("X-Broker-API-Version", "2.13")],
                false,
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{method} {path}");
        assert!(
            r.body["description"].is_string(),
            "{method} {path}: {}",
            r.raw
        );
        assert!(r.headers.contains_key("www-authenticate"));
    }
    assert!(
        app.backend.calls().is_empty(),
        "nothing reached the backend"
    );
}

#[tokio::test]
async fn a04_a_request_with_wrong_credentials_gets_401_on_every_endpoint() {
    let app = TestApp::spawn().await;
    let wrong = [
        basic(USER, "wrong"),
        basic("someone", PASSWORD),
        basic("", ""),
        "Bearer x".to_owned(),
    ];
    for (method, path, body) in endpoints() {
        for header in &wrong {
            let r = app
                .send_with(
                    method.clone(),
                    &path,
                    body.clone(),
                    &[("X-Broker-API-Version", "2.13"), ("Authorization", header)],
                    false,
                )
                .await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{method} {path} with {header}"
            );
        }
    }
}

#[tokio::test]
async fn a06_requests_with_version_2_13_are_accepted() {
    let app = TestApp::spawn().await;
    assert_eq!(app.catalog().await.status, StatusCode::OK);
    let r = app
        .provision(&new_id(), provision_body("svc-db", "plan-small"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn a07_requests_with_later_2x_versions_are_accepted() {
    let app = TestApp::spawn().await;
    for version in ["2.14", "2.15", "2.16", "2.17", "2.18", "2.99"] {
        let r = app
            .send_with(
                Method::GET,
                "/v2/catalog",
                None,
                &[("X-Broker-API-Version", version)],
                true,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "version {version}");
    }
}

#[tokio::test]
async fn a08_an_unsupported_version_gets_412_naming_the_supported_version() {
    let app = TestApp::spawn().await;
    for version in ["1.0", "3.13", "2.12", "2.5", "banana", "2", ""] {
        let r = app
            .send_with(
                Method::GET,
                "/v2/catalog",
                None,
                &[("X-Broker-API-Version", version)],
                true,
            )
            .await;
        assert_eq!(
            r.status,
            StatusCode::PRECONDITION_FAILED,
            "version {version:?}"
        );
        let description = r.body["description"].as_str().unwrap_or_default();
        assert!(description.contains("2.13"), "{version:?}: {description}");
    }
}

#[tokio::test]
async fn a08_the_minimum_version_is_configurable() {
    let app = TestApp::spawn_with(Spawn {
        env: vec![("BINDERY_MIN_API_VERSION".into(), "2.14".into())],
        ..Spawn::default()
    })
    .await;
    let old = app
        .send_with(
            Method::GET,
            "/v2/catalog",
            None,
            &[("X-Broker-API-Version", "2.13")],
            true,
        )
        .await;
    assert_eq!(old.status, StatusCode::PRECONDITION_FAILED);
    let new = app
        .send_with(
            Method::GET,
            "/v2/catalog",
            None,
            &[("X-Broker-API-Version", "2.14")],
            true,
        )
        .await;
    assert_eq!(new.status, StatusCode::OK);
}

#[tokio::test]
async fn a09_a_request_without_the_version_header_gets_412_on_every_endpoint() {
    let app = TestApp::spawn().await;
    for (method, path, body) in endpoints() {
        let r = app.send_with(method.clone(), &path, body, &[], true).await;
        assert_eq!(r.status, StatusCode::PRECONDITION_FAILED, "{method} {path}");
        assert!(
            r.body["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{method} {path}"
        );
    }
    assert!(app.backend.calls().is_empty());
}

#[tokio::test]
async fn a09_authentication_is_checked_before_the_version() {
    let app = TestApp::spawn().await;
    let r = app
        .send_with(Method::GET, "/v2/catalog", None, &[], false)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn a10_originating_identity_is_optional_and_a_malformed_one_is_never_fatal() {
    let app = TestApp::spawn().await;
    let r = app
        .provision(&new_id(), provision_body("svc-db", "plan-small"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = app
        .send_with(
            Method::PUT,
            &format!("/v2/service_instances/{}", new_id()),
            Some(provision_body("svc-db", "plan-small")),
            &[
                ("X-Broker-API-Version", "2.13"),
                (
                    "X-Broker-API-Originating-Identity",
                    "kubernetes %%%not-base64",
                ),
            ],
            true,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
}

#[tokio::test]
async fn a11_the_originating_identity_is_decoded_into_the_audit_trail() {
    let app = TestApp::spawn().await;
    let id = new_id();
    let identity = base64_json(r#"{"username":"jane","uid":"u-1","groups":["devs"],"extra":{}}"#);
    let r = app
        .send_with(
            Method::PUT,
            &format!("/v2/service_instances/{id}"),
            Some(provision_body("svc-db", "plan-small")),
            &[
                ("X-Broker-API-Version", "2.13"),
                (
                    "X-Broker-API-Originating-Identity",
                    &format!("kubernetes {identity}"),
                ),
            ],
            true,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    app.flush_audit().await;
    let (platform, who, status): (String, serde_json::Value, i32) =
        sqlx::query_as("select platform, identity, status from audit_event where instance_id = $1 and action = 'provision'")
            .bind(&id)
            .fetch_one(app.db_pool())
            .await
            .unwrap();
    assert_eq!(platform, "kubernetes");
    assert_eq!(who["username"], "jane");
    assert_eq!(status, 201);
}

#[tokio::test]
async fn a12_percent_encoded_ids_and_query_values_are_decoded() {
    let app = TestApp::spawn().await;
    let r = app
        .provision("inst%20one%2Fx", provision_body("svc-db", "plan-small"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    assert_eq!(
        app.backend.count("provision", "inst one/x"),
        1,
        "{:?}",
        app.backend.calls()
    );
    let r = app
        .bind(
            "inst%20one%2Fx",
            "bind%3A1",
            bind_body("svc-db", "plan-small"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    assert!(
        app.backend
            .calls()
            .iter()
            .any(|c| c.2.as_deref() == Some("bind:1"))
    );
    let r = app
        .deprovision(
            "inst%20one%2Fx",
            "?service_id=svc%2Ddb&plan_id=plan%2Dsmall",
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
}

#[tokio::test]
async fn a13_ids_are_opaque_strings_not_necessarily_guids() {
    let app = TestApp::spawn().await;
    for id in ["x", "my-instance.1~_", "UPPER-case-123"] {
        let r = app
            .provision(id, provision_body("svc-db", "plan-small"))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{id}: {}", r.raw);
    }
}

#[tokio::test]
async fn a14_optional_strings_are_omitted_rather_than_empty() {
    let app = TestApp::spawn().await;
    let id = new_id();
    let r = app
        .provision(&id, provision_body("svc-db", "plan-small"))
        .await;
    assert_eq!(r.body, json!({}), "no dashboard, no operation: {}", r.raw);
    let r = app.last_operation(&id, "").await;
    assert_eq!(r.body, json!({"state": "succeeded"}));
    assert!(!r.raw.contains("\"\""), "{}", r.raw);
}

#[tokio::test]
async fn a15_unknown_fields_in_request_bodies_are_ignored() {
    let app = TestApp::spawn().await;
    let mut body = provision_body("svc-db", "plan-small");
    body["x-vendor-field"] = json!({"anything": [1, 2]});
    body["maintenance_info"] = json!({"version": "9.9.9"});
    let r = app.provision(&new_id(), body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
}

fn base64_json(text: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(text)
}
