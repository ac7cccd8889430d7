//! One level: a server over a store of a given size, and every selected workload run
//! against it closed-loop, then open-loop.

use std::sync::Arc;
use std::time::Duration;

use anyhow::bail;

use super::measure::{Level, Row};
use super::{Bench, RATE_FACTOR};
use crate::client::Ctx;
use crate::load::{Mode, drive};
use crate::procfs;
use crate::stats::{group, round_rate};
use crate::workload::{Input, Kind, Rec};

/// The ids a level's workloads create and later ones use, and the creation rates that
/// size what the consuming workloads prepare.
#[derive(Default)]
pub(super) struct Made {
    /// Synchronously provisioned instances: feed bind and deprovision.
    pub(super) ready: Vec<String>,
    /// Asynchronously provisioned instances and their operations: polled.
    pub(super) ops: Vec<(String, String)>,
    /// (instance, binding): feed unbind.
    bindings: Vec<(String, String)>,
    provision_rate: Option<f64>,
    bind_rate: Option<f64>,
}

impl Bench {
    pub(super) async fn level(&mut self, stored: u64) -> anyhow::Result<Level> {
        let prefill = self.prefill(stored).await?;
        self.start_server().await?;
        let (pid, port, startup) = {
            let s = self.server.as_ref().expect("started");
            (s.pid, s.port, s.startup)
        };
        let idle_rss_kib = procfs::rss_kib(pid);
        eprintln!(
            "osb: level {}: server (pid {pid}) ready in {} ms, RSS {} KiB",
            group(stored),
            startup.as_millis(),
            idle_rss_kib.unwrap_or(0)
        );
        let ctx = Arc::new(Ctx::new(
            port,
            &self.service_id,
            &self.plan_id,
            &self.parameters,
        ));
        let mut rows = Vec::new();
        self.warm_up(&ctx).await?;
        let mut made = Made::default();
        self.run_workloads(&ctx, stored, &mut rows, &mut made)
            .await?;
        // The side-by-side comparison with the reference: at the first level only.
        if self.levels.is_empty() && self.options.rounds > 0 {
            self.compare(&ctx, &mut made).await?;
        }
        let failed: i64 =
            sqlx::query_scalar("select count(*) from operation where state = 'failed'")
                .fetch_one(self.db())
                .await?;
        if failed > 0 {
            bail!("{failed} operations failed");
        }
        self.stop_server().await;
        Ok(Level {
            stored,
            prefill,
            startup,
            idle_rss_kib,
            rows,
        })
    }

    pub(super) fn closed(&self) -> Mode {
        Mode::Closed {
            connections: self.options.connections,
        }
    }

    /// Not measured: opens the connections to bindery and fills bindery's pool.
    async fn warm_up(&self, ctx: &Arc<Ctx>) -> anyhow::Result<()> {
        for kind in [Kind::Catalog, Kind::Provision] {
            drive(
                ctx,
                kind,
                &Arc::new(Input::default()),
                self.closed(),
                Duration::from_millis(300),
                u64::MAX,
            )
            .await
            .map_err(|e| anyhow::anyhow!("warm-up: {e}"))?;
        }
        Ok(())
    }

