//! The store's vocabulary: the records and requests every store speaks, whatever
//! database keeps them.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use uuid::Uuid;

use crate::osb::OperationState;

/// Where an instance is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InstanceState {
    /// Its provision operation has not finished.
    Provisioning,
    /// Provisioned and usable.
    Ready,
    /// Its provision failed; only a deprovision (or an identical retry) is useful.
    Failed,
    /// Deprovisioned: a tombstone.
    Deleted,
}

impl InstanceState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Ready => "ready",
            Self::Failed => "failed",
            Self::Deleted => "deleted",
        }
    }

    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "provisioning" => Self::Provisioning,
            "ready" => Self::Ready,
            "failed" => Self::Failed,
            _ => Self::Deleted,
        }
    }
}

/// A stored instance.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceRecord {
    /// Platform id.
    pub instance_id: String,
    /// Catalog service id.
    pub service_id: String,
    /// Current plan id.
    pub plan_id: String,
    /// Current parameters (a JSON object).
    pub parameters: Value,
    /// As sent at provision.
    pub organization_guid: Option<String>,
    /// As sent at provision.
    pub space_guid: Option<String>,
    /// The dashboard URL handed out at provision.
    pub dashboard_url: Option<String>,
    /// Life-cycle state.
    pub state: InstanceState,
    /// The operation that owns the instance now, if any.
    pub active_operation_id: Option<Uuid>,
    /// The plan's maintenance version applied to the instance.
    pub maintenance_version: Option<String>,
    /// The backend kind of its plan when it was provisioned; `None` for rows written
    /// before bindery recorded it and not yet filled in at start-up.
    pub backend_kind: Option<String>,
    /// The platform's `context` as sent at provision.
    pub context: Option<Value>,
    /// What the backend said about the instance when it was provisioned or last updated
    /// (a JSON object; only `exec` adapters return any), handed back to it on every call.
    pub backend_facts: Option<Value>,
}

/// How many live instances sit on one plan, and the backend kind they recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanUsage {
    /// Catalog service id.
    pub service_id: String,
    /// Catalog plan id.
    pub plan_id: String,
    /// The recorded kind (`None`: written before bindery recorded it).
    pub backend_kind: Option<String>,
    /// Live instances.
    pub instances: i64,
}

/// A new instance as the provision request defines it.
#[derive(Debug, Clone)]
pub struct NewInstance<'a> {
    /// Platform id.
    pub instance_id: &'a str,
    /// Catalog service id.
    pub service_id: &'a str,
    /// Catalog plan id.
    pub plan_id: &'a str,
    /// Validated parameters (a JSON object).
    pub parameters: &'a Value,
    /// From the request.
    pub organization_guid: Option<&'a str>,
    /// From the request.
    pub space_guid: Option<&'a str>,
    /// Platform context.
    pub context: Option<&'a Value>,
    /// Known before provisioning starts.
    pub dashboard_url: Option<&'a str>,
    /// The plan's maintenance version.
    pub maintenance_version: Option<&'a str>,
    /// The plan's backend kind, kept for when the plan leaves the catalog.
    pub backend_kind: Option<&'a str>,
}

impl NewInstance<'_> {
    /// The record this instance has once inserted, owned by `operation_id`.
    pub fn to_record(&self, operation_id: Uuid) -> InstanceRecord {
        InstanceRecord {
            instance_id: self.instance_id.to_owned(),
            service_id: self.service_id.to_owned(),
            plan_id: self.plan_id.to_owned(),
            parameters: self.parameters.clone(),
            organization_guid: self.organization_guid.map(str::to_owned),
            space_guid: self.space_guid.map(str::to_owned),
            dashboard_url: self.dashboard_url.map(str::to_owned),
            state: InstanceState::Provisioning,
            active_operation_id: Some(operation_id),
            maintenance_version: self.maintenance_version.map(str::to_owned),
            backend_kind: self.backend_kind.map(str::to_owned),
            context: self.context.cloned(),
            backend_facts: None,
        }
    }
}

/// Where a binding is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingState {
    /// Its bind operation has not finished.
    Creating,
    /// Credentials exist and were handed out.
    Ready,
    /// The bind failed; an unbind cleans up whatever was created.
    Failed,
    /// Unbound, or its instance was deprovisioned: a tombstone.
    Deleted,
}

