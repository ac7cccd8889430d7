//! Three bindery processes on one database, hundreds of asynchronous operations
//! through all of them, one process killed with SIGKILL in the middle: every
//! operation still ends `succeeded`, every poll is answered by any replica, and the
//! PostgreSQL server is left with exactly what should be there.

#[path = "common/broker_process.rs"]
mod broker_process;

use std::time::{Duration, Instant};

use broker_process::BrokerProcess;

use futures::future::join_all;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

const SERVICE: &str = "6f0a9d4e-2c1b-4d8e-9a57-0b3e1c2d4f60";
const PLAN: &str = "1c7e5b90-8f3a-4e21-b6d4-5a0c9e8f7d11";
const INSTANCES: usize = 100;
const PREFIX: &str = "bdfault";

/// A replica on `database_url` with a short lease and four workers.
fn start(database_url: &str) -> BrokerProcess {
    BrokerProcess::start(&[
        ("DATABASE_URL", database_url),
        (
            "BINDERY_POSTGRES_ADMIN_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        ),
        ("BINDERY_POSTGRES_NAME_PREFIX", PREFIX),
        ("BINDERY_LEASE_SECONDS", "3"),
        ("BINDERY_WORKER_CONCURRENCY", "4"),
        ("BINDERY_LOG", "warn"),
    ])
}

async fn call(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = client
        .request(method, url)
        .basic_auth("admin", Some("change-me"))
        .header("X-Broker-API-Version", "2.14");
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("a live replica answers");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Polls `path` on the live replicas in turn until it leaves `in progress`.
async fn settle(client: &reqwest::Client, bases: &[String], path: &str) -> (StatusCode, Value) {
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut turn = 0;
    loop {
        let base = &bases[turn % bases.len()];
        turn += 1;
        let (status, body) =
            call(client, reqwest::Method::GET, format!("{base}{path}"), None).await;
        assert!(
            status == StatusCode::OK || status == StatusCode::GONE,
            "{path} on {base}: {status} {body}"
        );
        if status == StatusCode::GONE || body["state"] != "in progress" {
            return (status, body);
        }
        assert!(Instant::now() < deadline, "{path} still in progress");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn hash(id: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(id.as_bytes()))[..20].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killing_a_replica_mid_flight_loses_nothing_and_leaves_nothing() {
    let database = format!("bindery_test_fault_{}", uuid::Uuid::new_v4().simple());
    let url = format!("postgres://postgres@127.0.0.1:5432/{database}");
    let client = reqwest::Client::new();
    let mut replicas: Vec<BrokerProcess> = (0..3).map(|_| start(&url)).collect();
    for r in &replicas {
        r.ready(&client).await;
    }
    let all: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();
    let ids: Vec<String> = (0..INSTANCES)
        .map(|_| uuid::Uuid::new_v4().to_string())
        .collect();

    // Provisions through every replica.
    let accepted = join_all(ids.iter().enumerate().map(|(i, id)| {
        let (client, base) = (&client, &all[i % 3]);
        async move {
            let body = json!({"service_id": SERVICE, "plan_id": PLAN, "organization_guid": "o", "space_guid": "s"});
            call(client, reqwest::Method::PUT, format!("{base}/v2/service_instances/{id}?accepts_incomplete=true"), Some(body)).await
        }
    }))
    .await;
    for (status, body) in &accepted {
        assert_eq!(*status, StatusCode::ACCEPTED, "{body}");
    }
    // Kill one replica while its worker holds operations (lease owners name the pid).
    let mut state = PgConnection::connect(&url).await.unwrap();
    let pid_marker = format!("%-{}-%", replicas[0].id());
    let mut held = 0i64;
    for _ in 0..100 {
        held = sqlx::query_scalar(
            "select count(*) from operation where lease_owner like $1 and state = 'in progress'",
        )
        .bind(&pid_marker)
        .fetch_one(&mut state)
        .await
        .unwrap();
        if held > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(held > 0, "the replica to kill was working");
    replicas[0].kill();
    let live: Vec<String> = all[1..].to_vec();

    for id in &ids {
        let (_, body) = settle(
            &client,
            &live,
            &format!("/v2/service_instances/{id}/last_operation"),
        )
        .await;
        assert_eq!(body["state"], "succeeded", "{id}: {body}");
    }
    // Async binds (2.14) and then deprovisions, through the survivors.
    let binds = join_all(ids.iter().enumerate().map(|(i, id)| {
        let (client, base) = (&client, &live[i % 2]);
        async move {
            let body = json!({"service_id": SERVICE, "plan_id": PLAN});
            call(client, reqwest::Method::PUT, format!("{base}/v2/service_instances/{id}/service_bindings/b-{id}?accepts_incomplete=true"), Some(body)).await
        }
    }))
    .await;
    for (status, body) in &binds {
        assert_eq!(*status, StatusCode::ACCEPTED, "{body}");
    }
    for id in &ids {
        let (_, body) = settle(
            &client,
            &live,
            &format!("/v2/service_instances/{id}/service_bindings/b-{id}/last_operation"),
        )
        .await;
        assert_eq!(body["state"], "succeeded", "{id}: {body}");
    }
    let deletes = join_all(ids.iter().enumerate().map(|(i, id)| {
        let (client, base) = (&client, &live[i % 2]);
        async move {
            call(client, reqwest::Method::DELETE, format!("{base}/v2/service_instances/{id}?accepts_incomplete=true&service_id={SERVICE}&plan_id={PLAN}"), None).await
        }
    }))
    .await;
    for (status, body) in &deletes {
        assert_eq!(*status, StatusCode::ACCEPTED, "{body}");
    }
    for id in &ids {
        let (status, _) = settle(
            &client,
            &live,
            &format!("/v2/service_instances/{id}/last_operation"),
        )
        .await;
        assert_eq!(status, StatusCode::GONE, "{id}");
    }

    let (total, succeeded, provisions): (i64, i64, i64) = sqlx::query_as(
        "select count(*), count(*) filter (where state = 'succeeded'), count(*) filter (where kind = 'provision') from operation",
    )
    .fetch_one(&mut state)
    .await
    .unwrap();
    assert_eq!(
        (total, succeeded),
        (3 * INSTANCES as i64, 3 * INSTANCES as i64),
        "every operation succeeded"
    );
    assert_eq!(
        provisions, INSTANCES as i64,
        "one provision per instance, none duplicated"
    );
    let mut admin = PgConnection::connect("postgres://postgres@127.0.0.1:5432/postgres")
        .await
        .unwrap();
    for id in &ids {
        let prefix = format!("{PREFIX}_{}", hash(id));
        let left: i64 = sqlx::query_scalar(
            "select (select count(*) from pg_database where starts_with(datname, $1)) + (select count(*) from pg_roles where starts_with(rolname, $1))",
        )
        .bind(&prefix)
        .fetch_one(&mut admin)
        .await
        .unwrap();
        assert_eq!(left, 0, "{id} left something behind");
    }
    drop(replicas);
    drop(state);
    sqlx::query(&format!(
        "drop database if exists \"{database}\" with (force)"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
}
