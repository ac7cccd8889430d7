//! The shipped catalog with the real PostgreSQL backend, driven through the HTTP API:
//! what a platform does, checked on the server it provisions on.

use bindery::backends::sql_ident::InstanceNames;
use reqwest::StatusCode;
use serde_json::{Value, json};
use sqlx::{Connection, PgConnection};

use crate::helpers::*;

const SERVICE: &str = "6f0a9d4e-2c1b-4d8e-9a57-0b3e1c2d4f60";
const SMALL: &str = "1c7e5b90-8f3a-4e21-b6d4-5a0c9e8f7d11";
const PREFIX: &str = "bdhttp";

fn admin_url() -> String {
    std::env::var("BINDERY_TEST_POSTGRES_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

async fn spawn() -> TestApp {
    // The registry the shipped binary builds, with only PostgreSQL configured: the other
    // services of the shipped catalog are then left out, as on a machine without them.
    let admin = admin_url();
    spawn_shipped_with(&[
        ("BINDERY_POSTGRES_ADMIN_URL", &admin),
        ("BINDERY_POSTGRES_NAME_PREFIX", PREFIX),
    ])
    .await
}

async fn connect(credentials: &Value) -> PgConnection {
    PgConnection::connect(credentials["uri"].as_str().unwrap())
        .await
        .expect("the binding's uri connects")
}

async fn leftovers(instance_id: &str) -> (i64, i64) {
    let names = InstanceNames::new(PREFIX, instance_id).unwrap();
    let mut admin = PgConnection::connect(&admin_url()).await.unwrap();
    let databases: i64 = sqlx::query_scalar("select count(*) from pg_database where datname = $1")
        .bind(names.database.as_str())
        .fetch_one(&mut admin)
        .await
        .unwrap();
    let roles: i64 =
        sqlx::query_scalar("select count(*) from pg_roles where starts_with(rolname, $1)")
            .bind(&names.role_prefix)
            .fetch_one(&mut admin)
            .await
            .unwrap();
    (databases, roles)
}

#[tokio::test]
async fn a_platform_lifecycle_creates_and_removes_a_real_database() {
    let app = spawn().await;
    let id = new_id();
    let mut body = provision_body(SERVICE, SMALL);
    body["parameters"] = json!({"connection_limit": 15, "extensions": ["citext"]});
    let r = app.provision_async(&id, body).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.raw);
    let done = app.wait_for_operation(&id, "").await;
    assert_eq!(done.body["state"], "succeeded", "{}", done.raw);

    let (b1, b2, ro) = (new_id(), new_id(), new_id());
    let writer = app.bind(&id, &b1, bind_body(SERVICE, SMALL)).await;
    assert_eq!(writer.status, StatusCode::CREATED, "{}", writer.raw);
    let other = app.bind(&id, &b2, bind_body(SERVICE, SMALL)).await;
    let mut ro_body = bind_body(SERVICE, SMALL);
    ro_body["parameters"] = json!({"read_only": true});
    let reader = app.bind(&id, &ro, ro_body).await;
    assert_eq!(reader.status, StatusCode::CREATED, "{}", reader.raw);
    let keys: Vec<&String> = writer.body["credentials"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(
        keys,
        [
            "database", "host", "jdbc_url", "password", "port", "provider", "type", "uri",
            "username"
        ]
    );

    let mut c1 = connect(&writer.body["credentials"]).await;
    sqlx::query("create table orders (id int primary key, item citext)")
        .execute(&mut c1)
        .await
        .unwrap();
    sqlx::query("insert into orders values (1, 'Book')")
        .execute(&mut c1)
        .await
        .unwrap();
    let mut c2 = connect(&other.body["credentials"]).await;
    let item: String = sqlx::query_scalar("select item::text from orders where id = 1")
        .fetch_one(&mut c2)
        .await
        .unwrap();
    assert_eq!(item, "Book");
    sqlx::query("insert into orders values (2, 'Pen')")
        .execute(&mut c2)
        .await
        .expect("the second binding can write too");

    let mut c3 = connect(&reader.body["credentials"]).await;
    let count: i64 = sqlx::query_scalar("select count(*) from orders")
        .fetch_one(&mut c3)
        .await
        .unwrap();
    assert_eq!(count, 2);
    let denied = sqlx::query("insert into orders values (3, 'x')")
        .execute(&mut c3)
        .await
        .unwrap_err();
    assert!(denied.to_string().contains("permission denied"), "{denied}");

    let r = app
        .unbind(&id, &b1, &format!("?service_id={SERVICE}&plan_id={SMALL}"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    assert!(
        sqlx::query("select 1").execute(&mut c1).await.is_err(),
        "the unbound session was ended"
    );
    assert!(
        PgConnection::connect(writer.body["credentials"]["uri"].as_str().unwrap())
            .await
            .is_err()
    );
    let count: i64 = sqlx::query_scalar("select count(*) from orders")
        .fetch_one(&mut c2)
        .await
        .unwrap();
    assert_eq!(count, 2, "the other binding keeps working");

    // Deprovision with a connection still open.
    let r = app
        .deprovision(&id, &format!("?service_id={SERVICE}&plan_id={SMALL}"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    assert_eq!(
        leftovers(&id).await,
        (0, 0),
        "no database and no role of the instance is left"
    );
    assert!(sqlx::query("select 1").execute(&mut c2).await.is_err());
}

#[tokio::test]
async fn bad_parameters_get_400_and_create_nothing() {
    let app = spawn().await;
    for parameters in [
        json!({"extensions": ["plpython3u"]}),
        json!({"connection_limit": 5000}),
        json!({"connection_limit": 0}),
    ] {
        let id = new_id();
        let mut body = provision_body(SERVICE, SMALL);
        body["parameters"] = parameters.clone();
        let r = app.provision(&id, body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{parameters}: {}", r.raw);
        assert!(
            r.body["description"]
                .as_str()
                .unwrap()
                .contains("parameters."),
            "{}",
            r.raw
        );
        assert_eq!(leftovers(&id).await, (0, 0));
    }
    let id = new_id();
    app.provision(&id, provision_body(SERVICE, SMALL)).await;
    let mut bad_bind = bind_body(SERVICE, SMALL);
    bad_bind["parameters"] = json!({"superuser": true});
    assert_eq!(
        app.bind(&id, &new_id(), bad_bind).await.status,
        StatusCode::BAD_REQUEST
    );
    let (_, roles) = leftovers(&id).await;
    assert_eq!(roles, 2, "only the instance's two group roles exist");
    app.deprovision(&id, &format!("?service_id={SERVICE}&plan_id={SMALL}"))
        .await;
}

#[tokio::test]
async fn a_plan_change_applies_the_new_plans_connection_limit() {
    let app = spawn().await;
    let id = new_id();
    app.provision(&id, provision_body(SERVICE, SMALL)).await;
    let medium = "3a9d2f64-7b1e-4c08-8e5f-2d6b4a1c9e22";
    let r = app
        .update(&id, "", json!({"service_id": SERVICE, "plan_id": medium}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    let names = InstanceNames::new(PREFIX, &id).unwrap();
    let mut admin = PgConnection::connect(&admin_url()).await.unwrap();
    let limit: i32 = sqlx::query_scalar("select datconnlimit from pg_database where datname = $1")
        .bind(names.database.as_str())
        .fetch_one(&mut admin)
        .await
        .unwrap();
    assert_eq!(limit, 50);
    app.deprovision(&id, &format!("?service_id={SERVICE}&plan_id={medium}"))
        .await;
    assert_eq!(leftovers(&id).await, (0, 0));
}

#[tokio::test]
async fn a_rotated_binding_works_and_its_predecessor_keeps_working_until_unbound() {
    let mut app = spawn().await;
    let id = new_id();
    assert_eq!(
        app.provision(&id, provision_body(SERVICE, SMALL))
            .await
            .status,
        StatusCode::CREATED
    );
    let old = new_id();
    let first = app.bind(&id, &old, bind_body(SERVICE, SMALL)).await;
    let mut c1 = connect(&first.body["credentials"]).await;
    sqlx::query("create table t (v int)")
        .execute(&mut c1)
        .await
        .unwrap();
    app.version = "2.17".into();
    let new = new_id();
    let second = app
        .bind(&id, &new, json!({"predecessor_binding_id": old}))
        .await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.raw);
    assert_ne!(
        second.body["credentials"]["username"],
        first.body["credentials"]["username"]
    );
    let mut c2 = connect(&second.body["credentials"]).await;
    sqlx::query("insert into t values (2)")
        .execute(&mut c2)
        .await
        .expect("the successor works on the same data");
    sqlx::query("insert into t values (1)")
        .execute(&mut c1)
        .await
        .expect("the predecessor still works");
    drop(c1);
    assert!(
        PgConnection::connect(first.body["credentials"]["uri"].as_str().unwrap())
            .await
            .is_ok()
    );
    let r = app
        .unbind(&id, &old, &format!("?service_id={SERVICE}&plan_id={SMALL}"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(
        PgConnection::connect(first.body["credentials"]["uri"].as_str().unwrap())
            .await
            .is_err(),
        "unbound: gone"
    );
    let count: i64 = sqlx::query_scalar("select count(*) from t")
        .fetch_one(&mut c2)
        .await
        .unwrap();
    assert_eq!(count, 2);
    app.deprovision(&id, &format!("?service_id={SERVICE}&plan_id={SMALL}"))
        .await;
    assert_eq!(leftovers(&id).await, (0, 0));
}

#[tokio::test]
async fn a_parameter_over_the_plans_limit_is_a_400_at_once_for_provision_and_plan_change() {
    let app = spawn().await;
    const LARGE: &str = "8e4b1a27-5d3c-4f96-a0e2-7c9f3b5d1a33";
    for accepts_incomplete in [false, true] {
        let id = new_id();
        let mut body = provision_body(SERVICE, SMALL);
        body["parameters"] = json!({"connection_limit": 25});
        let r = if accepts_incomplete {
            app.provision_async(&id, body).await
        } else {
            app.provision(&id, body).await
        };
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.raw);
        let description = r.body["description"].as_str().unwrap();
        assert!(
            description.contains("connection_limit") && description.contains("20"),
            "names the field and the plan's limit: {description}"
        );
        assert_eq!(
            app.last_operation(&id, "").await.status,
            StatusCode::NOT_FOUND,
            "nothing was stored"
        );
        assert_eq!(leftovers(&id).await, (0, 0), "nothing was created");
    }

    // A plan change that makes the stored parameters exceed the new plan's limit.
    let id = new_id();
    let mut body = provision_body(SERVICE, LARGE);
    body["parameters"] = json!({"connection_limit": 70});
    let r = app.provision(&id, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    for query in ["", "?accepts_incomplete=true"] {
        let r = app
            .update(&id, query, json!({"service_id": SERVICE, "plan_id": SMALL}))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.raw);
        let description = r.body["description"].as_str().unwrap();
        assert!(
            description.contains("connection_limit") && description.contains("20"),
            "{description}"
        );
    }
    // Lowering the limit with the change is accepted.
    let r = app
        .update(
            &id,
            "",
            json!({"service_id": SERVICE, "plan_id": SMALL, "parameters": {"connection_limit": 15}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    let r = app
        .deprovision(&id, &format!("?service_id={SERVICE}&plan_id={SMALL}"))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    assert_eq!(leftovers(&id).await, (0, 0));
}
