//! The audit trail: who asked for what, and how it was answered.

use super::SqliteStore;
use crate::store::AuditEvent;

impl SqliteStore {
    /// Appends audit events in one transaction: the broker writes them in batches, off
    /// the request path (docs/decisions.md). One prepared statement, run per event.
    pub(in crate::store) async fn record_audit_events(
        &self,
        events: &[AuditEvent],
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.begin().await?;
        for e in events {
            sqlx::query(
                "insert into audit_event (occurred_at, action, instance_id, binding_id, \
                     operation_id, status, api_version, request_id, platform, identity) \
                 values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
            )
            .bind(self.value(&e.occurred_at))
            .bind(&e.action)
            .bind(&e.instance_id)
            .bind(e.binding_id.as_deref())
            .bind(self.value(&e.operation_id))
            .bind(i32::from(e.status))
            .bind(&e.api_version)
            .bind(e.request_id.as_deref())
            .bind(e.platform.as_deref())
            .bind(self.value(&e.identity))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }
}
