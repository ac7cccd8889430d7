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

use super::{SqliteStore, id, json, json_list, now, plus, token};
use crate::osb::OperationState;
use crate::store::row::{INSTANCE_COLUMNS, OPERATION_COLUMNS};
use crate::store::{
    Claim, ClaimedOperation, InstanceRow, NewOperation, OperationKind, OperationRecord,
    OperationRow, OperationTarget, Outcome,
};

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
             created_at, updated_at, lease_token) \
         values (?1, ?2, ?3, ?4, 'in progress', ?5, ?6, ?7, ?8, ?9, ?10, ?10, ?10, ?11)",
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
    // An inline run's lease token is the operation id (see `NewOperation::inline_owner`).
    .bind(op.inline_owner.map(|_| token(op.operation_id)))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Ends a transaction whose gating write changed `gated` rows: with `op` inserted and
/// committed when it changed one (then `true`), rolled back otherwise.
pub(super) async fn register_if(
    mut tx: Transaction<'static, Sqlite>,
    gated: u64,
    op: &NewOperation<'_>,
    now: i64,
) -> Result<bool, sqlx::Error> {
    if gated != 1 {
        tx.rollback().await?;
        return Ok(false);
    }
    insert_operation(&mut tx, op, now).await?;
    tx.commit().await?;
    Ok(true)
}

impl SqliteStore {
    /// Runs `claim_row`, the update that makes `claim`'s operation the active one of the
    /// row `key` names, and inserts the operation when it did, in one writer
    /// transaction. The update's parameters: `?1` the key, `?2` the operation id, `?3`
    /// the allowed states (a JSON list), `?4` the new state, `?5` now.
    pub(super) async fn claim_row(
        &self,
        claim_row: &str,
        key: &str,
        claim: Claim<'_>,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.begin().await?;
        let now = now();
        let gated = sqlx::query(claim_row)
            .bind(key)
            .bind(id(claim.operation.operation_id))
            .bind(json_list(claim.allowed.iter().copied()))
            .bind(claim.new_state)
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        register_if(tx, gated, claim.operation, now).await
    }
}

/// True when the lease of operation alias `alias` is held by a process known to be
/// gone: one that promised to stay alive (`broker_process`) and did not keep it.
/// `?3` is now.
fn owner_gone(alias: &str) -> String {
    format!(
        "exists (select 1 from broker_process p where p.owner = {alias}.lease_owner \
         and p.alive_until < ?3)"
    )
}

impl SqliteStore {
    /// One statement on the writer, so no transaction stays open while the backend
    /// works; each instance is read after it (SQLite's `RETURNING` cannot join).
    pub(in crate::store) async fn claim_operations(
        &self,
        owner: &str,
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<ClaimedOperation>, sqlx::Error> {
        let now = now();
        let rows: Vec<OperationRow> = sqlx::query_as(&format!(
            "update operation set lease_owner = ?1, lease_expires_at = ?2, \
                 lease_token = lower(hex(randomblob(16))), attempts = attempts + 1, \
                 updated_at = ?3 \
             where operation_id in ( \
                 select o.operation_id from operation o \
                 where o.state = 'in progress' and o.next_attempt_at <= ?3 \
                     and (o.lease_expires_at is null or o.lease_expires_at < ?3 \
                         or {gone_o}) \
                     and (o.waits_for is null or not exists ( \
                         select 1 from operation s where s.operation_id = o.waits_for \
                             and s.lease_token is not null and s.lease_expires_at >= ?3 \
                             and not {gone_s})) \
                 order by o.next_attempt_at \
                 limit ?4) \
             returning {OPERATION_COLUMNS}",
            gone_o = owner_gone("o"),
            gone_s = owner_gone("s"),
        ))
        .bind(owner)
        .bind(plus(now, lease))
        .bind(now)
        .bind(limit)
        .fetch_all(self.writer())
        .await?;
        let find_instance =
            format!("select {INSTANCE_COLUMNS} from service_instance where instance_id = ?1");
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let operation: OperationRecord = row.into();
            let instance: Option<InstanceRow> = sqlx::query_as(&find_instance)
                .bind(&operation.instance_id)
                .fetch_optional(self.reader())
                .await?;
            claimed.push(ClaimedOperation {
                operation,
                instance: instance.map(Into::into),
            });
        }
        claimed.sort_by_key(|c| c.operation.next_attempt_at);
        Ok(claimed)
    }

