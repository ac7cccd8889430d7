//! Service binding rows: create (or revive a tombstone), read, and claim for an operation.

use serde_json::Value;
use uuid::Uuid;

use super::PgStore;
use super::operations::{bind_operation, insert_operation_from};
use crate::store::{
    BindingInsert, BindingRecord, BindingState, NewBinding, NewOperation, SealedCredentials,
};

#[derive(sqlx::FromRow)]
struct BindingRow {
    binding_id: String,
    instance_id: String,
    service_id: String,
    plan_id: String,
    parameters: Value,
    app_guid: Option<String>,
    route: Option<String>,
    credentials: Option<Vec<u8>>,
    credentials_key: Option<String>,
    state: String,
    active_operation_id: Option<Uuid>,
    expires_at: Option<chrono::DateTime<chrono::Utc>>,
    revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl From<BindingRow> for BindingRecord {
    fn from(r: BindingRow) -> Self {
        let credentials = match (r.credentials, r.credentials_key) {
            (Some(ciphertext), Some(key_label)) => Some(SealedCredentials {
                key_label,
                ciphertext,
            }),
            _ => None,
        };
        Self {
            binding_id: r.binding_id,
            instance_id: r.instance_id,
            service_id: r.service_id,
            plan_id: r.plan_id,
            parameters: r.parameters,
            app_guid: r.app_guid,
            route: r.route,
            credentials,
            state: BindingState::parse(&r.state),
            active_operation_id: r.active_operation_id,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        }
    }
}

impl PgStore {
    /// Inserts the binding and its bind operation in one statement that holds a share
    /// lock on the instance row, so that a deprovision cannot start in between (it
    /// takes the row lock, then looks for binding operations in flight).
    pub async fn insert_binding(
        &self,
        new: &NewBinding<'_>,
        operation: &NewOperation<'_>,
    ) -> Result<BindingInsert, sqlx::Error> {
        let statement = concat!(
            "with instance as ( \
                 select instance_id from service_instance \
                 where instance_id = $2 and deleted_at is null and state = 'ready' \
                     and active_operation_id is null \
                 for share), \
             binding as ( \
                 insert into service_binding (binding_id, instance_id, service_id, plan_id, \
                     parameters, app_guid, route, bind_resource, context, state, \
                     active_operation_id, expires_at, predecessor_binding_id) \
                 select $3, instance_id, $9, $10, $11, $12, $13, $14, $15, 'creating', $1, \
                     $16, $17 \
                 from instance \
                 on conflict (binding_id) do update set \
                     instance_id = excluded.instance_id, service_id = excluded.service_id, \
                     plan_id = excluded.plan_id, parameters = excluded.parameters, \
                     app_guid = excluded.app_guid, route = excluded.route, \
                     bind_resource = excluded.bind_resource, context = excluded.context, \
                     state = 'creating', active_operation_id = excluded.active_operation_id, \
                     credentials = null, credentials_key = null, \
                     expires_at = excluded.expires_at, revoked_at = null, \
                     predecessor_binding_id = excluded.predecessor_binding_id, \
                     created_at = now(), updated_at = now(), deleted_at = null \
                 where service_binding.deleted_at is not null \
                     or (service_binding.state = 'failed' \
                         and service_binding.active_operation_id is null \
                         and service_binding.instance_id = excluded.instance_id) \
                 returning binding_id), \
             operation as (",
            insert_operation_from!("binding"),
            " returning operation_id) \
             select (select count(*) from instance), (select count(*) from binding)"
        );
        let (instances, bindings): (i64, i64) = bind_operation(sqlx::query(statement), operation)
            .bind(new.service_id)
            .bind(new.plan_id)
            .bind(new.parameters)
            .bind(new.app_guid)
            .bind(new.route)
            .bind(new.bind_resource)
            .bind(new.context)
            .bind(new.expires_at)
            .bind(new.predecessor_binding_id)
            .try_map(|row: sqlx::postgres::PgRow| {
                use sqlx::Row as _;
                Ok((row.try_get(0)?, row.try_get(1)?))
            })
            .fetch_one(&self.pool)
            .await?;
        Ok(match (instances, bindings) {
            (0, _) => BindingInsert::InstanceUnavailable,
            (_, 0) => BindingInsert::Exists,
            _ => BindingInsert::Inserted,
        })
    }

    /// Reads a binding, tombstones included.
    pub async fn find_binding(
        &self,
        binding_id: &str,
    ) -> Result<Option<BindingRecord>, sqlx::Error> {
        let row: Option<BindingRow> = sqlx::query_as(
            "select binding_id, instance_id, service_id, plan_id, parameters, app_guid, route, \
                 credentials, credentials_key, state, active_operation_id, expires_at, revoked_at \
             from service_binding where binding_id = $1",
        )
        .bind(binding_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
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
        let allowed: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
        let statement = concat!(
            "with target as ( \
                 update service_binding set active_operation_id = $1, \
                     state = coalesce($10, state), updated_at = now() \
                 where binding_id = $3 and deleted_at is null and active_operation_id is null \
                     and state = any($9) \
                 returning binding_id) ",
            insert_operation_from!("target")
        );
        debug_assert_eq!(operation.binding_id, Some(binding_id));
        let started = bind_operation(sqlx::query(statement), operation)
            .bind(&allowed)
            .bind(new_state.map(BindingState::as_str))
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1;
        Ok(started)
    }
}

impl PgStore {
    /// Labels of the keys that sealed stored credentials, each with its count.
    pub async fn credential_key_labels(&self) -> Result<Vec<(String, i64)>, sqlx::Error> {
        sqlx::query_as(
            "select credentials_key, count(*) from service_binding \
             where credentials_key is not null group by credentials_key order by credentials_key",
        )
        .fetch_all(&self.pool)
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
             where credentials_key is not null and credentials_key <> $1 and binding_id > $2 \
             order by binding_id limit $3",
        )
        .bind(primary)
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
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
            "update service_binding set credentials = $3, credentials_key = $4, updated_at = now() \
             where binding_id = $1 and credentials_key = $2",
        )
        .bind(binding_id)
        .bind(old_label)
        .bind(&sealed.ciphertext)
        .bind(&sealed.key_label)
        .execute(&self.pool)
        .await?
        .rows_affected()
            == 1)
    }
}
