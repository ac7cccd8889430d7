//! Pluggable backends: the only code that talks to managed services.
//!
//! A backend implements [`ServiceBackend`] for one *kind* (the `backend.kind` a plan
//! names in `catalog.yaml`). Every method must be idempotent (create-if-absent,
//! drop-if-present): the worker runs an operation again after a crash or a lost lease,
//! and a platform's orphan mitigation deletes resources that were never completed.
//! A library user registers their own kind in a [`BackendRegistry`] without touching
//! bindery's code.

pub mod check_only;
pub mod common;
pub mod exec;
pub mod mariadb;
pub mod postgres;
pub mod rabbitmq;
pub mod redis;
pub mod sql_ident;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::{Map, Value};

/// What a backend is told about the instance it works on.
#[derive(Debug, Clone, Copy)]
pub struct InstanceSpec<'a> {
    /// The platform's instance id: opaque, any string. Never use it raw in a name.
    pub instance_id: &'a str,
    /// The catalog service id.
    pub service_id: &'a str,
    /// The catalog plan id.
    pub plan_id: &'a str,
    /// The plan's `backend.settings` from `catalog.yaml`, already checked.
    pub plan_settings: &'a Value,
    /// The instance parameters, already validated against the plan's schema.
    pub parameters: &'a Map<String, Value>,
    /// The platform's `context` as sent at provision (`None` when it sent none).
    pub context: Option<&'a Value>,
    /// What this backend returned about the instance at provision or its last update
    /// (`None`: nothing, or not yet provisioned).
    pub facts: Option<&'a Value>,
}

/// What a backend keeps about an instance it provisioned or updated: a JSON object,
/// stored with the instance (not encrypted: never a secret) and handed back as
/// [`InstanceSpec::facts`]. `None` keeps nothing (an update: keeps the earlier facts).
pub type Facts = Option<Map<String, Value>>;

/// An update: the instance as it will be, and what it was.
#[derive(Debug, Clone, Copy)]
pub struct UpdateSpec<'a> {
    /// The instance with the target plan and the merged parameters.
    pub target: InstanceSpec<'a>,
    /// The plan settings before the update.
    pub previous_plan_settings: &'a Value,
    /// The parameters before the update.
    pub previous_parameters: &'a Map<String, Value>,
}

/// A binding of an instance.
#[derive(Debug, Clone, Copy)]
pub struct BindingSpec<'a> {
    /// The instance the binding belongs to.
    pub instance: InstanceSpec<'a>,
    /// The platform's binding id: opaque, any string.
    pub binding_id: &'a str,
    /// Binding parameters, already validated against the plan's bind schema.
    pub parameters: &'a Map<String, Value>,
    /// The password a bind gives the binding's user (unused by unbind): 32
    /// alphanumerics, the same for every run of one bind operation, so that a run
    /// superseded while its command was in flight leaves the password the current
    /// run stores. Backends use it rather than generating their own.
    pub password: &'a secrecy::SecretString,
}

/// Credentials handed to an application: a flat map of strings with conventional
/// keys (`uri`, `host`, `port`, `username`, `password`, ...), so that each key maps
/// onto one key of a Kubernetes Secret. `Debug` never prints a value.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials(pub BTreeMap<String, String>);

/// The `provider` key of every built-in backend's credentials.
pub const PROVIDER: &str = "bindery";

impl Credentials {
    /// Credentials that start with the two keys the Kubernetes Service Binding
    /// specification (servicebinding.io) reads from a binding Secret: `type` (the kind
    /// of service, e.g. `postgresql`) and `provider` (`bindery`). A Secret written from
    /// them is then a binding Secret that servicebinding.io libraries and the Service
    /// Binding operator recognise as is.
    pub fn service_binding(service_type: &str) -> Self {
        Self::default()
            .with("type", service_type)
            .with("provider", PROVIDER)
    }

    /// Adds one entry.
    pub fn with(mut self, key: &str, value: impl Into<String>) -> Self {
        self.0.insert(key.to_owned(), value.into());
        self
    }

