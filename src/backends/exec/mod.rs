//! The `exec` backend kind: every action runs an out-of-process *adapter* (any
//! executable, in any language) that reads one request as JSON on stdin and writes
//! one result as JSON on stdout, following the versioned contract in
//! docs/adapters.md. bindery keeps its own guarantees around the call: durable
//! operations and retries (a temporary error is retried with backoff), encryption of
//! the credentials returned, and limits on the adapter (time, output, environment).

pub mod check;
pub mod process;
pub mod protocol;
pub mod settings;

use std::collections::BTreeMap;

use async_trait::async_trait;
use secrecy::ExposeSecret;
use serde_json::{Map, Value};

use self::process::{RunError, redact};
use self::protocol::{Action, Answer, base_request, outcome, response_violation};
use self::settings::AdapterSettings;
use super::common::{invalid_plan_settings, problems};
use super::{
    BackendError, BindingSpec, Credentials, Facts, InstanceSpec, ServiceBackend, UpdateSpec,
};

/// The backend kind name in `catalog.yaml`.
pub const KIND: &str = "exec";

/// Problems of a plan's `exec` settings (needs nothing but the settings).
pub fn check_plan_settings(settings: &Value) -> Vec<String> {
    problems(AdapterSettings::parse(settings))
}

/// Where the values of an adapter's secrets come from, given the variable a plan's
/// settings name.
pub type SecretLookup = fn(&str) -> Option<String>;

/// Runs adapters; each call starts its adapter afresh.
#[derive(Debug, Clone)]
pub struct ExecBackend {
    lookup: SecretLookup,
}

impl Default for ExecBackend {
    /// Secrets from bindery's own environment.
    fn default() -> Self {
        Self {
            lookup: |variable| std::env::var(variable).ok(),
        }
    }
}

/// A plan's settings parsed, with the secret values they name.
struct Prepared {
    settings: AdapterSettings,
    secrets: BTreeMap<String, String>,
}

impl Prepared {
    fn request(&self, action: Action) -> Map<String, Value> {
        base_request(action, &self.settings.config, &self.secrets)
    }

    /// Runs the adapter once and maps what it did onto bindery's error kinds.
    /// `also_secret`: values besides the configured secrets that must never reach
    /// the log (a binding's password).
    async fn call(
        &self,
        action: Action,
        request: Map<String, Value>,
        also_secret: &[&str],
    ) -> Result<Answer, BackendError> {
        let program = self.settings.command.first().cloned().unwrap_or_default();
        let stdin = serde_json::to_vec(&Value::Object(request))
            .map_err(|e| BackendError::Failed(format!("cannot encode the adapter request: {e}")))?;
        let finished = process::run(&self.settings.invocation(), &stdin)
            .await
            .map_err(|e| run_error(&program, action, e))?;
        let parsed = response_violation(&finished.stdout);
        let mut secrets: Vec<String> = self.secrets.values().cloned().collect();
        secrets.extend(also_secret.iter().map(|s| (*s).to_owned()));
        if let Ok(response) = &parsed
            && let Some(credentials) = response.get("credentials").and_then(Value::as_object)
        {
            secrets.extend(
                credentials
                    .values()
                    .filter_map(Value::as_str)
                    .map(str::to_owned),
            );
        }
        log_stderr(&program, action, &finished.stderr, &secrets);
        match parsed {
            Ok(response) => {
                let result = outcome(&response)?;
                if action == Action::Bind && result.credentials.is_none() {
                    tracing::warn!(adapter = %program, action = action.as_str(), "adapter bind returned no credentials");
                    return Err(contract_broken());
                }
                Ok(result)
            }
            Err(violation) if !finished.status.success() => {
                tracing::warn!(adapter = %program, action = action.as_str(), status = %finished.status, problem = %redact(&violation, &secrets), "adapter failed without a result");
                Err(BackendError::Unavailable(
                    "The service adapter stopped without a result; the broker will retry."
                        .to_owned(),
                ))
            }
            Err(violation) => {
                tracing::warn!(adapter = %program, action = action.as_str(), problem = %redact(&violation, &secrets), "adapter broke the contract");
                Err(contract_broken())
            }
        }
    }
}

fn contract_broken() -> BackendError {
    BackendError::Failed(
        "The service adapter's answer did not follow the adapter contract; contact the broker operator."
            .to_owned(),
    )
}

