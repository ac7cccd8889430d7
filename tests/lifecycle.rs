//! The real binary, configured the way `scripts/run` configures it (every backend on its
//! local server, the default log filter), driven over HTTP through a full lifecycle of
//! every service of the shipped catalog: provision, bind, unbind, deprovision.
//!
//! - At the default log level nothing is logged at WARN or above: operators alert on
//!   WARN, so a routine lifecycle must not raise one (issue 13, item 3).
//! - Every backend's bind returns exactly the credential keys docs/backends.md lists,
//!   including the servicebinding.io keys `type` and `provider` (items 12 and 13).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

// The test's own Redis, set up as docs/backends.md asks of an operator (the `default`
// user off, an admin user, an `aclfile`): the shared development server has an open
// `default` user and no aclfile, about which bindery rightly warns.
#[path = "common/private_redis.rs"]
mod private_redis;
use private_redis::PrivateRedis;

const USER: &str = "admin";
const PASSWORD: &str = "change-me";
const KEY: &str = "dev:q1ZQDkyvSO0jD0b1S1OEBlJGwqvbCuX1B6e4MZq0C5c=";

fn scratch_dir(what: &str) -> PathBuf {
    let dir =
        std::env::temp_dir().join(format!("bindery-{what}-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `bindery serve` with JSON logs at the default filter; every line it prints is kept.
struct Broker {
    child: Child,
    base: String,
    lines: Arc<Mutex<Vec<String>>>,
    readers: Vec<std::thread::JoinHandle<()>>,
    dir: PathBuf,
}

impl Broker {
    fn start(redis_url: &str) -> Self {
        let dir = scratch_dir("lifecycle");
        let mut child = Command::new(env!("CARGO_BIN_EXE_bindery"))
            .arg("serve")
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            // What scripts/run sets (state in a SQLite file, every local backend), on a
            // port and data directory of this test's own; BINDERY_LOG is left unset.
            .env("BINDERY_DATA_DIR", &dir)
            .env("BINDERY_LISTEN", "127.0.0.1:0")
            .env(
                "BINDERY_CATALOG",
                concat!(env!("CARGO_MANIFEST_DIR"), "/catalog.yaml"),
            )
            .env("BINDERY_USERNAME", USER)
            .env("BINDERY_PASSWORD", PASSWORD)
            .env("BINDERY_ENCRYPTION_KEYS", KEY)
            .env("BINDERY_LOG_FORMAT", "json")
            .env(
                "BINDERY_POSTGRES_ADMIN_URL",
                "postgres://postgres@127.0.0.1:5432/postgres",
            )
            .env("BINDERY_RABBITMQ_API_URL", "http://127.0.0.1:15672")
            .env("BINDERY_REDIS_ADMIN_URL", redis_url)
            .env("BINDERY_MARIADB_ADMIN_URL", "mysql://root@127.0.0.1:3306")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bindery starts");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = std::sync::mpsc::channel();
        let mut readers = Vec::new();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        for (stream, port_tx) in [
            (
                Box::new(stdout) as Box<dyn std::io::Read + Send>,
                Some(port_tx),
            ),
            (Box::new(stderr), None),
        ] {
            let lines = lines.clone();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    if let Some(tx) = &port_tx
                        && line.contains("bindery is serving the OSB API")
                        && let Ok(event) = serde_json::from_str::<Value>(&line)
                    {
                        let _ = tx.send(event["port"].as_u64().unwrap_or(0));
                    }
                    lines.lock().unwrap().push(line);
                }
            }));
        }
        let port = port_rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("bindery did not start: {:#?}", lines.lock().unwrap()));
        Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
            lines,
            readers,
            dir,
        }
    }

    /// [`lifecycle_of_every_service`]; when it fails, the broker's log says why.
    async fn lifecycle_of_every_service(&self) -> BTreeMap<String, Value> {
        match tokio::spawn(lifecycle_of_every_service(self.base.clone())).await {
            Ok(credentials) => credentials,
            Err(e) => panic!(
                "the lifecycle failed ({e}); the broker logged:\n{}",
                self.lines.lock().unwrap().join("\n")
            ),
        }
    }

    /// Stops the broker with SIGTERM (a graceful shutdown logs too) and returns
    /// everything it printed.
    fn stop(mut self) -> Vec<String> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
        for reader in std::mem::take(&mut self.readers) {
            let _ = reader.join();
        }
        self.lines.lock().unwrap().clone()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn send(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let (status, body) = self.request(method.clone(), path, body).await;
        assert!(status.is_success(), "{method} {path}: {status} {body}");
        body
    }

    async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (reqwest::StatusCode, Value) {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .basic_auth(USER, Some(PASSWORD))
            .header("X-Broker-API-Version", "2.17");
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        (status, response.json().await.unwrap())
    }

    async fn wait(&self, instance: &str, query: &str) {
        for _ in 0..600 {
            let (status, state) = self
                .request(
                    reqwest::Method::GET,
                    &format!("/v2/service_instances/{instance}/last_operation{query}"),
                    None,
                )
                .await;
            if status == reqwest::StatusCode::GONE {
                return; // a finished deprovision
            }
            match state["state"].as_str() {
                Some("succeeded") => return,
                Some("in progress") => tokio::time::sleep(Duration::from_millis(100)).await,
                _ => panic!("operation on {instance}: {state}"),
            }
        }
        panic!("operation on {instance} did not finish");
    }
}

