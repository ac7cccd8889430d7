//! Binding expiry on the four real backends (issue 13, item 6): a binding of a plan
//! with `binding_lifetime` works until its `expires_at`, then the managed server
//! refuses its credentials; fetch and an identical PUT still answer, without
//! credentials; the platform's DELETE answers 200 and the user stays gone.

use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::StatusCode;
use serde_json::Value;
use sqlx::Connection as _;

use crate::helpers::*;

/// Seconds a binding of the test catalog's plans lives.
const LIFETIME: i64 = 6;

#[derive(Debug, Clone, Copy)]
enum Kind {
    Postgres,
    MariaDb,
    Redis,
    RabbitMq,
}

impl Kind {
    /// The shipped catalog's service and first plan of this backend.
    fn service_and_plan(self) -> (&'static str, &'static str) {
        match self {
            Self::Postgres => (
                "6f0a9d4e-2c1b-4d8e-9a57-0b3e1c2d4f60",
                "1c7e5b90-8f3a-4e21-b6d4-5a0c9e8f7d11",
            ),
            Self::MariaDb => (
                "8d4f1b63-2a7c-4e95-b0d8-5c3a9e1f7b40",
                "6b9e3d15-8c2f-4a70-9d41-2f7c5a8e0b61",
            ),
            Self::Redis => (
                "4c6e8a20-1b3d-4f59-9e72-8d0a6c4b2e50",
                "7f3b9d52-4e6a-4c18-b2d5-1a8e0f6c3d91",
            ),
            Self::RabbitMq => (
                "9b2c7e41-3f5a-4d6e-8c19-4e7a2b5d0c70",
                "2d8f6a13-9c4b-4e57-b1a0-6f3e8d2c5b81",
            ),
        }
    }

