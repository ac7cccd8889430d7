//! Integration tests of the `mariadb` backend against a real MariaDB server.
//!
//! The admin URL comes from `BINDERY_TEST_MARIADB_ADMIN_URL` (default
//! `mysql://root@127.0.0.1:3306`). Every test uses fresh uuid-based ids and the prefix
//! `bdtest`, so tests run in parallel, and cleans up after itself.

use std::time::{Duration, Instant};

use bindery::backends::mariadb::{MariaDbBackend, MariaDbBackendConfig, check_plan_settings};
use bindery::backends::{
    BackendError, BindingSpec, Credentials, InstanceSpec, ServiceBackend, UpdateSpec,
};
use secrecy::SecretString;
use serde_json::{Map, Value, json};
use sqlx::mysql::MySqlConnection;
use sqlx::{Connection, Executor};

const PREFIX: &str = "bdtest";

fn admin_url() -> String {
    std::env::var("BINDERY_TEST_MARIADB_ADMIN_URL")
        .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".to_owned())
}

fn backend() -> MariaDbBackend {
    let mut config = MariaDbBackendConfig::new(SecretString::from(admin_url()));
    config.name_prefix = PREFIX.to_owned();
    MariaDbBackend::new(config).expect("valid configuration")
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn no_params() -> &'static Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Map::new)
}

fn instance<'a>(id: &'a str, settings: &'a Value) -> InstanceSpec<'a> {
    InstanceSpec {
        instance_id: id,
        service_id: "svc-mariadb",
        plan_id: "plan-mariadb",
        plan_settings: settings,
        parameters: no_params(),
        context: None,
        facts: None,
    }
}

fn binding<'a>(
    instance: InstanceSpec<'a>,
    id: &'a str,
    parameters: &'a Map<String, Value>,
) -> BindingSpec<'a> {
    BindingSpec {
        instance,
        binding_id: id,
        parameters,
        password: new_password(),
    }
}

/// A fresh password for one bind, as the executor derives one per bind operation.
fn new_password() -> &'static secrecy::SecretString {
    Box::leak(Box::new(secrecy::SecretString::from(
        uuid::Uuid::new_v4().simple().to_string(),
    )))
}

async fn admin() -> MySqlConnection {
    MySqlConnection::connect(&admin_url())
        .await
        .expect("admin connection")
}

async fn connect(creds: &Credentials) -> Result<MySqlConnection, sqlx::Error> {
    MySqlConnection::connect(&creds.0["uri"]).await
}

/// The MariaDB error number of a failed statement or connection, if it is one.
fn error_number(err: &sqlx::Error) -> Option<u16> {
    err.as_database_error()
        .and_then(|db| db.try_downcast_ref::<sqlx::mysql::MySqlDatabaseError>())
        .map(|e| e.number())
}

/// Access denied: 1044 (database), 1045 or 1698 (login; MariaDB answers 1698 for some
/// logins of an unknown user), 1142 (table), 1227 (privilege).
fn assert_denied<T: std::fmt::Debug>(result: Result<T, sqlx::Error>, what: &str) {
    match result {
        Ok(v) => panic!("{what}: expected access denied, got {v:?}"),
        Err(e) => assert!(
            matches!(error_number(&e), Some(1044 | 1045 | 1142 | 1227 | 1698)),
            "{what}: expected access denied, got {e}"
        ),
    }
}

async fn database_exists(admin: &mut MySqlConnection, database: &str) -> bool {
    let n: i64 = sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
    )
    .bind(database)
    .fetch_one(admin)
    .await
    .unwrap();
    n > 0
}

/// Accounts whose user name starts with `prefix`.
async fn users_with_prefix(admin: &mut MySqlConnection, prefix: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT CAST(CONCAT(User, '@', Host) AS CHAR) FROM mysql.user
         WHERE LEFT(User, CHAR_LENGTH(?)) = ?",
    )
    .bind(prefix)
    .bind(prefix)
    .fetch_all(admin)
    .await
    .unwrap()
}

