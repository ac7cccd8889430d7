//! The Redis backend: a shared Redis 7 server; an instance is a key prefix, a binding an ACL user.
//!
//! Isolation rests entirely on Redis ACLs: each binding gets its own user whose key and
//! channel permissions cover only its instance's prefix `<name_prefix>:<h(instance)>:`,
//! and whose command permissions exclude everything that works on the whole server
//! (administration, whole-keyspace commands, other databases, scripting). Nothing is
//! created on the server for an instance itself; deprovisioning deletes the instance's
//! users and every key under its prefix.
//!
//! Requirements on the server: Redis 7.0 or later (read-only key permissions `%R~` and
//! subcommand rules), standalone (not Cluster), and — for the isolation to mean anything
//! — a `default` user that is disabled or has a password.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, Cmd, ErrorKind, FromRedisValue, RedisError};
use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::common::{self, ID_HASH_LEN, ServerConfig, SharedServer, id_hash};
use super::{
    BackendError, BindingSpec, Credentials, Facts, InstanceSpec, ServiceBackend, UpdateSpec,
};

pub use super::common::DEFAULT_NAME_PREFIX;

/// How the server is named in errors.
const SERVER: &str = "Redis";

/// The plan settings this backend understands (all optional).
pub const PLAN_SETTINGS: &[&str] = &["allow_pubsub"];

/// How long to wait for a TCP connection (and its handshake) to the server: short, so a
/// down server turns into `Unavailable` quickly instead of blocking a worker.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// How long to wait for any one reply. Every command bindery sends is O(1) or bounded
/// (SCAN/UNLINK batches of about 1000 keys), so a slow reply means a sick server.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);

/// Keys returned per SCAN call while deprovisioning; each batch is then UNLINKed.
const SCAN_BATCH: usize = 1000;

const UNREACHABLE: &str = "The Redis server for this service is unreachable; try again later.";

/// How [`RedisBackend`] reaches the server. The admin URL is
/// `redis://[user[:password]@]host[:port][/0]`; its user needs `+@all ~* &*` or at
/// least: PING, INFO, ACL, CLIENT KILL, CONFIG GET, SCAN and UNLINK on every key. Only
/// database 0 is supported; TLS and Unix sockets are not. The credentials port
/// defaults to the admin URL's port (6379).
pub type RedisBackendConfig = ServerConfig;

/// The Redis backend. Connects lazily (on first use), so bindery starts while the
/// server is down; one multiplexed admin connection is shared by all calls and
/// re-established when it breaks.
pub struct RedisBackend {
    client: Client,
    connection: Mutex<Option<MultiplexedConnection>>,
    server: SharedServer,
    /// Operator warnings (open `default` user, ACLs not persisted) are logged once.
    warned_default_user: AtomicBool,
    warned_no_aclfile: AtomicBool,
}

/// The plan settings, parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PlanSettings {
    /// Whether bindings may use pub/sub on channels under the instance's prefix.
    allow_pubsub: bool,
}

/// Lists every problem in a plan's `backend.settings` for the `redis` kind, one message
/// each. Known settings: `allow_pubsub` (bool, default true). `null` and `{}` are valid.
pub fn check_plan_settings(settings: &Value) -> Vec<String> {
    common::problems(parse_settings(settings))
}

fn parse_settings(settings: &Value) -> Result<PlanSettings, Vec<String>> {
    let mut parsed = PlanSettings { allow_pubsub: true };
    let map = common::settings_map(
        settings,
        "redis backend settings must be an object (or be left out)",
    )?;
    let mut problems = Vec::new();
    for (key, value) in map {
        match key.as_str() {
            "allow_pubsub" => match value {
                Value::Bool(b) => parsed.allow_pubsub = *b,
                _ => problems.push("redis setting `allow_pubsub` must be true or false".to_owned()),
            },
            other => problems.push(format!(
                "unknown redis setting `{other}` (known settings: {})",
                PLAN_SETTINGS.join(", ")
            )),
        }
    }
    if problems.is_empty() {
        Ok(parsed)
    } else {
        Err(problems)
    }
}

