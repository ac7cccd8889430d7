//! What the controller's end-to-end tests start: a real Kubernetes control plane
//! (scripts/k8s.sh: etcd, kube-apiserver and kube-controller-manager v1.20.2 on loopback), a
//! real bindery on the local servers, and the controller binary. Every process is stopped when
//! its guard drops, and by a watchdog if the test process dies without unwinding.

#![allow(dead_code)]

use std::collections::HashMap;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Api, Client};
use serde::de::DeserializeOwned;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the controller is a member of the repository")
        .to_path_buf()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn random_suffix() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..8].to_owned()
}

/// A control plane in a directory of its own.
pub struct ControlPlane {
    pub dir: PathBuf,
    pub env: HashMap<String, String>,
    watchdog: Child,
}

impl ControlPlane {
    /// Starts it (building the binaries first when the machine has none) and installs the CRDs.
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(format!("bindery-k8s-test-{}", random_suffix()));
        std::fs::create_dir_all(&dir).unwrap();
        // Stops the servers and every process the test registered in DIR/pids, once this test
        // process is gone, whatever way it ended.
        let watchdog = Command::new("bash")
            .arg("-c")
            .arg(
                r#"while kill -0 "$1" 2>/dev/null; do sleep 1; done
                   [ -f "$2/pids" ] && while read -r p; do kill -9 "$p" 2>/dev/null; done < "$2/pids"
                   bash "$3/scripts/k8s.sh" stop "$2" >/dev/null 2>&1; rm -rf "$2""#,
            )
            .args(["watchdog", &std::process::id().to_string(), dir.to_str().unwrap(), repo_root().to_str().unwrap()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("bash");
        let start = || {
            Command::new("bash")
                .arg(repo_root().join("scripts/k8s.sh"))
                .args(["start", dir.to_str().unwrap()])
                .stdout(Stdio::null())
                .status()
                .expect("bash scripts/k8s.sh start")
        };
        // The control plane is the test's machinery, not what it tests: one more try when a
        // server of it fails to come up (the log of the first try stays in DIR/logs).
        let mut status = start();
        if !status.success() {
            eprintln!("scripts/k8s.sh start failed once; trying again");
            status = start();
        }
        assert!(
            status.success(),
            "scripts/k8s.sh start failed (logs in {})",
            dir.display()
        );
        let env = std::fs::read_to_string(dir.join("env"))
            .unwrap()
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
            .collect();
        let plane = Self { dir, env, watchdog };
        plane.kubectl(&[
            "apply",
            "-f",
            repo_root()
                .join("deploy/kubernetes/crds/servicecatalog.k8s.io.yaml")
                .to_str()
                .unwrap(),
        ]);
        plane.kubectl(&[
            "wait",
            "--for=condition=Established",
            "--timeout=60s",
            "crd",
            "--all",
        ]);
        plane
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    pub async fn client(&self) -> Client {
        let config = Kubeconfig::read_from(self.kubeconfig()).unwrap();
        let config = kube::Config::from_custom_kubeconfig(config, &KubeConfigOptions::default())
            .await
            .unwrap();
        Client::try_from(config).unwrap()
    }

    /// Runs kubectl 1.20 against this control plane; panics when it fails.
    pub fn kubectl(&self, args: &[&str]) -> String {
        self.kubectl_stdin(args, "")
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> String {
        use std::io::Write as _;
        let kubectl = Path::new(&self.env["KUBE_BIN"]).join("kubectl");
        let mut child = Command::new(kubectl)
            .arg("--kubeconfig")
            .arg(self.kubeconfig())
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("kubectl");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        assert!(
            output.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    pub fn apply(&self, yaml: &str) {
        self.kubectl_stdin(&["apply", "-f", "-"], yaml);
    }

    /// Installs the controller's ServiceAccount and RBAC exactly as
    /// deploy/kubernetes/controller.yaml has them (not its Deployment: there are no nodes) and
    /// returns a kubeconfig with that account's token, so the controller runs with only the
    /// rights it ships with.
    pub fn service_account_kubeconfig(&self) -> PathBuf {
        let manifest =
            std::fs::read_to_string(repo_root().join("deploy/kubernetes/controller.yaml")).unwrap();
        let without_deployment: Vec<&str> = manifest
            .split("\n---\n")
            .filter(|doc| !doc.contains("\nkind: Deployment\n"))
            .collect();
        self.apply(&without_deployment.join("\n---\n"));
        let secret = (0..150)
            .find_map(|_| {
                let name = self.kubectl(&[
                    "-n",
                    "service-catalog",
                    "get",
                    "serviceaccount",
                    "bindery-controller",
                    "-o",
                    "jsonpath={.secrets[0].name}",
                ]);
                if name.is_empty() {
                    std::thread::sleep(Duration::from_millis(200));
                    return None;
                }
                Some(name)
            })
            .expect("the controller-manager makes the service account's token");
        let token = self.kubectl(&[
            "-n",
            "service-catalog",
            "get",
            "secret",
            &secret,
            "-o",
            "jsonpath={.data.token}",
        ]);
        let token = String::from_utf8(base64_decode(&token)).unwrap();
        let path = self.dir.join("controller-kubeconfig");
        let config = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: c\n  cluster:\n    server: {}\n    certificate-authority: {}\n\
             users:\n- name: controller\n  user:\n    token: {token}\ncontexts:\n- name: c\n  context:\n    cluster: c\n    user: controller\n\
             current-context: c\n",
            self.env["KUBE_API"], self.env["KUBE_CA"]
        );
        std::fs::write(&path, config).unwrap();
        path
    }

    /// Lets the watchdog kill `pid` should the test die.
    pub fn register(&self, pid: u32) {
        use std::io::Write as _;
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("pids"))
            .unwrap();
        writeln!(f, "{pid}").unwrap();
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        let _ = Command::new("bash")
            .arg(repo_root().join("scripts/k8s.sh"))
            .args(["stop", self.dir.to_str().unwrap()])
            .output();
        let _ = self.watchdog.kill();
        let _ = self.watchdog.wait();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        } else {
            eprintln!(
                "control plane logs kept in {}",
                self.dir.join("logs").display()
            );
        }
    }
}

/// A child process killed when dropped.
pub struct Process {
    pub child: Child,
    pub name: String,
}

impl Process {
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The path of the bindery binary of this target directory (`cargo build --bin bindery`).
pub fn bindery_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(Path::parent).unwrap();
    let bin = dir.join("bindery");
    assert!(
        bin.exists(),
        "{} is missing: run `cargo build --bin bindery` first",
        bin.display()
    );
    bin
}

/// A bindery on the local PostgreSQL (state and instances), MariaDB, Redis and RabbitMQ, with
/// name prefixes of its own, so a test can find what it left on the servers.
pub struct Bindery {
    pub port: u16,
    pub database: String,
    pub prefix: String,
    pub process: Option<Process>,
    log: PathBuf,
}

pub const BROKER_USER: &str = "admin";
pub const BROKER_PASSWORD: &str = "change-me";

impl Bindery {
    pub fn start(plane: &ControlPlane) -> Self {
        let suffix = random_suffix();
        let mut bindery = Self {
            port: free_port(),
            database: format!("bindery_test_k8s_{suffix}"),
            prefix: format!("bk{suffix}"),
            process: None,
            log: plane.dir.join(format!("bindery-{suffix}.log")),
        };
        bindery.restart(plane);
        bindery
    }

    /// Starts it (again) on the same port and state.
    pub fn restart(&mut self, plane: &ControlPlane) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .unwrap();
        let child = Command::new(bindery_binary())
            .arg("serve")
            .current_dir(repo_root())
            .env(
                "DATABASE_URL",
                format!("postgres://postgres@127.0.0.1:5432/{}", self.database),
            )
            .env("BINDERY_LISTEN", format!("127.0.0.1:{}", self.port))
            .env("BINDERY_USERNAME", BROKER_USER)
            .env("BINDERY_PASSWORD", BROKER_PASSWORD)
            .env(
                "BINDERY_ENCRYPTION_KEYS",
                "dev:q1ZQDkyvSO0jD0b1S1OEBlJGwqvbCuX1B6e4MZq0C5c=",
            )
            .env(
                "BINDERY_POSTGRES_ADMIN_URL",
                "postgres://postgres@127.0.0.1:5432/postgres",
            )
            .env("BINDERY_POSTGRES_NAME_PREFIX", &self.prefix)
            .env("BINDERY_MARIADB_ADMIN_URL", "mysql://root@127.0.0.1:3306")
            .env("BINDERY_MARIADB_NAME_PREFIX", &self.prefix)
            .env("BINDERY_REDIS_ADMIN_URL", "redis://127.0.0.1:6379")
            .env("BINDERY_REDIS_NAME_PREFIX", &self.prefix)
            .env("BINDERY_RABBITMQ_API_URL", "http://127.0.0.1:15672")
            .env("BINDERY_RABBITMQ_NAME_PREFIX", &self.prefix)
            .env("BINDERY_LOG", "warn")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("bindery starts");
        plane.register(child.id());
        self.process = Some(Process {
            child,
            name: "bindery".into(),
        });
        let ready = (0..300).any(|_| {
            std::thread::sleep(Duration::from_millis(100));
            std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok()
        });
        assert!(
            ready,
            "bindery did not listen (log: {})",
            self.log.display()
        );
    }

    pub fn stop(&mut self) {
        self.process.take();
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Bindery {
    fn drop(&mut self) {
        self.process.take();
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"])
            .arg(format!(
                "drop database if exists \"{}\" with (force)",
                self.database
            ))
            .output();
    }
}

/// A running bindery-controller.
pub struct Controller {
    pub process: Process,
    pub metrics_port: u16,
}

/// Standard base64, as kubectl prints a Secret's data.
fn base64_decode(text: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .expect("base64")
}

impl Controller {
    /// With the control plane's admin credentials, its Lease in namespace default.
    pub fn start(plane: &ControlPlane, identity: &str) -> Self {
        Self::start_with(plane, identity, &plane.kubeconfig(), "default")
    }

    /// With the credentials of `kubeconfig`, its Lease and cluster-info in `namespace`.
    pub fn start_with(
        plane: &ControlPlane,
        identity: &str,
        kubeconfig: &Path,
        namespace: &str,
    ) -> Self {
        let metrics_port = free_port();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(plane.dir.join(format!("controller-{identity}.log")))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_bindery-controller"))
            .env("KUBECONFIG", kubeconfig)
            .env("RUST_LOG", "info,kube=warn")
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .args(["--namespace", namespace, "--identity", identity])
            .args(["--lease-duration", "6s", "--max-backoff", "2s"])
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("bindery-controller starts");
        plane.register(child.id());
        Self {
            process: Process {
                child,
                name: identity.to_owned(),
            },
            metrics_port,
        }
    }

    /// Its /metrics text ("" while it does not answer).
    pub fn metrics(&self) -> String {
        let out = Command::new("curl")
            .args([
                "-sf",
                &format!("http://127.0.0.1:{}/metrics", self.metrics_port),
            ])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn is_leader(&self) -> bool {
        self.metrics()
            .lines()
            .any(|l| l.trim() == "bindery_controller_leader 1")
    }
}

/// Polls `check` every 200 ms until it gives a value; panics with `what` after `timeout`.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The object, or None when it does not exist.
pub async fn get<K>(api: &Api<K>, name: &str) -> Option<K>
where
    K: kube::Resource + Clone + DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.expect("the API server answers")
}

/// A shell command's success.
pub fn shell_ok(command: &str) -> bool {
    Command::new("bash")
        .arg("-c")
        .arg(command)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A shell command's output (trimmed), empty on failure.
pub fn shell(command: &str) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(command)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// The broker's Secret and the ClusterServiceBroker `name` for `bindery`, as an operator writes them.
pub fn broker_yaml(name: &str, bindery: &Bindery) -> String {
    format!(
        r#"apiVersion: v1
kind: Namespace
metadata: {{name: brokers}}
---
apiVersion: v1
kind: Secret
metadata: {{name: {name}-auth, namespace: brokers}}
type: Opaque
stringData: {{username: {BROKER_USER}, password: {BROKER_PASSWORD}}}
---
apiVersion: servicecatalog.k8s.io/v1beta1
kind: ClusterServiceBroker
metadata: {{name: {name}}}
spec:
  url: {url}
  authInfo:
    basic:
      secretRef: {{namespace: brokers, name: {name}-auth}}
  relistBehavior: Duration
  relistDuration: 15m0s
"#,
        url = bindery.url()
    )
}
