//! The worker: claims queued operations and runs them, in every replica at once.
//!
//! [`Worker::try_execute_next`] is one step (claim one operation, run it, record the
//! outcome) and is public so tests drive the queue without sleeping.
//! [`Worker::run_until_stopped`] loops over it with a bound on concurrent operations,
//! wakes early when this process enqueues work, and on shutdown stops claiming, lets
//! running operations finish within a grace period, and releases the leases of the rest.
//! Beside it run the sweep that enqueues the revocation of expired bindings
//! ([`expiry`]) and the backends' health checks ([`health`]).

pub mod execute;
pub mod expiry;
pub mod health;
pub mod liveness;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::store::ClaimedOperation;

pub use execute::{Execution, Executor, Known, RetryPolicy};

/// What one step did.
#[derive(Debug)]
pub enum StepOutcome {
    /// An operation was claimed and run.
    Ran {
        /// Its id.
        operation_id: uuid::Uuid,
        /// How it ended.
        execution: Execution,
    },
    /// Nothing was due.
    EmptyQueue,
}

/// Settings of the worker loop.
#[derive(Debug, Clone)]
pub struct WorkerOptions {
    /// Operations run at once by this process.
    pub concurrency: usize,
    /// How often to look for work when nothing wakes the worker (other replicas' work,
    /// retries coming due, expired leases).
    pub poll_interval: Duration,
    /// How long running operations may take to finish after shutdown starts.
    pub shutdown_grace: Duration,
}

impl Default for WorkerOptions {
    fn default() -> Self {
        Self {
            concurrency: 16,
            poll_interval: Duration::from_millis(500),
            shutdown_grace: Duration::from_secs(20),
        }
    }
}

/// Runs queued operations.
#[derive(Debug, Clone)]
pub struct Worker {
    executor: Executor,
    owner: Arc<str>,
    wake: Arc<Notify>,
    options: WorkerOptions,
}

impl Worker {
    /// A worker that leases operations as `owner` (unique per process).
    pub fn new(
        executor: Executor,
        owner: Arc<str>,
        wake: Arc<Notify>,
        options: WorkerOptions,
    ) -> Self {
        Self {
            executor,
            owner,
            wake,
            options,
        }
    }

    /// Claims one due operation and runs it to its outcome (or a retry).
    pub async fn try_execute_next(&self) -> anyhow::Result<StepOutcome> {
        let Some(claimed) = self
            .executor
            .store
            .claim_operations(&self.owner, self.executor.lease, 1)
            .await?
            .pop()
        else {
            return Ok(StepOutcome::EmptyQueue);
        };
        let execution = self.run_claimed(&claimed).await?;
        Ok(StepOutcome::Ran {
            operation_id: claimed.operation.operation_id,
            execution,
        })
    }

    /// Runs an operation this worker has claimed, with the instance the claim read, in
    /// a span of its own, and logs how it ended. Shared by the single step and the loop.
    async fn run_claimed(&self, claimed: &ClaimedOperation) -> anyhow::Result<Execution> {
        let op = &claimed.operation;
        let known = claimed
            .instance
            .as_ref()
            .map_or_else(Known::default, Known::instance);
        let span = tracing::info_span!(
            "operation",
            operation_id = %op.operation_id,
            kind = op.kind.as_str(),
            attempt = op.attempts
        );
        let execution = tracing::Instrument::instrument(
            self.executor.run(op, RetryPolicy::Backoff, known),
            span,
        )
        .await?;
        log_execution(op, &execution);
        Ok(execution)
    }

    /// Loops until `stop` is cancelled, then drains as described in the module docs.
    pub async fn run_until_stopped(self, stop: CancellationToken) {
        let slots = Arc::new(Semaphore::new(self.options.concurrency.max(1)));
        let tasks = TaskTracker::new();
        // (operation id, lease token) of every operation running here.
        let running: Arc<std::sync::Mutex<Vec<(uuid::Uuid, uuid::Uuid)>>> = Arc::default();
        let sweeper = tokio::spawn(expiry::sweep_until_stopped(self.clone(), stop.clone()));
        let health = tokio::spawn(health::check_until_stopped(self.clone(), stop.clone()));
        loop {
            let permit = tokio::select! {
                _ = stop.cancelled() => break,
                permit = slots.clone().acquire_owned() => permit.expect("semaphore is never closed"),
            };
            // Fill every free slot with one claim; each claimed operation takes a slot.
            let mut permits = vec![permit];
            while let Ok(more) = slots.clone().try_acquire_owned() {
                permits.push(more);
            }
            // Not raced against `stop`: a claim dropped after its statement committed
            // would leave leased operations outside `running`, unreleased at shutdown
            // until their leases expired. One short statement; the loop checks `stop`
            // again before the next claim, and what this one took is run or released.
            let claimed = self
                .executor
                .store
                .claim_operations(&self.owner, self.executor.lease, permits.len())
                .await;
            match claimed {
                Ok(ops) if !ops.is_empty() => {
                    for (claimed, permit) in ops.into_iter().zip(permits) {
                        let worker = self.clone();
                        let running = running.clone();
                        let id = claimed.operation.operation_id;
                        let token = claimed.operation.lease_token.unwrap_or_default();
                        running.lock().expect("not poisoned").push((id, token));
                        tasks.spawn(async move {
                            if let Err(e) = worker.run_claimed(&claimed).await {
                                tracing::warn!(operation_id = %id, error = %format!("{e:#}"), "operation step failed; it will be retried when its lease expires");
                            }
                            running.lock().expect("not poisoned").retain(|running| running.0 != id);
                            drop(permit);
                        });
                    }
                }
                Ok(_) => {
                    drop(permits);
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(self.options.poll_interval) => {}
                    }
                }
                Err(e) => {
                    drop(permits);
                    tracing::warn!(error = %e, "cannot claim operations; retrying");
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    }
                }
            }
        }
        // Stops at once with `stop`; it holds nothing to release.
        let _ = sweeper.await;
        let _ = health.await;
        tasks.close();
        if tokio::time::timeout(self.options.shutdown_grace, tasks.wait())
            .await
            .is_err()
        {
            let left: Vec<(uuid::Uuid, uuid::Uuid)> = running.lock().expect("not poisoned").clone();
            tracing::warn!(
                count = left.len(),
                "shutdown grace period over; releasing leases of unfinished operations"
            );
            for (id, token) in left {
                if let Err(e) = self.executor.store.release_lease(id, token).await {
                    tracing::warn!(operation_id = %id, error = %e, "could not release a lease; it will expire");
                }
            }
        }
    }
}

fn log_execution(op: &crate::store::OperationRecord, execution: &Execution) {
    match execution {
        Execution::Succeeded(_) => {
            tracing::info!(operation_id = %op.operation_id, kind = op.kind.as_str(), "operation succeeded")
        }
        Execution::Failed { description, .. } => {
            tracing::warn!(operation_id = %op.operation_id, kind = op.kind.as_str(), %description, "operation failed")
        }
        Execution::Retrying(description) => {
            tracing::info!(operation_id = %op.operation_id, kind = op.kind.as_str(), %description, "operation will be retried")
        }
        Execution::LeaseLost => {
            tracing::info!(operation_id = %op.operation_id, "lease lost; another worker finishes the operation")
        }
    }
}
