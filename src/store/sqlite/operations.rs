//! The operation queue: every backend action is a row here, claimed by a worker with one
//! `UPDATE ... RETURNING` on the writer and a lease, never with a transaction held across
//! the backend call. The outcome and its effect on the instance or binding are written
//! in one transaction, and only by the lease holder.
//!
//! Without `SKIP LOCKED`, the claim relies on the writer running one statement at a
//! time: the sub-select and the update see the same queue, so two claimers can never
//! take the same row.

use std::time::Duration;

use serde_json::Value;
use sqlx::{Sqlite, Transaction};
use uuid::Uuid;
use uuid::fmt::Hyphenated;

use super::{SqliteStore, id, json, now, parse_json, plus, time};
use crate::osb::OperationState;
use crate::store::{
    ClaimedOperation, NewOperation, OperationKind, OperationRecord, OperationTarget, Outcome,
};

#[derive(sqlx::FromRow)]
struct OperationRow {
    operation_id: Hyphenated,
    instance_id: String,
    binding_id: Option<String>,
    kind: String,
    state: String,
    description: Option<String>,
    request: String,
    attempts: i32,
    deadline_at: i64,
    next_attempt_at: i64,
}

impl TryFrom<OperationRow> for OperationRecord {
    type Error = sqlx::Error;

    fn try_from(r: OperationRow) -> Result<Self, Self::Error> {
        Ok(Self {
            operation_id: r.operation_id.into_uuid(),
            instance_id: r.instance_id,
            binding_id: r.binding_id,
            kind: OperationKind::parse(&r.kind),
            state: OperationState::from_stored(&r.state).unwrap_or(OperationState::Failed),
            description: r.description,
            request: parse_json(&r.request)?,
            attempts: r.attempts,
            deadline_at: time(r.deadline_at)?,
            next_attempt_at: time(r.next_attempt_at)?,
        })
    }
}

const OPERATION_COLUMNS: &str = "operation_id, instance_id, binding_id, kind, state, description, \
     request, attempts, deadline_at, next_attempt_at";

