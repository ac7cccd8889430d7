//! Integration tests of the Redis backend against a real Redis 7 server.
//!
//! The server comes from `BINDERY_TEST_REDIS_ADMIN_URL` (default
//! `redis://127.0.0.1:6379`); its admin user needs full access. Every test uses fresh
//! uuid-based ids under the name prefix `bdtest`, so tests run in parallel, and
//! deprovisions what it created. Destructive commands (FLUSHALL, SHUTDOWN, ...) are
//! checked with `ACL DRYRUN`, which runs the server's real permission check without
//! executing the command, so a broken rule cannot wipe the shared test server.

use std::time::{Duration, Instant};

use bindery::backends::redis::{RedisBackend, RedisBackendConfig, check_plan_settings};
use bindery::backends::{
    BackendError, BindingSpec, Credentials, InstanceSpec, ServiceBackend, UpdateSpec,
};
use futures::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, Cmd, RedisError};
use secrecy::SecretString;
use serde_json::{Map, Value, json};

const PREFIX: &str = "bdtest";

fn admin_url() -> String {
    std::env::var("BINDERY_TEST_REDIS_ADMIN_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

fn backend() -> RedisBackend {
    let mut config = RedisBackendConfig::new(SecretString::from(admin_url()));
    config.name_prefix = PREFIX.to_owned();
    RedisBackend::new(config).expect("valid config")
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
        service_id: "svc-redis",
        plan_id: "plan-redis",
        plan_settings: settings,
        parameters: no_params(),
        context: None,
        facts: None,
    }
}

fn binding<'a>(
    instance: InstanceSpec<'a>,
    id: &'a str,
    params: &'a Map<String, Value>,
) -> BindingSpec<'a> {
    BindingSpec {
        instance,
        binding_id: id,
        parameters: params,
        password: new_password(),
    }
}

/// A fresh password for one bind, as the executor derives one per bind operation.
fn new_password() -> &'static secrecy::SecretString {
    Box::leak(Box::new(secrecy::SecretString::from(
        uuid::Uuid::new_v4().simple().to_string(),
    )))
}

fn read_only_params() -> Map<String, Value> {
    json!({ "read_only": true }).as_object().unwrap().clone()
}

fn config() -> AsyncConnectionConfig {
    AsyncConnectionConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(Duration::from_secs(5)))
}

async fn admin_conn() -> MultiplexedConnection {
    Client::open(admin_url())
        .unwrap()
        .get_multiplexed_async_connection_with_config(&config())
        .await
        .expect("admin connection")
}

/// A connection authenticated with a binding's credentials (the `uri` key).
async fn tenant_conn(creds: &Credentials) -> Result<MultiplexedConnection, RedisError> {
    Client::open(creds.0["uri"].as_str())?
        .get_multiplexed_async_connection_with_config(&config())
        .await
}

async fn run(conn: &mut MultiplexedConnection, args: &[&str]) -> Result<redis::Value, RedisError> {
    let mut cmd = Cmd::new();
    for a in args {
        cmd.arg(*a);
    }
    cmd.query_async(conn).await
}

fn assert_noperm(result: Result<redis::Value, RedisError>, what: &str) {
    match result {
        Err(e) => assert_eq!(e.code(), Some("NOPERM"), "{what}: expected NOPERM, got {e}"),
        Ok(v) => panic!("{what}: expected NOPERM, but it succeeded with {v:?}"),
    }
}

/// Whether the user may run the command, by the server's own check (nothing runs).
async fn dry_run_allowed(admin: &mut MultiplexedConnection, user: &str, args: &[&str]) -> bool {
    let mut cmd = Cmd::new();
    cmd.arg("ACL").arg("DRYRUN").arg(user);
    for a in args {
        cmd.arg(*a);
    }
    let reply: String = cmd.query_async(admin).await.expect("ACL DRYRUN");
    reply == "OK"
}

async fn users_with_prefix(admin: &mut MultiplexedConnection, prefix: &str) -> Vec<String> {
    let users: Vec<String> = Cmd::new()
        .arg("ACL")
        .arg("USERS")
        .query_async(admin)
        .await
        .unwrap();
    users
        .into_iter()
        .filter(|u| u.starts_with(prefix))
        .collect()
}

