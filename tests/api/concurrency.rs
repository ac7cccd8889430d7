//! Repeated and concurrent requests, as platforms send them (informer caches repeat
//! PUTs and DELETEs; several replicas of a controller may race).

use futures::future::join_all;
use reqwest::StatusCode;

use crate::helpers::*;

#[tokio::test]
async fn twenty_identical_puts_at_once_create_the_instance_once_without_a_5xx() {
    let app = TestApp::spawn().await;
    let id = new_id();
    let replies =
        join_all((0..20).map(|_| app.provision(&id, provision_body("svc-db", "plan-slow")))).await;
    let mut created = 0;
    for r in &replies {
        assert!(!r.status.is_server_error(), "{} {}", r.status, r.raw);
        match r.status {
            StatusCode::CREATED => created += 1,
            StatusCode::OK => {}
            StatusCode::UNPROCESSABLE_ENTITY => assert_eq!(r.body["error"], "ConcurrencyError"),
            other => panic!("unexpected {other}: {}", r.raw),
        }
    }
    assert_eq!(created, 1, "exactly one request created it");
    assert_eq!(
        app.backend.count("provision", &id),
        1,
        "the backend ran once"
    );
    assert_eq!(
        app.provision(&id, provision_body("svc-db", "plan-slow"))
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn twenty_identical_async_puts_at_once_all_get_202_with_one_operation() {
    let app = TestApp::spawn_with(Spawn {
        run_worker: false,
        ..Spawn::default()
    })
    .await;
    let id = new_id();
    let replies =
        join_all((0..20).map(|_| app.provision_async(&id, provision_body("svc-db", "plan-small"))))
            .await;
    let operations: std::collections::HashSet<String> = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.raw);
            r.body["operation"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(operations.len(), 1);
    app.drain().await;
    assert_eq!(app.backend.count("provision", &id), 1);
}

#[tokio::test]
async fn concurrent_binds_of_one_instance_all_succeed_with_distinct_credentials() {
    let app = TestApp::spawn().await;
    let id = new_id();
    app.provisioned(&id, "plan-small").await;
    let ids: Vec<String> = (0..10).map(|_| new_id()).collect();
    let replies = join_all(
        ids.iter()
            .map(|b| app.bind(&id, b, bind_body("svc-db", "plan-small"))),
    )
    .await;
    let passwords: std::collections::HashSet<String> = replies
        .iter()
        .map(|r| {
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
            r.body["credentials"]["password"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(passwords.len(), 10);
}

#[tokio::test]
async fn a_deprovision_racing_binds_never_leaves_a_live_binding_of_a_deleted_instance() {
    let app = TestApp::spawn().await;
    let id = new_id();
    app.provisioned(&id, "plan-slow").await;
    let bindings: Vec<String> = (0..5).map(|_| new_id()).collect();
    let binds = join_all(
        bindings
            .iter()
            .map(|b| app.bind(&id, b, bind_body("svc-db", "plan-slow"))),
    );
    let delete = app.deprovision(&id, "?service_id=svc-db&plan_id=plan-slow");
    let (bind_replies, delete_reply) = tokio::join!(binds, delete);
    for r in &bind_replies {
        assert!(!r.status.is_server_error(), "{}", r.raw);
    }
    if delete_reply.status == StatusCode::OK {
        let live: i64 = sqlx::query_scalar(
            "select count(*) from service_binding where instance_id = $1 and deleted_at is null",
        )
        .bind(&id)
        .fetch_one(app.db_pool())
        .await
        .unwrap();
        assert_eq!(live, 0, "every binding went with the instance");
    } else {
        assert_eq!(
            delete_reply.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{}",
            delete_reply.raw
        );
    }
}
