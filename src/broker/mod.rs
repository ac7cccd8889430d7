//! The broker: every OSB rule (idempotency, conflicts, sync or async, version-gated
//! fields) as typed calls with typed outcomes. No HTTP types and no SQL here: the
//! HTTP layer maps outcomes to status codes, the store keeps the state.

mod audit;
mod bindings;
mod fingerprint;
mod input;
mod instances;
mod last_operation;
mod requests;
pub mod retired;

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use serde_json::Value;
use tokio::sync::Notify;
use uuid::Uuid;

use crate::backends::{BackendRegistry, ServiceBackend};
use crate::catalog::{Execution as PlanExecution, Plan, SharedCatalog};
use crate::crypto::Keyring;
use crate::error::{BrokerError, BrokerResult};
use crate::osb::{
    ApiVersion, BindResponse, LastOperationResponse, OperationResponse, OriginatingIdentity,
    ProvisionResponse,
};
use crate::store::{
    AuditEvent, InstanceRecord, InstanceState, NewOperation, OperationKind, OperationRecord,
    OperationTarget, Store,
};
use crate::worker::{Execution, Executor, Known, RetryPolicy};

/// What the broker knows about the request besides its body.
#[derive(Debug, Clone)]
pub struct RequestContext {
    /// The negotiated API version.
    pub version: ApiVersion,
    /// Who on the platform asked, when the platform says so.
    pub identity: Option<OriginatingIdentity>,
    /// bindery's request id (for the audit trail and logs).
    pub request_id: Option<String>,
}

impl RequestContext {
    /// A context for `version` with no identity (tests, tools).
    pub fn new(version: ApiVersion) -> Self {
        Self {
            version,
            identity: None,
            request_id: None,
        }
    }
}

/// Result of a provision.
#[derive(Debug, Clone, PartialEq)]
pub enum ProvisionOutcome {
    /// 201: this request provisioned the instance.
    Created(ProvisionResponse),
    /// 200: an identical instance exists.
    AlreadyExists(ProvisionResponse),
    /// 202: provisioning runs (or still runs) asynchronously.
    Accepted(ProvisionResponse),
}

/// Result of an update; the body carries 2.16+ metadata.
#[derive(Debug, Clone, PartialEq)]
pub enum UpdateOutcome {
    /// 200: applied (or nothing to change).
    Updated(OperationResponse),
    /// 202: runs asynchronously; the body has the operation.
    Accepted(OperationResponse),
}

/// Result of a deprovision or an unbind.
#[derive(Debug, Clone, PartialEq)]
pub enum DeleteOutcome {
    /// 200: deleted by this request.
    Deleted,
    /// 202: deletion runs asynchronously.
    Accepted {
        /// Operation to poll.
        operation: String,
    },
}

/// Result of a bind.
#[derive(Debug, Clone, PartialEq)]
pub enum BindOutcome {
    /// 201: this request created the binding.
    Created(BindResponse),
    /// 200: an identical binding exists; same credentials.
    AlreadyExists(BindResponse),
    /// 202: the bind runs asynchronously (2.14+).
    Accepted {
        /// Operation to poll.
        operation: String,
    },
}

/// Result of a last_operation poll.
#[derive(Debug, Clone, PartialEq)]
pub enum LastOperationOutcome {
    /// 200 with a state, and for 2.15+ clients polling a running operation the
    /// number of seconds to wait before the next poll (`Retry-After`).
    State(LastOperationResponse, Option<u64>),
    /// 410: an asynchronous delete has finished.
    Gone,
}

/// What the audit trail records of a mutating request, besides its context.
#[derive(Debug, Clone, Copy)]
pub struct AuditedRequest<'a> {
    /// `provision`, `update`, `deprovision`, `bind` or `unbind`.
    pub action: &'a str,
    /// The instance in the request's path.
    pub instance_id: &'a str,
    /// The binding in the request's path, for binding actions.
    pub binding_id: Option<&'a str>,
    /// The operation the answer started or replayed, if any.
    pub operation_id: Option<Uuid>,
    /// The answer's HTTP status.
    pub status: u16,
}

