//! The `mariadb` backend: databases as a service on a shared MariaDB server, one
//! database per service instance and one user per binding.
//!
//! Everything an instance owns is named after a hash of its id: the database
//! `<prefix>_<h(instance)>` and one user `<prefix>_<h(instance)[..12]>_<h(binding)[..12]>`
//! per binding (h = the first 20 hex digits of sha256). Names stay short: a user name
//! has at most 16 + 1 + 12 + 1 + 12 = 42 characters (MariaDB 10.11 allows 128, older
//! versions 80; MySQL 5.7's 32 would be too few) and a database name at most 37 (64
//! allowed, also with the `\_` escapes of a grant). Because names are derived, never
//! stored, every step can be rerun after a crash and finds what the previous run left,
//! and deprovisioning finds the users of an instance by their name prefix.
//!
//! Passwords never travel to the server: bindery computes the `mysql_native_password`
//! hash (`*` + hex of SHA1(SHA1(password))) itself and sends only that
//! (`IDENTIFIED BY PASSWORD '<hash>'`), with statement logging switched off. MariaDB
//! does not take bound parameters in account-management statements, so the few
//! literals they need (user names, hosts, hashes) go through `quote_literal` alone.
//!
//! The admin user needs CREATE USER, PROCESS (to see other users' connections),
//! CONNECTION ADMIN or SUPER (to kill them), SELECT on `mysql.user`, and ALL PRIVILEGES
//! WITH GRANT OPTION on the instance databases (globally, or on `` `<prefix>\_%`.* ``).
//! `root` has all of these.
//!
//! A known limit: views, triggers and routines created by a binding have that binding's
//! user as DEFINER and stop working (for `SQL SECURITY DEFINER` objects) once the
//! binding is deleted. Plain tables are shared by all bindings and never owned by one.

use std::collections::BTreeSet;
use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use sha1::{Digest, Sha1};
use sqlx::Executor;
use sqlx::mysql::{MySqlConnectOptions, MySqlDatabaseError, MySqlPool, MySqlPoolOptions};

use super::common::{self, ServerConfig, SharedServer, is_binding_user};
use super::{
    BackendError, BindingSpec, Credentials, Facts, InstanceSpec, ServiceBackend, UpdateSpec,
};

pub use super::common::DEFAULT_NAME_PREFIX;

/// How the server is named in errors.
const SERVER: &str = "MariaDB";

/// Character set of instance databases when the plan does not choose one.
pub const DEFAULT_CHARACTER_SET: &str = "utf8mb4";

/// Largest `max_user_connections` a plan may set (0 means unlimited).
pub const MAX_USER_CONNECTIONS_LIMIT: u64 = 100_000;

/// How long the admin pool waits for a connection before calling the server unreachable.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// How long an admin statement waits for a metadata lock (e.g. `DROP DATABASE` behind a
/// transaction of someone else) before giving up with a retryable error. The server's
/// default is a year, which would hang a worker.
const LOCK_WAIT_TIMEOUT_SECS: u32 = 30;

const PLAN_KEYS: [&str; 3] = ["max_user_connections", "character_set", "collation"];

/// The host part of every binding account: any client address.
const ANY_HOST: &str = "%";

/// MariaDB error numbers this backend reacts to.
mod er {
    pub const DBACCESS_DENIED: u16 = 1044;
    pub const ACCESS_DENIED: u16 = 1045;
    pub const CON_COUNT: u16 = 1040;
    pub const SERVER_SHUTDOWN: u16 = 1053;
    pub const NO_SUCH_THREAD: u16 = 1094;
    pub const TOO_MANY_USER_CONNECTIONS: u16 = 1203;
    pub const LOCK_WAIT_TIMEOUT: u16 = 1205;
    pub const LOCK_DEADLOCK: u16 = 1213;
    pub const USER_LIMIT_REACHED: u16 = 1226;
    pub const SPECIFIC_ACCESS_DENIED: u16 = 1227;
    pub const TABLEACCESS_DENIED: u16 = 1142;
    pub const UNKNOWN_CHARACTER_SET: u16 = 1115;
    pub const UNKNOWN_COLLATION: u16 = 1273;
    pub const COLLATION_CHARSET_MISMATCH: u16 = 1253;
    pub const CONNECTION_KILLED: u16 = 1927;
}

