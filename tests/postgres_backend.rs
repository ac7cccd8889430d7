//! Integration tests of the `postgres` backend against a real PostgreSQL server.
//!
//! The server comes from `BINDERY_TEST_POSTGRES_ADMIN_URL` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`). Every test uses fresh uuid-based
//! ids, so tests run in parallel and leave nothing behind (they deprovision even when
//! an assertion fails).
//!
//! A development server often trusts every loopback connection, so a successful login
//! proves nothing about the password. The tests therefore check credentials twice:
//! the SCRAM verifier stored in `pg_authid` must be the one of the returned password,
//! and privileges are checked by behaviour (permission denied). When the server does
//! check passwords, a wrong password must also be refused.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::str::FromStr;
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bindery::backends::postgres::{PostgresBackend, PostgresBackendConfig, check_plan_settings};
use bindery::backends::sql_ident::InstanceNames;
use bindery::backends::{
    BackendError, BindingSpec, Credentials, InstanceSpec, ServiceBackend, UpdateSpec,
};
use futures::FutureExt as _;
use hmac::{Hmac, Mac};
use secrecy::SecretString;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, Row};
use tracing::log::LevelFilter;

const PREFIX: &str = "bdtest";

fn admin_url() -> String {
    std::env::var("BINDERY_TEST_POSTGRES_ADMIN_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

fn backend_for(admin_url: &str) -> PostgresBackend {
    PostgresBackend::new(PostgresBackendConfig {
        admin_url: SecretString::from(admin_url.to_owned()),
        credentials_host: None,
        credentials_port: None,
        name_prefix: PREFIX.to_owned(),
    })
    .expect("backend")
}

fn backend() -> PostgresBackend {
    backend_for(&admin_url())
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn obj(v: Value) -> Map<String, Value> {
    v.as_object().expect("an object").clone()
}

/// One test instance: its id, plan settings and parameters.
struct Instance {
    id: String,
    plan: Value,
    params: Map<String, Value>,
}

impl Instance {
    fn new(plan: Value) -> Self {
        Self {
            id: new_id(),
            plan,
            params: Map::new(),
        }
    }

    fn spec(&self) -> InstanceSpec<'_> {
        InstanceSpec {
            instance_id: &self.id,
            service_id: "service-postgres",
            plan_id: "plan-test",
            plan_settings: &self.plan,
            parameters: &self.params,
            context: None,
            facts: None,
        }
    }

    fn names(&self) -> InstanceNames {
        InstanceNames::new(PREFIX, &self.id).unwrap()
    }
}

async fn bind(
    backend: &PostgresBackend,
    instance: &Instance,
    binding_id: &str,
    params: Value,
) -> Result<Credentials, BackendError> {
    let params = obj(params);
    backend
        .bind(&BindingSpec {
            instance: instance.spec(),
            binding_id,
            parameters: &params,
            password: new_password(),
        })
        .await
}

async fn unbind(
    backend: &PostgresBackend,
    instance: &Instance,
    binding_id: &str,
) -> Result<(), BackendError> {
    backend
        .unbind(&BindingSpec {
            instance: instance.spec(),
            binding_id,
            parameters: &Map::new(),
            password: new_password(),
        })
        .await
}

/// Runs `body`, then deprovisions `instances` whether it panicked or not.
async fn cleaning_up<F: Future<Output = ()>>(instances: &[&Instance], body: F) {
    let outcome = AssertUnwindSafe(body).catch_unwind().await;
    let backend = backend();
    for instance in instances {
        if let Err(e) = backend.deprovision(&instance.spec()).await {
            eprintln!("cleanup of {} failed: {e}", instance.id);
        }
    }
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

fn options(url: &str) -> PgConnectOptions {
    PgConnectOptions::from_str(url)
        .expect("a valid URL")
        .log_statements(LevelFilter::Off)
}

async fn admin() -> PgConnection {
    PgConnection::connect_with(&options(&admin_url()))
        .await
        .expect("admin connection")
}

async fn connect(credentials: &Credentials) -> Result<PgConnection, sqlx::Error> {
    PgConnection::connect_with(&options(&credentials.0["uri"])).await
}

fn sqlstate(err: &sqlx::Error) -> String {
    err.as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned())
        .unwrap_or_else(|| format!("not a database error: {err}"))
}

/// Asserts that `sql` fails with SQLSTATE `code` (42501: insufficient_privilege).
async fn assert_fails(conn: &mut PgConnection, sql: &str, code: &str) {
    let err = sqlx::query(sql).execute(&mut *conn).await.expect_err(sql);
    assert_eq!(sqlstate(&err), code, "{sql}: {err}");
}

/// The SCRAM-SHA-256 verifier of `password` with `salt`, computed independently of
/// the backend (and checked against the server by `scram_helper_agrees_with_server`).
fn scram(password: &str, salt: &[u8], iterations: u32) -> String {
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
    let mac = |msg: &[u8]| {
        let mut m = Hmac::<Sha256>::new_from_slice(&salted).unwrap();
        m.update(msg);
        m.finalize().into_bytes()
    };
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        BASE64.encode(salt),
        BASE64.encode(Sha256::digest(mac(b"Client Key"))),
        BASE64.encode(mac(b"Server Key"))
    )
}

/// The verifier PostgreSQL stores for `role` must be the one of `password`: proof
/// that the password works wherever the server checks passwords.
async fn assert_password_is_stored(admin: &mut PgConnection, role: &str, password: &str) {
    let stored: Option<String> =
        sqlx::query_scalar("SELECT rolpassword FROM pg_authid WHERE rolname = $1")
            .bind(role)
            .fetch_one(&mut *admin)
            .await
            .unwrap();
    let stored = stored.expect("the role has a password");
    let (head, _) = stored.split_once('$').unwrap_or_default();
    assert_eq!(head, "SCRAM-SHA-256", "stored a SCRAM verifier");
    let (iterations, rest) = stored["SCRAM-SHA-256$".len()..].split_once(':').unwrap();
    let (salt, _) = rest.split_once('$').unwrap();
    let salt = BASE64.decode(salt).unwrap();
    assert_eq!(salt.len(), 16);
    assert_eq!(
        scram(password, &salt, iterations.parse().unwrap()),
        stored,
        "the stored verifier belongs to the returned password"
    );
}

/// When the server checks passwords on this connection path, a wrong one is refused.
async fn assert_wrong_password_refused(credentials: &Credentials) {
    let wrong = credentials.0["uri"].replace(
        &format!(":{}@", credentials.0["password"]),
        ":not-the-password@",
    );
    assert_ne!(wrong, credentials.0["uri"]);
    match PgConnection::connect_with(&options(&wrong)).await {
        // The server trusts this connection: only the verifier check above applies.
        Ok(conn) => drop(conn.close().await),
        Err(e) => assert_eq!(sqlstate(&e), "28P01", "{e}"),
    }
}

async fn role_names_with_prefix(admin: &mut PgConnection, prefix: &str) -> Vec<String> {
    sqlx::query_scalar("SELECT rolname::text FROM pg_roles WHERE starts_with(rolname::text, $1)")
        .bind(prefix)
        .fetch_all(&mut *admin)
        .await
        .unwrap()
}

async fn database_exists(admin: &mut PgConnection, name: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
        .bind(name)
        .fetch_one(&mut *admin)
        .await
        .unwrap()
}

#[tokio::test]
async fn scram_helper_agrees_with_server() {
    // The test's own verifier function must match what PostgreSQL computes.
    let mut admin = admin().await;
    let mut tx = admin.begin().await.unwrap();
    let role = format!("{PREFIX}_scram_{}", &new_id()[..8]);
    sqlx::query("SET LOCAL password_encryption = 'scram-sha-256'")
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE ROLE \"{role}\" PASSWORD 'correct horse'"))
        .execute(&mut *tx)
        .await
        .unwrap();
    assert_password_is_stored(&mut tx, &role, "correct horse").await;
    tx.rollback().await.unwrap();
}

