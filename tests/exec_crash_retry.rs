//! Issue 16: bindery is killed with SIGKILL while an adapter call is in flight; a
//! second bindery on the same state database takes the operation over and runs the
//! adapter again, and the idempotent adapter completes it. The adapter
//! (tests/adapters/test_adapter.py, mode `hang_first`) hangs on its first provision only.

#[path = "common/broker_process.rs"]
mod broker_process;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use broker_process::BrokerProcess;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

const SERVER: &str = "postgres://postgres@127.0.0.1:5432";
const ADAPTER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/adapters/test_adapter.py"
);

/// A bindery on `database_url` serving `catalog`, with a short liveness.
fn start_broker(database_url: &str, catalog: &Path) -> BrokerProcess {
    BrokerProcess::start(&[
        ("DATABASE_URL", database_url),
        ("BINDERY_CATALOG", catalog.to_str().unwrap()),
        ("BINDERY_WORKER_LIVENESS_SECONDS", "2"),
    ])
}

fn provision(client: &reqwest::Client, base: &str, id: &str) -> reqwest::RequestBuilder {
    client
        .put(format!("{base}/v2/service_instances/{id}"))
        .basic_auth("admin", Some("change-me"))
        .header("X-Broker-API-Version", "2.14")
        .json(&json!({
            "service_id": "svc-exec",
            "plan_id": "plan-exec",
            "organization_guid": "org",
            "space_guid": "space",
        }))
}

#[tokio::test]
async fn an_adapter_call_cut_by_sigkill_is_run_again_and_completed_by_the_next_bindery() {
    let dir = std::env::temp_dir().join(format!(
        "bindery-exec-crash-{}",
        uuid::Uuid::new_v4().simple()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let catalog = dir.join("catalog.yaml");
    std::fs::write(
        &catalog,
        format!(
            "services:\n  - id: svc-exec\n    name: exec-crash\n    description: Test adapter.\n    bindable: true\n    backend:\n      kind: exec\n      settings:\n        command: [\"{ADAPTER}\"]\n        timeout_seconds: 60\n        config: {{state_dir: \"{}\", mode: hang_first}}\n    plans:\n      - id: plan-exec\n        name: default\n        description: The only plan.\n",
            dir.display()
        ),
    )
    .unwrap();
    let database = format!("bindery_test_{}", uuid::Uuid::new_v4().simple());
    let database_url = format!("{SERVER}/{database}");
    let client = reqwest::Client::new();
    let mut first = start_broker(&database_url, &catalog);
    first.ready(&client).await;

    let id = uuid::Uuid::new_v4().to_string();
    let hung = tokio::spawn(provision(&client, &first.base, &id).send());
    let started = Instant::now();
    while !dir.join("hung").exists() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the adapter never ran"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    first.kill(); // SIGKILL: no shutdown, the adapter is orphaned
    let killed_at = Instant::now();
    assert!(
        hung.await.unwrap().is_err(),
        "the dead process never answered"
    );

    let second = start_broker(&database_url, &catalog);
    second.ready(&client).await;
    let (status, body) = loop {
        let response = provision(&client, &second.base, &id).send().await.unwrap();
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if status != StatusCode::UNPROCESSABLE_ENTITY {
            break (status, body);
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(30),
            "still refused: {body}"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    assert!(status.is_success(), "{status} {body}");
    let calls = std::fs::read_to_string(dir.join("calls.log")).unwrap();
    assert_eq!(
        calls.lines().filter(|l| *l == "provision").count(),
        2,
        "the adapter ran again after the crash: {calls}"
    );
    assert!(
        std::fs::read_dir(&dir).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("instance-")),
        "the retried provision created the instance"
    );

    // The orphaned first adapter process is the test's to end.
    let orphan = std::fs::read_to_string(dir.join("hung")).unwrap();
    let _ = Command::new("kill").args(["-KILL", orphan.trim()]).status();
    drop(second);
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