/// Connections whose user name starts with `prefix`.
async fn sessions_with_prefix(admin: &mut MySqlConnection, prefix: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE LEFT(USER, CHAR_LENGTH(?)) = ?",
    )
    .bind(prefix)
    .bind(prefix)
    .fetch_one(admin)
    .await
    .unwrap()
}

/// The part of a binding's user name shared by all users of its instance.
fn user_prefix_of(creds: &Credentials) -> String {
    let user = &creds.0["username"];
    user[..user.len() - 12].to_owned()
}

/// Whether a connection still works (a killed one fails its next statement).
async fn alive(conn: &mut MySqlConnection) -> bool {
    conn.execute("SELECT 1").await.is_ok()
}

#[tokio::test]
async fn bindings_share_the_database_and_credentials_are_complete() {
    let backend = backend();
    let (iid, b1, b2) = (new_id(), new_id(), new_id());
    let settings = json!({});
    let inst = instance(&iid, &settings);
    backend.provision(&inst).await.unwrap();

    let c1 = backend
        .bind(&binding(inst, &b1, no_params()))
        .await
        .unwrap();
    for key in [
        "uri", "jdbc_url", "host", "port", "database", "username", "password", "type", "provider",
    ] {
        assert!(c1.0.contains_key(key), "missing {key}");
    }
    assert_eq!(c1.0.len(), 9);
    assert_eq!(c1.0["host"], "127.0.0.1");
    assert!(c1.0["database"].starts_with("bdtest_"));
    assert_eq!(c1.0["password"].len(), 32);
    assert_eq!(
        c1.0["jdbc_url"],
        format!(
            "jdbc:mariadb://{}:{}/{}?user={}&password={}",
            c1.0["host"], c1.0["port"], c1.0["database"], c1.0["username"], c1.0["password"]
        )
    );
    assert!(!format!("{c1:?}").contains(&c1.0["password"]));

    let mut conn = connect(&c1).await.unwrap();
    conn.execute("CREATE TABLE notes (id INT PRIMARY KEY, body VARCHAR(50))")
        .await
        .unwrap();
    conn.execute("INSERT INTO notes VALUES (1, 'héllo ✓')")
        .await
        .unwrap();
    let body: String = sqlx::query_scalar("SELECT body FROM notes WHERE id = 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(body, "héllo ✓");
    // The default character set of the database is utf8mb4.
    let charset: String = sqlx::query_scalar("SELECT @@character_set_database")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(charset, "utf8mb4");
    // No access to anything else on the server, and no GRANT OPTION.
    assert_denied(
        conn.execute("SELECT COUNT(*) FROM mysql.user").await,
        "read mysql.user",
    );
    assert_denied(
        conn.execute("CREATE DATABASE bdtest_not_allowed").await,
        "create a database",
    );
    assert_denied(
        conn.execute(format!("GRANT SELECT ON notes TO '{}'@'%'", c1.0["username"]).as_str())
            .await,
        "grant",
    );

    let c2 = backend
        .bind(&binding(inst, &b2, no_params()))
        .await
        .unwrap();
    assert_ne!(c1.0["username"], c2.0["username"]);
    assert_eq!(c1.0["database"], c2.0["database"]);
    let mut conn2 = connect(&c2).await.unwrap();
    let body: String = sqlx::query_scalar("SELECT body FROM notes WHERE id = 1")
        .fetch_one(&mut conn2)
        .await
        .unwrap();
    assert_eq!(body, "héllo ✓");
    conn2
        .execute("INSERT INTO notes VALUES (2, 'second')")
        .await
        .unwrap();

    conn.close().await.unwrap();
    conn2.close().await.unwrap();
    backend.deprovision(&inst).await.unwrap();
}

#[tokio::test]
async fn a_binding_cannot_touch_another_instance() {
    let backend = backend();
    let (ia, ib, ba, bb) = (new_id(), new_id(), new_id(), new_id());
    let settings = json!({});
    let (inst_a, inst_b) = (instance(&ia, &settings), instance(&ib, &settings));
    backend.provision(&inst_a).await.unwrap();
    backend.provision(&inst_b).await.unwrap();
    let ca = backend
        .bind(&binding(inst_a, &ba, no_params()))
        .await
        .unwrap();
    let cb = backend
        .bind(&binding(inst_b, &bb, no_params()))
        .await
        .unwrap();
    let db_b = &cb.0["database"];

    let mut conn_b = connect(&cb).await.unwrap();
    conn_b.execute("CREATE TABLE secret (v INT)").await.unwrap();
    conn_b
        .execute("INSERT INTO secret VALUES (42)")
        .await
        .unwrap();

    let mut conn_a = connect(&ca).await.unwrap();
    assert_denied(
        conn_a
            .execute(format!("SELECT v FROM `{db_b}`.secret").as_str())
            .await,
        "read B's table",
    );
    assert_denied(
        conn_a
            .execute(format!("INSERT INTO `{db_b}`.secret VALUES (1)").as_str())
            .await,
        "write B's table",
    );
    assert_denied(
        conn_a
            .execute(format!("CREATE TABLE `{db_b}`.intruder (v INT)").as_str())
            .await,
        "create a table in B",
    );
    assert_denied(
        conn_a
            .execute(format!("DROP DATABASE `{db_b}`").as_str())
            .await,
        "drop B",
    );
    assert_denied(
        conn_a.execute(format!("USE `{db_b}`").as_str()).await,
        "use B",
    );
    // `_` is a wildcard in database grants: A's grant must not cover look-alike names.
    let look_alike = ca.0["database"].replacen('_', "X", 1);
    let created = conn_a
        .execute(format!("CREATE DATABASE `{look_alike}`").as_str())
        .await;
    if created.is_ok() {
        admin()
            .await
            .execute(format!("DROP DATABASE `{look_alike}`").as_str())
            .await
            .unwrap();
    }
    assert_denied(created, "create a look-alike database");
    // A's credentials with B's database name: the login itself is refused.
    let uri = format!(
        "mysql://{}:{}@{}:{}/{db_b}",
        ca.0["username"], ca.0["password"], ca.0["host"], ca.0["port"]
    );
    assert_denied(MySqlConnection::connect(&uri).await, "connect to B");

    conn_a.close().await.unwrap();
    conn_b.close().await.unwrap();
    backend.deprovision(&inst_a).await.unwrap();
    backend.deprovision(&inst_b).await.unwrap();
}

#[tokio::test]
async fn read_only_bindings_can_only_read() {
    let backend = backend();
    let (iid, rw, ro) = (new_id(), new_id(), new_id());
    let settings = json!({});
    let inst = instance(&iid, &settings);
    backend.provision(&inst).await.unwrap();
    let c_rw = backend
        .bind(&binding(inst, &rw, no_params()))
        .await
        .unwrap();
    let mut conn = connect(&c_rw).await.unwrap();
    conn.execute("CREATE TABLE t (v INT)").await.unwrap();
    conn.execute("INSERT INTO t VALUES (7)").await.unwrap();
    conn.execute("CREATE VIEW v AS SELECT v FROM t")
        .await
        .unwrap();

    let read_only = json!({"read_only": true});
    let read_only = read_only.as_object().unwrap();
    let c_ro = backend.bind(&binding(inst, &ro, read_only)).await.unwrap();
    let mut ro_conn = connect(&c_ro).await.unwrap();
    let v: i32 = sqlx::query_scalar("SELECT v FROM t")
        .fetch_one(&mut ro_conn)
        .await
        .unwrap();
    assert_eq!(v, 7);
    let v: i32 = sqlx::query_scalar("SELECT v FROM v")
        .fetch_one(&mut ro_conn)
        .await
        .unwrap();
    assert_eq!(v, 7);
    ro_conn.execute("SHOW CREATE VIEW v").await.unwrap();
    assert_denied(ro_conn.execute("INSERT INTO t VALUES (1)").await, "insert");
    assert_denied(ro_conn.execute("UPDATE t SET v = 0").await, "update");
    assert_denied(ro_conn.execute("DELETE FROM t").await, "delete");
    assert_denied(ro_conn.execute("CREATE TABLE u (v INT)").await, "create");
    assert_denied(ro_conn.execute("DROP TABLE t").await, "drop");

    // A rerun with the same parameters converges to the same rights.
    let c_ro2 = backend.bind(&binding(inst, &ro, read_only)).await.unwrap();
    let mut ro_conn2 = connect(&c_ro2).await.unwrap();
    assert_denied(ro_conn2.execute("INSERT INTO t VALUES (1)").await, "insert");
    ro_conn2.execute("SELECT v FROM t").await.unwrap();

    for c in [conn, ro_conn, ro_conn2] {
        c.close().await.unwrap();
    }
    backend.deprovision(&inst).await.unwrap();
}

#[tokio::test]
async fn unbind_revokes_at_once_and_spares_other_bindings() {
    let backend = backend();
    let (iid, gone, kept) = (new_id(), new_id(), new_id());
    let settings = json!({});
    let inst = instance(&iid, &settings);
    backend.provision(&inst).await.unwrap();
    let c_gone = backend
        .bind(&binding(inst, &gone, no_params()))
        .await
        .unwrap();
    let c_kept = backend
        .bind(&binding(inst, &kept, no_params()))
        .await
        .unwrap();
    let mut open = connect(&c_gone).await.unwrap();
    open.execute("CREATE TABLE t (v INT)").await.unwrap();
    let mut other = connect(&c_kept).await.unwrap();

    for _ in 0..2 {
        backend
            .unbind(&binding(inst, &gone, no_params()))
            .await
            .unwrap();
    }
    assert!(
        !alive(&mut open).await,
        "the open connection was not killed"
    );
    assert_denied(connect(&c_gone).await, "log in after unbind");
    let mut admin = admin().await;
    assert!(
        users_with_prefix(&mut admin, &c_gone.0["username"])
            .await
            .is_empty()
    );
    assert_eq!(
        sessions_with_prefix(&mut admin, &c_gone.0["username"]).await,
        0
    );

    // The other binding and the data are untouched.
    assert!(alive(&mut other).await);
    other.execute("INSERT INTO t VALUES (1)").await.unwrap();
    connect(&c_kept).await.unwrap().close().await.unwrap();

    other.close().await.unwrap();
    backend.deprovision(&inst).await.unwrap();
}

#[tokio::test]
async fn deprovision_removes_everything_even_with_live_connections() {
    let backend = backend();
    let (iid, b1, b2) = (new_id(), new_id(), new_id());
    let settings = json!({});
    let inst = instance(&iid, &settings);
    backend.provision(&inst).await.unwrap();
    let c1 = backend
        .bind(&binding(inst, &b1, no_params()))
        .await
        .unwrap();
    let read_only = json!({"read_only": true});
    let c2 = backend
        .bind(&binding(inst, &b2, read_only.as_object().unwrap()))
        .await
        .unwrap();
    let database = c1.0["database"].clone();
    let user_prefix = user_prefix_of(&c1);

    // An open transaction holding a lock on a table, and an idle reader.
    let mut busy = connect(&c1).await.unwrap();
    busy.execute("CREATE TABLE t (v INT) ENGINE=InnoDB")
        .await
        .unwrap();
    busy.execute("BEGIN").await.unwrap();
    busy.execute("INSERT INTO t VALUES (1)").await.unwrap();
    busy.execute("SELECT * FROM t FOR UPDATE").await.unwrap();
    let mut idle = connect(&c2).await.unwrap();

    let started = Instant::now();
    backend.deprovision(&inst).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(20));
    backend.deprovision(&inst).await.unwrap();

    assert!(!alive(&mut busy).await);
    assert!(!alive(&mut idle).await);
    let mut admin = admin().await;
    assert!(!database_exists(&mut admin, &database).await);
    assert!(users_with_prefix(&mut admin, &user_prefix).await.is_empty());
    assert_eq!(sessions_with_prefix(&mut admin, &user_prefix).await, 0);
    assert_denied(connect(&c1).await, "log in after deprovision");
    // Binding to a deprovisioned instance fails for good.
    let err = backend
        .bind(&binding(inst, &b1, no_params()))
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Failed(_)), "{err:?}");
}

