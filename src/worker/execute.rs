//! Running one operation: resolve its instance, plan and backend, call the backend
//! while renewing the lease, and record the outcome. Used by the worker for queued
//! operations and by the broker for synchronous requests, so both behave the same.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use chrono::Utc;
use serde_json::{Map, Value};

use crate::backends::{
    BackendError, BackendRegistry, BindingSpec, Credentials, Facts, InstanceSpec, UpdateSpec,
};
use crate::catalog::{Plan, SharedCatalog};
use crate::crypto::Keyring;
use crate::store::{InstanceRecord, OperationKind, OperationRecord, Outcome, Store};

/// How long to wait before retrying after the n-th failed attempt: 2^n seconds,
/// capped at five minutes.
pub fn backoff(attempts: i32) -> Duration {
    let exponent = attempts.clamp(0, 8) as u32;
    Duration::from_secs(2u64.pow(exponent)).min(Duration::from_secs(300))
}

/// Most attempts before a transient failure becomes permanent.
pub const MAX_ATTEMPTS: i32 = 10;

/// How a run ended.
#[derive(Debug)]
pub enum Execution {
    /// Done; a bind returns the credentials it created.
    Succeeded(Option<Credentials>),
    /// Failed for good; `unavailable` when the managed server could not be reached.
    Failed {
        /// User-safe description, also stored on the operation.
        description: String,
        /// The server was down rather than the request being wrong.
        unavailable: bool,
        /// The backend refused the request as the user's mistake (a synchronous
        /// request answers 400).
        rejected: bool,
    },
    /// A transient failure; the operation is queued again.
    Retrying(String),
    /// Another worker holds the operation now; it will finish it.
    LeaseLost,
}

/// Whether a transient backend failure is retried later (worker) or reported at
/// once (a synchronous request whose client is waiting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RetryPolicy {
    /// Queue again with backoff.
    Backoff,
    /// Fail now.
    FailFast,
}

/// What the caller already read for an operation, so that running it inline does not
/// read it again. Empty for the worker, which reads everything.
#[derive(Debug, Clone, Copy, Default)]
pub struct Known<'a> {
    /// The instance as it is before the operation (an update's previous plan).
    pub instance: Option<&'a InstanceRecord>,
    /// The binding's parameters (bind, unbind).
    pub binding_parameters: Option<&'a Map<String, Value>>,
}

impl<'a> Known<'a> {
    /// The instance is known.
    pub fn instance(instance: &'a InstanceRecord) -> Self {
        Self {
            instance: Some(instance),
            binding_parameters: None,
        }
    }
}

/// Runs operations. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Executor {
    pub(crate) store: Store,
    pub(crate) catalog: SharedCatalog,
    pub(crate) backends: Arc<BackendRegistry>,
    pub(crate) keyring: Arc<Keyring>,
    /// Lease length; renewed every third of it while the backend works.
    pub(crate) lease: Duration,
}

struct Resolved<'a> {
    instance: &'a InstanceRecord,
    backend_kind: String,
    plan_id: String,
    service_id: String,
    parameters: Map<String, Value>,
    backend_settings: Value,
    backend: Arc<dyn crate::backends::ServiceBackend>,
}

impl Executor {
    /// Builds an executor.
    pub fn new(
        store: Store,
        catalog: SharedCatalog,
        backends: Arc<BackendRegistry>,
        keyring: Arc<Keyring>,
        lease: Duration,
    ) -> Self {
        Self {
            store,
            catalog,
            backends,
            keyring,
            lease,
        }
    }

    /// Runs `op`, which its caller has claimed (`op.lease_token` is the claim), and
    /// records the outcome. When the claim is lost on the way (the operation was taken
    /// over or superseded), the run stops within a second, writes nothing, and gives
    /// the claim back so that whatever waits for it starts at once.
    pub async fn run(
        &self,
        op: &OperationRecord,
        policy: RetryPolicy,
        known: Known<'_>,
    ) -> anyhow::Result<Execution> {
        let token = op
            .lease_token
            .context("an operation is run only under a claim (no lease token)")?;
        let execution = self.run_claimed(op, token, policy, known).await?;
        if matches!(execution, Execution::LeaseLost) {
            self.store.release_lease(op.operation_id, token).await?;
        }
        Ok(execution)
    }

