//! Groups H (bind) and I (unbind). OSB spec (`spec.md`): "Binding", "Unbinding".

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

const DEL: &str = "?service_id=svc-db&plan_id=plan-small";

async fn with_instance(plan: &str) -> (TestApp, String) {
    let app = TestApp::spawn().await;
    let id = new_id();
    app.provisioned(&id, plan).await;
    (app, id)
}

#[tokio::test]
async fn h112_h113_h114_missing_ids_and_malformed_bodies_get_400() {
    let (app, id) = with_instance("plan-small").await;
    for field in ["service_id", "plan_id"] {
        let mut body = bind_body("svc-db", "plan-small");
        body.as_object_mut().unwrap().remove(field);
        let r = app.bind(&id, &new_id(), body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "missing {field}");
        let mut body = bind_body("svc-db", "plan-small");
        body[field] = json!("");
        assert_eq!(
            app.bind(&id, &new_id(), body).await.status,
            StatusCode::BAD_REQUEST,
            "empty {field}"
        );
    }
    for raw in [
        "{",
        "[]",
        "null",
        "{\"service_id\":\"svc-db\",\"plan_id\":\"plan-small\",\"bind_resource\":7}",
    ] {
        let r = app
            .send_raw(
                reqwest::Method::PUT,
                &format!("/v2/service_instances/{id}/service_bindings/{}", new_id()),
                raw,
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{raw}");
    }
    assert_eq!(
        app.backend.calls().iter().filter(|c| c.0 == "bind").count(),
        0
    );
}

#[tokio::test]
async fn h115_bind_parameters_are_validated() {
    let (app, id) = with_instance("plan-small").await;
    let mut body = bind_body("svc-db", "plan-small");
    body["parameters"] = json!({"read_only": "yes"});
    let r = app.bind(&id, &new_id(), body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body["description"]
            .as_str()
            .unwrap()
            .contains("parameters.read_only"),
        "{}",
        r.raw
    );
}

#[tokio::test]
async fn h116_h120_a_new_binding_gets_201_with_credentials() {
    let (app, id) = with_instance("plan-small").await;
    let b = new_id();
    let r = app.bind(&id, &b, bind_body("svc-db", "plan-small")).await;
    assert_eq!(r.status, StatusCode::CREATED);
    let credentials = r.body["credentials"]
        .as_object()
        .expect("credentials object");
    assert_eq!(credentials["username"], format!("user-{b}"));
    assert!(
        credentials["password"]
            .as_str()
            .is_some_and(|p| p.len() >= 16)
    );
}

#[tokio::test]
async fn h117_an_identical_bind_gets_200_with_the_same_credentials() {
    let (app, id) = with_instance("plan-small").await;
    let b = new_id();
    let first = app.bind(&id, &b, bind_body("svc-db", "plan-small")).await;
    let second = app.bind(&id, &b, bind_body("svc-db", "plan-small")).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(
        first.body, second.body,
        "the same credentials, read back from the store"
    );
    assert_eq!(
        app.backend.calls().iter().filter(|c| c.0 == "bind").count(),
        1
    );
}

#[tokio::test]
async fn h118_a_binding_id_reused_with_other_parameters_or_another_instance_gets_409() {
    let (app, id) = with_instance("plan-small").await;
    let other = new_id();
    app.provisioned(&other, "plan-small").await;
    let b = new_id();
    app.bind(&id, &b, bind_body("svc-db", "plan-small")).await;
    let mut different = bind_body("svc-db", "plan-small");
    different["parameters"] = json!({"read_only": true});
    let mut other_app = bind_body("svc-db", "plan-small");
    other_app["bind_resource"]["app_guid"] = json!("app-2");
    for (instance, body) in [
        (&id, different),
        (&id, other_app),
        (&other, bind_body("svc-db", "plan-small")),
    ] {
        let r = app.bind(instance, &b, body).await;
        assert_eq!(r.status, StatusCode::CONFLICT, "{}", r.raw);
        assert!(r.body.is_object());
    }
}

#[tokio::test]
async fn h119_a_plan_that_needs_an_app_answers_422_requires_app_without_one() {
    let (app, id) = with_instance("plan-needs-app").await;
    let mut body = bind_body("svc-db", "plan-needs-app");
    body.as_object_mut().unwrap().remove("bind_resource");
    let r = app.bind(&id, &new_id(), body.clone()).await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["error"], "RequiresApp");
    body["app_guid"] = json!("legacy-app");
    assert_eq!(
        app.bind(&id, &new_id(), body).await.status,
        StatusCode::CREATED,
        "top-level app_guid counts"
    );
}

#[tokio::test]
async fn h121_credentials_are_unique_per_binding() {
    let (app, id) = with_instance("plan-small").await;
    let a = app
        .bind(&id, &new_id(), bind_body("svc-db", "plan-small"))
        .await;
    let b = app
        .bind(&id, &new_id(), bind_body("svc-db", "plan-small"))
        .await;
    assert_ne!(
        a.body["credentials"]["password"],
        b.body["credentials"]["password"]
    );
    assert_ne!(
        a.body["credentials"]["username"],
        b.body["credentials"]["username"]
    );
}