    pub(in crate::store) async fn renew_lease(
        &self,
        operation_id: Uuid,
        lease_token: Uuid,
        lease: Duration,
    ) -> Result<bool, sqlx::Error> {
        Ok(sqlx::query(
            "update operation set lease_expires_at = ?3 \
             where operation_id = ?1 and lease_token = ?2 and state = 'in progress'",
        )
        .bind(id(operation_id))
        .bind(token(lease_token))
        .bind(plus(now(), lease))
        .execute(self.writer())
        .await?
        .rows_affected()
            == 1)
    }

    pub(in crate::store) async fn retry_operation_later(
        &self,
        operation_id: Uuid,
        lease_token: Uuid,
        delay: Duration,
        description: &str,
    ) -> Result<bool, sqlx::Error> {
        let now = now();
        Ok(sqlx::query(
            "update operation set lease_owner = null, lease_expires_at = null, \
                 lease_token = null, next_attempt_at = ?3, description = ?4, updated_at = ?5 \
             where operation_id = ?1 and lease_token = ?2 and state = 'in progress'",
        )
        .bind(id(operation_id))
        .bind(token(lease_token))
        .bind(plus(now, delay))
        .bind(description)
        .bind(now)
        .execute(self.writer())
        .await?
        .rows_affected()
            == 1)
    }

