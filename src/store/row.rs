//! The whole stored rows, one type per table, and how a result row of either database
//! becomes one. Every read of a table selects all its columns into its row type; the
//! records the broker works with ([`InstanceRecord`] and the others) are projections of
//! these rows, and the copy between stores moves them whole.
//!
//! Reading is written once here, over [`Column`]: each store says only how it keeps a
//! value of each Rust type (PostgreSQL natively, SQLite as text and integer
//! microseconds).

use chrono::{DateTime, Utc};
use serde_json::Value;
use sqlx::FromRow;
use uuid::Uuid;

use super::{
    AuditEvent, BindingRecord, BindingState, InstanceRecord, InstanceState, OperationKind,
    OperationRecord, SealedCredentials,
};
use crate::osb::OperationState;

/// A service instance with every stored column.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRow {
    /// Platform id.
    pub instance_id: String,
    /// Catalog service id.
    pub service_id: String,
    /// Current plan id.
    pub plan_id: String,
    /// Current parameters.
    pub parameters: Value,
    /// As sent at provision.
    pub organization_guid: Option<String>,
    /// As sent at provision.
    pub space_guid: Option<String>,
    /// Platform context.
    pub context: Option<Value>,
    /// Handed out at provision.
    pub dashboard_url: Option<String>,
    /// Life-cycle state.
    pub state: InstanceState,
    /// The operation that owns the instance now.
    pub active_operation_id: Option<Uuid>,
    /// The plan's maintenance version applied.
    pub maintenance_version: Option<String>,
    /// The plan's backend kind at provision.
    pub backend_kind: Option<String>,
    /// Created (or revived).
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Deprovisioned (a tombstone).
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A service binding with every stored column.
#[derive(Debug, Clone, PartialEq)]
pub struct BindingRow {
    /// Platform id.
    pub binding_id: String,
    /// Its instance.
    pub instance_id: String,
    /// As requested.
    pub service_id: String,
    /// As requested.
    pub plan_id: String,
    /// Validated parameters.
    pub parameters: Value,
    /// Effective app guid.
    pub app_guid: Option<String>,
    /// Route, for route services.
    pub route: Option<String>,
    /// The whole `bind_resource`.
    pub bind_resource: Option<Value>,
    /// Platform context.
    pub context: Option<Value>,
    /// Sealed credentials, as stored.
    pub credentials: Option<SealedCredentials>,
    /// Life-cycle state.
    pub state: BindingState,
    /// The operation that owns the binding now.
    pub active_operation_id: Option<Uuid>,
    /// Created (or revived).
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Unbound (a tombstone).
    pub deleted_at: Option<DateTime<Utc>>,
    /// End of validity.
    pub expires_at: Option<DateTime<Utc>>,
    /// The binding this one rotates.
    pub predecessor_binding_id: Option<String>,
    /// When its expired credentials were revoked.
    pub revoked_at: Option<DateTime<Utc>>,
}

/// An operation with every stored column.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationRow {
    /// Id and token.
    pub operation_id: Uuid,
    /// Its instance.
    pub instance_id: String,
    /// Its binding.
    pub binding_id: Option<String>,
    /// What it does.
    pub kind: OperationKind,
    /// The wire state.
    pub state: OperationState,
    /// User-facing text.
    pub description: Option<String>,
    /// What it applies.
    pub request: Value,
    /// How many times it was started.
    pub attempts: i32,
    /// When a worker may next run it.
    pub next_attempt_at: DateTime<Utc>,
    /// Who holds the lease.
    pub lease_owner: Option<String>,
    /// Until when.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The token of the claim holding the lease.
    pub lease_token: Option<Uuid>,
    /// The superseded operation this one waits for.
    pub waits_for: Option<Uuid>,
    /// When it must have finished.
    pub deadline_at: DateTime<Utc>,
    /// Created.
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Finished.
    pub finished_at: Option<DateTime<Utc>>,
}

/// Every column of `service_instance`, in the order `INSERT_INSTANCE` writes them.
pub(crate) const INSTANCE_COLUMNS: &str = "instance_id, service_id, plan_id, parameters, \
     organization_guid, space_guid, context, dashboard_url, state, active_operation_id, \
     maintenance_version, backend_kind, created_at, updated_at, deleted_at";

