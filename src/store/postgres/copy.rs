//! Whole rows in and out, for copying state between stores (`store::copy`): pages in
//! key order out, one transaction per page in.

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use super::PgStore;
use crate::osb::OperationState;
use crate::store::copy::{ExportedBinding, ExportedInstance, ExportedOperation, RowCounts};
use crate::store::{AuditEvent, BindingState, InstanceState, OperationKind, SealedCredentials};

#[derive(sqlx::FromRow)]
struct InstanceRow {
    instance_id: String,
    service_id: String,
    plan_id: String,
    parameters: Value,
    organization_guid: Option<String>,
    space_guid: Option<String>,
    context: Option<Value>,
    dashboard_url: Option<String>,
    state: String,
    active_operation_id: Option<Uuid>,
    maintenance_version: Option<String>,
    backend_kind: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    deleted_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct BindingRow {
    binding_id: String,
    instance_id: String,
    service_id: String,
    plan_id: String,
    parameters: Value,
    app_guid: Option<String>,
    route: Option<String>,
    bind_resource: Option<Value>,
    context: Option<Value>,
    credentials: Option<Vec<u8>>,
    credentials_key: Option<String>,
    state: String,
    active_operation_id: Option<Uuid>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    deleted_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    predecessor_binding_id: Option<String>,
    revoked_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct OperationRow {
    operation_id: Uuid,
    instance_id: String,
    binding_id: Option<String>,
    kind: String,
    state: String,
    description: Option<String>,
    request: Value,
    attempts: i32,
    next_attempt_at: DateTime<Utc>,
    lease_owner: Option<String>,
    lease_expires_at: Option<DateTime<Utc>>,
    lease_token: Option<Uuid>,
    waits_for: Option<Uuid>,
    deadline_at: DateTime<Utc>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    finished_at: Option<DateTime<Utc>>,
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    audit_event_id: i64,
    occurred_at: DateTime<Utc>,
    action: String,
    instance_id: String,
    binding_id: Option<String>,
    operation_id: Option<Uuid>,
    status: i32,
    api_version: String,
    request_id: Option<String>,
    platform: Option<String>,
    identity: Option<Value>,
}

impl PgStore {
    /// Rows per table.
    pub async fn count_rows(&self) -> Result<RowCounts, sqlx::Error> {
        let (instances, bindings, operations, audit_events): (i64, i64, i64, i64) = sqlx::query_as(
            "select (select count(*) from service_instance), \
                     (select count(*) from service_binding), \
                     (select count(*) from operation), \
                     (select count(*) from audit_event)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(RowCounts {
            instances,
            bindings,
            operations,
            audit_events,
        })
    }

    /// Up to `limit` instances after `after`, in id order.
    pub async fn export_instances(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ExportedInstance>, sqlx::Error> {
        let rows: Vec<InstanceRow> = sqlx::query_as(
            "select instance_id, service_id, plan_id, parameters, organization_guid, space_guid, \
                 context, dashboard_url, state, active_operation_id, maintenance_version, \
                 created_at, updated_at, deleted_at, backend_kind \
             from service_instance where ($1::text is null or instance_id > $1) \
             order by instance_id limit $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ExportedInstance {
                instance_id: r.instance_id,
                service_id: r.service_id,
                plan_id: r.plan_id,
                parameters: r.parameters,
                organization_guid: r.organization_guid,
                space_guid: r.space_guid,
                context: r.context,
                dashboard_url: r.dashboard_url,
                state: InstanceState::parse(&r.state),
                active_operation_id: r.active_operation_id,
                maintenance_version: r.maintenance_version,
                backend_kind: r.backend_kind,
                created_at: r.created_at,
                updated_at: r.updated_at,
                deleted_at: r.deleted_at,
            })
            .collect())
    }

