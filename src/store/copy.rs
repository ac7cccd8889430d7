//! Copying bindery's whole state from one store to another (`bindery migrate-store`),
//! e.g. from the SQLite file a broker started with to PostgreSQL, to run replicas.
//!
//! Every column of every row is copied: tombstones, leases, timestamps and sealed
//! credentials (still sealed: the keys do not change). Rows are read a page at a time
//! in key order and each page is written in one transaction on the target. The copy is
//! meant for a stopped broker: nothing here stops writers to the source.

use std::collections::HashSet;
use std::fmt;

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::{AuditEvent, BindingState, InstanceState, OperationKind, SealedCredentials, Store};
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
    /// The plan's backend kind at provision.
    pub backend_kind: Option<String>,
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
/// to). Returns the rows copied. A row the target refuses (an id too long for its
/// index, say) does not stop the copy: every other row is written, then the copy
/// fails with an [`IncompleteCopy`] listing the rows left out, each with its id. A
/// copy that fails half-way leaves the target partly filled: empty it (or start with
/// a new one) before running it again.
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
    let mut refused: Vec<RefusedRow> = Vec::new();
    // Ids of instances the target refused: their bindings and operations are left
    // out too (a binding needs its instance; an operation alone means nothing).
    let mut missing: HashSet<String> = HashSet::new();

    // Instances before bindings: a binding's instance must exist (a foreign key).
    let mut after: Option<String> = None;
    loop {
        let page = from.export_instances(after.as_deref(), page_size).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.instance_id.clone());
        let before = refused.len();
        copied.instances += write_page(to, &page, &mut refused).await?;
        missing.extend(refused[before..].iter().map(|r| r.id.clone()));
    }

    let mut after: Option<String> = None;
    loop {
        let page = from.export_bindings(after.as_deref(), page_size).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.binding_id.clone());
        let page = without_missing(page, &missing, |b| &b.instance_id, &mut refused);
        copied.bindings += write_page(to, &page, &mut refused).await?;
    }

    let mut after: Option<Uuid> = None;
    loop {
        let page = from.export_operations(after, page_size).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.operation_id);
        let page = without_missing(page, &missing, |o| &o.instance_id, &mut refused);
        copied.operations += write_page(to, &page, &mut refused).await?;
    }

    // In the source's order; the target numbers them anew after any it holds.
    let mut after: Option<i64> = None;
    loop {
        let page = from.export_audit_events(after, page_size).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        let page: Vec<NumberedEvent> = page.into_iter().map(NumberedEvent).collect();
        copied.audit_events += write_page(to, &page, &mut refused).await?;
    }
    if refused.is_empty() {
        Ok(copied)
    } else {
        Err(IncompleteCopy { copied, refused }.into())
    }
}

/// A row that was not copied, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefusedRow {
    /// The table it comes from.
    pub table: &'static str,
    /// Its id (an audit event's source number).
    pub id: String,
    /// The target's error, or why it was left out.
    pub reason: String,
}

/// A copy that went through every row but could not write some of them: the error
/// lists each with its id, so that the operator can fix or remove them in the
/// source and copy again into an empty target.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct IncompleteCopy {
    /// What was written to the target.
    pub copied: RowCounts,
    /// What was not.
    pub refused: Vec<RefusedRow>,
}

impl fmt::Display for IncompleteCopy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let c = &self.copied;
        write!(
            f,
            "{} row(s) could not be copied (copied: {} instance(s), {} binding(s), {} operation(s), {} audit event(s)); fix or remove them in the source, then copy again into an empty target:",
            self.refused.len(),
            c.instances,
            c.bindings,
            c.operations,
            c.audit_events
        )?;
        for row in &self.refused {
            write!(f, "\n  - {} {}: {}", row.table, shown(&row.id), row.reason)?;
        }
        Ok(())
    }
}

/// An id for a message: whole up to 100 bytes, else its start and its length.
fn shown(id: &str) -> String {
    if id.len() <= 100 {
        return format!("`{id}`");
    }
    let mut end = 100;
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    format!("`{}…` ({} bytes)", &id[..end], id.len())
}

/// One kind of row the copy writes.
trait Row: Sized {
    const TABLE: &'static str;
    fn id(&self) -> String;
    async fn write(to: &Store, rows: &[Self]) -> Result<(), sqlx::Error>;
}

impl Row for ExportedInstance {
    const TABLE: &'static str = "service_instance";
    fn id(&self) -> String {
        self.instance_id.clone()
    }
    async fn write(to: &Store, rows: &[Self]) -> Result<(), sqlx::Error> {
        to.import_instances(rows).await
    }
}

impl Row for ExportedBinding {
    const TABLE: &'static str = "service_binding";
    fn id(&self) -> String {
        self.binding_id.clone()
    }
    async fn write(to: &Store, rows: &[Self]) -> Result<(), sqlx::Error> {
        to.import_bindings(rows).await
    }
}

impl Row for ExportedOperation {
    const TABLE: &'static str = "operation";
    fn id(&self) -> String {
        self.operation_id.to_string()
    }
    async fn write(to: &Store, rows: &[Self]) -> Result<(), sqlx::Error> {
        to.import_operations(rows).await
    }
}

/// An audit event with its number in the source.
struct NumberedEvent((i64, AuditEvent));

impl Row for NumberedEvent {
    const TABLE: &'static str = "audit_event";
    fn id(&self) -> String {
        self.0.0.to_string()
    }
    async fn write(to: &Store, rows: &[Self]) -> Result<(), sqlx::Error> {
        let events: Vec<AuditEvent> = rows.iter().map(|r| r.0.1.clone()).collect();
        to.record_audit_events(&events).await
    }
}

/// Writes a page in one transaction; when the target refuses it, writes its rows one
/// by one to find which, records those and goes on. Losing the connection stops the
/// copy: only the database refusing a row is that row's fault.
async fn write_page<R: Row>(
    to: &Store,
    page: &[R],
    refused: &mut Vec<RefusedRow>,
) -> anyhow::Result<i64> {
    match R::write(to, page).await {
        Ok(()) => return Ok(count(page)),
        Err(sqlx::Error::Database(_)) => {}
        Err(e) => {
            return Err(
                anyhow::Error::new(e).context(format!("writing {} rows to the target", R::TABLE))
            );
        }
    }
    let mut written = 0;
    for row in page {
        match R::write(to, std::slice::from_ref(row)).await {
            Ok(()) => written += 1,
            Err(sqlx::Error::Database(e)) => refused.push(RefusedRow {
                table: R::TABLE,
                id: row.id(),
                reason: e.message().to_owned(),
            }),
            Err(e) => {
                return Err(anyhow::Error::new(e)
                    .context(format!("writing {} rows to the target", R::TABLE)));
            }
        }
    }
    Ok(written)
}

/// Leaves out the rows of instances that were not copied, recording each.
fn without_missing<R: Row>(
    page: Vec<R>,
    missing: &HashSet<String>,
    instance_of: impl Fn(&R) -> &String,
    refused: &mut Vec<RefusedRow>,
) -> Vec<R> {
    if missing.is_empty() {
        return page;
    }
    page.into_iter()
        .filter(|row| {
            let instance = instance_of(row);
            if !missing.contains(instance) {
                return true;
            }
            refused.push(RefusedRow {
                table: R::TABLE,
                id: row.id(),
                reason: format!("its instance {} was not copied", shown(instance)),
            });
            false
        })
        .collect()
}

fn count<T>(page: &[T]) -> i64 {
    i64::try_from(page.len()).unwrap_or(i64::MAX)
}