/// How to reach the shared MariaDB server and how to name what is created on it.
/// The admin URL is `mysql://` (`mariadb://` works too), e.g.
/// `mysql://root@127.0.0.1:3306`; see the module documentation for the privileges it
/// needs.
pub type MariaDbBackendConfig = ServerConfig;

/// The `mariadb` backend. Holds a small lazy pool of admin connections.
pub struct MariaDbBackend {
    pool: MySqlPool,
    server: SharedServer,
}

impl fmt::Debug for MariaDbBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.server.debug_as("MariaDbBackend", f)
    }
}

/// The settings of a plan, defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PlanSettings {
    max_user_connections: u64,
    character_set: String,
    collation: Option<String>,
}

/// A MariaDB account, `'user'@'host'`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Account {
    user: String,
    host: String,
}

impl Account {
    /// The account as SQL, or `Failed` if the host (read from `mysql.user`) cannot be
    /// quoted safely.
    fn sql(&self) -> Result<String, BackendError> {
        match (quote_literal(&self.user), quote_literal(&self.host)) {
            (Some(user), Some(host)) => Ok(format!("{user}@{host}")),
            _ => Err(BackendError::Failed(format!(
                "The MariaDB account {:?}@{:?} has a name bindery cannot quote safely; \
                 ask the server's administrator to remove it",
                self.user, self.host
            ))),
        }
    }
}

impl MariaDbBackend {
    /// Checks the configuration and prepares a lazy admin pool. Does not connect:
    /// bindery starts even while the server is down. Must be called inside a Tokio
    /// runtime (the pool starts its maintenance task).
    pub fn new(config: MariaDbBackendConfig) -> anyhow::Result<Self> {
        let (admin_options, prefix) =
            config.sqlx_options::<MySqlConnectOptions>(SERVER, &["mysql", "mariadb"])?;
        let admin_host =
            Some(admin_options.get_host()).filter(|_| admin_options.get_socket().is_none());
        let endpoint = config.endpoint(SERVER, admin_host, admin_options.get_port())?;

        let pool = MySqlPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(|conn, _meta| {
                Box::pin(async move {
                    conn.execute(
                        format!("SET SESSION lock_wait_timeout = {LOCK_WAIT_TIMEOUT_SECS}")
                            .as_str(),
                    )
                    .await
                    .map(drop)
                })
            })
            .connect_lazy_with(admin_options);
        Ok(Self {
            pool,
            server: SharedServer { endpoint, prefix },
        })
    }

    /// The database of an instance: `<prefix>_<h(instance)>`, 37 characters at most.
    fn database_name(&self, instance_id: &str) -> String {
        self.server.prefix.instance_name(instance_id)
    }

    /// What every binding user of an instance starts with: `<prefix>_<h(instance)[..12]>_`.
    fn user_prefix(&self, instance_id: &str) -> String {
        self.server.prefix.user_prefix(instance_id)
    }

    /// The user of a binding: the instance's user prefix and `h(binding)[..12]`.
    fn binding_user(&self, instance_id: &str, binding_id: &str) -> String {
        self.server.prefix.binding_user(instance_id, binding_id)
    }

    /// Runs one statement as text (account-management statements cannot be prepared
    /// with parameters in MariaDB). `sql` holds only generated names, validated plan
    /// settings and password hashes.
    async fn exec(&self, sql: &str, what: &str) -> Result<(), BackendError> {
        self.pool
            .execute(sql)
            .await
            .map(drop)
            .map_err(|e| classify(e, what))
    }