    async fn run_claimed(
        &self,
        op: &OperationRecord,
        token: uuid::Uuid,
        policy: RetryPolicy,
        known: Known<'_>,
    ) -> anyhow::Result<Execution> {
        if Utc::now() > op.deadline_at {
            let description = format!(
                "The {} did not finish within its maximum duration and was stopped. Retry the request; if it keeps failing, contact the broker operator.",
                op.kind.as_str()
            );
            self.store.fail_expired_operation(op, &description).await?;
            return Ok(Execution::Failed {
                description,
                unavailable: false,
                rejected: false,
            });
        }
        let read;
        let instance = match known.instance {
            Some(instance) => Some(instance),
            None => {
                read = self.store.find_instance(&op.instance_id).await?;
                read.as_ref()
            }
        };
        // A revocation whose binding was deleted or revoked meanwhile calls no backend.
        let moot = op.kind == OperationKind::Revoke && self.revocation_is_moot(op).await?;
        let result = match self.resolve(op, instance) {
            _ if moot => Ok(Done::default()),
            Ok(resolved) => {
                let call = self.call_backend(op, token, &resolved, known);
                measured(&resolved.backend_kind, op.kind.as_str(), call).await
            }
            Err(description) => Err(BackendError::Failed(description)),
        };
        let (outcome, execution) = match result {
            Ok(Done { credentials, facts }) => {
                let sealed = match (&credentials, &op.binding_id) {
                    (Some(c), Some(binding_id)) => {
                        let json = serde_json::to_vec(&c.0).context("serialising credentials")?;
                        Some(self.keyring.seal(&json, binding_id))
                    }
                    _ => None,
                };
                (
                    Outcome::Succeeded {
                        credentials: sealed,
                        facts: facts.map(Value::Object),
                    },
                    Execution::Succeeded(credentials),
                )
            }
            Err(BackendError::Unavailable(description))
                if policy == RetryPolicy::Backoff && op.attempts < MAX_ATTEMPTS =>
            {
                let retrying = self
                    .store
                    .retry_operation_later(
                        op.operation_id,
                        token,
                        backoff(op.attempts),
                        &description,
                    )
                    .await?;
                metrics::counter!("bindery_operations_total", "kind" => op.kind.as_str(), "state" => "retrying").increment(1);
                return Ok(if retrying {
                    Execution::Retrying(description)
                } else {
                    Execution::LeaseLost
                });
            }
            Err(error) => {
                let unavailable = matches!(error, BackendError::Unavailable(_));
                let rejected = matches!(error, BackendError::Rejected(_));
                let description = error.to_string();
                (
                    Outcome::Failed {
                        description: description.clone(),
                    },
                    Execution::Failed {
                        description,
                        unavailable,
                        rejected,
                    },
                )
            }
        };
        if self.store.finish_operation(op, token, &outcome).await? {
            let state = match &execution {
                Execution::Succeeded(_) => "succeeded",
                _ => "failed",
            };
            metrics::counter!("bindery_operations_total", "kind" => op.kind.as_str(), "state" => state).increment(1);
            Ok(execution)
        } else {
            Ok(Execution::LeaseLost)
        }
    }

