//! Moving from the SQLite store to PostgreSQL (`bindery migrate-store`): state made
//! through the API on SQLite reads back unchanged through the API on PostgreSQL.

use bindery::store::{Store, StoreOptions, copy::copy_state};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

/// Everything the API tells about the instances and bindings, as (path, status, body).
async fn observe(
    app: &TestApp,
    instances: &[String],
    bindings: &[(String, String)],
) -> Vec<(String, u16, Value)> {
    let mut seen = Vec::new();
    for id in instances {
        for path in [
            format!("/v2/service_instances/{id}"),
            format!("/v2/service_instances/{id}/last_operation"),
        ] {
            let r = app.send(Method::GET, &path, None).await;
            seen.push((path, r.status.as_u16(), r.body));
        }
    }
    for (id, b) in bindings {
        let path = format!("/v2/service_instances/{id}/service_bindings/{b}");
        let r = app.send(Method::GET, &path, None).await;
        seen.push((path, r.status.as_u16(), r.body));
    }
    seen
}

#[tokio::test]
async fn state_made_on_sqlite_reads_back_unchanged_on_postgres_after_migrate_store() {
    let dir = std::env::temp_dir().join(format!("bindery-move-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let sqlite_url = format!("sqlite://{}", dir.join("bindery.db").display());
    let mut app = TestApp::spawn_with(Spawn {
        env: vec![("DATABASE_URL".into(), sqlite_url.clone())],
        run_worker: false,
        ..Spawn::default()
    })
    .await;
    app.version = "2.14".into();

    // Instances provisioned inline and asynchronously, one updated, one deleted;
    // bindings with credentials, one unbound.
    let mut instances = Vec::new();
    let mut bindings = Vec::new();
    for i in 0..6 {
        let id = new_id();
        let mut body = provision_body("svc-db", "plan-small");
        body["context"] = json!({"platform": "kubernetes", "namespace": format!("ns-{i}")});
        let r = if i % 2 == 0 {
            app.provision(&id, body).await
        } else {
            app.provision_async(&id, body).await
        };
        assert!(r.status.is_success(), "{r:?}");
        instances.push(id);
    }
    assert_eq!(app.drain().await, 3);
    for id in &instances[..3] {
        for _ in 0..2 {
            let b = new_id();
            let r = app.bind(id, &b, bind_body("svc-db", "plan-small")).await;
            assert_eq!(r.status, StatusCode::CREATED, "{r:?}");
            bindings.push((id.clone(), b));
        }
    }
    let r = app
        .update(
            &instances[3],
            "",
            json!({"service_id": "svc-db", "parameters": {"size": 7}}),
        )
        .await;
    assert!(r.status.is_success(), "{r:?}");
    let (id, b) = &bindings[1];
    let r = app
        .unbind(id, b, "?service_id=svc-db&plan_id=plan-small")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app
        .deprovision(&instances[5], "?service_id=svc-db&plan_id=plan-small")
        .await;
    assert_eq!(r.status, StatusCode::OK);

    let before = observe(&app, &instances, &bindings).await;
    assert!(
        before
            .iter()
            .any(|(_, _, body)| body.get("credentials").is_some()),
        "bindings with credentials are compared"
    );
    app.flush_audit().await;
    app.shut_down();

    // `bindery migrate-store --from sqlite://… --to postgres://…`, in this process:
    // the broker above still holds the SQLite file, which a second process may not open.
    let postgres_url = format!(
        "{}/bindery_test_{}",
        server_url(),
        uuid::Uuid::new_v4().simple()
    );
    let from = Store::open(&sqlite_url, &StoreOptions::default())
        .await
        .unwrap();
    let to = Store::open(&postgres_url, &StoreOptions::default())
        .await
        .unwrap();
    let counts = copy_state(&from, &to, 2).await.unwrap();
    assert_eq!(counts.instances, 6, "{counts:?}");
    assert_eq!(counts.bindings, 6, "{counts:?}");
    to.close().await;

    let mut moved = TestApp::spawn_with(Spawn {
        env: vec![("DATABASE_URL".into(), postgres_url)],
        ..Spawn::default()
    })
    .await;
    moved.version = "2.14".into();
    let after = observe(&moved, &instances, &bindings).await;
    assert_eq!(before.len(), after.len());
    for (b, a) in before.iter().zip(&after) {
        assert_eq!(b, a, "{} differs after the move", b.0);
    }
    // The moved state is live: the deleted instance's id stays gone, an identical
    // provision is recognised, and the moved bindings can be unbound.
    let r = moved
        .deprovision(&instances[5], "?service_id=svc-db&plan_id=plan-small")
        .await;
    assert_eq!(r.status, StatusCode::GONE);
    let mut body = provision_body("svc-db", "plan-small");
    body["context"] = json!({"platform": "kubernetes", "namespace": "ns-0"});
    assert_eq!(
        moved.provision(&instances[0], body).await.status,
        StatusCode::OK
    );
    let (id, b) = &bindings[0];
    let r = moved
        .unbind(id, b, "?service_id=svc-db&plan_id=plan-small")
        .await;
    assert_eq!(r.status, StatusCode::OK);
    std::fs::remove_dir_all(&dir).ok();
}
