//! Offering load: closed-loop and open-loop runs of one workload.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::client::Ctx;
use crate::stats::group;
use crate::workload::{Input, Kind, Rec, micros, run_unit};

/// Most requests in flight in an open-loop run; later ones wait (and are charged for it,
/// latency counting from the scheduled time). 64, like a platform's bounded client pool:
/// with 512, a 2 ms hiccup at 28,000 req/s made the generator open hundreds of new
/// connections, and both processes then spent the shared cores on connection set-up
/// (bindery's RSS 21 -> 55 MiB, p99 40-70 ms) instead of on requests.
const MAX_IN_FLIGHT: usize = 64;

/// How a run offers load.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Mode {
    /// `connections` tasks, each sending its next unit when the last one is answered.
    Closed { connections: usize },
    /// Units started on a fixed timetable, `rate` per second.
    Open { rate: f64 },
}

impl Mode {
    pub(crate) fn label(self, unit: &str) -> String {
        match self {
            Mode::Closed { connections } => format!("closed, {connections} conn"),
            Mode::Open { rate } => format!("open, {} {unit}/s", group(rate as u64)),
        }
    }
}

pub(crate) struct Outcome {
    pub(crate) rec: Rec,
    pub(crate) elapsed: Duration,
}

type Generator = JoinHandle<Result<Rec, String>>;

/// Runs `kind` for `duration` (at most `limit` units) and gathers what every generator
/// task saw; the first error stops them all.
pub(crate) async fn drive(
    ctx: &Arc<Ctx>,
    kind: Kind,
    input: &Arc<Input>,
    mode: Mode,
    duration: Duration,
    limit: u64,
) -> Result<Outcome, String> {
    let next = Arc::new(AtomicU64::new(0));
    let start;
    let mut tasks = Vec::new();
    match mode {
        Mode::Closed { connections } => {
            start = Instant::now();
            let deadline = start + duration;
            for _ in 0..connections {
                let (ctx, input, next) = (ctx.clone(), input.clone(), next.clone());
                tasks.push(tokio::spawn(closed_loop(
                    ctx, kind, input, next, deadline, limit,
                )));
            }
        }
        Mode::Open { rate } => {
            let n = ((rate * duration.as_secs_f64()).round() as u64).clamp(1, limit);
            let interval = 1.0 / rate;
            start = Instant::now() + Duration::from_millis(20);
            for _ in 0..(n as usize).min(MAX_IN_FLIGHT) {
                let (ctx, input, next) = (ctx.clone(), input.clone(), next.clone());
                tasks.push(tokio::spawn(open_loop(
                    ctx, kind, input, next, start, interval, n,
                )));
            }
        }
    }
    gather(tasks, start).await
}

/// One closed-loop connection: the next unit as soon as the last one is answered.
async fn closed_loop(
    ctx: Arc<Ctx>,
    kind: Kind,
    input: Arc<Input>,
    next: Arc<AtomicU64>,
    deadline: Instant,
    limit: u64,
) -> Result<Rec, String> {
    let mut rec = Rec::default();
    while Instant::now() < deadline && !ctx.abort.load(Ordering::Relaxed) {
        let k = next.fetch_add(1, Ordering::Relaxed);
        if k >= limit {
            break;
        }
        match run_unit(&ctx, kind, &input, k, Instant::now(), &mut rec).await {
            Ok(true) => rec.units += 1,
            Ok(false) => break,
            Err(e) => {
                ctx.abort.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
    }
    rec.end = Some(Instant::now());
    Ok(rec)
}

/// One open-loop sender: unit `k` at `start + k × interval`, of `n` in all.
async fn open_loop(
    ctx: Arc<Ctx>,
    kind: Kind,
    input: Arc<Input>,
    next: Arc<AtomicU64>,
    start: Instant,
    interval: f64,
    n: u64,
) -> Result<Rec, String> {
    let mut rec = Rec::default();
    while !ctx.abort.load(Ordering::Relaxed) {
        let k = next.fetch_add(1, Ordering::Relaxed);
        if k >= n {
            break;
        }
        let scheduled = start + Duration::from_secs_f64(k as f64 * interval);
        tokio::time::sleep_until(scheduled.into()).await;
        rec.lag.push(micros(scheduled));
        match run_unit(&ctx, kind, &input, k, scheduled, &mut rec).await {
            Ok(true) => rec.units += 1,
            Ok(false) => break,
            Err(e) => {
                ctx.abort.store(true, Ordering::Relaxed);
                return Err(e);
            }
        }
    }
    rec.end = Some(Instant::now());
    Ok(rec)
}

/// Merges the tasks' records; the run lasted from `start` to the last task's end.
async fn gather(tasks: Vec<Generator>, start: Instant) -> Result<Outcome, String> {
    let mut all = Rec::default();
    let mut first_error = None;
    for task in tasks {
        match task.await {
            Ok(Ok(rec)) => all.merge(rec),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(format!("a generator task panicked: {e}"));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let elapsed = all
        .end
        .map_or(Duration::ZERO, |end| end.saturating_duration_since(start));
    Ok(Outcome { rec: all, elapsed })
}