#[tokio::test]
async fn read_write_bindings_share_the_database() {
    let backend = backend();
    let instance = Instance::new(json!({}));
    cleaning_up(&[&instance], async {
        backend.provision(&instance.spec()).await.unwrap();
        let names = instance.names();
        let one = bind(&backend, &instance, &new_id(), json!({}))
            .await
            .unwrap();
        let two = bind(&backend, &instance, &new_id(), json!({}))
            .await
            .unwrap();

        let server = options(&admin_url());
        let (host, port) = (server.get_host(), server.get_port());
        for creds in [&one, &two] {
            let c = &creds.0;
            assert_eq!(c["database"], names.database.as_str());
            assert_eq!(c["host"], host);
            assert_eq!(c["port"], port.to_string());
            assert_eq!(c["password"].len(), 32);
            assert!(c["username"].starts_with(&names.role_prefix));
            assert_eq!(
                c["uri"],
                format!(
                    "postgresql://{}:{}@{host}:{port}/{}",
                    c["username"], c["password"], c["database"]
                )
            );
            assert_eq!(
                c["jdbc_url"],
                format!(
                    "jdbc:postgresql://{host}:{port}/{}?user={}&password={}",
                    c["database"], c["username"], c["password"]
                )
            );
            assert!(!format!("{creds:?}").contains(&c["password"]));
            assert_password_is_stored(&mut admin().await, &c["username"], &c["password"]).await;
            assert_wrong_password_refused(creds).await;
        }
        assert_ne!(one.0["username"], two.0["username"]);
        assert_ne!(one.0["password"], two.0["password"]);

        let mut c1 = connect(&one).await.unwrap();
        // Sessions run as the owner group, so what they create is shared.
        let (user, session): (String, String) =
            sqlx::query_as("SELECT current_user::text, session_user::text")
                .fetch_one(&mut c1)
                .await
                .unwrap();
        assert_eq!(user, names.owner.as_str());
        assert_eq!(session, one.0["username"]);
        sqlx::query("CREATE TABLE notes (id serial PRIMARY KEY, body text NOT NULL)")
            .execute(&mut c1)
            .await
            .unwrap();
        sqlx::query("INSERT INTO notes (body) VALUES ('from one')")
            .execute(&mut c1)
            .await
            .unwrap();

        let mut c2 = connect(&two).await.unwrap();
        let body: String = sqlx::query_scalar("SELECT body FROM notes")
            .fetch_one(&mut c2)
            .await
            .unwrap();
        assert_eq!(body, "from one");
        sqlx::query("INSERT INTO notes (body) VALUES ('from two')")
            .execute(&mut c2)
            .await
            .unwrap();
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM notes")
            .fetch_one(&mut c1)
            .await
            .unwrap();
        assert_eq!(count, 2);
        let owner: String =
            sqlx::query_scalar("SELECT tableowner::text FROM pg_tables WHERE tablename = 'notes'")
                .fetch_one(&mut c2)
                .await
                .unwrap();
        assert_eq!(owner, names.owner.as_str());
        // A binding is not an administrator of the server.
        assert_fails(&mut c1, "CREATE ROLE someone_else", "42501").await;
        c1.close().await.unwrap();
        c2.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn read_only_binding_can_only_read() {
    let backend = backend();
    let instance = Instance::new(json!({}));
    cleaning_up(&[&instance], async {
        backend.provision(&instance.spec()).await.unwrap();
        let writer = bind(&backend, &instance, &new_id(), json!({}))
            .await
            .unwrap();
        let mut w = connect(&writer).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE items (id bigserial PRIMARY KEY, name text);
             INSERT INTO items (name) VALUES ('a'), ('b');",
        )
        .execute(&mut w)
        .await
        .unwrap();

        let reader = bind(&backend, &instance, &new_id(), json!({"read_only": true}))
            .await
            .unwrap();
        assert_password_is_stored(
            &mut admin().await,
            &reader.0["username"],
            &reader.0["password"],
        )
        .await;
        let mut r = connect(&reader).await.unwrap();
        let names: Vec<String> = sqlx::query_scalar("SELECT name FROM items ORDER BY id")
            .fetch_all(&mut r)
            .await
            .unwrap();
        assert_eq!(names, ["a", "b"]);
        assert_fails(&mut r, "INSERT INTO items (name) VALUES ('c')", "42501").await;
        assert_fails(&mut r, "UPDATE items SET name = 'x'", "42501").await;
        assert_fails(&mut r, "DELETE FROM items", "42501").await;
        assert_fails(&mut r, "CREATE TABLE mine (x int)", "42501").await;
        assert_fails(&mut r, "DROP TABLE items", "42501").await;
        // Nor can it become the owner group.
        let owner = instance.names().owner;
        assert_fails(&mut r, &format!("SET ROLE {owner}"), "42501").await;
        // Tables created later are readable too (default privileges).
        sqlx::raw_sql("CREATE TABLE later (x int); INSERT INTO later VALUES (7);")
            .execute(&mut w)
            .await
            .unwrap();
        let x: i32 = sqlx::query_scalar("SELECT x FROM later")
            .fetch_one(&mut r)
            .await
            .unwrap();
        assert_eq!(x, 7);
        r.close().await.unwrap();
        w.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn unbind_revokes_one_binding_only() {
    let backend = backend();
    let instance = Instance::new(json!({}));
    cleaning_up(&[&instance], async {
        backend.provision(&instance.spec()).await.unwrap();
        let names = instance.names();
        let id_one = new_id();
        let one = bind(&backend, &instance, &id_one, json!({})).await.unwrap();
        let two = bind(&backend, &instance, &new_id(), json!({}))
            .await
            .unwrap();

        let mut c1 = connect(&one).await.unwrap();
        // One table as the group (the default) and one owned by the binding's own role.
        sqlx::raw_sql(
            "CREATE TABLE shared (x int); INSERT INTO shared VALUES (1);
             SET ROLE NONE; CREATE TABLE private (y int); INSERT INTO private VALUES (2);",
        )
        .execute(&mut c1)
        .await
        .unwrap();
        let owner: String = sqlx::query_scalar(
            "SELECT tableowner::text FROM pg_tables WHERE tablename = 'private'",
        )
        .fetch_one(&mut c1)
        .await
        .unwrap();
        assert_eq!(owner, one.0["username"]);

        unbind(&backend, &instance, &id_one).await.unwrap();

        // Its session was ended, its role is gone, and it cannot log in again.
        assert!(sqlx::query("SELECT 1").execute(&mut c1).await.is_err());
        let mut admin = admin().await;
        let roles = role_names_with_prefix(&mut admin, &names.role_prefix).await;
        assert!(!roles.contains(&one.0["username"]), "{roles:?}");
        assert!(roles.contains(&two.0["username"]));
        let err = connect(&one).await.expect_err("binding one is revoked");
        // 28000: role does not exist (trusting server); 28P01: password refused.
        assert!(
            ["28000", "28P01"].contains(&sqlstate(&err).as_str()),
            "{err}"
        );

        // The other binding keeps working, with all the data, the private table included.
        let mut c2 = connect(&two).await.unwrap();
        let row = sqlx::query("SELECT (SELECT x FROM shared), (SELECT y FROM private)")
            .fetch_one(&mut c2)
            .await
            .unwrap();
        assert_eq!((row.get::<i32, _>(0), row.get::<i32, _>(1)), (1, 2));
        sqlx::query("INSERT INTO private VALUES (3)")
            .execute(&mut c2)
            .await
            .unwrap();
        c2.close().await.unwrap();
    })
    .await;
}

#[tokio::test]
async fn deprovision_with_live_connections_removes_everything() {
    let backend = backend();
    let instance = Instance::new(json!({"extensions": ["citext"]}));
    cleaning_up(&[&instance], async {
        backend.provision(&instance.spec()).await.unwrap();
        let names = instance.names();
        let _one = bind(&backend, &instance, &new_id(), json!({}))
            .await
            .unwrap();
        let two = bind(&backend, &instance, &new_id(), json!({"read_only": true}))
            .await
            .unwrap();
        let mut c2 = connect(&two).await.unwrap();
        let mut tx = c2.begin().await.unwrap();
        sqlx::query("SELECT 1").execute(&mut *tx).await.unwrap();
        // A session of the binding in another database must not keep its role alive.
        let mut elsewhere =
            PgConnection::connect_with(&options(&two.0["uri"]).database("postgres"))
                .await
                .unwrap();

        let started = Instant::now();
        backend.deprovision(&instance.spec()).await.unwrap();
        assert!(started.elapsed() < Duration::from_secs(30));

        let mut admin = admin().await;
        assert!(!database_exists(&mut admin, names.database.as_str()).await);
        assert_eq!(
            role_names_with_prefix(&mut admin, &names.role_prefix).await,
            Vec::<String>::new()
        );
        assert!(sqlx::query("SELECT 1").execute(&mut *tx).await.is_err());
        assert!(
            sqlx::query("SELECT 1")
                .execute(&mut elsewhere)
                .await
                .is_err()
        );
    })
    .await;
}

#[tokio::test]
async fn every_step_converges_when_repeated() {
    let backend = backend();
    let instance = Instance::new(json!({"extensions": ["citext"]}));
    cleaning_up(&[&instance], async {
        let names = instance.names();
        // Concurrent runs (a worker retrying while the first is still going) and a rerun.
        let spec = instance.spec();
        let (a, b) = futures::join!(backend.provision(&spec), backend.provision(&spec));
        a.unwrap();
        b.unwrap();
        backend.provision(&instance.spec()).await.unwrap();

        let id = new_id();
        let first = bind(&backend, &instance, &id, json!({})).await.unwrap();
        let second = bind(&backend, &instance, &id, json!({})).await.unwrap();
        assert_eq!(first.0["username"], second.0["username"]);
        // Only the last credentials are handed out; they are the ones that work.
        let mut admin = admin().await;
        assert_password_is_stored(&mut admin, &second.0["username"], &second.0["password"]).await;
        let mut c = connect(&second).await.unwrap();
        sqlx::query("CREATE TABLE t (x int)")
            .execute(&mut c)
            .await
            .unwrap();
        c.close().await.unwrap();

        unbind(&backend, &instance, &id).await.unwrap();
        unbind(&backend, &instance, &id).await.unwrap();
        // Orphan mitigation: a binding that was never created.
        unbind(&backend, &instance, &new_id()).await.unwrap();

        backend.deprovision(&instance.spec()).await.unwrap();
        backend.deprovision(&instance.spec()).await.unwrap();
        assert!(!database_exists(&mut admin, names.database.as_str()).await);
        assert!(
            role_names_with_prefix(&mut admin, &names.role_prefix)
                .await
                .is_empty()
        );

        // Never-created instance: unbind and deprovision succeed, nothing to do.
        let ghost = Instance::new(json!({}));
        unbind(&backend, &ghost, &new_id()).await.unwrap();
        backend.deprovision(&ghost.spec()).await.unwrap();

        // A bind or update of an instance whose database is gone is refused.
        assert!(matches!(
            bind(&backend, &ghost, &new_id(), json!({})).await,
            Err(BackendError::Failed(_))
        ));
        let update = UpdateSpec {
            target: ghost.spec(),
            previous_plan_settings: &ghost.plan,
            previous_parameters: &ghost.params,
        };
        assert!(matches!(
            backend.update(&update).await,
            Err(BackendError::Failed(_))
        ));
        // ... and leaves nothing behind.
        let ghost_names = ghost.names();
        assert!(!database_exists(&mut admin, ghost_names.database.as_str()).await);
        assert!(
            role_names_with_prefix(&mut admin, &ghost_names.role_prefix)
                .await
                .is_empty()
        );
    })
    .await;
}

#[tokio::test]
async fn bindings_cannot_reach_other_instances() {
    let backend = backend();
    let a = Instance::new(json!({}));
    let b = Instance::new(json!({}));
    cleaning_up(&[&a, &b], async {
        backend.provision(&a.spec()).await.unwrap();
        backend.provision(&b.spec()).await.unwrap();
        let creds_a = bind(&backend, &a, &new_id(), json!({})).await.unwrap();
        let _creds_b = bind(&backend, &b, &new_id(), json!({})).await.unwrap();

        // Own database: fine.
        connect(&creds_a).await.unwrap().close().await.unwrap();
        // B's database: CONNECT is not granted to A's roles (nor to PUBLIC).
        let other_db = options(&creds_a.0["uri"]).database(b.names().database.as_str());
        let err = PgConnection::connect_with(&other_db)
            .await
            .expect_err("A's binding must not connect to B's database");
        assert_eq!(sqlstate(&err), "42501", "{err}");
    })
    .await;
}

#[tokio::test]
async fn update_changes_limit_and_adds_extensions() {
    let backend = backend();
    let plan = json!({
        "connection_limit": 5,
        "max_connection_limit": 30,
        "extensions": ["citext"],
        "allowed_extensions": ["pgcrypto", "bdtest_no_such_extension"],
    });
    let mut instance = Instance::new(plan);
    instance.params = obj(json!({"connection_limit": 7}));
    let names = instance.names();
    let check = async |limit: i32, extensions: &[&str]| {
        let mut admin = admin().await;
        let datconnlimit: i32 =
            sqlx::query_scalar("SELECT datconnlimit FROM pg_database WHERE datname = $1")
                .bind(names.database.as_str())
                .fetch_one(&mut admin)
                .await
                .unwrap();
        assert_eq!(datconnlimit, limit);
        let mut inside =
            PgConnection::connect_with(&options(&admin_url()).database(names.database.as_str()))
                .await
                .unwrap();
        let installed: Vec<String> = sqlx::query_scalar(
            "SELECT extname::text FROM pg_extension WHERE extname <> 'plpgsql' ORDER BY 1",
        )
        .fetch_all(&mut inside)
        .await
        .unwrap();
        assert_eq!(installed, extensions);
        inside.close().await.unwrap();
    };

    cleaning_up(&[&instance], async {
        backend.provision(&instance.spec()).await.unwrap();
        check(7, &["citext"]).await;

        let previous_params = instance.params.clone();
        let target_params = obj(json!({"connection_limit": 12, "extensions": ["pgcrypto"]}));
        let update = UpdateSpec {
            target: InstanceSpec {
                parameters: &target_params,
                ..instance.spec()
            },
            previous_plan_settings: &instance.plan,
            previous_parameters: &previous_params,
        };
        backend.update(&update).await.unwrap();
        backend.update(&update).await.unwrap();
        check(12, &["citext", "pgcrypto"]).await;

        // A binding can use the new extension.
        let creds = bind(&backend, &instance, &new_id(), json!({}))
            .await
            .unwrap();
        let mut c = connect(&creds).await.unwrap();
        let digest: String = sqlx::query_scalar("SELECT encode(digest('x', 'sha256'), 'hex')")
            .fetch_one(&mut c)
            .await
            .unwrap();
        assert_eq!(digest.len(), 64);
        c.close().await.unwrap();

        // Back to the plan's default limit; extensions are never dropped.
        let no_params = Map::new();
        let update = UpdateSpec {
            target: InstanceSpec {
                parameters: &no_params,
                ..instance.spec()
            },
            previous_plan_settings: &instance.plan,
            previous_parameters: &target_params,
        };
        backend.update(&update).await.unwrap();
        check(5, &["citext", "pgcrypto"]).await;

        // Refused: a limit above the plan's maximum, an extension not allowed, and one
        // the server does not have (with the server's reason).
        for (params, needle) in [
            (json!({"connection_limit": 31}), "connection_limit"),
            (json!({"extensions": ["hstore"]}), "hstore"),
            (
                json!({"extensions": ["bdtest_no_such_extension"]}),
                "bdtest_no_such_extension",
            ),
        ] {
            let params = obj(params);
            let update = UpdateSpec {
                target: InstanceSpec {
                    parameters: &params,
                    ..instance.spec()
                },
                previous_plan_settings: &instance.plan,
                previous_parameters: &no_params,
            };
            match backend.update(&update).await {
                Err(BackendError::Failed(msg)) => assert!(msg.contains(needle), "{msg}"),
                other => panic!("expected a failure for {params:?}, got {other:?}"),
            }
        }
        check(5, &["citext", "pgcrypto"]).await;
    })
    .await;
}

#[tokio::test]
async fn plan_settings_are_checked() {
    let backend = backend();
    assert!(check_plan_settings(&json!({})).is_empty());
    assert!(check_plan_settings(&Value::Null).is_empty());
    let good = json!({
        "connection_limit": -1,
        "max_connection_limit": 100,
        "extensions": ["citext"],
        "allowed_extensions": ["pgcrypto", "pg_trgm"],
    });
    assert_eq!(check_plan_settings(&good), Vec::<String>::new());
    assert!(backend.check_plan_settings(&good).is_empty());

    let cases = [
        (json!({"conection_limit": 10}), "conection_limit"),
        (json!({"connection_limit": 10001}), "connection_limit"),
        (json!({"connection_limit": -2}), "connection_limit"),
        (json!({"connection_limit": "10"}), "connection_limit"),
        (json!({"max_connection_limit": 0}), "max_connection_limit"),
        (
            json!({"connection_limit": 50, "max_connection_limit": 10}),
            "max_connection_limit",
        ),
        (json!({"extensions": ["uuid-ossp"]}), "uuid-ossp"),
        (json!({"extensions": ["Citext"]}), "Citext"),
        (json!({"allowed_extensions": ["x; DROP"]}), "x; DROP"),
        (
            json!({"allowed_extensions": "citext"}),
            "allowed_extensions",
        ),
        (json!(["citext"]), "object"),
    ];
    for (settings, needle) in cases {
        let problems = backend.check_plan_settings(&settings);
        assert_eq!(problems.len(), 1, "{settings}: {problems:?}");
        assert!(problems[0].contains(needle), "{settings}: {problems:?}");
    }
    let many = check_plan_settings(&json!({
        "unknown": true,
        "connection_limit": 1.5,
        "extensions": ["ok", "not ok"],
    }));
    assert_eq!(many.len(), 3, "{many:?}");

    // Provisioning with bad settings fails cleanly and creates nothing.
    let instance = Instance::new(json!({"connection_limit": 99999}));
    match backend.provision(&instance.spec()).await {
        Err(BackendError::Failed(msg)) => assert!(msg.contains("connection_limit"), "{msg}"),
        other => panic!("expected a failure, got {other:?}"),
    }
    let mut admin = admin().await;
    assert!(!database_exists(&mut admin, instance.names().database.as_str()).await);
}

#[tokio::test]
async fn unreachable_server_is_unavailable() {
    let url = "postgres://postgres:hunter2secret@127.0.0.1:1/postgres";
    let backend = backend_for(url);
    let instance = Instance::new(json!({}));
    let started = Instant::now();
    let binding_id = new_id();
    let spec = instance.spec();
    let (provision, bound, deprovision) = futures::join!(
        backend.provision(&spec),
        bind(&backend, &instance, &binding_id, json!({})),
        backend.deprovision(&spec),
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "answers quickly"
    );
    for result in [provision.map(drop), bound.map(drop), deprovision] {
        match result {
            Err(BackendError::Unavailable(msg)) => {
                assert!(msg.contains("unreachable"), "{msg}");
                assert!(!msg.contains("hunter2secret") && !msg.contains("127.0.0.1:1"));
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    assert!(!format!("{backend:?}").contains("hunter2secret"));
}

#[tokio::test]
async fn non_superuser_admin_can_run_the_whole_lifecycle() {
    // CREATEDB + CREATEROLE (+ pg_signal_backend, to end sessions) is enough.
    let mut admin = admin().await;
    let role = format!(
        "{PREFIX}_admin_{}",
        new_id().replace('-', "")[..12].to_owned()
    );
    sqlx::raw_sql(&format!(
        "SET password_encryption = 'scram-sha-256';
         CREATE ROLE \"{role}\" LOGIN CREATEDB CREATEROLE PASSWORD 'admin-{role}';
         GRANT pg_signal_backend TO \"{role}\";"
    ))
    .execute(&mut admin)
    .await
    .unwrap();
    let admin_url = options(&admin_url()).username(&role);
    let url = format!(
        "postgres://{role}:admin-{role}@{}:{}/postgres",
        admin_url.get_host(),
        admin_url.get_port()
    );
    let backend = backend_for(&url);
    let instance = Instance::new(json!({"extensions": ["citext"]}));
    let names = instance.names();
    let outcome = AssertUnwindSafe(async {
        backend.provision(&instance.spec()).await.unwrap();
        backend.provision(&instance.spec()).await.unwrap();
        let rw_id = new_id();
        let rw = bind(&backend, &instance, &rw_id, json!({})).await.unwrap();
        let ro = bind(&backend, &instance, &new_id(), json!({"read_only": true}))
            .await
            .unwrap();
        let mut w = connect(&rw).await.unwrap();
        sqlx::raw_sql(
            "CREATE TABLE t (c citext); INSERT INTO t VALUES ('A');
             SET ROLE NONE; CREATE TABLE own (x int);",
        )
        .execute(&mut w)
        .await
        .unwrap();
        let mut r = connect(&ro).await.unwrap();
        let n: i64 = sqlx::query_scalar("SELECT count(*) FROM t WHERE c = 'a'")
            .fetch_one(&mut r)
            .await
            .unwrap();
        assert_eq!(n, 1);
        unbind(&backend, &instance, &rw_id).await.unwrap();
        backend.deprovision(&instance.spec()).await.unwrap();
        assert!(!database_exists(&mut admin, names.database.as_str()).await);
        assert!(
            role_names_with_prefix(&mut admin, &names.role_prefix)
                .await
                .is_empty()
        );
    })
    .catch_unwind()
    .await;
    // Clean up with the superuser whatever happened, then drop the admin role.
    let cleanup = backend_for(&self::admin_url());
    cleanup.deprovision(&instance.spec()).await.unwrap();
    drop(backend);
    sqlx::raw_sql(&format!("DROP ROLE IF EXISTS \"{role}\""))
        .execute(&mut admin)
        .await
        .unwrap();
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}

/// A fresh password for one bind, as the executor derives one per bind operation.
fn new_password() -> &'static secrecy::SecretString {
    Box::leak(Box::new(secrecy::SecretString::from(
        uuid::Uuid::new_v4().simple().to_string(),
    )))
}
