//! Running one adapter call: a child in its own process group with a clean environment,
//! the request on stdin, stdout and stderr read up to a limit, and the whole group
//! killed when the call times out or is dropped (bindery shutting down, a lost lease).

use std::collections::BTreeMap;
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

/// The `PATH` an adapter gets when its settings name none: enough to find `sh`,
/// `python3` and the tools a service ships (servers live in sbin), nothing from bindery's own environment.
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What to run and within which limits.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// The executable and its arguments.
    pub argv: Vec<String>,
    /// The adapter's whole environment (bindery's own is never passed on).
    pub environment: BTreeMap<String, String>,
    /// How long one call may take, output included.
    pub timeout: Duration,
    /// The most bytes read from stdout (and, separately, from stderr).
    pub max_output_bytes: usize,
}

/// How a call ended when it did not end by itself within the limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunError {
    /// The executable could not be started (missing, not executable).
    Spawn(String),
    /// It ran longer than the timeout; its process group was killed.
    TimedOut(Duration),
    /// It wrote more than the limit to stdout; its process group was killed.
    TooMuchOutput(usize),
}

/// What a finished call left behind.
#[derive(Debug, Clone)]
pub struct Finished {
    /// The exit status.
    pub status: ExitStatus,
    /// Standard output, at most the limit.
    pub stdout: Vec<u8>,
    /// Standard error, cut at the limit (it only goes to the log).
    pub stderr: Vec<u8>,
}

/// Kills the adapter's process group when dropped, unless the adapter exited by
/// itself: a timeout, a future dropped at shutdown or an early return all end every
/// process the adapter started, not only the first one.
#[derive(Debug)]
struct GroupGuard {
    pgid: Option<Pid>,
}

impl GroupGuard {
    fn kill(&mut self) {
        if let Some(pgid) = self.pgid.take() {
            // ESRCH (the group is gone already) is the only expected error.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
    }
}

impl Drop for GroupGuard {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Runs `invocation` once with `stdin` as its standard input.
pub async fn run(invocation: &Invocation, stdin: &[u8]) -> Result<Finished, RunError> {
    let Some((program, args)) = invocation.argv.split_first() else {
        return Err(RunError::Spawn("no command".to_owned()));
    };
    let mut command = Command::new(program);
    command
        .args(args)
        .env_clear()
        .envs(&invocation.environment)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = command
        .spawn()
        .map_err(|e| RunError::Spawn(format!("cannot start {program}: {e}")))?;
    let mut guard = GroupGuard {
        pgid: child
            .id()
            .and_then(|id| i32::try_from(id).ok())
            .map(Pid::from_raw),
    };
    let mut child_stdin = child.stdin.take().expect("stdin is piped");
    let mut child_stdout = child.stdout.take().expect("stdout is piped");
    let mut child_stderr = child.stderr.take().expect("stderr is piped");
    let limit = invocation.max_output_bytes;
    let input = stdin.to_vec();
    let call = async {
        // An adapter that exits without reading its input is not an error here: its
        // output says what happened.
        let write = async move {
            let _ = child_stdin.write_all(&input).await;
            drop(child_stdin);
        };
        // stderr in its own task: an adapter flooding stdout keeps stderr open, and
        // must be stopped at the stdout limit without waiting for stderr to close.
        let stderr = tokio::spawn(async move { read_limited(&mut child_stderr, limit).await });
        let (_, stdout) = tokio::join!(write, read_limited(&mut child_stdout, limit));
        if stdout.len() > limit {
            return Err(RunError::TooMuchOutput(limit));
        }
        let status = child
            .wait()
            .await
            .map_err(|e| RunError::Spawn(format!("waiting for {program}: {e}")))?;
        let stderr = stderr.await.unwrap_or_default();
        Ok((status, stdout, stderr))
    };
    match tokio::time::timeout(invocation.timeout, call).await {
        Ok(Ok((status, stdout, mut stderr))) => {
            // Exited by itself: its pid may be reused, so the group is not signalled.
            guard.pgid = None;
            stderr.truncate(limit);
            Ok(Finished {
                status,
                stdout,
                stderr,
            })
        }
        Ok(Err(e)) => {
            guard.kill();
            Err(e)
        }
        Err(_) => {
            guard.kill();
            Err(RunError::TimedOut(invocation.timeout))
        }
    }
}

/// Reads until end of file or one byte past `limit`, whichever comes first.
async fn read_limited(reader: &mut (impl AsyncRead + Unpin), limit: usize) -> Vec<u8> {
    let mut buffer = Vec::new();
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let _ = reader.take(cap).read_to_end(&mut buffer).await;
    buffer
}

/// `text` with every occurrence of each secret replaced, longest secrets first so
/// that a secret containing another is replaced whole.
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut secrets: Vec<&String> = secrets.iter().filter(|s| !s.is_empty()).collect();
    secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
    secrets.into_iter().fold(text.to_owned(), |text, secret| {
        text.replace(secret.as_str(), "[redacted]")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout_ms: u64, limit: usize) -> Invocation {
        Invocation {
            argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            environment: BTreeMap::from([("PATH".to_owned(), DEFAULT_PATH.to_owned())]),
            timeout: Duration::from_millis(timeout_ms),
            max_output_bytes: limit,
        }
    }

    #[tokio::test]
    async fn echoes_stdin_and_keeps_the_environment_clean() {
        let out = run(&sh("cat; echo \"[$HOME]\" >&2", 5000, 1024), b"hello")
            .await
            .unwrap();
        assert!(out.status.success());
        assert_eq!(out.stdout, b"hello");
        assert_eq!(out.stderr, b"[]\n");
    }

    #[tokio::test]
    async fn too_much_output_is_refused() {
        let err = run(&sh("yes", 5000, 100), b"").await.unwrap_err();
        assert_eq!(err, RunError::TooMuchOutput(100));
    }

    #[tokio::test]
    async fn a_missing_program_is_a_spawn_error() {
        let mut invocation = sh("", 1000, 10);
        invocation.argv = vec!["/nonexistent/adapter".into()];
        assert!(matches!(
            run(&invocation, b"").await,
            Err(RunError::Spawn(_))
        ));
    }

    /// What bindery's shutdown (or a lost lease) does to a call in flight: its future
    /// is dropped. Every process of the adapter's group must go with it.
    #[tokio::test]
    async fn dropping_a_call_kills_the_whole_process_group() {
        let dir =
            std::env::temp_dir().join(format!("bindery-drop-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let pids = dir.join("pids");
        let script = format!("sleep 600 & echo $$ $! > {}; wait", pids.display());
        let invocation = sh(&script, 60_000, 1024);
        let call = tokio::spawn(async move { run(&invocation, b"").await });
        while std::fs::read_to_string(&pids).map_or(true, |p| p.split_whitespace().count() < 2) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        call.abort();
        let _ = call.await;
        let pids = std::fs::read_to_string(&pids).unwrap();
        for _ in 0..100 {
            if pids.split_whitespace().all(|pid| !alive(pid)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        panic!("{pids} outlived the dropped call");
    }

    fn alive(pid: &str) -> bool {
        std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !stat.split(") ").nth(1).unwrap_or("").starts_with('Z'))
    }

    #[test]
    fn redaction_replaces_longest_first() {
        let text = redact(
            "a=abc b=abcdef",
            &["abc".into(), "abcdef".into(), String::new()],
        );
        assert_eq!(text, "a=[redacted] b=[redacted]");
    }
}