/// Backslash-escapes the glob metacharacters Redis patterns know (`* ? [ ] \`).
fn glob_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The pattern matching every key (or channel) under `prefix`. The prefix is built
/// from the validated name prefix and hex, so it never contains a glob character; a
/// prefix that did would make SCAN and the ACL match other tenants' keys, so refuse.
fn prefix_pattern(prefix: &str) -> Result<String, BackendError> {
    let escaped = glob_escape(prefix);
    if escaped != prefix {
        return Err(BackendError::Failed(
            "Internal error: a generated Redis key prefix contains glob characters.".to_owned(),
        ));
    }
    Ok(format!("{escaped}*"))
}

/// The denials and re-allowances of every binding's user, after its grants.
const SHARED_RULES: &[&str] = &[
    // Server administration and everything Redis itself flags as dangerous:
    // CONFIG, ACL (bar WHOAMI, re-allowed below), DEBUG, SHUTDOWN, MONITOR, MODULE,
    // SAVE/BGSAVE, REPLICAOF, FAILOVER, SLOWLOG and LATENCY (they show other
    // tenants' commands), INFO, ROLE, CLIENT LIST/KILL/PAUSE/UNBLOCK, FLUSHALL and
    // FLUSHDB (they wipe every tenant's keys), KEYS (whole keyspace), SWAPDB,
    // MIGRATE and RESTORE (crafted payloads), SORT (re-allowed below).
    "-@admin",
    "-@dangerous",
    // Scripts and functions: the script cache and the function libraries are one
    // namespace for the whole server (SCRIPT FLUSH, FUNCTION LOAD/DELETE/FLUSH
    // would hit other tenants), a busy script blocks every tenant until it is
    // killed, and scripts may reach keys they did not declare.
    "-@scripting",
    // The same denials by name, so a category change in a future Redis version
    // cannot silently re-open them.
    "-flushall",
    "-flushdb",
    "-keys",
    "-config",
    "-debug",
    "-shutdown",
    "-monitor",
    "-module",
    "-migrate",
    "-swapdb",
    "-restore",
    "-eval",
    "-evalsha",
    "-eval_ro",
    "-evalsha_ro",
    "-script",
    "-function",
    "-fcall",
    "-fcall_ro",
    // Commands that take no key and would reveal other tenants' key names or their
    // number: SCAN (MATCH cannot be restricted by ACL), RANDOMKEY, DBSIZE.
    "-scan",
    "-randomkey",
    "-dbsize",
    // Tenants stay in database 0: deprovisioning only scans database 0, and the key
    // patterns apply in every database. SELECT, MOVE and COPY (its DB option) would
    // put keys where deprovisioning never looks.
    "-select",
    "-move",
    "-copy",
    // PUBSUB CHANNELS/NUMSUB/SHARDCHANNELS list every tenant's channels.
    "-pubsub",
    // MEMORY STATS/DOCTOR/MALLOC-STATS/PURGE describe the whole server; MEMORY
    // USAGE is per key and re-allowed below.
    "-memory",
    // CLUSTER GETKEYSINSLOT/COUNTKEYSINSLOT reveal keys; nothing here needs CLUSTER.
    "-cluster",
    // CLIENT: everything but the subcommands about the caller's own connection
    // (re-allowed below). TRACKING with REDIRECT/BCAST and REPLY are left out to
    // keep the surface small.
    "-client",
    // ACL: only WHOAMI (re-allowed below); the rest is @admin anyway.
    "-acl",
    // Re-allowed, each harmless to other tenants:
    "+client|id",
    "+client|getname",
    "+client|setname",
    "+client|info",
    "+acl|whoami",
    "+memory|usage",
    // SORT/SORT_RO are @dangerous only for their BY/GET patterns, which Redis 7
    // refuses to any user without access to all keys; plain SORT stays per key.
    "+sort_ro",
];

