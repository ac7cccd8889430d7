//! The operation queue driven step by step (no sleeping): claim, lease, retry with
//! backoff, maximum attempts and duration, failure; async bindings; Retry-After; and
//! the broker through an outage of its own database.

use std::time::Duration;

use bindery::worker::{Execution, StepOutcome};
use futures::future::join_all;
use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::helpers::*;
use crate::private_pg::PrivateCluster;

async fn quiet_app() -> TestApp {
    TestApp::spawn_with(Spawn {
        run_worker: false,
        ..Spawn::default()
    })
    .await
}

async fn make_due(app: &TestApp, id: &str) {
    sqlx::query("update operation set next_attempt_at = now() where instance_id = $1 and state = 'in progress'")
        .bind(id)
        .execute(app.db_pool())
        .await
        .unwrap();
}

async fn seconds_until_next_attempt(app: &TestApp, id: &str) -> f64 {
    sqlx::query_scalar("select extract(epoch from next_attempt_at - now())::float8 from operation where instance_id = $1")
        .bind(id)
        .fetch_one(app.db_pool())
        .await
        .unwrap()
}

#[tokio::test]
async fn an_operation_is_claimed_by_exactly_one_worker() {
    let app = quiet_app().await;
    let id = new_id();
    app.provision_async(&id, provision_body("svc-db", "plan-small"))
        .await;
    let claims = join_all((0..8).map(|i| {
        let store = app.store.clone();
        async move {
            store
                .claim_next_operation(&format!("worker-{i}"), Duration::from_secs(30))
                .await
                .unwrap()
        }
    }))
    .await;
    assert_eq!(claims.iter().filter(|c| c.is_some()).count(), 1);
    let owner: String =
        sqlx::query_scalar("select lease_owner from operation where instance_id = $1")
            .bind(&id)
            .fetch_one(app.db_pool())
            .await
            .unwrap();
    assert!(owner.starts_with("worker-"));
}

#[tokio::test]
async fn a_transient_failure_is_retried_with_growing_backoff() {
    let mut app = quiet_app().await;
    app.version = "2.15".into();
    let id = new_id();
    app.provision_async(&id, provision_body("svc-db", "plan-down"))
        .await;
    let StepOutcome::Ran {
        execution: Execution::Retrying(reason),
        ..
    } = app.worker.try_execute_next().await.unwrap()
    else {
        panic!("expected a retry");
    };
    assert!(reason.contains("down"));
    let first_wait = seconds_until_next_attempt(&app, &id).await;
    assert!((1.0..=2.5).contains(&first_wait), "{first_wait}");
    assert!(
        matches!(
            app.worker.try_execute_next().await.unwrap(),
            StepOutcome::EmptyQueue
        ),
        "not due yet"
    );
    let poll = app.last_operation(&id, "").await;
    assert_eq!(poll.body["state"], "in progress");
    assert!(
        poll.body["description"].as_str().unwrap().contains("down"),
        "the user sees why it waits"
    );
    let retry_after: u64 = poll.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=3).contains(&retry_after), "{retry_after}");
    make_due(&app, &id).await;
    app.drain().await;
    let second_wait = seconds_until_next_attempt(&app, &id).await;
    assert!(
        second_wait > first_wait + 1.0,
        "{second_wait} after {first_wait}"
    );
    assert_eq!(app.backend.count("provision", &id), 2);
}

#[tokio::test]
async fn a_transient_failure_becomes_permanent_after_the_maximum_attempts() {
    let app = quiet_app().await;
    let id = new_id();
    app.provision_async(&id, provision_body("svc-db", "plan-down"))
        .await;
    for _ in 0..bindery::worker::execute::MAX_ATTEMPTS {
        make_due(&app, &id).await;
        app.drain().await;
    }
    let r = app.last_operation(&id, "").await;
    assert_eq!(r.body["state"], "failed", "{}", r.raw);
    assert_eq!(
        app.backend.count("provision", &id),
        bindery::worker::execute::MAX_ATTEMPTS as usize
    );
}

#[tokio::test]
async fn a_permanent_failure_fails_at_once_with_a_user_safe_description() {
    let app = quiet_app().await;
    let id = new_id();
    app.provision_async(&id, provision_body("svc-db", "plan-failing"))
        .await;
    let StepOutcome::Ran {
        execution: Execution::Failed { description, .. },
        ..
    } = app.worker.try_execute_next().await.unwrap()
    else {
        panic!("expected a failure");
    };
    assert_eq!(description, "the test backend refused to provision");
    assert_eq!(
        app.last_operation(&id, "").await.body["description"],
        description
    );
}

