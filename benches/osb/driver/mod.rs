//! The driver: database, server, workloads, report.

mod compare;
mod level;
mod measure;
mod report;
mod setup;

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;

use crate::options::Options;
use crate::process::Server;
use crate::stats::group;
use crate::workload::Kind;
use crate::{CATALOG, KEY, PASSWORD, USER, procfs};
use measure::Level;
use setup::{facts, noop_catalog, pick_plan};

/// Open-loop rates are this fraction of the first level's closed-loop throughput.
const RATE_FACTOR: f64 = 0.5;

/// One run of the bench: its database, its server process and what it measured.
struct Bench {
    options: Options,
    database: String,
    database_url: String,
    dir: PathBuf,
    service_id: String,
    plan_id: String,
    parameters: Value,
    ticks: f64,
    db: Option<PgPool>,
    server: Option<Server>,
    /// The reference server, while the comparison runs.
    reference: Option<Server>,
    /// The side-by-side comparison with the reference (first level).
    comparisons: Vec<compare::Comparison>,
    /// Open-loop rates, fixed from the first level's closed-loop throughput.
    rates: HashMap<Kind, f64>,
    levels: Vec<Level>,
    cold_start: Option<Duration>,
    peak_reset_works: bool,
    admin: PgPool,
}

pub(crate) async fn run(options: Options) -> anyhow::Result<()> {
    let database = format!(
        "bindery_bench_{}",
        &uuid::Uuid::new_v4().simple().to_string()[..12]
    );
    let admin = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect(&format!("{}/postgres", options.server_url))
        .await
        .with_context(|| format!("connecting to {}", options.server_url))?;
    let facts = facts(&admin).await;
    eprintln!("{facts}");
    let dir = std::env::temp_dir().join(&database);
    std::fs::create_dir_all(&dir)?;
    let (service_id, plan_id, parameters) = pick_plan()?;
    std::fs::write(dir.join("catalog.yaml"), noop_catalog(CATALOG))?;
    let mut bench = Bench {
        database_url: format!("{}/{database}", options.server_url),
        database,
        options,
        dir,
        service_id,
        plan_id,
        parameters,
        ticks: procfs::ticks_per_second(),
        db: None,
        server: None,
        reference: None,
        comparisons: Vec::new(),
        rates: HashMap::new(),
        levels: Vec::new(),
        cold_start: None,
        peak_reset_works: false,
        admin: admin.clone(),
    };
    let result = bench.run_all().await;
    // Clean up whatever happened.
    if let Some(server) = bench.server.take() {
        server.stop(result.is_err()).await;
    }
    if let Some(reference) = bench.reference.take() {
        reference.stop(result.is_err()).await;
    }
    if let Some(db) = bench.db.take() {
        db.close().await;
    }
    let dropped = sqlx::query(&format!(
        "drop database if exists \"{}\" with (force)",
        bench.database
    ))
    .execute(&admin)
    .await;
    if let Err(e) = dropped {
        eprintln!("osb: could not drop {}: {e}", bench.database);
    }
    if result.is_ok() {
        let _ = std::fs::remove_dir_all(&bench.dir);
    }
    result?;
    let report = bench.report(&facts);
    println!("{report}");
    if let Some(out) = &bench.options.out {
        std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
    }
    Ok(())
}

