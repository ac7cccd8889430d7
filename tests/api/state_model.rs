//! The state model: tombstones, the operation queue across restarts, the audit trail
//! and credentials at rest.

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

#[tokio::test]
async fn an_operation_queued_by_one_broker_is_finished_by_another_after_a_restart() {
    let first = TestApp::spawn_with(Spawn {
        run_worker: false,
        ..Spawn::default()
    })
    .await;
    let id = new_id();
    let r = first
        .provision_async(&id, provision_body("svc-db", "plan-small"))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    // A second broker on the same database (a restart, or another replica).
    let url = format!("{}/{}", server_url(), first.database);
    let second = TestApp::spawn_with(Spawn {
        run_worker: false,
        env: vec![("DATABASE_URL".into(), url)],
        ..Spawn::default()
    })
    .await;
    assert_eq!(second.drain().await, 1);
    assert_eq!(second.backend.count("provision", &id), 1);
    assert_eq!(
        first.last_operation(&id, "").await.body["state"],
        "succeeded",
        "any replica answers"
    );
}

#[tokio::test]
async fn an_inline_operation_whose_broker_died_is_finished_by_the_worker_after_its_lease() {
    let app = TestApp::spawn_with(Spawn {
        run_worker: false,
        env: vec![("BINDERY_LEASE_SECONDS".into(), "3".into())],
        ..Spawn::default()
    })
    .await;
    let id = new_id();
    app.provision_async(&id, provision_body("svc-db", "plan-small"))
        .await;
    // Simulate a broker that leased the operation and died.
    sqlx::query("update operation set lease_owner = 'dead-broker', lease_expires_at = now() + interval '1 hour' where instance_id = $1")
        .bind(&id)
        .execute(app.db_pool())
        .await
        .unwrap();
    assert_eq!(app.drain().await, 0, "a live lease is respected");
    sqlx::query("update operation set lease_expires_at = now() - interval '1 second' where instance_id = $1")
        .bind(&id)
        .execute(app.db_pool())
        .await
        .unwrap();
    assert_eq!(app.drain().await, 1, "an expired lease is taken over");
    assert_eq!(app.last_operation(&id, "").await.body["state"], "succeeded");
}

#[tokio::test]
async fn an_instance_id_can_be_provisioned_again_after_deprovision() {
    let app = TestApp::spawn().await;
    let id = new_id();
    app.provisioned(&id, "plan-small").await;
    assert_eq!(
        app.deprovision(&id, "?service_id=svc-db&plan_id=plan-small")
            .await
            .status,
        StatusCode::OK
    );
    let r = app
        .provision(&id, provision_body("svc-db", "plan-large"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    assert_eq!(app.last_operation(&id, "").await.body["state"], "succeeded");
}

#[tokio::test]
async fn an_identical_put_retries_a_failed_provision() {
    let app = TestApp::spawn().await;
    let id = new_id();
    let mut body = provision_body("svc-db", "plan-small");
    body["parameters"] = json!({"fail": "provision"});
    assert_eq!(
        app.provision(&id, body.clone()).await.status,
        StatusCode::BAD_GATEWAY
    );
    assert_eq!(
        app.provision(&id, body).await.status,
        StatusCode::BAD_GATEWAY,
        "retried, failed again"
    );
    assert_eq!(app.backend.count("provision", &id), 2);
}

#[tokio::test]
async fn every_mutating_request_is_audited_without_its_body() {
    let app = TestApp::spawn().await;
    let id = new_id();
    let mut body = provision_body("svc-db", "plan-small");
    body["parameters"] = json!({"size": 3});
    app.provision(&id, body).await;
    let b = new_id();
    app.bind(&id, &b, bind_body("svc-db", "plan-small")).await;
    app.unbind(&id, &b, "?service_id=svc-db&plan_id=plan-small")
        .await;
    app.deprovision(&id, "?service_id=svc-db&plan_id=plan-small")
        .await;
    app.flush_audit().await;
    let rows: Vec<(String, i32)> = sqlx::query_as(
        "select action, status from audit_event where instance_id = $1 order by audit_event_id",
    )
    .bind(&id)
    .fetch_all(app.db_pool())
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            ("provision".into(), 201),
            ("bind".into(), 201),
            ("unbind".into(), 200),
            ("deprovision".into(), 200)
        ]
    );
}

#[tokio::test]
async fn credentials_are_stored_encrypted() {
    let app = TestApp::spawn().await;
    let id = new_id();
    app.provisioned(&id, "plan-small").await;
    let b = new_id();
    let r = app.bind(&id, &b, bind_body("svc-db", "plan-small")).await;
    let password = r.body["credentials"]["password"]
        .as_str()
        .unwrap()
        .to_owned();
    let dump: String =
        sqlx::query_scalar("select coalesce(string_agg(t::text, ' '), '') from service_binding t")
            .fetch_one(app.db_pool())
            .await
            .unwrap();
    app.flush_audit().await;
    let everything: String = sqlx::query_scalar(
        "select concat((select string_agg(o::text, ' ') from operation o), (select string_agg(a::text, ' ') from audit_event a), (select string_agg(i::text, ' ') from service_instance i))",
    )
    .fetch_one(app.db_pool())
    .await
    .unwrap();
    assert!(
        !dump.contains(&password),
        "the password is not stored in clear"
    );
    assert!(!everything.contains(&password));
    let (label,): (String,) =
        sqlx::query_as("select credentials_key from service_binding where binding_id = $1")
            .bind(&b)
            .fetch_one(app.db_pool())
            .await
            .unwrap();
    assert_eq!(label, "test");
}