/// Every column of `service_binding`, in the order `INSERT_BINDING` writes them.
pub(crate) const BINDING_COLUMNS: &str = "binding_id, instance_id, service_id, plan_id, \
     parameters, app_guid, route, bind_resource, context, credentials, credentials_key, state, \
     active_operation_id, created_at, updated_at, deleted_at, expires_at, \
     predecessor_binding_id, revoked_at";

/// Every column of `operation`, in the order `INSERT_OPERATION` writes them.
pub(crate) const OPERATION_COLUMNS: &str = "operation_id, instance_id, binding_id, kind, state, \
     description, request, attempts, next_attempt_at, lease_owner, lease_expires_at, \
     lease_token, waits_for, deadline_at, created_at, updated_at, finished_at";

/// Every column of `audit_event`.
pub(crate) const AUDIT_COLUMNS: &str = "audit_event_id, occurred_at, action, instance_id, \
     binding_id, operation_id, status, api_version, request_id, platform, identity";

/// One column of a result row, decoded from the way its store keeps a `T`.
pub(crate) trait Column<T> {
    /// The column called `name`.
    fn column(&self, name: &str) -> Result<T, sqlx::Error>;
}

/// A result row of a store that can read every kind of value the rows hold.
pub(crate) trait Columns:
    sqlx::Row
    + Column<String>
    + Column<Option<String>>
    + Column<i32>
    + Column<i64>
    + Column<Value>
    + Column<Option<Value>>
    + Column<Uuid>
    + Column<Option<Uuid>>
    + Column<DateTime<Utc>>
    + Column<Option<DateTime<Utc>>>
    + Column<Option<Vec<u8>>>
{
}

impl<R> Columns for R where
    R: sqlx::Row
        + Column<String>
        + Column<Option<String>>
        + Column<i32>
        + Column<i64>
        + Column<Value>
        + Column<Option<Value>>
        + Column<Uuid>
        + Column<Option<Uuid>>
        + Column<DateTime<Utc>>
        + Column<Option<DateTime<Utc>>>
        + Column<Option<Vec<u8>>>
{
}

/// Reads one table's columns from a result row, under a prefix when the row joins
/// another table's columns that share their names.
struct Reader<'a, R> {
    row: &'a R,
    prefix: &'a str,
}

impl<R> Reader<'_, R> {
    /// The column `name`, its type taken from where it goes.
    fn get<T>(&self, name: &str) -> Result<T, sqlx::Error>
    where
        R: Column<T>,
    {
        if self.prefix.is_empty() {
            self.row.column(name)
        } else {
            self.row.column(&format!("{}{name}", self.prefix))
        }
    }
}

impl InstanceRow {
    /// The instance whose columns `row` holds, each named `prefix` + its name.
    pub(crate) fn read<R: Columns>(row: &R, prefix: &str) -> Result<Self, sqlx::Error> {
        let r = Reader { row, prefix };
        Ok(Self {
            instance_id: r.get("instance_id")?,
            service_id: r.get("service_id")?,
            plan_id: r.get("plan_id")?,
            parameters: r.get("parameters")?,
            organization_guid: r.get("organization_guid")?,
            space_guid: r.get("space_guid")?,
            context: r.get("context")?,
            dashboard_url: r.get("dashboard_url")?,
            state: InstanceState::parse(&r.get::<String>("state")?),
            active_operation_id: r.get("active_operation_id")?,
            maintenance_version: r.get("maintenance_version")?,
            backend_kind: r.get("backend_kind")?,
            created_at: r.get("created_at")?,
            updated_at: r.get("updated_at")?,
            deleted_at: r.get("deleted_at")?,
        })
    }
}

impl<R: Columns> FromRow<'_, R> for InstanceRow {
    fn from_row(row: &R) -> Result<Self, sqlx::Error> {
        Self::read(row, "")
    }
}

