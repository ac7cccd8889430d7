//! The store: the only code that reads or writes bindery's own state (instances,
//! bindings, operations, the audit trail).
//!
//! Two databases keep that state behind one interface, [`Store`]: PostgreSQL, for
//! production and for any number of replicas, and a SQLite file, so that a broker
//! tried on a laptop needs no database server. The URL's scheme picks one. Both
//! enforce the same rules (idempotency, conflicts, tombstones, one owner per
//! operation) in the database, never with locks held by the broker's code.

pub mod copy;
mod model;
pub mod postgres;
pub mod sqlite;

use std::time::Duration;

pub use model::{
    AuditEvent, BindingInsert, BindingRecord, BindingState, ClaimedOperation, InstanceRecord,
    InstanceState, NewBinding, NewInstance, NewOperation, OperationKind, OperationRecord,
    OperationTarget, Outcome, PlanUsage, SealedCredentials,
};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use copy::{ExportedBinding, ExportedInstance, ExportedOperation, RowCounts};

use uuid::Uuid;

/// How to size and wait on the store's connections.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// Most connections the pool opens. A SQLite store opens this many readers and
    /// always one writer.
    pub max_connections: u32,
    /// How long a request waits for a connection before answering 503.
    pub acquire_timeout: Duration,
}

impl Default for StoreOptions {
    fn default() -> Self {
        Self {
            max_connections: 16,
            acquire_timeout: Duration::from_secs(3),
        }
    }
}

/// Handle to bindery's state, whichever database keeps it. Cheap to clone.
///
/// An enum rather than a trait object: the set of stores is closed, every method is
/// async, and a `match` makes the compiler check that each store implements each
/// method (docs/decisions.md).
#[derive(Debug, Clone)]
pub enum Store {
    /// A PostgreSQL database.
    Postgres(PgStore),
    /// A SQLite file, for one process.
    Sqlite(SqliteStore),
}

/// Calls the same method on whichever store this is.
macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Store::Postgres($store) => $call,
            Store::Sqlite($store) => $call,
        }
    };
}

impl Store {
    /// Opens the store a URL names, by its scheme:
    ///
    /// * `postgres://` or `postgresql://`: the database is created when it is missing;
    ///   connections are made lazily so the broker starts while the server is away.
    /// * `sqlite://PATH` or `sqlite:PATH`: the file (and its directory) is created when
    ///   missing. Fails when another process has it open.
    pub async fn open(url: &str, options: &StoreOptions) -> anyhow::Result<Self> {
        match StoreKind::of(url)? {
            StoreKind::Postgres => {
                let pg = postgres::connect_options(url)?;
                postgres::ensure_database(&pg).await?;
                Ok(Self::Postgres(PgStore::connect_lazy(pg, options)))
            }
            StoreKind::Sqlite => {
                let path = sqlite::path_from_url(url)?;
                Ok(Self::Sqlite(SqliteStore::open(&path, options).await?))
            }
        }
    }

    /// Opens a store that must exist already, creating nothing (a store to copy from):
    /// a missing SQLite file is an error, and a PostgreSQL database that does not
    /// exist is reported by [`is_ready`](Self::is_ready) as not ready.
    pub async fn open_existing(url: &str, options: &StoreOptions) -> anyhow::Result<Self> {
        match StoreKind::of(url)? {
            StoreKind::Postgres => Ok(Self::Postgres(PgStore::connect_lazy(
                postgres::connect_options(url)?,
                options,
            ))),
            StoreKind::Sqlite => {
                let path = sqlite::path_from_url(url)?;
                Ok(Self::Sqlite(
                    SqliteStore::open_existing(&path, options).await?,
                ))
            }
        }
    }

    /// What this store is, for the start-up log: never a password.
    pub fn describe(&self) -> String {
        match self {
            Self::Postgres(_) => "PostgreSQL".to_owned(),
            Self::Sqlite(s) => format!("SQLite file {}", s.path().display()),
        }
    }

    /// Closes the store's connections and waits until they are closed. A SQLite store
    /// checkpoints its write-ahead log into the file as its last connection closes;
    /// its lock file is released when the last handle is dropped.
    pub async fn close(&self) {
        dispatch!(self, s => s.close().await)
    }

    /// Applies pending migrations.
    pub async fn migrate(&self) -> anyhow::Result<()> {
        dispatch!(self, s => s.migrate().await)
    }

    /// True when the database answers and every embedded migration is applied.
    pub async fn is_ready(&self) -> bool {
        dispatch!(self, s => s.is_ready().await)
    }

    /// Inserts the instance and its provision operation together, or does nothing
    /// when a live instance with this id exists (then `false`). A tombstone is
    /// revived: ids are the platform's to reuse after a delete. So is an instance whose
    /// provision failed and that nothing runs on: the platform's corrected retry replaces it
    /// (docs/decisions.md).
    pub async fn insert_instance(
        &self,
        new: &NewInstance<'_>,
        operation: &NewOperation<'_>,
    ) -> Result<bool, sqlx::Error> {
        dispatch!(self, s => s.insert_instance(new, operation).await)
    }