    /// Like [`Self::exec`] for statements carrying a password hash: a server message
    /// (a syntax error quotes the statement) is neither logged nor shown.
    async fn exec_with_hash(&self, sql: &str, what: &str) -> Result<(), BackendError> {
        self.pool
            .execute(sql)
            .await
            .map(drop)
            .map_err(|e| classify_as(e, what, false))
    }

    async fn database_exists(&self, database: &str) -> Result<bool, BackendError> {
        sqlx::query_scalar::<_, i64>(
            "SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = ?",
        )
        .bind(database)
        .fetch_one(&self.pool)
        .await
        .map(|n| n > 0)
        .map_err(|e| classify(e, "look up the instance database"))
    }

    /// Every account whose user name starts with `user_prefix` (binary comparison:
    /// `_` is not a wildcard here, unlike in `LIKE`).
    async fn accounts_with_prefix(&self, user_prefix: &str) -> Result<Vec<Account>, BackendError> {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT CAST(User AS CHAR), CAST(Host AS CHAR) FROM mysql.user
             WHERE LEFT(User, CHAR_LENGTH(?)) = ?",
        )
        .bind(user_prefix)
        .bind(user_prefix)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| classify(e, "list the users of the instance"))?;
        Ok(rows
            .into_iter()
            .map(|(user, host)| Account { user, host })
            .collect())
    }

    /// The hosts a binding account is created for. `%` alone is not always enough:
    /// MariaDB matches the most specific *host* first, so an anonymous account such as
    /// `''@'localhost'` (left by some installers) would shadow `'u'@'%'` for clients
    /// from that host, and their logins would fail with "access denied". An account
    /// `'u'@'localhost'` in turn beats `''@'localhost'`, so the binding gets one account
    /// per host of an anonymous account too, all with the same password and grants.
    /// (The local test server has no anonymous accounts; this keeps credentials working
    /// on servers that do.)
    async fn binding_hosts(&self) -> Result<BTreeSet<String>, BackendError> {
        let anonymous: Vec<String> =
            sqlx::query_scalar("SELECT CAST(Host AS CHAR) FROM mysql.user WHERE User = ''")
                .fetch_all(&self.pool)
                .await
                .map_err(|e| classify(e, "look up anonymous users"))?;
        let mut hosts: BTreeSet<String> = anonymous.into_iter().collect();
        hosts.insert(ANY_HOST.to_owned());
        Ok(hosts)
    }

    /// Kills every connection (other than this one) whose user is accepted by `keep`,
    /// among those whose user name starts with `user_prefix`.
    async fn kill_sessions(
        &self,
        user_prefix: &str,
        keep: impl Fn(&str) -> bool,
    ) -> Result<(), BackendError> {
        let sessions: Vec<(u64, String)> = sqlx::query_as(
            "SELECT CAST(ID AS UNSIGNED), CAST(USER AS CHAR) FROM information_schema.PROCESSLIST
             WHERE LEFT(USER, CHAR_LENGTH(?)) = ? AND ID <> CONNECTION_ID()",
        )
        .bind(user_prefix)
        .bind(user_prefix)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| classify(e, "list the connections of the instance's users"))?;
        for (id, user) in sessions {
            if !keep(&user) {
                continue;
            }
            // The id is a number from the server, not input.
            match self
                .pool
                .execute(format!("KILL CONNECTION {id}").as_str())
                .await
            {
                Ok(_) => tracing::info!(user, id, "killed a connection"),
                // It ended by itself in the meantime.
                Err(e) if error_number(&e) == Some(er::NO_SUCH_THREAD) => {}
                Err(e) => return Err(classify(e, "end a connection of a binding's user")),
            }
        }
        Ok(())
    }

    /// Drops the accounts, then ends their connections: in this order, no new
    /// connection can start between the two steps.
    async fn remove_users(
        &self,
        user_prefix: &str,
        accounts: &[Account],
        is_ours: impl Fn(&str) -> bool,
    ) -> Result<(), BackendError> {
        for account in accounts {
            self.exec(
                &format!("DROP USER IF EXISTS {}", account.sql()?),
                &format!("drop user {}", account.user),
            )
            .await?;
        }
        // Also after a crash between the drop and the kill, when no account is left.
        self.kill_sessions(user_prefix, is_ours).await
    }

    fn credentials(&self, database: &str, username: &str, password: &SecretString) -> Credentials {
        common::database_credentials(
            ["mysql", "mysql", "mariadb"],
            &self.server.endpoint,
            database,
            username,
            password,
        )
    }
}

