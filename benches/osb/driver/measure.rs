//! Measured runs: the counters read around a run and the row it adds to the report.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::bail;

use super::Bench;
use crate::client::Ctx;
use crate::load::{Mode, drive};
use crate::procfs;
use crate::stats::{Summary, group, ms, summarize};
use crate::workload::{Input, Kind, Rec};

/// CPU counters at one moment.
struct Usage {
    at: Instant,
    bindery: u64,
    postgres: HashMap<i32, u64>,
    generator: u64,
    machine_busy: u64,
    /// Bytes of WAL the server has written (whole cluster).
    wal: i64,
}

/// What was spent between two `Usage` readings.
struct Spent {
    /// Ticks of CPU: bindery, its PostgreSQL backends, the load generator.
    bindery: u64,
    postgres: u64,
    generator: u64,
    /// Seconds the whole machine was busy.
    machine_busy: f64,
    /// CPU seconds of bindery, its PostgreSQL backends and the generator.
    our_cpu: f64,
    /// WAL bytes written.
    wal: i64,
    /// Seconds between the readings.
    wall: f64,
}

/// One measured run.
pub(super) struct Row {
    pub(super) workload: String,
    pub(super) kind: Option<Kind>,
    pub(super) closed: bool,
    pub(super) mode: String,
    pub(super) requests: u64,
    pub(super) elapsed: Duration,
    pub(super) lat: Summary,
    pub(super) lag_p99: Option<u64>,
    pub(super) bindery_cpu: f64,
    pub(super) postgres_cpu: f64,
    pub(super) generator_cpu: f64,
    pub(super) machine_busy: f64,
    /// CPU seconds of bindery, its PostgreSQL backends and the generator.
    pub(super) our_cpu: f64,
    /// WAL bytes per request (whole cluster: other databases' writes count too).
    pub(super) wal_per_request: f64,
    pub(super) wall: f64,
    pub(super) peak_rss_kib: Option<u64>,
    /// The burst: operations completed per second, first request to last completion.
    pub(super) drain_rate: Option<f64>,
    pub(super) note: String,
}

impl Row {
    /// Cores busy with anything but bindery, its PostgreSQL backends and the generator.
    pub(super) fn rest_of_machine(&self) -> f64 {
        ((self.machine_busy - self.our_cpu) / self.wall.max(1e-9)).max(0.0)
    }

    pub(super) fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

/// Everything measured with one number of instances stored.
pub(super) struct Level {
    pub(super) stored: u64,
    pub(super) prefill: Duration,
    pub(super) startup: Duration,
    pub(super) idle_rss_kib: Option<u64>,
    pub(super) rows: Vec<Row>,
}

impl Bench {
    /// The PostgreSQL backends of the bench database with this `application_name`.
    async fn postgres_pids(&self, application: &str) -> Vec<i32> {
        sqlx::query_scalar(
            "select pid from pg_stat_activity where datname = $1 and application_name = $2",
        )
        .bind(&self.database)
        .bind(application)
        .fetch_all(self.db())
        .await
        .unwrap_or_default()
    }

    /// CPU ticks of each PostgreSQL backend with this `application_name`.
    pub(super) async fn postgres_ticks(&self, application: &str) -> HashMap<i32, u64> {
        let mut ticks = HashMap::new();
        for p in self.postgres_pids(application).await {
            if let Some(t) = procfs::cpu_ticks(p as u32) {
                ticks.insert(p, t);
            }
        }
        ticks
    }

    async fn usage(&self) -> Usage {
        let pid = self.server.as_ref().map_or(0, |s| s.pid);
        let postgres = self.postgres_ticks("bindery").await;
        Usage {
            at: Instant::now(),
            bindery: procfs::cpu_ticks(pid).unwrap_or(0),
            postgres,
            generator: procfs::cpu_ticks(std::process::id()).unwrap_or(0),
            machine_busy: procfs::machine_ticks().0,
            wal: sqlx::query_scalar(
                "select pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint",
            )
            .fetch_one(self.db())
            .await
            .unwrap_or(0),
        }
    }

