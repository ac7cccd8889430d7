//! Service binding rows: create (or revive a tombstone), read, claim for an operation,
//! and the sealed credentials' keys.

use uuid::fmt::Hyphenated;

use super::operations::insert_operation;
use super::{
    SqliteStore, id, json, json_list, micros, now, optional_json, optional_time, parse_json,
};
use crate::store::{
    BindingInsert, BindingRecord, BindingState, NewBinding, NewOperation, SealedCredentials,
};

#[derive(sqlx::FromRow)]
struct BindingRow {
    binding_id: String,
    instance_id: String,
    service_id: String,
    plan_id: String,
    parameters: String,
    app_guid: Option<String>,
    route: Option<String>,
    credentials: Option<Vec<u8>>,
    credentials_key: Option<String>,
    state: String,
    active_operation_id: Option<Hyphenated>,
    expires_at: Option<i64>,
    revoked_at: Option<i64>,
}

impl TryFrom<BindingRow> for BindingRecord {
    type Error = sqlx::Error;

    fn try_from(r: BindingRow) -> Result<Self, Self::Error> {
        Ok(Self {
            credentials: sealed(r.credentials, r.credentials_key),
            binding_id: r.binding_id,
            instance_id: r.instance_id,
            service_id: r.service_id,
            plan_id: r.plan_id,
            parameters: parse_json(&r.parameters)?,
            app_guid: r.app_guid,
            route: r.route,
            state: BindingState::parse(&r.state),
            active_operation_id: r.active_operation_id.map(Hyphenated::into_uuid),
            expires_at: optional_time(r.expires_at)?,
            revoked_at: optional_time(r.revoked_at)?,
        })
    }
}

/// Sealed credentials from their two columns (both set or both null, by a check).
pub(super) fn sealed(
    ciphertext: Option<Vec<u8>>,
    key_label: Option<String>,
) -> Option<SealedCredentials> {
    match (ciphertext, key_label) {
        (Some(ciphertext), Some(key_label)) => Some(SealedCredentials {
            key_label,
            ciphertext,
        }),
        _ => None,
    }
}