#[async_trait]
impl ServiceBackend for MariaDbBackend {
    fn check_plan_settings(&self, settings: &Value) -> Vec<String> {
        check_plan_settings(settings)
    }

    fn parameter_bounds(&self, _settings: &Value) -> Vec<super::ParameterBound> {
        parameter_bounds()
    }

    async fn provision(&self, instance: &InstanceSpec<'_>) -> Result<Facts, BackendError> {
        let plan = plan_settings_or_error(instance.plan_settings)?;
        check_instance_parameters(instance.parameters)?;
        let database = self.database_name(instance.instance_id);
        // Character set and collation passed check_plan_settings: [a-z0-9_]+.
        let collate = plan
            .collation
            .as_ref()
            .map(|c| format!(" COLLATE {c}"))
            .unwrap_or_default();
        self.exec(
            &format!(
                "CREATE DATABASE IF NOT EXISTS {} CHARACTER SET {}{collate}",
                quote_ident(&database),
                plan.character_set
            ),
            "create the database",
        )
        .await?;
        tracing::info!(database, "provisioned");
        Ok(None)
    }

    async fn update(&self, change: &UpdateSpec<'_>) -> Result<Facts, BackendError> {
        let target = &change.target;
        let plan = plan_settings_or_error(target.plan_settings)?;
        check_instance_parameters(target.parameters)?;
        let database = self.database_name(target.instance_id);
        if !self.database_exists(&database).await? {
            return Err(missing_database());
        }
        // Only the connection limit follows the plan: the character set of an existing
        // database is left alone (changing it would not convert the tables anyway).
        let user_prefix = self.user_prefix(target.instance_id);
        for account in self.accounts_with_prefix(&user_prefix).await? {
            if !is_binding_user(&account.user, &user_prefix) {
                continue;
            }
            self.exec(
                &format!(
                    "ALTER USER {} WITH MAX_USER_CONNECTIONS {}",
                    account.sql()?,
                    plan.max_user_connections
                ),
                &format!("change the connection limit of user {}", account.user),
            )
            .await?;
        }
        tracing::info!(database, "updated");
        Ok(None)
    }

    async fn deprovision(&self, instance: &InstanceSpec<'_>) -> Result<(), BackendError> {
        let database = self.database_name(instance.instance_id);
        let user_prefix = self.user_prefix(instance.instance_id);
        let accounts: Vec<Account> = self
            .accounts_with_prefix(&user_prefix)
            .await?
            .into_iter()
            // Only names bindery generates: anything else is someone else's.
            .filter(|a| is_binding_user(&a.user, &user_prefix))
            .collect();
        self.remove_users(&user_prefix, &accounts, |user| {
            is_binding_user(user, &user_prefix)
        })
        .await?;
        // The users' transactions were rolled back by the kills, so their metadata
        // locks are gone; anyone else's make this wait (lock_wait_timeout), then retry.
        self.exec(
            &format!("DROP DATABASE IF EXISTS {}", quote_ident(&database)),
            "drop the database",
        )
        .await?;
        tracing::info!(database, "deprovisioned");
        Ok(())
    }

