//! Configuration: defaults, then an optional YAML file, then environment variables.
//!
//! Every environment variable is listed once in [`ENVIRONMENT`], with the setting it
//! fills; each secret also has a `<NAME>_FILE` form that reads the value from a file
//! (a mounted Kubernetes Secret). Secrets are `SecretString`s, so `Debug` never shows
//! them, and nothing here prints a value.

mod accepted;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, bail};
use secrecy::SecretString;
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::backends::common::{DEFAULT_NAME_PREFIX, ServerConfig};
use crate::backends::rabbitmq::RabbitmqBackendConfig;

/// One environment variable: its name, the setting it fills (dotted path), whether it
/// is a secret (then `<NAME>_FILE` works too), and what it means.
#[derive(Debug, Clone, Copy)]
pub struct EnvVar {
    /// Variable name.
    pub name: &'static str,
    /// Dotted path of the setting in the YAML file.
    pub path: &'static str,
    /// True for secrets.
    pub secret: bool,
    /// Value type, for parsing.
    pub kind: EnvKind,
    /// One-line meaning.
    pub help: &'static str,
}

/// How an environment value is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnvKind {
    /// Taken as is.
    Text,
    /// A whole number.
    Number,
}

/// Every environment variable bindery reads.
pub const ENVIRONMENT: &[EnvVar] = &[
    EnvVar {
        name: "DATABASE_URL",
        path: "database_url",
        secret: true,
        kind: EnvKind::Text,
        help: "bindery's own state store: postgres://… (created if missing; production, several replicas) or sqlite://PATH; unset: a SQLite file in BINDERY_DATA_DIR",
    },
    EnvVar {
        name: "BINDERY_DATA_DIR",
        path: "data_dir",
        secret: false,
        kind: EnvKind::Text,
        help: "directory of bindery's own files: the SQLite state store (bindery.db) when DATABASE_URL is unset",
    },
    EnvVar {
        name: "BINDERY_LISTEN",
        path: "listen",
        secret: false,
        kind: EnvKind::Text,
        help: "address:port the OSB API listens on",
    },
    EnvVar {
        name: "BINDERY_TLS_CERT_FILE",
        path: "tls.cert_file",
        secret: false,
        kind: EnvKind::Text,
        help: "PEM certificate chain; with BINDERY_TLS_KEY_FILE the API is served over TLS (reloaded on change or SIGHUP)",
    },
    EnvVar {
        name: "BINDERY_TLS_KEY_FILE",
        path: "tls.key_file",
        secret: false,
        kind: EnvKind::Text,
        help: "PEM private key of the certificate",
    },
    EnvVar {
        name: "BINDERY_METRICS_LISTEN",
        path: "metrics_listen",
        secret: false,
        kind: EnvKind::Text,
        help: "address:port of a separate listener for /metrics; unset = /metrics on the API listener",
    },
    EnvVar {
        name: "BINDERY_CATALOG",
        path: "catalog",
        secret: false,
        kind: EnvKind::Text,
        help: "path of catalog.yaml",
    },
    EnvVar {
        name: "BINDERY_USERNAME",
        path: "auth.username",
        secret: false,
        kind: EnvKind::Text,
        help: "basic-auth user name platforms use",
    },
    EnvVar {
        name: "BINDERY_PASSWORD",
        path: "auth.password",
        secret: true,
        kind: EnvKind::Text,
        help: "basic-auth password platforms use",
    },
    EnvVar {
        name: "BINDERY_EXTRA_USERS",
        path: "auth.extra_users",
        secret: true,
        kind: EnvKind::Text,
        help: "more basic-auth users, user:password[,user:password...], e.g. the next credentials during a rotation",
    },
    EnvVar {
        name: "BINDERY_BEARER_TOKENS",
        path: "auth.bearer_tokens",
        secret: true,
        kind: EnvKind::Text,
        help: "bearer tokens accepted instead of basic auth, token[,token...]",
    },
    EnvVar {
        name: "BINDERY_MIN_API_VERSION",
        path: "min_api_version",
        secret: false,
        kind: EnvKind::Text,
        help: "lowest X-Broker-API-Version accepted (2.13 or later)",
    },
    EnvVar {
        name: "BINDERY_ENCRYPTION_KEYS",
        path: "encryption_keys",
        secret: true,
        kind: EnvKind::Text,
        help: "label:base64key[,label:base64key...]; the first key encrypts, all decrypt",
    },
    EnvVar {
        name: "BINDERY_MAX_BODY_BYTES",
        path: "max_body_bytes",
        secret: false,
        kind: EnvKind::Number,
        help: "largest request body accepted (413 above)",
    },
    EnvVar {
        name: "BINDERY_MAX_HEADER_BYTES",
        path: "max_header_bytes",
        secret: false,
        kind: EnvKind::Number,
        help: "largest total size of request headers (431 above)",
    },
    EnvVar {
        name: "BINDERY_REQUEST_TIMEOUT_SECONDS",
        path: "request_timeout_seconds",
        secret: false,
        kind: EnvKind::Number,
        help: "longest a request may take before it is answered 503",
    },
    EnvVar {
        name: "BINDERY_MAX_CONCURRENT_REQUESTS",
        path: "max_concurrent_requests",
        secret: false,
        kind: EnvKind::Number,
        help: "requests handled at once; more are answered 503 at once",
    },
    EnvVar {
        name: "BINDERY_HEADER_READ_TIMEOUT_SECONDS",
        path: "header_read_timeout_seconds",
        secret: false,
        kind: EnvKind::Number,
        help: "longest a request head may take to arrive (from the connection's start for its first request); also the grace a body gets",
    },
    EnvVar {
        name: "BINDERY_IDLE_TIMEOUT_SECONDS",
        path: "idle_timeout_seconds",
        secret: false,
        kind: EnvKind::Number,
        help: "longest a kept-alive connection may sit idle between requests",
    },
    EnvVar {
        name: "BINDERY_MIN_BODY_BYTES_PER_SECOND",
        path: "min_body_bytes_per_second",
        secret: false,
        kind: EnvKind::Number,
        help: "slowest average pace of a request body after the grace (408 below)",
    },
    EnvVar {
        name: "BINDERY_LOG",
        path: "log.filter",
        secret: false,
        kind: EnvKind::Text,
        help: "log filter, e.g. info or bindery=debug",
    },
    EnvVar {
        name: "BINDERY_LOG_FORMAT",
        path: "log.format",
        secret: false,
        kind: EnvKind::Text,
        help: "text or json",
    },
    EnvVar {
        name: "BINDERY_DATABASE_MAX_CONNECTIONS",
        path: "database_max_connections",
        secret: false,
        kind: EnvKind::Number,
        help: "size of the state database pool",
    },
    EnvVar {
        name: "BINDERY_WORKER_CONCURRENCY",
        path: "worker.concurrency",
        secret: false,
        kind: EnvKind::Number,
        help: "operations run at once by this process",
    },
    EnvVar {
        name: "BINDERY_LEASE_SECONDS",
        path: "worker.lease_seconds",
        secret: false,
        kind: EnvKind::Number,
        help: "operation lease; another replica takes over after it expires",
    },
    EnvVar {
        name: "BINDERY_WORKER_LIVENESS_SECONDS",
        path: "worker.liveness_seconds",
        secret: false,
        kind: EnvKind::Number,
        help: "a process that has not shown signs of life for this long is taken for dead, and its operations are taken over before their leases expire",
    },
    EnvVar {
        name: "BINDERY_SHUTDOWN_GRACE_SECONDS",
        path: "worker.shutdown_grace_seconds",
        secret: false,
        kind: EnvKind::Number,
        help: "time running operations get to finish on SIGTERM",
    },
    EnvVar {
        name: "BINDERY_POSTGRES_ADMIN_URL",
        path: "backends.postgresql.admin_url",
        secret: true,
        kind: EnvKind::Text,
        help: "admin connection of the PostgreSQL server that hosts instances; unset = postgresql plans not served",
    },
    EnvVar {
        name: "BINDERY_POSTGRES_CREDENTIALS_HOST",
        path: "backends.postgresql.credentials_host",
        secret: false,
        kind: EnvKind::Text,
        help: "host written into PostgreSQL credentials (default: the admin URL's host)",
    },
    EnvVar {
        name: "BINDERY_POSTGRES_CREDENTIALS_PORT",
        path: "backends.postgresql.credentials_port",
        secret: false,
        kind: EnvKind::Number,
        help: "port written into PostgreSQL credentials (default: the admin URL's port)",
    },
    EnvVar {
        name: "BINDERY_POSTGRES_NAME_PREFIX",
        path: "backends.postgresql.name_prefix",
        secret: false,
        kind: EnvKind::Text,
        help: "prefix of generated database and role names",
    },
    EnvVar {
        name: "BINDERY_MARIADB_ADMIN_URL",
        path: "backends.mariadb.admin_url",
        secret: true,
        kind: EnvKind::Text,
        help: "admin connection (mysql://user:password@host:port) of the MariaDB server that hosts instances; unset = mariadb plans not served",
    },
    EnvVar {
        name: "BINDERY_MARIADB_CREDENTIALS_HOST",
        path: "backends.mariadb.credentials_host",
        secret: false,
        kind: EnvKind::Text,
        help: "host written into MariaDB credentials (default: the admin URL's host)",
    },
    EnvVar {
        name: "BINDERY_MARIADB_CREDENTIALS_PORT",
        path: "backends.mariadb.credentials_port",
        secret: false,
        kind: EnvKind::Number,
        help: "port written into MariaDB credentials (default: the admin URL's port)",
    },
    EnvVar {
        name: "BINDERY_MARIADB_NAME_PREFIX",
        path: "backends.mariadb.name_prefix",
        secret: false,
        kind: EnvKind::Text,
        help: "prefix of generated database and user names",
    },
    EnvVar {
        name: "BINDERY_RABBITMQ_API_URL",
        path: "backends.rabbitmq.api_url",
        secret: false,
        kind: EnvKind::Text,
        help: "management API of the RabbitMQ server that hosts instances, e.g. http://127.0.0.1:15672; unset = rabbitmq plans not served",
    },
    EnvVar {
        name: "BINDERY_RABBITMQ_ADMIN_USERNAME",
        path: "backends.rabbitmq.admin_username",
        secret: false,
        kind: EnvKind::Text,
        help: "a RabbitMQ user with the administrator tag",
    },
    EnvVar {
        name: "BINDERY_RABBITMQ_ADMIN_PASSWORD",
        path: "backends.rabbitmq.admin_password",
        secret: true,
        kind: EnvKind::Text,
        help: "that user's password",
    },
    EnvVar {
        name: "BINDERY_RABBITMQ_AMQP_HOST",
        path: "backends.rabbitmq.amqp_host",
        secret: false,
        kind: EnvKind::Text,
        help: "AMQP host written into credentials (default: the API URL's host)",
    },
    EnvVar {
        name: "BINDERY_RABBITMQ_AMQP_PORT",
        path: "backends.rabbitmq.amqp_port",
        secret: false,
        kind: EnvKind::Number,
        help: "AMQP port written into credentials (default 5672)",
    },
    EnvVar {
        name: "BINDERY_RABBITMQ_NAME_PREFIX",
        path: "backends.rabbitmq.name_prefix",
        secret: false,
        kind: EnvKind::Text,
        help: "prefix of generated vhost and user names",
    },
    EnvVar {
        name: "BINDERY_REDIS_ADMIN_URL",
        path: "backends.redis.admin_url",
        secret: true,
        kind: EnvKind::Text,
        help: "admin connection (redis://user:password@host:port) of the Redis server that hosts instances; unset = redis plans not served",
    },
    EnvVar {
        name: "BINDERY_REDIS_CREDENTIALS_HOST",
        path: "backends.redis.credentials_host",
        secret: false,
        kind: EnvKind::Text,
        help: "host written into Redis credentials (default: the admin URL's host)",
    },
    EnvVar {
        name: "BINDERY_REDIS_CREDENTIALS_PORT",
        path: "backends.redis.credentials_port",
        secret: false,
        kind: EnvKind::Number,
        help: "port written into Redis credentials (default: the admin URL's port)",
    },
    EnvVar {
        name: "BINDERY_REDIS_NAME_PREFIX",
        path: "backends.redis.name_prefix",
        secret: false,
        kind: EnvKind::Text,
        help: "prefix of generated key prefixes and ACL user names",
    },
];

