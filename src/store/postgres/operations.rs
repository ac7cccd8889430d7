//! The operation queue: every backend action is a row here, claimed by a worker with
//! `FOR UPDATE SKIP LOCKED` and a lease, never with a transaction held across the
//! backend call. The outcome and its effect on the instance or binding are written in
//! one transaction, and only by the lease holder.
//!
//! Statements on one operation say `state not in ('succeeded', 'failed')` rather than
//! `state = 'in progress'` (the same rows, by the check constraint): the latter matches
//! the partial index `operation_runnable`, and PostgreSQL then walks the whole queue
//! instead of looking the row up by its primary key (docs/benchmarks.md).

use std::sync::LazyLock;
use std::time::Duration;

use sqlx::FromRow as _;
use sqlx::Row as _;
use uuid::Uuid;

use super::PgStore;
use super::new_operation::{bind_operation, insert_operation_from};
use crate::osb::OperationState;
use crate::store::row::{INSTANCE_COLUMNS, OPERATION_COLUMNS};
use crate::store::{
    ClaimedOperation, InstanceRow, NewOperation, OperationKind, OperationRecord, OperationRow,
    OperationTarget, Outcome,
};

/// True when the lease of operation alias `$alias` is held by a process known to be
/// gone: one that promised to stay alive (`broker_process`) and did not keep it.
macro_rules! owner_gone {
    ($alias:literal) => {
        concat!(
            "exists (select 1 from broker_process p where p.owner = ",
            $alias,
            ".lease_owner and p.alive_until < now())"
        )
    };
}

/// Claims up to `$3` runnable operations for owner `$1` with a lease of `$2`, in one
/// statement: in progress, due, with a free or expired lease or one held by a process
/// known to be gone, and not waiting for a superseded run that still holds its lease;
/// oldest due first, each with a fresh lease token and its instance's columns (null
/// when the row is gone), named `i_` + the column.
static CLAIM: LazyLock<String> = LazyLock::new(|| {
    let instance: Vec<String> = INSTANCE_COLUMNS
        .split(',')
        .map(|column| format!("i.{0} as i_{0}", column.trim()))
        .collect();
    format!(
        concat!(
            "with claimed as ( \
                 update operation set lease_owner = $1, lease_expires_at = now() + $2, \
                     lease_token = gen_random_uuid(), attempts = attempts + 1, \
                     updated_at = now() \
                 where operation_id in ( \
                     select o.operation_id from operation o \
                     where o.state = 'in progress' and o.next_attempt_at <= now() \
                         and (o.lease_expires_at is null or o.lease_expires_at < now() \
                             or ",
            owner_gone!("o"),
            ") and (o.waits_for is null or not exists ( \
                             select 1 from operation s where s.operation_id = o.waits_for \
                                 and s.lease_token is not null and s.lease_expires_at >= now() \
                                 and not ",
            owner_gone!("s"),
            ")) \
                     order by o.next_attempt_at \
                     for update skip locked \
                     limit $3) \
                 returning {operation}) \
             select claimed.*, {instance} \
             from claimed left join service_instance i using (instance_id) \
             order by claimed.next_attempt_at"
        ),
        operation = OPERATION_COLUMNS,
        instance = instance.join(", "),
    )
});

