//! The SQLite store: bindery's state in one local file, for a single broker process
//! (a laptop, a demo, a small installation). More than one replica needs PostgreSQL.
//!
//! The rules are the PostgreSQL store's, kept differently: SQLite has one writer per
//! file and no row locks, so every write of this process goes through one connection
//! (a pool of one), in `BEGIN IMMEDIATE` transactions, and reads use a pool of their
//! own. A write therefore never meets another write, and no `SQLITE_BUSY` reaches a
//! caller; what PostgreSQL does with `FOR UPDATE`, `FOR SHARE` and `SKIP LOCKED` holds
//! here because the writer runs one transaction at a time. A lock file keeps a second
//! process off the file (`lock.rs`). Times are computed here, in Rust, and stored as
//! integer microseconds (`migrations/sqlite`).

mod audit;
mod bindings;
mod instances;
mod lock;
mod operations;
mod value;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use serde_json::Value;
use sqlx::ConnectOptions as _;
use sqlx::migrate::Migrator;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use sqlx::{Sqlite, Transaction};
use uuid::Uuid;
use uuid::fmt::Hyphenated;

use super::StoreOptions;
use value::Stored;

/// Migrations embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");

/// How long a statement waits for SQLite's own file lock (a checkpoint, a reader
/// starting while the WAL is reset) before failing with `SQLITE_BUSY`.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Handle to a SQLite state file. Cheap to clone; every clone, and every other open of
/// the same file in this process, shares the same connections and file lock.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    shared: Arc<Shared>,
}

/// What all handles on one file share. Dropping the last handle closes the pools and
/// releases the lock file.
#[derive(Debug)]
struct Shared {
    /// The database file, absolute.
    path: PathBuf,
    /// The only connection that writes.
    writer: SqlitePool,
    /// Connections that only read (`query_only`).
    reader: SqlitePool,
    /// The held lock file: another process cannot open the database while it exists.
    _lock: lock::LockFile,
}

/// The database file a `sqlite:` URL names: `sqlite://PATH` or `sqlite:PATH`, the path
/// taken literally (relative to the working directory unless absolute).
pub fn path_from_url(url: &str) -> anyhow::Result<PathBuf> {
    let rest = url
        .get(..7)
        .filter(|scheme| scheme.eq_ignore_ascii_case("sqlite:"))
        .map(|_| &url[7..])
        .context("not a sqlite: URL")?;
    let path = rest.strip_prefix("//").unwrap_or(rest);
    if path.is_empty() {
        anyhow::bail!("a sqlite: URL needs a file path, e.g. sqlite://data/bindery.db");
    }
    if path.starts_with(':') {
        anyhow::bail!(
            "in-memory SQLite databases are not supported: bindery's state must survive a restart; give a file path, e.g. sqlite://data/bindery.db"
        );
    }
    if path.contains('?') {
        anyhow::bail!(
            "a sqlite: URL takes no query parameters here: bindery sets the journal, locking and timeouts itself"
        );
    }
    Ok(PathBuf::from(path))
}

impl SqliteStore {
    /// Opens (creating it and its directory when missing) the database file at `path`.
    ///
    /// Fails when another process holds the file. A second open in this process gets a
    /// handle on the store already open (its pools and lock; `options` are then
    /// ignored), so there is still one writer per file.
    pub async fn open(path: &Path, options: &StoreOptions) -> anyhow::Result<Self> {
        lock::open_shared(path, |path, lock| Self::connect(path, lock, options)).await
    }

    /// Like [`open`](Self::open), but fails when the file does not exist, rather than
    /// creating an empty store (a source to copy from must exist).
    pub async fn open_existing(path: &Path, options: &StoreOptions) -> anyhow::Result<Self> {
        if !path.is_file() {
            anyhow::bail!("SQLite file {} does not exist", path.display());
        }
        Self::open(path, options).await
    }