/// The command rules of a binding's user, applied after `nocommands`. Order matters:
/// grants first, then denials, then the few subcommands re-allowed.
fn command_rules(read_only: bool, allow_pubsub: bool) -> Vec<&'static str> {
    let mut rules: Vec<&'static str> = if read_only {
        // Reading commands, connection handling (AUTH, HELLO, PING, ...) and
        // MULTI/EXEC/WATCH; key permissions are `%R~` as well, so a write command that
        // slipped through would still be refused on its keys.
        vec!["+@read", "+@connection", "+@transaction"]
    } else {
        // Everything, minus the denials below. Commands only ever touch keys and
        // channels the user's patterns allow, so the denials only need to cover what
        // is not scoped by key or channel.
        vec!["+@all"]
    };
    rules.extend_from_slice(SHARED_RULES);
    if !read_only {
        rules.push("+sort");
    }
    if !allow_pubsub {
        rules.push("-@pubsub");
    } else if read_only {
        // A read-only binding may listen but not publish.
        rules.extend([
            "+subscribe",
            "+psubscribe",
            "+ssubscribe",
            "+unsubscribe",
            "+punsubscribe",
            "+sunsubscribe",
            "-publish",
            "-spublish",
        ]);
    }
    rules
}

/// Whether an error means the connection (not the command) failed.
fn is_connection_error(e: &RedisError) -> bool {
    e.is_io_error() || e.is_timeout() || e.is_connection_refusal() || e.is_connection_dropped()
}

/// Maps a driver error to a user-safe [`BackendError`]. `action` is a constant phrase
/// ("create the binding's user"); no server detail is copied into the message, since a
/// detail can echo a command's arguments (e.g. a password hash).
fn map_error(e: &RedisError, action: &str) -> BackendError {
    let code = e.code().unwrap_or("");
    tracing::warn!(kind = ?e.kind(), code, action, "redis backend command failed");
    if e.is_timeout() {
        return BackendError::Unavailable(format!("{UNREACHABLE} (timed out)"));
    }
    if e.is_connection_refusal() {
        return BackendError::Unavailable(format!("{UNREACHABLE} (connection refused)"));
    }
    if is_connection_error(e) {
        return BackendError::Unavailable(format!("{UNREACHABLE} (connection lost)"));
    }
    match code {
        "LOADING" | "BUSY" | "TRYAGAIN" | "MASTERDOWN" | "CLUSTERDOWN" | "READONLY" => {
            BackendError::Unavailable(format!(
                "The Redis server for this service is temporarily unable to serve requests ({code}); try again later."
            ))
        }
        "WRONGPASS" | "NOAUTH" => BackendError::Failed(format!(
            "The Redis server rejected bindery's admin login ({code}); the operator must fix bindery's Redis admin URL."
        )),
        "NOPERM" => BackendError::Failed(format!(
            "bindery's Redis admin user may not {action}; the operator must grant it the permissions the Redis backend needs."
        )),
        _ if e.kind() == ErrorKind::AuthenticationFailed => BackendError::Failed(
            "The Redis server rejected bindery's admin login; the operator must fix bindery's Redis admin URL."
                .to_owned(),
        ),
        "" => BackendError::Failed(format!(
            "Could not {action} on the Redis server: unexpected reply; contact the operator of this service."
        )),
        _ => BackendError::Failed(format!(
            "The Redis server refused to {action} ({code}); contact the operator of this service."
        )),
    }
}

/// Appends a binding user's channel and command rules to an `ACL SETUSER`.
fn push_permissions(cmd: &mut Cmd, names: &InstanceNames, read_only: bool, settings: PlanSettings) {
    if settings.allow_pubsub {
        cmd.arg(format!("&{}", names.pattern));
    }
    cmd.arg("nocommands");
    for rule in command_rules(read_only, settings.allow_pubsub) {
        cmd.arg(rule);
    }
}

/// A command from its words.
fn command(args: &[&str]) -> Cmd {
    let mut cmd = Cmd::new();
    for arg in args {
        cmd.arg(*arg);
    }
    cmd
}

