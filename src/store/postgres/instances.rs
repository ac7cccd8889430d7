//! Service instance rows: create (or revive a tombstone), read, and claim for an operation.

use serde_json::Value;
use uuid::Uuid;

use super::PgStore;
use super::operations::{bind_operation, insert_operation_from};
use crate::store::{InstanceRecord, InstanceState, NewInstance, NewOperation, PlanUsage};

#[derive(sqlx::FromRow)]
pub(super) struct InstanceRow {
    pub(super) instance_id: String,
    pub(super) service_id: String,
    pub(super) plan_id: String,
    pub(super) parameters: Value,
    pub(super) organization_guid: Option<String>,
    pub(super) space_guid: Option<String>,
    pub(super) dashboard_url: Option<String>,
    pub(super) state: String,
    pub(super) active_operation_id: Option<Uuid>,
    pub(super) maintenance_version: Option<String>,
    pub(super) backend_kind: Option<String>,
}

impl From<InstanceRow> for InstanceRecord {
    fn from(r: InstanceRow) -> Self {
        Self {
            instance_id: r.instance_id,
            service_id: r.service_id,
            plan_id: r.plan_id,
            parameters: r.parameters,
            organization_guid: r.organization_guid,
            space_guid: r.space_guid,
            dashboard_url: r.dashboard_url,
            state: InstanceState::parse(&r.state),
            active_operation_id: r.active_operation_id,
            maintenance_version: r.maintenance_version,
            backend_kind: r.backend_kind,
        }
    }
}

impl PgStore {
    /// Inserts the instance and its provision operation in one statement, or does
    /// nothing when a live instance with this id exists (then `false`). A tombstone is
    /// revived: ids are the platform's to reuse after a delete. So is an instance whose
    /// provision failed and that nothing runs on: the platform's corrected retry replaces it
    /// (docs/decisions.md).
    pub async fn insert_instance(
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
                     backend_kind = excluded.backend_kind, \
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

    /// Reads an instance, tombstones included.
    pub async fn find_instance(
        &self,
        instance_id: &str,
    ) -> Result<Option<InstanceRecord>, sqlx::Error> {
        let row: Option<InstanceRow> = sqlx::query_as(
            "select instance_id, service_id, plan_id, parameters, organization_guid, \
                 space_guid, dashboard_url, state, active_operation_id, maintenance_version, \
                 backend_kind \
             from service_instance where instance_id = $1",
        )
        .bind(instance_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(Into::into))
    }

    /// Makes `operation` the instance's active operation if none is running and the
    /// instance is in one of `allowed` states, inserting the operation in the same
    /// transaction. `false` when another operation got there first.
    ///
    /// A deprovision also waits for binds and unbinds in flight on the instance: the
    /// bind path holds a share lock on the instance row while it registers its
    /// operation, so the row lock taken here sees every committed binding operation.
    pub async fn begin_instance_operation(
        &self,
        instance_id: &str,
        allowed: &[InstanceState],
        operation: &NewOperation<'_>,
        new_state: Option<InstanceState>,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let allowed: Vec<&str> = allowed.iter().map(|s| s.as_str()).collect();
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
        if !allowed.contains(&state.as_str()) {
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
        let started = bind_operation(sqlx::query(statement), operation)
            .bind(new_state.map(InstanceState::as_str))
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

    /// Live instances counted per (service, plan, recorded backend kind).
    pub async fn instance_plans(&self) -> Result<Vec<PlanUsage>, sqlx::Error> {
        let rows: Vec<(String, String, Option<String>, i64)> = sqlx::query_as(
            "select service_id, plan_id, backend_kind, count(*) from service_instance \
             where deleted_at is null group by service_id, plan_id, backend_kind",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(service_id, plan_id, backend_kind, instances)| PlanUsage {
                service_id,
                plan_id,
                backend_kind,
                instances,
            })
            .collect())
    }

    /// Records `backend_kind` on the instances of a plan that have none.
    pub async fn fill_backend_kind(
        &self,
        service_id: &str,
        plan_id: &str,
        backend_kind: &str,
    ) -> Result<u64, sqlx::Error> {
        Ok(sqlx::query(
            "update service_instance set backend_kind = $3 \
             where service_id = $1 and plan_id = $2 and backend_kind is null",
        )
        .bind(service_id)
        .bind(plan_id)
        .bind(backend_kind)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }
}