    /// Live instances counted per (service, plan, recorded backend kind), for the
    /// start-up check against the catalog.
    pub async fn instance_plans(&self) -> Result<Vec<PlanUsage>, sqlx::Error> {
        dispatch!(self, s => s.instance_plans().await)
    }

    /// Records `backend_kind` on the instances of a plan that have none (rows written
    /// before the column existed); returns how many were filled.
    pub async fn fill_backend_kind(
        &self,
        service_id: &str,
        plan_id: &str,
        backend_kind: &str,
    ) -> Result<u64, sqlx::Error> {
        dispatch!(self, s => s.fill_backend_kind(service_id, plan_id, backend_kind).await)
    }

    /// Reads an instance, tombstones included.
    pub async fn find_instance(
        &self,
        instance_id: &str,
    ) -> Result<Option<InstanceRecord>, sqlx::Error> {
        dispatch!(self, s => s.find_instance(instance_id).await)
    }

    /// Makes `operation` the instance's active operation if none is running, no
    /// binding operation is running on it, and the instance is in one of `allowed`
    /// states; inserts the operation with it. `false` when something got there first.
    pub async fn begin_instance_operation(
        &self,
        instance_id: &str,
        allowed: &[InstanceState],
        operation: &NewOperation<'_>,
        new_state: Option<InstanceState>,
    ) -> Result<bool, sqlx::Error> {
        dispatch!(self, s => s.begin_instance_operation(instance_id, allowed, operation, new_state).await)
    }

    /// The active operation of an instance, if any.
    pub async fn active_instance_operation(
        &self,
        instance: &InstanceRecord,
    ) -> Result<Option<OperationRecord>, sqlx::Error> {
        match instance.active_operation_id {
            Some(id) => self.find_operation(id).await,
            None => Ok(None),
        }
    }

    /// Inserts the binding and its bind operation together, while its instance is
    /// ready and idle; a deprovision cannot start in between. A tombstone, or a failed
    /// binding of the same instance that nothing runs on, is replaced.
    pub async fn insert_binding(
        &self,
        new: &NewBinding<'_>,
        operation: &NewOperation<'_>,
    ) -> Result<BindingInsert, sqlx::Error> {
        dispatch!(self, s => s.insert_binding(new, operation).await)
    }

    /// Reads a binding, tombstones included.
    pub async fn find_binding(
        &self,
        binding_id: &str,
    ) -> Result<Option<BindingRecord>, sqlx::Error> {
        dispatch!(self, s => s.find_binding(binding_id).await)
    }

    /// Makes `operation` the binding's active operation if none is running and the
    /// binding is in one of `allowed` states. `false` when something else got there first.
    pub async fn begin_binding_operation(
        &self,
        binding_id: &str,
        allowed: &[BindingState],
        operation: &NewOperation<'_>,
        new_state: Option<BindingState>,
    ) -> Result<bool, sqlx::Error> {
        dispatch!(self, s => s.begin_binding_operation(binding_id, allowed, operation, new_state).await)
    }

    /// Labels of the keys that sealed stored credentials, each with its count.
    pub async fn credential_key_labels(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        dispatch!(self, s => s.credential_key_labels().await)
    }

    /// Up to `limit` sealed credentials not sealed with `primary`, after `after`
    /// (binding ids in order, so a rotation pages through them).
    pub async fn credentials_not_sealed_with(
        &self,
        primary: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<(String, SealedCredentials)>, sqlx::Error> {
        dispatch!(self, s => s.credentials_not_sealed_with(primary, after, limit).await)
    }

    /// Replaces sealed credentials, only if they are still those sealed by `old_label`
    /// (a concurrent rebind or rotation wins).
    pub async fn reseal_credentials(
        &self,
        binding_id: &str,
        old_label: &str,
        sealed: &SealedCredentials,
    ) -> Result<bool, sqlx::Error> {
        dispatch!(self, s => s.reseal_credentials(binding_id, old_label, sealed).await)
    }

    /// Reads one operation.
    pub async fn find_operation(
        &self,
        operation_id: Uuid,
    ) -> Result<Option<OperationRecord>, sqlx::Error> {
        dispatch!(self, s => s.find_operation(operation_id).await)
    }

    /// The newest instance-level operation (provision, update, deprovision) of an instance.
    pub async fn latest_instance_operation(
        &self,
        instance_id: &str,
    ) -> Result<Option<OperationRecord>, sqlx::Error> {
        dispatch!(self, s => s.latest_instance_operation(instance_id).await)
    }

    /// The newest operation of a binding.
    pub async fn latest_binding_operation(
        &self,
        binding_id: &str,
    ) -> Result<Option<OperationRecord>, sqlx::Error> {
        dispatch!(self, s => s.latest_binding_operation(binding_id).await)
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
    /// operation it no longer owns.
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
        dispatch!(self, s => s.finish_operation(op, token, outcome).await)
    }

    /// Promises that process `owner` stays alive for `until` from now, or (`None`)
    /// says it has stopped. Leases held by a process whose promise lapsed are taken
    /// over at once instead of when they expire.
    pub async fn heartbeat(&self, owner: &str, until: Option<Duration>) -> Result<(), sqlx::Error> {
        dispatch!(self, s => s.heartbeat(owner, until).await)
    }

    /// Fails an operation that has passed its deadline, whoever holds it.
    pub async fn fail_expired_operation(
        &self,
        op: &OperationRecord,
        description: &str,
    ) -> Result<bool, sqlx::Error> {
        dispatch!(self, s => s.fail_expired_operation(op, description).await)
    }

    /// Stops a running create (provision or bind) in favour of a delete: the running
    /// operation is failed, `replacement` becomes the active operation, and it waits
    /// until the running attempt gives its claim back, its lease expires, or its
    /// process is known to be gone. `false` when `running` is no longer the active
    /// operation.
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
    /// minute. Each has `deadline` to finish. Returns how many were enqueued.
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

    /// Appends audit events, in order.
    pub async fn record_audit_events(&self, events: &[AuditEvent]) -> Result<(), sqlx::Error> {
        dispatch!(self, s => s.record_audit_events(events).await)
    }
}

/// Whole rows in and out, for copying state between stores ([`copy::copy_state`]).
impl Store {
    /// Rows per table.
    pub async fn count_rows(&self) -> Result<RowCounts, sqlx::Error> {
        dispatch!(self, s => s.count_rows().await)
    }