    async fn bind(&self, binding: &BindingSpec<'_>) -> Result<Credentials, BackendError> {
        let instance = &binding.instance;
        let plan = plan_settings_or_error(instance.plan_settings)?;
        let read_only = common::only_read_only_parameter(binding.parameters)?;
        let database = self.database_name(instance.instance_id);
        let user = self.binding_user(instance.instance_id, binding.binding_id);
        if !self.database_exists(&database).await? {
            return Err(missing_database());
        }

        let password = binding.password;
        let hash = quote_literal(&native_password_hash(password.expose_secret()))
            .expect("a password hash is '*' and hex digits");
        let limit = plan.max_user_connections;
        let privileges = if read_only {
            "SELECT, SHOW VIEW"
        } else {
            // ALL PRIVILEGES does not include GRANT OPTION.
            "ALL PRIVILEGES"
        };
        let on = grant_database_pattern(&database);
        for host in self.binding_hosts().await? {
            let account = Account {
                user: user.clone(),
                host,
            }
            .sql()?;
            // Created with the hash, so the account never exists without a password;
            // the ALTER resets the password (and limit) when a rerun finds it.
            self.exec_with_hash(
                &format!(
                    "CREATE USER IF NOT EXISTS {account} IDENTIFIED BY PASSWORD {hash} \
                     WITH MAX_USER_CONNECTIONS {limit}"
                ),
                "create the binding's user",
            )
            .await?;
            self.exec_with_hash(
                &format!(
                    "ALTER USER {account} IDENTIFIED BY PASSWORD {hash} \
                     WITH MAX_USER_CONNECTIONS {limit}"
                ),
                "set the password of the binding's user",
            )
            .await?;
            if read_only {
                // A rerun converges even if an earlier run granted more.
                self.exec(
                    &format!("REVOKE ALL PRIVILEGES, GRANT OPTION FROM {account}"),
                    "reset the privileges of the binding's user",
                )
                .await?;
            }
            self.exec(
                &format!("GRANT {privileges} ON {on}.* TO {account}"),
                "grant the binding's user access to the database",
            )
            .await?;
        }
        tracing::info!(database, user, read_only, "bound");
        Ok(self.credentials(&database, &user, password))
    }

    async fn unbind(&self, binding: &BindingSpec<'_>) -> Result<(), BackendError> {
        let user = self.binding_user(binding.instance.instance_id, binding.binding_id);
        let accounts: Vec<Account> = self
            .accounts_with_prefix(&user)
            .await?
            .into_iter()
            .filter(|a| a.user == user)
            .collect();
        // DROP USER leaves open connections running: remove_users kills them too.
        self.remove_users(&user, &accounts, |u| u == user).await?;
        tracing::info!(user, "unbound");
        Ok(())
    }
}

fn plan_settings_or_error(settings: &Value) -> Result<PlanSettings, BackendError> {
    parse_plan_settings(settings).map_err(|problems| {
        common::invalid_plan_settings("The plan's MariaDB settings are invalid", problems)
    })
}

/// Problems in a plan's `backend.settings`, one message each (unknown keys too).
///
/// Settings, all optional: `max_user_connections` (integer 0..=100000, default 0 =
/// unlimited), `character_set` (default `utf8mb4`) and `collation` (default: the
/// character set's), both matching `^[a-z0-9_]+$`.
pub fn check_plan_settings(settings: &Value) -> Vec<String> {
    common::problems(parse_plan_settings(settings))
}

