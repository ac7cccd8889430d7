//! Issue 19, item 2: a synchronous request interrupted by a crash must not block the
//! platform's retry for a whole lease. A broker process is killed with SIGKILL while
//! its synchronous provision hangs on a frozen Redis; a second process on the same
//! state database takes the operation over once the dead process's liveness record
//! lapses (seconds), not when its 30 s lease expires, and the platform's identical
//! retry then gets its answer.

#[path = "common/broker_process.rs"]
mod broker_process;
#[path = "common/private_redis.rs"]
mod private_redis;

use std::time::{Duration, Instant};

use broker_process::BrokerProcess;
use private_redis::PrivateRedis;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

const SERVER: &str = "postgres://postgres@127.0.0.1:5432";
const SERVICE: &str = "4c6e8a20-1b3d-4f59-9e72-8d0a6c4b2e50";
const PLAN: &str = "0a5d2c84-7b9e-4f31-8c6a-3e1f9b7d5c02";
const LIVENESS_SECONDS: u64 = 2;

/// A bindery on `database_url` whose Redis backend is `redis_url`, with a short liveness.
fn start_broker(database_url: &str, redis_url: &str) -> BrokerProcess {
    let liveness = LIVENESS_SECONDS.to_string();
    BrokerProcess::start(&[
        ("DATABASE_URL", database_url),
        ("BINDERY_REDIS_ADMIN_URL", redis_url),
        ("BINDERY_REDIS_NAME_PREFIX", "bdcrash"),
        ("BINDERY_WORKER_LIVENESS_SECONDS", &liveness),
    ])
}

fn provision(client: &reqwest::Client, base: &str, id: &str) -> reqwest::RequestBuilder {
    client
        .put(format!("{base}/v2/service_instances/{id}"))
        .basic_auth("admin", Some("change-me"))
        .header("X-Broker-API-Version", "2.14")
        .json(&json!({
            "service_id": SERVICE,
            "plan_id": PLAN,
            "organization_guid": "org",
            "space_guid": "space",
        }))
}

#[tokio::test]
async fn a_retry_after_a_crash_mid_request_is_answered_long_before_the_lease_expires() {
    let database = format!("bindery_test_{}", uuid::Uuid::new_v4().simple());
    let database_url = format!("{SERVER}/{database}");
    let redis = PrivateRedis::start();
    let client = reqwest::Client::new();
    let mut first = start_broker(&database_url, &redis.admin_url());
    first.ready(&client).await;

    // The synchronous provision hangs on the frozen server; its process dies.
    redis.freeze();
    let id = uuid::Uuid::new_v4().to_string();
    let hung = tokio::spawn(provision(&client, &first.base, &id).send());
    tokio::time::sleep(Duration::from_secs(1)).await;
    first.kill();
    let killed_at = Instant::now();
    assert!(
        hung.await.unwrap().is_err(),
        "the dead process never answered"
    );
    redis.resume();

    // The platform retries the same request against another replica until it gets an
    // answer that is not "in progress elsewhere" (422).
    let second = start_broker(&database_url, &redis.admin_url());
    second.ready(&client).await;
    let (status, body) = loop {
        let response = provision(&client, &second.base, &id).send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status != StatusCode::UNPROCESSABLE_ENTITY {
            break (status, body);
        }
        assert_eq!(body["error"], "ConcurrencyError", "{body}");
        assert!(
            body["description"]
                .as_str()
                .is_some_and(|d| d.contains("taken over within seconds")),
            "the 422 says when a retry will be answered: {body}"
        );
        assert!(
            killed_at.elapsed() < Duration::from_secs(20),
            "still refused {:?} after the crash: {body}",
            killed_at.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert_eq!(status, StatusCode::OK, "{body}");
    let waited = killed_at.elapsed();
    assert!(
        waited < Duration::from_secs(15),
        "answered after {waited:?}, not after the 30 s lease"
    );

    drop(second);
    drop(first);
    let mut admin = PgConnection::connect(&format!("{SERVER}/postgres"))
        .await
        .unwrap();
    sqlx::query(&format!(
        "drop database if exists \"{database}\" with (force)"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
}