impl PgStore {
    /// `SKIP LOCKED` lets replicas claim side by side without waiting; the instance
    /// comes in the same statement, its columns prefixed `i_`.
    pub(in crate::store) async fn claim_operations(
        &self,
        owner: &str,
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<ClaimedOperation>, sqlx::Error> {
        let rows = sqlx::query(&CLAIM)
            .bind(owner)
            .bind(lease)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                let operation = OperationRow::from_row(row)?.into();
                let instance = match row.try_get::<Option<String>, _>("i_instance_id")? {
                    Some(_) => Some(InstanceRow::read(row, "i_")?.into()),
                    None => None,
                };
                Ok(ClaimedOperation {
                    operation,
                    instance,
                })
            })
            .collect()
    }

    pub(in crate::store) async fn renew_lease(
        &self,
        operation_id: Uuid,
        token: Uuid,
        lease: Duration,
    ) -> Result<bool, sqlx::Error> {
        Ok(sqlx::query(
            "update operation set lease_expires_at = now() + $3 \
             where operation_id = $1 and lease_token = $2 and state not in ('succeeded', 'failed')",
        )
        .bind(operation_id)
        .bind(token)
        .bind(lease)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    pub(in crate::store) async fn retry_operation_later(
        &self,
        operation_id: Uuid,
        token: Uuid,
        delay: Duration,
        description: &str,
    ) -> Result<bool, sqlx::Error> {
        Ok(sqlx::query(
            "update operation set lease_owner = null, lease_expires_at = null, \
                 lease_token = null, next_attempt_at = now() + $3, description = $4, \
                 updated_at = now() \
             where operation_id = $1 and lease_token = $2 and state not in ('succeeded', 'failed')",
        )
        .bind(operation_id)
        .bind(token)
        .bind(delay)
        .bind(description)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }

    pub(in crate::store) async fn release_lease(
        &self,
        operation_id: Uuid,
        token: Uuid,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "update operation set lease_owner = null, lease_expires_at = null, \
                 lease_token = null, \
                 attempts = case when state = 'in progress' then greatest(attempts - 1, 0) \
                     else attempts end \
             where operation_id = $1 and lease_token = $2",
        )
        .bind(operation_id)
        .bind(token)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub(in crate::store) async fn heartbeat(
        &self,
        owner: &str,
        until: Option<Duration>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "with gone as (delete from broker_process \
                 where alive_until < now() - interval '1 day' and owner <> $1) \
             insert into broker_process (owner, alive_until) \
             values ($1, now() + coalesce($2, interval '0')) \
             on conflict (owner) do update set alive_until = excluded.alive_until",
        )
        .bind(owner)
        .bind(until)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Writes the outcome and its effect in one statement, if the operation is still
    /// running (and, with `token`, still leased by that claim). `false` when nothing
    /// was written.
    pub(in crate::store) async fn record_outcome(
        &self,
        op: &OperationRecord,
        token: Option<Uuid>,
        outcome: &Outcome,
    ) -> Result<bool, sqlx::Error> {
        let (state, description, sealed, facts) = match outcome {
            Outcome::Succeeded { credentials, facts } => (
                OperationState::Succeeded,
                None,
                credentials.as_ref(),
                facts.as_ref(),
            ),
            Outcome::Failed { description } => (
                OperationState::Failed,
                Some(description.as_str()),
                None,
                None,
            ),
        };
        let succeeded = state == OperationState::Succeeded;
        let finished: i64 = sqlx::query_scalar(effect_statement(op.kind, succeeded))
            .bind(op.operation_id)
            .bind(token)
            .bind(state.as_str())
            .bind(description)
            .bind(&op.instance_id)
            .bind(&op.binding_id)
            .bind(&op.request)
            .bind(sealed.map(|s| s.ciphertext.as_slice()))
            .bind(sealed.map(|s| s.key_label.as_str()))
            .bind(facts)
            .fetch_one(&self.pool)
            .await?;
        Ok(finished == 1)
    }
}

/// The outcome statement: `$1` operation id, `$2` lease token (null: whoever holds
/// it), `$3` state, `$4` description, `$5` instance id, `$6` binding id, `$7` the
/// operation's request, `$8`/`$9` sealed credentials and key label, `$10` the backend's
/// facts about the instance (sqlx declares
/// every parameter's type, so an effect may leave some unused). It answers how many
/// operations it finished (0 or 1). The effect runs only when this statement finished
/// the operation, and only on a row that still points at the operation, so a stale
/// effect can never land.
macro_rules! finish_with {
    ($($effect:expr),+) => {
        concat!(
            "with finished as ( \
                 update operation set state = $3, description = $4, finished_at = now(), \
                     updated_at = now(), lease_owner = null, lease_expires_at = null, \
                     lease_token = null \
                 where operation_id = $1 and ($2::uuid is null or lease_token = $2) \
                     and state not in ('succeeded', 'failed') \
                 returning operation_id)",
            $(", ", $effect,)+
            " select count(*) from finished"
        )
    };
}

/// An effect on the operation's instance: sets `$set`, clears the active operation.
macro_rules! on_instance {
    ($set:literal) => {
        concat!(
            "instance as (update service_instance set ",
            $set,
            ", active_operation_id = null, updated_at = now() \
             where instance_id = $5 \
                 and active_operation_id = (select operation_id from finished))"
        )
    };
}

/// An effect on the operation's binding: sets `$set`, clears the active operation.
macro_rules! on_binding {
    ($set:literal) => {
        concat!(
            "binding as (update service_binding set ",
            $set,
            ", active_operation_id = null, updated_at = now() \
             where binding_id = $6 \
                 and active_operation_id = (select operation_id from finished))"
        )
    };
}

/// Closes the revocations still waiting or running for bindings that `$where` names
/// and that this statement has just deleted: the delete removed their credentials, so
/// the revocation has nothing left to do, and a running one stops at its next renewal
/// instead of dropping the user of a binding revived under the same id later.
macro_rules! revokes_moot {
    ($where:literal) => {
        concat!(
            "revokes as (update operation set state = 'succeeded', \
                 description = 'The binding was deleted, which removed its credentials.', \
                 finished_at = now(), updated_at = now() \
             where ",
            $where,
            " and kind = 'revoke' and state = 'in progress' \
                 and exists (select 1 from finished))"
        )
    };
}

/// What a finished operation does to its instance or binding.
fn effect_statement(kind: OperationKind, succeeded: bool) -> &'static str {
    match (kind, succeeded) {
        (OperationKind::Provision, true) => {
            finish_with!(on_instance!("state = 'ready', backend_facts = $10"))
        }
        (OperationKind::Provision, false) => finish_with!(on_instance!("state = 'failed'")),
        (OperationKind::Update, true) => finish_with!(on_instance!(
            "plan_id = coalesce($7->>'plan_id', plan_id), \
             parameters = coalesce($7->'parameters', parameters), \
             maintenance_version = case when $7 ? 'maintenance_version' \
                 then $7->>'maintenance_version' else maintenance_version end, \
             backend_facts = coalesce($10, backend_facts)"
        )),
        (OperationKind::Update | OperationKind::Deprovision, false) => {
            finish_with!(on_instance!("state = state"))
        }
        (OperationKind::Deprovision, true) => finish_with!(
            on_instance!("state = 'deleted', deleted_at = now()"),
            "bindings as (update service_binding set state = 'deleted', deleted_at = now(), \
                 credentials = null, credentials_key = null, active_operation_id = null, \
                 updated_at = now() \
             where instance_id = $5 and deleted_at is null \
                 and exists (select 1 from finished))",
            revokes_moot!("instance_id = $5")
        ),
        (OperationKind::Bind, true) => finish_with!(on_binding!(
            "state = 'ready', credentials = $8, credentials_key = $9"
        )),
        (OperationKind::Bind, false) => finish_with!(on_binding!("state = 'failed'")),
        (OperationKind::Unbind, true) => finish_with!(
            on_binding!(
                "state = 'deleted', deleted_at = now(), credentials = null, credentials_key = null"
            ),
            revokes_moot!("binding_id = $6")
        ),
        (OperationKind::Unbind, false) => finish_with!(on_binding!("state = state")),
        // Not the binding's active operation: it only records that the credentials are
        // gone, on a binding that is still live and not revived since (a revival
        // clears `revoked_at` and the unbind before it closed this operation).
        (OperationKind::Revoke, true) => finish_with!(
            "binding as (update service_binding set revoked_at = now(), updated_at = now() \
             where binding_id = $6 and deleted_at is null and revoked_at is null \
                 and exists (select 1 from finished))"
        ),
        (OperationKind::Revoke, false) => finish_with!("unchanged as (select 1)"),
    }
}

impl PgStore {
    /// The target's row lock orders this against the effects of the running operation.
    pub(in crate::store) async fn supersede_operation(
        &self,
        target: OperationTarget<'_>,
        running: Uuid,
        replacement: &NewOperation<'_>,
        reason: &str,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let (lock, set) = match target {
            OperationTarget::Instance(_) => (
                "select active_operation_id from service_instance where instance_id = $1 for update",
                "update service_instance set active_operation_id = $2, updated_at = now(), \
                     state = case when state = 'provisioning' then 'failed' else state end \
                 where instance_id = $1",
            ),
            OperationTarget::Binding(_) => (
                "select active_operation_id from service_binding where binding_id = $1 for update",
                "update service_binding set active_operation_id = $2, updated_at = now(), \
                     state = case when state = 'creating' then 'failed' else state end \
                 where binding_id = $1",
            ),
        };
        let id = match target {
            OperationTarget::Instance(id) | OperationTarget::Binding(id) => id,
        };
        let active: Option<Option<Uuid>> = sqlx::query_scalar(lock)
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if active.flatten() != Some(running) {
            return Ok(false);
        }
        // The lease columns stay: they are how the replacement knows whether the
        // superseded run may still be working.
        let lease_token: Option<Option<Uuid>> = sqlx::query_scalar(
            "update operation set state = 'failed', description = $2, finished_at = now(), \
                 updated_at = now() \
             where operation_id = $1 and state not in ('succeeded', 'failed') \
             returning lease_token",
        )
        .bind(running)
        .bind(reason)
        .fetch_optional(&mut *tx)
        .await?;
        sqlx::query(set)
            .bind(id)
            .bind(replacement.operation_id)
            .execute(&mut *tx)
            .await?;
        bind_operation(
            sqlx::query(insert_operation_from!("(select) as always")),
            replacement,
        )
        .execute(&mut *tx)
        .await?;
        if let Some(Some(_)) = lease_token {
            sqlx::query("update operation set waits_for = $2 where operation_id = $1")
                .bind(replacement.operation_id)
                .bind(running)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(true)
    }
}

impl PgStore {
    /// One statement; the unique partial index `operation_one_revoke` makes a
    /// concurrent sweep by another replica a no-op.
    pub(in crate::store) async fn enqueue_revocations(
        &self,
        limit: i64,
        deadline: Duration,
    ) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(
            "insert into operation (operation_id, instance_id, binding_id, kind, state, \
                 request, deadline_at) \
             select gen_random_uuid(), b.instance_id, b.binding_id, 'revoke', 'in progress', \
                 '{}'::jsonb, now() + $2 \
             from service_binding b \
             where b.expires_at is not null and b.expires_at <= now() and b.revoked_at is null and b.deleted_at is null \
                 and b.state = 'ready' and b.active_operation_id is null \
                 and not exists (select 1 from operation o where o.binding_id = b.binding_id \
                     and o.kind = 'revoke' and (o.state = 'in progress' \
                         or (o.state = 'failed' and o.finished_at > now() - interval '1 minute'))) \
             order by b.expires_at \
             limit $1 \
             on conflict do nothing",
        )
        .bind(limit)
        .bind(deadline)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    pub(in crate::store) async fn queue_stats(&self) -> Result<(i64, f64), sqlx::Error> {
        sqlx::query_as(
            "select count(*), coalesce(extract(epoch from now() - min(created_at))::float8, 0) \
             from operation where state = 'in progress'",
        )
        .fetch_one(&self.pool)
        .await
    }
}
