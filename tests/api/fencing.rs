//! Fenced operations (issue 19, item 1): a run whose claim was superseded can never
//! write, and what it did to the managed server agrees with what the current run
//! stored. Reproduced as it was found: a frozen Redis (SIGSTOP) holds the first runs
//! of async binds, the state database goes away for longer than the lease, the same
//! process claims the binds again, then Redis resumes and both runs' commands land.
//! Private servers only: a PostgreSQL cluster for the state and a Redis of the test's
//! own; the shared ones are never stopped.

use std::time::Duration;

use reqwest::{Method, StatusCode};

use crate::helpers::*;
use crate::private_pg::PrivateCluster;
use crate::private_redis::PrivateRedis;

const REDIS_SERVICE: &str = "4c6e8a20-1b3d-4f59-9e72-8d0a6c4b2e50";
const REDIS_PLAN: &str = "0a5d2c84-7b9e-4f31-8c6a-3e1f9b7d5c02";

#[tokio::test]
async fn binds_rerun_after_a_state_outage_while_redis_was_frozen_store_working_credentials() {
    let cluster = PrivateCluster::start();
    let redis = PrivateRedis::start();
    let admin_url = redis.admin_url();
    let backends = [
        ("BINDERY_REDIS_ADMIN_URL", admin_url.as_str()),
        ("BINDERY_REDIS_NAME_PREFIX", "bdfence"),
    ];
    let mut app = TestApp::spawn_with(Spawn {
        catalog: shipped_catalog(),
        registry: Some(builtin_registry(&backends)),
        env: vec![
            ("DATABASE_URL".into(), cluster.url("bindery_fencing")),
            ("BINDERY_LEASE_SECONDS".into(), "3".into()),
            ("BINDERY_WORKER_CONCURRENCY".into(), "32".into()),
        ],
        ..Spawn::default()
    })
    .await;
    app.version = "2.14".into();

    let instance = new_id();
    let r = app
        .provision(&instance, provision_body(REDIS_SERVICE, REDIS_PLAN))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);

    // Redis freezes; async binds are claimed and their first runs hang on it.
    redis.freeze();
    let bindings: Vec<String> = (0..12).map(|_| new_id()).collect();
    for binding in &bindings {
        let r = app
            .send(
                Method::PUT,
                &format!(
                    "/v2/service_instances/{instance}/service_bindings/{binding}?accepts_incomplete=true"
                ),
                Some(bind_body(REDIS_SERVICE, REDIS_PLAN)),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.raw);
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // The state database goes away for longer than the lease: no renewal lands, and
    // once it is back the same process claims every bind again.
    cluster.crash();
    tokio::time::sleep(Duration::from_secs(5)).await;
    cluster.resume();
    tokio::time::sleep(Duration::from_secs(3)).await;
    // Redis resumes: the stale runs' commands and the current runs' land in turn.
    redis.resume();

    for binding in &bindings {
        let path =
            format!("/v2/service_instances/{instance}/service_bindings/{binding}/last_operation");
        let mut state = String::new();
        for _ in 0..120 {
            let r = app.send(Method::GET, &path, None).await;
            state = r.body["state"].as_str().unwrap_or_default().to_owned();
            if r.status == StatusCode::OK && state != "in progress" {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        assert_eq!(state, "succeeded", "binding {binding}");
        let r = app
            .send(
                Method::GET,
                &format!("/v2/service_instances/{instance}/service_bindings/{binding}"),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
        let credentials = &r.body["credentials"];
        let (user, password) = (
            credentials["username"].as_str().unwrap(),
            credentials["password"].as_str().unwrap(),
        );
        let whoami = redis.as_user(user, password, &["ACL", "WHOAMI"]);
        assert_eq!(
            whoami.as_deref(),
            Some(user),
            "binding {binding}: the stored credentials must work on the server"
        );
    }

    // Nothing is left behind.
    for binding in &bindings {
        let r = app
            .unbind(
                &instance,
                binding,
                &format!("?service_id={REDIS_SERVICE}&plan_id={REDIS_PLAN}"),
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    }
    let r = app
        .deprovision(
            &instance,
            &format!("?service_id={REDIS_SERVICE}&plan_id={REDIS_PLAN}"),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    let users = redis.admin(&["ACL", "USERS"]).unwrap();
    assert!(!users.contains("bdfence"), "{users}");
}
