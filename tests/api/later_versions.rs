//! OSB 2.14 to 2.17, each feature under the version that introduced it and under 2.13,
//! where the field or endpoint must be absent.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;

async fn quiet_app() -> TestApp {
    TestApp::spawn_with(Spawn {
        run_worker: false,
        ..Spawn::default()
    })
    .await
}

#[tokio::test]
async fn v2_14_fetching_an_instance_during_an_update_gets_422_concurrency_error() {
    let mut app = quiet_app().await;
    let id = new_id();
    app.provisioned(&id, "plan-small").await;
    app.update(
        &id,
        "?accepts_incomplete=true",
        json!({"service_id": "svc-db", "parameters": {"size": 9}}),
    )
    .await;
    app.version = "2.14".into();
    let r = app
        .send(Method::GET, &format!("/v2/service_instances/{id}"), None)
        .await;
    assert_eq!(
        (r.status, r.body["error"].clone()),
        (StatusCode::UNPROCESSABLE_ENTITY, json!("ConcurrencyError"))
    );
}

#[tokio::test]
async fn v2_15_a_maintenance_info_mismatch_is_422_and_ignored_under_2_13() {
    let mut app = quiet_app().await;
    let mut body = provision_body("svc-db", "plan-large");
    body["maintenance_info"] = json!({"version": "1.9.0"});
    let r = app.provision(&new_id(), body.clone()).await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "2.13 does not know maintenance_info"
    );
    app.version = "2.15".into();
    let r = app.provision(&new_id(), body.clone()).await;
    assert_eq!(
        (r.status, r.body["error"].clone()),
        (
            StatusCode::UNPROCESSABLE_ENTITY,
            json!("MaintenanceInfoConflict")
        )
    );
    body["maintenance_info"] = json!({"version": "2.0.0"});
    assert_eq!(
        app.provision(&new_id(), body.clone()).await.status,
        StatusCode::CREATED
    );
    body["plan_id"] = json!("plan-small");
    let r = app.provision(&new_id(), body).await;
    assert_eq!(
        r.status,
        StatusCode::UNPROCESSABLE_ENTITY,
        "a plan without maintenance_info conflicts too"
    );
}