impl SqliteStore {
    /// Inserts the binding and its bind operation in one transaction, if its instance is
    /// ready and idle. The check and the insert run in one writer transaction, so a
    /// deprovision cannot start in between.
    pub async fn insert_binding(
        &self,
        new: &NewBinding<'_>,
        operation: &NewOperation<'_>,
    ) -> Result<BindingInsert, sqlx::Error> {
        let mut tx = self.begin().await?;
        let now = now();
        let available: bool = sqlx::query_scalar(
            "select exists (select 1 from service_instance \
             where instance_id = ?1 and deleted_at is null and state = 'ready' \
                 and active_operation_id is null)",
        )
        .bind(new.instance_id)
        .fetch_one(&mut *tx)
        .await?;
        if !available {
            tx.rollback().await?;
            return Ok(BindingInsert::InstanceUnavailable);
        }
        let inserted = sqlx::query(
            "insert into service_binding (binding_id, instance_id, service_id, plan_id, parameters, \
                 app_guid, route, bind_resource, context, state, active_operation_id, \
                 expires_at, predecessor_binding_id, created_at, updated_at) \
             values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, 'creating', ?10, ?11, ?12, ?13, ?13) \
             on conflict (binding_id) do update set \
                 instance_id = excluded.instance_id, service_id = excluded.service_id, \
                 plan_id = excluded.plan_id, parameters = excluded.parameters, \
                 app_guid = excluded.app_guid, route = excluded.route, \
                 bind_resource = excluded.bind_resource, context = excluded.context, \
                 state = 'creating', active_operation_id = excluded.active_operation_id, \
                 credentials = null, credentials_key = null, \
                 expires_at = excluded.expires_at, revoked_at = null, \
                 predecessor_binding_id = excluded.predecessor_binding_id, \
                 created_at = excluded.created_at, updated_at = excluded.updated_at, \
                 deleted_at = null \
             where service_binding.deleted_at is not null \
                 or (service_binding.state = 'failed' \
                     and service_binding.active_operation_id is null \
                     and service_binding.instance_id = excluded.instance_id)",
        )
        .bind(new.binding_id)
        .bind(new.instance_id)
        .bind(new.service_id)
        .bind(new.plan_id)
        .bind(json(new.parameters))
        .bind(new.app_guid)
        .bind(new.route)
        .bind(optional_json(new.bind_resource))
        .bind(optional_json(new.context))
        .bind(id(operation.operation_id))
        .bind(new.expires_at.map(micros))
        .bind(new.predecessor_binding_id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !inserted {
            tx.rollback().await?;
            return Ok(BindingInsert::Exists);
        }
        insert_operation(&mut tx, operation, now).await?;
        tx.commit().await?;
        Ok(BindingInsert::Inserted)
    }

    /// Reads a binding, tombstones included.
    pub async fn find_binding(
        &self,
        binding_id: &str,
    ) -> Result<Option<BindingRecord>, sqlx::Error> {
        let row: Option<BindingRow> = sqlx::query_as(
            "select binding_id, instance_id, service_id, plan_id, parameters, app_guid, route, \
                 credentials, credentials_key, state, active_operation_id, expires_at, revoked_at \
             from service_binding where binding_id = ?1",
        )
        .bind(binding_id)
        .fetch_optional(self.reader())
        .await?;
        row.map(TryInto::try_into).transpose()
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
        let mut tx = self.begin().await?;
        let now = now();
        let claimed = sqlx::query(
            "update service_binding set active_operation_id = ?2, \
                 state = coalesce(?4, state), updated_at = ?5 \
             where binding_id = ?1 and deleted_at is null and active_operation_id is null \
                 and state in (select value from json_each(?3))",
        )
        .bind(binding_id)
        .bind(id(operation.operation_id))
        .bind(json_list(allowed.iter().map(|s| s.as_str())))
        .bind(new_state.map(BindingState::as_str))
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !claimed {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_operation(&mut tx, operation, now).await?;
        tx.commit().await?;
        Ok(true)
    }
}

impl SqliteStore {
    /// Labels of the keys that sealed stored credentials, each with its count.
    pub async fn credential_key_labels(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        sqlx::query_as(
            "select credentials_key, count(*) from service_binding \
             where credentials_key is not null group by credentials_key order by credentials_key",
        )
        .fetch_all(self.reader())
        .await
    }

    /// Up to `limit` sealed credentials not sealed with `primary`, after `after`
    /// (binding ids in order, so a rotation pages through them).
    pub async fn credentials_not_sealed_with(
        &self,
        primary: &str,
        after: &str,
        limit: i64,
    ) -> Result<Vec<(String, SealedCredentials)>, sqlx::Error> {
        let rows: Vec<(String, Vec<u8>, String)> = sqlx::query_as(
            "select binding_id, credentials, credentials_key from service_binding \
             where credentials_key is not null and credentials_key <> ?1 and binding_id > ?2 \
             order by binding_id limit ?3",
        )
        .bind(primary)
        .bind(after)
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(id, ciphertext, key_label)| {
                (
                    id,
                    SealedCredentials {
                        key_label,
                        ciphertext,
                    },
                )
            })
            .collect())
    }

    /// Replaces sealed credentials, only if they are still those sealed by `old_label`
    /// (a concurrent rebind or rotation wins).
    pub async fn reseal_credentials(
        &self,
        binding_id: &str,
        old_label: &str,
        sealed: &SealedCredentials,
    ) -> Result<bool, sqlx::Error> {
        Ok(sqlx::query(
            "update service_binding set credentials = ?3, credentials_key = ?4, updated_at = ?5 \
             where binding_id = ?1 and credentials_key = ?2",
        )
        .bind(binding_id)
        .bind(old_label)
        .bind(&sealed.ciphertext)
        .bind(&sealed.key_label)
        .bind(now())
        .execute(self.writer())
        .await?
        .rows_affected()
            == 1)
    }
}
