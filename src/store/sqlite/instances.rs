//! Service instance statements in SQLite's own SQL: create (or revive a tombstone) and
//! claim for an operation.

use super::operations::register_if;
use super::{SqliteStore, id, json, now};
use crate::store::{Claim, NewInstance, NewOperation};

impl SqliteStore {
    /// One writer transaction: the upsert, then the operation.
    pub(in crate::store) async fn insert_instance(
        &self,
        new: &NewInstance<'_>,
        operation: &NewOperation<'_>,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.begin().await?;
        let now = now();
        let gated = sqlx::query(
            "insert into service_instance (instance_id, service_id, plan_id, parameters, \
                 organization_guid, space_guid, context, dashboard_url, state, active_operation_id, \
                 maintenance_version, created_at, updated_at, backend_kind) \
             values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 'provisioning', ?9, ?10, ?11, ?11, ?12) \
             on conflict (instance_id) do update set \
                 service_id = excluded.service_id, plan_id = excluded.plan_id, \
                 parameters = excluded.parameters, organization_guid = excluded.organization_guid, \
                 space_guid = excluded.space_guid, context = excluded.context, \
                 dashboard_url = excluded.dashboard_url, state = 'provisioning', \
                 maintenance_version = excluded.maintenance_version, \
                 backend_kind = excluded.backend_kind, backend_facts = null, \
                 active_operation_id = excluded.active_operation_id, \
                 created_at = excluded.created_at, updated_at = excluded.updated_at, \
                 deleted_at = null \
             where service_instance.deleted_at is not null \
                 or (service_instance.state = 'failed' \
                     and service_instance.active_operation_id is null)",
        )
        .bind(new.instance_id)
        .bind(new.service_id)
        .bind(new.plan_id)
        .bind(json(new.parameters))
        .bind(new.organization_guid)
        .bind(new.space_guid)
        .bind(new.context.map(json))
        .bind(new.dashboard_url)
        .bind(id(operation.operation_id))
        .bind(new.maintenance_version)
        .bind(now)
        .bind(new.backend_kind)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        register_if(tx, gated, operation, now).await
    }

    /// One statement checks all three conditions; the writer runs one transaction at a
    /// time, so no bind can register between the check and the claim.
    pub(in crate::store) async fn begin_instance_operation(
        &self,
        instance_id: &str,
        claim: Claim<'_>,
    ) -> Result<bool, sqlx::Error> {
        let claim_row = "update service_instance set active_operation_id = ?2, \
                 state = coalesce(?4, state), updated_at = ?5 \
             where instance_id = ?1 and deleted_at is null and active_operation_id is null \
                 and state in (select value from json_each(?3)) \
                 and not exists (select 1 from service_binding b \
                     where b.instance_id = ?1 and b.deleted_at is null \
                         and b.active_operation_id is not null)";
        self.claim_row(claim_row, instance_id, claim).await
    }
}
