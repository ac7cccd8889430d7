//! Service binding statements in PostgreSQL's own SQL: create (or revive a tombstone),
//! claim for an operation, and reseal credentials.

use super::PgStore;
use super::new_operation::{bind_operation, insert_operation_from};
use crate::store::{BindingInsert, Claim, NewBinding, NewOperation, SealedCredentials};

impl PgStore {
    /// One statement that holds a share lock on the instance row, so that a
    /// deprovision cannot start in between (it takes the row lock, then looks for
    /// binding operations in flight).
    pub(in crate::store) async fn insert_binding(
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

    /// One statement: the update gates the operation's insert.
    pub(in crate::store) async fn begin_binding_operation(
        &self,
        binding_id: &str,
        claim: Claim<'_>,
    ) -> Result<bool, sqlx::Error> {
        let statement = concat!(
            "with target as ( \
                 update service_binding set active_operation_id = $1, \
                     state = coalesce($10, state), updated_at = now() \
                 where binding_id = $3 and deleted_at is null and active_operation_id is null \
                     and state = any($9) \
                 returning binding_id) ",
            insert_operation_from!("target")
        );
        debug_assert_eq!(claim.operation.binding_id, Some(binding_id));
        let started = bind_operation(sqlx::query(statement), claim.operation)
            .bind(&claim.allowed)
            .bind(claim.new_state)
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1;
        Ok(started)
    }

    /// Only while the credentials are sealed by `old_label`.
    pub(in crate::store) async fn reseal_credentials(
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
