//! Binding expiry: a binding whose plan sets `binding_lifetime` stops working at its
//! `expires_at` on every backend.
//!
//! Enforcement rides on the durable-operation machinery: a bounded sweep, run by every
//! replica every [`SWEEP_INTERVAL`], enqueues a `revoke` operation for each expired
//! binding (a unique index keeps one per binding across replicas), and the worker runs
//! it like any other operation: the backend's idempotent unbind drops the binding's
//! user, a transient failure retries with backoff, a crash leaves the row for the next
//! claim. The binding stays until the platform unbinds it (docs/decisions.md).

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::{Executor, Worker};
use crate::store::{BindingState, OperationRecord};

/// How often each replica looks for expired bindings. Credentials stop working at most
/// about this long (plus the revocation's own run) after `expires_at`.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(2);

/// Most revocations one sweep enqueues, so a mass expiry is spread over sweeps and
/// never floods the queue in one statement.
pub const SWEEP_BATCH: i64 = 100;

/// How long a revocation may take before it is failed (the next sweep after a minute
/// enqueues a new one).
pub const REVOKE_DEADLINE: Duration = Duration::from_secs(60 * 60);

impl Worker {
    /// One sweep: enqueues revocations for expired bindings and wakes the worker when
    /// there are any. Public so tests can sweep without waiting for the loop.
    pub async fn sweep_expired_bindings(&self) -> Result<u64, sqlx::Error> {
        let enqueued = self
            .executor
            .store
            .enqueue_revocations(SWEEP_BATCH, REVOKE_DEADLINE)
            .await?;
        if enqueued > 0 {
            tracing::info!(
                count = enqueued,
                "revoking the credentials of expired bindings"
            );
            self.wake.notify_one();
        }
        Ok(enqueued)
    }
}

/// Sweeps every [`SWEEP_INTERVAL`] until `stop` is cancelled. A failing sweep is logged
/// once per outage: the claim loop reports the database as away already.
pub(super) async fn sweep_until_stopped(worker: Worker, stop: CancellationToken) {
    let mut tick = tokio::time::interval(SWEEP_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        match worker.sweep_expired_bindings().await {
            Ok(_) => failing = false,
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot look for expired bindings; retrying");
            }
            Err(_) => {}
        }
    }
}

impl Executor {
    /// True when a revocation has nothing to do: its binding is gone, deleted, or
    /// already revoked (by an earlier run whose outcome was lost, say).
    pub(super) async fn revocation_is_moot(&self, op: &OperationRecord) -> anyhow::Result<bool> {
        let Some(binding_id) = op.binding_id.as_deref() else {
            return Ok(true);
        };
        let binding = self.store.find_binding(binding_id).await?;
        Ok(binding.is_none_or(|b| b.state == BindingState::Deleted || b.revoked_at.is_some()))
    }
}