fn parse_plan_settings(settings: &Value) -> Result<PlanSettings, Vec<String>> {
    let map = common::settings_map(settings, "the MariaDB plan settings must be a mapping")?;
    let mut problems = common::unknown_keys(map, &PLAN_KEYS, "MariaDB plan setting");
    let max_user_connections = match map.get("max_user_connections") {
        None => 0,
        Some(v) => match v.as_u64() {
            Some(n) if n <= MAX_USER_CONNECTIONS_LIMIT => n,
            _ => {
                problems.push(format!(
                    "max_user_connections must be an integer from 0 (unlimited) to \
                     {MAX_USER_CONNECTIONS_LIMIT}, not {v}"
                ));
                0
            }
        },
    };
    let mut name = |key: &str| match map.get(key) {
        None => None,
        Some(Value::String(s)) if is_valid_charset_name(s) => Some(s.clone()),
        Some(v) => {
            problems.push(format!(
                "{key} must be a name of lowercase letters, digits and underscores \
                 (at most 64), not {v}"
            ));
            None
        }
    };
    let character_set = name("character_set").unwrap_or_else(|| DEFAULT_CHARACTER_SET.to_owned());
    let collation = name("collation");
    if problems.is_empty() {
        Ok(PlanSettings {
            max_user_connections,
            character_set,
            collation,
        })
    } else {
        Err(problems)
    }
}

/// `^[a-z0-9_]+$`, at most 64 characters (MariaDB's identifier limit).
fn is_valid_charset_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// The MariaDB service takes no instance parameters, whatever the plan.
pub fn parameter_bounds() -> Vec<super::ParameterBound> {
    vec![super::ParameterBound::Only(Vec::new())]
}

/// This service takes no instance parameters: refuse any rather than ignore them.
fn check_instance_parameters(parameters: &Map<String, Value>) -> Result<(), BackendError> {
    match parameters.keys().next() {
        None => Ok(()),
        Some(key) => Err(BackendError::Failed(format!(
            "Unknown parameter {key:?}: this MariaDB service takes no instance parameters"
        ))),
    }
}

/// The one quoting helper for string literals: `'...'` with `'` doubled, which means
/// the same with and without `NO_BACKSLASH_ESCAPES`. A backslash does not (it escapes
/// only without that mode), so strings with one, or with control characters, are
/// refused rather than guessed at. Everything bindery generates passes.
fn quote_literal(s: &str) -> Option<String> {
    if s.chars().any(|c| c == '\\' || c.is_control()) {
        return None;
    }
    Some(format!("'{}'", s.replace('\'', "''")))
}

/// A backtick-quoted identifier, backticks doubled.
fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

/// The database part of `GRANT ... ON <db>.*`, where `_` and `%` are wildcards: they
/// are escaped, or a grant on `bindery_x` would also cover `binderyYx`.
fn grant_database_pattern(database: &str) -> String {
    let mut escaped = String::with_capacity(database.len() + 8);
    for c in database.chars() {
        if c == '_' || c == '%' {
            escaped.push('\\');
        }
        escaped.push(c);
    }
    quote_ident(&escaped)
}

/// The `mysql_native_password` hash MariaDB stores: `*` and the uppercase hex of
/// SHA1(SHA1(password)), what `PASSWORD('...')` returns.
fn native_password_hash(password: &str) -> String {
    let stage1 = Sha1::digest(password.as_bytes());
    let stage2 = Sha1::digest(stage1);
    format!("*{}", hex::encode_upper(stage2))
}

fn error_number(err: &sqlx::Error) -> Option<u16> {
    err.as_database_error()
        .and_then(|db| db.try_downcast_ref::<MySqlDatabaseError>())
        .map(MySqlDatabaseError::number)
}

fn unreachable(what: &str) -> BackendError {
    common::unreachable(SERVER, what)
}

fn missing_database() -> BackendError {
    common::missing_database(SERVER)
}

/// Sorts an sqlx error into "try again later" and "this will not work", with a
/// message fit for platform users. Details go to the log; neither carries a password
/// (statements only ever contain hashes, and the admin URL is never formatted).
fn classify(err: sqlx::Error, what: &str) -> BackendError {
    classify_as(err, what, true)
}

/// [`classify`]; with `show_message` false (statements carrying a password hash, which
/// a server message such as a syntax error may quote) the server's message is replaced
/// by its error number, in the log too.
fn classify_as(err: sqlx::Error, what: &str, show_message: bool) -> BackendError {
    common::classify_sqlx(SERVER, &err, what, |db| {
        let number = error_number(&err).unwrap_or(0);
        let message = if show_message {
            db.message().to_owned()
        } else {
            format!("MariaDB error {number}")
        };
        tracing::warn!(number, message, "MariaDB refused to {what}");
        refusal(number, what, &message)
    })
}

