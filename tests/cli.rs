//! The `bindery` command line, run as a process.

use std::process::Command;

fn bindery() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_bindery"));
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    command
}

fn write(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("bindery-cli-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn check_catalog_lists_every_mistake_and_fails() {
    let path = write(
        "catalog.yaml",
        r#"services:
  - id: 6f0a9d4e-2c1b-4d8e-9a57-0b3e1c2d4f60
    name: Postgres DB
    description: ""
    bindable: true
    requires: [telepathy]
    backend: {kind: postgresql}
    plans:
      - id: 6f0a9d4e-2c1b-4d8e-9a57-0b3e1c2d4f60
        name: small
        description: first
        backend: {settings: {connection_limit: 20000}}
      - id: p2
        name: small
        description: second
        schemas:
          service_instance:
            create:
              parameters: {type: object}
  - id: s2
    name: other
    description: no plans
    bindable: false
    plans: []
"#,
    );
    let output = bindery().arg("check-catalog").arg(&path).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "services[0].name:",
        "services[0].description:",
        "services[0].requires[0]:",
        "services[0].plans[0].id:",
        "services[0].plans[0].backend.settings:",
        "services[0].plans[1].name:",
        "services[0].plans[1].schemas.service_instance.create.parameters:",
        "services[1].plans:",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected} in:\n{stderr}"
        );
    }
    assert!(stderr.contains("problem(s)"), "{stderr}");
}

#[test]
fn check_catalog_accepts_the_shipped_catalog() {
    let output = bindery()
        .args([
            "check-catalog",
            concat!(env!("CARGO_MANIFEST_DIR"), "/catalog.yaml"),
        ])
        .env(
            "BINDERY_POSTGRES_ADMIN_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        )
        .env("BINDERY_RABBITMQ_API_URL", "http://127.0.0.1:15672")
        .env("BINDERY_REDIS_ADMIN_URL", "redis://127.0.0.1:6379")
        .env("BINDERY_MARIADB_ADMIN_URL", "mysql://root@127.0.0.1:3306")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("valid (4 services, 9 plans"), "{stdout}");
}

#[test]
fn a_bad_configuration_is_one_clear_error_and_a_non_zero_exit() {
    let output = bindery()
        .args(["check-catalog"])
        .env("BINDERY_WORKER_CONCURRENCY", "lots")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(stderr.contains("BINDERY_WORKER_CONCURRENCY"), "{stderr}");
}

#[test]
fn serve_refuses_to_start_without_an_encryption_key() {
    let output = bindery()
        .args(["serve"])
        .env("BINDERY_USERNAME", "u")
        .env("BINDERY_PASSWORD", "p")
        .env(
            "BINDERY_CATALOG",
            concat!(env!("CARGO_MANIFEST_DIR"), "/catalog.yaml"),
        )
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("BINDERY_ENCRYPTION_KEYS"));
}

#[test]
fn version_and_help_work() {
    let output = bindery().arg("--version").output().unwrap();
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("bindery "));
    let output = bindery().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&output.stdout);
    for command in ["serve", "migrate", "migrate-store", "check-catalog"] {
        assert!(help.contains(command), "{help}");
    }
}

/// Starts `bindery serve` with no DATABASE_URL on `data_dir` and returns the process
/// once it serves, with what it printed until then.
fn serve_without_database_url(data_dir: &std::path::Path) -> (std::process::Child, String) {
    use std::io::{BufRead as _, BufReader};
    let catalog = concat!(env!("CARGO_MANIFEST_DIR"), "/catalog.yaml");
    let mut child = bindery()
        .arg("serve")
        .env("BINDERY_DATA_DIR", data_dir)
        .env("BINDERY_LISTEN", "127.0.0.1:0")
        .env("BINDERY_CATALOG", catalog)
        .env("BINDERY_USERNAME", "u")
        .env("BINDERY_PASSWORD", "p")
        .env("BINDERY_LOG_FORMAT", "json")
        .env(
            "BINDERY_ENCRYPTION_KEYS",
            "k:q1ZQDkyvSO0jD0b1S1OEBlJGwqvbCuX1B6e4MZq0C5c=",
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut printed = String::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        printed.push_str(&line);
        printed.push('\n');
        if line.contains("bindery is serving the OSB API") {
            break;
        }
    }
    (child, printed)
}

