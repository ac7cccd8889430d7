//! `bindery adapter-check` (issue 16) against tests/adapters/test_adapter.py: the good
//! adapter keeps every rule; a sloppy one (not idempotent, one password for every
//! binding) and a broken one (garbage on stdout) are told which rules they break.

use std::process::{Command, Output};

const ADAPTER: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/adapters/test_adapter.py"
);

fn adapter_check(mode: &str) -> Output {
    let dir = std::env::temp_dir().join(format!("bindery-check-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let settings = serde_json::json!({"state_dir": dir, "mode": mode}).to_string();
    Command::new(env!("CARGO_BIN_EXE_bindery"))
        .args([
            "adapter-check",
            "--timeout",
            "5",
            "--settings",
            &settings,
            ADAPTER,
        ])
        .env_remove("BINDERY_CONFIG")
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn a_good_adapter_keeps_every_rule() {
    let output = adapter_check("good");
    let text = stdout(&output);
    assert!(output.status.success(), "{text}");
    assert!(!text.contains("FAIL"), "{text}");
    assert_eq!(
        text.lines().filter(|l| l.starts_with("ok ")).count(),
        17,
        "{text}"
    );
}

#[test]
fn a_sloppy_adapter_is_told_which_rules_it_breaks() {
    let output = adapter_check("sloppy");
    let text = stdout(&output);
    assert!(!output.status.success(), "{text}");
    let failed: Vec<&str> = text.lines().filter(|l| l.starts_with("FAIL")).collect();
    assert_eq!(
        failed,
        [
            "FAIL provision again succeeds (idempotent): answered an error: the instance exists already",
            "FAIL each binding gets its own credentials: two bindings got the same password",
            "FAIL unbind again succeeds (idempotent): answered an error: no such binding",
        ],
        "{text}"
    );
    assert!(String::from_utf8_lossy(&output.stderr).contains("breaks the contract"));
}

#[test]
fn garbage_on_stdout_breaks_every_rule_and_says_why() {
    let output = adapter_check("garbage");
    let text = stdout(&output);
    assert!(!output.status.success(), "{text}");
    assert!(
        text.contains("FAIL provision succeeds: stdout is not one JSON document"),
        "{text}"
    );
}
