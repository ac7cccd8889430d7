//! A `redis-server` of the test's own, set up as docs/backends.md asks (the `default`
//! user off, an admin user, an ACL file), on a free port, killed when dropped. Tests
//! freeze it (SIGSTOP) and resume it without touching the shared server.

// Included by several test binaries, each using part of it.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const ADMIN_PASSWORD: &str = "admin-pw-private";

pub struct PrivateRedis {
    pub port: u16,
    child: Child,
    dir: PathBuf,
}

impl PrivateRedis {
    pub fn start() -> Self {
        let dir =
            std::env::temp_dir().join(format!("bindery-redis-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let acl = dir.join("users.acl");
        std::fs::write(
            &acl,
            format!("user default off\nuser admin on >{ADMIN_PASSWORD} ~* &* +@all\n"),
        )
        .unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .arg("--dir")
            .arg(&dir)
            .arg("--aclfile")
            .arg(&acl)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (the Redis package) is installed");
        let redis = Self { port, child, dir };
        for _ in 0..100 {
            if redis.admin(&["PING"]).is_some_and(|out| out == "PONG") {
                return redis;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("the test's own redis-server did not answer");
    }

    /// The admin connection bindery's redis backend is given.
    pub fn admin_url(&self) -> String {
        format!("redis://admin:{ADMIN_PASSWORD}@127.0.0.1:{}", self.port)
    }

    /// Stops the server's process where it is (SIGSTOP): connections stay open and
    /// commands wait, as on a hung server.
    pub fn freeze(&self) {
        self.signal("-STOP");
    }

    /// Lets a frozen server go on; the commands it received run in order.
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// A command as the admin user; its trimmed output, `None` when it failed.
    pub fn admin(&self, args: &[&str]) -> Option<String> {
        self.as_user("admin", ADMIN_PASSWORD, args)
    }

    /// A command as `user`; its trimmed output, `None` when redis-cli failed. (A
    /// refused AUTH makes redis-cli go on as the disabled `default` user.)
    pub fn as_user(&self, user: &str, password: &str, args: &[&str]) -> Option<String> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string()])
            .args(["--user", user, "--pass", password, "--no-auth-warning"])
            .args(args)
            .output()
            .ok()?;
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        // SIGKILL ends a stopped (frozen) process too.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