#[tokio::test]
async fn every_step_twice_converges() {
    let backend = backend();
    let (iid, bid) = (new_id(), new_id());
    let small = json!({"max_user_connections": 2, "collation": "utf8mb4_bin"});
    let large = json!({"max_user_connections": 3});
    let inst = instance(&iid, &small);
    backend.provision(&inst).await.unwrap();
    backend.provision(&inst).await.unwrap();

    let first = backend
        .bind(&binding(inst, &bid, no_params()))
        .await
        .unwrap();
    let second = backend
        .bind(&binding(inst, &bid, no_params()))
        .await
        .unwrap();
    assert_eq!(first.0["username"], second.0["username"]);
    assert_ne!(first.0["password"], second.0["password"]);
    // Only the last password works.
    assert_denied(connect(&first).await, "log in with the replaced password");

    let mut admin = admin().await;
    let collation: String = sqlx::query_scalar(
        "SELECT DEFAULT_COLLATION_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
    )
    .bind(&second.0["database"])
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(collation, "utf8mb4_bin");

    // max_user_connections = 2: a third connection is refused.
    let mut c1 = connect(&second).await.unwrap();
    let mut c2 = connect(&second).await.unwrap();
    let third = connect(&second).await;
    assert!(
        matches!(third.as_ref().map_err(error_number), Err(Some(1226 | 1203))),
        "third connection: {:?}",
        third.map(|_| ())
    );

    let target = instance(&iid, &large);
    let change = UpdateSpec {
        target,
        previous_plan_settings: &small,
        previous_parameters: no_params(),
    };
    backend.update(&change).await.unwrap();
    backend.update(&change).await.unwrap();
    let limit: i64 = sqlx::query_scalar(
        "SELECT CAST(max_user_connections AS SIGNED) FROM mysql.user WHERE User = ?",
    )
    .bind(&second.0["username"])
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(limit, 3);
    let mut c3 = connect(&second).await.unwrap();
    assert!(alive(&mut c1).await && alive(&mut c2).await && alive(&mut c3).await);
    for c in [c1, c2, c3] {
        c.close().await.unwrap();
    }
    // A new binding gets the new plan's limit.
    let other = new_id();
    let c_other = backend
        .bind(&binding(target, &other, no_params()))
        .await
        .unwrap();
    let limit: i64 = sqlx::query_scalar(
        "SELECT CAST(max_user_connections AS SIGNED) FROM mysql.user WHERE User = ?",
    )
    .bind(&c_other.0["username"])
    .fetch_one(&mut admin)
    .await
    .unwrap();
    assert_eq!(limit, 3);

    backend
        .unbind(&binding(target, &bid, no_params()))
        .await
        .unwrap();
    backend
        .unbind(&binding(target, &bid, no_params()))
        .await
        .unwrap();
    assert_denied(connect(&second).await, "log in after unbind");
    connect(&c_other).await.unwrap().close().await.unwrap();

    backend.deprovision(&target).await.unwrap();
    backend.deprovision(&target).await.unwrap();
    assert!(!database_exists(&mut admin, &second.0["database"]).await);
    assert!(
        users_with_prefix(&mut admin, &user_prefix_of(&second))
            .await
            .is_empty()
    );
    // Updating a deprovisioned instance fails for good.
    let err = backend.update(&change).await.unwrap_err();
    assert!(matches!(err, BackendError::Failed(_)), "{err:?}");
}

