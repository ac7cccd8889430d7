//! Contract tests of the `exec` backend (issue 16) with the adapter
//! tests/adapters/test_adapter.py, which misbehaves on purpose when its settings say
//! so: hangs (timeout, the whole process group killed), crashes, writes garbage or
//! too much, fails temporarily, leaks secrets to stderr (redacted in the log).
//! Every test has its own state directory; nothing outside it is touched.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bindery::backends::exec::ExecBackend;
use bindery::backends::{BackendError, BindingSpec, InstanceSpec, ServiceBackend, UpdateSpec};
use secrecy::SecretString;
use serde_json::{Map, Value, json};
use sha2::Digest as _;

const ADAPTER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/adapters/test_adapter.py"
);

fn state_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("bindery-exec-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn settings(dir: &Path, mode: &str, extra: Value) -> Value {
    let mut settings = json!({
        "command": [ADAPTER],
        "timeout_seconds": 2,
        "max_output_bytes": 4096,
        "config": {"state_dir": dir, "mode": mode},
    });
    settings
        .as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    settings
}

fn instance<'a>(
    id: &'a str,
    settings: &'a Value,
    parameters: &'a Map<String, Value>,
) -> InstanceSpec<'a> {
    InstanceSpec {
        instance_id: id,
        service_id: "svc",
        plan_id: "plan",
        plan_settings: settings,
        parameters,
        context: None,
        facts: None,
    }
}

const ADMIN_PASSWORD: &str = "admin-s3cr3t-9f2b7c";

fn password() -> SecretString {
    SecretString::from("p".repeat(20) + "Secret0123ab")
}

#[tokio::test]
async fn a_good_adapter_runs_the_whole_lifecycle() {
    let dir = state_dir();
    let settings = settings(&dir, "good", json!({}));
    let none = Map::new();
    let inst = instance("inst-1", &settings, &none);
    let backend = ExecBackend::default();
    let facts = backend.provision(&inst).await.unwrap();
    assert_eq!(
        facts.and_then(|f| f.get("resource").cloned()),
        Some(json!(format!(
            "r-{}",
            &hex::encode(sha2::Sha256::digest(b"inst-1"))[..16]
        ))),
        "the adapter's facts come back from provision"
    );
    backend.provision(&inst).await.unwrap();
    let pw = password();
    let binding = BindingSpec {
        instance: inst,
        binding_id: "b-1",
        parameters: &none,
        password: &pw,
    };
    let credentials = backend.bind(&binding).await.unwrap();
    assert_eq!(
        credentials.0["password"],
        secrecy::ExposeSecret::expose_secret(&pw)
    );
    assert_eq!(credentials.0["type"], "test");
    backend.unbind(&binding).await.unwrap();
    backend.unbind(&binding).await.unwrap();
    let big = json!({"size": 11}).as_object().unwrap().clone();
    let change = UpdateSpec {
        target: instance("inst-1", &settings, &big),
        previous_plan_settings: &settings,
        previous_parameters: &none,
    };
    // The adapter's "user" class is the user's mistake, in the adapter's own words.
    assert_eq!(
        backend.update(&change).await,
        Err(BackendError::Rejected("size: at most 10".into()))
    );
    backend.deprovision(&inst).await.unwrap();
    backend.deprovision(&inst).await.unwrap();
    backend.health(&settings).await.unwrap().unwrap();
}