    /// True when the managed server accepts the binding's credentials.
    async fn accepts(self, credentials: &Value) -> bool {
        let uri = credentials["uri"].as_str().expect("a uri");
        let attempt = async {
            match self {
                Self::Postgres => sqlx::PgConnection::connect(uri).await.is_ok(),
                Self::MariaDb => sqlx::MySqlConnection::connect(uri).await.is_ok(),
                Self::Redis => {
                    let Ok(client) = redis::Client::open(uri) else {
                        return false;
                    };
                    match client.get_multiplexed_async_connection().await {
                        Ok(mut conn) => redis::cmd("PING")
                            .query_async::<String>(&mut conn)
                            .await
                            .is_ok(),
                        Err(_) => false,
                    }
                }
                Self::RabbitMq => {
                    match lapin::Connection::connect(uri, lapin::ConnectionProperties::default())
                        .await
                    {
                        Ok(conn) => {
                            let _ = conn.close(0, "checked".into()).await;
                            true
                        }
                        Err(_) => false,
                    }
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), attempt)
            .await
            .expect("the managed server answers")
    }

    /// True when the managed server still has the user `name`, asked as its admin.
    async fn has_user(self, name: &str) -> bool {
        match self {
            Self::Postgres => {
                let mut admin =
                    sqlx::PgConnection::connect("postgres://postgres@127.0.0.1:5432/postgres")
                        .await
                        .unwrap();
                sqlx::query_scalar::<_, bool>(
                    "select exists (select 1 from pg_roles where rolname = $1)",
                )
                .bind(name)
                .fetch_one(&mut admin)
                .await
                .unwrap()
            }
            Self::MariaDb => {
                let mut admin = sqlx::MySqlConnection::connect("mysql://root@127.0.0.1:3306")
                    .await
                    .unwrap();
                sqlx::query_scalar::<_, i64>("select count(*) from mysql.user where user = ?")
                    .bind(name)
                    .fetch_one(&mut admin)
                    .await
                    .unwrap()
                    > 0
            }
            Self::Redis => {
                let client = redis::Client::open("redis://127.0.0.1:6379").unwrap();
                let mut admin = client.get_multiplexed_async_connection().await.unwrap();
                let user: redis::Value = redis::cmd("ACL")
                    .arg("GETUSER")
                    .arg(name)
                    .query_async(&mut admin)
                    .await
                    .unwrap();
                user != redis::Value::Nil
            }
            Self::RabbitMq => {
                let status = reqwest::Client::new()
                    .get(format!("http://127.0.0.1:15672/api/users/{name}"))
                    .basic_auth("guest", Some("guest"))
                    .send()
                    .await
                    .unwrap()
                    .status();
                assert!(status == StatusCode::OK || status == StatusCode::NOT_FOUND);
                status == StatusCode::OK
            }
        }
    }
}

/// A broker with every built-in backend and the shipped catalog, whose first plan of
/// each service gives bindings a lifetime of [`LIFETIME`] seconds.
async fn spawn() -> TestApp {
    let env = [
        (
            "BINDERY_POSTGRES_ADMIN_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        ),
        ("BINDERY_POSTGRES_NAME_PREFIX", "bdexp"),
        ("BINDERY_MARIADB_ADMIN_URL", "mysql://root@127.0.0.1:3306"),
        ("BINDERY_MARIADB_NAME_PREFIX", "bdexp"),
        ("BINDERY_REDIS_ADMIN_URL", "redis://127.0.0.1:6379"),
        ("BINDERY_REDIS_NAME_PREFIX", "bdexp"),
        ("BINDERY_RABBITMQ_API_URL", "http://127.0.0.1:15672"),
        ("BINDERY_RABBITMQ_NAME_PREFIX", "bdexp"),
    ];
    let mut catalog = shipped_catalog();
    for kind in [Kind::Postgres, Kind::MariaDb, Kind::Redis, Kind::RabbitMq] {
        let plan_line = format!("      - id: {}\n", kind.service_and_plan().1);
        assert!(catalog.contains(&plan_line), "{kind:?}'s plan is shipped");
        catalog = catalog.replace(
            &plan_line,
            &format!("{plan_line}        binding_lifetime: {LIFETIME}\n"),
        );
    }
    TestApp::spawn_with(Spawn {
        catalog,
        registry: Some(builtin_registry(&env)),
        ..Spawn::default()
    })
    .await
}

async fn credentials_stop_working_at_expiry(kind: Kind) {
    let mut app = spawn().await;
    app.version = "2.16".into();
    let (service, plan) = kind.service_and_plan();
    let query = format!("?service_id={service}&plan_id={plan}");
    let id = new_id();
    let r = app.provision(&id, provision_body(service, plan)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);

    let binding = new_id();
    let path = format!("/v2/service_instances/{id}/service_bindings/{binding}");
    let bound = app.bind(&id, &binding, bind_body(service, plan)).await;
    assert_eq!(bound.status, StatusCode::CREATED, "{}", bound.raw);
    let credentials = bound.body["credentials"].clone();
    let username = credentials["username"].as_str().unwrap().to_owned();
    let expires_at: DateTime<Utc> = bound.body["metadata"]["expires_at"]
        .as_str()
        .expect("2.16 shows expires_at")
        .parse()
        .unwrap();
    assert!(kind.accepts(&credentials).await, "the new binding works");
    assert!(kind.has_user(&username).await);
    assert!(
        Utc::now() < expires_at,
        "checked before the binding expired (a slow machine makes this test meaningless)"
    );

    // Refused by the server from expires_at on, within a few sweeps.
    let refused_at = loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        if !kind.accepts(&credentials).await {
            break Utc::now();
        }
        assert!(
            Utc::now() < expires_at + chrono::Duration::seconds(30),
            "{kind:?}: the credentials still work 30 s after the binding expired"
        );
    };
    assert!(
        refused_at >= expires_at,
        "{kind:?}: refused at {refused_at}, before expiry at {expires_at}"
    );
    assert!(
        !kind.has_user(&username).await,
        "{kind:?}: the user is dropped"
    );

    // Still a binding: fetched and repeated without credentials, and never recreated.
    let fetched = app.send(reqwest::Method::GET, &path, None).await;
    assert_eq!(fetched.status, StatusCode::OK, "{}", fetched.raw);
    assert_eq!(fetched.body["credentials"], serde_json::json!({}));
    assert_eq!(
        fetched.body["metadata"]["expires_at"],
        bound.body["metadata"]["expires_at"]
    );
    let repeated = app.bind(&id, &binding, bind_body(service, plan)).await;
    assert_eq!(repeated.status, StatusCode::OK, "{}", repeated.raw);
    assert_eq!(repeated.body["credentials"], serde_json::json!({}));
    assert!(
        !kind.has_user(&username).await,
        "a repeated PUT recreates nothing"
    );
    let polled = app
        .send(
            reqwest::Method::GET,
            &format!("{path}/last_operation"),
            None,
        )
        .await;
    assert_eq!(
        polled.body["state"], "succeeded",
        "last_operation still reports the bind: {}",
        polled.raw
    );

    // The platform's unbind finishes it.
    let r = app.unbind(&id, &binding, &query).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    assert!(!kind.has_user(&username).await);
    assert_eq!(
        app.send(reqwest::Method::GET, &path, None).await.status,
        StatusCode::NOT_FOUND
    );
    let r = app.deprovision(&id, &query).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
}

#[tokio::test]
async fn an_expired_postgresql_binding_is_refused_by_the_server_and_still_unbindable() {
    credentials_stop_working_at_expiry(Kind::Postgres).await;
}

#[tokio::test]
async fn an_expired_mariadb_binding_is_refused_by_the_server_and_still_unbindable() {
    credentials_stop_working_at_expiry(Kind::MariaDb).await;
}

#[tokio::test]
async fn an_expired_redis_binding_is_refused_by_the_server_and_still_unbindable() {
    credentials_stop_working_at_expiry(Kind::Redis).await;
}

#[tokio::test]
async fn an_expired_rabbitmq_binding_is_refused_by_the_server_and_still_unbindable() {
    credentials_stop_working_at_expiry(Kind::RabbitMq).await;
}