    /// Finds what the backend needs. `Err(text)` is a permanent, user-facing failure.
    fn resolve<'a>(
        &self,
        op: &OperationRecord,
        instance: Option<&'a InstanceRecord>,
    ) -> Result<Resolved<'a>, String> {
        let Some(instance) = instance else {
            return Err("The service instance no longer exists.".to_owned());
        };
        let (plan_id, parameters) = match op.kind {
            OperationKind::Update => (
                op.request
                    .get("plan_id")
                    .and_then(Value::as_str)
                    .unwrap_or(&instance.plan_id)
                    .to_owned(),
                op.request
                    .get("parameters")
                    .cloned()
                    .unwrap_or_else(|| instance.parameters.clone()),
            ),
            _ => (instance.plan_id.clone(), instance.parameters.clone()),
        };
        let (backend_kind, backend_settings) = match self
            .catalog
            .plan(&instance.service_id, &plan_id)
        {
            Some((_, plan)) => (plan.backend_kind.clone(), plan.backend_settings.clone()),
            // A plan (or service) that left the catalog: what the instance created must
            // still be removable. Deleting needs only the kind (names derive from the
            // ids), so use the kind recorded at provision, else the one every plan of
            // the service still offered shares, with empty settings.
            None if matches!(op.kind, OperationKind::Deprovision | OperationKind::Unbind) => {
                let kind = instance.backend_kind.clone().or_else(|| {
                    let plans = &self.catalog.service(&instance.service_id)?.plans;
                    let first = &plans.first()?.backend_kind;
                    plans
                        .iter()
                        .all(|p| &p.backend_kind == first)
                        .then(|| first.clone())
                });
                let Some(kind) = kind else {
                    return Err(format!(
                        "Plan {plan_id} of service {} is not in the broker's catalog any more and the instance does not record its backend; the broker operator must restore the plan to delete it.",
                        instance.service_id
                    ));
                };
                (kind, Value::Object(Map::new()))
            }
            None => {
                return Err(format!(
                    "Plan {plan_id} of service {} is not in the broker's catalog any more; the broker operator must restore it to manage this instance.",
                    instance.service_id
                ));
            }
        };
        let Some(backend) = self.backends.get(&backend_kind) else {
            return Err(format!(
                "The {backend_kind} backend is not configured on this broker."
            ));
        };
        Ok(Resolved {
            instance,
            backend_kind,
            plan_id,
            service_id: instance.service_id.clone(),
            parameters: as_object(parameters),
            backend_settings,
            backend,
        })
    }

    async fn call_backend(
        &self,
        op: &OperationRecord,
        token: uuid::Uuid,
        r: &Resolved<'_>,
        known: Known<'_>,
    ) -> Result<Done, BackendError> {
        let spec = InstanceSpec {
            instance_id: &op.instance_id,
            service_id: &r.service_id,
            plan_id: &r.plan_id,
            plan_settings: &r.backend_settings,
            parameters: &r.parameters,
            context: r.instance.context.as_ref(),
            facts: r.instance.backend_facts.as_ref(),
        };
        let work = async {
            match op.kind {
                OperationKind::Provision => r.backend.provision(&spec).await.map(Done::facts),
                OperationKind::Deprovision => {
                    r.backend.deprovision(&spec).await.map(|()| Done::default())
                }
                OperationKind::Update => {
                    // Read before the update's effect lands: the plan it changes from.
                    let previous = self.settings_of(r.instance);
                    let change = UpdateSpec {
                        target: spec,
                        previous_plan_settings: previous.as_ref().map_or(&Value::Null, |p| &p.0),
                        previous_parameters: previous.as_ref().map_or(&EMPTY, |p| &p.1),
                    };
                    r.backend.update(&change).await.map(Done::facts)
                }
                // A revocation drops what an unbind drops: the binding's user.
                OperationKind::Bind | OperationKind::Unbind | OperationKind::Revoke => {
                    let binding_id = op.binding_id.as_deref().unwrap_or_default();
                    let read;
                    let params = match known.binding_parameters {
                        Some(params) => params,
                        None => {
                            read = self.binding_parameters(binding_id).await?;
                            &read
                        }
                    };
                    let password = self.keyring.derive_password(&op.operation_id.to_string());
                    let binding = BindingSpec {
                        instance: spec,
                        binding_id,
                        parameters: params,
                        password: &password,
                    };
                    if op.kind == OperationKind::Bind {
                        r.backend.bind(&binding).await.map(Done::credentials)
                    } else {
                        r.backend.unbind(&binding).await.map(|()| Done::default())
                    }
                }
            }
        };
        tokio::pin!(work);
        let mut renew = tokio::time::interval(renew_interval(self.lease));
        renew.tick().await;
        loop {
            tokio::select! {
                result = &mut work => return result,
                _ = renew.tick() => {
                    // A lost claim means the operation was taken over or superseded:
                    // stop now (the backend call is dropped); nothing will be written.
                    match self.store.renew_lease(op.operation_id, token, self.lease).await {
                        Ok(true) => {}
                        Ok(false) => return Err(BackendError::Unavailable("lease lost".to_owned())),
                        Err(e) => tracing::warn!(error = %e, "could not renew an operation lease"),
                    }
                }
            }
        }
    }

    /// An instance's plan settings and parameters as they are now.
    fn settings_of(&self, instance: &InstanceRecord) -> Option<(Value, Map<String, Value>)> {
        let plan: Option<&Plan> = self
            .catalog
            .plan(&instance.service_id, &instance.plan_id)
            .map(|(_, p)| p);
        plan.map(|p| {
            (
                p.backend_settings.clone(),
                as_object(instance.parameters.clone()),
            )
        })
    }

    async fn binding_parameters(
        &self,
        binding_id: &str,
    ) -> Result<Map<String, Value>, BackendError> {
        let binding = self
            .store
            .find_binding(binding_id)
            .await
            .map_err(|_| store_unavailable())?;
        Ok(binding.map(|b| as_object(b.parameters)).unwrap_or_default())
    }
}

/// What a backend call that succeeded returned.
#[derive(Debug, Default)]
struct Done {
    /// A bind's credentials.
    credentials: Option<Credentials>,
    /// A provision's or update's facts about the instance.
    facts: Facts,
}

impl Done {
    fn facts(facts: Facts) -> Self {
        Self {
            credentials: None,
            facts,
        }
    }

    fn credentials(credentials: Credentials) -> Self {
        Self {
            credentials: Some(credentials),
            facts: None,
        }
    }
}

/// How often a running operation renews its lease, which is also how soon it notices
/// that it was superseded or taken over: a third of the lease, and at most a second,
/// so that a delete waiting for a superseded create starts within about a second.
fn renew_interval(lease: Duration) -> Duration {
    (lease / 3).min(Duration::from_secs(1))
}

static EMPTY: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

fn store_unavailable() -> BackendError {
    BackendError::Unavailable("The broker's database is unavailable; try again later.".to_owned())
}

fn as_object(value: Value) -> Map<String, Value> {
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

/// Runs a backend call, recording how long it took and how it failed.
async fn measured(
    backend: &str,
    action: &'static str,
    call: impl Future<Output = Result<Done, BackendError>>,
) -> Result<Done, BackendError> {
    let started = std::time::Instant::now();
    let result = call.await;
    metrics::histogram!("bindery_backend_call_duration_seconds", "backend" => backend.to_owned(), "action" => action)
        .record(started.elapsed().as_secs_f64());
    if let Err(e) = &result {
        let error = match e {
            BackendError::Unavailable(_) => "unavailable",
            BackendError::Failed(_) => "failed",
            BackendError::Rejected(_) => "rejected",
        };
        metrics::counter!("bindery_backend_errors_total", "backend" => backend.to_owned(), "action" => action, "error" => error)
            .increment(1);
    }
    result
}