/// Settings of the broker layer.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// Lease length for operations run inline.
    pub lease: Duration,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        Self {
            lease: Duration::from_secs(30),
        }
    }
}

/// The broker service. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Broker {
    store: Store,
    catalog: SharedCatalog,
    backends: Arc<BackendRegistry>,
    keyring: Arc<Keyring>,
    executor: Executor,
    audit: audit::AuditTrail,
    /// This process's lease owner name, for operations run inline.
    owner: Arc<str>,
    /// Wakes this process's worker when work is queued.
    wake: Arc<Notify>,
    options: BrokerOptions,
}

impl Broker {
    /// Builds the broker and starts its audit writer (call within a tokio runtime).
    pub fn new(
        store: Store,
        catalog: SharedCatalog,
        backends: Arc<BackendRegistry>,
        keyring: Arc<Keyring>,
        owner: Arc<str>,
        wake: Arc<Notify>,
        options: BrokerOptions,
    ) -> Self {
        let executor = Executor::new(
            store.clone(),
            catalog.clone(),
            backends.clone(),
            keyring.clone(),
            options.lease,
        );
        let audit = audit::AuditTrail::start(store.clone());
        Self {
            store,
            catalog,
            backends,
            keyring,
            executor,
            audit,
            owner,
            wake,
            options,
        }
    }

    /// The executor, for building a worker that shares this broker's parts.
    pub fn executor(&self) -> &Executor {
        &self.executor
    }

