//! Service instance rows: create (or revive a tombstone), read, and claim for an operation.

use uuid::fmt::Hyphenated;

use super::operations::insert_operation;
use super::{SqliteStore, id, json, json_list, now, optional_json, parse_json};
use crate::store::{InstanceRecord, InstanceState, NewInstance, NewOperation, PlanUsage};

#[derive(sqlx::FromRow)]
struct InstanceRow {
    instance_id: String,
    service_id: String,
    plan_id: String,
    parameters: String,
    organization_guid: Option<String>,
    space_guid: Option<String>,
    dashboard_url: Option<String>,
    state: String,
    active_operation_id: Option<Hyphenated>,
    maintenance_version: Option<String>,
    backend_kind: Option<String>,
}

impl TryFrom<InstanceRow> for InstanceRecord {
    type Error = sqlx::Error;

    fn try_from(r: InstanceRow) -> Result<Self, Self::Error> {
        Ok(Self {
            instance_id: r.instance_id,
            service_id: r.service_id,
            plan_id: r.plan_id,
            parameters: parse_json(&r.parameters)?,
            organization_guid: r.organization_guid,
            space_guid: r.space_guid,
            dashboard_url: r.dashboard_url,
            state: InstanceState::parse(&r.state),
            active_operation_id: r.active_operation_id.map(Hyphenated::into_uuid),
            maintenance_version: r.maintenance_version,
            backend_kind: r.backend_kind,
        })
    }
}

const INSTANCE_COLUMNS: &str = "instance_id, service_id, plan_id, parameters, organization_guid, \
     space_guid, dashboard_url, state, active_operation_id, maintenance_version, backend_kind";

impl SqliteStore {
    /// Inserts the instance and its provision operation in one transaction, or does
    /// nothing when a live instance with this id exists (then `false`). A tombstone is
    /// revived: ids are the platform's to reuse after a delete. So is an instance whose
    /// provision failed and that nothing runs on: the platform's corrected retry replaces it
    /// (docs/decisions.md).
    pub async fn insert_instance(
        &self,
        new: &NewInstance<'_>,
        operation: &NewOperation<'_>,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.begin().await?;
        let now = now();
        let inserted = sqlx::query(
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
                 backend_kind = excluded.backend_kind, \
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
        .bind(optional_json(new.context))
        .bind(new.dashboard_url)
        .bind(id(operation.operation_id))
        .bind(new.maintenance_version)
        .bind(now)
        .bind(new.backend_kind)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !inserted {
            tx.rollback().await?;
            return Ok(false);
        }
        insert_operation(&mut tx, operation, now).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Reads an instance, tombstones included.
    pub async fn find_instance(
        &self,
        instance_id: &str,
    ) -> Result<Option<InstanceRecord>, sqlx::Error> {
        let row: Option<InstanceRow> = sqlx::query_as(&format!(
            "select {INSTANCE_COLUMNS} from service_instance where instance_id = ?1"
        ))
        .bind(instance_id)
        .fetch_optional(self.reader())
        .await?;
        row.map(TryInto::try_into).transpose()
    }

    /// Makes `operation` the instance's active operation if none is running, no binding
    /// operation is running on it, and the instance is in one of `allowed` states,
    /// inserting the operation in the same transaction. `false` when something got
    /// there first.
    ///
    /// One statement checks all three conditions; the writer runs one transaction at a
    /// time, so no bind can register between the check and the claim.
    pub async fn begin_instance_operation(
        &self,
        instance_id: &str,
        allowed: &[InstanceState],
        operation: &NewOperation<'_>,
        new_state: Option<InstanceState>,
    ) -> Result<bool, sqlx::Error> {
        let mut tx = self.begin().await?;
        let now = now();
        let claimed = sqlx::query(
            "update service_instance set active_operation_id = ?2, \
                 state = coalesce(?3, state), updated_at = ?4 \
             where instance_id = ?1 and deleted_at is null and active_operation_id is null \
                 and state in (select value from json_each(?5)) \
                 and not exists (select 1 from service_binding b \
                     where b.instance_id = ?1 and b.deleted_at is null \
                         and b.active_operation_id is not null)",
        )
        .bind(instance_id)
        .bind(id(operation.operation_id))
        .bind(new_state.map(InstanceState::as_str))
        .bind(now)
        .bind(json_list(allowed.iter().map(|s| s.as_str())))
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

    /// Live instances counted per (service, plan, recorded backend kind).
    pub async fn instance_plans(&self) -> Result<Vec<PlanUsage>, sqlx::Error> {
        let rows: Vec<(String, String, Option<String>, i64)> = sqlx::query_as(
            "select service_id, plan_id, backend_kind, count(*) from service_instance \
             where deleted_at is null group by service_id, plan_id, backend_kind",
        )
        .fetch_all(self.reader())
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
            "update service_instance set backend_kind = ?3 \
             where service_id = ?1 and plan_id = ?2 and backend_kind is null",
        )
        .bind(service_id)
        .bind(plan_id)
        .bind(backend_kind)
        .execute(self.writer())
        .await?
        .rows_affected())
    }
}