/// Inserts a new operation, stamped `now`; leased to its requester when it runs inline.
pub(super) async fn insert_operation(
    tx: &mut Transaction<'_, Sqlite>,
    op: &NewOperation<'_>,
    now: i64,
) -> Result<(), sqlx::Error> {
    let lease_expires_at = op.inline_owner.map(|_| plus(now, op.lease));
    sqlx::query(
        "insert into operation (operation_id, instance_id, binding_id, kind, state, request, \
             deadline_at, lease_owner, lease_expires_at, attempts, next_attempt_at, \
             created_at, updated_at) \
         values (?1, ?2, ?3, ?4, 'in progress', ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?10)",
    )
    .bind(id(op.operation_id))
    .bind(op.instance_id)
    .bind(op.binding_id)
    .bind(op.kind.as_str())
    .bind(json(&op.request))
    .bind(plus(now, op.deadline))
    .bind(op.inline_owner)
    .bind(lease_expires_at)
    .bind(i32::from(op.inline_owner.is_some()))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl SqliteStore {
    /// Reads one operation.
    pub async fn find_operation(
        &self,
        operation_id: Uuid,
    ) -> Result<Option<OperationRecord>, sqlx::Error> {
        let row: Option<OperationRow> = sqlx::query_as(&format!(
            "select {OPERATION_COLUMNS} from operation where operation_id = ?1"
        ))
        .bind(id(operation_id))
        .fetch_optional(self.reader())
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// The newest instance-level operation (provision, update, deprovision) of an
    /// instance. Two created in the same microsecond are ordered by insertion (rowid).
    pub async fn latest_instance_operation(
        &self,
        instance_id: &str,
    ) -> Result<Option<OperationRecord>, sqlx::Error> {
        let row: Option<OperationRow> = sqlx::query_as(&format!(
            "select {OPERATION_COLUMNS} from operation \
             where instance_id = ?1 and kind in ('provision', 'update', 'deprovision') \
             order by created_at desc, rowid desc limit 1"
        ))
        .bind(instance_id)
        .fetch_optional(self.reader())
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// The newest operation of a binding.
    pub async fn latest_binding_operation(
        &self,
        binding_id: &str,
    ) -> Result<Option<OperationRecord>, sqlx::Error> {
        let row: Option<OperationRow> = sqlx::query_as(&format!(
            "select {OPERATION_COLUMNS} from operation \
             where binding_id = ?1 order by created_at desc, rowid desc limit 1"
        ))
        .bind(binding_id)
        .fetch_optional(self.reader())
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// Claims up to `limit` runnable operations for `owner`: in progress, due, and
    /// with a free or expired lease (their worker died), oldest due first, each with
    /// its instance. One statement on the writer, so no transaction stays open while
    /// the backend works.
    pub async fn claim_operations(
        &self,
        owner: &str,
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<ClaimedOperation>, sqlx::Error> {
        let now = now();
        let rows: Vec<OperationRow> = sqlx::query_as(&format!(
            "update operation set lease_owner = ?1, lease_expires_at = ?2, \
                 attempts = attempts + 1, updated_at = ?3 \
             where operation_id in ( \
                 select operation_id from operation \
                 where state = 'in progress' and next_attempt_at <= ?3 \
                     and (lease_expires_at is null or lease_expires_at < ?3) \
                 order by next_attempt_at \
                 limit ?4) \
             returning {OPERATION_COLUMNS}"
        ))
        .bind(owner)
        .bind(plus(now, lease))
        .bind(now)
        .bind(limit)
        .fetch_all(self.writer())
        .await?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let operation: OperationRecord = row.try_into()?;
            let instance = self.find_instance(&operation.instance_id).await?;
            claimed.push(ClaimedOperation {
                operation,
                instance,
            });
        }
        claimed.sort_by_key(|c| c.operation.next_attempt_at);
        Ok(claimed)
    }

    /// Extends the lease; `false` when `owner` no longer holds it.
    pub async fn renew_lease(
        &self,
        operation_id: Uuid,
        owner: &str,
        lease: Duration,
    ) -> Result<bool, sqlx::Error> {
        Ok(sqlx::query(
            "update operation set lease_expires_at = ?3 \
             where operation_id = ?1 and lease_owner = ?2 and state = 'in progress'",
        )
        .bind(id(operation_id))
        .bind(owner)
        .bind(plus(now(), lease))
        .execute(self.writer())
        .await?
        .rows_affected()
            == 1)
    }

    /// Gives the operation back to the queue, to run again after `delay`.
    pub async fn retry_operation_later(
        &self,
        operation_id: Uuid,
        owner: &str,
        delay: Duration,
        description: &str,
    ) -> Result<bool, sqlx::Error> {
        let now = now();
        Ok(sqlx::query(
            "update operation set lease_owner = null, lease_expires_at = null, \
                 next_attempt_at = ?3, description = ?4, updated_at = ?5 \
             where operation_id = ?1 and lease_owner = ?2 and state = 'in progress'",
        )
        .bind(id(operation_id))
        .bind(owner)
        .bind(plus(now, delay))
        .bind(description)
        .bind(now)
        .execute(self.writer())
        .await?
        .rows_affected()
            == 1)
    }

    /// Releases the lease without changing anything else, so that another worker can
    /// take the operation at once (graceful shutdown).
    pub async fn release_lease(&self, operation_id: Uuid, owner: &str) -> Result<(), sqlx::Error> {
        sqlx::query(
            "update operation set lease_owner = null, lease_expires_at = null, \
                 attempts = max(attempts - 1, 0) \
             where operation_id = ?1 and lease_owner = ?2 and state = 'in progress'",
        )
        .bind(id(operation_id))
        .bind(owner)
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// Records how the operation ended and applies its effect to the instance or
    /// binding, in one transaction, only while `owner` holds the lease. `false` means
    /// the lease was lost: another worker owns the operation and will finish it.
    pub async fn finish_operation(
        &self,
        op: &OperationRecord,
        owner: &str,
        outcome: &Outcome,
    ) -> Result<bool, sqlx::Error> {
        self.record_outcome(op, Some(owner), outcome).await
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
        self.record_outcome(op, None, &outcome).await
    }

    /// Writes the outcome and its effect in one transaction, if the operation is still
    /// running (and, with `owner`, still leased by it). `false` when nothing was written.
    async fn record_outcome(
        &self,
        op: &OperationRecord,
        owner: Option<&str>,
        outcome: &Outcome,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.begin().await?;
        let now = now();
        let (state, description) = match outcome {
            Outcome::Succeeded { .. } => (OperationState::Succeeded, None),
            Outcome::Failed { description } => (OperationState::Failed, Some(description.as_str())),
        };
        let changed = sqlx::query(
            "update operation set state = ?3, description = ?4, finished_at = ?5, \
                 updated_at = ?5, lease_owner = null, lease_expires_at = null \
             where operation_id = ?1 and (?2 is null or lease_owner = ?2) \
                 and state = 'in progress'",
        )
        .bind(id(op.operation_id))
        .bind(owner)
        .bind(state.as_str())
        .bind(description)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !changed {
            tx.rollback().await?;
            return Ok(false);
        }
        apply_effect(&mut tx, op, outcome, now).await?;
        tx.commit().await?;
        Ok(true)
    }
}

/// What a finished operation does to its instance or binding. Every statement checks
/// that the row still points at this operation, so a stale effect can never land.
async fn apply_effect(
    tx: &mut Transaction<'_, Sqlite>,
    op: &OperationRecord,
    outcome: &Outcome,
    now: i64,
) -> Result<(), sqlx::Error> {
    let succeeded = matches!(outcome, Outcome::Succeeded { .. });
    match (op.kind, succeeded) {
        (OperationKind::Provision, true) => {
            instance_update(tx, op, now, "state = 'ready'").await?;
        }
        (OperationKind::Provision, false) => {
            instance_update(tx, op, now, "state = 'failed'").await?;
        }
        (OperationKind::Update, true) => {
            let update = UpdateRequest::of(&op.request);
            sqlx::query(
                "update service_instance set plan_id = coalesce(?2, plan_id), \
                     parameters = coalesce(?3, parameters), \
                     maintenance_version = case when ?4 then ?5 else maintenance_version end, \
                     active_operation_id = null, updated_at = ?7 \
                 where instance_id = ?1 and active_operation_id = ?6",
            )
            .bind(&op.instance_id)
            .bind(update.plan_id)
            .bind(update.parameters)
            .bind(update.maintenance_version.is_some())
            .bind(update.maintenance_version.flatten())
            .bind(id(op.operation_id))
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        (OperationKind::Update, false) | (OperationKind::Deprovision, false) => {
            instance_update(tx, op, now, "state = state").await?;
        }
        (OperationKind::Deprovision, true) => {
            instance_update(tx, op, now, "state = 'deleted', deleted_at = ?3").await?;
            sqlx::query(
                "update service_binding set state = 'deleted', deleted_at = ?2, \
                     credentials = null, credentials_key = null, active_operation_id = null, \
                     updated_at = ?2 \
                 where instance_id = ?1 and deleted_at is null",
            )
            .bind(&op.instance_id)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        (OperationKind::Bind, true) => {
            let sealed = match outcome {
                Outcome::Succeeded { credentials } => credentials.as_ref(),
                Outcome::Failed { .. } => None,
            };
            sqlx::query(
                "update service_binding set state = 'ready', credentials = ?3, \
                     credentials_key = ?4, active_operation_id = null, updated_at = ?5 \
                 where binding_id = ?1 and active_operation_id = ?2",
            )
            .bind(&op.binding_id)
            .bind(id(op.operation_id))
            .bind(sealed.map(|s| s.ciphertext.as_slice()))
            .bind(sealed.map(|s| s.key_label.as_str()))
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        (OperationKind::Bind, false) => {
            binding_update(tx, op, now, "state = 'failed'").await?;
        }
        (OperationKind::Unbind, true) => {
            binding_update(
                tx,
                op,
                now,
                "state = 'deleted', deleted_at = ?3, credentials = null, credentials_key = null",
            )
            .await?;
        }
        (OperationKind::Unbind, false) => {
            binding_update(tx, op, now, "state = state").await?;
        }
    }
    Ok(())
}

/// What a finished update applies, read from its request as PostgreSQL's `->>`, `->`
/// and `?` read it: a missing (or, for the plan, null) field leaves the column as it is;
/// a present `maintenance_version` is applied even when null.
struct UpdateRequest {
    plan_id: Option<String>,
    parameters: Option<String>,
    maintenance_version: Option<Option<String>>,
}

impl UpdateRequest {
    fn of(request: &Value) -> Self {
        Self {
            plan_id: request.get("plan_id").and_then(json_text),
            parameters: request.get("parameters").map(json),
            maintenance_version: request.get("maintenance_version").map(json_text),
        }
    }
}

/// A JSON value as `->>` gives it: strings unquoted, null as SQL null, anything else
/// as its JSON text.
fn json_text(value: &Value) -> Option<String> {
    match value {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// `set` is one of the fixed assignments above (never input); `?3` in it is `now`.
async fn instance_update(
    tx: &mut Transaction<'_, Sqlite>,
    op: &OperationRecord,
    now: i64,
    set: &'static str,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "update service_instance set {set}, active_operation_id = null, updated_at = ?3 \
         where instance_id = ?1 and active_operation_id = ?2"
    ))
    .bind(&op.instance_id)
    .bind(id(op.operation_id))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// `set` is one of the fixed assignments above (never input); `?3` in it is `now`.
async fn binding_update(
    tx: &mut Transaction<'_, Sqlite>,
    op: &OperationRecord,
    now: i64,
    set: &'static str,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "update service_binding set {set}, active_operation_id = null, updated_at = ?3 \
         where binding_id = ?1 and active_operation_id = ?2"
    ))
    .bind(&op.binding_id)
    .bind(id(op.operation_id))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl SqliteStore {
    /// Stops a running create (provision or bind) in favour of a delete: the running
    /// operation is failed, `replacement` becomes the active operation, and it is held
    /// back until the running attempt's lease has expired. The running attempt notices
    /// at its next lease renewal and stops, so the delete never races its create.
    /// `false` when `running` is no longer the active operation.
    pub async fn supersede_operation(
        &self,
        target: OperationTarget<'_>,
        running: Uuid,
        replacement: &NewOperation<'_>,
        reason: &str,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.begin().await?;
        let now = now();
        let (read, set) = match target {
            OperationTarget::Instance(_) => (
                "select active_operation_id from service_instance where instance_id = ?1",
                "update service_instance set active_operation_id = ?2, updated_at = ?3, \
                     state = case when state = 'provisioning' then 'failed' else state end \
                 where instance_id = ?1",
            ),
            OperationTarget::Binding(_) => (
                "select active_operation_id from service_binding where binding_id = ?1",
                "update service_binding set active_operation_id = ?2, updated_at = ?3, \
                     state = case when state = 'creating' then 'failed' else state end \
                 where binding_id = ?1",
            ),
        };
        let target_id = match target {
            OperationTarget::Instance(id) | OperationTarget::Binding(id) => id,
        };
        let active: Option<Option<Hyphenated>> = sqlx::query_scalar(read)
            .bind(target_id)
            .fetch_optional(&mut *tx)
            .await?;
        if active.flatten().map(Hyphenated::into_uuid) != Some(running) {
            tx.rollback().await?;
            return Ok(false);
        }
        let lease_expires_at: Option<Option<i64>> = sqlx::query_scalar(
            "update operation set state = 'failed', description = ?2, finished_at = ?3, \
                 updated_at = ?3 \
             where operation_id = ?1 and state = 'in progress' \
             returning lease_expires_at",
        )
        .bind(id(running))
        .bind(reason)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await?;
        sqlx::query(set)
            .bind(target_id)
            .bind(id(replacement.operation_id))
            .bind(now)
            .execute(&mut *tx)
            .await?;
        insert_operation(&mut tx, replacement, now).await?;
        if let Some(Some(until)) = lease_expires_at {
            sqlx::query(
                "update operation set next_attempt_at = max(?2, ?3) where operation_id = ?1",
            )
            .bind(id(replacement.operation_id))
            .bind(now)
            .bind(until)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}

impl SqliteStore {
    /// Operations waiting or running, and the age in seconds of the oldest of them.
    pub async fn queue_stats(&self) -> Result<(i64, f64), sqlx::Error> {
        let (count, oldest): (i64, Option<i64>) = sqlx::query_as(
            "select count(*), min(created_at) from operation where state = 'in progress'",
        )
        .fetch_one(self.reader())
        .await?;
        // Microseconds to seconds: the precision lost in the float is far below a second.
        let age = oldest.map_or(0.0, |created| (now() - created) as f64 / 1_000_000.0);
        Ok((count, age))
    }
}
