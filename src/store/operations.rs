//! The store's operation queue methods: the logic and SQL both databases share, and
//! what each says in its own SQL forwarded to it.

use std::time::Duration;

use uuid::Uuid;

use super::row::OPERATION_COLUMNS;
use super::{
    ClaimedOperation, InstancePoll, NewOperation, OperationRecord, OperationRow, OperationTarget,
    Outcome, Store,
};

impl Store {
    /// Reads one operation.
    pub async fn find_operation(
        &self,
        operation_id: Uuid,
    ) -> Result<Option<OperationRecord>, sqlx::Error> {
        let statement =
            format!("select {OPERATION_COLUMNS} from operation where operation_id = $1");
        let row: Option<OperationRow> = dispatch!(self, s => sqlx::query_as(&statement)
            .bind(s.value(&operation_id))
            .fetch_optional(s.reader())
            .await?);
        Ok(row.map(Into::into))
    }

    /// The newest instance-level operation (provision, update, deprovision) of an instance.
    pub async fn latest_instance_operation(
        &self,
        instance_id: &str,
    ) -> Result<Option<OperationRecord>, sqlx::Error> {
        self.latest_operation(
            "instance_id = $1 and kind in ('provision', 'update', 'deprovision')",
            instance_id,
        )
        .await
    }

    /// The newest operation of a binding.
    pub async fn latest_binding_operation(
        &self,
        binding_id: &str,
    ) -> Result<Option<OperationRecord>, sqlx::Error> {
        self.latest_operation("binding_id = $1 and kind <> 'revoke'", binding_id)
            .await
    }

    /// An instance's state and its newest instance-level operation in one statement (a
    /// poll without a token: one round trip and one pool checkout instead of two, and
    /// the instance's JSON columns are not read). `None` when no such instance exists.
    pub async fn instance_poll(
        &self,
        instance_id: &str,
    ) -> Result<Option<InstancePoll>, sqlx::Error> {
        let newest_first = dispatch!(self, s => s.newest_first());
        let operation: Vec<String> = OPERATION_COLUMNS
            .split(',')
            .map(|column| format!("o.{}", column.trim()))
            .collect();
        let statement = format!(
            "select {}, i.state as instance_state from service_instance i \
             left join operation o on o.operation_id = ( \
                 select operation_id from operation \
                 where instance_id = i.instance_id \
                     and kind in ('provision', 'update', 'deprovision') \
                 order by {newest_first} limit 1) \
             where i.instance_id = $1",
            operation.join(", ")
        );
        self.row_by(&statement, instance_id).await
    }

    /// The newest operation that `filter` (a fixed condition, never input; `$1` is
    /// `id`) picks, in the order the store keeps them.
    async fn latest_operation(
        &self,
        filter: &'static str,
        id: &str,
    ) -> Result<Option<OperationRecord>, sqlx::Error> {
        let newest_first = dispatch!(self, s => s.newest_first());
        let statement = format!(
            "select {OPERATION_COLUMNS} from operation where {filter} \
             order by {newest_first} limit 1"
        );
        let row: Option<OperationRow> = self.row_by(&statement, id).await?;
        Ok(row.map(Into::into))
    }

    /// Claims the next runnable operation for `owner`: one that is in progress, due,
    /// and whose lease is free, expired, or held by a process known to be gone. The
    /// record carries the claim's own lease token. No transaction stays open while
    /// the backend works.
    pub async fn claim_next_operation(
        &self,
        owner: &str,
        lease: Duration,
    ) -> Result<Option<OperationRecord>, sqlx::Error> {
        Ok(self
            .claim_operations(owner, lease, 1)
            .await?
            .pop()
            .map(|claimed| claimed.operation))
    }

    /// Claims up to `limit` runnable operations at once, oldest due first, each with
    /// its instance (a worker with several free slots fills them with one statement).
    /// An operation waiting for a superseded run that still holds its lease is not
    /// runnable.
    pub async fn claim_operations(
        &self,
        owner: &str,
        lease: Duration,
        limit: usize,
    ) -> Result<Vec<ClaimedOperation>, sqlx::Error> {
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        dispatch!(self, s => s.claim_operations(owner, lease, limit).await)
    }

    /// Extends the lease; `false` when the claim holding `token` no longer holds it
    /// (the operation was taken over, finished or superseded).
    pub async fn renew_lease(
        &self,
        operation_id: Uuid,
        token: Uuid,
        lease: Duration,
    ) -> Result<bool, sqlx::Error> {
        dispatch!(self, s => s.renew_lease(operation_id, token, lease).await)
    }