    fn spent(&self, before: &Usage, after: &Usage) -> Spent {
        let postgres: u64 = after
            .postgres
            .iter()
            .map(|(p, t)| t.saturating_sub(before.postgres.get(p).copied().unwrap_or(0)))
            .sum();
        let bindery = after.bindery.saturating_sub(before.bindery);
        let generator = after.generator.saturating_sub(before.generator);
        Spent {
            bindery,
            postgres,
            generator,
            machine_busy: after.machine_busy.saturating_sub(before.machine_busy) as f64
                / self.ticks,
            our_cpu: (bindery + postgres + generator) as f64 / self.ticks,
            wal: after.wal - before.wal,
            wall: after.at.duration_since(before.at).as_secs_f64(),
        }
    }

    /// CPU µs per unit of work, from ticks.
    pub(super) fn per_unit(&self, ticks: u64, units: u64) -> f64 {
        ticks as f64 / self.ticks / units.max(1) as f64 * 1e6
    }

    /// One measured run: counters around it, the queue drained for async kinds.
    pub(super) async fn measure(
        &mut self,
        ctx: &Arc<Ctx>,
        stored: u64,
        kind: Kind,
        input: Input,
        mode: Mode,
    ) -> anyhow::Result<(Row, Rec)> {
        let workload = kind.label().to_owned();
        let pid = self.server.as_ref().map_or(0, |s| s.pid);
        self.peak_reset_works = procfs::reset_peak_rss(pid);
        let input = Arc::new(input);
        let before = self.usage().await;
        let outcome = drive(ctx, kind, &input, mode, self.options.seconds, u64::MAX)
            .await
            .map_err(|e| anyhow::anyhow!("{workload}: {e}"))?;
        let mut note = String::new();
        if kind.is_async() {
            let drained = self.wait_drained(Duration::from_secs(300)).await?;
            write!(note, "queue empty {} ms after the run", drained.as_millis())?;
        }
        let after = self.usage().await;
        let peak = procfs::peak_rss_kib(pid);
        let rec = outcome.rec;
        let requests = rec.lat.len() as u64;
        let spent = self.spent(&before, &after);
        let lag_p99 = (!rec.lag.is_empty()).then(|| summarize(rec.lag.clone()).p99);
        if kind == Kind::Lifecycle {
            let s = summarize(rec.units_lat.clone());
            if !note.is_empty() {
                note.push_str("; ");
            }
            write!(
                note,
                "{} lifecycles ({:.0}/s), each p50 {} ms p99 {} ms, {:.1} requests each",
                rec.units,
                rec.units as f64 / outcome.elapsed.as_secs_f64(),
                ms(s.p50),
                ms(s.p99),
                requests as f64 / rec.units.max(1) as f64
            )?;
        }
        if matches!(kind, Kind::Unbind | Kind::Deprovision)
            && outcome.elapsed < self.options.seconds.mul_f64(0.9)
        {
            if !note.is_empty() {
                note.push_str("; ");
            }
            note.push_str("ran out of prepared ids before the time was up");
        }
        let row = Row {
            workload,
            kind: Some(kind),
            closed: matches!(mode, Mode::Closed { .. }),
            mode: mode.label(if kind == Kind::Lifecycle {
                "lifecycles"
            } else {
                "req"
            }),
            requests,
            elapsed: outcome.elapsed,
            lat: summarize(rec.lat.clone()),
            lag_p99,
            bindery_cpu: self.per_unit(spent.bindery, requests),
            postgres_cpu: self.per_unit(spent.postgres, requests),
            generator_cpu: self.per_unit(spent.generator, requests),
            machine_busy: spent.machine_busy,
            our_cpu: spent.our_cpu,
            wal_per_request: spent.wal as f64 / requests.max(1) as f64,
            wall: spent.wall,
            peak_rss_kib: peak,
            drain_rate: None,
            note,
        };
        eprintln!(
            "osb: {:>9} stored | {:<24} | {:<22} | {:>7} req {:>9.0} req/s | p50 {:>6} p99 {:>6} p99.9 {:>6} ms | bindery {:>5.0} µs/req",
            group(stored),
            row.workload,
            row.mode,
            row.requests,
            row.rps(),
            ms(row.lat.p50),
            ms(row.lat.p99),
            ms(row.lat.p999),
            row.bindery_cpu
        );
        Ok((row, rec))
    }

