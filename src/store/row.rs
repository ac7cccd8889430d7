//! The whole stored rows, one type per table, and how a result row of either database
//! becomes one. Every read of a table selects all its columns into its row type; the
//! record the broker works with ([`InstanceRecord`] and the others) is a part of its row,
//! and the copy between stores moves the rows whole.
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

/// A service instance with every stored column: the record the broker works with, and
/// the columns only the store reads.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRow {
    /// The instance as the broker sees it.
    pub record: InstanceRecord,
    /// Created (or revived).
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Deprovisioned (a tombstone).
    pub deleted_at: Option<DateTime<Utc>>,
}

/// A service binding with every stored column: the record the broker works with, and
/// the columns only the store reads.
#[derive(Debug, Clone, PartialEq)]
pub struct BindingRow {
    /// The binding as the broker sees it.
    pub record: BindingRecord,
    /// The whole `bind_resource`.
    pub bind_resource: Option<Value>,
    /// Platform context.
    pub context: Option<Value>,
    /// Created (or revived).
    pub created_at: DateTime<Utc>,
    /// Last changed.
    pub updated_at: DateTime<Utc>,
    /// Unbound (a tombstone).
    pub deleted_at: Option<DateTime<Utc>>,
    /// The binding this one rotates.
    pub predecessor_binding_id: Option<String>,
}

/// An operation with every stored column: the record the broker works with, and the
/// columns only the store reads.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationRow {
    /// The operation as the broker sees it.
    pub record: OperationRecord,
    /// Who holds the lease.
    pub lease_owner: Option<String>,
    /// Until when.
    pub lease_expires_at: Option<DateTime<Utc>>,
    /// The superseded operation this one waits for.
    pub waits_for: Option<Uuid>,
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
     maintenance_version, backend_kind, created_at, updated_at, deleted_at, backend_facts";

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
        let record = InstanceRecord {
            instance_id: r.get("instance_id")?,
            service_id: r.get("service_id")?,
            plan_id: r.get("plan_id")?,
            parameters: r.get("parameters")?,
            organization_guid: r.get("organization_guid")?,
            space_guid: r.get("space_guid")?,
            dashboard_url: r.get("dashboard_url")?,
            state: InstanceState::parse(&r.get::<String>("state")?),
            active_operation_id: r.get("active_operation_id")?,
            maintenance_version: r.get("maintenance_version")?,
            backend_kind: r.get("backend_kind")?,
            context: r.get("context")?,
            backend_facts: r.get("backend_facts")?,
        };
        Ok(Self {
            record,
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
        let record = BindingRecord {
            binding_id: r.get("binding_id")?,
            instance_id: r.get("instance_id")?,
            service_id: r.get("service_id")?,
            plan_id: r.get("plan_id")?,
            parameters: r.get("parameters")?,
            app_guid: r.get("app_guid")?,
            route: r.get("route")?,
            credentials,
            state: BindingState::parse(&r.get::<String>("state")?),
            active_operation_id: r.get("active_operation_id")?,
            expires_at: r.get("expires_at")?,
            revoked_at: r.get("revoked_at")?,
        };
        Ok(Self {
            record,
            bind_resource: r.get("bind_resource")?,
            context: r.get("context")?,
            created_at: r.get("created_at")?,
            updated_at: r.get("updated_at")?,
            deleted_at: r.get("deleted_at")?,
            predecessor_binding_id: r.get("predecessor_binding_id")?,
        })
    }
}

/// What a poll without an operation token needs, read in one statement: the instance's
/// state and its newest instance-level operation (`None`: it has none).
#[derive(Debug, Clone, PartialEq)]
pub struct InstancePoll {
    /// The instance's life-cycle state (`Deleted` for a tombstone).
    pub state: InstanceState,
    /// Its newest provision, update or deprovision.
    pub latest: Option<OperationRecord>,
}

/// From a row of the operation's columns (null when it has none) and `instance_state`.
impl<R: Columns> FromRow<'_, R> for InstancePoll {
    fn from_row(row: &R) -> Result<Self, sqlx::Error> {
        let r = Reader { row, prefix: "" };
        let state = InstanceState::parse(&r.get::<String>("instance_state")?);
        let latest = match r.get::<Option<Uuid>>("operation_id")? {
            Some(_) => Some(OperationRow::from_row(row)?.record),
            None => None,
        };
        Ok(Self { state, latest })
    }
}

impl<R: Columns> FromRow<'_, R> for OperationRow {
    fn from_row(row: &R) -> Result<Self, sqlx::Error> {
        let r = Reader { row, prefix: "" };
        let state: String = r.get("state")?;
        let record = OperationRecord {
            operation_id: r.get("operation_id")?,
            instance_id: r.get("instance_id")?,
            binding_id: r.get("binding_id")?,
            kind: OperationKind::parse(&r.get::<String>("kind")?),
            state: OperationState::from_stored(&state).unwrap_or(OperationState::Failed),
            description: r.get("description")?,
            request: r.get("request")?,
            attempts: r.get("attempts")?,
            deadline_at: r.get("deadline_at")?,
            next_attempt_at: r.get("next_attempt_at")?,
            lease_token: r.get("lease_token")?,
        };
        Ok(Self {
            record,
            lease_owner: r.get("lease_owner")?,
            lease_expires_at: r.get("lease_expires_at")?,
            waits_for: r.get("waits_for")?,
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
        r.record
    }
}

impl From<BindingRow> for BindingRecord {
    fn from(r: BindingRow) -> Self {
        r.record
    }
}

impl From<OperationRow> for OperationRecord {
    fn from(r: OperationRow) -> Self {
        r.record
    }
}