/// Runs one command; `action` says in an error what the server was asked to do
/// ("list its ACL users (ACL USERS)").
async fn query<T: FromRedisValue>(
    conn: &mut MultiplexedConnection,
    args: &[&str],
    action: &str,
) -> Result<T, BackendError> {
    command(args)
        .query_async(conn)
        .await
        .map_err(|e| map_error(&e, action))
}

/// Reads one field of an `ACL GETUSER` reply as text (Redis 7 returns `keys` and
/// `channels` as strings, `flags` as an array).
fn field_text(fields: &HashMap<String, ::redis::Value>, name: &str) -> Vec<String> {
    match fields.get(name) {
        Some(value) => ::redis::from_redis_value_ref::<Vec<String>>(value)
            .or_else(|_| ::redis::from_redis_value_ref::<String>(value).map(|s| vec![s]))
            .unwrap_or_default(),
        None => Vec::new(),
    }
}

/// Names derived from one instance.
struct InstanceNames {
    /// `<name_prefix>:<h(instance)>:`, every key and channel of the instance.
    key_prefix: String,
    /// `<key_prefix>*`, checked to be glob-free.
    pattern: String,
    /// `<name_prefix>_<h(instance)[..12]>_`, the start of every user name.
    user_prefix: String,
}

impl RedisBackend {
    /// Builds the backend without connecting. Fails on an invalid configuration; the
    /// error never contains the admin URL.
    pub fn new(config: RedisBackendConfig) -> anyhow::Result<Self> {
        const SCHEMES: [&str; 1] = ["redis"];
        let (url, prefix) = config.check(SERVER, &SCHEMES)?;
        // Tenants are confined to database 0 and deprovisioning scans the admin
        // connection's database: both must be the same.
        if !matches!(url.path(), "" | "/" | "/0") {
            anyhow::bail!("the Redis admin URL must use database 0 (no path or /0)");
        }
        let admin_host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => anyhow::bail!("the Redis admin URL has no host"),
        };
        let client = Client::open(config.admin_url.expose_secret())
            .map_err(|_| common::invalid_admin_url(SERVER, &SCHEMES))?;
        let endpoint = config.endpoint(SERVER, Some(&admin_host), url.port().unwrap_or(6379))?;

