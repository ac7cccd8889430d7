//! A real `bindery serve` process for the tests that kill one and start another: a free
//! loopback port, the test credentials and encryption key, the caller's settings on top.
//! Killed (SIGKILL, no shutdown) on demand or when dropped.
// Included by several test binaries, each of which uses part of it.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// One running `bindery serve`.
pub struct BrokerProcess {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
}

impl BrokerProcess {
    /// Starts bindery with the test platform credentials (`admin` / `change-me`), a fixed
    /// encryption key, errors-only logging, and `settings` (name, value) on top.
    pub fn start(settings: &[(&str, &str)]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut command = Command::new(env!("CARGO_BIN_EXE_bindery"));
        command
            .arg("serve")
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("BINDERY_LISTEN", format!("127.0.0.1:{port}"))
            .env("BINDERY_USERNAME", "admin")
            .env("BINDERY_PASSWORD", "change-me")
            .env(
                "BINDERY_ENCRYPTION_KEYS",
                "dev:q1ZQDkyvSO0jD0b1S1OEBlJGwqvbCuX1B6e4MZq0C5c=",
            )
            .env("BINDERY_LOG", "error")
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (name, value) in settings {
            command.env(name, value);
        }
        Self {
            child: command.spawn().expect("bindery starts"),
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// Waits (up to 15 s) until `/readyz` answers 200.
    pub async fn ready(&self, client: &reqwest::Client) {
        for _ in 0..150 {
            if client
                .get(format!("{}/readyz", self.base))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("{} did not become ready", self.base);
    }

    /// The process id (bindery names its worker leases after it).
    pub fn id(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: the process gets no chance to shut down, as in a crash.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for BrokerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