async fn keys_with_prefix(admin: &mut MultiplexedConnection, prefix: &str) -> usize {
    let mut cursor: u64 = 0;
    let mut count = 0;
    loop {
        let (next, keys): (u64, Vec<Vec<u8>>) = Cmd::new()
            .arg("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(format!("{prefix}*"))
            .arg("COUNT")
            .arg(1000)
            .query_async(admin)
            .await
            .unwrap();
        count += keys.len();
        if next == 0 {
            return count;
        }
        cursor = next;
    }
}

/// The user-name prefix of an instance's bindings, from a binding's user name.
fn user_prefix_of(creds: &Credentials) -> String {
    let name = &creds.0["username"];
    name[..name.rfind('_').unwrap() + 1].to_owned()
}

#[tokio::test]
async fn binding_reads_writes_and_publishes_only_under_its_prefix() {
    let backend = backend();
    let (iid, bid) = (new_id(), new_id());
    let settings = json!({});
    let inst = instance(&iid, &settings);
    backend.provision(&inst).await.unwrap();
    let creds = backend
        .bind(&binding(inst, &bid, no_params()))
        .await
        .unwrap();

    let keys: Vec<&str> = creds.0.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "host",
            "key_prefix",
            "password",
            "port",
            "provider",
            "type",
            "uri",
            "username"
        ]
    );
    let prefix = creds.0["key_prefix"].clone();
    assert_eq!(prefix, backend.key_prefix(&iid));
    assert!(prefix.starts_with("bdtest:") && prefix.ends_with(':'));
    assert_eq!(creds.0["password"].len(), 32);
    assert_eq!(creds.0["username"], backend.user_name(&iid, &bid));
    assert!(!format!("{creds:?}").contains(&creds.0["password"]));

    let mut conn = tenant_conn(&creds)
        .await
        .expect("AUTH with the binding's credentials");
    let whoami: String = Cmd::new()
        .arg("ACL")
        .arg("WHOAMI")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(whoami, creds.0["username"]);

    let key = format!("{prefix}greeting");
    run(&mut conn, &["SET", &key, "hello"]).await.unwrap();
    let got: String = Cmd::new()
        .arg("GET")
        .arg(&key)
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(got, "hello");
    // Everyday commands that must keep working.
    run(&mut conn, &["PING"]).await.unwrap();
    run(&mut conn, &["CLIENT", "SETNAME", "app"]).await.unwrap();
    run(&mut conn, &["CLIENT", "ID"]).await.unwrap();
    run(&mut conn, &["RPUSH", &format!("{prefix}list"), "2", "1"])
        .await
        .unwrap();
    run(&mut conn, &["SORT", &format!("{prefix}list")])
        .await
        .unwrap();
    run(&mut conn, &["MEMORY", "USAGE", &key]).await.unwrap();
    run(&mut conn, &["EXPIRE", &key, "600"]).await.unwrap();

    // Outside the prefix.
    let outside = format!("bdtest-outside:{}", new_id());
    assert_noperm(
        run(&mut conn, &["SET", &outside, "x"]).await,
        "SET outside the prefix",
    );
    assert_noperm(
        run(&mut conn, &["GET", &outside]).await,
        "GET outside the prefix",
    );
    assert_noperm(
        run(&mut conn, &["MSET", &key, "a", &outside, "b"]).await,
        "MSET spanning",
    );
    // SORT's BY/GET patterns could read any key: Redis refuses them (with ERR).
    let err = run(
        &mut conn,
        &[
            "SORT",
            &format!("{prefix}list"),
            "BY",
            &format!("{prefix}w_*"),
        ],
    )
    .await
    .expect_err("SORT BY pattern allowed");
    assert!(err.to_string().contains("denied"), "{err}");
    assert_noperm(
        run(
            &mut conn,
            &["PUBLISH", &format!("bdtest-outside:{}", new_id()), "x"],
        )
        .await,
        "PUBLISH outside the prefix",
    );

    // Pub/sub on a prefixed channel.
    let channel = format!("{prefix}events");
    let mut pubsub = Client::open(creds.0["uri"].as_str())
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    pubsub.subscribe(&channel).await.unwrap();
    let receivers: i64 = Cmd::new()
        .arg("PUBLISH")
        .arg(&channel)
        .arg("ping")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(receivers, 1);
    let msg = tokio::time::timeout(Duration::from_secs(5), pubsub.on_message().next())
        .await
        .expect("message within 5s")
        .expect("stream open");
    assert_eq!(msg.get_channel_name(), channel);
    assert_eq!(msg.get_payload::<String>().unwrap(), "ping");
    let mut other_sub = Client::open(creds.0["uri"].as_str())
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    let denied = other_sub
        .subscribe(format!("bdtest-outside:{}", new_id()))
        .await;
    assert_eq!(
        denied.unwrap_err().code(),
        Some("NOPERM"),
        "SUBSCRIBE outside the prefix"
    );

    // Whole-server, other-database and script commands, run for real (all harmless
    // if they were wrongly allowed).
    for args in [
        &["CONFIG", "GET", "maxmemory"][..],
        &["KEYS", "*"],
        &["SCAN", "0"],
        &["RANDOMKEY"],
        &["DBSIZE"],
        &["ACL", "LIST"],
        &["ACL", "USERS"],
        &["SELECT", "1"],
        &["EVAL", "return 1", "0"],
        &["EVAL_RO", "return 1", "0"],
        &[
            "SCRIPT",
            "EXISTS",
            "0000000000000000000000000000000000000000",
        ],
        &["FUNCTION", "LIST"],
        &["INFO"],
        &["CLIENT", "LIST"],
        &["PUBSUB", "CHANNELS"],
        &["MEMORY", "STATS"],
        &["SLOWLOG", "GET"],
        &["OBJECT", "ENCODING", &outside],
        &["MOVE", &key, "1"],
        &["COPY", &key, &format!("{prefix}copy"), "DB", "1"],
    ] {
        assert_noperm(run(&mut conn, args).await, &args.join(" "));
    }
    // Destructive commands, checked without running them.
    let user = creds.0["username"].clone();
    let mut admin = admin_conn().await;
    for args in [
        &["FLUSHALL"][..],
        &["FLUSHDB"],
        &["SWAPDB", "0", "1"],
        &["SHUTDOWN"],
        &["DEBUG", "SLEEP", "0"],
        &["MONITOR"],
        &["CONFIG", "SET", "maxmemory", "1"],
        &["SCRIPT", "FLUSH"],
        &["FUNCTION", "FLUSH"],
        &["MIGRATE", "127.0.0.1", "1", &key, "0", "1000"],
        &["CLIENT", "KILL", "ID", "1"],
        &["CLIENT", "PAUSE", "1"],
        &["ACL", "SETUSER", "x"],
        &["MODULE", "LIST"],
        &["REPLICAOF", "NO", "ONE"],
        &["BGSAVE"],
    ] {
        assert!(
            !dry_run_allowed(&mut admin, &user, args).await,
            "{} is allowed",
            args.join(" ")
        );
    }
    assert!(dry_run_allowed(&mut admin, &user, &["SET", &key, "x"]).await);

    backend.deprovision(&inst).await.unwrap();
}