#[test]
fn without_database_url_the_state_goes_to_sqlite_in_the_data_dir_and_the_first_line_says_so() {
    let dir = std::env::temp_dir().join(format!("bindery-data-{}", uuid::Uuid::new_v4().simple()));
    let (mut first, printed) = serve_without_database_url(&dir);
    assert!(
        printed.contains("bindery is serving the OSB API"),
        "the broker started: {printed}"
    );
    let first_line = printed.lines().next().unwrap_or_default();
    assert!(
        first_line.contains("SQLite") && first_line.contains(&*dir.to_string_lossy()),
        "the first log line names the SQLite file: {first_line}"
    );
    assert!(dir.join("bindery.db").is_file(), "the state file exists");

    // A second broker on the same data directory is refused: one process per file.
    let second = bindery()
        .arg("serve")
        .env("BINDERY_DATA_DIR", &dir)
        .env("BINDERY_LISTEN", "127.0.0.1:0")
        .env(
            "BINDERY_CATALOG",
            concat!(env!("CARGO_MANIFEST_DIR"), "/catalog.yaml"),
        )
        .env("BINDERY_USERNAME", "u")
        .env("BINDERY_PASSWORD", "p")
        .env(
            "BINDERY_ENCRYPTION_KEYS",
            "k:q1ZQDkyvSO0jD0b1S1OEBlJGwqvbCuX1B6e4MZq0C5c=",
        )
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&second.stdout),
        String::from_utf8_lossy(&second.stderr)
    );
    assert!(!second.status.success(), "the second broker must not start");
    assert!(
        said.contains("another bindery process"),
        "the refusal says why: {said}"
    );
    first.kill().unwrap();
    first.wait().unwrap();
    std::fs::remove_dir_all(&dir).ok();
}

