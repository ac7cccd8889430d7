//! The operation queue: every backend action is a row here, claimed by a worker with
//! `FOR UPDATE SKIP LOCKED` and a lease, never with a transaction held across the
//! backend call. The outcome and its effect on the instance or binding are written in
//! one transaction, and only by the lease holder.
//!
//! Statements on one operation say `state not in ('succeeded', 'failed')` rather than
//! `state = 'in progress'` (the same rows, by the check constraint): the latter matches
//! the partial index `operation_runnable`, and PostgreSQL then walks the whole queue
//! instead of looking the row up by its primary key (docs/benchmarks.md).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::Postgres;
use uuid::Uuid;

use super::PgStore;
use super::instances::InstanceRow;
use crate::osb::OperationState;
use crate::store::{
    ClaimedOperation, NewOperation, OperationKind, OperationRecord, OperationTarget, Outcome,
};

#[derive(sqlx::FromRow)]
struct OperationRow {
    operation_id: Uuid,
    instance_id: String,
    binding_id: Option<String>,
    kind: String,
    state: String,
    description: Option<String>,
    request: Value,
    attempts: i32,
    deadline_at: DateTime<Utc>,
    next_attempt_at: DateTime<Utc>,
    lease_token: Option<Uuid>,
}

/// A claimed operation joined with its instance's columns (null when it is gone).
#[derive(sqlx::FromRow)]
struct ClaimedRow {
    #[sqlx(flatten)]
    operation: OperationRow,
    service_id: Option<String>,
    plan_id: Option<String>,
    parameters: Option<Value>,
    organization_guid: Option<String>,
    space_guid: Option<String>,
    dashboard_url: Option<String>,
    instance_state: Option<String>,
    active_operation_id: Option<Uuid>,
    maintenance_version: Option<String>,
    backend_kind: Option<String>,
}

impl From<ClaimedRow> for ClaimedOperation {
    fn from(r: ClaimedRow) -> Self {
        let instance = match (r.service_id, r.plan_id, r.instance_state) {
            (Some(service_id), Some(plan_id), Some(state)) => Some(
                InstanceRow {
                    instance_id: r.operation.instance_id.clone(),
                    service_id,
                    plan_id,
                    parameters: r.parameters.unwrap_or_default(),
                    organization_guid: r.organization_guid,
                    space_guid: r.space_guid,
                    dashboard_url: r.dashboard_url,
                    state,
                    active_operation_id: r.active_operation_id,
                    maintenance_version: r.maintenance_version,
                    backend_kind: r.backend_kind,
                }
                .into(),
            ),
            _ => None,
        };
        Self {
            operation: r.operation.into(),
            instance,
        }
    }
}

impl From<OperationRow> for OperationRecord {
    fn from(r: OperationRow) -> Self {
        Self {
            operation_id: r.operation_id,
            instance_id: r.instance_id,
            binding_id: r.binding_id,
            kind: OperationKind::parse(&r.kind),
            state: OperationState::from_stored(&r.state).unwrap_or(OperationState::Failed),
            description: r.description,
            request: r.request,
            attempts: r.attempts,
            deadline_at: r.deadline_at,
            next_attempt_at: r.next_attempt_at,
            lease_token: r.lease_token,
        }
    }
}

/// The columns an [`OperationRow`] reads, as a literal for `concat!`.
macro_rules! operation_columns {
    () => {
        "operation_id, instance_id, binding_id, kind, state, description, request, attempts, \
         deadline_at, next_attempt_at, lease_token"
    };
}

/// The start of a statement that inserts the operation `$1`..`$8` binds (see
/// [`bind_operation`]), completed by `from <a gating CTE>`: the operation is written
/// only when the gate returns a row, in the same statement as the state change, so a
/// request that registers work costs one round trip.
macro_rules! insert_operation_from {
    ($gate:literal) => {
        concat!(
            "insert into operation (operation_id, instance_id, binding_id, kind, state, request, \
                 deadline_at, lease_owner, lease_expires_at, attempts, lease_token) \
             select $1, $2, $3, $4, 'in progress', $5, now() + $6, $7, \
                 case when $7::text is null then null else now() + $8 end, \
                 case when $7::text is null then 0 else 1 end, \
                 case when $7::text is null then null else $1 end \
             from ",
            $gate
        )
    };
}
pub(super) use insert_operation_from;

/// Binds an operation's values as `$1`..`$8`, in the order `insert_operation_from!`
/// expects; the statement's own values follow from `$9`. An inline run's lease token
/// is the operation id (see [`NewOperation::inline_owner`]).
pub(super) fn bind_operation<'q>(
    query: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    op: &'q NewOperation<'q>,
) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
    query
        .bind(op.operation_id)
        .bind(op.instance_id)
        .bind(op.binding_id)
        .bind(op.kind.as_str())
        .bind(&op.request)
        .bind(op.deadline)
        .bind(op.inline_owner)
        .bind(op.lease)
}

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