#[tokio::test]
async fn an_operation_past_its_maximum_duration_is_failed_not_left_in_progress() {
    let app = quiet_app().await;
    let id = new_id();
    app.provision_async(&id, provision_body("svc-db", "plan-small"))
        .await;
    sqlx::query(
        "update operation set deadline_at = now() - interval '1 second' where instance_id = $1",
    )
    .bind(&id)
    .execute(app.db_pool())
    .await
    .unwrap();
    app.drain().await;
    let r = app.last_operation(&id, "").await;
    assert_eq!(r.body["state"], "failed");
    assert!(
        r.body["description"]
            .as_str()
            .unwrap()
            .contains("maximum duration")
    );
    assert_eq!(app.backend.count("provision", &id), 0);
    // The instance is now failed, so orphan mitigation can delete it.
    assert_eq!(
        app.deprovision(&id, "?service_id=svc-db&plan_id=plan-small")
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn async_binds_for_2_14_clients_poll_and_fetch_their_credentials() {
    let mut app = quiet_app().await;
    app.version = "2.14".into();
    let id = new_id();
    app.provisioned(&id, "plan-small").await;
    let b = new_id();
    let path = format!("/v2/service_instances/{id}/service_bindings/{b}");
    let first = app
        .send(
            Method::PUT,
            &format!("{path}?accepts_incomplete=true"),
            Some(bind_body("svc-db", "plan-small")),
        )
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.raw);
    assert!(
        first.body.get("credentials").is_none(),
        "a 202 carries no credentials"
    );
    let again = app
        .send(
            Method::PUT,
            &format!("{path}?accepts_incomplete=true"),
            Some(bind_body("svc-db", "plan-small")),
        )
        .await;
    assert_eq!(
        (again.status, &again.body["operation"]),
        (StatusCode::ACCEPTED, &first.body["operation"])
    );
    assert_eq!(
        app.send(Method::GET, &path, None).await.status,
        StatusCode::NOT_FOUND,
        "404 while being created"
    );
    let poll = app
        .send(Method::GET, &format!("{path}/last_operation"), None)
        .await;
    assert_eq!(poll.body["state"], "in progress");
    app.drain().await;
    let poll = app
        .send(
            Method::GET,
            &format!(
                "{path}/last_operation?operation={}",
                first.body["operation"].as_str().unwrap()
            ),
            None,
        )
        .await;
    assert_eq!(poll.body["state"], "succeeded");
    let fetched = app.send(Method::GET, &path, None).await;
    assert_eq!(fetched.status, StatusCode::OK);
    assert_eq!(fetched.body["credentials"]["username"], format!("user-{b}"));

    let unbind = app
        .send(
            Method::DELETE,
            &format!("{path}?service_id=svc-db&plan_id=plan-small&accepts_incomplete=true"),
            None,
        )
        .await;
    assert_eq!(unbind.status, StatusCode::ACCEPTED);
    app.drain().await;
    let poll = app
        .send(Method::GET, &format!("{path}/last_operation"), None)
        .await;
    assert_eq!((poll.status, poll.body), (StatusCode::GONE, json!({})));
}

#[tokio::test]
async fn binding_last_operation_and_fetch_endpoints_are_absent_for_2_13() {
    let app = quiet_app().await;
    let id = new_id();
    app.provisioned(&id, "plan-small").await;
    let b = new_id();
    app.bind(&id, &b, bind_body("svc-db", "plan-small")).await;
    let path = format!("/v2/service_instances/{id}/service_bindings/{b}");
    assert_eq!(
        app.send(Method::GET, &format!("{path}/last_operation"), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.send(Method::GET, &path, None).await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        app.send(Method::GET, &format!("/v2/service_instances/{id}"), None)
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn fetching_an_instance_from_2_14_returns_its_stored_state() {
    let mut app = quiet_app().await;
    app.version = "2.14".into();
    let id = new_id();
    let mut body = provision_body("svc-db", "plan-dashboard");
    body["parameters"] = json!({"size": 4});
    app.provision_async(&id, body).await;
    let r = app
        .send(Method::GET, &format!("/v2/service_instances/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "404 while provisioning");
    app.drain().await;
    let r = app
        .send(Method::GET, &format!("/v2/service_instances/{id}"), None)
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["plan_id"], "plan-dashboard");
    assert_eq!(r.body["parameters"], json!({"size": 4}));
    assert!(r.body["dashboard_url"].as_str().unwrap().contains(&id));
}

#[tokio::test]
async fn retry_after_is_sent_only_to_2_15_clients() {
    let mut app = quiet_app().await;
    let id = new_id();
    app.provision_async(&id, provision_body("svc-db", "plan-small"))
        .await;
    app.version = "2.14".into();
    assert!(
        app.last_operation(&id, "")
            .await
            .headers
            .get("retry-after")
            .is_none()
    );
    app.version = "2.15".into();
    assert!(
        app.last_operation(&id, "")
            .await
            .headers
            .get("retry-after")
            .is_some()
    );
    app.drain().await;
    assert!(
        app.last_operation(&id, "")
            .await
            .headers
            .get("retry-after")
            .is_none(),
        "not once finished"
    );
}

#[tokio::test]
async fn an_outage_of_the_state_database_gives_503s_and_recovers_without_a_restart() {
    let cluster = PrivateCluster::start();
    let app = TestApp::spawn_with(Spawn {
        env: vec![
            ("DATABASE_URL".into(), cluster.url("bindery_outage")),
            // A request whose outcome could not be recorded leaves its operation leased;
            // a short lease lets the worker finish it within the test.
            ("BINDERY_LEASE_SECONDS".into(), "3".into()),
        ],
        ..Spawn::default()
    })
    .await;
    let before = new_id();
    assert_eq!(
        app.provision(&before, provision_body("svc-db", "plan-small"))
            .await
            .status,
        StatusCode::CREATED
    );

    // Load: provisions of fresh ids, all through the outage.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let load = {
        let app_base = app.base.clone();
        let stop = stop.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            let mut outcomes = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && outcomes.len() < 2000 {
                let id = new_id();
                let started = std::time::Instant::now();
                let r = client
                    .put(format!("{app_base}/v2/service_instances/{id}"))
                    .basic_auth(USER, Some(PASSWORD))
                    .header("X-Broker-API-Version", "2.13")
                    .json(&provision_body("svc-db", "plan-small"))
                    .send()
                    .await
                    .unwrap();
                let status = r.status();
                let body: serde_json::Value = r.json().await.unwrap_or_default();
                outcomes.push((id, status, body, started.elapsed()));
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            outcomes
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.crash();
    tokio::time::sleep(Duration::from_secs(5)).await;
    let during = app.last_operation(&before, "").await;
    assert_eq!(
        during.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        during.raw
    );
    assert!(
        during.body["description"]
            .as_str()
            .unwrap()
            .contains("unavailable")
    );
    let ready = app
        .send_with(Method::GET, "/readyz", None, &[], false)
        .await;
    assert_eq!(ready.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(
        app.catalog().await.status,
        StatusCode::OK,
        "the catalog needs no database"
    );
    cluster.resume();
    let mut recovered = false;
    for _ in 0..50 {
        if app.last_operation(&before, "").await.status == StatusCode::OK {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(recovered, "the broker recovers by itself");
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let outcomes = load.await.unwrap();

    let unavailable = outcomes
        .iter()
        .filter(|o| o.1 == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert!(unavailable > 0, "the outage was seen");
    for (id, status, body, elapsed) in &outcomes {
        assert!(
            *status == StatusCode::CREATED || *status == StatusCode::SERVICE_UNAVAILABLE,
            "{id}: {status} {body}"
        );
        assert!(*elapsed < Duration::from_secs(10), "no hang: {elapsed:?}");
        if *status == StatusCode::SERVICE_UNAVAILABLE {
            assert!(body["description"].is_string(), "an OSB error body");
        }
        // What a platform does next: repeat the request (422 means "retry later"). It converges.
        let mut again = app
            .provision(id, provision_body("svc-db", "plan-small"))
            .await;
        for _ in 0..40 {
            if again.status != StatusCode::UNPROCESSABLE_ENTITY {
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
            again = app
                .provision(id, provision_body("svc-db", "plan-small"))
                .await;
        }
        assert!(
            again.status == StatusCode::OK || again.status == StatusCode::CREATED,
            "{id}: {}",
            again.raw
        );
    }
    let pool = sqlx::PgPool::connect(&cluster.url("bindery_outage"))
        .await
        .unwrap();
    let (instances, distinct): (i64, i64) =
        sqlx::query_as("select count(*), count(distinct instance_id) from service_instance")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(instances, outcomes.len() as i64 + 1);
    assert_eq!(instances, distinct);
    let stuck: i64 =
        sqlx::query_scalar("select count(*) from operation where state = 'in progress'")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stuck, 0, "nothing left in progress");
}

#[tokio::test]
async fn on_shutdown_the_worker_releases_the_leases_of_unfinished_operations() {
    let app = TestApp::spawn_with(Spawn {
        env: vec![("BINDERY_SHUTDOWN_GRACE_SECONDS".into(), "0".into())],
        catalog: crate::support::TEST_CATALOG.replace("delay_ms: 300", "delay_ms: 3000"),
        ..Spawn::default()
    })
    .await;
    let id = new_id();
    app.provision_async(&id, provision_body("svc-db", "plan-slow"))
        .await;
    let owner_of = |pool: sqlx::PgPool, id: String| async move {
        sqlx::query_scalar::<_, Option<String>>(
            "select lease_owner from operation where instance_id = $1",
        )
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap()
    };
    let mut claimed = false;
    for _ in 0..100 {
        if owner_of(app.db_pool().clone(), id.clone()).await.is_some() {
            claimed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(claimed, "the worker took the operation");
    app.shut_down();
    let mut released = false;
    for _ in 0..100 {
        if owner_of(app.db_pool().clone(), id.clone()).await.is_none() {
            released = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        released,
        "the lease was given back, so another replica can take it at once"
    );
    assert_eq!(app.last_operation_state_in_db(&id).await, "in progress");
}