fn run_error(program: &str, action: Action, error: RunError) -> BackendError {
    tracing::warn!(adapter = %program, action = action.as_str(), error = ?error, "adapter call did not finish");
    match error {
        RunError::Spawn(_) => BackendError::Failed(
            "The service adapter could not be started; contact the broker operator.".to_owned(),
        ),
        RunError::TimedOut(limit) => BackendError::Unavailable(format!(
            "The service adapter did not answer within {} seconds and was stopped; the broker will retry.",
            limit.as_secs()
        )),
        RunError::TooMuchOutput(limit) => BackendError::Failed(format!(
            "The service adapter wrote more than {limit} bytes and was stopped; contact the broker operator."
        )),
    }
}

/// The adapter's stderr, one log event per line, with every secret redacted.
fn log_stderr(program: &str, action: Action, stderr: &[u8], secrets: &[String]) {
    let text = String::from_utf8_lossy(stderr);
    for line in redact(&text, secrets)
        .lines()
        .filter(|l| !l.trim().is_empty())
    {
        tracing::info!(adapter = %program, action = action.as_str(), stderr = %line, "adapter stderr");
    }
}

impl ExecBackend {
    /// Provision and deprovision: the request carries the instance and nothing else.
    async fn instance_action(
        &self,
        action: Action,
        instance: &InstanceSpec<'_>,
    ) -> Result<Answer, BackendError> {
        let prepared = self.prepare(instance.plan_settings)?;
        let request = protocol::with_instance(prepared.request(action), instance);
        prepared.call(action, request, &[]).await
    }

    /// A backend whose secrets come from `lookup` rather than the environment.
    pub fn with_secret_lookup(lookup: SecretLookup) -> Self {
        Self { lookup }
    }

    fn prepare(&self, settings: &Value) -> Result<Prepared, BackendError> {
        let settings = AdapterSettings::parse(settings)
            .map_err(|p| invalid_plan_settings("The plan's adapter settings are invalid", p))?;
        let secrets = settings
            .secret_values(self.lookup)
            .map_err(BackendError::Failed)?;
        Ok(Prepared { settings, secrets })
    }

    /// Asks the adapter of a plan whether its service is reachable.
    async fn adapter_health(&self, settings: &Value) -> Result<(), BackendError> {
        let prepared = self.prepare(settings)?;
        let request = prepared.request(Action::Health);
        prepared.call(Action::Health, request, &[]).await.map(drop)
    }
}

#[async_trait]
impl ServiceBackend for ExecBackend {
    fn check_plan_settings(&self, settings: &Value) -> Vec<String> {
        check_plan_settings(settings)
    }

    async fn health(&self, plan_settings: &Value) -> Option<Result<(), BackendError>> {
        Some(self.adapter_health(plan_settings).await)
    }

    async fn provision(&self, instance: &InstanceSpec<'_>) -> Result<Facts, BackendError> {
        let answer = self.instance_action(Action::Provision, instance).await?;
        Ok(answer.facts)
    }

    async fn update(&self, change: &UpdateSpec<'_>) -> Result<Facts, BackendError> {
        let prepared = self.prepare(change.target.plan_settings)?;
        let previous_config = AdapterSettings::parse(change.previous_plan_settings)
            .map(|s| s.config)
            .unwrap_or(Value::Object(Map::new()));
        let request =
            protocol::with_update(prepared.request(Action::Update), change, &previous_config);
        let answer = prepared.call(Action::Update, request, &[]).await?;
        Ok(answer.facts)
    }

    async fn deprovision(&self, instance: &InstanceSpec<'_>) -> Result<(), BackendError> {
        self.instance_action(Action::Deprovision, instance)
            .await
            .map(drop)
    }

    async fn bind(&self, binding: &BindingSpec<'_>) -> Result<Credentials, BackendError> {
        let prepared = self.prepare(binding.instance.plan_settings)?;
        let password = binding.password.expose_secret();
        let request =
            protocol::with_binding(prepared.request(Action::Bind), binding, Some(password));
        let answer = prepared.call(Action::Bind, request, &[password]).await?;
        Ok(answer.credentials.unwrap_or_default())
    }

    async fn unbind(&self, binding: &BindingSpec<'_>) -> Result<(), BackendError> {
        let prepared = self.prepare(binding.instance.plan_settings)?;
        let request = protocol::with_binding(prepared.request(Action::Unbind), binding, None);
        prepared.call(Action::Unbind, request, &[]).await.map(drop)
    }
}