/// Every service of the shipped catalog with its first plan: (backend kind, service
/// id, plan id).
fn services(catalog: &Value) -> Vec<(String, String, String)> {
    catalog["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["name"].as_str().unwrap().to_owned(),
                s["id"].as_str().unwrap().to_owned(),
                s["plans"][0]["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

/// Provision, bind, unbind, deprovision of every service (asynchronous operations,
/// as Service Catalog asks for them); returns each service's credentials.
async fn lifecycle_of_every_service(base: String) -> BTreeMap<String, Value> {
    let client = Client {
        http: reqwest::Client::new(),
        base,
    };
    let catalog = client.send(reqwest::Method::GET, "/v2/catalog", None).await;
    let services = services(&catalog);
    let kinds: BTreeSet<&str> = services.iter().map(|(k, _, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        BTreeSet::from(["mariadb", "postgresql", "rabbitmq", "redis"]),
        "every backend serves its plans"
    );
    let mut credentials = BTreeMap::new();
    for (name, service, plan) in services {
        let instance = uuid::Uuid::new_v4().to_string();
        let binding = uuid::Uuid::new_v4().to_string();
        let ids = json!({"service_id": service, "plan_id": plan});
        let query = format!("?service_id={service}&plan_id={plan}");
        let path = format!("/v2/service_instances/{instance}");
        let mut provision = ids.clone();
        provision["organization_guid"] = json!("org");
        provision["space_guid"] = json!("space");
        client
            .send(
                reqwest::Method::PUT,
                &format!("{path}?accepts_incomplete=true"),
                Some(provision),
            )
            .await;
        client.wait(&instance, "").await;
        let bound = client
            .send(
                reqwest::Method::PUT,
                &format!("{path}/service_bindings/{binding}"),
                Some(ids.clone()),
            )
            .await;
        credentials.insert(name, bound["credentials"].clone());
        client
            .send(
                reqwest::Method::DELETE,
                &format!("{path}/service_bindings/{binding}{query}"),
                None,
            )
            .await;
        client
            .send(
                reqwest::Method::DELETE,
                &format!("{path}{query}&accepts_incomplete=true"),
                None,
            )
            .await;
        client.wait(&instance, &query).await;
    }
    credentials
}

#[tokio::test(flavor = "multi_thread")]
async fn a_lifecycle_of_every_backend_logs_nothing_at_warn_or_above() {
    let redis = PrivateRedis::start();
    let broker = Broker::start(&redis.admin_url());
    broker.lifecycle_of_every_service().await;
    let lines = broker.stop();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("bindery is serving the OSB API")),
        "the log was captured: {lines:#?}"
    );
    let loud: Vec<&String> = lines
        .iter()
        .filter(|line| match serde_json::from_str::<Value>(line) {
            Ok(event) => !matches!(event["level"].as_str(), Some("INFO" | "DEBUG" | "TRACE")),
            // Anything that is not a log event (a panic, a stray print) counts too.
            Err(_) => true,
        })
        .collect();
    assert!(
        loud.is_empty(),
        "logged at WARN or above (or not as a log event):\n{loud:#?}"
    );
}
/// The credential keys of each backend section of docs/backends.md: the first column
/// of the table after the section's "Credentials" line, with each key's example.
fn documented_credentials() -> BTreeMap<String, BTreeMap<String, String>> {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/backends.md")).unwrap();
    let mut documented = BTreeMap::new();
    for section in doc.split("\n## ").skip(1) {
        let heading = section.lines().next().unwrap_or_default();
        let Some(kind) = heading.split('`').nth(1) else {
            continue;
        };
        let mut keys = BTreeMap::new();
        let mut in_table = false;
        for line in section.lines() {
            if line.starts_with("Credentials") {
                in_table = true;
                continue;
            }
            if !in_table {
                continue;
            }
            if !line.starts_with('|') {
                if !keys.is_empty() {
                    break;
                }
                continue;
            }
            let cells: Vec<&str> = line.split('|').map(str::trim).collect();
            let (Some(key), Some(example)) = (cells.get(1), cells.get(2)) else {
                continue;
            };
            if let Some(key) = key.strip_prefix('`').and_then(|k| k.strip_suffix('`')) {
                keys.insert(key.to_owned(), example.trim_matches('`').to_owned());
            }
        }
        documented.insert(kind.to_owned(), keys);
    }
    documented
}

#[tokio::test(flavor = "multi_thread")]
async fn every_backend_returns_exactly_the_credential_keys_docs_backends_md_lists() {
    let broker = Broker::start("redis://127.0.0.1:6379");
    let credentials = broker.lifecycle_of_every_service().await;
    drop(broker);
    let documented = documented_credentials();
    for (kind, credentials) in &credentials {
        let credentials = credentials.as_object().expect("credentials are an object");
        let doc = documented
            .get(kind)
            .unwrap_or_else(|| panic!("docs/backends.md has no section for `{kind}`"));
        assert_eq!(
            credentials.keys().collect::<BTreeSet<_>>(),
            doc.keys().collect::<BTreeSet<_>>(),
            "{kind}: the keys of a real bind (left) and of docs/backends.md (right)"
        );
        for (key, value) in credentials {
            assert!(
                value.as_str().is_some_and(|v| !v.is_empty()),
                "{kind}: {key} is a non-empty string"
            );
        }
        // servicebinding.io: a Secret written from the credentials is a binding Secret.
        assert_eq!(credentials["provider"], "bindery", "{kind}");
        assert_eq!(credentials["type"], doc["type"].as_str(), "{kind}");
        assert_eq!(credentials["provider"], doc["provider"].as_str(), "{kind}");
    }
}