/// Starts `bindery serve` on a free port with `env` added; returns the process and its port.
fn serve_with(data_dir: &std::path::Path, env: &[(&str, &str)]) -> (std::process::Child, u16) {
    use std::io::{BufRead as _, BufReader};
    let mut command = bindery();
    command
        .arg("serve")
        .env("BINDERY_DATA_DIR", data_dir)
        .env("BINDERY_LISTEN", "127.0.0.1:0")
        .env(
            "BINDERY_CATALOG",
            concat!(env!("CARGO_MANIFEST_DIR"), "/catalog.yaml"),
        )
        .env("BINDERY_USERNAME", "u")
        .env("BINDERY_PASSWORD", "p")
        .env("BINDERY_LOG_FORMAT", "json")
        .env(
            "BINDERY_ENCRYPTION_KEYS",
            "k:q1ZQDkyvSO0jD0b1S1OEBlJGwqvbCuX1B6e4MZq0C5c=",
        )
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().unwrap();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        if line.contains("bindery is serving the OSB API") {
            let entry: serde_json::Value = serde_json::from_str(&line).unwrap();
            let port = entry["fields"]["port"]
                .as_u64()
                .or_else(|| entry["port"].as_u64())
                .unwrap_or_else(|| panic!("no port in {line}"));
            return (child, port as u16);
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("bindery serve did not start");
}

fn healthcheck(port: u16, env: &[(&str, &str)]) -> std::process::Output {
    let mut command = bindery();
    command
        .arg("healthcheck")
        .env("BINDERY_LISTEN", format!("127.0.0.1:{port}"));
    for (k, v) in env {
        command.env(k, v);
    }
    command.output().unwrap()
}

#[test]
fn healthcheck_passes_against_a_serving_broker_and_fails_against_nothing() {
    let dir = std::env::temp_dir().join(format!("bindery-hc-{}", uuid::Uuid::new_v4().simple()));
    let (mut broker, port) = serve_with(&dir, &[]);
    let up = healthcheck(port, &[]);
    assert!(
        up.status.success(),
        "{}",
        String::from_utf8_lossy(&up.stderr)
    );
    broker.kill().unwrap();
    broker.wait().unwrap();
    let down = healthcheck(port, &[]);
    assert!(!down.status.success(), "nothing listens any more");
    let said = String::from_utf8_lossy(&down.stderr);
    assert!(said.contains("/healthz"), "{said}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn healthcheck_speaks_tls_when_tls_is_configured() {
    use rcgen::{CertificateParams, KeyPair};
    let dir = std::env::temp_dir().join(format!("bindery-hc-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    // A self-signed certificate for another name: the check does not verify it.
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["bindery.example".to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_file, key_file) = (dir.join("tls.crt"), dir.join("tls.key"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    let tls = [
        ("BINDERY_TLS_CERT_FILE", cert_file.to_str().unwrap()),
        ("BINDERY_TLS_KEY_FILE", key_file.to_str().unwrap()),
    ];
    let (mut broker, port) = serve_with(&dir, &tls);
    let over_tls = healthcheck(port, &tls);
    let plain = healthcheck(port, &[]);
    broker.kill().unwrap();
    broker.wait().unwrap();
    assert!(
        over_tls.status.success(),
        "{}",
        String::from_utf8_lossy(&over_tls.stderr)
    );
    assert!(!plain.status.success(), "plain HTTP to the TLS port");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn check_catalog_without_any_backend_checks_every_plan_and_names_the_unconfigured_ones() {
    // As in a CI pipeline: no admin URL of any managed server.
    let output = bindery()
        .args([
            "check-catalog",
            concat!(env!("CARGO_MANIFEST_DIR"), "/catalog.yaml"),
        ])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("valid (4 services, 9 plans)"), "{stdout}");
    for (kind, variable) in [
        ("postgresql", "BINDERY_POSTGRES_ADMIN_URL"),
        ("mariadb", "BINDERY_MARIADB_ADMIN_URL"),
        ("redis", "BINDERY_REDIS_ADMIN_URL"),
        ("rabbitmq", "BINDERY_RABBITMQ_API_URL"),
    ] {
        assert!(
            stdout.lines().any(
                |l| l.contains(&format!("{kind} plan(s) would not be served"))
                    && l.contains(variable)
            ),
            "{kind} is named as unconfigured: {stdout}"
        );
    }

    // The backends' own setting checks still run, without a server.
    let path = write(
        "catalog.yaml",
        r#"services:
  - id: s1
    name: db
    description: a database
    bindable: true
    backend: {kind: postgresql}
    plans:
      - id: p1
        name: small
        description: too many connections
        backend: {settings: {connection_limit: 20000}}
"#,
    );
    let output = bindery().arg("check-catalog").arg(&path).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("services[0].plans[0].backend.settings"),
        "{stderr}"
    );
}

#[test]
fn every_bad_setting_stops_the_broker_with_one_line_naming_it_and_its_accepted_form() {
    for (variable, value, form) in [
        ("BINDERY_LISTEN", "nonsense", "0.0.0.0:8080"),
        ("BINDERY_METRICS_LISTEN", "9090", "0.0.0.0:8080"),
        (
            "BINDERY_POSTGRES_CREDENTIALS_PORT",
            "99999",
            "from 1 to 65535",
        ),
        ("BINDERY_RABBITMQ_AMQP_PORT", "0", "from 1 to 65535"),
        ("BINDERY_MAX_HEADER_BYTES", "10", "at least 1024"),
        ("BINDERY_MAX_BODY_BYTES", "10", "at least 1024"),
        ("BINDERY_LEASE_SECONDS", "1", "from 3 to 86400"),
        ("BINDERY_WORKER_CONCURRENCY", "0", "from 1 to 100000"),
        ("BINDERY_WORKER_CONCURRENCY", "lots", "from 1 to 100000"),
        ("BINDERY_MIN_API_VERSION", "2.99", "from 2.13 to 2.17"),
        ("BINDERY_LOG", "bindery=loud", "tracing filter"),
        ("BINDERY_LOG_FORMAT", "xml", "text or json"),
    ] {
        // Everything else `serve` needs but the encryption key: a setting that slipped
        // through would stop it on the missing key instead, naming another variable.
        let output = bindery()
            .arg("serve")
            .env("BINDERY_USERNAME", "u")
            .env("BINDERY_PASSWORD", "p")
            .env("BINDERY_LISTEN", "127.0.0.1:0")
            .env(
                "BINDERY_CATALOG",
                concat!(env!("CARGO_MANIFEST_DIR"), "/catalog.yaml"),
            )
            .env(variable, value)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{variable}={value} was accepted");
        assert_eq!(
            stderr.trim().lines().count(),
            1,
            "{variable}={value}: one line:\n{stderr}"
        );
        assert!(
            stderr.contains(variable) && stderr.contains(form),
            "{variable}={value}: the line names the variable and `{form}`: {stderr}"
        );
    }
}

#[test]
fn check_catalog_reports_a_schema_that_admits_what_the_plan_refuses() {
    // One schema shared by plans with different limits: 200 is admitted on a plan
    // whose backend settings allow 20. MariaDB takes no instance parameters at all.
    let path = write(
        "catalog.yaml",
        r#"services:
  - id: svc-pg
    name: pg
    description: PostgreSQL
    bindable: true
    backend: {kind: postgresql}
    plans:
      - id: plan-small
        name: small
        description: small
        backend: {settings: {connection_limit: 10, max_connection_limit: 20, allowed_extensions: [citext]}}
        schemas: &shared
          service_instance:
            create:
              parameters:
                $schema: http://json-schema.org/draft-04/schema#
                type: object
                additionalProperties: false
                properties:
                  connection_limit: {type: integer, minimum: 1, maximum: 200}
                  extensions: {type: array, items: {type: string, enum: [citext, pgcrypto]}}
            update:
              parameters:
                $schema: http://json-schema.org/draft-04/schema#
                type: object
                additionalProperties: false
                properties:
                  connection_limit: {type: integer, minimum: 1, maximum: 200}
      - id: plan-large
        name: large
        description: large
        backend: {settings: {connection_limit: 200, max_connection_limit: 200, allowed_extensions: [citext, pgcrypto]}}
        schemas: *shared
  - id: svc-maria
    name: maria
    description: MariaDB
    bindable: true
    backend: {kind: mariadb}
    plans:
      - id: plan-maria
        name: small
        description: small
"#,
    );
    let output = bindery().arg("check-catalog").arg(&path).output().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "services[0].plans[0].schemas.service_instance.create.parameters.properties.connection_limit.maximum: admits up to 200, but the plan's backend settings allow at most 20",
        "services[0].plans[0].schemas.service_instance.update.parameters.properties.connection_limit.maximum:",
        "services[0].plans[0].schemas.service_instance.create.parameters.properties.extensions.items.enum:",
        "services[1].plans[0].schemas.service_instance.create.parameters: is missing",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected} in:\n{stderr}"
        );
    }
    assert!(
        !stderr.contains("services[0].plans[1]"),
        "the large plan's schema is within its bounds:\n{stderr}"
    );
}