/// All settings.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where the OSB API listens.
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// bindery's own state store; unset: the SQLite file in `data_dir`.
    #[serde(default)]
    pub database_url: Option<SecretString>,
    /// Directory of bindery's own files (the default SQLite store).
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Pool size for bindery's database.
    #[serde(default = "default_pool")]
    pub database_max_connections: u32,
    /// TLS on the listener.
    #[serde(default)]
    pub tls: TlsSettings,
    /// A separate listener for `/metrics` (kept off the API port, e.g. not exposed by
    /// the Service). Unset: `/metrics` is on the API listener.
    #[serde(default)]
    pub metrics_listen: Option<SocketAddr>,
    /// Path of catalog.yaml.
    #[serde(default = "default_catalog")]
    pub catalog: PathBuf,
    /// Basic-auth credentials platforms must send.
    #[serde(default)]
    pub auth: AuthSettings,
    /// Lowest API version accepted.
    #[serde(default = "default_min_version")]
    pub min_api_version: String,
    /// Keys that encrypt credentials at rest (`label:base64,...`).
    #[serde(default)]
    pub encryption_keys: Option<SecretString>,
    /// Largest request body.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Largest total size of request headers.
    #[serde(default = "default_max_headers")]
    pub max_header_bytes: usize,
    /// Longest a request may take, in seconds.
    #[serde(default = "default_request_timeout")]
    pub request_timeout_seconds: u64,
    /// Requests handled at once.
    #[serde(default = "default_max_concurrent")]
    pub max_concurrent_requests: usize,
    /// Longest a request head may take to arrive, in seconds.
    #[serde(default = "default_header_read_timeout")]
    pub header_read_timeout_seconds: u64,
    /// Longest a kept-alive connection may sit idle, in seconds.
    #[serde(default = "default_idle_timeout")]
    pub idle_timeout_seconds: u64,
    /// Slowest average pace of a request body, in bytes per second.
    #[serde(default = "default_min_body_rate")]
    pub min_body_bytes_per_second: u64,
    /// Logging.
    #[serde(default)]
    pub log: LogSettings,
    /// The operation worker.
    #[serde(default)]
    pub worker: WorkerSettings,
    /// Managed servers.
    #[serde(default)]
    pub backends: BackendSettings,
}