        Ok(Self {
            client,
            connection: Mutex::new(None),
            server: SharedServer { endpoint, prefix },
            warned_default_user: AtomicBool::new(false),
            warned_no_aclfile: AtomicBool::new(false),
        })
    }

    /// The key prefix of an instance: `<name_prefix>:<h(instance)>:`. Bindings' keys and
    /// channels must start with it.
    pub fn key_prefix(&self, instance_id: &str) -> String {
        format!(
            "{}:{}:",
            self.server.prefix,
            id_hash(instance_id, ID_HASH_LEN)
        )
    }

    /// The ACL user name of a binding: `<name_prefix>_<h(instance)[..12]>_<h(binding)[..12]>`
    /// (Redis has no length limit on user names).
    pub fn user_name(&self, instance_id: &str, binding_id: &str) -> String {
        self.server.prefix.binding_user(instance_id, binding_id)
    }

    fn names(&self, instance_id: &str) -> Result<InstanceNames, BackendError> {
        let key_prefix = self.key_prefix(instance_id);
        let pattern = prefix_pattern(&key_prefix)?;
        Ok(InstanceNames {
            key_prefix,
            pattern,
            user_prefix: self.server.prefix.user_prefix(instance_id),
        })
    }

    /// The shared admin connection, connecting on first use and again after the
    /// previous connection broke.
    async fn admin(&self) -> Result<MultiplexedConnection, BackendError> {
        // The lock is never held across an await: concurrent calls must not queue
        // behind one slow connection attempt. Two racing reconnects are harmless; the
        // last one is kept.
        let cached = self.cached_connection().clone();
        if let Some(mut conn) = cached {
            // A cheap liveness check: after a server restart the cached connection is
            // dead, and failing the whole operation for that would be pointless.
            match Cmd::new()
                .arg("PING")
                .query_async::<String>(&mut conn)
                .await
            {
                Ok(_) => return Ok(conn),
                Err(e) if is_connection_error(&e) => *self.cached_connection() = None,
                Err(e) => return Err(map_error(&e, "answer PING")),
            }
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let conn = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| map_error(&e, "accept bindery's admin connection"))?;
        *self.cached_connection() = Some(conn.clone());
        Ok(conn)
    }

    fn cached_connection(&self) -> std::sync::MutexGuard<'_, Option<MultiplexedConnection>> {
        // A panic elsewhere cannot leave an Option half-written: ignore poisoning.
        self.connection
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Checks the server is one this backend can isolate tenants on, and warns the
    /// operator (once) about settings that undermine it.
    async fn check_server(&self, conn: &mut MultiplexedConnection) -> Result<(), BackendError> {
        let info: String = query(
            conn,
            &["INFO", "server"],
            "report its version (INFO server)",
        )
        .await?;
        let version = info
            .lines()
            .find_map(|line| line.trim().strip_prefix("redis_version:"))
            .unwrap_or("")
            .to_owned();
        let major: u32 = version
            .split('.')
            .next()
            .and_then(|m| m.parse().ok())
            .unwrap_or(0);
        if major < 7 {
            return Err(BackendError::Failed(format!(
                "The Redis server for this service runs version {version:?}; the redis backend needs Redis 7.0 or later. Contact the operator of this service."
            )));
        }
        if info.lines().any(|line| line.trim() == "redis_mode:cluster") {
            return Err(BackendError::Failed(
                "The Redis server for this service runs in cluster mode, which the redis backend does not support. Contact the operator of this service.".to_owned(),
            ));
        }

        if !self.warned_default_user.load(Ordering::Relaxed) {
            let fields: Option<HashMap<String, ::redis::Value>> = query(
                conn,
                &["ACL", "GETUSER", "default"],
                "describe its ACL users (ACL GETUSER)",
            )
            .await?;
            if let Some(fields) = fields {
                let flags = field_text(&fields, "flags");
                let open = flags.iter().any(|f| f == "on") && flags.iter().any(|f| f == "nopass");
                if open && !self.warned_default_user.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "the Redis server's `default` user is enabled without a password: any client \
                         that connects gets it, so tenants are NOT isolated; run \
                         `ACL SETUSER default off` (or give it a password) and make bindery's admin \
                         URL use another user"
                    );
                }
            }
        }
        Ok(())
    }

    /// Saves the ACLs to the server's ACL file when it has one, so bindings survive a
    /// server restart. Without an ACL file there is nothing bindery can do safely
    /// (CONFIG REWRITE would rewrite the operator's redis.conf): warn once.
    async fn persist_acl(&self, conn: &mut MultiplexedConnection) -> Result<(), BackendError> {
        let config: HashMap<String, String> = query(
            conn,
            &["CONFIG", "GET", "aclfile"],
            "report its ACL file (CONFIG GET aclfile)",
        )
        .await?;
        let has_file = config.get("aclfile").is_some_and(|f| !f.is_empty());
        if has_file {
            query::<()>(conn, &["ACL", "SAVE"], "save its ACL file (ACL SAVE)").await?;
        } else if !self.warned_no_aclfile.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "the Redis server has no `aclfile`: the ACL users bindery creates for bindings are \
                 lost when the server restarts; configure an aclfile"
            );
        }
        Ok(())
    }

    /// The users of an instance: names starting with its user prefix whose key
    /// permission is exactly the instance's pattern (guards against a 48-bit collision
    /// of user-name prefixes, or another broker's users on the same server). Returns
    /// `(name, read_only)`.
    async fn instance_users(
        &self,
        conn: &mut MultiplexedConnection,
        names: &InstanceNames,
    ) -> Result<Vec<(String, bool)>, BackendError> {
        let all: Vec<String> =
            query(conn, &["ACL", "USERS"], "list its ACL users (ACL USERS)").await?;
        let read_write = format!("~{}", names.pattern);
        let read_only = format!("%R~{}", names.pattern);
        let mut users = Vec::new();
        for name in all
            .into_iter()
            .filter(|n| n.starts_with(&names.user_prefix))
        {
            let fields: Option<HashMap<String, ::redis::Value>> = query(
                conn,
                &["ACL", "GETUSER", &name],
                "describe an ACL user (ACL GETUSER)",
            )
            .await?;
            // Deleted in the meantime: nothing to do.
            let Some(fields) = fields else { continue };
            let keys = field_text(&fields, "keys").join(" ");
            if keys == read_write {
                users.push((name, false));
            } else if keys == read_only {
                users.push((name, true));
            } else {
                tracing::warn!(user = %name, "redis: user has this instance's name prefix but another key pattern; left alone");
            }
        }
        Ok(users)
    }

    /// Disconnects a user's clients and deletes it; both steps succeed when the user
    /// does not exist.
    async fn delete_user(
        &self,
        conn: &mut MultiplexedConnection,
        user: &str,
    ) -> Result<(), BackendError> {
        // ACL DELUSER disconnects the user's clients too; killing them first makes that
        // explicit and does not depend on the server version.
        let killed = command(&["CLIENT", "KILL", "USER", user])
            .query_async::<i64>(conn)
            .await;
        if let Err(e) = killed {
            let missing = e.code() == Some("ERR")
                && e.detail().is_some_and(|d| d.starts_with("No such user"));
            if !missing {
                return Err(map_error(
                    &e,
                    "disconnect a binding's clients (CLIENT KILL)",
                ));
            }
        }
        query::<i64>(
            conn,
            &["ACL", "DELUSER", user],
            "delete a binding's user (ACL DELUSER)",
        )
        .await?;
        Ok(())
    }

    /// Replaces a user's command and channel rules (keeping its passwords and keys).
    async fn apply_rules(
        &self,
        conn: &mut MultiplexedConnection,
        user: &str,
        names: &InstanceNames,
        read_only: bool,
        settings: PlanSettings,
    ) -> Result<(), BackendError> {
        let mut cmd = command(&["ACL", "SETUSER", user, "resetchannels"]);
        push_permissions(&mut cmd, names, read_only, settings);
        cmd.query_async::<()>(conn)
            .await
            .map_err(|e| map_error(&e, "change a binding's permissions (ACL SETUSER)"))
    }
}