    /// Gives the operation back to the queue, to run again after `delay`.
    pub async fn retry_operation_later(
        &self,
        operation_id: Uuid,
        token: Uuid,
        delay: Duration,
        description: &str,
    ) -> Result<bool, sqlx::Error> {
        dispatch!(self, s => s.retry_operation_later(operation_id, token, delay, description).await)
    }

    /// Gives the claim holding `token` back without changing anything else, so that
    /// another worker (or replica) can take the operation, or the delete waiting for
    /// it, at once: at graceful shutdown, and when a run stops working on an
    /// operation it no longer owns. An operation still in progress does not count
    /// the attempt.
    pub async fn release_lease(&self, operation_id: Uuid, token: Uuid) -> Result<(), sqlx::Error> {
        dispatch!(self, s => s.release_lease(operation_id, token).await)
    }

    /// Records how the operation ended and applies its effect to the instance or
    /// binding, atomically, only while the claim holding `token` holds the lease.
    /// `false` means the claim was lost: another run owns the operation now, or it
    /// was finished or superseded, and nothing was written.
    pub async fn finish_operation(
        &self,
        op: &OperationRecord,
        token: Uuid,
        outcome: &Outcome,
    ) -> Result<bool, sqlx::Error> {
        dispatch!(self, s => s.record_outcome(op, Some(token), outcome).await)
    }

    /// Fails an operation that has passed its deadline, whoever holds it.
    pub async fn fail_expired_operation(
        &self,
        op: &OperationRecord,
        description: &str,
    ) -> Result<bool, sqlx::Error> {
        let outcome = Outcome::Failed {
            description: description.to_owned(),
        };
        dispatch!(self, s => s.record_outcome(op, None, &outcome).await)
    }

    /// Promises that process `owner` stays alive for `until` from now, or (`None`)
    /// says it has stopped, and forgets processes gone for a day. Leases held by a
    /// process whose promise lapsed are taken over at once instead of when they
    /// expire.
    pub async fn heartbeat(&self, owner: &str, until: Option<Duration>) -> Result<(), sqlx::Error> {
        dispatch!(self, s => s.heartbeat(owner, until).await)
    }

    /// Stops a running create (provision or bind) in favour of a delete: the running
    /// operation is failed, `replacement` becomes the active operation, and it waits
    /// (`waits_for`) until the running attempt gives its claim back, its lease
    /// expires, or its process is known to be gone. The running attempt notices at its
    /// next renewal (within a second) and stops, so the delete never races its create.
    /// `false` when `running` is no longer the active operation.
    pub async fn supersede_operation(
        &self,
        target: OperationTarget<'_>,
        running: Uuid,
        replacement: &NewOperation<'_>,
        reason: &str,
    ) -> Result<bool, sqlx::Error> {
        dispatch!(self, s => s.supersede_operation(target, running, replacement, reason).await)
    }

    /// At start-up: frees every lease when no other process can be running on this
    /// store, which is known for SQLite (one process per file, held by its lock file):
    /// what a killed predecessor held is taken over at once. A no-op on PostgreSQL,
    /// where other replicas may be alive; their liveness records decide there.
    pub async fn release_orphaned_leases(&self) -> Result<(), sqlx::Error> {
        match self {
            Self::Postgres(_) => Ok(()),
            Self::Sqlite(s) => s.release_orphaned_leases().await,
        }
    }

    /// Enqueues a `revoke` operation for up to `limit` bindings whose `expires_at` has
    /// passed, that are ready and idle, not yet revoked, and without one queued already
    /// (by any replica: a unique index keeps one per binding) or failed within the last
    /// minute (a failure that retries cannot cure is tried again once a minute, not at
    /// every sweep); oldest expiry first. Each has `deadline` to finish. Returns how
    /// many were enqueued.
    pub async fn enqueue_revocations(
        &self,
        limit: i64,
        deadline: Duration,
    ) -> Result<u64, sqlx::Error> {
        dispatch!(self, s => s.enqueue_revocations(limit, deadline).await)
    }

    /// Operations waiting or running, and the age in seconds of the oldest of them.
    pub async fn queue_stats(&self) -> Result<(i64, f64), sqlx::Error> {
        dispatch!(self, s => s.queue_stats().await)
    }
}