#[tokio::test]
async fn unbind_and_deprovision_of_unknown_ids_succeed() {
    let backend = backend();
    let (iid, bid) = (new_id(), new_id());
    let settings = json!({});
    let inst = instance(&iid, &settings);
    backend
        .unbind(&binding(inst, &bid, no_params()))
        .await
        .unwrap();
    backend.deprovision(&inst).await.unwrap();
    // A binding whose instance exists but that was never created.
    backend.provision(&inst).await.unwrap();
    backend
        .unbind(&binding(inst, &bid, no_params()))
        .await
        .unwrap();
    backend.deprovision(&inst).await.unwrap();
}

#[tokio::test]
async fn bad_settings_and_parameters_are_reported() {
    let problems = check_plan_settings(&json!({
        "max_user_connections": 100001,
        "character_set": "utf8mb4'; DROP DATABASE mysql; --",
        "collation": "UTF8MB4_BIN",
        "connection_limit": 5,
    }));
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert!(problems.iter().any(|p| p.contains("connection_limit")));
    assert!(check_plan_settings(&json!({"max_user_connections": -1})).len() == 1);
    assert!(check_plan_settings(&json!("utf8mb4")).len() == 1);
    assert!(
        check_plan_settings(&json!({
            "max_user_connections": 0, "character_set": "latin1", "collation": "latin1_bin"
        }))
        .is_empty()
    );
    let backend = backend();
    assert_eq!(
        backend
            .check_plan_settings(&json!({"max_user_connections": "10"}))
            .len(),
        1
    );

    // Invalid settings reaching provision fail without touching the server.
    let iid = new_id();
    let bad = json!({"character_set": "no such"});
    let err = backend.provision(&instance(&iid, &bad)).await.unwrap_err();
    assert!(matches!(err, BackendError::Failed(_)), "{err:?}");
    // A character set the server does not know fails for good, leaving nothing.
    let unknown = json!({"character_set": "nosuchcharset"});
    let err = backend
        .provision(&instance(&iid, &unknown))
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Failed(_)), "{err:?}");
    let mismatch = json!({"character_set": "latin1", "collation": "utf8mb4_bin"});
    let err = backend
        .provision(&instance(&iid, &mismatch))
        .await
        .unwrap_err();
    assert!(matches!(err, BackendError::Failed(_)), "{err:?}");
    // Instance parameters are refused; bind parameters other than read_only too.
    let settings = json!({});
    let params = json!({"size": "large"});
    let mut inst = instance(&iid, &settings);
    inst.parameters = params.as_object().unwrap();
    assert!(matches!(
        backend.provision(&inst).await,
        Err(BackendError::Failed(_))
    ));
    let inst = instance(&iid, &settings);
    backend.provision(&inst).await.unwrap();
    let bid = new_id();
    for bad in [json!({"read_only": "yes"}), json!({"admin": true})] {
        let err = backend
            .bind(&binding(inst, &bid, bad.as_object().unwrap()))
            .await
            .unwrap_err();
        assert!(matches!(err, BackendError::Failed(_)), "{err:?}");
    }
    backend.deprovision(&inst).await.unwrap();
    let mut admin = admin().await;
    let database = format!("{PREFIX}_{}", &sha256_hex(&iid)[..20]);
    assert!(!database_exists(&mut admin, &database).await);
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(s.as_bytes()))
}

