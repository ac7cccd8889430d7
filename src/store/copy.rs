//! Copying bindery's whole state from one store to another (`bindery migrate-store`),
//! e.g. from the SQLite file a broker started with to PostgreSQL, to run replicas.
//!
//! Every column of every row is copied: tombstones, leases, timestamps and sealed
//! credentials (still sealed: the keys do not change). Rows are read a page at a time
//! in key order and each page is written in one transaction on the target. The copy is
//! meant for a stopped broker: nothing here stops writers to the source.

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::{BindingState, InstanceState, OperationKind, SealedCredentials, Store};
use crate::osb::OperationState;

/// Rows read per page (and written per transaction) by `bindery migrate-store`.
pub const DEFAULT_PAGE_SIZE: i64 = 500;

/// A service instance with every stored column.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedInstance {
    /// Platform id.
    pub instance_id: String,
    /// Catalog service id.
    pub service_id: String,
    /// Current plan id.
    pub plan_id: String,
    /// Current parameters.
    pub parameters: Value,
    /// As sent at provision.
    pub organization_guid: Option<String>,
    /// As sent at provision.
    pub space_guid: Option<String>,
    /// Platform context.
    pub context: Option<Value>,
    /// Handed out at provision.
    pub dashboard_url: Option<String>,
    /// Life-cycle state.
    pub state: InstanceState,
    /// The operation that owns the instance now.
    pub active_operation_id: Option<Uuid>,
    /// The plan's maintenance version applied.
    pub maintenance_version: Option<String>,
    /// Created (or revived).
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Deprovisioned (a tombstone).
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A service binding with every stored column.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedBinding {
    /// Platform id.
    pub binding_id: String,
    /// Its instance.
    pub instance_id: String,
    /// As requested.
    pub service_id: String,
    /// As requested.
    pub plan_id: String,
    /// Validated parameters.
    pub parameters: Value,
    /// Effective app guid.
    pub app_guid: Option<String>,
    /// Route, for route services.
    pub route: Option<String>,
    /// The whole `bind_resource`.
    pub bind_resource: Option<Value>,
    /// Platform context.
    pub context: Option<Value>,
    /// Sealed credentials, as stored.
    pub credentials: Option<SealedCredentials>,
    /// Life-cycle state.
    pub state: BindingState,
    /// The operation that owns the binding now.
    pub active_operation_id: Option<Uuid>,
    /// Created (or revived).
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Unbound (a tombstone).
    pub deleted_at: Option<DateTime<Utc>>,
    /// End of validity.
    pub expires_at: Option<DateTime<Utc>>,
    /// The binding this one rotates.
    pub predecessor_binding_id: Option<String>,
    /// When its expired credentials were revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// An operation with every stored column.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportedOperation {
    /// Id and token.
    pub operation_id: Uuid,
    /// Its instance.
    pub instance_id: String,
    /// Its binding.
    pub binding_id: Option<String>,
    /// What it does.
    pub kind: OperationKind,
    /// The wire state.
    pub state: OperationState,
    /// User-facing text.
    pub description: Option<String>,
    /// What it applies.
    pub request: Value,
    /// How many times it was started.
    pub attempts: i32,
    /// When a worker may next run it.
    pub next_attempt_at: DateTime<Utc>,
    /// Who holds the lease.
    pub lease_owner: Option<String>,
    /// Until when.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The token of the claim holding the lease.
    pub lease_token: Option<Uuid>,
    /// The superseded operation this one waits for.
    pub waits_for: Option<Uuid>,
    /// When it must have finished.
    pub deadline_at: DateTime<Utc>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Finished.
    pub finished_at: Option<DateTime<Utc>>,
}

/// Rows per table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RowCounts {
    /// Service instances, tombstones included.
    pub instances: i64,
    /// Service bindings, tombstones included.
    pub bindings: i64,
    /// Operations, finished ones included.
    pub operations: i64,
    /// Audit events.
    pub audit_events: i64,
}

/// Copies every instance, binding, operation and audit event of `from` into `to`.
///
/// `from` must be migrated to this version of bindery; `to` is migrated first and
/// must hold no instance, binding or operation (its audit trail, if any, is appended
/// to). Returns the rows copied. A copy that fails half-way leaves the target partly
/// filled: empty it (or start with a new one) before running it again.
pub async fn copy_state(from: &Store, to: &Store, page_size: i64) -> anyhow::Result<RowCounts> {
    anyhow::ensure!(page_size > 0, "the page size must be positive");
    if !from.is_ready().await {
        anyhow::bail!(
            "the source store ({}) is unreachable or not migrated to this version of bindery: run `bindery migrate` against it first",
            from.describe()
        );
    }
    to.migrate().await.context("migrating the target store")?;
    let held = to
        .count_rows()
        .await
        .context("counting the target's rows")?;
    if held.instances + held.bindings + held.operations > 0 {
        anyhow::bail!(
            "the target store ({}) already holds state ({} instance(s), {} binding(s), {} operation(s)); migrate-store copies only into an empty store",
            to.describe(),
            held.instances,
            held.bindings,
            held.operations
        );
    }
    let mut copied = RowCounts::default();

    // Instances before bindings: a binding's instance must exist (a foreign key).
    let mut after: Option<String> = None;
    loop {
        let page = from.export_instances(after.as_deref(), page_size).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.instance_id.clone());
        to.import_instances(&page)
            .await
            .context("writing instances to the target")?;
        copied.instances += count(&page);
    }

    let mut after: Option<String> = None;
    loop {
        let page = from.export_bindings(after.as_deref(), page_size).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.binding_id.clone());
        to.import_bindings(&page)
            .await
            .context("writing bindings to the target")?;
        copied.bindings += count(&page);
    }

    let mut after: Option<Uuid> = None;
    loop {
        let page = from.export_operations(after, page_size).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.operation_id);
        to.import_operations(&page)
            .await
            .context("writing operations to the target")?;
        copied.operations += count(&page);
    }

    // In the source's order; the target numbers them anew after any it holds.
    let mut after: Option<i64> = None;
    loop {
        let page = from.export_audit_events(after, page_size).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        let events: Vec<_> = page.into_iter().map(|(_, event)| event).collect();
        to.record_audit_events(&events)
            .await
            .context("writing audit events to the target")?;
        copied.audit_events += count(&events);
    }
    Ok(copied)
}

fn count<T>(page: &[T]) -> i64 {
    i64::try_from(page.len()).unwrap_or(i64::MAX)
}
