//! Health of the managed services whose backend can tell (an adapter's `health`
//! action): every replica checks each such plan every [`HEALTH_INTERVAL`], exports the
//! gauge `bindery_backend_healthy{service, plan}` (1 or 0), and logs when it changes.
//! Readiness does not follow it (docs/decisions.md): a service that is down fails its
//! own operations, and the gauge is what an operator alerts on.

use std::collections::HashMap;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::Worker;

/// How often each replica checks. An adapter's check is one short process per plan.
pub const HEALTH_INTERVAL: Duration = Duration::from_secs(60);

/// One plan's check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanHealth {
    /// The service's name in the catalog.
    pub service: String,
    /// The plan's name in the catalog.
    pub plan: String,
    /// `None` when healthy, else what the backend said.
    pub problem: Option<String>,
}

impl Worker {
    /// Checks every plan whose backend has a health check, once, and sets the gauge.
    /// Public so tests check without waiting for the loop.
    pub async fn check_backend_health(&self) -> Vec<PlanHealth> {
        let catalog = self.executor.catalog.clone();
        let mut checked = Vec::new();
        for service in catalog.services() {
            for plan in &service.plans {
                let Some(backend) = self.executor.backends.get(&plan.backend_kind) else {
                    continue;
                };
                let Some(result) = backend.health(&plan.backend_settings).await else {
                    continue;
                };
                let problem = result.err().map(|e| e.to_string());
                metrics::gauge!("bindery_backend_healthy", "service" => service.name.clone(), "plan" => plan.name.clone())
                    .set(if problem.is_none() { 1.0 } else { 0.0 });
                checked.push(PlanHealth {
                    service: service.name.clone(),
                    plan: plan.name.clone(),
                    problem,
                });
            }
        }
        checked
    }
}

/// Checks every [`HEALTH_INTERVAL`] until `stop` is cancelled; logs each plan's changes
/// only (the first check logs the unhealthy ones).
pub(super) async fn check_until_stopped(worker: Worker, stop: CancellationToken) {
    let mut tick = tokio::time::interval(HEALTH_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: HashMap<(String, String), bool> = HashMap::new();
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        // A check still running at shutdown is dropped, which kills its adapter.
        let checked = tokio::select! {
            _ = stop.cancelled() => break,
            checked = worker.check_backend_health() => checked,
        };
        for PlanHealth {
            service,
            plan,
            problem,
        } in checked
        {
            let healthy = problem.is_none();
            let before = last.insert((service.clone(), plan.clone()), healthy);
            match (before, problem) {
                (Some(false), None) => {
                    tracing::info!(%service, %plan, "the plan's service answers its health check again")
                }
                (Some(true) | None, Some(problem)) => {
                    tracing::warn!(%service, %plan, %problem, "the plan's service fails its health check")
                }
                _ => {}
            }
        }
    }
}