/// TLS on the listener: both files, or neither (plain HTTP).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain.
    pub cert_file: Option<PathBuf>,
    /// PEM private key.
    pub key_file: Option<PathBuf>,
}

/// Platform authentication.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// User name.
    pub username: Option<String>,
    /// Password.
    pub password: Option<SecretString>,
    /// More users, `user:password,user:password`.
    pub extra_users: Option<SecretString>,
    /// Bearer tokens, comma-separated.
    pub bearer_tokens: Option<SecretString>,
}

/// Logging.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// `tracing` filter directive.
    #[serde(default = "default_log_filter")]
    pub filter: String,
    /// `text` or `json`.
    #[serde(default = "default_log_format")]
    pub format: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            filter: default_log_filter(),
            format: default_log_format(),
        }
    }
}

/// The operation worker.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkerSettings {
    /// Operations at once.
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// Lease length in seconds.
    #[serde(default = "default_lease")]
    pub lease_seconds: u64,
    /// How long a process's promise to be alive lasts (it renews it four times as
    /// often); after that its leases are taken over.
    #[serde(default = "default_liveness")]
    pub liveness_seconds: u64,
    /// Shutdown grace in seconds.
    #[serde(default = "default_grace")]
    pub shutdown_grace_seconds: u64,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            concurrency: default_concurrency(),
            lease_seconds: default_lease(),
            liveness_seconds: default_liveness(),
            shutdown_grace_seconds: default_grace(),
        }
    }
}

