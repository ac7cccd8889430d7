//! `TestApp`: a broker on port 0 over a fresh database, with one method per OSB call.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use bindery::backends::BackendRegistry;
use bindery::config::Settings;
use bindery::startup::Application;
use bindery::store::Store;
use bindery::worker::{StepOutcome, Worker};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;

use crate::support::{RecordingBackend, TEST_CATALOG};

pub const USER: &str = "platform";
pub const PASSWORD: &str = "platform-password-7f3a";
pub const TEST_KEY: &str = "test:q1ZQDkyvSO0jD0b1S1OEBlJGwqvbCuX1B6e4MZq0C5c=";

/// Which store the suite runs on: PostgreSQL (default) or, with
/// `BINDERY_TEST_STORE=sqlite`, a SQLite file per test. Tests that look into
/// PostgreSQL's tables themselves run on PostgreSQL only (scripts/test).
pub fn on_sqlite() -> bool {
    std::env::var("BINDERY_TEST_STORE").is_ok_and(|s| s == "sqlite")
}

/// The server every test database lives on.
pub fn server_url() -> String {
    std::env::var("BINDERY_TEST_DATABASE_SERVER")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned())
}

pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub version: String,
    pub backend: RecordingBackend,
    pub worker: Worker,
    pub store: Store,
    pub broker: bindery::broker::Broker,
    db_pool: Option<sqlx::PgPool>,
    database_url: String,
    pub database: String,
    stop: CancellationToken,
}

pub struct Spawn {
    pub catalog: String,
    pub registry: Option<BackendRegistry>,
    pub run_worker: bool,
    pub env: Vec<(String, String)>,
}

impl Default for Spawn {
    fn default() -> Self {
        Self {
            catalog: TEST_CATALOG.to_owned(),
            registry: None,
            run_worker: true,
            env: Vec::new(),
        }
    }
}

