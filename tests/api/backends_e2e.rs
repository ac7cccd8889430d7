//! The shipped catalog's MariaDB, Redis and RabbitMQ services through the HTTP API on
//! the real servers: a lifecycle each, and bad parameters refused with 400 before any
//! backend work. (What the credentials can and cannot do is proven per backend in
//! tests/<kind>_backend.rs.)

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

async fn spawn() -> TestApp {
    let env = [
        ("BINDERY_MARIADB_ADMIN_URL", "mysql://root@127.0.0.1:3306"),
        ("BINDERY_MARIADB_NAME_PREFIX", "bdhttp"),
        ("BINDERY_REDIS_ADMIN_URL", "redis://127.0.0.1:6379"),
        ("BINDERY_REDIS_NAME_PREFIX", "bdhttp"),
        ("BINDERY_RABBITMQ_API_URL", "http://127.0.0.1:15672"),
        ("BINDERY_RABBITMQ_NAME_PREFIX", "bdhttp"),
    ];
    spawn_shipped_with(&env).await
}

async fn lifecycle(app: &TestApp, service: &str, plan: &str, keys: &[&str]) {
    let id = new_id();
    let r = app
        .provision_async(&id, provision_body(service, plan))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.raw);
    assert_eq!(
        app.wait_for_operation(&id, "").await.body["state"],
        "succeeded"
    );
    let mut bad = bind_body(service, plan);
    bad["parameters"] = json!({"read_only": "yes"});
    let r = app.bind(&id, &new_id(), bad).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.raw);
    let b = new_id();
    let r = app.bind(&id, &b, bind_body(service, plan)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    let credentials = r.body["credentials"].as_object().unwrap();
    for key in keys {
        assert!(
            credentials[*key].as_str().is_some_and(|v| !v.is_empty()),
            "{service}: {key}"
        );
    }
    let q = format!("?service_id={service}&plan_id={plan}");
    assert_eq!(app.unbind(&id, &b, &q).await.status, StatusCode::OK);
    assert_eq!(app.deprovision(&id, &q).await.status, StatusCode::OK);
}

#[tokio::test]
async fn mariadb_redis_and_rabbitmq_instances_go_through_their_lifecycle() {
    let app = spawn().await;
    lifecycle(
        &app,
        "8d4f1b63-2a7c-4e95-b0d8-5c3a9e1f7b40",
        "6b9e3d15-8c2f-4a70-9d41-2f7c5a8e0b61",
        &[
            "uri", "jdbc_url", "host", "port", "database", "username", "password",
        ],
    )
    .await;
    lifecycle(
        &app,
        "4c6e8a20-1b3d-4f59-9e72-8d0a6c4b2e50",
        "7f3b9d52-4e6a-4c18-b2d5-1a8e0f6c3d91",
        &["uri", "host", "port", "username", "password", "key_prefix"],
    )
    .await;
    lifecycle(
        &app,
        "9b2c7e41-3f5a-4d6e-8c19-4e7a2b5d0c70",
        "2d8f6a13-9c4b-4e57-b1a0-6f3e8d2c5b81",
        &[
            "uri",
            "host",
            "port",
            "vhost",
            "username",
            "password",
            "http_api_uri",
        ],
    )
    .await;
}