/// Connection settings of managed servers, one section per backend kind.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendSettings {
    /// The PostgreSQL server that hosts `postgresql` instances.
    pub postgresql: Option<ServerSettings>,
    /// The RabbitMQ server that hosts `rabbitmq` instances.
    pub rabbitmq: Option<RabbitmqSettings>,
    /// The Redis server that hosts `redis` instances.
    pub redis: Option<ServerSettings>,
    /// The MariaDB server that hosts `mariadb` instances.
    pub mariadb: Option<ServerSettings>,
}

/// A backend reached through one admin URL (PostgreSQL, MariaDB, Redis).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Admin connection URL; the backend is served only when this is set.
    pub admin_url: Option<SecretString>,
    /// Host written into credentials.
    pub credentials_host: Option<String>,
    /// Port written into credentials.
    pub credentials_port: Option<u16>,
    /// Prefix of generated names.
    pub name_prefix: Option<String>,
}

impl ServerSettings {
    /// The backend's configuration, or `None` (the kind is then not served) when no
    /// admin URL is set.
    pub fn backend_config(&self) -> Option<ServerConfig> {
        Some(ServerConfig {
            credentials_host: self.credentials_host.clone(),
            credentials_port: self.credentials_port,
            name_prefix: name_prefix(&self.name_prefix),
            ..ServerConfig::new(self.admin_url.clone()?)
        })
    }
}