/// A response: status, headers and JSON body (every bindery body is JSON).
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
    pub raw: String,
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Spawn::default()).await
    }

    pub async fn spawn_with(options: Spawn) -> Self {
        init_logging();
        let dir =
            std::env::temp_dir().join(format!("bindery-test-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let database_url = options
            .env
            .iter()
            .find(|(k, _)| k == "DATABASE_URL")
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| {
                if on_sqlite() {
                    format!("sqlite://{}", dir.join("bindery.db").display())
                } else {
                    format!(
                        "{}/bindery_test_{}",
                        server_url(),
                        uuid::Uuid::new_v4().simple()
                    )
                }
            });
        let database = database_url.rsplit('/').next().unwrap().to_owned();
        let catalog_path = dir.join("catalog.yaml");
        std::fs::write(&catalog_path, &options.catalog).unwrap();

        let mut env: HashMap<String, String> = HashMap::from([
            ("DATABASE_URL".into(), database_url.clone()),
            ("BINDERY_LISTEN".into(), "127.0.0.1:0".into()),
            ("BINDERY_CATALOG".into(), catalog_path.display().to_string()),
            ("BINDERY_USERNAME".into(), USER.into()),
            ("BINDERY_PASSWORD".into(), PASSWORD.into()),
            ("BINDERY_ENCRYPTION_KEYS".into(), TEST_KEY.into()),
            ("BINDERY_DATABASE_MAX_CONNECTIONS".into(), "8".into()),
            ("BINDERY_WORKER_CONCURRENCY".into(), "4".into()),
        ]);
        env.extend(options.env);
        let settings =
            Settings::load_from(None, |name| env.get(name).cloned()).expect("test settings load");

        let backend = RecordingBackend::default();
        let mut registry = options.registry.unwrap_or_default();
        registry.register("recording", Arc::new(backend.clone()));
        let app = Application::build(&settings, registry)
            .await
            .expect("application builds");
        let port = app.port();
        let worker = app.worker().clone();
        let store = app.store().clone();
        let broker = app.broker().clone();
        let stop = CancellationToken::new();
        tokio::spawn(app.run_until_stopped(stop.clone(), options.run_worker));

        let db_pool = if database_url.starts_with("postgres") {
            Some(
                PgPoolOptions::new()
                    .max_connections(2)
                    .connect(&database_url)
                    .await
                    .unwrap(),
            )
        } else {
            None
        };
        Self {
            base: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            version: "2.13".into(),
            backend,
            worker,
            store,
            broker,
            db_pool,
            database_url,
            database,
            stop,
        }
    }

    /// A direct connection to the test's PostgreSQL database, for tests that look at
    /// or tamper with rows themselves. Such tests are left out of the SQLite run.
    pub fn db_pool(&self) -> &sqlx::PgPool {
        self.db_pool.as_ref().expect(
            "this test reads PostgreSQL's tables itself: it runs on the PostgreSQL store only",
        )
    }

    /// Everything the store holds, as text to search: PostgreSQL's rows, or the bytes
    /// of the SQLite file and its write-ahead log.
    pub async fn state_dump(&self) -> String {
        match &self.db_pool {
            Some(pool) => sqlx::query_scalar(
                "select concat_ws(' ', \
                    (select string_agg(t::text, ' ') from service_instance t), \
                    (select string_agg(t::text, ' ') from service_binding t), \
                    (select string_agg(t::text, ' ') from operation t), \
                    (select string_agg(t::text, ' ') from audit_event t))",
            )
            .fetch_one(pool)
            .await
            .unwrap(),
            None => {
                let path = self
                    .database_url
                    .strip_prefix("sqlite://")
                    .expect("a sqlite:// URL");
                let mut bytes = std::fs::read(path).unwrap();
                bytes.extend(std::fs::read(format!("{path}-wal")).unwrap_or_default());
                assert!(bytes.len() > 4096, "the SQLite file holds the state");
                String::from_utf8_lossy(&bytes).into_owned()
            }
        }
    }

    /// The stored state of the newest operation of an instance.
    pub async fn last_operation_state_in_db(&self, id: &str) -> String {
        sqlx::query_scalar(
            "select state from operation where instance_id = $1 order by created_at desc limit 1",
        )
        .bind(id)
        .fetch_one(self.db_pool())
        .await
        .unwrap()
    }

    /// Waits until the audit events of every request answered so far are written
    /// (the broker writes them in the background).
    pub async fn flush_audit(&self) {
        self.broker.flush_audit().await;
    }

    /// Starts the broker's shutdown (as SIGTERM does).
    pub fn shut_down(&self) {
        self.stop.cancel();
    }

    /// Sends a request with the default credentials and version header.
    pub async fn send(&self, method: Method, path: &str, body: Option<Value>) -> Reply {
        self.send_with(
            method,
            path,
            body,
            &[("X-Broker-API-Version", &self.version)],
            true,
        )
        .await
    }

    /// Sends a request with exactly the headers given (and basic auth when `auth`).
    pub async fn send_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
        auth: bool,
    ) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if auth {
            request = request.basic_auth(USER, Some(PASSWORD));
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        reply(request.send().await.expect("request reaches bindery")).await
    }

    pub async fn send_raw(&self, method: Method, path: &str, body: &str) -> Reply {
        let request = self
            .client
            .request(method, format!("{}{path}", self.base))
            .basic_auth(USER, Some(PASSWORD))
            .header("X-Broker-API-Version", &self.version)
            .header("Content-Type", "application/json")
            .body(body.to_owned());
        reply(request.send().await.expect("request reaches bindery")).await
    }

    pub async fn catalog(&self) -> Reply {
        self.send(Method::GET, "/v2/catalog", None).await
    }

    pub async fn provision(&self, id: &str, body: Value) -> Reply {
        self.send(
            Method::PUT,
            &format!("/v2/service_instances/{id}"),
            Some(body),
        )
        .await
    }

    pub async fn provision_async(&self, id: &str, body: Value) -> Reply {
        self.send(
            Method::PUT,
            &format!("/v2/service_instances/{id}?accepts_incomplete=true"),
            Some(body),
        )
        .await
    }

    pub async fn update(&self, id: &str, query: &str, body: Value) -> Reply {
        self.send(
            Method::PATCH,
            &format!("/v2/service_instances/{id}{query}"),
            Some(body),
        )
        .await
    }

    pub async fn deprovision(&self, id: &str, query: &str) -> Reply {
        self.send(
            Method::DELETE,
            &format!("/v2/service_instances/{id}{query}"),
            None,
        )
        .await
    }

    pub async fn last_operation(&self, id: &str, query: &str) -> Reply {
        self.send(
            Method::GET,
            &format!("/v2/service_instances/{id}/last_operation{query}"),
            None,
        )
        .await
    }

    pub async fn bind(&self, id: &str, binding: &str, body: Value) -> Reply {
        self.send(
            Method::PUT,
            &format!("/v2/service_instances/{id}/service_bindings/{binding}"),
            Some(body),
        )
        .await
    }

    pub async fn unbind(&self, id: &str, binding: &str, query: &str) -> Reply {
        self.send(
            Method::DELETE,
            &format!("/v2/service_instances/{id}/service_bindings/{binding}{query}"),
            None,
        )
        .await
    }

    /// Provisions `id` on `plan` synchronously and asserts 201.
    pub async fn provisioned(&self, id: &str, plan: &str) {
        let r = self.provision(id, provision_body("svc-db", plan)).await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "provision of {id}: {}",
            r.raw
        );
    }

    /// Provisions `id` on `service`/`plan` synchronously and asserts 201.
    pub async fn provisioned_on(&self, id: &str, service: &str, plan: &str) {
        let r = self.provision(id, provision_body(service, plan)).await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "provision of {id}: {}",
            r.raw
        );
    }

    /// Runs the worker until the queue is empty; returns how many steps ran.
    pub async fn drain(&self) -> usize {
        let mut steps = 0;
        while let StepOutcome::Ran { .. } =
            self.worker.try_execute_next().await.expect("worker step")
        {
            steps += 1;
            assert!(steps < 1000, "queue does not drain");
        }
        steps
    }

    /// Polls last_operation until it leaves `in progress` (the worker runs in the background).
    pub async fn wait_for_operation(&self, id: &str, query: &str) -> Reply {
        for _ in 0..200 {
            let r = self.last_operation(id, query).await;
            if r.status != StatusCode::OK || r.body["state"] != "in progress" {
                return r;
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
        panic!("operation on {id} did not finish");
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop.cancel();
        let database = self.database.clone();
        // Drop the test database from a thread of its own: Drop cannot await.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(pool) = PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&format!("{}/postgres", server_url()))
                    .await
                {
                    let _ = sqlx::query(&format!(
                        "drop database if exists \"{database}\" with (force)"
                    ))
                    .execute(&pool)
                    .await;
                }
            });
        })
        .join();
    }
}