/// What MariaDB's refusal `number` means for the platform user.
fn refusal(number: u16, what: &str, message: &str) -> BackendError {
    match number {
        er::SERVER_SHUTDOWN | er::CONNECTION_KILLED => unreachable(what),
        er::CON_COUNT
        | er::TOO_MANY_USER_CONNECTIONS
        | er::USER_LIMIT_REACHED
        | er::LOCK_WAIT_TIMEOUT
        | er::LOCK_DEADLOCK => BackendError::Unavailable(format!(
            "The MariaDB server for this service is busy; try again later \
             (could not {what}: {message})"
        )),
        er::ACCESS_DENIED => BackendError::Failed(
            "The MariaDB server refused the broker's admin login; the broker's \
             operator must fix its MariaDB admin URL"
                .to_owned(),
        ),
        er::DBACCESS_DENIED | er::TABLEACCESS_DENIED | er::SPECIFIC_ACCESS_DENIED => {
            BackendError::Failed(format!(
                "The broker's MariaDB admin user lacks a privilege needed to {what}: {message}"
            ))
        }
        er::UNKNOWN_CHARACTER_SET | er::UNKNOWN_COLLATION | er::COLLATION_CHARSET_MISMATCH => {
            BackendError::Failed(format!(
                "The plan's character set or collation does not work on this MariaDB \
                 server: {message}"
            ))
        }
        _ => BackendError::Failed(format!("MariaDB refused to {what}: {message}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backends::common::params;
    use serde_json::json;

    #[test]
    fn native_password_hash_matches_mariadb() {
        // `SELECT PASSWORD('hunter2')` on MariaDB 10.11.
        assert_eq!(
            native_password_hash("hunter2"),
            "*58815970BE77B3720276F63DB198B1FA42E5CC02"
        );
    }

    #[test]
    fn quoting() {
        assert_eq!(quote_literal("a'b").unwrap(), "'a''b'");
        assert_eq!(quote_literal("%").unwrap(), "'%'");
        assert!(quote_literal("a\\'").is_none());
        assert!(quote_literal("a\0").is_none());
        assert!(quote_literal("a\n").is_none());
        assert_eq!(quote_ident("a`b"), "`a``b`");
        assert_eq!(grant_database_pattern("bd_0a%"), "`bd\\_0a\\%`");
    }

    #[tokio::test]
    async fn names_are_short_and_deterministic() {
        let backend = MariaDbBackend::new(MariaDbBackendConfig {
            name_prefix: "abcdefghijklmnop".to_owned(),
            ..MariaDbBackendConfig::new(SecretString::from("mysql://root@127.0.0.1:3306"))
        })
        .unwrap();
        let db = backend.database_name("i");
        assert_eq!(db, format!("abcdefghijklmnop_{}", common::id_hash("i", 20)));
        assert!(db.len() <= 64);
        let user = backend.binding_user("i", "b");
        assert_eq!(user.len(), 42);
        assert_eq!(user, backend.binding_user("i", "b"));
        let prefix = backend.user_prefix("i");
        assert!(is_binding_user(&user, &prefix));
        assert!(!is_binding_user(&user, &backend.user_prefix("j")));
        assert!(!is_binding_user(&format!("{prefix}0123456789ab_"), &prefix));
        assert!(!is_binding_user(&format!("{prefix}0123456789AB"), &prefix));
    }

    #[test]
    fn plan_settings_defaults_and_problems() {
        let plan = parse_plan_settings(&Value::Null).unwrap();
        assert_eq!(
            plan,
            PlanSettings {
                max_user_connections: 0,
                character_set: "utf8mb4".to_owned(),
                collation: None,
            }
        );
        let plan = parse_plan_settings(&json!({
            "max_user_connections": 100000, "character_set": "latin1", "collation": "latin1_bin"
        }))
        .unwrap();
        assert_eq!(plan.max_user_connections, 100_000);
        assert_eq!(plan.collation.as_deref(), Some("latin1_bin"));

        let problems = check_plan_settings(&json!({
            "maxuserconnections": 5,
            "max_user_connections": 100001,
            "character_set": "utf8mb4; DROP DATABASE mysql",
            "collation": 7,
        }));
        assert_eq!(problems.len(), 4, "{problems:#?}");
        assert!(problems[0].contains("maxuserconnections"));
        for bad in [
            json!({"max_user_connections": -1}),
            json!({"max_user_connections": 2.5}),
            json!({"max_user_connections": "5"}),
            json!({"character_set": "UTF8"}),
            json!({"character_set": ""}),
            json!({"collation": "x".repeat(65)}),
            json!([]),
        ] {
            assert_eq!(check_plan_settings(&bad).len(), 1, "{bad}");
        }
        assert!(check_plan_settings(&json!({})).is_empty());
    }

    #[test]
    fn parameters() {
        assert!(check_instance_parameters(&Map::new()).is_ok());
        assert!(check_instance_parameters(&params(json!({"x": 1}))).is_err());
    }

    #[tokio::test]
    async fn credentials_and_debug_never_leak() {
        let admin_url = SecretString::from("mysql://admin:s3cr3tpw@db.example:6543/mysql");
        let backend = MariaDbBackend::new(MariaDbBackendConfig {
            credentials_host: Some("::1".to_owned()),
            name_prefix: "bd".to_owned(),
            ..MariaDbBackendConfig::new(admin_url)
        })
        .unwrap();
        let debug = format!("{backend:?}");
        assert!(!debug.contains("s3cr3tpw"), "{debug}");
        let db = backend.database_name("i");
        let user = backend.binding_user("i", "b");
        let password = SecretString::from("p w".to_owned());
        let creds = backend.credentials(&db, &user, &password);
        assert_eq!(
            creds.0["uri"],
            format!("mysql://{user}:p%20w@[::1]:6543/{db}")
        );
        assert_eq!(
            creds.0["jdbc_url"],
            format!("jdbc:mariadb://[::1]:6543/{db}?user={user}&password=p%20w")
        );
        assert_eq!(creds.0["host"], "::1");
        assert_eq!(creds.0["port"], "6543");
        assert_eq!(creds.0["database"], db);
        assert_eq!(creds.0["username"], user);
        assert_eq!(creds.0["password"], "p w");
        assert!(!format!("{creds:?}").contains("p w"));

        for url in [
            "postgres://admin:s3cr3tpw@x/y",
            "mysql://admin:s3cr3tpw@x:port/y",
            "not a url s3cr3tpw",
        ] {
            let err = MariaDbBackend::new(MariaDbBackendConfig::new(SecretString::from(url)))
                .unwrap_err();
            assert!(!format!("{err:#}").contains("s3cr3tpw"), "{err:#}");
        }
        let mut config = MariaDbBackendConfig::new(SecretString::from("mysql://x/y"));
        config.name_prefix = "Bad-Prefix".to_owned();
        assert!(MariaDbBackend::new(config).is_err());
        let config = MariaDbBackendConfig::new(SecretString::from("mysql://h:1/y?socket=/tmp/s"));
        assert!(MariaDbBackend::new(config.clone()).is_err());
        assert!(format!("{config:?}").contains("REDACTED"));
        let backend = MariaDbBackend::new(MariaDbBackendConfig {
            credentials_host: Some("db.internal".to_owned()),
            credentials_port: Some(3307),
            ..config
        })
        .unwrap();
        let creds = backend.credentials("d", "u", &password);
        assert_eq!(creds.0["uri"], "mysql://u:p%20w@db.internal:3307/d");
    }
}