#[tokio::test]
async fn instances_cannot_reach_each_other() {
    let backend = backend();
    let (ia, ib, ba, bb) = (new_id(), new_id(), new_id(), new_id());
    let settings = json!({});
    let (inst_a, inst_b) = (instance(&ia, &settings), instance(&ib, &settings));
    backend.provision(&inst_a).await.unwrap();
    backend.provision(&inst_b).await.unwrap();
    let creds_a = backend
        .bind(&binding(inst_a, &ba, no_params()))
        .await
        .unwrap();
    let creds_b = backend
        .bind(&binding(inst_b, &bb, no_params()))
        .await
        .unwrap();
    assert_ne!(creds_a.0["key_prefix"], creds_b.0["key_prefix"]);

    let mut a = tenant_conn(&creds_a).await.unwrap();
    let mut b = tenant_conn(&creds_b).await.unwrap();
    let key_a = format!("{}secret", creds_a.0["key_prefix"]);
    let key_b = format!("{}secret", creds_b.0["key_prefix"]);
    run(&mut a, &["SET", &key_a, "a"]).await.unwrap();
    run(&mut b, &["SET", &key_b, "b"]).await.unwrap();

    assert_noperm(run(&mut b, &["GET", &key_a]).await, "B reads A's key");
    assert_noperm(run(&mut b, &["EXISTS", &key_a]).await, "B probes A's key");
    assert_noperm(
        run(&mut b, &["MGET", &key_b, &key_a]).await,
        "B reads A's key via MGET",
    );
    assert_noperm(run(&mut b, &["DEL", &key_a]).await, "B deletes A's key");
    assert_noperm(
        run(&mut b, &["RENAME", &key_b, &key_a]).await,
        "B renames onto A's key",
    );
    assert_noperm(run(&mut a, &["GET", &key_b]).await, "A reads B's key");
    assert_noperm(
        run(
            &mut b,
            &[
                "PUBLISH",
                &format!("{}events", creds_a.0["key_prefix"]),
                "x",
            ],
        )
        .await,
        "B publishes on A's channel",
    );

    let got: String = Cmd::new()
        .arg("GET")
        .arg(&key_a)
        .query_async(&mut a)
        .await
        .unwrap();
    assert_eq!(got, "a", "A's key is intact");

    // A second binding of A shares A's data.
    let ba2 = new_id();
    let creds_a2 = backend
        .bind(&binding(inst_a, &ba2, no_params()))
        .await
        .unwrap();
    let mut a2 = tenant_conn(&creds_a2).await.unwrap();
    let got: String = Cmd::new()
        .arg("GET")
        .arg(&key_a)
        .query_async(&mut a2)
        .await
        .unwrap();
    assert_eq!(got, "a");

    // Deprovisioning A leaves B alone.
    backend.deprovision(&inst_a).await.unwrap();
    let got: String = Cmd::new()
        .arg("GET")
        .arg(&key_b)
        .query_async(&mut b)
        .await
        .unwrap();
    assert_eq!(got, "b");
    backend.deprovision(&inst_b).await.unwrap();
}