    /// Creates `count` instances (or bindings) without measuring, for the runs that consume them.
    pub(super) async fn prepare(
        &self,
        ctx: &Arc<Ctx>,
        kind: Kind,
        input: Input,
        count: u64,
    ) -> anyhow::Result<Rec> {
        if count == 0 {
            return Ok(Rec::default());
        }
        let outcome = drive(
            ctx,
            kind,
            &Arc::new(input),
            Mode::Closed {
                connections: self.options.connections,
            },
            Duration::from_secs(600),
            count,
        )
        .await
        .map_err(|e| anyhow::anyhow!("preparing ids: {e}"))?;
        Ok(outcome.rec)
    }

    /// `burst` asynchronous provisions sent as fast as 64 connections allow; the
    /// worker drains the queue meanwhile and after.
    pub(super) async fn burst(
        &mut self,
        ctx: &Arc<Ctx>,
        stored: u64,
    ) -> anyhow::Result<(Row, Rec)> {
        let n = self.options.burst;
        let connections = 64;
        let pid = self.server.as_ref().map_or(0, |s| s.pid);
        procfs::reset_peak_rss(pid);
        let before = self.usage().await;
        let started = Instant::now();
        let outcome = drive(
            ctx,
            Kind::ProvisionAsync,
            &Arc::new(Input::default()),
            Mode::Closed { connections },
            Duration::from_secs(600),
            n,
        )
        .await
        .map_err(|e| anyhow::anyhow!("async burst: {e}"))?;
        let submitted = started.elapsed();
        let backlog: i64 =
            sqlx::query_scalar("select count(*) from operation where state = 'in progress'")
                .fetch_one(self.db())
                .await?;
        let after_submit = self.wait_drained(Duration::from_secs(600)).await?;
        let total = started.elapsed();
        let after = self.usage().await;
        self.check_burst_succeeded(&outcome.rec, n).await?;
        let rec = outcome.rec;
        let spent = self.spent(&before, &after);
        let note = format!(
            "all {} succeeded; last one {:.2} s after the first request = **{:.0} ops/s**; {} queued when the last 202 was sent ({:.2} s), drained in {:.2} s more",
            group(n),
            total.as_secs_f64(),
            n as f64 / total.as_secs_f64(),
            group(backlog as u64),
            submitted.as_secs_f64(),
            after_submit.as_secs_f64()
        );
        let row = Row {
            workload: format!("async burst of {}", group(n)),
            kind: None,
            closed: true,
            mode: format!("closed, {connections} conn"),
            requests: rec.lat.len() as u64,
            elapsed: outcome.elapsed,
            lat: summarize(rec.lat),
            lag_p99: None,
            bindery_cpu: self.per_unit(spent.bindery, n),
            postgres_cpu: self.per_unit(spent.postgres, n),
            generator_cpu: self.per_unit(spent.generator, n),
            machine_busy: spent.machine_busy,
            our_cpu: spent.our_cpu,
            wal_per_request: spent.wal as f64 / n.max(1) as f64,
            wall: spent.wall,
            peak_rss_kib: procfs::peak_rss_kib(pid),
            drain_rate: Some(n as f64 / total.as_secs_f64()),
            note,
        };
        eprintln!(
            "osb: {:>9} stored | {} | {}",
            group(stored),
            row.workload,
            row.note
        );
        let ops = Rec {
            ops: rec.ops,
            ..Rec::default()
        };
        Ok((row, ops))
    }

    /// Fails unless all `n` operations the burst started have succeeded.
    async fn check_burst_succeeded(&self, rec: &Rec, n: u64) -> anyhow::Result<()> {
        let ids: Vec<uuid::Uuid> = rec
            .ops
            .iter()
            .filter_map(|(_, op)| uuid::Uuid::parse_str(op).ok())
            .collect();
        let succeeded: i64 = sqlx::query_scalar(
            "select count(*) from operation where operation_id = any($1) and state = 'succeeded'",
        )
        .bind(&ids)
        .fetch_one(self.db())
        .await?;
        if succeeded as u64 != n {
            bail!("async burst: {succeeded} of {n} operations succeeded");
        }
        Ok(())
    }
}