fn invalid_settings(problems: Vec<String>) -> BackendError {
    common::invalid_plan_settings("The plan's redis settings are invalid", problems)
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.server.debug_as("RedisBackend", f)
    }
}

#[async_trait]
impl ServiceBackend for RedisBackend {
    fn check_plan_settings(&self, settings: &Value) -> Vec<String> {
        check_plan_settings(settings)
    }

    /// Nothing to create: an instance is a key prefix. Checks that the server answers
    /// and can isolate tenants (Redis 7+, standalone).
    async fn provision(&self, instance: &InstanceSpec<'_>) -> Result<Facts, BackendError> {
        parse_settings(instance.plan_settings).map_err(invalid_settings)?;
        self.names(instance.instance_id)?;
        let mut conn = self.admin().await?;
        self.check_server(&mut conn).await.map(|()| None)
    }

    /// Only `allow_pubsub` can change: re-applies the command and channel rules of
    /// every user of the instance when it does.
    async fn update(&self, change: &UpdateSpec<'_>) -> Result<Facts, BackendError> {
        let target = parse_settings(change.target.plan_settings).map_err(invalid_settings)?;
        if parse_settings(change.previous_plan_settings).ok() == Some(target) {
            return Ok(None);
        }
        let names = self.names(change.target.instance_id)?;
        let mut conn = self.admin().await?;
        let users = self.instance_users(&mut conn, &names).await?;
        for (user, read_only) in &users {
            self.apply_rules(&mut conn, user, &names, *read_only, target)
                .await?;
        }
        if !users.is_empty() {
            self.persist_acl(&mut conn).await?;
        }
        Ok(None)
    }