    /// The credentials as the JSON object of a bind response.
    pub fn to_json(&self) -> Map<String, Value> {
        self.0
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect()
    }
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "<redacted>")))
            .finish()
    }
}

/// Why a backend call did not succeed. Descriptions are shown to platform users:
/// they must say what went wrong and what to do, and never carry a credential.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// The managed server could not be reached or is overloaded; retrying may work.
    #[error("{0}")]
    Unavailable(String),
    /// The operation cannot succeed as asked; retrying will not help.
    #[error("{0}")]
    Failed(String),
    /// The request itself is the user's mistake (a parameter the service refuses):
    /// a synchronous request answers 400, an asynchronous one fails with this text.
    #[error("{0}")]
    Rejected(String),
}

/// One managed-service kind. Implementations are shared by every request and worker
/// task, so they hold pools or clients, not per-call state.
#[async_trait]
pub trait ServiceBackend: Send + Sync + fmt::Debug {
    /// Problems in a plan's `backend.settings`, one message each, checked at start-up.
    fn check_plan_settings(&self, settings: &Value) -> Vec<String>;

    /// What a plan's settings allow of instance parameters (provision and update), so
    /// the broker refuses what the backend would refuse with a 400 before storing
    /// anything, and `check-catalog` reports a schema that admits more. Default: the
    /// backend says nothing.
    fn parameter_bounds(&self, _settings: &Value) -> Vec<ParameterBound> {
        Vec::new()
    }

    /// A dashboard for the instance, known before provisioning starts (the spec wants
    /// it in the first response, even a 202). Most backends have none.
    fn dashboard_url(&self, _instance: &InstanceSpec<'_>) -> Option<String> {
        None
    }

    /// Whether the managed service behind a plan answers, for backends that can say
    /// cheaply (an adapter's `health` action); `None`: this backend has no such check.
    /// Run by the worker in the background, never on a request's path.
    async fn health(&self, _plan_settings: &Value) -> Option<Result<(), BackendError>> {
        None
    }