/// The RabbitMQ backend.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RabbitmqSettings {
    /// Management API base URL; the backend is served only when this is set.
    pub api_url: Option<String>,
    /// Administrator user name (default `guest`).
    pub admin_username: Option<String>,
    /// Administrator password (default `guest`).
    pub admin_password: Option<SecretString>,
    /// AMQP host written into credentials.
    pub amqp_host: Option<String>,
    /// AMQP port written into credentials.
    pub amqp_port: Option<u16>,
    /// Prefix of generated names.
    pub name_prefix: Option<String>,
}

impl RabbitmqSettings {
    /// The backend's configuration, or `None` (the kind is then not served) when no
    /// management API URL is set. The admin user defaults to RabbitMQ's `guest`.
    pub fn backend_config(&self) -> Option<RabbitmqBackendConfig> {
        Some(RabbitmqBackendConfig {
            api_url: self.api_url.clone()?,
            admin_username: self
                .admin_username
                .clone()
                .unwrap_or_else(|| "guest".to_owned()),
            admin_password: self
                .admin_password
                .clone()
                .unwrap_or_else(|| SecretString::from("guest")),
            amqp_host: self.amqp_host.clone(),
            amqp_port: self.amqp_port,
            name_prefix: name_prefix(&self.name_prefix),
        })
    }
}

fn name_prefix(configured: &Option<String>) -> String {
    configured
        .clone()
        .unwrap_or_else(|| DEFAULT_NAME_PREFIX.to_owned())
}

fn default_listen() -> SocketAddr {
    "0.0.0.0:8080".parse().expect("valid default")
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./data")
}
fn default_pool() -> u32 {
    16
}
fn default_catalog() -> PathBuf {
    PathBuf::from("./catalog.yaml")
}
fn default_min_version() -> String {
    "2.13".to_owned()
}
fn default_max_body() -> usize {
    256 * 1024
}
fn default_max_headers() -> usize {
    16 * 1024
}
fn default_request_timeout() -> u64 {
    // Platforms time out at 60 s; answer before they give up.
    55
}
fn default_max_concurrent() -> usize {
    1024
}
fn default_header_read_timeout() -> u64 {
    // A platform sends its head in one write; 10 s covers a congested network.
    10
}
fn default_idle_timeout() -> u64 {
    // Longer than the idle timeout of common clients (Go's transport: 90 s), so that the
    // client closes an idle connection, not the server while a request is on its way.
    120
}
fn default_min_body_rate() -> u64 {
    // OSB bodies are a few KiB: any working client is orders of magnitude faster.
    1024
}
fn default_log_filter() -> String {
    "info".to_owned()
}
fn default_log_format() -> String {
    "text".to_owned()
}
fn default_concurrency() -> usize {
    // Operations mostly wait on managed servers; 16 at once per replica keeps a burst
    // moving (docs/benchmarks.md) and bounds what the managed servers see.
    16
}
fn default_lease() -> u64 {
    30
}
fn default_liveness() -> u64 {
    // A third of the default lease: a killed replica's operations are taken over in
    // about ten seconds, while a replica starved of CPU for a few seconds keeps them.
    10
}
fn default_grace() -> u64 {
    20
}

