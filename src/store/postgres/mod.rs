//! The PostgreSQL store: bindery's state on a PostgreSQL server, shared by any number
//! of replicas.
//!
//! Every idempotency and concurrency rule that must hold across restarts and replicas
//! is enforced here in the database (unique keys, conditional updates, row locks),
//! never with process-local locks.

mod audit;
mod bindings;
mod copy;
mod instances;
mod operations;

use std::str::FromStr;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::ConnectOptions as _;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};

use super::StoreOptions;

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

    /// Applies pending migrations.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        MIGRATOR
            .run(&self.pool)
            .await
            .context("applying database migrations")
    }

    /// True when the database answers and every embedded migration is applied.
    pub async fn is_ready(&self) -> bool {
        let latest = MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0);
        sqlx::query_scalar::<_, i64>(
            "select coalesce(max(version), 0) from _sqlx_migrations where success",
        )
        .fetch_one(&self.pool)
        .await
        .is_ok_and(|applied| applied >= latest)
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
