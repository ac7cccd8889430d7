//! Groups J (errors and orphans) and K (extras a broker serving OSB 2.14+ platforms
//! should have). OSB spec (`spec.md`): "Service Broker Errors", "Orphan Mitigation"
//! ("Orphans" in 2.13), "Content Type", "Request Identity", "Polling Last Operation for
//! Service Instances".

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn j138_j139_failures_get_a_fitting_status_and_a_json_description() {
    let app = TestApp::spawn().await;
    let down = app
        .provision(&new_id(), provision_body("svc-db", "plan-down"))
        .await;
    assert_eq!(down.status, StatusCode::SERVICE_UNAVAILABLE, "{}", down.raw);
    assert!(down.body["description"].as_str().unwrap().contains("down"));
    let refused = app
        .provision(&new_id(), provision_body("svc-db", "plan-failing"))
        .await;
    assert_eq!(refused.status, StatusCode::BAD_GATEWAY);
    assert!(refused.body["description"].is_string());
}

#[tokio::test]
async fn j140_error_codes_are_spelled_exactly() {
    let app = TestApp::spawn().await;
    let r = app
        .provision(&new_id(), provision_body("svc-db", "plan-async"))
        .await;
    assert_eq!(r.body["error"], "AsyncRequired");
    let id = new_id();
    app.provisioned(&id, "plan-needs-app").await;
    let r = app
        .bind(
            &id,
            &new_id(),
            json!({"service_id": "svc-db", "plan_id": "plan-needs-app"}),
        )
        .await;
    assert_eq!(r.body["error"], "RequiresApp");
}

#[tokio::test]
async fn j141_a_client_error_is_never_a_5xx() {
    let app = TestApp::spawn().await;
    let cases = [
        app.provision(&new_id(), json!({"service_id": "svc-db"}))
            .await,
        app.provision(&new_id(), provision_body("svc-x", "plan-small"))
            .await,
        app.update(&new_id(), "", json!({"service_id": "svc-db"}))
            .await,
        app.last_operation("nope", "?operation=zzz").await,
    ];
    for r in cases {
        assert!(r.status.is_client_error(), "{} {}", r.status, r.raw);
    }
}

#[tokio::test]
async fn j142_no_2xx_status_other_than_200_201_202_is_returned() {
    let app = TestApp::spawn().await;
    let id = new_id();
    let mut statuses = vec![
        app.catalog().await.status,
        app.provision(&id, provision_body("svc-db", "plan-small"))
            .await
            .status,
        app.provision(&id, provision_body("svc-db", "plan-small"))
            .await
            .status,
        app.update(&id, "", json!({"service_id": "svc-db"}))
            .await
            .status,
        app.last_operation(&id, "").await.status,
    ];
    let b = new_id();
    statuses.push(
        app.bind(&id, &b, bind_body("svc-db", "plan-small"))
            .await
            .status,
    );
    statuses.push(
        app.unbind(&id, &b, "?service_id=svc-db&plan_id=plan-small")
            .await
            .status,
    );
    statuses.push(
        app.deprovision(
            &id,
            "?service_id=svc-db&plan_id=plan-small&accepts_incomplete=true",
        )
        .await
        .status,
    );
    for s in statuses {
        if s.is_success() {
            assert!([200, 201, 202].contains(&s.as_u16()), "{s}");
        }
    }
}

#[tokio::test]
async fn j143_internal_errors_hide_the_cause_and_give_the_request_id() {
    let app = TestApp::spawn().await;
    // Sabotage the schema so that the store fails in an unexpected way.
    sqlx::query("alter table service_instance rename column dashboard_url to gone")
        .execute(app.db_pool())
        .await
        .unwrap();
    let r = app
        .provision(&new_id(), provision_body("svc-db", "plan-small"))
        .await;
    assert_eq!(r.status, StatusCode::INTERNAL_SERVER_ERROR);
    let description = r.body["description"].as_str().unwrap();
    let request_id = r.headers.get("x-request-id").unwrap().to_str().unwrap();
    assert!(description.contains(request_id), "{description}");
    assert!(
        !description.contains("dashboard_url") && !description.contains("column"),
        "{description}"
    );
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_with_a_json_body() {
    let app = TestApp::spawn_with(Spawn {
        env: vec![("BINDERY_MAX_BODY_BYTES".into(), "2048".into())],
        ..Spawn::default()
    })
    .await;
    let mut body = provision_body("svc-db", "plan-small");
    body["padding"] = json!("x".repeat(4096));
    let r = app.provision(&new_id(), body).await;
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(r.body["description"].as_str().unwrap().contains("2048"));
}

#[tokio::test]
async fn unknown_routes_and_wrong_methods_get_json_404_and_405() {
    let app = TestApp::spawn().await;
    let r = app.send(Method::GET, "/v2/unknown", None).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body.is_object());
    let r = app
        .send(Method::POST, "/v2/service_instances/x", None)
        .await;
    assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    assert!(r.body.is_object());
}

#[tokio::test]
async fn k144_every_response_with_a_body_is_application_json() {
    let app = TestApp::spawn().await;
    for r in [
        app.catalog().await,
        app.deprovision(&new_id(), "?service_id=a&plan_id=b").await,
    ] {
        assert_eq!(r.headers["content-type"], "application/json");
    }
}

#[tokio::test]
async fn k147_the_request_identity_is_echoed_on_every_response() {
    let app = TestApp::spawn().await;
    let id = "5b4d5f0e-request-identity";
    for auth in [true, false] {
        let r = app
            .send_with(
                Method::GET,
                "/v2/catalog",
                None,
                &[
                    ("X-Broker-API-Version", "2.15"),
                    ("X-Broker-API-Request-Identity", id),
                ],
                auth,
            )
            .await;
        assert_eq!(r.headers["x-broker-api-request-identity"], id);
    }
}

#[tokio::test]
async fn k149_finished_operation_states_are_kept() {
    let app = TestApp::spawn().await;
    let id = new_id();
    let r = app
        .provision_async(&id, provision_body("svc-db", "plan-small"))
        .await;
    let op = r.body["operation"].as_str().unwrap().to_owned();
    app.wait_for_operation(&id, "").await;
    for _ in 0..3 {
        assert_eq!(
            app.last_operation(&id, &format!("?operation={op}"))
                .await
                .body["state"],
            "succeeded"
        );
    }
}

#[tokio::test]
async fn a_nul_character_in_the_input_is_a_400_on_every_store() {
    let app = TestApp::spawn().await;
    let id = new_id();
    let mut body = provision_body("svc-db", "plan-small");
    body["context"] = serde_json::json!({"platform": "kubernetes", "namespace": "a\u{0}b"});
    let r = app.provision(&id, body).await;
    assert_eq!(r.status, reqwest::StatusCode::BAD_REQUEST, "{r:?}");
    assert!(
        r.body["description"]
            .as_str()
            .unwrap_or_default()
            .contains("NUL"),
        "{r:?}"
    );
    let r = app
        .send(
            reqwest::Method::PUT,
            &format!("/v2/service_instances/{id}%00x"),
            Some(provision_body("svc-db", "plan-small")),
        )
        .await;
    assert_eq!(r.status, reqwest::StatusCode::BAD_REQUEST, "{r:?}");
    let r = app
        .deprovision(&id, "?service_id=svc-db%00&plan_id=plan-small")
        .await;
    assert_eq!(r.status, reqwest::StatusCode::BAD_REQUEST, "{r:?}");
    assert_eq!(
        app.backend.count("provision", &id),
        0,
        "nothing was provisioned"
    );
}
