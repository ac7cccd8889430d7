//! The server processes, bindery under test and the reference, as the driver starts,
//! watches and stops them.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};

use crate::{PORT_LINE, ROLE_VAR};

/// A server process: bindery under test, or the reference.
pub(crate) struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    pub(crate) pid: u32,
    pub(crate) port: u16,
    pub(crate) startup: Duration,
    log: PathBuf,
}

impl Server {
    /// Starts this binary as `role` (`server`: bindery; `reference`) and waits until
    /// its `/readyz` answers 200.
    pub(crate) async fn start(
        role: &'static str,
        env: Vec<(&'static str, String)>,
        log: PathBuf,
    ) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating the bench binary")?;
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let started = Instant::now();
        let mut child = Command::new(exe)
            .env(ROLE_VAR, role)
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .context("starting the server process")?;
        let pid = child.id();
        let stdout = child.stdout.take().context("server stdout")?;
        let reader = tokio::task::spawn_blocking(move || -> anyhow::Result<u16> {
            for line in BufReader::new(stdout).lines() {
                if let Some(port) = line?.strip_prefix(PORT_LINE) {
                    return Ok(port.trim().parse()?);
                }
            }
            bail!("the server exited before it listened")
        });
        let port = match tokio::time::timeout(Duration::from_secs(120), reader).await {
            Ok(Ok(Ok(port))) => port,
            Ok(Ok(Err(e))) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{e}: {}", tail(&log))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the server did not listen within 120 s: {}", tail(&log))
            }
        };
        let client = reqwest::Client::builder().no_proxy().build()?;
        let ready = format!("http://127.0.0.1:{port}/readyz");
        loop {
            if client
                .get(&ready)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the server was not ready within 120 s: {}", tail(&log));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let startup = started.elapsed();
        Ok(Self {
            stdin: child.stdin.take(),
            child,
            pid,
            port,
            startup,
            log,
        })
    }

    /// Graceful stop: close stdin, wait for the worker to drain, kill after 30 s.
    pub(crate) async fn stop(mut self, keep_log: bool) {
        drop(self.stdin.take());
        for _ in 0..3000 {
            if let Ok(Some(_)) = self.child.try_wait() {
                if !keep_log {
                    let _ = std::fs::remove_file(&self.log);
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(path: &PathBuf) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(15);
    format!(
        "last lines of {}:\n{}",
        path.display(),
        lines[start..].join("\n")
    )
}
