//! The process's promise to be alive, kept in the state store: renewed four times per
//! period while the process runs, withdrawn when it stops. Other replicas take over
//! the operations of a process whose promise lapsed (it was killed, or cut off from
//! the state database) without waiting for each operation's lease to expire. Taking
//! over a live process's operation is safe: every claim is fenced by its own lease
//! token, so the run it supersedes can no longer write.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::MissedTickBehavior;
use tokio_util::sync::CancellationToken;

use crate::store::Store;

/// Renews `owner`'s promise to live for `period` until `stop` is cancelled, then
/// withdraws it so that whatever the process still holds is free at once.
pub async fn keep_alive(store: Store, owner: Arc<str>, period: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(period / 4);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        match store.heartbeat(&owner, Some(period)).await {
            Ok(()) if failing => {
                failing = false;
                tracing::info!("this process's liveness record is renewed again");
            }
            Ok(()) => {}
            // Once per outage: the claim loop already reports the database as away.
            Err(e) if !failing => {
                failing = true;
                tracing::warn!(error = %e, "cannot renew this process's liveness record; other replicas may take over its operations");
            }
            Err(_) => {}
        }
    }
    if let Err(e) = store.heartbeat(&owner, None).await {
        tracing::debug!(error = %e, "could not withdraw this process's liveness record; it lapses by itself");
    }
}