impl Settings {
    /// Loads settings from an optional YAML file and the process environment.
    pub fn load(file: Option<&Path>) -> anyhow::Result<Self> {
        Self::load_from(file, |name| std::env::var(name).ok())
    }

    /// Loads settings with `env` as the environment (tests pass a map).
    pub fn load_from(
        file: Option<&Path>,
        env: impl Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Self> {
        let mut document = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| {
                    format!("cannot read configuration file {}", path.display())
                })?;
                let value: Value = serde_yaml::from_str(&text).with_context(|| {
                    format!("configuration file {} is not valid YAML", path.display())
                })?;
                match value {
                    Value::Object(map) => map,
                    Value::Null => Map::new(),
                    _ => bail!("configuration file {} must be a mapping", path.display()),
                }
            }
            None => Map::new(),
        };
        for var in ENVIRONMENT {
            let value = match env(var.name) {
                Some(v) => Some(v),
                None if var.secret => match env(&format!("{}_FILE", var.name)) {
                    Some(path) => Some(
                        std::fs::read_to_string(&path)
                            .with_context(|| format!("{}_FILE: cannot read {path}", var.name))?
                            .trim_end_matches(['\n', '\r'])
                            .to_owned(),
                    ),
                    None => None,
                },
                None => None,
            };
            let Some(value) = value else { continue };
            let value = match var.kind {
                EnvKind::Text => Value::String(value),
                EnvKind::Number => match value.trim().parse::<u64>() {
                    Ok(n) => Value::Number(n.into()),
                    Err(_) => bail!(accepted::refusal(var.path)),
                },
            };
            set_path(&mut document, var.path, value);
        }
        accepted::check_bounds(&document).map_err(anyhow::Error::msg)?;
        // The path of a value that does not parse names the setting; the parser's own
        // message ("invalid socket address syntax") would not, and could quote a secret.
        let settings: Settings = serde_path_to_error::deserialize(Value::Object(document))
            .map_err(|e| match e.path().to_string().as_str() {
                "." | "" => anyhow::anyhow!("invalid configuration: {}", e.inner()),
                path => anyhow::anyhow!(accepted::refusal(path)),
            })?;
        settings.check()?;
        Ok(settings)
    }

    /// The state store's URL: `DATABASE_URL`, or the SQLite file in the data directory.
    pub fn store_url(&self) -> SecretString {
        match &self.database_url {
            Some(url) => url.clone(),
            None => SecretString::from(format!(
                "sqlite://{}",
                self.data_dir.join("bindery.db").display()
            )),
        }
    }

    fn check(&self) -> anyhow::Result<()> {
        if !matches!(self.log.format.as_str(), "text" | "json") {
            bail!(accepted::refusal("log.format"));
        }
        // A filter that does not parse would silently fall back to `info`.
        if tracing_subscriber::EnvFilter::try_new(&self.log.filter).is_err() {
            bail!(accepted::refusal("log.filter"));
        }
        accepted::check_min_api_version(&self.min_api_version).map_err(anyhow::Error::msg)?;
        if self.tls.cert_file.is_some() != self.tls.key_file.is_some() {
            bail!("set both BINDERY_TLS_CERT_FILE and BINDERY_TLS_KEY_FILE, or neither");
        }
        Ok(())
    }
}