async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status();
    let headers = response.headers().clone();
    let raw = response.text().await.unwrap_or_default();
    let body = serde_json::from_str(&raw).unwrap_or(Value::Null);
    Reply {
        status,
        headers,
        body,
        raw,
    }
}

pub fn provision_body(service: &str, plan: &str) -> Value {
    json!({
        "service_id": service,
        "plan_id": plan,
        "organization_guid": "org-1",
        "space_guid": "space-1",
        "context": {"platform": "kubernetes", "namespace": "ns", "clusterid": "c1", "instance_name": "db"},
    })
}

pub fn bind_body(service: &str, plan: &str) -> Value {
    json!({
        "service_id": service,
        "plan_id": plan,
        "bind_resource": {"app_guid": "app-1"},
        "context": {"platform": "kubernetes", "namespace": "ns"},
    })
}

pub fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

pub fn basic(user: &str, password: &str) -> String {
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if std::env::var("TEST_LOG").is_ok() {
            bindery::telemetry::init("debug", "text");
        }
    });
}

/// The shipped `catalog.yaml`, as the binary serves it.
pub fn shipped_catalog() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/catalog.yaml")).unwrap()
}

/// The built-in backends as `bindery serve` registers them, configured by the
/// (variable, value) pairs of `env` alone.
pub fn builtin_registry(env: &[(&str, &str)]) -> BackendRegistry {
    let settings = Settings::load_from(None, |name| {
        env.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| (*v).to_owned())
    })
    .unwrap();
    bindery::startup::builtin_backends(&settings).unwrap()
}

/// A broker on the shipped catalog with the built-in backends `env` configures.
pub async fn spawn_shipped_with(env: &[(&str, &str)]) -> TestApp {
    TestApp::spawn_with(Spawn {
        catalog: shipped_catalog(),
        registry: Some(builtin_registry(env)),
        ..Spawn::default()
    })
    .await
}
