//! The shipped MQTT adapter (adapters/mosquitto/adapter.py, issue 16) against a private
//! Mosquitto with the dynamic-security plugin, started by the test on its own port with
//! its own configuration in a temporary directory (the machine's shared Mosquitto is
//! never touched), driven through bindery's `exec` backend and checked with the real
//! clients mosquitto_pub and mosquitto_sub. The adapter finds a recording wrapper
//! first in its PATH, which shows that no password is on mosquitto_ctrl's command line.

use std::path::PathBuf;
use std::process::{Child, Command, Output};
use std::time::{Duration, Instant};

use bindery::backends::exec::ExecBackend;
use bindery::backends::{BindingSpec, Credentials, InstanceSpec, ServiceBackend};
use secrecy::SecretString;
use serde_json::{Map, Value, json};

const ADAPTER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/adapters/mosquitto/adapter.py");
const ADMIN_PASSWORD: &str = "private-mosquitto-admin-9c41";

struct PrivateMosquitto {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl PrivateMosquitto {
    fn start() -> Self {
        let dir =
            std::env::temp_dir().join(format!("bindery-mqtt-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let dynsec = dir.join("dynamic-security.json");
        let init = Command::new("mosquitto_ctrl")
            .args([
                "dynsec",
                "init",
                dynsec.to_str().unwrap(),
                "admin",
                ADMIN_PASSWORD,
            ])
            .output()
            .unwrap();
        assert!(init.status.success(), "{init:?}");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let user =
            String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
        // `user`: run as the test's own user, who can read and rewrite the plugin's file
        // (Mosquitto started as root would otherwise switch to the `mosquitto` user).
        let config = format!(
            "listener {port} 127.0.0.1\nallow_anonymous false\npersistence false\nuser {}\n\
             plugin /usr/lib/x86_64-linux-gnu/mosquitto_dynamic_security.so\n\
             plugin_opt_config_file {}\n",
            user.trim(),
            dynsec.display()
        );
        std::fs::write(dir.join("mosquitto.conf"), config).unwrap();
        let child = Command::new("mosquitto")
            .arg("-c")
            .arg(dir.join("mosquitto.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "mosquitto did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        // The wrapper records each call's arguments, its options file's mode and where
        // that file was, then runs the real mosquitto_ctrl.
        let real = std::env::split_paths(&std::env::var_os("PATH").unwrap())
            .map(|d| d.join("mosquitto_ctrl"))
            .find(|p| p.exists())
            .unwrap();
        let bin = dir.join("bin");
        std::fs::create_dir_all(&bin).unwrap();
        let wrapper = format!(
            "#!/bin/sh\n{{ printf 'argv %s\\n' \"$*\"; printf 'options %s %s\\n' \
             \"$(stat -c %a \"$XDG_CONFIG_HOME/mosquitto_ctrl\")\" \"$XDG_CONFIG_HOME\"; }} \
             >> \"{}\"\nexec \"{}\" \"$@\"\n",
            dir.join("mosquitto_ctrl.log").display(),
            real.display()
        );
        std::fs::write(bin.join("mosquitto_ctrl"), wrapper).unwrap();
        let executable = std::os::unix::fs::PermissionsExt::from_mode(0o755);
        std::fs::set_permissions(bin.join("mosquitto_ctrl"), executable).unwrap();
        Self { child, port, dir }
    }

    fn settings(&self) -> Value {
        let path = format!(
            "{}:/usr/local/bin:/usr/bin:/bin",
            self.dir.join("bin").display()
        );
        json!({
            "command": [ADAPTER],
            "environment": {"PATH": path},
            "secrets": {"admin_password": "MQTT_ADMIN_PASSWORD"},
            "timeout_seconds": 30,
            "config": {"port": self.port},
        })
    }

    /// What the wrapper recorded: no password on any command line, every options file
    /// of mode 0600 and removed since.
    fn assert_no_password_on_command_lines(&self, passwords: &[&str]) {
        let log = std::fs::read_to_string(self.dir.join("mosquitto_ctrl.log")).unwrap();
        assert!(log.lines().filter(|l| l.starts_with("argv ")).count() > 10);
        for line in log.lines() {
            for password in passwords {
                assert!(!line.contains(password), "a password on a command line");
            }
            if let Some(options) = line.strip_prefix("options ") {
                let (mode, home) = options.split_once(' ').unwrap();
                assert_eq!(mode, "600", "{line}");
                assert!(!PathBuf::from(home).exists(), "{home} was left behind");
            }
        }
    }
}

impl Drop for PrivateMosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn backend() -> ExecBackend {
    ExecBackend::with_secret_lookup(|v| {
        (v == "MQTT_ADMIN_PASSWORD").then(|| ADMIN_PASSWORD.to_owned())
    })
}

fn mqtt(program: &str, port: u16, credentials: &Credentials, args: &[&str]) -> Output {
    Command::new(program)
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args([
            "-u",
            &credentials.0["username"],
            "-P",
            &credentials.0["password"],
        ])
        .args(args)
        .output()
        .unwrap()
}

/// Subscribes to `filter`, publishes `message` to `topic` once the subscription is up,
/// and returns what the subscriber printed (stdout and stderr).
fn round_trip(
    port: u16,
    reader: &Credentials,
    writer: &Credentials,
    filter: &str,
    topic: &str,
) -> String {
    let subscriber = Command::new("mosquitto_sub")
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(["-u", &reader.0["username"], "-P", &reader.0["password"]])
        .args(["-t", filter, "-C", "1", "-W", "3"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    mqtt("mosquitto_pub", port, writer, &["-t", topic, "-m", "hello"]);
    let out = subscriber.wait_with_output().unwrap();
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test]
async fn bindings_talk_under_their_prefix_only_and_are_refused_after_unbind() {
    let server = PrivateMosquitto::start();
    let settings = server.settings();
    let none = Map::new();
    let read_only = json!({"read_only": true}).as_object().unwrap().clone();
    let instance = |id| InstanceSpec {
        instance_id: id,
        service_id: "mqtt",
        plan_id: "mqtt-shared",
        plan_settings: &settings,
        parameters: &none,
        context: None,
        facts: None,
    };
    let (a, b) = (instance("instance-a"), instance("instance-b"));
    backend().provision(&a).await.unwrap();
    backend().provision(&b).await.unwrap();
    let password = |c: char| SecretString::from(c.to_string().repeat(32));
    let (pa, pr, pb) = (password('a'), password('r'), password('b'));
    let bind = |instance, id, parameters, password| BindingSpec {
        instance,
        binding_id: id,
        parameters,
        password,
    };
    let on_a = bind(a, "binding-a", &none, &pa);
    let reader_a = bind(a, "binding-a-ro", &read_only, &pr);
    let on_b = bind(b, "binding-b", &none, &pb);
    let ca = backend().bind(&on_a).await.unwrap();
    let cr = backend().bind(&reader_a).await.unwrap();
    let cb = backend().bind(&on_b).await.unwrap();
    let prefix_a = ca.0["topic_prefix"].clone();
    let prefix_b = cb.0["topic_prefix"].clone();
    assert_ne!(prefix_a, prefix_b);

    // A binding talks under its instance's prefix; a read-only one reads there.
    let seen = round_trip(
        server.port,
        &cr,
        &ca,
        &format!("{prefix_a}#"),
        &format!("{prefix_a}t"),
    );
    assert_eq!(seen.trim(), "hello", "{seen}");
    // It cannot read another instance's prefix, nor write there.
    let denied = round_trip(
        server.port,
        &ca,
        &cb,
        &format!("{prefix_b}#"),
        &format!("{prefix_b}t"),
    );
    assert!(
        denied.contains("All subscription requests were denied"),
        "{denied}"
    );
    let unseen = round_trip(
        server.port,
        &cb,
        &ca,
        &format!("{prefix_b}#"),
        &format!("{prefix_b}t"),
    );
    assert!(!unseen.contains("hello"), "{unseen}");
    // A read-only binding cannot publish: its message never arrives.
    let unseen = round_trip(
        server.port,
        &ca,
        &cr,
        &format!("{prefix_a}#"),
        &format!("{prefix_a}t"),
    );
    assert!(!unseen.contains("hello"), "{unseen}");

    backend().unbind(&on_a).await.unwrap();
    let refused = mqtt(
        "mosquitto_pub",
        server.port,
        &ca,
        &["-t", &format!("{prefix_a}t"), "-m", "x"],
    );
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("not authorised"),
        "{refused:?}"
    );
    // The other bindings keep working.
    let seen = round_trip(
        server.port,
        &cr,
        &cr,
        &format!("{prefix_a}#"),
        &format!("{prefix_a}t"),
    );
    assert!(
        !seen.contains("hello"),
        "read-only cannot publish even to itself: {seen}"
    );

    backend().deprovision(&a).await.unwrap();
    backend().deprovision(&b).await.unwrap();
    // Deprovision removed the bindings the platform had not unbound.
    let refused = mqtt(
        "mosquitto_pub",
        server.port,
        &cb,
        &["-t", &format!("{prefix_b}t"), "-m", "x"],
    );
    assert!(!refused.status.success(), "{refused:?}");
    server.assert_no_password_on_command_lines(&[
        ADMIN_PASSWORD,
        &ca.0["password"],
        &cr.0["password"],
        &cb.0["password"],
    ]);
}

#[test]
fn the_mosquitto_adapter_passes_adapter_check() {
    let server = PrivateMosquitto::start();
    let settings = json!({"port": server.port}).to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_bindery"))
        .args(["adapter-check", "--timeout", "30", "--settings", &settings])
        .args(["--secret", "admin_password=MQTT_ADMIN_PASSWORD", ADAPTER])
        .env("MQTT_ADMIN_PASSWORD", ADMIN_PASSWORD)
        .env_remove("BINDERY_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!text.contains("FAIL"), "{text}");
}