impl Bench {
    fn server_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![
            (
                "DATABASE_URL",
                match &self.options.sslmode {
                    Some(mode) => format!("{}?sslmode={mode}", self.database_url),
                    None => self.database_url.clone(),
                },
            ),
            ("BINDERY_LISTEN", "127.0.0.1:0".to_owned()),
            (
                "BINDERY_CATALOG",
                self.dir.join("catalog.yaml").display().to_string(),
            ),
            ("BINDERY_USERNAME", USER.to_owned()),
            ("BINDERY_PASSWORD", PASSWORD.to_owned()),
            ("BINDERY_ENCRYPTION_KEYS", KEY.to_owned()),
        ];
        if let Some(log) = &self.options.log {
            env.push(("BINDERY_LOG", log.clone()));
        }
        env
    }

    async fn start_server(&mut self) -> anyhow::Result<()> {
        let log = self.dir.join(format!("server-{}.log", self.levels.len()));
        self.server = Some(Server::start("server", self.server_env(), log).await?);
        Ok(())
    }

    async fn stop_server(&mut self) {
        if let Some(server) = self.server.take() {
            server.stop(false).await;
        }
    }

    async fn run_all(&mut self) -> anyhow::Result<()> {
        // Cold start: the server creates the database and applies the migrations.
        self.start_server().await?;
        let cold = self.server.as_ref().map(|s| s.startup);
        self.cold_start = cold;
        eprintln!(
            "osb: cold start (create database + migrate) ready in {} ms",
            cold.map_or(0, |d| d.as_millis())
        );
        self.stop_server().await;
        for (name, value) in &self.options.pg_set {
            let statement: String = sqlx::query_scalar(
                "select format('alter database %I set %s = %L', $1::text, $2::text, $3::text)",
            )
            .bind(&self.database)
            .bind(name)
            .bind(value)
            .fetch_one(&self.admin)
            .await?;
            sqlx::query(&statement).execute(&self.admin).await?;
        }
        self.db = Some(
            PgPoolOptions::new()
                .max_connections(2)
                .connect(&self.database_url)
                .await?,
        );
        let mut levels = vec![self.options.base];
        levels.extend(self.options.scales.iter().copied());
        for stored in levels {
            let level = self.level(stored).await?;
            self.levels.push(level);
        }
        Ok(())
    }

    fn db(&self) -> &PgPool {
        self.db.as_ref().expect("connected")
    }

    /// Tops the store up to `target` live instances, each with its finished
    /// provision operation and audit event, as bindery would have written them.
    async fn prefill(&self, target: u64) -> anyhow::Result<Duration> {
        let started = Instant::now();
        let live: i64 =
            sqlx::query_scalar("select count(*) from service_instance where deleted_at is null")
                .fetch_one(self.db())
                .await?;
        let mut missing = target.saturating_sub(live as u64);
        eprintln!(
            "osb: storing {} more instances ({} live)",
            group(missing),
            group(live as u64)
        );
        while missing > 0 {
            let batch = missing.min(100_000);
            sqlx::query(
                "with instance as ( \
                   insert into service_instance (instance_id, service_id, plan_id, parameters, \
                       organization_guid, space_guid, context, state, created_at, updated_at) \
                   select gen_random_uuid()::text, $2, $3, $4, 'bench-org', 'bench-space', \
                       '{\"platform\": \"kubernetes\", \"namespace\": \"prefill\"}'::jsonb, 'ready', \
                       now() - interval '1 day', now() - interval '1 day' \
                   from generate_series(1, $1) \
                   returning instance_id), \
                 operation as ( \
                   insert into operation (operation_id, instance_id, kind, state, attempts, \
                       deadline_at, next_attempt_at, created_at, updated_at, finished_at) \
                   select gen_random_uuid(), instance_id, 'provision', 'succeeded', 1, \
                       now() - interval '23 hours', now() - interval '1 day', \
                       now() - interval '1 day', now() - interval '1 day', now() - interval '1 day' \
                   from instance \
                   returning operation_id, instance_id) \
                 insert into audit_event (occurred_at, action, instance_id, operation_id, status, api_version) \
                 select now() - interval '1 day', 'provision', instance_id, operation_id, 201, '2.13' \
                 from operation",
            )
            .bind(batch as i64)
            .bind(&self.service_id)
            .bind(&self.plan_id)
            .bind(&self.parameters)
            .execute(self.db())
            .await
            .context("storing instances")?;
            missing -= batch;
        }
        // A store in steady state: statistics current, visibility map set, and no
        // checkpoint of the fill landing in the measurements.
        sqlx::query("vacuum analyze service_instance, operation, service_binding, audit_event")
            .execute(self.db())
            .await?;
        sqlx::query("checkpoint").execute(self.db()).await?;
        Ok(started.elapsed())
    }

    async fn wait_drained(&self, timeout: Duration) -> anyhow::Result<Duration> {
        let started = Instant::now();
        loop {
            let left: i64 =
                sqlx::query_scalar("select count(*) from operation where state = 'in progress'")
                    .fetch_one(self.db())
                    .await?;
            if left == 0 {
                return Ok(started.elapsed());
            }
            if started.elapsed() > timeout {
                bail!("{left} operations still in progress after {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