impl PgStore {
    /// Reads one operation.
    pub async fn find_operation(
        &self,
        operation_id: Uuid,
    ) -> Result<Option<OperationRecord>, sqlx::Error> {
        let row: Option<OperationRow> = sqlx::query_as(concat!(
            "select ",
            operation_columns!(),
            " from operation where operation_id = $1"
        ))
        .bind(operation_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    /// The newest instance-level operation (provision, update, deprovision) of an instance.
    pub async fn latest_instance_operation(
        &self,
        instance_id: &str,
    ) -> Result<Option<OperationRecord>, sqlx::Error> {
        let row: Option<OperationRow> = sqlx::query_as(concat!(
            "select ",
            operation_columns!(),
            " from operation \
             where instance_id = $1 and kind in ('provision', 'update', 'deprovision') \
             order by created_at desc limit 1"
        ))
        .bind(instance_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    /// Claims up to `limit` runnable operations for `owner`: in progress, due, with a
    /// free or expired lease or one held by a process known to be gone, and not
    /// waiting for a superseded run that still holds its lease; oldest due first, each
    /// with its instance and a fresh lease token. One statement, so no transaction
    /// stays open while the backend works; `SKIP LOCKED` lets replicas claim side by
    /// side without waiting.
    pub async fn claim_operations(
        &self,
        owner: &str,
        lease: Duration,
        limit: i64,
    ) -> Result<Vec<ClaimedOperation>, sqlx::Error> {
        let rows: Vec<ClaimedRow> = sqlx::query_as(concat!(
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
                 returning ",
            operation_columns!(),
            ") \
             select claimed.*, i.service_id, i.plan_id, i.parameters, i.organization_guid, \
                 i.space_guid, i.dashboard_url, i.state as instance_state, \
                 i.active_operation_id, i.maintenance_version, i.backend_kind \
             from claimed left join service_instance i using (instance_id) \
             order by claimed.next_attempt_at"
        ))
        .bind(owner)
        .bind(lease)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    /// Extends the lease; `false` when the claim holding `token` no longer holds it
    /// (another claim took the operation, or it was finished or superseded).
    pub async fn renew_lease(
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

    /// Gives the operation back to the queue, to run again after `delay`.
    pub async fn retry_operation_later(
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

    /// Gives a claim back without changing anything else, so that the operation (or
    /// the delete waiting for a superseded one) can be taken at once: at graceful
    /// shutdown, and by a run that stops working on an operation it no longer owns.
    /// An operation still in progress does not count the attempt.
    pub async fn release_lease(&self, operation_id: Uuid, token: Uuid) -> Result<(), sqlx::Error> {
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

    /// Promises that `owner` is alive until `until` from now (`None`: it has stopped,
    /// so its leases may be taken at once), and forgets processes gone for a day.
    pub async fn heartbeat(&self, owner: &str, until: Option<Duration>) -> Result<(), sqlx::Error> {
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

    /// Records how the operation ended and applies its effect to the instance or
    /// binding, in one statement, only while the claim holding `token` holds the
    /// lease. `false` means the claim was lost: the operation was taken over, finished
    /// or superseded, and this run must not write.
    pub async fn finish_operation(
        &self,
        op: &OperationRecord,
        token: Uuid,
        outcome: &Outcome,
    ) -> Result<bool, sqlx::Error> {
        self.record_outcome(op, Some(token), outcome).await
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

    /// Writes the outcome and its effect in one statement, if the operation is still
    /// running (and, with `token`, still leased by that claim). `false` when nothing
    /// was written.
    async fn record_outcome(
        &self,
        op: &OperationRecord,
        token: Option<Uuid>,
        outcome: &Outcome,
    ) -> Result<bool, sqlx::Error> {
        let (state, description, sealed) = match outcome {
            Outcome::Succeeded { credentials } => {
                (OperationState::Succeeded, None, credentials.as_ref())
            }
            Outcome::Failed { description } => {
                (OperationState::Failed, Some(description.as_str()), None)
            }
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
            .fetch_one(&self.pool)
            .await?;
        Ok(finished == 1)
    }
}

/// The outcome statement: `$1` operation id, `$2` lease token (null: whoever holds
/// it), `$3` state, `$4` description, `$5` instance id, `$6` binding id, `$7` the
/// operation's request, `$8`/`$9` sealed credentials and key label (sqlx declares
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
        (OperationKind::Provision, true) => finish_with!(on_instance!("state = 'ready'")),
        (OperationKind::Provision, false) => finish_with!(on_instance!("state = 'failed'")),
        (OperationKind::Update, true) => finish_with!(on_instance!(
            "plan_id = coalesce($7->>'plan_id', plan_id), \
             parameters = coalesce($7->'parameters', parameters), \
             maintenance_version = case when $7 ? 'maintenance_version' \
                 then $7->>'maintenance_version' else maintenance_version end"
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

    /// The newest operation of a binding.
    pub async fn latest_binding_operation(
        &self,
        binding_id: &str,
    ) -> Result<Option<OperationRecord>, sqlx::Error> {
        let row: Option<OperationRow> = sqlx::query_as(concat!(
            "select ",
            operation_columns!(),
            " from operation \
             where binding_id = $1 and kind <> 'revoke' order by created_at desc limit 1"
        ))
        .bind(binding_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }
}

impl PgStore {
    /// Enqueues a `revoke` for up to `limit` bindings that are ready, past their
    /// `expires_at`, not revoked, not being changed by the platform, without a
    /// revocation already queued and without one that failed in the last minute (a
    /// failure that retries cannot cure is tried again once a minute, not at every
    /// sweep); oldest expiry first. The unique partial index
    /// `operation_one_revoke` makes a concurrent sweep by another replica a no-op.
    /// Returns how many were enqueued.
    pub async fn enqueue_revocations(
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

    /// Operations waiting or running, and the age in seconds of the oldest of them.
    pub async fn queue_stats(&self) -> Result<(i64, f64), sqlx::Error> {
        sqlx::query_as(
            "select count(*), coalesce(extract(epoch from now() - min(created_at))::float8, 0) \
             from operation where state = 'in progress'",
        )
        .fetch_one(&self.pool)
        .await
    }
}