fn set_path(document: &mut Map<String, Value>, path: &str, value: Value) {
    let mut parts = path.split('.').peekable();
    let mut current = document;
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            current.insert(part.to_owned(), value);
            return;
        }
        let entry = current
            .entry(part.to_owned())
            .or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        current = entry.as_object_mut().expect("just made an object");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::collections::HashMap;

    fn load(env: &[(&str, &str)]) -> anyhow::Result<Settings> {
        let env: HashMap<String, String> = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load_from(None, |n| env.get(n).cloned())
    }

    #[test]
    fn defaults_need_no_configuration() {
        let s = load(&[]).unwrap();
        assert_eq!(s.listen.port(), 8080);
        assert_eq!(s.catalog, PathBuf::from("./catalog.yaml"));
        assert!(s.backends.postgresql.is_none());
    }

    #[test]
    fn environment_fills_nested_settings() {
        let s = load(&[
            ("BINDERY_LISTEN", "127.0.0.1:9000"),
            ("BINDERY_USERNAME", "admin"),
            ("BINDERY_PASSWORD", "s3cret"),
            ("BINDERY_WORKER_CONCURRENCY", "3"),
            ("BINDERY_POSTGRES_ADMIN_URL", "postgres://x@h/postgres"),
        ])
        .unwrap();
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.auth.username.as_deref(), Some("admin"));
        assert_eq!(s.auth.password.as_ref().unwrap().expose_secret(), "s3cret");
        assert_eq!(s.worker.concurrency, 3);
        assert!(s.backends.postgresql.is_some());
    }

    #[test]
    fn secrets_never_appear_in_debug_output() {
        let s = load(&[
            ("BINDERY_PASSWORD", "s3cret-value"),
            ("DATABASE_URL", "postgres://u:dbpass@h/db"),
        ])
        .unwrap();
        let printed = format!("{s:?}");
        assert!(!printed.contains("s3cret-value"));
        assert!(!printed.contains("dbpass"));
    }

    #[test]
    fn secret_files_are_read() {
        let dir = std::env::temp_dir().join(format!("bindery-cfg-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("password");
        std::fs::write(&file, "from-file\n").unwrap();
        let s = load(&[("BINDERY_PASSWORD_FILE", file.to_str().unwrap())]).unwrap();
        assert_eq!(s.auth.password.unwrap().expose_secret(), "from-file");
    }

    #[test]
    fn every_variable_is_documented() {
        let doc = include_str!("../docs/configuration.md");
        for var in ENVIRONMENT {
            assert!(
                doc.contains(&format!("`{}`", var.name)),
                "{} is missing from docs/configuration.md",
                var.name
            );
            assert!(
                doc.contains(&format!("`{}`", var.path)),
                "{} is missing from docs/configuration.md",
                var.path
            );
        }
    }

    #[test]
    fn every_bound_is_documented() {
        let doc = include_str!("../docs/configuration.md");
        for (path, _, _) in accepted::BOUNDS {
            let row = doc
                .lines()
                .find(|l| l.contains(&format!("| `{path}` |")))
                .unwrap_or_else(|| panic!("{path} has no row in docs/configuration.md"));
            let form = accepted::form(path);
            let bound = form
                .trim_start_matches("a whole number")
                .trim_start_matches(", ");
            assert!(
                row.contains(bound),
                "the row of {path} in docs/configuration.md does not say `{bound}`"
            );
        }
    }

    #[test]
    fn bad_values_name_the_setting_and_the_accepted_form() {
        for (var, value, form) in [
            ("BINDERY_LISTEN", "nonsense", "0.0.0.0:8080"),
            (
                "BINDERY_POSTGRES_CREDENTIALS_PORT",
                "99999",
                "from 1 to 65535",
            ),
            ("BINDERY_MAX_HEADER_BYTES", "10", "at least 1024"),
            ("BINDERY_MIN_API_VERSION", "2.99", "from 2.13 to 2.17"),
            ("BINDERY_LOG", "bindery=loud", "tracing filter"),
        ] {
            let err = load(&[(var, value)]).unwrap_err();
            let text = format!("{err:#}");
            assert!(text.contains(var) && text.contains(form), "{var}: {text}");
            assert!(!text.contains('\n'), "{text}");
        }
        assert!(load(&[("BINDERY_MIN_API_VERSION", "2.17")]).is_ok());
        assert!(load(&[("BINDERY_LISTEN", "127.0.0.1:0")]).is_ok());
    }

    #[test]
    fn bad_values_are_one_clear_error() {
        let err = load(&[("BINDERY_WORKER_CONCURRENCY", "many")]).unwrap_err();
        assert!(
            err.to_string().contains("BINDERY_WORKER_CONCURRENCY"),
            "{err}"
        );
        let err = load(&[("BINDERY_LISTEN", "nowhere")]).unwrap_err();
        assert!(format!("{err:#}").contains("BINDERY_LISTEN"), "{err:#}");
    }
}