#[tokio::test]
async fn readiness_reports_the_database() {
    let app = TestApp::spawn().await;
    let r = app
        .send_with(reqwest::Method::GET, "/readyz", None, &[], false)
        .await;
    assert_eq!(
        (r.status, r.body["status"].clone()),
        (StatusCode::OK, json!("ready"))
    );
    let r = app
        .send_with(reqwest::Method::GET, "/healthz", None, &[], false)
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn a_delete_during_provisioning_stops_the_provision_and_cleans_up_after_it() {
    let app = TestApp::spawn_with(Spawn {
        run_worker: false,
        ..Spawn::default()
    })
    .await;
    let id = new_id();
    let first = app
        .provision_async(&id, provision_body("svc-db", "plan-small"))
        .await;
    let provision_op = first.body["operation"].as_str().unwrap().to_owned();
    let r = app
        .deprovision(
            &id,
            "?service_id=svc-db&plan_id=plan-small&accepts_incomplete=true",
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.raw);
    let delete_op = r.body["operation"].as_str().unwrap().to_owned();
    assert_ne!(delete_op, provision_op);
    let cancelled = app
        .last_operation(&id, &format!("?operation={provision_op}"))
        .await;
    assert_eq!(cancelled.body["state"], "failed");
    assert!(
        cancelled.body["description"]
            .as_str()
            .unwrap()
            .contains("deleted")
    );
    assert_eq!(
        app.drain().await,
        1,
        "only the delete runs; the cancelled provision never does"
    );
    assert_eq!(app.backend.count("provision", &id), 0);
    assert_eq!(app.backend.count("deprovision", &id), 1);
    let r = app
        .last_operation(&id, &format!("?operation={delete_op}"))
        .await;
    assert_eq!(r.status, StatusCode::GONE);
}

#[tokio::test]
async fn a_running_provision_that_is_superseded_stops_at_its_next_lease_renewal() {
    let app = TestApp::spawn_with(Spawn {
        run_worker: false,
        env: vec![("BINDERY_LEASE_SECONDS".into(), "3".into())],
        ..Spawn::default()
    })
    .await;
    let id = new_id();
    app.provision_async(&id, provision_body("svc-db", "plan-slow"))
        .await;
    let op: uuid::Uuid =
        sqlx::query_scalar("select operation_id from operation where instance_id = $1")
            .bind(&id)
            .fetch_one(app.db_pool())
            .await
            .unwrap();
    // Claim it as a worker would, then delete while "it runs".
    let claimed = app
        .store
        .claim_next_operation("other-worker", std::time::Duration::from_secs(3))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(claimed.operation_id, op);
    let r = app
        .deprovision(
            &id,
            "?service_id=svc-db&plan_id=plan-small&accepts_incomplete=true",
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(
        app.drain().await,
        0,
        "the delete waits for the running attempt's lease"
    );
    let token = claimed.lease_token.unwrap();
    let renewed = app
        .store
        .renew_lease(op, token, std::time::Duration::from_secs(3))
        .await
        .unwrap();
    assert!(!renewed, "the running attempt learns it was cancelled");
    assert_eq!(app.drain().await, 0, "until it gives its claim back");
    // It stops and gives its claim back: the delete runs at once, not when the
    // lease would have expired.
    app.store.release_lease(op, token).await.unwrap();
    assert_eq!(app.drain().await, 1);
    assert_eq!(
        app.deprovision(&id, "?service_id=svc-db&plan_id=plan-small")
            .await
            .status,
        StatusCode::GONE
    );
}

/// Issue 13, item 1: a DELETE while an asynchronous provision is still running used to
/// wait a whole lease (30 s) before the deprovision started. The superseded run notices
/// within a second, stops, gives its claim back, and the deprovision runs at once.
#[tokio::test]
async fn a_delete_during_a_running_async_provision_runs_as_soon_as_the_provision_stops() {
    let app = TestApp::spawn_with(Spawn {
        // The provision would take 20 s (the deprovision none); the lease is 30 s.
        catalog: crate::support::TEST_CATALOG.replace(
            "{settings: {delay_ms: 300}}",
            "{settings: {delay_ms: 20000, delay_only: [provision]}}",
        ),
        ..Spawn::default()
    })
    .await;
    let id = new_id();
    let r = app
        .provision_async(&id, provision_body("svc-db", "plan-slow"))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.raw);
    // The worker has claimed the provision and is inside the backend call.
    for _ in 0..100 {
        if app.backend.count("provision", &id) == 1 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(app.backend.count("provision", &id), 1);

    let started = std::time::Instant::now();
    let r = app
        .deprovision(
            &id,
            "?service_id=svc-db&plan_id=plan-slow&accepts_incomplete=true",
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.raw);
    let operation = r.body["operation"].as_str().unwrap().to_owned();
    let query = format!("?operation={operation}");
    let finished = loop {
        let r = app.last_operation(&id, &query).await;
        if r.status != StatusCode::OK || r.body["state"] != "in progress" {
            break r;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(15),
            "the deprovision is still waiting after {:?}",
            started.elapsed()
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    // A deprovision that succeeded answers 410 to a poll without the instance, or
    // `succeeded` with the token.
    assert!(
        finished.status == StatusCode::GONE || finished.body["state"] == "succeeded",
        "{} {}",
        finished.status,
        finished.raw
    );
    assert_eq!(app.backend.count("deprovision", &id), 1);
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "well before the 30 s lease: {:?}",
        started.elapsed()
    );
}