    /// Every selected workload, in an order where each finds the ids it needs.
    async fn run_workloads(
        &mut self,
        ctx: &Arc<Ctx>,
        stored: u64,
        rows: &mut Vec<Row>,
        made: &mut Made,
    ) -> anyhow::Result<()> {
        if self.selected("catalog") {
            self.closed_then_open(ctx, stored, Kind::Catalog, Input::default, rows)
                .await?;
        }
        // Synchronous provision; the new instances feed bind and deprovision.
        if self.selected("provision") {
            let (rps, closed, open) = self
                .closed_then_open(ctx, stored, Kind::Provision, Input::default, rows)
                .await?;
            made.provision_rate = Some(rps);
            made.ready.extend(closed.ready);
            made.ready.extend(open.ready);
        }
        // Asynchronous provision: 202s while the worker drains the queue.
        if self.selected("async") {
            let (_, closed, open) = self
                .closed_then_open(ctx, stored, Kind::ProvisionAsync, Input::default, rows)
                .await?;
            made.ops.extend(closed.ops);
            made.ops.extend(open.ops);
        }
        // The burst: `--burst` asynchronous provisions queued at once.
        if self.selected("burst") {
            let (row, rec) = self.burst(ctx, stored).await?;
            rows.push(row);
            made.ops.extend(rec.ops);
        }
        if self.selected("last_operation") {
            self.last_operation(ctx, stored, made, rows).await?;
        }
        self.bind_and_unbind(ctx, stored, made, rows).await?;
        if self.selected("deprovision") {
            self.deprovision(ctx, stored, made, rows).await?;
        }
        // The lifecycle: provision (async) → poll → bind → unbind → deprovision.
        if self.selected("lifecycle") {
            let (row, rec) = self
                .measure(
                    ctx,
                    stored,
                    Kind::Lifecycle,
                    Input::default(),
                    self.closed(),
                )
                .await?;
            let rate = self.rate(Kind::Lifecycle, &row, rec.units);
            rows.push(row);
            let (row, _) = self
                .measure(
                    ctx,
                    stored,
                    Kind::Lifecycle,
                    Input::default(),
                    Mode::Open { rate },
                )
                .await?;
            rows.push(row);
        }
        Ok(())
    }

    /// The closed-loop run of `kind`, then the open-loop run at the rate the first
    /// level's closed-loop run set; both rows are added. Returns the closed run's
    /// requests per second and what each run recorded.
    async fn closed_then_open(
        &mut self,
        ctx: &Arc<Ctx>,
        stored: u64,
        kind: Kind,
        input: impl Fn() -> Input,
        rows: &mut Vec<Row>,
    ) -> anyhow::Result<(f64, Rec, Rec)> {
        let (row, closed) = self
            .measure(ctx, stored, kind, input(), self.closed())
            .await?;
        let rps = row.rps();
        let rate = self.rate(kind, &row, row.requests);
        rows.push(row);
        let (row, open) = self
            .measure(ctx, stored, kind, input(), Mode::Open { rate })
            .await?;
        rows.push(row);
        Ok((rps, closed, open))
    }

    /// Like `closed_then_open` for a workload that uses each of `ids` once: the open-loop
    /// run gets the ids the closed-loop run left.
    async fn closed_then_open_consuming<T: Clone>(
        &mut self,
        ctx: &Arc<Ctx>,
        stored: u64,
        kind: Kind,
        mut ids: Vec<T>,
        input: fn(Vec<T>) -> Input,
        rows: &mut Vec<Row>,
    ) -> anyhow::Result<()> {
        let (row, _) = self
            .measure(ctx, stored, kind, input(ids.clone()), self.closed())
            .await?;
        let rate = self.rate(kind, &row, row.requests);
        ids.drain(..(row.requests as usize).min(ids.len()));
        rows.push(row);
        let (row, _) = self
            .measure(ctx, stored, kind, input(ids), Mode::Open { rate })
            .await?;
        rows.push(row);
        Ok(())
    }

    /// last_operation: polls cycle over the instances provisioned asynchronously.
    async fn last_operation(
        &mut self,
        ctx: &Arc<Ctx>,
        stored: u64,
        made: &mut Made,
        rows: &mut Vec<Row>,
    ) -> anyhow::Result<()> {
        self.ensure_ops(ctx, made).await?;
        let input = || Input {
            ops: made.ops.clone(),
            ..Input::default()
        };
        self.closed_then_open(ctx, stored, Kind::LastOperation, input, rows)
            .await?;
        self.closed_then_open(ctx, stored, Kind::LastOperationLatest, input, rows)
            .await?;
        Ok(())
    }