    /// Inserts instances as they are, in one transaction.
    pub async fn import_instances(&self, rows: &[ExportedInstance]) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        for r in rows {
            sqlx::query(
                "insert into service_instance (instance_id, service_id, plan_id, parameters, \
                     organization_guid, space_guid, context, dashboard_url, state, \
                     active_operation_id, maintenance_version, created_at, updated_at, deleted_at, \
                     backend_kind) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
            )
            .bind(&r.instance_id)
            .bind(&r.service_id)
            .bind(&r.plan_id)
            .bind(&r.parameters)
            .bind(&r.organization_guid)
            .bind(&r.space_guid)
            .bind(&r.context)
            .bind(&r.dashboard_url)
            .bind(r.state.as_str())
            .bind(r.active_operation_id)
            .bind(&r.maintenance_version)
            .bind(r.created_at)
            .bind(r.updated_at)
            .bind(r.deleted_at)
            .bind(&r.backend_kind)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Up to `limit` bindings after `after`, in id order.
    pub async fn export_bindings(
        &self,
        after: Option<&str>,
        limit: i64,
    ) -> Result<Vec<ExportedBinding>, sqlx::Error> {
        let rows: Vec<BindingRow> = sqlx::query_as(
            "select binding_id, instance_id, service_id, plan_id, parameters, app_guid, route, \
                 bind_resource, context, credentials, credentials_key, state, active_operation_id, \
                 created_at, updated_at, deleted_at, expires_at, predecessor_binding_id, \
                 revoked_at \
             from service_binding where ($1::text is null or binding_id > $1) \
             order by binding_id limit $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ExportedBinding {
                credentials: match (r.credentials, r.credentials_key) {
                    (Some(ciphertext), Some(key_label)) => Some(SealedCredentials {
                        key_label,
                        ciphertext,
                    }),
                    _ => None,
                },
                binding_id: r.binding_id,
                instance_id: r.instance_id,
                service_id: r.service_id,
                plan_id: r.plan_id,
                parameters: r.parameters,
                app_guid: r.app_guid,
                route: r.route,
                bind_resource: r.bind_resource,
                context: r.context,
                state: BindingState::parse(&r.state),
                active_operation_id: r.active_operation_id,
                created_at: r.created_at,
                updated_at: r.updated_at,
                deleted_at: r.deleted_at,
                expires_at: r.expires_at,
                predecessor_binding_id: r.predecessor_binding_id,
                revoked_at: r.revoked_at,
            })
            .collect())
    }

    /// Inserts bindings as they are, in one transaction.
    pub async fn import_bindings(&self, rows: &[ExportedBinding]) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        for r in rows {
            sqlx::query(
                "insert into service_binding (binding_id, instance_id, service_id, plan_id, \
                     parameters, app_guid, route, bind_resource, context, credentials, \
                     credentials_key, state, active_operation_id, created_at, updated_at, \
                     deleted_at, expires_at, predecessor_binding_id, revoked_at) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                     $16, $17, $18, $19)",
            )
            .bind(&r.binding_id)
            .bind(&r.instance_id)
            .bind(&r.service_id)
            .bind(&r.plan_id)
            .bind(&r.parameters)
            .bind(&r.app_guid)
            .bind(&r.route)
            .bind(&r.bind_resource)
            .bind(&r.context)
            .bind(r.credentials.as_ref().map(|c| c.ciphertext.as_slice()))
            .bind(r.credentials.as_ref().map(|c| c.key_label.as_str()))
            .bind(r.state.as_str())
            .bind(r.active_operation_id)
            .bind(r.created_at)
            .bind(r.updated_at)
            .bind(r.deleted_at)
            .bind(r.expires_at)
            .bind(&r.predecessor_binding_id)
            .bind(r.revoked_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Up to `limit` operations after `after`, in id order.
    pub async fn export_operations(
        &self,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<ExportedOperation>, sqlx::Error> {
        let rows: Vec<OperationRow> = sqlx::query_as(
            "select operation_id, instance_id, binding_id, kind, state, description, request, \
                 attempts, next_attempt_at, lease_owner, lease_expires_at, lease_token, \
                 waits_for, deadline_at, created_at, updated_at, finished_at \
             from operation where ($1::uuid is null or operation_id > $1) \
             order by operation_id limit $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ExportedOperation {
                operation_id: r.operation_id,
                instance_id: r.instance_id,
                binding_id: r.binding_id,
                kind: OperationKind::parse(&r.kind),
                state: OperationState::from_stored(&r.state).unwrap_or(OperationState::Failed),
                description: r.description,
                request: r.request,
                attempts: r.attempts,
                next_attempt_at: r.next_attempt_at,
                lease_owner: r.lease_owner,
                lease_expires_at: r.lease_expires_at,
                lease_token: r.lease_token,
                waits_for: r.waits_for,
                deadline_at: r.deadline_at,
                created_at: r.created_at,
                updated_at: r.updated_at,
                finished_at: r.finished_at,
            })
            .collect())
    }

    /// Inserts operations as they are, in one transaction.
    pub async fn import_operations(&self, rows: &[ExportedOperation]) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        for r in rows {
            sqlx::query(
                "insert into operation (operation_id, instance_id, binding_id, kind, state, \
                     description, request, attempts, next_attempt_at, lease_owner, \
                     lease_expires_at, deadline_at, created_at, updated_at, finished_at, \
                     lease_token, waits_for) \
                 values ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, \
                     $16, $17)",
            )
            .bind(r.operation_id)
            .bind(&r.instance_id)
            .bind(&r.binding_id)
            .bind(r.kind.as_str())
            .bind(r.state.as_str())
            .bind(&r.description)
            .bind(&r.request)
            .bind(r.attempts)
            .bind(r.next_attempt_at)
            .bind(&r.lease_owner)
            .bind(r.lease_expires_at)
            .bind(r.deadline_at)
            .bind(r.created_at)
            .bind(r.updated_at)
            .bind(r.finished_at)
            .bind(r.lease_token)
            .bind(r.waits_for)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Up to `limit` audit events after the one numbered `after`, oldest first, each
    /// with its number.
    pub async fn export_audit_events(
        &self,
        after: Option<i64>,
        limit: i64,
    ) -> Result<Vec<(i64, AuditEvent)>, sqlx::Error> {
        let rows: Vec<AuditRow> = sqlx::query_as(
            "select audit_event_id, occurred_at, action, instance_id, binding_id, operation_id, \
                 status, api_version, request_id, platform, identity \
             from audit_event where ($1::int8 is null or audit_event_id > $1) \
             order by audit_event_id limit $2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|r| {
                let status =
                    u16::try_from(r.status).map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
                Ok((
                    r.audit_event_id,
                    AuditEvent {
                        occurred_at: r.occurred_at,
                        action: r.action,
                        instance_id: r.instance_id,
                        binding_id: r.binding_id,
                        operation_id: r.operation_id,
                        status,
                        api_version: r.api_version,
                        request_id: r.request_id,
                        platform: r.platform,
                        identity: r.identity,
                    },
                ))
            })
            .collect()
    }
}