impl<R: Columns> FromRow<'_, R> for BindingRow {
    fn from_row(row: &R) -> Result<Self, sqlx::Error> {
        let r = Reader { row, prefix: "" };
        // Both set or both null, by a check constraint.
        let credentials = match (r.get("credentials")?, r.get("credentials_key")?) {
            (Some(ciphertext), Some(key_label)) => Some(SealedCredentials {
                key_label,
                ciphertext,
            }),
            _ => None,
        };
        Ok(Self {
            binding_id: r.get("binding_id")?,
            instance_id: r.get("instance_id")?,
            service_id: r.get("service_id")?,
            plan_id: r.get("plan_id")?,
            parameters: r.get("parameters")?,
            app_guid: r.get("app_guid")?,
            route: r.get("route")?,
            bind_resource: r.get("bind_resource")?,
            context: r.get("context")?,
            credentials,
            state: BindingState::parse(&r.get::<String>("state")?),
            active_operation_id: r.get("active_operation_id")?,
            created_at: r.get("created_at")?,
            updated_at: r.get("updated_at")?,
            deleted_at: r.get("deleted_at")?,
            expires_at: r.get("expires_at")?,
            predecessor_binding_id: r.get("predecessor_binding_id")?,
            revoked_at: r.get("revoked_at")?,
        })
    }
}

impl<R: Columns> FromRow<'_, R> for OperationRow {
    fn from_row(row: &R) -> Result<Self, sqlx::Error> {
        let r = Reader { row, prefix: "" };
        let state: String = r.get("state")?;
        Ok(Self {
            operation_id: r.get("operation_id")?,
            instance_id: r.get("instance_id")?,
            binding_id: r.get("binding_id")?,
            kind: OperationKind::parse(&r.get::<String>("kind")?),
            state: OperationState::from_stored(&state).unwrap_or(OperationState::Failed),
            description: r.get("description")?,
            request: r.get("request")?,
            attempts: r.get("attempts")?,
            next_attempt_at: r.get("next_attempt_at")?,
            lease_owner: r.get("lease_owner")?,
            lease_expires_at: r.get("lease_expires_at")?,
            lease_token: r.get("lease_token")?,
            waits_for: r.get("waits_for")?,
            deadline_at: r.get("deadline_at")?,
            created_at: r.get("created_at")?,
            updated_at: r.get("updated_at")?,
            finished_at: r.get("finished_at")?,
        })
    }
}

/// An audit event with its number in its store.
pub(crate) struct NumberedEvent(pub(crate) i64, pub(crate) AuditEvent);

impl<R: Columns> FromRow<'_, R> for NumberedEvent {
    fn from_row(row: &R) -> Result<Self, sqlx::Error> {
        let r = Reader { row, prefix: "" };
        let status: i32 = r.get("status")?;
        let status = u16::try_from(status).map_err(|_| {
            sqlx::Error::Decode(format!("audit status {status} is out of range").into())
        })?;
        let event = AuditEvent {
            occurred_at: r.get("occurred_at")?,
            action: r.get("action")?,
            instance_id: r.get("instance_id")?,
            binding_id: r.get("binding_id")?,
            operation_id: r.get("operation_id")?,
            status,
            api_version: r.get("api_version")?,
            request_id: r.get("request_id")?,
            platform: r.get("platform")?,
            identity: r.get("identity")?,
        };
        Ok(Self(r.get("audit_event_id")?, event))
    }
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
            state: r.state,
            active_operation_id: r.active_operation_id,
            maintenance_version: r.maintenance_version,
            backend_kind: r.backend_kind,
        }
    }
}

impl From<BindingRow> for BindingRecord {
    fn from(r: BindingRow) -> Self {
        Self {
            binding_id: r.binding_id,
            instance_id: r.instance_id,
            service_id: r.service_id,
            plan_id: r.plan_id,
            parameters: r.parameters,
            app_guid: r.app_guid,
            route: r.route,
            credentials: r.credentials,
            state: r.state,
            active_operation_id: r.active_operation_id,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        }
    }
}

impl From<OperationRow> for OperationRecord {
    fn from(r: OperationRow) -> Self {
        Self {
            operation_id: r.operation_id,
            instance_id: r.instance_id,
            binding_id: r.binding_id,
            kind: r.kind,
            state: r.state,
            description: r.description,
            request: r.request,
            attempts: r.attempts,
            deadline_at: r.deadline_at,
            next_attempt_at: r.next_attempt_at,
            lease_token: r.lease_token,
        }
    }
}
