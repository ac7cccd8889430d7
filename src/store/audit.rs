//! The audit trail: who asked for what, and how it was answered.

use serde_json::Value;
use uuid::Uuid;

use super::Store;

/// One audited request. Holds no request body and no credential: only ids, the
/// answer, and the decoded originating identity.
#[derive(Debug, Clone)]
pub struct AuditEvent<'a> {
    /// provision, update, deprovision, bind or unbind.
    pub action: &'a str,
    /// The instance concerned.
    pub instance_id: &'a str,
    /// The binding concerned.
    pub binding_id: Option<&'a str>,
    /// The operation started or reported.
    pub operation_id: Option<Uuid>,
    /// HTTP status of the answer.
    pub status: u16,
    /// The request's API version.
    pub api_version: String,
    /// bindery's request id.
    pub request_id: Option<&'a str>,
    /// Originating identity platform.
    pub platform: Option<&'a str>,
    /// Originating identity value.
    pub identity: Option<Value>,
}

impl Store {
    /// Appends an audit event.
    pub async fn record_audit_event(&self, event: &AuditEvent<'_>) -> Result<(), sqlx::Error> {
        sqlx::query(
            "insert into audit_event (action, instance_id, binding_id, operation_id, status, \
                 api_version, request_id, platform, identity) \
             values ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(event.action)
        .bind(event.instance_id)
        .bind(event.binding_id)
        .bind(event.operation_id)
        .bind(i32::from(event.status))
        .bind(&event.api_version)
        .bind(event.request_id)
        .bind(event.platform)
        .bind(&event.identity)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
