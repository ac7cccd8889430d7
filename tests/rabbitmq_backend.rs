//! Integration tests of the RabbitMQ backend against a real RabbitMQ with the management
//! plugin enabled. Settings come from `BINDERY_TEST_RABBITMQ_API_URL`,
//! `BINDERY_TEST_RABBITMQ_USER` and `BINDERY_TEST_RABBITMQ_PASSWORD` (defaults: the local
//! server, guest/guest). The AMQP side uses `lapin` with the binding's own credentials.

use std::time::{Duration, Instant};

use bindery::backends::rabbitmq::{
    self, RabbitmqBackend, RabbitmqBackendConfig, check_plan_settings,
};
use bindery::backends::{
    BackendError, BindingSpec, Credentials, InstanceSpec, ServiceBackend, UpdateSpec,
};
use lapin::options::{
    BasicGetOptions, BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use serde_json::{Map, Value, json};

const PREFIX: &str = "bdtest";

fn env_or(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_owned())
}

fn api_url() -> String {
    env_or("BINDERY_TEST_RABBITMQ_API_URL", rabbitmq::DEFAULT_API_URL)
}

fn admin_user() -> String {
    env_or("BINDERY_TEST_RABBITMQ_USER", "guest")
}

fn admin_password() -> String {
    env_or("BINDERY_TEST_RABBITMQ_PASSWORD", "guest")
}

fn config_for(api_url: String) -> RabbitmqBackendConfig {
    RabbitmqBackendConfig {
        api_url,
        admin_username: admin_user(),
        admin_password: admin_password().into(),
        amqp_host: None,
        amqp_port: None,
        name_prefix: PREFIX.to_owned(),
    }
}

fn backend() -> RabbitmqBackend {
    RabbitmqBackend::new(config_for(api_url())).expect("backend config")
}

fn fresh_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn no_params() -> &'static Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    EMPTY.get_or_init(Map::new)
}

fn instance<'a>(id: &'a str, settings: &'a Value) -> InstanceSpec<'a> {
    InstanceSpec {
        instance_id: id,
        service_id: "svc-rabbitmq",
        plan_id: "plan-rabbitmq",
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

fn read_only_params() -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("read_only".to_owned(), Value::Bool(true));
    map
}

/// An admin GET of the management API: status and JSON body (Null when not JSON).
async fn admin_get(path: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(format!("{}/api/{path}", api_url().trim_end_matches('/')))
        .basic_auth(admin_user(), Some(admin_password()))
        .send()
        .await
        .expect("management API reachable");
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

async fn vhost_exists(vhost: &str) -> bool {
    match admin_get(&format!("vhosts/{vhost}")).await.0 {
        200 => true,
        404 => false,
        other => panic!("unexpected status {other} for vhost lookup"),
    }
}

async fn user_exists(user: &str) -> bool {
    match admin_get(&format!("users/{user}")).await.0 {
        200 => true,
        404 => false,
        other => panic!("unexpected status {other} for user lookup"),
    }
}

/// Every user whose name starts with `prefix`.
async fn users_starting_with(prefix: &str) -> Vec<String> {
    let (status, body) = admin_get("users").await;
    assert_eq!(status, 200);
    body.as_array()
        .expect("user list")
        .iter()
        .filter_map(|u| u["name"].as_str())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_owned)
        .collect()
}

/// The vhost's limits as `{"max-connections": n, ...}` (empty object when none).
async fn vhost_limits(vhost: &str) -> Value {
    let (status, body) = admin_get(&format!("vhost-limits/{vhost}")).await;
    assert_eq!(status, 200);
    body.as_array()
        .and_then(|a| a.first())
        .map(|entry| entry["value"].clone())
        .unwrap_or_else(|| json!({}))
}

async fn amqp_connect(credentials: &Credentials) -> lapin::Result<Connection> {
    Connection::connect(&credentials.0["uri"], ConnectionProperties::default()).await
}

/// Waits until the server has closed `connection`.
async fn wait_until_closed(connection: &Connection) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if !connection.status().connected() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}

/// Waits until the management API lists `count` connections of `user`, so that the
/// backend sees the connection it is supposed to close.
async fn wait_for_connections(user: &str, count: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, body) = admin_get(&format!("connections/username/{user}")).await;
        if body.as_array().is_some_and(|a| a.len() >= count) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "connection of {user} never listed"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Declares a queue, publishes one message with a confirm and reads it back.
