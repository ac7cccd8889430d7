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
use uuid::Uuid;

use super::row::{
    AUDIT_COLUMNS, BINDING_COLUMNS, INSTANCE_COLUMNS, NumberedEvent, OPERATION_COLUMNS,
};
use super::{AuditEvent, BindingRow, InstanceRow, OperationRow, Store};

/// Rows read per page (and written per transaction) by `bindery migrate-store`.
pub const DEFAULT_PAGE_SIZE: i64 = 500;

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
        after = Some(last.record.instance_id.clone());
        let before = refused.len();
        copied.instances += write_page(to, &page, &mut refused).await?;
        missing.extend(refused[before..].iter().map(|r| r.id.clone()));
    }

    let mut after: Option<String> = None;
    loop {
        let page = from.export_bindings(after.as_deref(), page_size).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.record.binding_id.clone());
        let page = without_missing(page, &missing, |b| &b.record.instance_id, &mut refused);
        copied.bindings += write_page(to, &page, &mut refused).await?;
    }

    let mut after: Option<Uuid> = None;
    loop {
        let page = from.export_operations(after, page_size).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.record.operation_id);
        let page = without_missing(page, &missing, |o| &o.record.instance_id, &mut refused);
        copied.operations += write_page(to, &page, &mut refused).await?;
    }

    // In the source's order; the target numbers them anew after any it holds.
    let mut after: Option<i64> = None;
    loop {
        let page = from.export_audit_events(after, page_size).await?;
        let Some((last, _)) = page.last() else { break };
        after = Some(*last);
        let page: Vec<NumberedEvent> = page
            .into_iter()
            .map(|(number, event)| NumberedEvent(number, event))
            .collect();
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

impl Row for InstanceRow {
    const TABLE: &'static str = "service_instance";
    fn id(&self) -> String {
        self.record.instance_id.clone()
    }
    async fn write(to: &Store, rows: &[Self]) -> Result<(), sqlx::Error> {
        to.import_instances(rows).await
    }
}

impl Row for BindingRow {
    const TABLE: &'static str = "service_binding";
    fn id(&self) -> String {
        self.record.binding_id.clone()
    }
    async fn write(to: &Store, rows: &[Self]) -> Result<(), sqlx::Error> {
        to.import_bindings(rows).await
    }
}

impl Row for OperationRow {
    const TABLE: &'static str = "operation";
    fn id(&self) -> String {
        self.record.operation_id.to_string()
    }
    async fn write(to: &Store, rows: &[Self]) -> Result<(), sqlx::Error> {
        to.import_operations(rows).await
    }
}

impl Row for NumberedEvent {
    const TABLE: &'static str = "audit_event";
    fn id(&self) -> String {
        self.0.to_string()
    }
    async fn write(to: &Store, rows: &[Self]) -> Result<(), sqlx::Error> {
        let events: Vec<AuditEvent> = rows.iter().map(|r| r.1.clone()).collect();
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

/// Whole rows in and out, for copying state between stores ([`copy_state`]): pages in
/// key order out, one transaction per page in. Every column is read and written, so
/// the statements are the same for both databases; only how each keeps a value
/// differs.
impl Store {
    /// Rows per table.
    pub async fn count_rows(&self) -> Result<RowCounts, sqlx::Error> {
        let statement = "select (select count(*) from service_instance), \
                 (select count(*) from service_binding), \
                 (select count(*) from operation), \
                 (select count(*) from audit_event)";
        let (instances, bindings, operations, audit_events) =
            dispatch!(self, s => sqlx::query_as(statement).fetch_one(s.reader()).await?);
        Ok(RowCounts {
            instances,
            bindings,
            operations,
            audit_events,
        })
    }

    /// Up to `limit` instances (tombstones included) after `after`, in id order.
    pub async fn export_instances(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<InstanceRow>, sqlx::Error> {
        let statement = format!(
            "select {INSTANCE_COLUMNS} from service_instance \
             where ($1 is null or instance_id > $1) order by instance_id limit $2"
        );
        dispatch!(self, s => sqlx::query_as(&statement)
            .bind(after)
            .bind(limit)
            .fetch_all(s.reader())
            .await)
    }

    /// Inserts instances exactly as exported, in one transaction.
    pub async fn import_instances(&self, rows: &[InstanceRow]) -> Result<(), sqlx::Error> {
        let statement = format!(
            "insert into service_instance ({INSTANCE_COLUMNS}) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)"
        );
        dispatch!(self, s => {
            let mut tx = s.begin().await?;
            for r in rows {
                sqlx::query(&statement)
                    .bind(&r.record.instance_id)
                    .bind(&r.record.service_id)
                    .bind(&r.record.plan_id)
                    .bind(s.value(&r.record.parameters))
                    .bind(&r.record.organization_guid)
                    .bind(&r.record.space_guid)
                    .bind(s.value(&r.record.context))
                    .bind(&r.record.dashboard_url)
                    .bind(r.record.state.as_str())
                    .bind(s.value(&r.record.active_operation_id))
                    .bind(&r.record.maintenance_version)
                    .bind(&r.record.backend_kind)
                    .bind(s.value(&r.created_at))
                    .bind(s.value(&r.updated_at))
                    .bind(s.value(&r.deleted_at))
                    .bind(s.value(&r.record.backend_facts))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        })
    }

    /// Up to `limit` bindings (tombstones included) after `after`, in id order.
    pub async fn export_bindings(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<BindingRow>, sqlx::Error> {
        let statement = format!(
            "select {BINDING_COLUMNS} from service_binding \
             where ($1 is null or binding_id > $1) order by binding_id limit $2"
        );
        dispatch!(self, s => sqlx::query_as(&statement)
            .bind(after)
            .bind(limit)
            .fetch_all(s.reader())
            .await)
    }

    /// Inserts bindings exactly as exported, in one transaction; their instances must
    /// be there already.
    pub async fn import_bindings(&self, rows: &[BindingRow]) -> Result<(), sqlx::Error> {
        let statement = format!(
            "insert into service_binding ({BINDING_COLUMNS}) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                 $16, $17, $18, $19)"
        );
        dispatch!(self, s => {
            let mut tx = s.begin().await?;
            for r in rows {
                sqlx::query(&statement)
                    .bind(&r.record.binding_id)
                    .bind(&r.record.instance_id)
                    .bind(&r.record.service_id)
                    .bind(&r.record.plan_id)
                    .bind(s.value(&r.record.parameters))
                    .bind(&r.record.app_guid)
                    .bind(&r.record.route)
                    .bind(s.value(&r.bind_resource))
                    .bind(s.value(&r.context))
                    .bind(r.record.credentials.as_ref().map(|c| c.ciphertext.as_slice()))
                    .bind(r.record.credentials.as_ref().map(|c| c.key_label.as_str()))
                    .bind(r.record.state.as_str())
                    .bind(s.value(&r.record.active_operation_id))
                    .bind(s.value(&r.created_at))
                    .bind(s.value(&r.updated_at))
                    .bind(s.value(&r.deleted_at))
                    .bind(s.value(&r.record.expires_at))
                    .bind(&r.predecessor_binding_id)
                    .bind(s.value(&r.record.revoked_at))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        })
    }

    /// Up to `limit` operations (finished ones included) after `after`, in id order.
    pub async fn export_operations(
        &self,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<OperationRow>, sqlx::Error> {
        let statement = format!(
            "select {OPERATION_COLUMNS} from operation \
             where ($1 is null or operation_id > $1) order by operation_id limit $2"
        );
        dispatch!(self, s => sqlx::query_as(&statement)
            .bind(s.value(&after))
            .bind(limit)
            .fetch_all(s.reader())
            .await)
    }

    /// Inserts operations exactly as exported, in one transaction.
    pub async fn import_operations(&self, rows: &[OperationRow]) -> Result<(), sqlx::Error> {
        let statement = format!(
            "insert into operation ({OPERATION_COLUMNS}) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                 $16, $17)"
        );
        dispatch!(self, s => {
            let mut tx = s.begin().await?;
            for r in rows {
                sqlx::query(&statement)
                    .bind(s.value(&r.record.operation_id))
                    .bind(&r.record.instance_id)
                    .bind(&r.record.binding_id)
                    .bind(r.record.kind.as_str())
                    .bind(r.record.state.as_str())
                    .bind(&r.record.description)
                    .bind(s.value(&r.record.request))
                    .bind(r.record.attempts)
                    .bind(s.value(&r.record.next_attempt_at))
                    .bind(&r.lease_owner)
                    .bind(s.value(&r.lease_expires_at))
                    .bind(s.lease_token(r.record.lease_token))
                    .bind(s.value(&r.waits_for))
                    .bind(s.value(&r.record.deadline_at))
                    .bind(s.value(&r.created_at))
                    .bind(s.value(&r.updated_at))
                    .bind(s.value(&r.finished_at))
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await
        })
    }

    /// Up to `limit` audit events after the one numbered `after`, oldest first, each
    /// with its number in this store.
    pub async fn export_audit_events(
        &self,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<(i64, AuditEvent)>, sqlx::Error> {
        let statement = format!(
            "select {AUDIT_COLUMNS} from audit_event \
             where ($1 is null or audit_event_id > $1) order by audit_event_id limit $2"
        );
        let rows: Vec<NumberedEvent> = dispatch!(self, s => sqlx::query_as(&statement)
            .bind(after)
            .bind(limit)
            .fetch_all(s.reader())
            .await?);
        Ok(rows.into_iter().map(|NumberedEvent(n, e)| (n, e)).collect())
    }
}