#[tokio::test]
async fn read_only_binding_reads_but_cannot_write_or_publish() {
    let backend = backend();
    let (iid, rw, ro) = (new_id(), new_id(), new_id());
    let settings = json!({});
    let inst = instance(&iid, &settings);
    backend.provision(&inst).await.unwrap();
    let writer = backend
        .bind(&binding(inst, &rw, no_params()))
        .await
        .unwrap();
    let params = read_only_params();
    let reader = backend.bind(&binding(inst, &ro, &params)).await.unwrap();

    let prefix = reader.0["key_prefix"].clone();
    let key = format!("{prefix}k");
    let mut w = tenant_conn(&writer).await.unwrap();
    run(&mut w, &["SET", &key, "v"]).await.unwrap();

    let mut r = tenant_conn(&reader).await.unwrap();
    let got: String = Cmd::new()
        .arg("GET")
        .arg(&key)
        .query_async(&mut r)
        .await
        .unwrap();
    assert_eq!(got, "v");
    run(&mut r, &["TTL", &key]).await.unwrap();
    run(&mut r, &["MULTI"]).await.unwrap();
    run(&mut r, &["DISCARD"]).await.unwrap();
    assert_noperm(run(&mut r, &["SET", &key, "x"]).await, "read-only SET");
    assert_noperm(run(&mut r, &["DEL", &key]).await, "read-only DEL");
    assert_noperm(
        run(&mut r, &["EXPIRE", &key, "1"]).await,
        "read-only EXPIRE",
    );
    assert_noperm(
        run(&mut r, &["PUBLISH", &format!("{prefix}c"), "x"]).await,
        "read-only PUBLISH",
    );
    assert_noperm(run(&mut r, &["KEYS", "*"]).await, "read-only KEYS");
    assert_noperm(run(&mut r, &["SCAN", "0"]).await, "read-only SCAN");
    assert_noperm(
        run(&mut r, &["GET", "bdtest-outside:x"]).await,
        "read-only outside",
    );
    // It may listen.
    let mut sub = Client::open(reader.0["uri"].as_str())
        .unwrap()
        .get_async_pubsub()
        .await
        .unwrap();
    sub.subscribe(format!("{prefix}c")).await.unwrap();

    let bad = json!({ "read_only": "yes" }).as_object().unwrap().clone();
    let err = backend
        .bind(&binding(inst, &new_id(), &bad))
        .await
        .unwrap_err();
    assert!(
        matches!(err, BackendError::Failed(ref m) if m.contains("read_only")),
        "{err:?}"
    );

    backend.deprovision(&inst).await.unwrap();
}