#[tokio::test]
async fn a_hanging_adapter_times_out_and_its_whole_process_group_is_killed() {
    let dir = state_dir();
    let settings = settings(&dir, "hang", json!({"timeout_seconds": 1}));
    let none = Map::new();
    let started = Instant::now();
    let result = ExecBackend::default()
        .provision(&instance("i", &settings, &none))
        .await;
    assert!(
        matches!(&result, Err(BackendError::Unavailable(d)) if d.contains("within 1 seconds")),
        "{result:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(5));
    let pids = std::fs::read_to_string(dir.join("pids")).unwrap();
    let pids: Vec<&str> = pids.split_whitespace().collect();
    assert_eq!(pids.len(), 2, "the adapter and the sleep it started");
    // SIGKILL is asynchronous: give the kernel a moment to reap the group.
    for _ in 0..50 {
        if pids.iter().all(|pid| !alive(pid)) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("processes {pids:?} survived the timeout");
}

/// Whether a process exists and is not a zombie waiting for its parent.
fn alive(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .map(|stat| !stat.split(") ").nth(1).unwrap_or("").starts_with('Z'))
        .unwrap_or(false)
}

#[tokio::test]
async fn a_crash_is_temporary_garbage_and_floods_are_permanent() {
    let dir = state_dir();
    let none = Map::new();
    for (mode, expected) in [
        ("crash", "stopped without a result"),
        ("garbage", "did not follow the adapter contract"),
        ("flood", "wrote more than 4096 bytes"),
    ] {
        let settings = settings(&dir, mode, json!({}));
        let result = ExecBackend::default()
            .provision(&instance("i", &settings, &none))
            .await;
        match (mode, &result) {
            ("crash", Err(BackendError::Unavailable(d))) if d.contains(expected) => {}
            (_, Err(BackendError::Failed(d))) if mode != "crash" && d.contains(expected) => {}
            _ => panic!("{mode}: {result:?}"),
        }
    }
}

#[tokio::test]
async fn a_temporary_error_is_unavailable_until_the_adapter_succeeds() {
    let dir = state_dir();
    let settings = settings(&dir, "temporary_twice", json!({}));
    let none = Map::new();
    let inst = instance("i", &settings, &none);
    for attempt in 1..=2 {
        assert_eq!(
            ExecBackend::default().provision(&inst).await,
            Err(BackendError::Unavailable(format!(
                "the service is busy (attempt {attempt})"
            )))
        );
    }
    ExecBackend::default().provision(&inst).await.unwrap();
}

#[tokio::test]
async fn the_adapter_gets_only_the_environment_its_settings_name() {
    let dir = state_dir();
    let settings = settings(&dir, "env", json!({"environment": {"MY_SETTING": "1"}}));
    let none = Map::new();
    let log = capture_log();
    let _guard = tracing::subscriber::set_default(log.subscriber());
    ExecBackend::default()
        .provision(&instance("i", &settings, &none))
        .await
        .unwrap();
    let text = log.text();
    let line = text.lines().find(|l| l.contains("adapter stderr")).unwrap();
    let names = &line[line.find("stderr=").unwrap()..];
    // Python itself adds LC_CTYPE (PEP 538); nothing of the test's environment
    // (HOME, CARGO_*, NEXTEST_*) reaches the adapter.
    let names = names.replace(r#""LC_CTYPE", "#, "");
    assert_eq!(names, r#"stderr=["MY_SETTING", "PATH"]"#, "{text}");
}

#[tokio::test]
async fn secrets_an_adapter_prints_to_stderr_are_redacted_in_the_log() {
    let dir = state_dir();
    let backend = ExecBackend::with_secret_lookup(|variable| {
        (variable == "ADMIN_PASSWORD_VARIABLE").then(|| ADMIN_PASSWORD.to_owned())
    });
    let settings = settings(
        &dir,
        "leak_secret",
        json!({"secrets": {"admin_password": "ADMIN_PASSWORD_VARIABLE"}}),
    );
    let none = Map::new();
    let log = capture_log();
    let _guard = tracing::subscriber::set_default(log.subscriber());
    let inst = instance("i", &settings, &none);
    backend.provision(&inst).await.unwrap();
    let pw = password();
    let binding = BindingSpec {
        instance: inst,
        binding_id: "b",
        parameters: &none,
        password: &pw,
    };
    backend.bind(&binding).await.unwrap();
    let text = log.text();
    assert!(
        text.contains("connecting with admin password [redacted]"),
        "{text}"
    );
    assert!(text.contains("binding password [redacted]"), "{text}");
    assert!(!text.contains(ADMIN_PASSWORD), "{text}");
    assert!(
        !text.contains(secrecy::ExposeSecret::expose_secret(&pw)),
        "{text}"
    );
}

#[tokio::test]
async fn a_secret_variable_that_is_not_set_fails_without_running_the_adapter() {
    let dir = state_dir();
    let settings = settings(
        &dir,
        "good",
        json!({"secrets": {"admin_password": "BINDERY_TEST_NO_SUCH_VARIABLE_16"}}),
    );
    let none = Map::new();
    let result = ExecBackend::default()
        .provision(&instance("i", &settings, &none))
        .await;
    assert!(
        matches!(&result, Err(BackendError::Failed(d)) if d.contains("BINDERY_TEST_NO_SUCH_VARIABLE_16")),
        "{result:?}"
    );
    assert!(!dir.join("calls.log").exists());
}

/// Log events written as text into memory.
#[derive(Clone, Default)]
struct CapturedLog(Arc<Mutex<Vec<u8>>>);

fn capture_log() -> CapturedLog {
    CapturedLog::default()
}

impl CapturedLog {
    fn subscriber(&self) -> impl tracing::Subscriber + Send + Sync + use<> {
        let sink = self.clone();
        tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .finish()
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

impl Write for CapturedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}