    /// Instances provisioned asynchronously, to poll: 2,000 made now when the level's
    /// workloads made none.
    pub(super) async fn ensure_ops(&self, ctx: &Arc<Ctx>, made: &mut Made) -> anyhow::Result<()> {
        if made.ops.is_empty() {
            made.ops = self
                .prepare(ctx, Kind::ProvisionAsync, Input::default(), 2_000)
                .await?
                .ops;
            self.wait_drained(Duration::from_secs(300)).await?;
        }
        Ok(())
    }

    /// Bind: new binding ids on the synchronously provisioned instances. Unbind: each
    /// binding once; enough are prepared for both runs.
    async fn bind_and_unbind(
        &mut self,
        ctx: &Arc<Ctx>,
        stored: u64,
        made: &mut Made,
        rows: &mut Vec<Row>,
    ) -> anyhow::Result<()> {
        let needs_ready = ["bind", "unbind"].iter().any(|w| self.selected(w));
        if needs_ready && made.ready.is_empty() {
            made.ready = self
                .prepare(ctx, Kind::Provision, Input::default(), 1_000)
                .await?
                .ready;
        }
        let on_ready = || Input {
            ready: made.ready.clone(),
            ..Input::default()
        };
        if self.selected("bind") {
            let (rps, closed, open) = self
                .closed_then_open(ctx, stored, Kind::Bind, on_ready, rows)
                .await?;
            made.bind_rate = Some(rps);
            made.bindings.extend(closed.bindings);
            made.bindings.extend(open.bindings);
        }
        if self.selected("unbind") {
            let want = self.ids_needed(Kind::Unbind, made.bind_rate);
            let missing = want.saturating_sub(made.bindings.len() as u64);
            let prepared = self.prepare(ctx, Kind::Bind, on_ready(), missing).await?;
            made.bindings.extend(prepared.bindings);
            let bindings = |bindings| Input {
                bindings,
                ..Input::default()
            };
            let ids = std::mem::take(&mut made.bindings);
            self.closed_then_open_consuming(ctx, stored, Kind::Unbind, ids, bindings, rows)
                .await?;
        }
        Ok(())
    }

    /// Deprovision: each synchronously provisioned instance once.
    async fn deprovision(
        &mut self,
        ctx: &Arc<Ctx>,
        stored: u64,
        made: &mut Made,
        rows: &mut Vec<Row>,
    ) -> anyhow::Result<()> {
        let want = self.ids_needed(Kind::Deprovision, made.provision_rate);
        let missing = want.saturating_sub(made.ready.len() as u64);
        made.ready.extend(
            self.prepare(ctx, Kind::Provision, Input::default(), missing)
                .await?
                .ready,
        );
        let ready = |ready| Input {
            ready,
            ..Input::default()
        };
        let ids = std::mem::take(&mut made.ready);
        self.closed_then_open_consuming(ctx, stored, Kind::Deprovision, ids, ready, rows)
            .await
    }

    pub(super) fn selected(&self, workload: &str) -> bool {
        self.options
            .only
            .as_ref()
            .is_none_or(|only| only.iter().any(|w| w == workload))
    }

    /// Ids to prepare for a consuming workload (unbind, deprovision): enough for a
    /// closed-loop run a little faster than `creation_rate` plus the open-loop run.
    fn ids_needed(&self, kind: Kind, creation_rate: Option<f64>) -> u64 {
        let seconds = self.options.seconds.as_secs_f64();
        let closed = self
            .rates
            .get(&kind)
            .map(|r| r / RATE_FACTOR)
            .or(creation_rate)
            .unwrap_or(1_000.0);
        let open = self
            .rates
            .get(&kind)
            .copied()
            .unwrap_or(closed * RATE_FACTOR);
        ((closed * 1.5 + open) * seconds) as u64 + 100
    }

    fn rate(&mut self, kind: Kind, closed: &Row, units: u64) -> f64 {
        let measured = units as f64 / closed.elapsed.as_secs_f64().max(1e-9);
        *self
            .rates
            .entry(kind)
            .or_insert_with(|| round_rate(measured * RATE_FACTOR))
    }
}
