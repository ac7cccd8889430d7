//! Service binding rows: create (or revive a tombstone), read, and claim for an operation.

use serde_json::Value;
use uuid::Uuid;

use super::PgStore;
use super::operations::insert_operation;
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
        }
    }
}

impl PgStore {
    /// Inserts the binding and its bind operation in one transaction, holding a share
    /// lock on the instance row so that a deprovision cannot start in between.
    pub async fn insert_binding(
        &self,
        new: &NewBinding<'_>,
        operation: &NewOperation<'_>,
    ) -> Result<BindingInsert, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let instance: Option<(String, Option<Uuid>)> = sqlx::query_as(
            "select state, active_operation_id from service_instance \
             where instance_id = $1 and deleted_at is null for share",
        )
        .bind(new.instance_id)
        .fetch_optional(&mut *tx)
        .await?;
        if !matches!(instance, Some((ref state, None)) if state == "ready") {
            return Ok(BindingInsert::InstanceUnavailable);
        }
        let inserted = sqlx::query(
            "insert into service_binding (binding_id, instance_id, service_id, plan_id, parameters, \
                 app_guid, route, bind_resource, context, state, active_operation_id, \
                 expires_at, predecessor_binding_id) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'creating', $10, $11, $12) \
             on conflict (binding_id) do update set \
                 instance_id = excluded.instance_id, service_id = excluded.service_id, \
                 plan_id = excluded.plan_id, parameters = excluded.parameters, \
                 app_guid = excluded.app_guid, route = excluded.route, \
                 bind_resource = excluded.bind_resource, context = excluded.context, \
                 state = 'creating', active_operation_id = excluded.active_operation_id, \
                 credentials = null, credentials_key = null, \
                 expires_at = excluded.expires_at, \
                 predecessor_binding_id = excluded.predecessor_binding_id, \
                 created_at = now(), updated_at = now(), deleted_at = null \
             where service_binding.deleted_at is not null",
        )
        .bind(new.binding_id)
        .bind(new.instance_id)
        .bind(new.service_id)
        .bind(new.plan_id)
        .bind(new.parameters)
        .bind(new.app_guid)
        .bind(new.route)
        .bind(new.bind_resource)
        .bind(new.context)
        .bind(operation.operation_id)
        .bind(new.expires_at)
        .bind(new.predecessor_binding_id)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !inserted {
            tx.rollback().await?;
            return Ok(BindingInsert::Exists);
        }
        insert_operation(&mut tx, operation).await?;
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
                 credentials, credentials_key, state, active_operation_id, expires_at \
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
        let mut tx = self.pool.begin().await?;
        let allowed: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
        let claimed = sqlx::query(
            "update service_binding set active_operation_id = $2, \
                 state = coalesce($4, state), updated_at = now() \
             where binding_id = $1 and deleted_at is null and active_operation_id is null \
                 and state = any($3)",
        )
        .bind(binding_id)
        .bind(operation.operation_id)
        .bind(&allowed)
        .bind(new_state.map(BindingState::as_str))
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !claimed {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_operation(&mut tx, operation).await?;
        tx.commit().await?;
        Ok(true)
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