    /// Creates whatever the instance needs, and says what to keep about it. Idempotent.
    async fn provision(&self, instance: &InstanceSpec<'_>) -> Result<Facts, BackendError>;

    /// Applies a plan or parameter change, and says what to keep about the instance
    /// now. Idempotent.
    async fn update(&self, change: &UpdateSpec<'_>) -> Result<Facts, BackendError>;

    /// Removes everything the instance created, even with live connections. Idempotent:
    /// succeeds when nothing is left, including when provisioning never finished.
    async fn deprovision(&self, instance: &InstanceSpec<'_>) -> Result<(), BackendError>;

    /// Creates credentials for one binding. Run again, it may return new credentials:
    /// only the last ones returned are handed out.
    async fn bind(&self, binding: &BindingSpec<'_>) -> Result<Credentials, BackendError>;

    /// Revokes one binding's credentials without disturbing other bindings. Idempotent.
    async fn unbind(&self, binding: &BindingSpec<'_>) -> Result<(), BackendError>;
}

/// A limit a plan's backend settings put on instance parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParameterBound {
    /// Only these parameters are accepted (none when empty).
    Only(Vec<String>),
    /// An integer parameter from `minimum` to `maximum`.
    Integer {
        /// The parameter.
        name: String,
        /// Smallest value.
        minimum: i64,
        /// Largest value.
        maximum: i64,
    },
    /// A list parameter whose items must be among `allowed`.
    ItemsOneOf {
        /// The parameter.
        name: String,
        /// The values an item may take.
        allowed: Vec<String>,
    },
}

/// Checks instance parameters against bounds; the error names the parameter and the
/// limit. Values of the wrong type are left to the plan's schema.
pub fn check_parameter_bounds(
    bounds: &[ParameterBound],
    parameters: &Map<String, Value>,
) -> Result<(), String> {
    for bound in bounds {
        match bound {
            ParameterBound::Only(names) => {
                if let Some(key) = parameters.keys().find(|k| !names.contains(k)) {
                    return Err(if names.is_empty() {
                        format!("parameters.{key}: this plan takes no parameters")
                    } else {
                        format!(
                            "parameters.{key}: this plan takes only {}",
                            names.join(", ")
                        )
                    });
                }
            }
            ParameterBound::Integer {
                name,
                minimum,
                maximum,
            } => {
                let Some(n) = parameters.get(name).and_then(Value::as_i64) else {
                    continue;
                };
                if n > *maximum {
                    return Err(format!(
                        "parameters.{name}: {n} is more than this plan allows (at most {maximum})"
                    ));
                }
                if n < *minimum {
                    return Err(format!(
                        "parameters.{name}: {n} is less than this plan allows (at least {minimum})"
                    ));
                }
            }
            ParameterBound::ItemsOneOf { name, allowed } => {
                let Some(items) = parameters.get(name).and_then(Value::as_array) else {
                    continue;
                };
                for item in items {
                    if !item
                        .as_str()
                        .is_some_and(|s| allowed.iter().any(|a| a == s))
                    {
                        return Err(format!(
                            "parameters.{name}: {item} is not available in this plan (available: {})",
                            allowed.join(", ")
                        ));
                    }
                }
            }
        }
    }
    Ok(())
}

/// The parameter bounds of the built-in kinds, for checking a catalog whose kinds
/// have no server configured (so no backend instance to ask).
pub fn builtin_parameter_bounds(kind: &str, settings: &Value) -> Vec<ParameterBound> {
    match kind {
        "postgresql" => postgres::parameter_bounds(settings),
        "mariadb" => mariadb::parameter_bounds(),
        _ => Vec::new(),
    }
}

/// Checks a plan's settings for a kind that is known but has no server configured.
pub type SettingsChecker = fn(&Value) -> Vec<String>;

#[derive(Debug, Clone)]
enum Entry {
    Ready(Arc<dyn ServiceBackend>),
    Unconfigured {
        checker: SettingsChecker,
        reason: String,
    },
}

/// Maps the backend kinds named in `catalog.yaml` to implementations.
#[derive(Debug, Clone, Default)]
pub struct BackendRegistry {
    entries: HashMap<String, Entry>,
}

/// What the registry knows about a kind.
#[derive(Debug, Clone)]
pub enum KindStatus {
    /// Registered and usable.
    Ready(Arc<dyn ServiceBackend>),
    /// Known, but its server is not configured: plans of this kind are not served.
    Unconfigured {
        /// Validates settings all the same, so `check-catalog` catches mistakes.
        checker: SettingsChecker,
        /// Why it is not usable (shown in the start-up warning).
        reason: String,
    },
    /// No such kind.
    Unknown,
}

impl BackendRegistry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers (or replaces) the implementation of `kind`.
    pub fn register(&mut self, kind: &str, backend: Arc<dyn ServiceBackend>) -> &mut Self {
        self.entries.insert(kind.to_owned(), Entry::Ready(backend));
        self
    }

    /// Declares `kind` as known but not usable here, e.g. because no admin
    /// connection is configured for its server.
    pub fn declare_unconfigured(
        &mut self,
        kind: &str,
        checker: SettingsChecker,
        reason: impl Into<String>,
    ) -> &mut Self {
        self.entries.insert(
            kind.to_owned(),
            Entry::Unconfigured {
                checker,
                reason: reason.into(),
            },
        );
        self
    }

    /// The status of `kind`.
    pub fn status(&self, kind: &str) -> KindStatus {
        match self.entries.get(kind) {
            Some(Entry::Ready(b)) => KindStatus::Ready(b.clone()),
            Some(Entry::Unconfigured { checker, reason }) => KindStatus::Unconfigured {
                checker: *checker,
                reason: reason.clone(),
            },
            None => KindStatus::Unknown,
        }
    }

    /// The usable implementation of `kind`, if any.
    pub fn get(&self, kind: &str) -> Option<Arc<dyn ServiceBackend>> {
        match self.entries.get(kind) {
            Some(Entry::Ready(b)) => Some(b.clone()),
            _ => None,
        }
    }

    /// Every kind the registry knows, sorted, for error messages.
    pub fn kinds(&self) -> Vec<String> {
        let mut kinds: Vec<String> = self.entries.keys().cloned().collect();
        kinds.sort();
        kinds
    }
}