    pub(in crate::store) async fn release_lease(
        &self,
        operation_id: Uuid,
        lease_token: Uuid,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "update operation set lease_owner = null, lease_expires_at = null, \
                 lease_token = null, \
                 attempts = case when state = 'in progress' then max(attempts - 1, 0) \
                     else attempts end \
             where operation_id = ?1 and lease_token = ?2",
        )
        .bind(id(operation_id))
        .bind(token(lease_token))
        .execute(self.writer())
        .await?;
        Ok(())
    }

    /// The lock file proves that no other process uses this file, so whoever held a
    /// lease is gone.
    pub(in crate::store) async fn release_orphaned_leases(&self) -> Result<(), sqlx::Error> {
        sqlx::query(
            "update operation set lease_owner = null, lease_expires_at = null, \
                 lease_token = null \
             where lease_token is not null or lease_owner is not null",
        )
        .execute(self.writer())
        .await?;
        Ok(())
    }

    pub(in crate::store) async fn heartbeat(
        &self,
        owner: &str,
        until: Option<Duration>,
    ) -> Result<(), sqlx::Error> {
        let now = now();
        let mut tx = self.begin().await?;
        sqlx::query("delete from broker_process where alive_until < ?1 and owner <> ?2")
            .bind(now - 86_400_000_000)
            .bind(owner)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "insert into broker_process (owner, alive_until) values (?1, ?2) \
             on conflict (owner) do update set alive_until = excluded.alive_until",
        )
        .bind(owner)
        .bind(until.map_or(now, |until| plus(now, until)))
        .execute(&mut *tx)
        .await?;
        tx.commit().await
    }

    /// Writes the outcome and its effect in one transaction, if the operation is still
    /// running (and, with `lease_token`, still leased by that claim). `false` when
    /// nothing was written.
    pub(in crate::store) async fn record_outcome(
        &self,
        op: &OperationRecord,
        lease_token: Option<Uuid>,
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
                 updated_at = ?5, lease_owner = null, lease_expires_at = null, \
                 lease_token = null \
             where operation_id = ?1 and (?2 is null or lease_token = ?2) \
                 and state = 'in progress'",
        )
        .bind(id(op.operation_id))
        .bind(lease_token.map(token))
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
            record_facts(tx, op, outcome).await?;
            release_target(tx, op, now, "state = 'ready'").await?;
        }
        (OperationKind::Provision, false) => {
            release_target(tx, op, now, "state = 'failed'").await?;
        }
        (OperationKind::Update, true) => {
            record_facts(tx, op, outcome).await?;
            UpdateRequest::of(&op.request).apply(tx, op, now).await?;
        }
        (OperationKind::Update, false) | (OperationKind::Deprovision, false) => {
            release_target(tx, op, now, "state = state").await?;
        }
        (OperationKind::Deprovision, true) => {
            release_target(tx, op, now, "state = 'deleted', deleted_at = ?3").await?;
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
            revokes_moot(tx, "instance_id = ?1", &op.instance_id, now).await?;
        }
        (OperationKind::Bind, true) => {
            let sealed = match outcome {
                Outcome::Succeeded { credentials, .. } => credentials.as_ref(),
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
            release_target(tx, op, now, "state = 'failed'").await?;
        }
        (OperationKind::Unbind, true) => {
            release_target(
                tx,
                op,
                now,
                "state = 'deleted', deleted_at = ?3, credentials = null, credentials_key = null",
            )
            .await?;
            if let Some(binding_id) = &op.binding_id {
                revokes_moot(tx, "binding_id = ?1", binding_id, now).await?;
            }
        }
        (OperationKind::Unbind, false) => {
            release_target(tx, op, now, "state = state").await?;
        }
        // Not the binding's active operation: it only records that the credentials are
        // gone, on a binding that is still live and not revived since (a revival
        // clears `revoked_at` and the unbind before it closed this operation).
        (OperationKind::Revoke, true) => {
            sqlx::query(
                "update service_binding set revoked_at = ?2, updated_at = ?2 \
                 where binding_id = ?1 and deleted_at is null and revoked_at is null",
            )
            .bind(&op.binding_id)
            .bind(now)
            .execute(&mut **tx)
            .await?;
        }
        (OperationKind::Revoke, false) => {}
    }
    Ok(())
}

/// Closes the revocations still waiting or running for the bindings that `filter`
/// (one of the fixed conditions above, `?1` its value) names, which the transaction
/// has just deleted: the delete removed their credentials, so the revocation has
/// nothing left to do, and a running one stops at its next renewal instead of dropping
/// the user of a binding revived under the same id later.
async fn revokes_moot(
    tx: &mut Transaction<'_, Sqlite>,
    filter: &'static str,
    value: &str,
    now: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "update operation set state = 'succeeded', \
             description = 'The binding was deleted, which removed its credentials.', \
             finished_at = ?2, updated_at = ?2 \
         where {filter} and kind = 'revoke' and state = 'in progress'"
    ))
    .bind(value)
    .bind(now)
    .execute(&mut **tx)
    .await?;
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

    /// Applies the update to the operation's instance, if it still points at it.
    async fn apply(
        self,
        tx: &mut Transaction<'_, Sqlite>,
        op: &OperationRecord,
        now: i64,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "update service_instance set plan_id = coalesce(?2, plan_id), \
                 parameters = coalesce(?3, parameters), \
                 maintenance_version = case when ?4 then ?5 else maintenance_version end, \
                 active_operation_id = null, updated_at = ?7 \
             where instance_id = ?1 and active_operation_id = ?6",
        )
        .bind(&op.instance_id)
        .bind(self.plan_id)
        .bind(self.parameters)
        .bind(self.maintenance_version.is_some())
        .bind(self.maintenance_version.flatten())
        .bind(id(op.operation_id))
        .bind(now)
        .execute(&mut **tx)
        .await?;
        Ok(())
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

