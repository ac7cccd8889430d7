//! Service instance statements in PostgreSQL's own SQL: create (or revive a tombstone)
//! and claim for an operation.

use uuid::Uuid;

use super::PgStore;
use super::new_operation::{bind_operation, insert_operation_from};
use crate::store::{Claim, NewInstance, NewOperation};

impl PgStore {
    /// One statement: the upsert gates the operation's insert.
    pub(in crate::store) async fn insert_instance(
        &self,
        new: &NewInstance<'_>,
        operation: &NewOperation<'_>,
    ) -> Result<bool, sqlx::Error> {
        let statement = concat!(
            "with instance as ( \
                 insert into service_instance (instance_id, service_id, plan_id, parameters, \
                     organization_guid, space_guid, context, dashboard_url, state, \
                     active_operation_id, maintenance_version, backend_kind) \
                 values ($2, $9, $10, $11, $12, $13, $14, $15, 'provisioning', $1, $16, $17) \
                 on conflict (instance_id) do update set \
                     service_id = excluded.service_id, plan_id = excluded.plan_id, \
                     parameters = excluded.parameters, \
                     organization_guid = excluded.organization_guid, \
                     space_guid = excluded.space_guid, context = excluded.context, \
                     dashboard_url = excluded.dashboard_url, state = 'provisioning', \
                     maintenance_version = excluded.maintenance_version, \
                     backend_kind = excluded.backend_kind, backend_facts = null, \
                     active_operation_id = excluded.active_operation_id, \
                     created_at = now(), updated_at = now(), deleted_at = null \
                 where service_instance.deleted_at is not null \
                     or (service_instance.state = 'failed' \
                         and service_instance.active_operation_id is null) \
                 returning instance_id) ",
            insert_operation_from!("instance")
        );
        let inserted = bind_operation(sqlx::query(statement), operation)
            .bind(new.service_id)
            .bind(new.plan_id)
            .bind(new.parameters)
            .bind(new.organization_guid)
            .bind(new.space_guid)
            .bind(new.context)
            .bind(new.dashboard_url)
            .bind(new.maintenance_version)
            .bind(new.backend_kind)
            .execute(&self.pool)
            .await?
            .rows_affected()
            == 1;
        Ok(inserted)
    }

    /// A deprovision waits for binds and unbinds in flight on the instance: the
    /// bind path holds a share lock on the instance row while it registers its
    /// operation, so the row lock taken here sees every committed binding operation.
    pub(in crate::store) async fn begin_instance_operation(
        &self,
        instance_id: &str,
        claim: Claim<'_>,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let locked: Option<(Option<Uuid>, String)> = sqlx::query_as(
            "select active_operation_id, state from service_instance \
             where instance_id = $1 and deleted_at is null for update",
        )
        .bind(instance_id)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((None, state)) = locked else {
            return Ok(false);
        };
        if !claim.allowed.contains(&state.as_str()) {
            return Ok(false);
        }
        // A second statement, so that its snapshot is taken after the row lock: it sees
        // every binding operation committed while this one waited.
        let statement = concat!(
            "with target as ( \
                 update service_instance set active_operation_id = $1, \
                     state = coalesce($9, state), updated_at = now() \
                 where instance_id = $2 and not exists ( \
                     select 1 from service_binding where instance_id = $2 \
                         and deleted_at is null and active_operation_id is not null) \
                 returning instance_id) ",
            insert_operation_from!("target")
        );
        let started = bind_operation(sqlx::query(statement), claim.operation)
            .bind(claim.new_state)
            .execute(&mut *tx)
            .await?
            .rows_affected()
            == 1;
        if !started {
            tx.rollback().await?;
            return Ok(false);
        }
        tx.commit().await?;
        Ok(true)
    }
}