#[tokio::test]
async fn unbind_revokes_credentials_and_kills_connections() {
    let backend = backend();
    let (iid, b1, b2) = (new_id(), new_id(), new_id());
    let settings = json!({});
    let inst = instance(&iid, &settings);
    backend.provision(&inst).await.unwrap();
    let creds1 = backend
        .bind(&binding(inst, &b1, no_params()))
        .await
        .unwrap();
    let creds2 = backend
        .bind(&binding(inst, &b2, no_params()))
        .await
        .unwrap();

    let mut open1 = tenant_conn(&creds1).await.unwrap();
    run(&mut open1, &["PING"]).await.unwrap();
    let mut open2 = tenant_conn(&creds2).await.unwrap();

    backend
        .unbind(&binding(inst, &b1, no_params()))
        .await
        .unwrap();
    backend
        .unbind(&binding(inst, &b1, no_params()))
        .await
        .unwrap();

    // The server closed the connection: the next command fails.
    run(&mut open1, &["PING"])
        .await
        .expect_err("connection of an unbound user still open");
    let err = tenant_conn(&creds1).await.expect_err("AUTH after unbind");
    assert!(
        err.code() == Some("WRONGPASS") || err.kind() == redis::ErrorKind::AuthenticationFailed,
        "{err}"
    );

    // The other binding keeps working, on its open connection and on a new one.
    let key = format!("{}k", creds2.0["key_prefix"]);
    run(&mut open2, &["SET", &key, "still here"]).await.unwrap();
    let mut fresh2 = tenant_conn(&creds2).await.unwrap();
    run(&mut fresh2, &["GET", &key]).await.unwrap();

    backend.deprovision(&inst).await.unwrap();
}

#[tokio::test]
async fn deprovision_removes_users_and_all_keys_and_leaves_the_rest() {
    let backend = backend();
    let (iid, b1, b2) = (new_id(), new_id(), new_id());
    let settings = json!({});
    let inst = instance(&iid, &settings);
    backend.provision(&inst).await.unwrap();
    let creds = backend
        .bind(&binding(inst, &b1, no_params()))
        .await
        .unwrap();
    let params = read_only_params();
    backend.bind(&binding(inst, &b2, &params)).await.unwrap();
    let prefix = creds.0["key_prefix"].clone();
    let user_prefix = user_prefix_of(&creds);

    // A few thousand keys so that SCAN and UNLINK take several batches.
    let mut conn = tenant_conn(&creds).await.unwrap();
    let mut pipe = redis::pipe();
    for i in 0..2500 {
        pipe.cmd("SET").arg(format!("{prefix}k{i}")).arg(i).ignore();
    }
    pipe.cmd("SET")
        .arg(format!("{prefix}\u{7f}bin\\*[x]"))
        .arg("odd name")
        .ignore();
    pipe.exec_async(&mut conn).await.unwrap();
    let mut admin = admin_conn().await;
    let outsider = format!("bdtest-outside:{}", new_id());
    run(&mut admin, &["SET", &outsider, "keep"]).await.unwrap();
    assert_eq!(keys_with_prefix(&mut admin, &prefix).await, 2501);
    assert_eq!(users_with_prefix(&mut admin, &user_prefix).await.len(), 2);

    backend.deprovision(&inst).await.unwrap();
    assert!(
        run(&mut conn, &["PING"]).await.is_err(),
        "open connection killed"
    );
    assert!(tenant_conn(&creds).await.is_err(), "credentials revoked");
    assert_eq!(
        users_with_prefix(&mut admin, &user_prefix).await,
        Vec::<String>::new()
    );
    assert_eq!(keys_with_prefix(&mut admin, &prefix).await, 0);
    let kept: String = Cmd::new()
        .arg("GET")
        .arg(&outsider)
        .query_async(&mut admin)
        .await
        .unwrap();
    assert_eq!(kept, "keep");

    backend.deprovision(&inst).await.unwrap();
    run(&mut admin, &["DEL", &outsider]).await.unwrap();
}

