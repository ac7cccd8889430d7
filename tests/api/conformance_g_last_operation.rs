//! Group G: `GET /v2/service_instances/:id/last_operation`. OSB spec (`spec.md`):
//! "Polling Last Operation for Service Instances".

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

const DEL: &str = "?service_id=svc-db&plan_id=plan-small";

async fn quiet_app() -> TestApp {
    TestApp::spawn_with(Spawn {
        run_worker: false,
        ..Spawn::default()
    })
    .await
}

#[tokio::test]
async fn g101_g102_a_poll_returns_200_with_one_of_the_three_states() {
    let app = quiet_app().await;
    let id = new_id();
    let r = app
        .provision_async(&id, provision_body("svc-db", "plan-small"))
        .await;
    let op = r.body["operation"].as_str().unwrap().to_owned();
    let r = app.last_operation(&id, &format!("?operation={op}")).await;
    assert_eq!(
        (r.status, r.body["state"].clone()),
        (StatusCode::OK, json!("in progress"))
    );
    app.drain().await;
    let r = app.last_operation(&id, &format!("?operation={op}")).await;
    assert_eq!(
        (r.status, r.body["state"].clone()),
        (StatusCode::OK, json!("succeeded"))
    );
    let failed = new_id();
    let r = app
        .provision_async(&failed, provision_body("svc-db", "plan-failing"))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    app.drain().await;
    let r = app.last_operation(&failed, "").await;
    assert_eq!(r.body["state"], "failed");
}

#[tokio::test]
async fn g103_g110_a_failed_operation_has_a_non_empty_user_facing_description() {
    let app = quiet_app().await;
    let id = new_id();
    app.provision_async(&id, provision_body("svc-db", "plan-failing"))
        .await;
    app.drain().await;
    let r = app.last_operation(&id, "").await;
    let description = r.body["description"].as_str().unwrap();
    assert!(
        description.contains("refused to provision"),
        "{description}"
    );
}

#[tokio::test]
async fn g104_the_operation_value_is_percent_decoded_and_matched() {
    let app = quiet_app().await;
    let id = new_id();
    let first = app
        .provision_async(&id, provision_body("svc-db", "plan-small"))
        .await;
    app.drain().await;
    let update = app
        .update(
            &id,
            "?accepts_incomplete=true",
            json!({"service_id": "svc-db", "parameters": {"size": 2}}),
        )
        .await;
    let first_op = first.body["operation"].as_str().unwrap();
    let encoded = first_op.replace('-', "%2D");
    let r = app
        .last_operation(&id, &format!("?operation={encoded}"))
        .await;
    assert_eq!(
        r.body["state"], "succeeded",
        "the provision, not the newer update"
    );
    let update_op = update.body["operation"].as_str().unwrap();
    let r = app
        .last_operation(&id, &format!("?operation={update_op}"))
        .await;
    assert_eq!(r.body["state"], "in progress");
    let r = app.last_operation(&id, "?operation=not-one-of-ours").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn g105_polls_without_any_hint_are_served() {
    let app = quiet_app().await;
    let id = new_id();
    app.provision_async(&id, provision_body("svc-db", "plan-small"))
        .await;
    let r = app.last_operation(&id, "").await;
    assert_eq!(r.body["state"], "in progress");
    let r = app
        .last_operation(&id, "?service_id=svc-db&plan_id=plan-small")
        .await;
    assert_eq!(r.body["state"], "in progress");
}

#[tokio::test]
async fn g106_a_malformed_poll_gets_400() {
    let app = quiet_app().await;
    let id = new_id();
    app.provisioned(&id, "plan-small").await;
    let r = app
        .last_operation(&id, &format!("?operation={}", new_id()))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body["description"].is_string());
    // Another instance's operation is not this instance's.
    let other = new_id();
    let queued = app
        .provision_async(&other, provision_body("svc-db", "plan-small"))
        .await;
    let op = queued.body["operation"].as_str().unwrap();
    let r = app.last_operation(&id, &format!("?operation={op}")).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{r:?}");
    let r = app
        .last_operation(&other, &format!("?operation={op}"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
}

#[tokio::test]
async fn g107_after_an_async_deprovision_finishes_the_poll_gets_410_with_an_empty_object() {
    let app = quiet_app().await;
    let id = new_id();
    app.provisioned(&id, "plan-small").await;
    let r = app
        .deprovision(&id, &format!("{DEL}&accepts_incomplete=true"))
        .await;
    let op = r.body["operation"].as_str().unwrap().to_owned();
    assert_eq!(
        app.last_operation(&id, &format!("?operation={op}"))
            .await
            .body["state"],
        "in progress"
    );
    app.drain().await;
    for query in [format!("?operation={op}"), String::new()] {
        let r = app.last_operation(&id, &query).await;
        assert_eq!((r.status, r.body), (StatusCode::GONE, json!({})), "{query}");
    }
}

#[tokio::test]
async fn g108_410_is_never_returned_while_polling_a_provision_or_update() {
    let app = quiet_app().await;
    let id = new_id();
    app.provision_async(&id, provision_body("svc-db", "plan-failing"))
        .await;
    for _ in 0..2 {
        let r = app.last_operation(&id, "").await;
        assert_eq!(r.status, StatusCode::OK);
        app.drain().await;
    }
}

#[tokio::test]
async fn g109_state_stays_in_progress_until_the_backend_has_finished() {
    let app = quiet_app().await;
    let id = new_id();
    app.provision_async(&id, provision_body("svc-db", "plan-small"))
        .await;
    assert_eq!(
        app.last_operation(&id, "").await.body["state"],
        "in progress"
    );
    assert_eq!(app.backend.count("provision", &id), 0);
    app.drain().await;
    assert_eq!(app.backend.count("provision", &id), 1);
    assert_eq!(app.last_operation(&id, "").await.body["state"], "succeeded");
}

#[tokio::test]
async fn g111_a_poll_after_a_202_is_answered_by_the_background_worker() {
    let app = TestApp::spawn().await;
    let id = new_id();
    let r = app
        .provision_async(&id, provision_body("svc-db", "plan-slow"))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    let done = app.wait_for_operation(&id, "").await;
    assert_eq!(
        (done.status, done.body["state"].clone()),
        (StatusCode::OK, json!("succeeded"))
    );
}

#[tokio::test]
async fn a_synchronously_provisioned_instance_polls_as_succeeded_and_keeps_answering() {
    let app = quiet_app().await;
    let id = new_id();
    app.provisioned(&id, "plan-small").await;
    for _ in 0..3 {
        assert_eq!(
            app.last_operation(&id, "").await.body,
            json!({"state": "succeeded"})
        );
    }
}

#[tokio::test]
async fn a_poll_for_an_instance_never_seen_gets_404() {
    let app = quiet_app().await;
    let r = app.last_operation(&new_id(), "").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body["description"].is_string());
}

#[tokio::test]
async fn a_failed_provision_carries_no_instance_usable_under_any_version() {
    let mut app = quiet_app().await;
    let failed = new_id();
    app.provision_async(&failed, provision_body("svc-db", "plan-failing"))
        .await;
    app.drain().await;
    for version in ["2.13", "2.16", "2.17"] {
        app.version = version.into();
        let r = app.last_operation(&failed, "").await;
        assert_eq!(r.body["state"], "failed");
        assert!(
            r.body.get("instance_usable").is_none(),
            "{version}: only updates and deprovisions carry it"
        );
        assert!(r.body.get("update_repeatable").is_none(), "{version}");
    }
}