    async fn connect(
        path: PathBuf,
        lock: lock::LockFile,
        options: &StoreOptions,
    ) -> anyhow::Result<Self> {
        let base = SqliteConnectOptions::new()
            .filename(&path)
            .foreign_keys(true)
            .busy_timeout(BUSY_TIMEOUT)
            .log_statements(tracing::log::LevelFilter::Off)
            .log_slow_statements(tracing::log::LevelFilter::Off, Duration::from_secs(3600));
        // The writer sets WAL (a property of the file) before any reader connects; its
        // one connection stays open for the store's lifetime, which also keeps the WAL
        // and shared-memory files in place for the readers.
        let writer = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(
                base.clone()
                    .create_if_missing(true)
                    .journal_mode(SqliteJournalMode::Wal)
                    .synchronous(SqliteSynchronous::Full),
            )
            .await
            .with_context(|| format!("opening SQLite file {}", path.display()))?;
        // `query_only` rather than a read-only open: the connection may still create the
        // WAL index it needs, but no statement through it can write.
        let reader = SqlitePoolOptions::new()
            .max_connections(options.max_connections.max(1))
            .acquire_timeout(options.acquire_timeout)
            .connect_with(base.pragma("query_only", "ON"))
            .await
            .with_context(|| format!("opening SQLite file {}", path.display()))?;
        Ok(Self {
            shared: Arc::new(Shared {
                path,
                writer,
                reader,
                _lock: lock,
            }),
        })
    }

    /// The database file, absolute.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// The only connection that writes.
    pub(super) fn writer(&self) -> &SqlitePool {
        &self.shared.writer
    }

    /// Connections that only read.
    pub(super) fn reader(&self) -> &SqlitePool {
        &self.shared.reader
    }

    /// A write transaction on the writer. `IMMEDIATE` takes SQLite's write lock at once,
    /// so a transaction that reads before it writes never has to upgrade its lock.
    pub(super) async fn begin(&self) -> Result<Transaction<'static, Sqlite>, sqlx::Error> {
        self.writer().begin_with("begin immediate").await
    }

    /// Closes the readers, then the writer: the last connection to close checkpoints
    /// the write-ahead log into the database file. Every handle on this store is closed.
    pub(super) async fn close(&self) {
        self.reader().close().await;
        self.writer().close().await;
    }

    /// The embedded migrations.
    pub(super) fn migrator(&self) -> &'static Migrator {
        &MIGRATOR
    }

    /// A value to bind, as this store keeps it (see [`Stored`]).
    pub(super) fn value<T: Stored>(&self, value: &T) -> T::Raw {
        value.to_raw()
    }

    /// A lease token to bind: 32 lowercase hex digits, the form a claim's
    /// `lower(hex(randomblob(16)))` writes.
    pub(super) fn lease_token(&self, lease_token: Option<Uuid>) -> Option<uuid::fmt::Simple> {
        lease_token.map(token)
    }

    /// The order of "newest first" among a table's rows: two created in the same
    /// microsecond are ordered by insertion (rowid).
    pub(super) fn newest_first(&self) -> &'static str {
        "created_at desc, rowid desc"
    }
}

/// Now, as stored: microseconds since the Unix epoch.
fn now() -> i64 {
    Utc::now().timestamp_micros()
}

/// `at` plus `duration`, as stored (saturating: a lease cannot overflow).
fn plus(at: i64, duration: Duration) -> i64 {
    at.saturating_add(i64::try_from(duration.as_micros()).unwrap_or(i64::MAX))
}

/// A uuid as stored: its lowercase hyphenated text.
fn id(uuid: Uuid) -> Hyphenated {
    uuid.hyphenated()
}

/// A lease token as stored: 32 lowercase hex digits, the form a claim's
/// `lower(hex(randomblob(16)))` writes.
fn token(uuid: Uuid) -> uuid::fmt::Simple {
    uuid.simple()
}

/// JSON as stored.
fn json(value: &Value) -> String {
    value.to_string()
}

/// A JSON array of the given strings, for `in (select value from json_each(?))`: a
/// list bound as one value.
fn json_list<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    Value::from(items.into_iter().collect::<Vec<_>>()).to_string()
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::path_from_url;

    #[test]
    fn a_sqlite_url_names_its_path_literally() {
        for (url, path) in [
            ("sqlite://data/bindery.db", "data/bindery.db"),
            ("sqlite:data/bindery.db", "data/bindery.db"),
            (
                "sqlite:///var/lib/bindery/state.db",
                "/var/lib/bindery/state.db",
            ),
            (
                "sqlite:/var/lib/bindery/state.db",
                "/var/lib/bindery/state.db",
            ),
            ("SQLite://Data/My State.db", "Data/My State.db"),
        ] {
            assert_eq!(path_from_url(url).unwrap(), PathBuf::from(path), "{url}");
        }
        for url in [
            "sqlite:",
            "sqlite://",
            "sqlite::memory:",
            "sqlite://a.db?mode=ro",
            "postgres://x",
        ] {
            assert!(path_from_url(url).is_err(), "{url}");
        }
    }
}