#[tokio::test]
async fn every_step_twice_converges() {
    let backend = backend();
    let (iid, bid) = (new_id(), new_id());
    let settings = json!({ "allow_pubsub": true });
    let inst = instance(&iid, &settings);
    backend.provision(&inst).await.unwrap();
    backend.provision(&inst).await.unwrap();

    let first = backend
        .bind(&binding(inst, &bid, no_params()))
        .await
        .unwrap();
    let mut open_first = tenant_conn(&first).await.unwrap();
    let second = backend
        .bind(&binding(inst, &bid, no_params()))
        .await
        .unwrap();
    assert_eq!(first.0["username"], second.0["username"]);
    assert_ne!(first.0["password"], second.0["password"]);
    // Only the last credentials work.
    assert!(
        tenant_conn(&first).await.is_err(),
        "old password still accepted"
    );
    let mut conn = tenant_conn(&second).await.unwrap();
    let key = format!("{}k", second.0["key_prefix"]);
    run(&mut conn, &["SET", &key, "v"]).await.unwrap();
    // A connection opened with the old password keeps the (unchanged) permissions.
    run(&mut open_first, &["GET", &key]).await.unwrap();
    let mut admin = admin_conn().await;
    assert_eq!(
        users_with_prefix(&mut admin, &user_prefix_of(&second))
            .await
            .len(),
        1
    );

    let update = UpdateSpec {
        target: inst,
        previous_plan_settings: &settings,
        previous_parameters: no_params(),
    };
    backend.update(&update).await.unwrap();
    backend.update(&update).await.unwrap();
    run(&mut conn, &["GET", &key]).await.unwrap();

    backend
        .unbind(&binding(inst, &bid, no_params()))
        .await
        .unwrap();
    backend
        .unbind(&binding(inst, &bid, no_params()))
        .await
        .unwrap();
    backend.deprovision(&inst).await.unwrap();
    backend.deprovision(&inst).await.unwrap();
    assert_eq!(
        keys_with_prefix(&mut admin, &second.0["key_prefix"]).await,
        0
    );
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
    let update = UpdateSpec {
        target: inst,
        previous_plan_settings: &json!({ "allow_pubsub": false }),
        previous_parameters: no_params(),
    };
    backend.update(&update).await.unwrap();
}

#[tokio::test]
async fn update_switches_pubsub_for_existing_bindings() {
    let backend = backend();
    let (iid, rw, ro) = (new_id(), new_id(), new_id());
    let with = json!({});
    let without = json!({ "allow_pubsub": false });
    let inst = instance(&iid, &with);
    backend.provision(&inst).await.unwrap();
    let writer = backend
        .bind(&binding(inst, &rw, no_params()))
        .await
        .unwrap();
    let params = read_only_params();
    let reader = backend.bind(&binding(inst, &ro, &params)).await.unwrap();
    let channel = format!("{}c", writer.0["key_prefix"]);
    let mut w = tenant_conn(&writer).await.unwrap();
    run(&mut w, &["PUBLISH", &channel, "x"]).await.unwrap();

    let inst_without = instance(&iid, &without);
    backend
        .update(&UpdateSpec {
            target: inst_without,
            previous_plan_settings: &with,
            previous_parameters: no_params(),
        })
        .await
        .unwrap();
    let mut w = tenant_conn(&writer).await.unwrap();
    assert_noperm(
        run(&mut w, &["PUBLISH", &channel, "x"]).await,
        "PUBLISH after pub/sub is off",
    );
    let key = format!("{}k", writer.0["key_prefix"]);
    run(&mut w, &["SET", &key, "v"]).await.unwrap();
    let mut r = tenant_conn(&reader).await.unwrap();
    run(&mut r, &["GET", &key]).await.unwrap();
    assert_noperm(
        run(&mut r, &["SET", &key, "x"]).await,
        "read-only after update",
    );

    // The updated users have exactly the rules a fresh bind under the new plan gives.
    let mut admin = admin_conn().await;
    let fresh_rw = backend
        .bind(&binding(inst_without, &new_id(), no_params()))
        .await
        .unwrap();
    let fresh_ro = backend
        .bind(&binding(inst_without, &new_id(), &params))
        .await
        .unwrap();
    for (updated, fresh) in [(&writer, &fresh_rw), (&reader, &fresh_ro)] {
        for field in ["commands", "keys", "channels"] {
            let a = getuser_field(&mut admin, &updated.0["username"], field).await;
            let b = getuser_field(&mut admin, &fresh.0["username"], field).await;
            assert_eq!(a, b, "{field} of {}", updated.0["username"]);
        }
    }

    // And back.
    backend
        .update(&UpdateSpec {
            target: inst,
            previous_plan_settings: &without,
            previous_parameters: no_params(),
        })
        .await
        .unwrap();
    run(&mut w, &["PUBLISH", &channel, "x"]).await.unwrap();
    assert_noperm(
        run(&mut r, &["PUBLISH", &channel, "x"]).await,
        "read-only PUBLISH",
    );

    backend.deprovision(&inst).await.unwrap();
}

async fn getuser_field(admin: &mut MultiplexedConnection, user: &str, field: &str) -> String {
    let fields: std::collections::HashMap<String, redis::Value> = Cmd::new()
        .arg("ACL")
        .arg("GETUSER")
        .arg(user)
        .query_async(admin)
        .await
        .unwrap();
    redis::from_redis_value_ref::<String>(&fields[field]).unwrap()
}