    /// Up to `limit` instances (tombstones included) after `after`, in id order.
    pub async fn export_instances(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ExportedInstance>, sqlx::Error> {
        dispatch!(self, s => s.export_instances(after, limit).await)
    }

    /// Inserts instances exactly as exported, in one transaction.
    pub async fn import_instances(&self, rows: &[ExportedInstance]) -> Result<(), sqlx::Error> {
        dispatch!(self, s => s.import_instances(rows).await)
    }

    /// Up to `limit` bindings (tombstones included) after `after`, in id order.
    pub async fn export_bindings(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ExportedBinding>, sqlx::Error> {
        dispatch!(self, s => s.export_bindings(after, limit).await)
    }

    /// Inserts bindings exactly as exported, in one transaction; their instances must
    /// be there already.
    pub async fn import_bindings(&self, rows: &[ExportedBinding]) -> Result<(), sqlx::Error> {
        dispatch!(self, s => s.import_bindings(rows).await)
    }

    /// Up to `limit` operations (finished ones included) after `after`, in id order.
    pub async fn export_operations(
        &self,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<ExportedOperation>, sqlx::Error> {
        dispatch!(self, s => s.export_operations(after, limit).await)
    }

    /// Inserts operations exactly as exported, in one transaction.
    pub async fn import_operations(&self, rows: &[ExportedOperation]) -> Result<(), sqlx::Error> {
        dispatch!(self, s => s.import_operations(rows).await)
    }

    /// Up to `limit` audit events after the one numbered `after`, oldest first, each
    /// with its number in this store.
    pub async fn export_audit_events(
        &self,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<(i64, AuditEvent)>, sqlx::Error> {
        dispatch!(self, s => s.export_audit_events(after, limit).await)
    }
}

/// Which store a URL names.
enum StoreKind {
    Postgres,
    Sqlite,
}

impl StoreKind {
    /// By the URL's scheme. The error names the scheme only: the rest of a URL may hold
    /// a password.
    fn of(url: &str) -> anyhow::Result<Self> {
        let scheme = url
            .split_once(':')
            .map(|(scheme, _)| scheme.to_ascii_lowercase())
            .filter(|scheme| !scheme.is_empty())
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "the database URL has no scheme: use postgres://USER@HOST/DATABASE or sqlite://PATH"
                )
            })?;
        match scheme.as_str() {
            "postgres" | "postgresql" => Ok(Self::Postgres),
            "sqlite" => Ok(Self::Sqlite),
            other => anyhow::bail!(
                "the database URL's scheme `{other}` is not supported: use postgres://USER@HOST/DATABASE or sqlite://PATH"
            ),
        }
    }
}

/// True when an error means "the database is unreachable or busy" rather than "the
/// query is wrong": those become 503 so a platform retries instead of
/// orphan-mitigating.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(e) => {
            // Both databases report numeric codes: which one answered decides what the
            // number means.
            if e.try_downcast_ref::<sqlx::sqlite::SqliteError>().is_some() {
                // SQLite's extended code; its low byte is the primary code. 5 BUSY, 6
                // LOCKED: the file is held by something else for longer than the busy
                // timeout.
                return e
                    .code()
                    .and_then(|c| c.parse::<i32>().ok())
                    .is_some_and(|c| matches!(c & 0xff, 5 | 6));
            }
            e.code().is_some_and(|c| {
                // PostgreSQL 08: connection exception; 57P: operator intervention
                // (shutdown, starting up); 53300: too many connections.
                c.starts_with("08") || c.starts_with("57P") || c == "53300"
            })
        }
        _ => false,
    }
}