impl BindingState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::Creating => "creating",
            Self::Ready => "ready",
            Self::Failed => "failed",
            Self::Deleted => "deleted",
        }
    }

    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "creating" => Self::Creating,
            "ready" => Self::Ready,
            "failed" => Self::Failed,
            _ => Self::Deleted,
        }
    }
}

/// Credentials as stored: AEAD ciphertext and the label of the key that sealed it.
#[derive(Clone, PartialEq, Eq)]
pub struct SealedCredentials {
    /// Label of the sealing key.
    pub key_label: String,
    /// Nonce followed by ciphertext.
    pub ciphertext: Vec<u8>,
}

impl std::fmt::Debug for SealedCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SealedCredentials({}, {} bytes)",
            self.key_label,
            self.ciphertext.len()
        )
    }
}

/// A stored binding.
#[derive(Debug, Clone, PartialEq)]
pub struct BindingRecord {
    /// Platform id.
    pub binding_id: String,
    /// The instance it belongs to.
    pub instance_id: String,
    /// As requested.
    pub service_id: String,
    /// As requested.
    pub plan_id: String,
    /// Validated bind parameters.
    pub parameters: Value,
    /// `bind_resource.app_guid` or the top-level `app_guid`.
    pub app_guid: Option<String>,
    /// `bind_resource.route`.
    pub route: Option<String>,
    /// Sealed credentials, once the bind succeeded.
    pub credentials: Option<SealedCredentials>,
    /// Life-cycle state.
    pub state: BindingState,
    /// The operation that owns the binding now, if any.
    pub active_operation_id: Option<Uuid>,
    /// When the binding stops being valid, if its plan sets a lifetime.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// When a `revoke` operation removed its credentials from the managed server, after
    /// `expires_at` passed. The binding itself stays until the platform unbinds it.
    pub revoked_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl BindingRecord {
    /// True once `expires_at` has passed: its credentials are (or are about to be)
    /// revoked, and bindery no longer hands them out.
    pub fn has_expired(&self, now: DateTime<Utc>) -> bool {
        self.revoked_at.is_some() || self.expires_at.is_some_and(|t| t <= now)
    }
}

/// A new binding as the bind request defines it.
#[derive(Debug, Clone)]
pub struct NewBinding<'a> {
    /// Platform id.
    pub binding_id: &'a str,
    /// Its instance.
    pub instance_id: &'a str,
    /// As requested.
    pub service_id: &'a str,
    /// As requested.
    pub plan_id: &'a str,
    /// Validated parameters.
    pub parameters: &'a Value,
    /// Effective app guid.
    pub app_guid: Option<&'a str>,
    /// Route, for route services.
    pub route: Option<&'a str>,
    /// The whole `bind_resource`.
    pub bind_resource: Option<&'a Value>,
    /// Platform context.
    pub context: Option<&'a Value>,
    /// End of validity, when the plan sets a lifetime.
    pub expires_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The binding this one rotates (2.17).
    pub predecessor_binding_id: Option<&'a str>,
}

/// What `insert_binding` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingInsert {
    /// The binding and its operation were stored.
    Inserted,
    /// A live binding with this id exists already.
    Exists,
    /// The instance is missing, deleted, not ready, or being changed.
    InstanceUnavailable,
}

/// What an operation does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OperationKind {
    /// Create an instance.
    Provision,
    /// Change an instance's plan or parameters.
    Update,
    /// Remove an instance.
    Deprovision,
    /// Create a binding.
    Bind,
    /// Remove a binding.
    Unbind,
    /// Remove an expired binding's credentials from the managed server, leaving the
    /// binding for the platform to unbind. Never a binding's active operation and never
    /// reported by `last_operation`: it neither blocks nor is blocked by the platform.
    Revoke,
}

impl OperationKind {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provision => "provision",
            Self::Update => "update",
            Self::Deprovision => "deprovision",
            Self::Bind => "bind",
            Self::Unbind => "unbind",
            Self::Revoke => "revoke",
        }
    }

    pub(crate) fn parse(s: &str) -> Self {
        match s {
            "provision" => Self::Provision,
            "update" => Self::Update,
            "deprovision" => Self::Deprovision,
            "bind" => Self::Bind,
            "revoke" => Self::Revoke,
            _ => Self::Unbind,
        }
    }

    /// True for operations on a binding.
    pub fn is_binding(self) -> bool {
        matches!(self, Self::Bind | Self::Unbind | Self::Revoke)
    }
}