#[tokio::test]
async fn plan_settings_are_checked() {
    assert!(check_plan_settings(&json!({})).is_empty());
    assert!(check_plan_settings(&Value::Null).is_empty());
    assert!(check_plan_settings(&json!({ "allow_pubsub": false })).is_empty());
    let problems = check_plan_settings(&json!({ "max_memory": 1, "allow_pubsub": "no" }));
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems.iter().any(|p| p.contains("max_memory")),
        "{problems:?}"
    );
    assert!(
        problems.iter().any(|p| p.contains("allow_pubsub")),
        "{problems:?}"
    );
    assert_eq!(check_plan_settings(&json!([1])).len(), 1);
    // The trait method says the same.
    assert_eq!(
        backend()
            .check_plan_settings(&json!({ "nope": true }))
            .len(),
        1
    );

    // An operation with invalid settings fails without touching the server.
    let iid = new_id();
    let bad = json!({ "nope": true });
    let err = backend()
        .provision(&instance(&iid, &bad))
        .await
        .unwrap_err();
    assert!(
        matches!(err, BackendError::Failed(ref m) if m.contains("nope")),
        "{err:?}"
    );
}

#[tokio::test]
async fn unreachable_server_is_unavailable_quickly() {
    let mut config = RedisBackendConfig::new(SecretString::from(
        "redis://admin:s3cr3tpw@127.0.0.1:1".to_owned(),
    ));
    config.name_prefix = PREFIX.to_owned();
    let backend = RedisBackend::new(config).expect("no connection at construction");
    assert!(!format!("{backend:?}").contains("s3cr3tpw"));
    let (iid, bid) = (new_id(), new_id());
    let settings = json!({});
    let inst = instance(&iid, &settings);

    let started = Instant::now();
    let results = [
        backend.provision(&inst).await.map(|_| ()),
        backend
            .bind(&binding(inst, &bid, no_params()))
            .await
            .map(|_| ()),
        backend.unbind(&binding(inst, &bid, no_params())).await,
        backend.deprovision(&inst).await,
    ];
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "took {:?}",
        started.elapsed()
    );
    for result in results {
        match result {
            Err(BackendError::Unavailable(m)) => {
                assert!(m.contains("unreachable"), "{m}");
                assert!(!m.contains("s3cr3tpw"), "{m}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn configuration_is_validated_without_leaking_the_url() {
    let make = |url: &str, prefix: &str| {
        let mut config = RedisBackendConfig::new(SecretString::from(url.to_owned()));
        config.name_prefix = prefix.to_owned();
        RedisBackend::new(config)
    };
    for prefix in [
        "",
        "Bindery",
        "1abc",
        "has-dash",
        "waytoolongprefix_x",
        "a*",
    ] {
        assert!(
            make("redis://127.0.0.1:6379", prefix).is_err(),
            "{prefix:?} accepted"
        );
    }
    assert!(make("redis://127.0.0.1:6379", "a").is_ok());
    for url in [
        "rediss://u:s3cr3tpw@127.0.0.1:6379",
        "redis://u:s3cr3tpw@127.0.0.1:6379/3",
        "not a url s3cr3tpw",
    ] {
        let err = make(url, "bindery").unwrap_err().to_string();
        assert!(!err.contains("s3cr3tpw"), "{err}");
    }

    // credentials_host/port go into the credentials; the admin URL is used to connect.
    let mut config = RedisBackendConfig::new(SecretString::from(admin_url()));
    config.name_prefix = PREFIX.to_owned();
    config.credentials_host = Some("redis.example.internal".to_owned());
    config.credentials_port = Some(16379);
    let backend = RedisBackend::new(config).unwrap();
    let (iid, bid) = (new_id(), new_id());
    let settings = json!({});
    let inst = instance(&iid, &settings);
    let creds = backend
        .bind(&binding(inst, &bid, no_params()))
        .await
        .unwrap();
    assert_eq!(creds.0["host"], "redis.example.internal");
    assert_eq!(creds.0["port"], "16379");
    assert_eq!(
        creds.0["uri"],
        format!(
            "redis://{}:{}@redis.example.internal:16379",
            creds.0["username"], creds.0["password"]
        )
    );
    backend.deprovision(&inst).await.unwrap();
}