    /// The catalog served.
    pub fn catalog(&self) -> &SharedCatalog {
        &self.catalog
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Queues an event for the audit trail; a failure to write it is logged and
    /// counted (`bindery_audit_events_lost_total`), never fails the request.
    pub async fn record_audit(&self, ctx: &RequestContext, request: AuditedRequest<'_>) {
        let event = AuditEvent {
            occurred_at: Utc::now(),
            action: request.action.to_owned(),
            instance_id: request.instance_id.to_owned(),
            binding_id: request.binding_id.map(str::to_owned),
            operation_id: request.operation_id,
            status: request.status,
            api_version: ctx.version.to_string(),
            request_id: ctx.request_id.clone(),
            platform: ctx.identity.as_ref().map(|i| i.platform.clone()),
            identity: ctx
                .identity
                .as_ref()
                .map(|i| Value::Object(i.value.clone())),
        };
        self.audit.record(event).await;
    }

    /// Waits until every audit event queued so far is written.
    pub async fn flush_audit(&self) {
        self.audit.flush().await;
    }

    fn backend_for(&self, plan: &Plan) -> BrokerResult<Arc<dyn ServiceBackend>> {
        self.backends.get(&plan.backend_kind).ok_or_else(|| {
            BrokerError::Internal(anyhow::anyhow!(
                "plan {} names backend {} which is not registered",
                plan.id,
                plan.backend_kind
            ))
        })
    }

    /// Checks instance parameters against what the plan's backend settings allow, so a
    /// value the backend would refuse is the client's 400 before anything is stored,
    /// never a 502 (or a failed operation) later.
    fn check_plan_bounds(
        &self,
        plan: &Plan,
        parameters: &serde_json::Map<String, Value>,
    ) -> BrokerResult<()> {
        let bounds = self
            .backend_for(plan)?
            .parameter_bounds(&plan.backend_settings);
        crate::backends::check_parameter_bounds(&bounds, parameters).map_err(|e| {
            BrokerError::bad_request(format!("invalid parameters for plan `{}`: {e}", plan.name))
        })
    }

    /// Whether to answer 202 and run in the worker (true) or run inline (false).
    fn runs_async(plan: &Plan, accepts_incomplete: bool) -> BrokerResult<bool> {
        match (plan.execution, accepts_incomplete) {
            (PlanExecution::Required, false) => Err(BrokerError::AsyncRequired),
            (PlanExecution::Never, _) => Ok(false),
            (_, accepts) => Ok(accepts),
        }
    }

    fn new_operation<'a>(
        &'a self,
        kind: OperationKind,
        instance_id: &'a str,
        binding_id: Option<&'a str>,
        request: Value,
        plan: Option<&Plan>,
        run_async: bool,
    ) -> NewOperation<'a> {
        NewOperation {
            operation_id: Uuid::new_v4(),
            instance_id,
            binding_id,
            kind,
            request,
            deadline: plan.map_or(Duration::from_secs(3600), |p| p.max_operation_duration),
            inline_owner: (!run_async).then_some(&*self.owner),
            lease: self.options.lease,
        }
    }

    /// Runs a just-registered inline operation to its end. A failure is answered with
    /// the operation's user-safe description: 503 when the managed server was down,
    /// 502 when it refused.
    async fn run_inline(
        &self,
        op: &NewOperation<'_>,
        known: Known<'_>,
    ) -> BrokerResult<Option<crate::backends::Credentials>> {
        let record = OperationRecord {
            operation_id: op.operation_id,
            instance_id: op.instance_id.to_owned(),
            binding_id: op.binding_id.map(str::to_owned),
            kind: op.kind,
            state: crate::osb::OperationState::InProgress,
            description: None,
            request: op.request.clone(),
            attempts: 1,
            deadline_at: Utc::now() + op.deadline,
            next_attempt_at: Utc::now(),
            // The inline run's claim, written with the operation (`NewOperation`).
            lease_token: Some(op.operation_id),
        };
        match self
            .executor
            .run(&record, RetryPolicy::FailFast, known)
            .await?
        {
            Execution::Succeeded(credentials) => Ok(credentials),
            Execution::Failed {
                description,
                unavailable: true,
                ..
            } => Err(BrokerError::Unavailable(with_advice(
                description,
                op.kind,
                true,
            ))),
            // The user's mistake, as the backend found it: 400, like a request the
            // broker's own validation refuses (the failed instance or binding is
            // replaced by the platform's next request with the same id).
            Execution::Failed {
                description,
                rejected: true,
                ..
            } => Err(BrokerError::BadRequest(description)),
            Execution::Failed { description, .. } => Err(BrokerError::BackendFailed(with_advice(
                description,
                op.kind,
                false,
            ))),
            // The run lost its claim: a delete superseded it, or another broker process
            // took the operation over (this one looked dead) and finishes it.
            Execution::Retrying(_) | Execution::LeaseLost => Err(BrokerError::BackendFailed(
                "This request's work was stopped: the resource is being deleted, or another broker process took the operation over. Send the request again to get its outcome.".to_owned(),
            )),
        }
    }

    /// Hands a just-registered operation to the worker (and wakes it), or runs it here.
    async fn start(
        &self,
        operation: &NewOperation<'_>,
        run_async: bool,
        known: Known<'_>,
    ) -> BrokerResult<Started> {
        if run_async {
            self.wake_worker();
            return Ok(Started::Queued(operation.operation_id.to_string()));
        }
        self.run_inline(operation, known).await.map(Started::Done)
    }

    /// Orphan mitigation (2.15, "deprovision during provisioning"): a delete that
    /// arrives while the create of its resource still runs cancels the create and
    /// queues itself, to remove whatever the create made.
    async fn supersede_create(
        &self,
        target: OperationTarget<'_>,
        create: Uuid,
        operation: NewOperation<'_>,
        reason: &str,
    ) -> BrokerResult<DeleteOutcome> {
        let what = match target {
            OperationTarget::Instance(_) => "service instance",
            OperationTarget::Binding(_) => "service binding",
        };
        let queued = NewOperation {
            inline_owner: None,
            ..operation
        };
        if !self
            .store
            .supersede_operation(target, create, &queued, reason)
            .await?
        {
            return Err(busy(what));
        }
        self.wake_worker();
        Ok(DeleteOutcome::Accepted {
            operation: queued.operation_id.to_string(),
        })
    }

    /// The instance, unless it never existed or has been deleted (404).
    async fn live_instance(&self, instance_id: &str) -> BrokerResult<InstanceRecord> {
        match self.store.find_instance(instance_id).await? {
            Some(i) if i.state != InstanceState::Deleted => Ok(i),
            _ => Err(no_such("instance", instance_id)),
        }
    }

    /// Instance `metadata` for clients that know it: `labels` from 2.16 (what users
    /// see: the service and plan names), `attributes` from 2.17 (the backend kind).
    fn instance_metadata(
        &self,
        ctx: &RequestContext,
        service_id: &str,
        plan_id: &str,
    ) -> Option<serde_json::Map<String, Value>> {
        if !ctx.version.has(ApiVersion::V2_16) {
            return None;
        }
        let (service, plan) = self.catalog.plan(service_id, plan_id)?;
        let mut metadata = serde_json::Map::new();
        metadata.insert(
            "labels".to_owned(),
            serde_json::json!({"bindery.service": service.name, "bindery.plan": plan.name}),
        );
        if ctx.version.has(ApiVersion::V2_17) {
            metadata.insert(
                "attributes".to_owned(),
                serde_json::json!({"bindery.backend": plan.backend_kind}),
            );
        }
        Some(metadata)
    }

    /// Binding `metadata` when the binding expires: `expires_at` from 2.16,
    /// `renew_before` (a fifth of the lifetime earlier) from 2.17.
    fn binding_metadata(
        ctx: &RequestContext,
        expires_at: Option<chrono::DateTime<Utc>>,
        lifetime: Option<Duration>,
    ) -> Option<serde_json::Map<String, Value>> {
        let expires_at = expires_at.filter(|_| ctx.version.has(ApiVersion::V2_16))?;
        let format =
            |t: chrono::DateTime<Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let mut metadata = serde_json::Map::new();
        metadata.insert("expires_at".to_owned(), Value::String(format(expires_at)));
        if ctx.version.has(ApiVersion::V2_17)
            && let Some(lifetime) = lifetime
        {
            metadata.insert(
                "renew_before".to_owned(),
                Value::String(format(expires_at - lifetime / 5)),
            );
        }
        Some(metadata)
    }

    fn wake_worker(&self) {
        self.wake.notify_one();
    }
}