#[tokio::test]
async fn v2_15_an_update_with_only_a_newer_maintenance_info_is_an_upgrade_the_backend_performs() {
    let mut app = quiet_app().await;
    let id = new_id();
    app.provisioned(&id, "plan-large").await;
    // The catalog moved on since this instance was provisioned.
    sqlx::query("update service_instance set maintenance_version = '1.0.0' where instance_id = $1")
        .bind(&id)
        .execute(app.db_pool())
        .await
        .unwrap();
    app.version = "2.17".into();
    let before = app
        .send(Method::GET, &format!("/v2/service_instances/{id}"), None)
        .await;
    assert_eq!(before.body["maintenance_info"], json!({"version": "1.0.0"}));
    let r = app
        .update(
            &id,
            "",
            json!({"service_id": "svc-db", "maintenance_info": {"version": "2.0.0"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    assert_eq!(
        app.backend.count("update", &id),
        1,
        "the backend applied the plan again"
    );
    let after = app
        .send(Method::GET, &format!("/v2/service_instances/{id}"), None)
        .await;
    assert_eq!(after.body["maintenance_info"], json!({"version": "2.0.0"}));
    let again = app
        .update(
            &id,
            "",
            json!({"service_id": "svc-db", "maintenance_info": {"version": "2.0.0"}}),
        )
        .await;
    assert_eq!(again.status, StatusCode::OK);
    assert_eq!(
        app.backend.count("update", &id),
        1,
        "already at that version: nothing to do"
    );
    app.version = "2.13".into();
    app.update(
        &id,
        "",
        json!({"service_id": "svc-db", "maintenance_info": {"version": "9.9.9"}}),
    )
    .await;
    assert_eq!(
        app.backend.count("update", &id),
        1,
        "2.13 ignores maintenance_info"
    );
}

#[tokio::test]
async fn v2_16_and_v2_17_instance_metadata_carries_labels_then_attributes() {
    let mut app = quiet_app().await;
    let r = app
        .provision(&new_id(), provision_body("svc-db", "plan-small"))
        .await;
    assert!(r.body.get("metadata").is_none(), "2.13: no metadata");
    app.version = "2.16".into();
    let r = app
        .provision(&new_id(), provision_body("svc-db", "plan-small"))
        .await;
    assert_eq!(
        r.body["metadata"]["labels"],
        json!({"bindery.service": "test-db", "bindery.plan": "small"})
    );
    assert!(
        r.body["metadata"].get("attributes").is_none(),
        "attributes are 2.17"
    );
    app.version = "2.17".into();
    let id = new_id();
    let r = app
        .provision(&id, provision_body("svc-db", "plan-small"))
        .await;
    assert_eq!(
        r.body["metadata"]["attributes"],
        json!({"bindery.backend": "recording"})
    );
    let r = app
        .update(
            &id,
            "",
            json!({"service_id": "svc-db", "parameters": {"size": 2}}),
        )
        .await;
    assert_eq!(r.body["metadata"]["labels"]["bindery.plan"], "small");
    let r = app
        .send(Method::GET, &format!("/v2/service_instances/{id}"), None)
        .await;
    assert!(r.body["metadata"]["labels"].is_object());
}

#[tokio::test]
async fn v2_16_a_failed_update_reports_instance_usable_and_update_repeatable() {
    let mut app = quiet_app().await;
    let id = new_id();
    app.provisioned(&id, "plan-update-fails").await;
    let r = app
        .update(
            &id,
            "?accepts_incomplete=true",
            json!({"service_id": "svc-db", "parameters": {"size": 2}}),
        )
        .await;
    let op = r.body["operation"].as_str().unwrap().to_owned();
    app.drain().await;
    let poll = app.last_operation(&id, &format!("?operation={op}")).await;
    assert_eq!(poll.body["state"], "failed");
    assert!(poll.body.get("instance_usable").is_none(), "2.13: absent");
    assert!(poll.body.get("update_repeatable").is_none());
    app.version = "2.16".into();
    let poll = app.last_operation(&id, &format!("?operation={op}")).await;
    assert_eq!(
        (
            poll.body["instance_usable"].clone(),
            poll.body["update_repeatable"].clone()
        ),
        (json!(true), json!(true))
    );
    let i = app.store.find_instance(&id).await.unwrap().unwrap();
    assert_eq!(i.parameters, json!({}), "a failed update changes nothing");
}

#[tokio::test]
async fn v2_16_and_v2_17_bindings_of_a_plan_with_a_lifetime_carry_expires_at_then_renew_before() {
    let mut app = quiet_app().await;
    let id = new_id();
    app.provisioned(&id, "plan-expiring").await;
    let r = app
        .bind(&id, &new_id(), bind_body("svc-db", "plan-expiring"))
        .await;
    assert!(r.body.get("metadata").is_none(), "2.13: no metadata");
    app.version = "2.16".into();
    let r = app
        .bind(&id, &new_id(), bind_body("svc-db", "plan-expiring"))
        .await;
    let expires = r.body["metadata"]["expires_at"]
        .as_str()
        .unwrap()
        .to_owned();
    let expires_at = chrono::DateTime::parse_from_rfc3339(&expires).unwrap();
    let hour = (expires_at.with_timezone(&chrono::Utc) - chrono::Utc::now()).num_seconds();
    assert!((3590..=3600).contains(&hour), "{hour}");
    assert!(expires.ends_with('Z'));
    assert!(
        r.body["metadata"].get("renew_before").is_none(),
        "renew_before is 2.17"
    );
    app.version = "2.17".into();
    let b = new_id();
    let r = app
        .bind(&id, &b, bind_body("svc-db", "plan-expiring"))
        .await;
    let renew =
        chrono::DateTime::parse_from_rfc3339(r.body["metadata"]["renew_before"].as_str().unwrap())
            .unwrap();
    let expires =
        chrono::DateTime::parse_from_rfc3339(r.body["metadata"]["expires_at"].as_str().unwrap())
            .unwrap();
    assert!(renew < expires);
    let replay = app
        .bind(&id, &b, bind_body("svc-db", "plan-expiring"))
        .await;
    assert_eq!(
        replay.body["metadata"], r.body["metadata"],
        "the stored expiry, not a new one"
    );
    let fetched = app
        .send(
            Method::GET,
            &format!("/v2/service_instances/{id}/service_bindings/{b}"),
            None,
        )
        .await;
    assert_eq!(fetched.body["metadata"], r.body["metadata"]);
}

#[tokio::test]
async fn v2_17_binding_rotation_creates_a_successor_and_keeps_the_predecessor() {
    let mut app = quiet_app().await;
    let id = new_id();
    app.provisioned(&id, "plan-expiring").await;
    let old = new_id();
    let mut body = bind_body("svc-db", "plan-expiring");
    body["parameters"] = json!({"read_only": true});
    let first = app.bind(&id, &old, body).await;
    app.version = "2.17".into();
    let new = new_id();
    let rotated = app
        .bind(&id, &new, json!({"predecessor_binding_id": old}))
        .await;
    assert_eq!(rotated.status, StatusCode::CREATED, "{}", rotated.raw);
    assert_ne!(
        rotated.body["credentials"]["password"],
        first.body["credentials"]["password"]
    );
    let successor = app.store.find_binding(&new).await.unwrap().unwrap();
    assert_eq!(
        successor.parameters,
        json!({"read_only": true}),
        "parameters carried over"
    );
    assert_eq!(successor.app_guid.as_deref(), Some("app-1"));
    let predecessor = app
        .send(
            Method::GET,
            &format!("/v2/service_instances/{id}/service_bindings/{old}"),
            None,
        )
        .await;
    assert_eq!(
        predecessor.status,
        StatusCode::OK,
        "the predecessor stays valid"
    );

    let unknown = app
        .bind(&id, &new_id(), json!({"predecessor_binding_id": "nope"}))
        .await;
    assert_eq!(unknown.status, StatusCode::BAD_REQUEST);
    let other = new_id();
    app.provisioned(&other, "plan-small").await;
    let b = new_id();
    app.bind(&other, &b, bind_body("svc-db", "plan-small"))
        .await;
    let not_rotatable = app
        .bind(&other, &new_id(), json!({"predecessor_binding_id": b}))
        .await;
    assert_eq!(not_rotatable.status, StatusCode::UNPROCESSABLE_ENTITY);
    app.version = "2.16".into();
    let old_client = app
        .bind(&id, &new_id(), json!({"predecessor_binding_id": old}))
        .await;
    assert_eq!(
        old_client.status,
        StatusCode::BAD_REQUEST,
        "before 2.17 it is an ordinary bind without service_id"
    );
}
