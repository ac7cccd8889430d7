//! The PostgreSQL store: bindery's state on a PostgreSQL server, shared by any number
//! of replicas.
//!
//! Every idempotency and concurrency rule that must hold across restarts and replicas
//! is enforced here in the database (unique keys, conditional updates, row locks),
//! never with process-local locks.

mod audit;
mod bindings;
mod instances;
mod new_operation;
mod operations;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{ConnectOptions as _, Postgres, Transaction};
use uuid::Uuid;

use super::StoreOptions;
use super::row::Column;

/// Migrations embedded in the binary.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Handle to a PostgreSQL state database. Cheap to clone.
#[derive(Debug, Clone)]
pub struct PgStore {
    pool: PgPool,
}

/// Parses a `postgres://` URL into connect options with statement logging off: the
/// store binds every value, but nothing here should ever echo SQL into the logs.
pub fn connect_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    let options = PgConnectOptions::from_str(url)
        .context("DATABASE_URL is not a valid postgres:// URL")?
        .log_statements(tracing::log::LevelFilter::Off)
        .log_slow_statements(tracing::log::LevelFilter::Off, Duration::from_secs(3600));
    Ok(options.application_name("bindery"))
}

impl PgStore {
    /// Connects lazily: the broker starts, answers 503 while the database is away,
    /// and recovers by itself when it comes back.
    ///
    /// No ping before each checkout (sqlx's `test_before_acquire`): it would double
    /// the round trips of a request. A connection the server dropped fails its next
    /// statement, which answers 503, and sqlx closes it instead of returning it.
    pub fn connect_lazy(options: PgConnectOptions, store: &StoreOptions) -> Self {
        let pool = PgPoolOptions::new()
            .max_connections(store.max_connections)
            .acquire_timeout(store.acquire_timeout)
            .test_before_acquire(false)
            .connect_lazy_with(options);
        Self { pool }
    }

    /// Closes the pool's connections.
    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// The embedded migrations.
    pub(super) fn migrator(&self) -> &'static Migrator {
        &MIGRATOR
    }

    /// Where reads go: the pool.
    pub(super) fn reader(&self) -> &PgPool {
        &self.pool
    }

    /// Where writes go: the same pool.
    pub(super) fn writer(&self) -> &PgPool {
        &self.pool
    }

    /// A transaction.
    pub(super) async fn begin(&self) -> Result<Transaction<'static, Postgres>, sqlx::Error> {
        self.pool.begin().await
    }

    /// A value to bind, as this store keeps it: PostgreSQL has a type for each.
    pub(super) fn value<'a, T>(&self, value: &'a T) -> &'a T {
        value
    }

    /// A lease token to bind.
    pub(super) fn lease_token(&self, token: Option<Uuid>) -> Option<Uuid> {
        token
    }

    /// The order of "newest first" among a table's rows.
    pub(super) fn newest_first(&self) -> &'static str {
        "created_at desc"
    }
}

/// PostgreSQL decodes every column type a row holds by itself.
impl<T> Column<T> for PgRow
where
    T: for<'r> sqlx::Decode<'r, Postgres> + sqlx::Type<Postgres>,
{
    fn column(&self, name: &str) -> Result<T, sqlx::Error> {
        sqlx::Row::try_get(self, name)
    }
}

/// Creates the database named in `options` if it does not exist, connecting to the
/// server's `postgres` database to do so.
pub async fn ensure_database(options: &PgConnectOptions) -> anyhow::Result<()> {
    let name = options
        .get_database()
        .context("DATABASE_URL names no database")?
        .to_owned();
    let admin = options.clone().database("postgres");
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(admin)
        .await
        .context("connecting to the database server to create bindery's database")?;
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(&name)
            .fetch_one(&pool)
            .await?;
    if !exists {
        // CREATE DATABASE takes no bind parameters; the server quotes the name (%I).
        let statement: String = sqlx::query_scalar("select format('create database %I', $1::text)")
            .bind(&name)
            .fetch_one(&pool)
            .await?;
        match sqlx::query(&statement).execute(&pool).await {
            Ok(_) => tracing::info!(database = %name, "created bindery's database"),
            // Another replica created it between our check and our CREATE: 42P04, or
            // 23505 when both CREATEs reach the catalog at the same moment.
            Err(sqlx::Error::Database(e))
                if matches!(e.code().as_deref(), Some("42P04" | "23505")) => {}
            Err(e) => return Err(e).context("creating bindery's database"),
        }
    }
    pool.close().await;
    Ok(())
}