/// The effect on the operation's instance (or binding, for a bind or unbind): sets
/// `set`, one of the fixed assignments above (never input; `?3` in it is `now`), and
/// clears the active operation, on a row that still points at the operation.
/// Keeps the facts a provision or update returned; an update without any keeps the
/// instance's earlier ones. Runs before the effect that releases the instance, while it
/// still points at the operation (so that stale facts never land).
async fn record_facts(
    tx: &mut Transaction<'_, Sqlite>,
    op: &OperationRecord,
    outcome: &Outcome,
) -> Result<(), sqlx::Error> {
    let Outcome::Succeeded {
        facts: Some(facts), ..
    } = outcome
    else {
        return Ok(());
    };
    sqlx::query(
        "update service_instance set backend_facts = ?2 \
         where instance_id = ?1 and active_operation_id = ?3",
    )
    .bind(&op.instance_id)
    .bind(json(facts))
    .bind(id(op.operation_id))
    .execute(&mut **tx)
    .await?;
    Ok(())
}

async fn release_target(
    tx: &mut Transaction<'_, Sqlite>,
    op: &OperationRecord,
    now: i64,
    set: &'static str,
) -> Result<(), sqlx::Error> {
    let (table, key, id_of_row) = if op.kind.is_binding() {
        ("service_binding", "binding_id", op.binding_id.as_deref())
    } else {
        (
            "service_instance",
            "instance_id",
            Some(op.instance_id.as_str()),
        )
    };
    sqlx::query(&format!(
        "update {table} set {set}, active_operation_id = null, updated_at = ?3 \
         where {key} = ?1 and active_operation_id = ?2"
    ))
    .bind(id_of_row)
    .bind(id(op.operation_id))
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl SqliteStore {
    /// One writer transaction, so nothing lands between the read and the writes.
    pub(in crate::store) async fn supersede_operation(
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
        // The lease columns stay: they are how the replacement knows whether the
        // superseded run may still be working.
        let lease_token: Option<Option<String>> = sqlx::query_scalar(
            "update operation set state = 'failed', description = ?2, finished_at = ?3, \
                 updated_at = ?3 \
             where operation_id = ?1 and state = 'in progress' \
             returning lease_token",
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
        if let Some(Some(_)) = lease_token {
            sqlx::query("update operation set waits_for = ?2 where operation_id = ?1")
                .bind(id(replacement.operation_id))
                .bind(id(running))
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}

impl SqliteStore {
    /// One writer transaction; the unique partial index `operation_one_revoke` keeps
    /// it idempotent all the same.
    pub(in crate::store) async fn enqueue_revocations(
        &self,
        limit: i64,
        deadline: Duration,
    ) -> Result<u64, sqlx::Error> {
        let mut tx = self.begin().await?;
        let now = now();
        let due: Vec<(String, String)> = sqlx::query_as(
            "select b.binding_id, b.instance_id from service_binding b \
             where b.expires_at is not null and b.expires_at <= ?1 and b.revoked_at is null \
                 and b.deleted_at is null and b.state = 'ready' \
                 and b.active_operation_id is null \
                 and not exists (select 1 from operation o where o.binding_id = b.binding_id \
                     and o.kind = 'revoke' and (o.state = 'in progress' \
                         or (o.state = 'failed' and o.finished_at > ?1 - 60000000))) \
             order by b.expires_at limit ?2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        let mut enqueued = 0;
        for (binding_id, instance_id) in &due {
            enqueued += sqlx::query(
                "insert into operation (operation_id, instance_id, binding_id, kind, state, \
                     request, deadline_at, next_attempt_at, created_at, updated_at) \
                 values (?1, ?2, ?3, 'revoke', 'in progress', '{}', ?4, ?5, ?5, ?5) \
                 on conflict do nothing",
            )
            .bind(id(Uuid::new_v4()))
            .bind(instance_id)
            .bind(binding_id)
            .bind(plus(now, deadline))
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(enqueued)
    }

    pub(in crate::store) async fn queue_stats(&self) -> Result<(i64, f64), sqlx::Error> {
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
