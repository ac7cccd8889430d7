//! docs/walkthrough.md, run as written: every `sh` block is executed with bash against
//! the real binary started the way `scripts/run` starts it, and its output compared
//! with the block that follows (`…` matches anything).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

struct Broker {
    child: Child,
    database: String,
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("psql")
            .args(["-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-qc"])
            .arg(format!(
                "drop database if exists \"{}\" with (force)",
                self.database
            ))
            .output();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Pairs of (commands, expected output) in document order.
fn steps(doc: &str) -> Vec<(String, String)> {
    let mut steps = Vec::new();
    let mut lines = doc.lines();
    while let Some(line) = lines.next() {
        if line.trim() != "```sh" {
            continue;
        }
        let command: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        if command.iter().any(|l| l.starts_with("export BROKER")) {
            continue;
        }
        let opening = lines
            .by_ref()
            .find(|l| !l.trim().is_empty())
            .unwrap_or_default();
        assert_eq!(
            opening.trim(),
            "```",
            "every command block is followed by its output"
        );
        let expected: Vec<&str> = lines.by_ref().take_while(|l| l.trim() != "```").collect();
        steps.push((command.join("\n"), expected.join("\n")));
    }
    steps
}

/// Matches `actual` against `pattern`, where `…` matches any run of characters.
fn matches(pattern: &str, actual: &str) -> bool {
    let parts: Vec<&str> = pattern.split('…').collect();
    let mut rest = actual;
    for (i, part) in parts.iter().enumerate() {
        if i == 0 {
            let Some(r) = rest.strip_prefix(part) else {
                return false;
            };
            rest = r;
        } else if i == parts.len() - 1 {
            return rest.ends_with(part);
        } else {
            let Some(at) = rest.find(part) else {
                return false;
            };
            rest = &rest[at + part.len()..];
        }
    }
    rest.is_empty()
}

#[test]
fn the_matcher_understands_ellipses() {
    assert!(matches("{\"a\":\"…\"}", "{\"a\":\"xyz\"}"));
    assert!(matches("a…c…e", "abcde"));
    assert!(!matches("a…c", "abd"));
    assert!(!matches("exact", "exactly"));
}

#[test]
fn the_walkthrough_answers_exactly_as_documented() {
    let doc = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/walkthrough.md"))
        .unwrap();
    let port = free_port();
    let database = format!("bindery_test_walk_{}", uuid::Uuid::new_v4().simple());
    let child = Command::new(env!("CARGO_BIN_EXE_bindery"))
        .arg("serve")
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        // What scripts/run sets, on a database and port of this test's own.
        .env(
            "DATABASE_URL",
            format!("postgres://postgres@127.0.0.1:5432/{database}"),
        )
        .env("BINDERY_LISTEN", format!("127.0.0.1:{port}"))
        .env("BINDERY_USERNAME", "admin")
        .env("BINDERY_PASSWORD", "change-me")
        .env(
            "BINDERY_ENCRYPTION_KEYS",
            "dev:q1ZQDkyvSO0jD0b1S1OEBlJGwqvbCuX1B6e4MZq0C5c=",
        )
        .env(
            "BINDERY_POSTGRES_ADMIN_URL",
            "postgres://postgres@127.0.0.1:5432/postgres",
        )
        .env("BINDERY_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .expect("bindery starts");
    let _broker = Broker { child, database };
    let base = format!("http://127.0.0.1:{port}");
    let ready = (0..100).any(|_| {
        std::thread::sleep(Duration::from_millis(100));
        Command::new("curl")
            .args(["-sf", &format!("{base}/readyz")])
            .output()
            .is_ok_and(|o| o.status.success())
    });
    assert!(ready, "the broker became ready");

    let steps = steps(&doc);
    assert!(steps.len() >= 12, "found {} steps", steps.len());
    for (command, expected) in steps {
        let output = Command::new("bash")
            .arg("-c")
            .arg(&command)
            .env("BROKER", &base)
            .output()
            .unwrap();
        let actual = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        assert!(
            matches(expected.trim(), &actual),
            "command:\n{command}\nexpected:\n{expected}\nactual:\n{actual}\nstderr:\n{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
}