/// Claiming an instance or binding for an operation, as the facade hands it to each
/// database: the states (as stored) the row may be in, the operation that becomes its
/// active one (inserted with the claim), and the state the row moves to, if any.
#[derive(Debug, Clone)]
pub(in crate::store) struct Claim<'a> {
    pub(in crate::store) allowed: Vec<&'static str>,
    pub(in crate::store) operation: &'a NewOperation<'a>,
    pub(in crate::store) new_state: Option<&'static str>,
}

/// An operation to insert.
#[derive(Debug, Clone)]
pub struct NewOperation<'a> {
    /// Its id, also the `operation` token handed to the platform.
    pub operation_id: Uuid,
    /// The instance it concerns.
    pub instance_id: &'a str,
    /// The binding it concerns (bind, unbind, revoke).
    pub binding_id: Option<&'a str>,
    /// What it does.
    pub kind: OperationKind,
    /// What it applies (an update's target plan and parameters).
    pub request: Value,
    /// When it must have finished.
    pub deadline: Duration,
    /// Set when the requester runs it inline: the lease owner, so no worker takes it.
    /// The inline run's lease token is the operation id; every later claim writes a
    /// random one.
    pub inline_owner: Option<&'a str>,
    /// The lease length for an inline run.
    pub lease: Duration,
}

/// A stored operation.
#[derive(Debug, Clone, PartialEq)]
pub struct OperationRecord {
    /// Id and token.
    pub operation_id: Uuid,
    /// Its instance.
    pub instance_id: String,
    /// Its binding, if any.
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
    /// When it must have finished.
    pub deadline_at: DateTime<Utc>,
    /// When a worker may next run it (later than now after a transient failure).
    pub next_attempt_at: DateTime<Utc>,
    /// The token of the claim that holds its lease, if one does. Written at claim
    /// time and required by every renewal, retry, release and outcome, so a run
    /// whose claim was superseded can never write, even in the same process.
    pub lease_token: Option<Uuid>,
}

/// An operation a worker has just leased, with its instance as the claim read it, so
/// that running it needs no second read.
#[derive(Debug, Clone)]
pub struct ClaimedOperation {
    /// The leased operation.
    pub operation: OperationRecord,
    /// Its instance (`None` if the row is gone, which the executor reports).
    pub instance: Option<InstanceRecord>,
}

/// How an operation ended, with what it changes.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Succeeded; a bind carries its sealed credentials, a provision or update the
    /// facts its backend returned.
    Succeeded {
        /// Sealed credentials of a bind.
        credentials: Option<SealedCredentials>,
        /// A provision's or update's backend facts (an update without any keeps the
        /// instance's earlier facts).
        facts: Option<Value>,
    },
    /// Failed for good; the description is user-safe.
    Failed {
        /// Shown by `last_operation`.
        description: String,
    },
}

/// The row an operation belongs to.
#[derive(Debug, Clone, Copy)]
pub enum OperationTarget<'a> {
    /// A service instance.
    Instance(&'a str),
    /// A service binding.
    Binding(&'a str),
}

/// One audited request. Holds no request body and no credential: only ids, the
/// answer, and the decoded originating identity.
#[derive(Debug, Clone, PartialEq)]
pub struct AuditEvent {
    /// When the request was answered.
    pub occurred_at: DateTime<Utc>,
    /// provision, update, deprovision, bind or unbind.
    pub action: String,
    /// The instance concerned.
    pub instance_id: String,
    /// The binding concerned.
    pub binding_id: Option<String>,
    /// The operation started or reported.
    pub operation_id: Option<Uuid>,
    /// HTTP status of the answer.
    pub status: u16,
    /// The request's API version.
    pub api_version: String,
    /// bindery's request id.
    pub request_id: Option<String>,
    /// Originating identity platform.
    pub platform: Option<String>,
    /// Originating identity value.
    pub identity: Option<Value>,
}