#[tokio::test]
async fn an_unreachable_server_is_unavailable_quickly() {
    // Construction does not connect.
    let mut config =
        MariaDbBackendConfig::new(SecretString::from("mysql://root:s3cr3tpw@127.0.0.1:1"));
    config.name_prefix = PREFIX.to_owned();
    let backend = MariaDbBackend::new(config).unwrap();
    let (iid, bid) = (new_id(), new_id());
    let settings = json!({});
    let inst = instance(&iid, &settings);
    let started = Instant::now();
    let spec = binding(inst, &bid, no_params());
    // Concurrently: each waits for the admin pool's acquire timeout.
    let (provision, bind, unbind, deprovision) = tokio::join!(
        backend.provision(&inst),
        backend.bind(&spec),
        backend.unbind(&spec),
        backend.deprovision(&inst),
    );
    let results = [provision.map(drop), bind.map(drop), unbind, deprovision];
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "took {:?}",
        started.elapsed()
    );
    for result in results {
        match result {
            Err(BackendError::Unavailable(message)) => {
                assert!(message.contains("unreachable"), "{message}");
                assert!(!message.contains("s3cr3tpw"), "{message}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
    let single = Instant::now();
    assert!(matches!(
        backend.provision(&inst).await,
        Err(BackendError::Unavailable(_))
    ));
    assert!(
        single.elapsed() < Duration::from_secs(8),
        "took {:?}",
        single.elapsed()
    );
}
