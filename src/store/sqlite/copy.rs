//! Whole rows in and out, for copying state between stores (`store::copy`): pages in
//! key order out, one transaction per page in.

use uuid::fmt::Hyphenated;

use super::bindings::sealed;
use super::{
    SqliteStore, decode_error, id, json, micros, optional_id, optional_json, optional_time,
    parse_json, parse_optional_json, time, token,
};
use crate::osb::OperationState;
use crate::store::copy::{ExportedBinding, ExportedInstance, ExportedOperation, RowCounts};
use crate::store::{AuditEvent, BindingState, InstanceState, OperationKind};

#[derive(sqlx::FromRow)]
struct InstanceRow {
    instance_id: String,
    service_id: String,
    plan_id: String,
    parameters: String,
    organization_guid: Option<String>,
    space_guid: Option<String>,
    context: Option<String>,
    dashboard_url: Option<String>,
    state: String,
    active_operation_id: Option<Hyphenated>,
    maintenance_version: Option<String>,
    backend_kind: Option<String>,
    created_at: i64,
    updated_at: i64,
    deleted_at: Option<i64>,
}

impl TryFrom<InstanceRow> for ExportedInstance {
    type Error = sqlx::Error;

    fn try_from(r: InstanceRow) -> Result<Self, Self::Error> {
        Ok(Self {
            parameters: parse_json(&r.parameters)?,
            context: parse_optional_json(r.context.as_deref())?,
            instance_id: r.instance_id,
            service_id: r.service_id,
            plan_id: r.plan_id,
            organization_guid: r.organization_guid,
            space_guid: r.space_guid,
            dashboard_url: r.dashboard_url,
            state: InstanceState::parse(&r.state),
            active_operation_id: r.active_operation_id.map(Hyphenated::into_uuid),
            maintenance_version: r.maintenance_version,
            backend_kind: r.backend_kind,
            created_at: time(r.created_at)?,
            updated_at: time(r.updated_at)?,
            deleted_at: optional_time(r.deleted_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct BindingRow {
    binding_id: String,
    instance_id: String,
    service_id: String,
    plan_id: String,
    parameters: String,
    app_guid: Option<String>,
    route: Option<String>,
    bind_resource: Option<String>,
    context: Option<String>,
    credentials: Option<Vec<u8>>,
    credentials_key: Option<String>,
    state: String,
    active_operation_id: Option<Hyphenated>,
    created_at: i64,
    updated_at: i64,
    deleted_at: Option<i64>,
    expires_at: Option<i64>,
    predecessor_binding_id: Option<String>,
    revoked_at: Option<i64>,
}

impl TryFrom<BindingRow> for ExportedBinding {
    type Error = sqlx::Error;

    fn try_from(r: BindingRow) -> Result<Self, Self::Error> {
        Ok(Self {
            parameters: parse_json(&r.parameters)?,
            bind_resource: parse_optional_json(r.bind_resource.as_deref())?,
            context: parse_optional_json(r.context.as_deref())?,
            credentials: sealed(r.credentials, r.credentials_key),
            binding_id: r.binding_id,
            instance_id: r.instance_id,
            service_id: r.service_id,
            plan_id: r.plan_id,
            app_guid: r.app_guid,
            route: r.route,
            state: BindingState::parse(&r.state),
            active_operation_id: r.active_operation_id.map(Hyphenated::into_uuid),
            created_at: time(r.created_at)?,
            updated_at: time(r.updated_at)?,
            deleted_at: optional_time(r.deleted_at)?,
            expires_at: optional_time(r.expires_at)?,
            predecessor_binding_id: r.predecessor_binding_id,
            revoked_at: optional_time(r.revoked_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct OperationRow {
    operation_id: Hyphenated,
    instance_id: String,
    binding_id: Option<String>,
    kind: String,
    state: String,
    description: Option<String>,
    request: String,
    attempts: i32,
    next_attempt_at: i64,
    lease_owner: Option<String>,
    lease_expires_at: Option<i64>,
    lease_token: Option<String>,
    waits_for: Option<Hyphenated>,
    deadline_at: i64,
    created_at: i64,
    updated_at: i64,
    finished_at: Option<i64>,
}

impl TryFrom<OperationRow> for ExportedOperation {
    type Error = sqlx::Error;

    fn try_from(r: OperationRow) -> Result<Self, Self::Error> {
        Ok(Self {
            operation_id: r.operation_id.into_uuid(),
            request: parse_json(&r.request)?,
            instance_id: r.instance_id,
            binding_id: r.binding_id,
            kind: OperationKind::parse(&r.kind),
            state: OperationState::from_stored(&r.state).unwrap_or(OperationState::Failed),
            description: r.description,
            attempts: r.attempts,
            next_attempt_at: time(r.next_attempt_at)?,
            lease_owner: r.lease_owner,
            lease_expires_at: optional_time(r.lease_expires_at)?,
            lease_token: r
                .lease_token
                .map(|t| uuid::Uuid::parse_str(&t))
                .transpose()
                .map_err(|e| sqlx::Error::Decode(Box::new(e)))?,
            waits_for: r.waits_for.map(Hyphenated::into_uuid),
            deadline_at: time(r.deadline_at)?,
            created_at: time(r.created_at)?,
            updated_at: time(r.updated_at)?,
            finished_at: optional_time(r.finished_at)?,
        })
    }
}

#[derive(sqlx::FromRow)]
struct AuditRow {
    audit_event_id: i64,
    occurred_at: i64,
    action: String,
    instance_id: String,
    binding_id: Option<String>,
    operation_id: Option<Hyphenated>,
    status: i64,
    api_version: String,
    request_id: Option<String>,
    platform: Option<String>,
    identity: Option<String>,
}

impl TryFrom<AuditRow> for (i64, AuditEvent) {
    type Error = sqlx::Error;

    fn try_from(r: AuditRow) -> Result<Self, Self::Error> {
        let status = u16::try_from(r.status)
            .map_err(|_| decode_error(format!("audit status {} is out of range", r.status)))?;
        Ok((
            r.audit_event_id,
            AuditEvent {
                occurred_at: time(r.occurred_at)?,
                identity: parse_optional_json(r.identity.as_deref())?,
                action: r.action,
                instance_id: r.instance_id,
                binding_id: r.binding_id,
                operation_id: r.operation_id.map(Hyphenated::into_uuid),
                status,
                api_version: r.api_version,
                request_id: r.request_id,
                platform: r.platform,
            },
        ))
    }
}

impl SqliteStore {
    /// Rows per table.
    pub async fn count_rows(&self) -> Result<RowCounts, sqlx::Error> {
        let (instances, bindings, operations, audit_events): (i64, i64, i64, i64) = sqlx::query_as(
            "select (select count(*) from service_instance), \
                     (select count(*) from service_binding), \
                     (select count(*) from operation), \
                     (select count(*) from audit_event)",
        )
        .fetch_one(self.reader())
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
             from service_instance where (?1 is null or instance_id > ?1) \
             order by instance_id limit ?2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Inserts instances as they are, in one transaction.
    pub async fn import_instances(&self, rows: &[ExportedInstance]) -> Result<(), sqlx::Error> {
        let mut tx = self.begin().await?;
        for r in rows {
            sqlx::query(
                "insert into service_instance (instance_id, service_id, plan_id, parameters, \
                     organization_guid, space_guid, context, dashboard_url, state, \
                     active_operation_id, maintenance_version, created_at, updated_at, deleted_at, \
                     backend_kind) \
                 values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
            )
            .bind(&r.instance_id)
            .bind(&r.service_id)
            .bind(&r.plan_id)
            .bind(json(&r.parameters))
            .bind(&r.organization_guid)
            .bind(&r.space_guid)
            .bind(optional_json(r.context.as_ref()))
            .bind(&r.dashboard_url)
            .bind(r.state.as_str())
            .bind(optional_id(r.active_operation_id))
            .bind(&r.maintenance_version)
            .bind(micros(r.created_at))
            .bind(micros(r.updated_at))
            .bind(r.deleted_at.map(micros))
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
             from service_binding where (?1 is null or binding_id > ?1) \
             order by binding_id limit ?2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Inserts bindings as they are, in one transaction.
    pub async fn import_bindings(&self, rows: &[ExportedBinding]) -> Result<(), sqlx::Error> {
        let mut tx = self.begin().await?;
        for r in rows {
            sqlx::query(
                "insert into service_binding (binding_id, instance_id, service_id, plan_id, \
                     parameters, app_guid, route, bind_resource, context, credentials, \
                     credentials_key, state, active_operation_id, created_at, updated_at, \
                     deleted_at, expires_at, predecessor_binding_id, revoked_at) \
                 values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
                     ?16, ?17, ?18, ?19)",
            )
            .bind(&r.binding_id)
            .bind(&r.instance_id)
            .bind(&r.service_id)
            .bind(&r.plan_id)
            .bind(json(&r.parameters))
            .bind(&r.app_guid)
            .bind(&r.route)
            .bind(optional_json(r.bind_resource.as_ref()))
            .bind(optional_json(r.context.as_ref()))
            .bind(r.credentials.as_ref().map(|c| c.ciphertext.as_slice()))
            .bind(r.credentials.as_ref().map(|c| c.key_label.as_str()))
            .bind(r.state.as_str())
            .bind(optional_id(r.active_operation_id))
            .bind(micros(r.created_at))
            .bind(micros(r.updated_at))
            .bind(r.deleted_at.map(micros))
            .bind(r.expires_at.map(micros))
            .bind(&r.predecessor_binding_id)
            .bind(r.revoked_at.map(micros))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }

    /// Up to `limit` operations after `after`, in id order.
    pub async fn export_operations(
        &self,
        after: Option<uuid::Uuid>,
        limit: i64,
    ) -> Result<Vec<ExportedOperation>, sqlx::Error> {
        let rows: Vec<OperationRow> = sqlx::query_as(
            "select operation_id, instance_id, binding_id, kind, state, description, request, \
                 attempts, next_attempt_at, lease_owner, lease_expires_at, lease_token, \
                 waits_for, deadline_at, created_at, updated_at, finished_at \
             from operation where (?1 is null or operation_id > ?1) \
             order by operation_id limit ?2",
        )
        .bind(optional_id(after))
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    /// Inserts operations as they are, in one transaction.
    pub async fn import_operations(&self, rows: &[ExportedOperation]) -> Result<(), sqlx::Error> {
        let mut tx = self.begin().await?;
        for r in rows {
            sqlx::query(
                "insert into operation (operation_id, instance_id, binding_id, kind, state, \
                     description, request, attempts, next_attempt_at, lease_owner, \
                     lease_expires_at, deadline_at, created_at, updated_at, finished_at, \
                     lease_token, waits_for) \
                 values (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, \
                     ?16, ?17)",
            )
            .bind(id(r.operation_id))
            .bind(&r.instance_id)
            .bind(&r.binding_id)
            .bind(r.kind.as_str())
            .bind(r.state.as_str())
            .bind(&r.description)
            .bind(json(&r.request))
            .bind(r.attempts)
            .bind(micros(r.next_attempt_at))
            .bind(&r.lease_owner)
            .bind(r.lease_expires_at.map(micros))
            .bind(micros(r.deadline_at))
            .bind(micros(r.created_at))
            .bind(micros(r.updated_at))
            .bind(r.finished_at.map(micros))
            .bind(r.lease_token.map(token))
            .bind(optional_id(r.waits_for))
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
             from audit_event where (?1 is null or audit_event_id > ?1) \
             order by audit_event_id limit ?2",
        )
        .bind(after)
        .bind(limit)
        .fetch_all(self.reader())
        .await?;
        rows.into_iter().map(TryInto::try_into).collect()
    }
}
