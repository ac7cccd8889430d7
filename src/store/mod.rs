//! The store: the only code that reads or writes bindery's own state (instances,
//! bindings, operations, the audit trail).
//!
//! Two databases keep that state behind one interface, [`Store`]: PostgreSQL, for
//! production and for any number of replicas, and a SQLite file, so that a broker
//! tried on a laptop needs no database server. The URL's scheme picks one. Both
//! enforce the same rules (idempotency, conflicts, tombstones, one owner per
//! operation) in the database, never with locks held by the broker's code.

/// Calls the same code on whichever store this is.
///
/// The expression is compiled once per store, with `$store` bound to that store: it
/// may call methods both stores have under one name even where their types differ (a
/// pool, a transaction, a value encoded as the store keeps it). That is how logic
/// and SQL the two databases share are written once, on [`Store`].
macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Store::Postgres($store) => $call,
            Store::Sqlite($store) => $call,
        }
    };
}

mod bindings;
pub mod copy;
mod instances;
mod model;
mod operations;
pub mod postgres;
mod row;
pub mod sqlite;

use std::time::Duration;

use anyhow::Context as _;
use sqlx::FromRow;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;

use model::Claim;
pub use model::{
    AuditEvent, BindingInsert, BindingRecord, BindingState, ClaimedOperation, InstanceRecord,
    InstanceState, NewBinding, NewInstance, NewOperation, OperationKind, OperationRecord,
    OperationTarget, Outcome, PlanUsage, SealedCredentials,
};
pub use postgres::PgStore;
pub use row::{BindingRow, InstancePoll, InstanceRow, OperationRow};
pub use sqlite::SqliteStore;

/// How to size and wait on the store's connections.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most connections the pool opens. A SQLite store opens this many readers and
    /// always one writer.
    pub max_connections: u32,
    /// How long a request waits for a connection before answering 503.
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

/// Handle to bindery's state, whichever database keeps it. Cheap to clone.
///
/// An enum rather than a trait object: the set of stores is closed, every method is
/// async, and a `match` makes the compiler check that each store implements each
/// method (docs/decisions.md). Each method is documented here, once; the stores'
/// own methods say only how their database does it. The methods live by table:
/// `instances.rs`, `bindings.rs`, `operations.rs`, and `copy.rs` for whole rows.
#[derive(Debug, Clone)]
pub enum Store {
    /// A PostgreSQL database.
    Postgres(PgStore),
    /// A SQLite file, for one process.
    Sqlite(SqliteStore),
}

impl Store {
    /// Opens the store a URL names, by its scheme:
    ///
    /// * `postgres://` or `postgresql://`: the database is created when it is missing;
    ///   connections are made lazily so the broker starts while the server is away.
    /// * `sqlite://PATH` or `sqlite:PATH`: the file (and its directory) is created when
    ///   missing. Fails when another process has it open.
    pub async fn open(url: &str, options: &StoreOptions) -> anyhow::Result<Self> {
        match StoreKind::of(url)? {
            StoreKind::Postgres => {
                let pg = postgres::connect_options(url)?;
                postgres::ensure_database(&pg).await?;
                Ok(Self::Postgres(PgStore::connect_lazy(pg, options)))
            }
            StoreKind::Sqlite => {
                let path = sqlite::path_from_url(url)?;
                Ok(Self::Sqlite(SqliteStore::open(&path, options).await?))
            }
        }
    }

    /// Opens a store that must exist already, creating nothing (a store to copy from):
    /// a missing SQLite file is an error, and a PostgreSQL database that does not
    /// exist is reported by [`is_ready`](Self::is_ready) as not ready.
    pub async fn open_existing(url: &str, options: &StoreOptions) -> anyhow::Result<Self> {
        match StoreKind::of(url)? {
            StoreKind::Postgres => Ok(Self::Postgres(PgStore::connect_lazy(
                postgres::connect_options(url)?,
                options,
            ))),
            StoreKind::Sqlite => {
                let path = sqlite::path_from_url(url)?;
                Ok(Self::Sqlite(
                    SqliteStore::open_existing(&path, options).await?,
                ))
            }
        }
    }

    /// What this store is, for the start-up log: never a password.
    pub fn describe(&self) -> String {
        match self {
            Self::Postgres(_) => "PostgreSQL".to_owned(),
            Self::Sqlite(s) => format!("SQLite file {}", s.path().display()),
        }
    }

    /// Closes the store's connections and waits until they are closed. A SQLite store
    /// checkpoints its write-ahead log into the file as its last connection closes;
    /// its lock file is released when the last handle is dropped.
    pub async fn close(&self) {
        dispatch!(self, s => s.close().await)
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        dispatch!(self, s => s.migrator().run(s.writer()).await)
            .context("applying database migrations")
    }

    /// True when the database answers and every embedded migration is applied.
    pub async fn is_ready(&self) -> bool {
        let applied = dispatch!(self, s => {
            let latest = s.migrator().iter().map(|m| m.version).max().unwrap_or(0);
            sqlx::query_scalar::<_, i64>(
                "select coalesce(max(version), 0) from _sqlx_migrations where success",
            )
            .fetch_one(s.reader())
            .await
            .map(|applied| applied >= latest)
        });
        applied.unwrap_or(false)
    }

    /// Appends audit events, in order.
    pub async fn record_audit_events(&self, events: &[AuditEvent]) -> Result<(), sqlx::Error> {
        if events.is_empty() {
            return Ok(());
        }
        dispatch!(self, s => s.record_audit_events(events).await)
    }
}

/// Reads by one text key, for the methods in this module's files.
impl Store {
    /// The row `statement` reads with `key` as `$1`, if there is one.
    async fn row_by<R>(&self, statement: &str, key: &str) -> Result<Option<R>, sqlx::Error>
    where
        R: for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow> + Send + Unpin,
    {
        dispatch!(self, s => sqlx::query_as(statement).bind(key).fetch_optional(s.reader()).await)
    }
}

/// Which store a URL names.
enum StoreKind {
    Postgres,
    Sqlite,
}

impl StoreKind {
    /// By the URL's scheme. The error names the scheme only: the rest of a URL may hold
    /// a password.
    fn of(url: &str) -> anyhow::Result<Self> {
        let scheme = url
            .split_once(':')
            .map(|(scheme, _)| scheme.to_ascii_lowercase())
            .filter(|scheme| !scheme.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the database URL has no scheme: use postgres://USER@HOST/DATABASE or sqlite://PATH"
                )
            })?;
        match scheme.as_str() {
            "postgres" | "postgresql" => Ok(Self::Postgres),
            "sqlite" => Ok(Self::Sqlite),
            other => anyhow::bail!(
                "the database URL's scheme `{other}` is not supported: use postgres://USER@HOST/DATABASE or sqlite://PATH"
            ),
        }
    }
}

/// True when an error means "the database is unreachable or busy" rather than "the
/// query is wrong": those become 503 so a platform retries instead of
/// orphan-mitigating.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(e) => {
            // Both databases report numeric codes: which one answered decides what the
            // number means.
            if e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // SQLite's extended code; its low byte is the primary code. 5 BUSY, 6
                // LOCKED: the file is held by something else for longer than the busy
                // timeout.
                return e
                    .code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .is_some_and(|c| matches!(c & 0xff, 5 | 6));
            }
            e.code().is_some_and(|c| {
                // PostgreSQL 08: connection exception; 57P: operator intervention
                // (shutdown, starting up); 53300: too many connections.
                c.starts_with("08") || c.starts_with("57P") || c == "53300"
            })
        }
        _ => false,
    }
}
