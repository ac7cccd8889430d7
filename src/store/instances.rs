//! The store's service instance methods: the logic and SQL both databases share, and
//! what each says in its own SQL forwarded to it.

use super::row::INSTANCE_COLUMNS;
use super::{
    Claim, InstanceRecord, InstanceRow, InstanceState, NewInstance, NewOperation, OperationRecord,
    PlanUsage, Store,
};

impl Store {
    /// Inserts the instance and its provision operation together, or does nothing
    /// when a live instance with this id exists (then `false`). A tombstone is
    /// revived: ids are the platform's to reuse after a delete. So is an instance whose
    /// provision failed and that nothing runs on: the platform's corrected retry replaces it
    /// (docs/decisions.md).
    pub async fn insert_instance(
        &self,
        new: &NewInstance<'_>,
        operation: &NewOperation<'_>,
    ) -> Result<bool, sqlx::Error> {
        dispatch!(self, s => s.insert_instance(new, operation).await)
    }

    /// Live instances counted per (service, plan, recorded backend kind), for the
    /// start-up check against the catalog.
    pub async fn instance_plans(&self) -> Result<Vec<PlanUsage>, sqlx::Error> {
        let statement = "select service_id, plan_id, backend_kind, count(*) \
             from service_instance where deleted_at is null \
             group by service_id, plan_id, backend_kind";
        let rows: Vec<(String, String, Option<String>, i64)> =
            dispatch!(self, s => sqlx::query_as(statement).fetch_all(s.reader()).await)?;
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

    /// Records `backend_kind` on the instances of a plan that have none (rows written
    /// before the column existed); returns how many were filled.
    pub async fn fill_backend_kind(
        &self,
        service_id: &str,
        plan_id: &str,
        backend_kind: &str,
    ) -> Result<u64, sqlx::Error> {
        let statement = "update service_instance set backend_kind = $3 \
             where service_id = $1 and plan_id = $2 and backend_kind is null";
        let done = dispatch!(self, s => sqlx::query(statement)
            .bind(service_id)
            .bind(plan_id)
            .bind(backend_kind)
            .execute(s.writer())
            .await?
            .rows_affected());
        Ok(done)
    }

    /// Reads an instance, tombstones included.
    pub async fn find_instance(
        &self,
        instance_id: &str,
    ) -> Result<Option<InstanceRecord>, sqlx::Error> {
        let statement =
            format!("select {INSTANCE_COLUMNS} from service_instance where instance_id = $1");
        let row: Option<InstanceRow> = self.row_by(&statement, instance_id).await?;
        Ok(row.map(Into::into))
    }

    /// Makes `operation` the instance's active operation if none is running, no
    /// binding operation is running on it, and the instance is in one of `allowed`
    /// states; inserts the operation with it. `false` when something got there first.
    pub async fn begin_instance_operation(
        &self,
        instance_id: &str,
        allowed: &[InstanceState],
        operation: &NewOperation<'_>,
        new_state: Option<InstanceState>,
    ) -> Result<bool, sqlx::Error> {
        let claim = Claim {
            allowed: allowed.iter().map(|s| s.as_str()).collect(),
            operation,
            new_state: new_state.map(InstanceState::as_str),
        };
        dispatch!(self, s => s.begin_instance_operation(instance_id, claim).await)
    }

    /// The active operation of an instance, if any.
    pub async fn active_instance_operation(
        &self,
        instance: &InstanceRecord,
    ) -> Result<Option<OperationRecord>, sqlx::Error> {
        match instance.active_operation_id {
            Some(id) => self.find_operation(id).await,
            None => Ok(None),
        }
    }
}