/// How a just-registered operation goes on.
enum Started {
    /// Queued for the worker: a 202 naming this operation.
    Queued(String),
    /// Run here to its end, with the credentials a bind created.
    Done(Option<crate::backends::Credentials>),
}

/// A synchronous failure's description, followed by what the platform should do: no
/// worker retries a request made without `accepts_incomplete=true`, and a failed
/// provision or bind leaves nothing that refuses a corrected request with the same id.
fn with_advice(description: String, kind: OperationKind, unavailable: bool) -> String {
    let advice = match (kind, unavailable) {
        (OperationKind::Provision, true) => {
            "Nothing retries it: send the request again later, or delete the instance to remove anything half-created."
        }
        (OperationKind::Provision, false) => {
            "Nothing retries it: correct the request and send it again with the same instance id, or delete the instance to remove anything half-created."
        }
        (OperationKind::Bind, true) => {
            "Nothing retries it: send the request again later, or delete the binding to remove anything half-created."
        }
        (OperationKind::Bind, false) => {
            "Nothing retries it: correct the request and send it again with the same binding id, or delete the binding to remove anything half-created."
        }
        (OperationKind::Update, _) => "Nothing retries it: send the update again.",
        (OperationKind::Deprovision | OperationKind::Unbind, _) => {
            "Nothing retries it: send the DELETE again."
        }
        // Revocations of expired bindings are the worker's own, never run for a request.
        (OperationKind::Revoke, _) => "The broker retries it.",
    };
    let description = description.trim_end();
    let separator = if description.ends_with('.') {
        " "
    } else {
        ". "
    };
    format!("{description}{separator}{advice}")
}

/// 404: `Service {kind} {id} does not exist.`, for `kind` instance or binding.
fn no_such(kind: &str, id: &str) -> BrokerError {
    BrokerError::NotFound(format!("Service {kind} {id} does not exist."))
}

/// 409: the id is taken by a resource with other attributes.
fn taken(kind: &str, id: &str) -> BrokerError {
    BrokerError::Conflict(format!(
        "Service {kind} {id} already exists with different attributes."
    ))
}

fn busy(what: &str) -> BrokerError {
    BrokerError::Concurrency(format!(
        "Another operation for this {what} is in progress; retry when it has finished (last_operation follows it). An operation left by a broker process that stopped is taken over within seconds, so a retry a few seconds later is answered."
    ))
}