#[tokio::test]
async fn h122_h124_h126_no_drain_route_or_volume_fields_without_requires() {
    let (app, id) = with_instance("plan-small").await;
    let r = app
        .bind(&id, &new_id(), bind_body("svc-db", "plan-small"))
        .await;
    for field in ["syslog_drain_url", "route_service_url", "volume_mounts"] {
        assert!(r.body.get(field).is_none(), "{field}");
    }
}

#[tokio::test]
async fn h129_bind_resource_variants_are_all_accepted() {
    let (app, id) = with_instance("plan-small").await;
    let bodies = [
        json!({"service_id": "svc-db", "plan_id": "plan-small", "app_guid": "a"}),
        json!({"service_id": "svc-db", "plan_id": "plan-small", "bind_resource": {"app_guid": "a"}}),
        json!({"service_id": "svc-db", "plan_id": "plan-small", "bind_resource": {"route": "https://app.example.com"}}),
        json!({"service_id": "svc-db", "plan_id": "plan-small"}),
    ];
    for body in bodies {
        let r = app.bind(&id, &new_id(), body.clone()).await;
        assert_eq!(r.status, StatusCode::CREATED, "{body}");
    }
}

#[tokio::test]
async fn h130_an_optional_context_in_the_bind_body_is_accepted() {
    let (app, id) = with_instance("plan-small").await;
    let mut body = bind_body("svc-db", "plan-small");
    body["context"] =
        json!({"platform": "cloudfoundry", "organization_guid": "o", "space_guid": "s"});
    assert_eq!(
        app.bind(&id, &new_id(), body).await.status,
        StatusCode::CREATED
    );
}

#[tokio::test]
async fn h131_binding_a_plan_that_is_not_bindable_gets_400_with_a_description() {
    let (app, id) = with_instance("plan-unbindable").await;
    let r = app
        .bind(&id, &new_id(), bind_body("svc-db", "plan-unbindable"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body["description"]
            .as_str()
            .unwrap()
            .contains("not bindable")
    );
}

#[tokio::test]
async fn binding_an_unknown_instance_gets_404_and_a_plan_mismatch_400() {
    let (app, id) = with_instance("plan-small").await;
    assert_eq!(
        app.bind(&new_id(), &new_id(), bind_body("svc-db", "plan-small"))
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.bind(&id, &new_id(), bind_body("svc-db", "plan-large"))
            .await
            .status,
        StatusCode::BAD_REQUEST
    );
}

#[tokio::test]
async fn i132_i133_an_unbind_without_service_id_or_plan_id_gets_400() {
    let (app, id) = with_instance("plan-small").await;
    let b = new_id();
    app.bind(&id, &b, bind_body("svc-db", "plan-small")).await;
    for query in ["?plan_id=plan-small", "?service_id=svc-db", ""] {
        assert_eq!(
            app.unbind(&id, &b, query).await.status,
            StatusCode::BAD_REQUEST,
            "{query}"
        );
    }
    assert_eq!(
        app.backend
            .calls()
            .iter()
            .filter(|c| c.0 == "unbind")
            .count(),
        0
    );
}

#[tokio::test]
async fn i134_i135_an_unbind_revokes_the_binding_and_answers_200_with_an_empty_object() {
    let (app, id) = with_instance("plan-small").await;
    let b = new_id();
    app.bind(&id, &b, bind_body("svc-db", "plan-small")).await;
    let r = app.unbind(&id, &b, DEL).await;
    assert_eq!((r.status, r.body), (StatusCode::OK, json!({})));
    assert!(
        app.backend
            .calls()
            .iter()
            .any(|c| c.0 == "unbind" && c.2.as_deref() == Some(b.as_str()))
    );
}

#[tokio::test]
async fn i136_an_unbind_of_an_unknown_binding_gets_410_with_an_empty_object() {
    let (app, id) = with_instance("plan-small").await;
    let r = app.unbind(&id, &new_id(), DEL).await;
    assert_eq!((r.status, r.body), (StatusCode::GONE, json!({})));
    let r = app.unbind(&new_id(), &new_id(), DEL).await;
    assert_eq!(r.status, StatusCode::GONE, "unknown instance too");
    let b = new_id();
    app.bind(&id, &b, bind_body("svc-db", "plan-small")).await;
    app.unbind(&id, &b, DEL).await;
    assert_eq!(
        app.unbind(&id, &b, DEL).await.status,
        StatusCode::GONE,
        "already unbound"
    );
}

#[tokio::test]
async fn i137_an_unbind_cleans_up_a_binding_whose_bind_failed() {
    let (app, id) = with_instance("plan-bind-fails").await;
    let b = new_id();
    let r = app
        .bind(&id, &b, bind_body("svc-db", "plan-bind-fails"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.raw);
    let r = app
        .unbind(&id, &b, "?service_id=svc-db&plan_id=plan-bind-fails")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        app.backend
            .calls()
            .iter()
            .any(|c| c.0 == "unbind" && c.2.as_deref() == Some(b.as_str()))
    );
}