    /// Deletes the instance's users (disconnecting their clients) and then every key
    /// under its prefix, SCAN + UNLINK in batches: with no user left, nothing can add
    /// keys while the scan runs.
    async fn deprovision(&self, instance: &InstanceSpec<'_>) -> Result<(), BackendError> {
        let names = self.names(instance.instance_id)?;
        let mut conn = self.admin().await?;
        let users = self.instance_users(&mut conn, &names).await?;
        for (user, _) in &users {
            self.delete_user(&mut conn, user).await?;
        }
        if !users.is_empty() {
            self.persist_acl(&mut conn).await?;
        }

        let mut cursor: u64 = 0;
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = Cmd::new()
                .arg("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(&names.pattern)
                .arg("COUNT")
                .arg(SCAN_BATCH)
                .query_async(&mut conn)
                .await
                .map_err(|e| map_error(&e, "list the instance's keys (SCAN)"))?;
            if !keys.is_empty() {
                Cmd::new()
                    .arg("UNLINK")
                    .arg(&keys)
                    .query_async::<i64>(&mut conn)
                    .await
                    .map_err(|e| map_error(&e, "delete the instance's keys (UNLINK)"))?;
            }
            if next == 0 {
                break;
            }
            cursor = next;
        }
        Ok(())
    }

    /// Creates (or, run again, resets) the binding's ACL user with a new password. The
    /// password is sent only as its SHA-256 (`#<hex>`), never in plain text.
    async fn bind(&self, binding: &BindingSpec<'_>) -> Result<Credentials, BackendError> {
        let settings = parse_settings(binding.instance.plan_settings).map_err(invalid_settings)?;
        let read_only = common::read_only_parameter(binding.parameters)?;
        let names = self.names(binding.instance.instance_id)?;
        let user = self.user_name(binding.instance.instance_id, binding.binding_id);
        let password = binding.password.expose_secret();
        let password_hash = hex::encode(Sha256::digest(password.as_bytes()));

        let mut cmd = Cmd::new();
        // `reset` drops any previous password, keys, channels and commands (and leaves
        // the user off), so a rerun converges on exactly these rules; ACL SETUSER applies
        // all rules or none. `resetchannels` again because `reset` grants all channels
        // when the server's acl-pubsub-default is allchannels.
        cmd.arg("ACL")
            .arg("SETUSER")
            .arg(&user)
            .arg("reset")
            .arg("resetchannels")
            .arg(format!("#{password_hash}"))
            .arg(if read_only {
                format!("%R~{}", names.pattern)
            } else {
                format!("~{}", names.pattern)
            });
        push_permissions(&mut cmd, &names, read_only, settings);
        cmd.arg("on");

        let mut conn = self.admin().await?;
        cmd.query_async::<()>(&mut conn)
            .await
            .map_err(|e| map_error(&e, "create the binding's user (ACL SETUSER)"))?;
        self.persist_acl(&mut conn).await?;

        let uri = self.server.endpoint.uri("redis", &user, password, None);
        Ok(self
            .server
            .endpoint
            .credentials("redis", uri)
            .with("username", user)
            .with("password", password)
            .with("key_prefix", names.key_prefix))
    }

    /// Disconnects the binding's clients and deletes its user. Other bindings of the
    /// instance are untouched.
    async fn unbind(&self, binding: &BindingSpec<'_>) -> Result<(), BackendError> {
        let user = self.user_name(binding.instance.instance_id, binding.binding_id);
        let mut conn = self.admin().await?;
        self.delete_user(&mut conn, &user).await?;
        self.persist_acl(&mut conn).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob_characters_are_escaped_and_refused() {
        assert_eq!(glob_escape(r"a*b?c[d]e\f"), r"a\*b\?c\[d\]e\\f");
        assert!(prefix_pattern("bindery:0123abcd:").is_ok());
        assert!(prefix_pattern("bindery:*:").is_err());
    }

    #[test]
    fn read_only_rules_grant_no_write_or_publish() {
        let rules = command_rules(true, true);
        assert!(!rules.contains(&"+@all"));
        assert!(!rules.contains(&"+sort"));
        assert!(rules.contains(&"-publish"));
        assert!(command_rules(false, false).contains(&"-@pubsub"));
    }
}