async fn round_trip(credentials: &Credentials, queue: &str) {
    let connection = amqp_connect(credentials).await.expect("AMQP login");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .queue_declare(
            queue.into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("declare queue");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    let confirmation = channel
        .basic_publish(
            "".into(),
            queue.into(),
            BasicPublishOptions::default(),
            b"hello bindery",
            BasicProperties::default(),
        )
        .await
        .expect("publish")
        .await
        .expect("confirm");
    assert!(confirmation.is_ack());
    let message = channel
        .basic_get(queue.into(), BasicGetOptions { no_ack: true })
        .await
        .expect("basic.get")
        .expect("a message");
    assert_eq!(message.delivery.data, b"hello bindery");
    connection.close(200, "bye".into()).await.expect("close");
}

#[tokio::test]
async fn binding_credentials_declare_publish_and_consume() {
    let backend = backend();
    let settings = json!({});
    let (iid, bid) = (fresh_id(), fresh_id());
    let inst = instance(&iid, &settings);
    let bind = binding(inst, &bid, no_params());

    backend.provision(&inst).await.expect("provision");
    let credentials = backend.bind(&bind).await.expect("bind");

    let keys: Vec<&str> = credentials.0.keys().map(String::as_str).collect();
    assert_eq!(
        keys,
        [
            "host",
            "http_api_uri",
            "password",
            "port",
            "provider",
            "type",
            "uri",
            "username",
            "vhost"
        ]
    );
    let vhost = backend.vhost_name(&iid);
    assert_eq!(credentials.0["vhost"], vhost);
    assert_eq!(credentials.0["username"], backend.user_name(&iid, &bid));
    assert_eq!(credentials.0["port"], "5672");
    let password = &credentials.0["password"];
    assert_eq!(password.len(), 32);
    assert!(password.bytes().all(|b| b.is_ascii_alphanumeric()));
    assert!(!format!("{credentials:?}").contains(password.as_str()));

    round_trip(&credentials, "work").await;

    // The management API URI in the credentials works as given (reqwest turns its user
    // info into basic auth), and shows only this vhost.
    let response = reqwest::Client::new()
        .get(format!("{}vhosts", credentials.0["http_api_uri"]))
        .send()
        .await
        .expect("management API");
    assert_eq!(response.status().as_u16(), 200);
    let vhosts: Value = response.json().await.expect("json");
    let names: Vec<&str> = vhosts
        .as_array()
        .expect("list")
        .iter()
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert_eq!(names, [vhost.as_str()]);

    backend.deprovision(&inst).await.expect("deprovision");
}

#[tokio::test]
async fn a_binding_cannot_reach_another_instance() {
    let backend = backend();
    let settings = json!({});
    let (ia, ib, ba) = (fresh_id(), fresh_id(), fresh_id());
    let (inst_a, inst_b) = (instance(&ia, &settings), instance(&ib, &settings));
    backend.provision(&inst_a).await.expect("provision A");
    backend.provision(&inst_b).await.expect("provision B");
    let credentials = backend
        .bind(&binding(inst_a, &ba, no_params()))
        .await
        .expect("bind A");

    // Same user and password, instance B's vhost: the login is refused.
    let uri_b = credentials.0["uri"].replace(
        &format!("/{}", backend.vhost_name(&ia)),
        &format!("/{}", backend.vhost_name(&ib)),
    );
    assert_ne!(uri_b, credentials.0["uri"]);
    let refused = Connection::connect(&uri_b, ConnectionProperties::default()).await;
    assert!(refused.is_err(), "A's binding opened B's vhost");
    // Its own vhost still works.
    amqp_connect(&credentials)
        .await
        .expect("A's vhost")
        .close(200, "bye".into())
        .await
        .expect("close");

    backend.deprovision(&inst_a).await.expect("deprovision A");
    backend.deprovision(&inst_b).await.expect("deprovision B");
}

#[tokio::test]
async fn a_read_only_binding_consumes_but_cannot_publish_or_declare() {
    let backend = backend();
    let settings = json!({});
    let (iid, writer_id, reader_id) = (fresh_id(), fresh_id(), fresh_id());
    let inst = instance(&iid, &settings);
    let ro = read_only_params();
    backend.provision(&inst).await.expect("provision");
    let writer = backend
        .bind(&binding(inst, &writer_id, no_params()))
        .await
        .expect("bind writer");
    let reader = backend
        .bind(&binding(inst, &reader_id, &ro))
        .await
        .expect("bind reader");

    // The writer creates the queue and leaves two messages in it.
    let wconn = amqp_connect(&writer).await.expect("writer login");
    let wch = wconn.create_channel().await.expect("channel");
    wch.queue_declare(
        "jobs".into(),
        QueueDeclareOptions::default(),
        FieldTable::default(),
    )
    .await
    .expect("declare");
    wch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    for body in [b"one", b"two"] {
        let confirm = wch
            .basic_publish(
                "".into(),
                "jobs".into(),
                BasicPublishOptions::default(),
                body,
                BasicProperties::default(),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
        assert!(confirm.is_ack());
    }

    let rconn = amqp_connect(&reader).await.expect("reader login");
    // Consuming works.
    let rch = rconn.create_channel().await.expect("channel");
    let message = rch
        .basic_get("jobs".into(), BasicGetOptions { no_ack: true })
        .await
        .expect("reader basic.get")
        .expect("a message");
    assert_eq!(message.delivery.data, b"one");

    // Publishing is refused: the server closes the channel, so the confirm (or the
    // next call on the channel) fails, and nothing reaches the queue.
    let pch = rconn.create_channel().await.expect("channel");
    pch.confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirm mode");
    let published = match pch
        .basic_publish(
            "".into(),
            "jobs".into(),
            BasicPublishOptions::default(),
            b"forbidden",
            BasicProperties::default(),
        )
        .await
    {
        Ok(confirm) => confirm.await.is_ok_and(|c| c.is_ack()),
        Err(_) => false,
    };
    assert!(!published, "the read-only binding published");
    let queue = wch
        .queue_declare(
            "jobs".into(),
            QueueDeclareOptions {
                passive: true,
                ..QueueDeclareOptions::default()
            },
            FieldTable::default(),
        )
        .await
        .expect("passive declare");
    assert_eq!(queue.message_count(), 1, "only \"two\" is left");

    // Declaring is refused.
    let dch = rconn.create_channel().await.expect("channel");
    let declared = dch
        .queue_declare(
            "mine".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert!(declared.is_err(), "the read-only binding declared a queue");

    wconn.close(200, "bye".into()).await.expect("close");
    let _ = rconn.close(200, "bye".into()).await;
    backend.deprovision(&inst).await.expect("deprovision");
}

#[tokio::test]
async fn unbind_revokes_credentials_and_closes_connections() {
    let backend = backend();
    let settings = json!({});
    let (iid, bid, other_id) = (fresh_id(), fresh_id(), fresh_id());
    let inst = instance(&iid, &settings);
    let bind = binding(inst, &bid, no_params());
    backend.provision(&inst).await.expect("provision");
    let credentials = backend.bind(&bind).await.expect("bind");
    let other = backend
        .bind(&binding(inst, &other_id, no_params()))
        .await
        .expect("bind other");

    let open = amqp_connect(&credentials).await.expect("login");
    let other_conn = amqp_connect(&other).await.expect("other login");
    let user = backend.user_name(&iid, &bid);
    wait_for_connections(&user, 1).await;

    backend.unbind(&bind).await.expect("unbind");
    assert!(wait_until_closed(&open).await, "connection left open");
    assert!(
        amqp_connect(&credentials).await.is_err(),
        "revoked credentials still log in"
    );
    assert!(!user_exists(&user).await);
    // The other binding is untouched.
    assert!(other_conn.status().connected());
    round_trip(&other, "still-works").await;

    backend.unbind(&bind).await.expect("unbind again");
    let _ = other_conn.close(200, "bye".into()).await;
    backend.deprovision(&inst).await.expect("deprovision");
}

#[tokio::test]
async fn deprovision_removes_vhost_users_and_connections() {
    let backend = backend();
    let settings = json!({ "max_connections": 50 });
    let (iid, b1, b2, other_iid, other_bid) =
        (fresh_id(), fresh_id(), fresh_id(), fresh_id(), fresh_id());
    let inst = instance(&iid, &settings);
    let other_inst = instance(&other_iid, &settings);
    backend.provision(&inst).await.expect("provision");
    backend
        .provision(&other_inst)
        .await
        .expect("provision other");
    let c1 = backend
        .bind(&binding(inst, &b1, no_params()))
        .await
        .expect("bind 1");
    let ro = read_only_params();
    backend
        .bind(&binding(inst, &b2, &ro))
        .await
        .expect("bind 2");
    let other = backend
        .bind(&binding(other_inst, &other_bid, no_params()))
        .await
        .expect("bind other instance");

    let open = amqp_connect(&c1).await.expect("login");
    wait_for_connections(&backend.user_name(&iid, &b1), 1).await;

    backend.deprovision(&inst).await.expect("deprovision");
    assert!(wait_until_closed(&open).await, "connection left open");
    let vhost = backend.vhost_name(&iid);
    assert!(!vhost_exists(&vhost).await, "vhost left behind");
    // A binding user is `<prefix>_<12 hex of the instance>_<12 hex of the binding>`.
    let user = backend.user_name(&iid, &b1);
    let user_prefix = &user[..user.len() - 12];
    assert_eq!(users_starting_with(user_prefix).await, Vec::<String>::new());
    assert!(amqp_connect(&c1).await.is_err());

    // The other instance is untouched.
    assert!(vhost_exists(&backend.vhost_name(&other_iid)).await);
    round_trip(&other, "survivor").await;

    backend.deprovision(&inst).await.expect("deprovision again");
    backend
        .deprovision(&other_inst)
        .await
        .expect("deprovision other");
}

#[tokio::test]
async fn plan_limits_are_set_and_updated() {
    let backend = backend();
    let iid = fresh_id();
    let small = json!({ "max_connections": 10, "max_queues": 1 });
    let queues_only = json!({ "max_queues": 5 });
    let none = json!({});
    let inst = instance(&iid, &small);
    let vhost = backend.vhost_name(&iid);

    backend.provision(&inst).await.expect("provision");
    assert_eq!(
        vhost_limits(&vhost).await,
        json!({ "max-connections": 10, "max-queues": 1 })
    );

    // The limit is enforced: a second queue is refused.
    let bid = fresh_id();
    let credentials = backend
        .bind(&binding(inst, &bid, no_params()))
        .await
        .expect("bind");
    let connection = amqp_connect(&credentials).await.expect("login");
    let channel = connection.create_channel().await.expect("channel");
    channel
        .queue_declare(
            "q1".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("first queue");
    let second = channel
        .queue_declare(
            "q2".into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await;
    assert!(second.is_err(), "max_queues 1 allowed a second queue");
    let _ = connection.close(200, "bye".into()).await;

    // A plan change replaces the limits; one the new plan lacks is removed.
    for _ in 0..2 {
        backend
            .update(&UpdateSpec {
                target: instance(&iid, &queues_only),
                previous_plan_settings: &small,
                previous_parameters: no_params(),
            })
            .await
            .expect("update");
        assert_eq!(vhost_limits(&vhost).await, json!({ "max-queues": 5 }));
    }
    backend
        .update(&UpdateSpec {
            target: instance(&iid, &none),
            previous_plan_settings: &queues_only,
            previous_parameters: no_params(),
        })
        .await
        .expect("update to no limits");
    assert_eq!(vhost_limits(&vhost).await, json!({}));

    backend.deprovision(&inst).await.expect("deprovision");

    // Updating an instance whose vhost is gone is a clear failure.
    let gone = backend
        .update(&UpdateSpec {
            target: instance(&iid, &none),
            previous_plan_settings: &none,
            previous_parameters: no_params(),
        })
        .await;
    assert!(matches!(gone, Err(BackendError::Failed(_))), "{gone:?}");
}

#[tokio::test]
async fn every_step_twice_converges() {
    let backend = backend();
    let settings = json!({ "max_queues": 7 });
    let (iid, bid) = (fresh_id(), fresh_id());
    let inst = instance(&iid, &settings);
    let bind = binding(inst, &bid, no_params());

    backend.provision(&inst).await.expect("provision");
    backend.provision(&inst).await.expect("provision again");
    let vhost = backend.vhost_name(&iid);
    assert!(vhost_exists(&vhost).await);
    assert_eq!(vhost_limits(&vhost).await, json!({ "max-queues": 7 }));

    // A rerun of one bind operation is given the same password (BindingSpec), so it
    // converges on the same credentials, and both answers work.
    let first = backend.bind(&bind).await.expect("bind");
    let second = backend.bind(&bind).await.expect("bind again");
    assert_eq!(first, second);
    round_trip(&first, "q").await;
    // Another operation's password replaces it: only the last credentials are valid.
    let third = backend
        .bind(&binding(inst, &bid, no_params()))
        .await
        .expect("bind with another password");
    assert_eq!(first.0["username"], third.0["username"]);
    assert_ne!(first.0["password"], third.0["password"]);
    round_trip(&third, "q2").await;
    assert!(
        amqp_connect(&first).await.is_err(),
        "old password still works"
    );

    backend.unbind(&bind).await.expect("unbind");
    backend.unbind(&bind).await.expect("unbind again");
    assert!(!user_exists(&backend.user_name(&iid, &bid)).await);

    backend.deprovision(&inst).await.expect("deprovision");
    backend.deprovision(&inst).await.expect("deprovision again");
    assert!(!vhost_exists(&vhost).await);
}

#[tokio::test]
async fn unbind_and_deprovision_of_unknown_ids_succeed() {
    let backend = backend();
    let settings = json!({});
    let (iid, bid) = (fresh_id(), fresh_id());
    let inst = instance(&iid, &settings);
    backend
        .unbind(&binding(inst, &bid, no_params()))
        .await
        .expect("unbind of nothing");
    backend
        .deprovision(&inst)
        .await
        .expect("deprovision of nothing");

    // Binding to an instance that was never provisioned fails cleanly and leaves no user.
    let bound = backend.bind(&binding(inst, &bid, no_params())).await;
    assert!(matches!(bound, Err(BackendError::Failed(_))), "{bound:?}");
    assert!(!user_exists(&backend.user_name(&iid, &bid)).await);
}

#[tokio::test]
async fn plan_settings_are_checked() {
    assert!(check_plan_settings(&json!({})).is_empty());
    assert!(check_plan_settings(&Value::Null).is_empty());
    assert!(check_plan_settings(&json!({ "max_connections": 1, "max_queues": 100000 })).is_empty());

    let problems = check_plan_settings(&json!({
        "max_connections": 0,
        "max_queues": "10",
        "max_channels": 5,
    }));
    assert_eq!(problems.len(), 3, "{problems:?}");
    assert!(problems.iter().any(|p| p.contains("max_connections")));
    assert!(problems.iter().any(|p| p.contains("max_queues")));
    assert!(problems.iter().any(|p| p.contains("max_channels")));

    for bad in [
        json!({ "max_queues": 100001 }),
        json!({ "max_queues": -1 }),
        json!({ "max_queues": 2.5 }),
        json!({ "max_connections": null }),
        json!([1]),
        json!("max_queues"),
    ] {
        assert_eq!(check_plan_settings(&bad).len(), 1, "{bad}");
    }

    // The trait method says the same.
    let via_trait = backend().check_plan_settings(&json!({ "nope": 1 }));
    assert_eq!(via_trait.len(), 1);
}

#[tokio::test]
async fn an_unreachable_api_is_unavailable_quickly() {
    // Construction does not connect.
    let backend = RabbitmqBackend::new(config_for("http://127.0.0.1:1".to_owned()))
        .expect("built while the server is down");
    let settings = json!({});
    let (iid, bid) = (fresh_id(), fresh_id());
    let inst = instance(&iid, &settings);
    let started = Instant::now();
    let results = [
        backend.provision(&inst).await.err(),
        backend.deprovision(&inst).await.err(),
        backend.bind(&binding(inst, &bid, no_params())).await.err(),
        backend
            .unbind(&binding(inst, &bid, no_params()))
            .await
            .err(),
    ];
    assert!(started.elapsed() < Duration::from_secs(10));
    for result in results {
        match result {
            Some(BackendError::Unavailable(message)) => {
                assert!(message.contains("RabbitMQ"), "{message}");
                assert!(!message.contains(&admin_password()) || admin_password().len() < 6);
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn bad_configuration_is_rejected() {
    for prefix in ["", "Bad", "1x", "with-dash", "a_very_long_prefix_x"] {
        let mut config = config_for(api_url());
        config.name_prefix = prefix.to_owned();
        assert!(RabbitmqBackend::new(config).is_err(), "{prefix}");
    }
    for url in ["not a url", "ftp://host:15672", "http://u:p@host:15672"] {
        assert!(
            RabbitmqBackend::new(config_for(url.to_owned())).is_err(),
            "{url}"
        );
    }
    // Wrong admin credentials are a failure the operator must fix, not an outage.
    let mut config = config_for(api_url());
    config.admin_password = "definitely-wrong".to_owned().into();
    let settings = json!({});
    let iid = fresh_id();
    let result = RabbitmqBackend::new(config)
        .expect("config")
        .provision(&instance(&iid, &settings))
        .await;
    match result {
        Err(BackendError::Failed(message)) => {
            assert!(!message.contains("definitely-wrong"), "{message}")
        }
        other => panic!("expected Failed, got {other:?}"),
    }
}
