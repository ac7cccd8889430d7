//! The audit trail: who asked for what, and how it was answered.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::PgStore;
use crate::store::AuditEvent;

impl PgStore {
    /// Appends audit events with one statement: the broker writes them in batches,
    /// off the request path (docs/decisions.md).
    pub(in crate::store) async fn record_audit_events(
        &self,
        events: &[AuditEvent],
    ) -> Result<(), sqlx::Error> {
        let mut occurred_at: Vec<DateTime<Utc>> = Vec::with_capacity(events.len());
        let mut action = Vec::with_capacity(events.len());
        let mut instance_id = Vec::with_capacity(events.len());
        let mut binding_id: Vec<Option<&str>> = Vec::with_capacity(events.len());
        let mut operation_id: Vec<Option<Uuid>> = Vec::with_capacity(events.len());
        let mut status: Vec<i32> = Vec::with_capacity(events.len());
        let mut api_version = Vec::with_capacity(events.len());
        let mut request_id: Vec<Option<&str>> = Vec::with_capacity(events.len());
        let mut platform: Vec<Option<&str>> = Vec::with_capacity(events.len());
        let mut identity: Vec<Option<Value>> = Vec::with_capacity(events.len());
        for e in events {
            occurred_at.push(e.occurred_at);
            action.push(e.action.as_str());
            instance_id.push(e.instance_id.as_str());
            binding_id.push(e.binding_id.as_deref());
            operation_id.push(e.operation_id);
            status.push(i32::from(e.status));
            api_version.push(e.api_version.as_str());
            request_id.push(e.request_id.as_deref());
            platform.push(e.platform.as_deref());
            identity.push(e.identity.clone());
        }
        sqlx::query(
            "insert into audit_event (occurred_at, action, instance_id, binding_id, operation_id, \
                 status, api_version, request_id, platform, identity) \
             select * from unnest($1::timestamptz[], $2::text[], $3::text[], $4::text[], \
                 $5::uuid[], $6::int4[], $7::text[], $8::text[], $9::text[], $10::jsonb[])",
        )
        .bind(occurred_at)
        .bind(action)
        .bind(instance_id)
        .bind(binding_id)
        .bind(operation_id)
        .bind(status)
        .bind(api_version)
        .bind(request_id)
        .bind(platform)
        .bind(identity)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
