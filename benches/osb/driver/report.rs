//! The markdown report: how the run was made, one table per level, the targets.

use std::fmt::Write as _;
use std::time::Duration;

use super::measure::{Level, Row};
use super::{Bench, RATE_FACTOR};
use crate::stats::{group, ms};
use crate::workload::Kind;

impl Bench {
    pub(super) fn report(&self, facts: &str) -> String {
        let mut out = String::new();
        self.write_run(&mut out, facts);
        for level in &self.levels {
            write_level(&mut out, level);
        }
        self.write_comparison(&mut out);
        out.push_str(&self.targets());
        out
    }

    /// The `## Run` section: the machine, the options, start-up.
    fn write_run(&self, out: &mut String, facts: &str) {
        let o = &self.options;
        let _ = writeln!(out, "## Run\n");
        let _ = writeln!(out, "{facts}");
        let _ = writeln!(
            out,
            "- options: {} s per run, {} closed-loop connections, burst {}, open-loop rate = {} × the first level's closed-loop throughput; bindery log filter: {}; DATABASE_URL sslmode: {}; database settings: {}; rounds against the reference: {}",
            o.seconds.as_secs_f64(),
            o.connections,
            group(o.burst),
            RATE_FACTOR,
            o.log
                .clone()
                .or_else(|| std::env::var("BINDERY_LOG").ok())
                .unwrap_or_else(|| "info (default)".to_owned()),
            o.sslmode.as_deref().unwrap_or("not set (prefer)"),
            if o.pg_set.is_empty() {
                "server defaults".to_owned()
            } else {
                o.pg_set
                    .iter()
                    .map(|(n, v)| format!("{n}={v}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            },
            o.rounds
        );
        if let Some(cold) = self.cold_start {
            let _ = writeln!(
                out,
                "- cold start (creates the database, applies migrations) to `/readyz` 200: {} ms",
                cold.as_millis()
            );
        }
        if !self.peak_reset_works {
            let _ = writeln!(
                out,
                "- note: /proc/PID/clear_refs could not be written, so peak RSS is the peak since the server started"
            );
        }
    }

    fn find(&self, level: usize, kind: Kind, closed: bool) -> Option<&Row> {
        self.levels
            .get(level)?
            .rows
            .iter()
            .find(|r| r.kind == Some(kind) && r.closed == closed)
    }

    fn targets(&self) -> String {
        let mut table = Targets(String::from(
            "\n### Targets\n\n| target | measured | |\n|---|---|---|\n",
        ));
        self.throughput_targets(&mut table);
        for (target, measured, met) in self.comparison_targets() {
            table.line(&target, measured, Some(met));
        }
        match self.levels.iter().position(|l| l.stored >= 1_000_000) {
            Some(i) => self.million_targets(&mut table, i),
            None => {
                table.line(
                    "peak RSS < 64 MiB with 1,000,000 stored instances",
                    "run with --scale 1000000".to_owned(),
                    None,
                );
                table.line(
                    "p99 at 1,000,000 within 1.5× its value at 1,000",
                    "run with --scale 1000000".to_owned(),
                    None,
                );
            }
        }
        table.0
    }

    /// The targets measured at the first level: throughput, the burst, start-up.
    fn throughput_targets(&self, table: &mut Targets) {
        if let Some(r) = self.find(0, Kind::Catalog, true) {
            table.line(
                "catalog ≥ 50,000 req/s",
                format!("{} req/s", group(r.rps() as u64)),
                Some(r.rps() >= 50_000.0),
            );
        }
        if let Some(r) = self.find(0, Kind::Provision, true) {
            table.line(
                "sync provision ≥ 4,000/s, p99 < 20 ms at 32 connections",
                format!(
                    "{} /s, p99 {} ms at {} connections",
                    group(r.rps() as u64),
                    ms(r.lat.p99),
                    self.options.connections
                ),
                Some(r.rps() >= 4_000.0 && r.lat.p99 < 20_000 && self.options.connections == 32),
            );
        }
        if let Some(r) = self.find(0, Kind::LastOperation, true) {
            table.line(
                "last_operation ≥ 10,000 req/s",
                format!("{} req/s", group(r.rps() as u64)),
                Some(r.rps() >= 10_000.0),
            );
        }
        let Some(level) = self.levels.first() else {
            return;
        };
        if let Some(r) = level.rows.iter().find(|r| r.kind.is_none()) {
            let rate = r.drain_rate.unwrap_or(0.0);
            table.line(
                &format!(
                    "async: {} queued at once all complete, drained ≥ 2,000 ops/s",
                    group(self.options.burst)
                ),
                format!("all complete, {rate:.0} ops/s"),
                Some(rate >= 2_000.0 && self.options.burst >= 10_000),
            );
        }
        table.line(
            "start-up to ready < 1 s",
            self.levels
                .iter()
                .map(|l| format!("{} ms at {}", l.startup.as_millis(), group(l.stored)))
                .collect::<Vec<_>>()
                .join(", "),
            Some(
                self.levels
                    .iter()
                    .all(|l| l.startup < Duration::from_secs(1)),
            ),
        );
    }

    /// The targets of level `i`, the first with a million instances stored.
    fn million_targets(&self, table: &mut Targets, i: usize) {
        let peak = self.levels[i]
            .rows
            .iter()
            .filter_map(|r| r.peak_rss_kib)
            .max()
            .unwrap_or(0);
        table.line(
            "peak RSS < 64 MiB with 1,000,000 stored instances",
            format!("{:.1} MiB", peak as f64 / 1024.0),
            Some(peak < 64 * 1024),
        );
        let mut worst: Option<(f64, String)> = None;
        let mut ratios = Vec::new();
        for base in &self.levels[0].rows {
            let Some(kind) = base.kind else { continue };
            if let Some(big) = self.find(i, kind, base.closed) {
                let ratio = big.lat.p99 as f64 / base.lat.p99.max(1) as f64;
                ratios.push(format!(
                    "{} {}: {ratio:.2}×",
                    base.workload,
                    if base.closed { "closed" } else { "open" }
                ));
                if worst.as_ref().is_none_or(|(w, _)| ratio > *w) {
                    worst = Some((ratio, base.workload.clone()));
                }
            }
        }
        if let Some((ratio, name)) = worst {
            table.line(
                &format!(
                    "p99 at {} within 1.5× its value at {}",
                    group(self.levels[i].stored),
                    group(self.levels[0].stored)
                ),
                format!("worst {ratio:.2}× ({name}); {}", ratios.join(", ")),
                Some(ratio <= 1.5),
            );
        }
    }
}

/// The targets table being written.
struct Targets(String);

impl Targets {
    fn line(&mut self, target: &str, measured: String, ok: Option<bool>) {
        let verdict = match ok {
            Some(true) => "met",
            Some(false) => "**not met**",
            None => "not measured",
        };
        let _ = writeln!(self.0, "| {target} | {measured} | {verdict} |");
    }
}

/// One level's section: how it started, its table, the notes on its rows.
fn write_level(out: &mut String, level: &Level) {
    let _ = writeln!(
        out,
        "\n### {} instances stored\n\nStore topped up in {:.1} s; server start-up to `/readyz` 200: **{} ms**; RSS when ready: {:.1} MiB.\n",
        group(level.stored),
        level.prefill.as_secs_f64(),
        level.startup.as_millis(),
        level.idle_rss_kib.unwrap_or(0) as f64 / 1024.0
    );
    let _ = writeln!(
        out,
        "| workload | load | requests | req/s | p50 ms | p99 ms | p99.9 ms | max ms | non-2xx | bindery CPU µs/req | PostgreSQL CPU µs/req | load generator CPU µs/req | rest of machine (cores) | WAL bytes/req | bindery peak RSS MiB |"
    );
    let _ = writeln!(
        out,
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    );
    for r in &level.rows {
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {} | {} | {} | {} | 0 | {:.0} | {:.0} | {:.0} | {:.2} | {} | {} |",
            r.workload,
            r.mode,
            group(r.requests),
            group(r.rps() as u64),
            ms(r.lat.p50),
            ms(r.lat.p99),
            ms(r.lat.p999),
            ms(r.lat.max),
            r.bindery_cpu,
            r.postgres_cpu,
            r.generator_cpu,
            r.rest_of_machine(),
            group(r.wal_per_request.max(0.0) as u64),
            r.peak_rss_kib
                .map_or("?".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0)),
        );
    }
    let notes: Vec<String> = level.rows.iter().filter_map(row_notes).collect();
    if !notes.is_empty() {
        let _ = writeln!(out, "\n{}", notes.join("\n"));
    }
}

/// The note line of a row, if it has anything to say.
fn row_notes(r: &Row) -> Option<String> {
    let mut parts = Vec::new();
    if !r.note.is_empty() {
        parts.push(r.note.clone());
    }
    if let Some(lag) = r.lag_p99.filter(|&l| l >= 2_000) {
        parts.push(format!(
            "the generator sent p99 {} ms late (counted in the latency)",
            ms(lag)
        ));
    }
    (!parts.is_empty()).then(|| format!("- {} ({}): {}", r.workload, r.mode, parts.join("; ")))
}
