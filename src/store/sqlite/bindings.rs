//! Service binding statements in SQLite's own SQL: create (or revive a tombstone),
//! claim for an operation, and reseal credentials.

use super::operations::register_if;
use super::{SqliteStore, id, json, now};
use crate::store::{BindingInsert, Claim, NewBinding, NewOperation, SealedCredentials};

impl SqliteStore {
    /// The check and the insert run in one writer transaction, so a deprovision cannot
    /// start in between.
    pub(in crate::store) async fn insert_binding(
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
        let gated = sqlx::query(
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
        .bind(new.bind_resource.map(json))
        .bind(new.context.map(json))
        .bind(id(operation.operation_id))
        .bind(self.value(&new.expires_at))
        .bind(new.predecessor_binding_id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        Ok(if register_if(tx, gated, operation, now).await? {
            BindingInsert::Inserted
        } else {
            BindingInsert::Exists
        })
    }

    /// One writer transaction: the update, then the operation.
    pub(in crate::store) async fn begin_binding_operation(
        &self,
        binding_id: &str,
        claim: Claim<'_>,
    ) -> Result<bool, sqlx::Error> {
        let claim_row = "update service_binding set active_operation_id = ?2, \
                 state = coalesce(?4, state), updated_at = ?5 \
             where binding_id = ?1 and deleted_at is null and active_operation_id is null \
                 and state in (select value from json_each(?3))";
        self.claim_row(claim_row, binding_id, claim).await
    }

    /// Only while the credentials are sealed by `old_label`.
    pub(in crate::store) async fn reseal_credentials(
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
