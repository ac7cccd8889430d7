//! `bindery adapter-check`: runs a complete lifecycle against an adapter (health,
//! provision, bind twice, unbind, update, deprovision, each repeated, and requests it
//! must refuse) and reports which rules of the contract (docs/adapters.md) it breaks.
//! It talks to the adapter exactly as the `exec` backend does, on a fresh instance id.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use super::process::{self, RunError};
use super::protocol::{
    Action, Answer, base_request, outcome, response_violation, with_binding, with_instance,
    with_update,
};
use super::settings::AdapterSettings;
use crate::backends::{BackendError, BindingSpec, Credentials, InstanceSpec, UpdateSpec};

/// One rule checked, and what broke it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// The rule, as a sentence.
    pub rule: String,
    /// `None` when kept; otherwise what the adapter did.
    pub broken: Option<String>,
}

/// Every rule checked, in order.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// The findings.
    pub findings: Vec<Finding>,
}

impl Report {
    /// Whether every rule was kept.
    pub fn passed(&self) -> bool {
        self.findings.iter().all(|f| f.broken.is_none())
    }

    /// One line per rule: `ok   rule` or `FAIL rule: what happened`.
    pub fn render(&self) -> String {
        self.findings
            .iter()
            .map(|f| match &f.broken {
                None => format!("ok   {}\n", f.rule),
                Some(why) => format!("FAIL {}: {why}\n", f.rule),
            })
            .collect()
    }

    fn record(&mut self, rule: &str, broken: Option<String>) {
        self.findings.push(Finding {
            rule: rule.to_owned(),
            broken,
        });
    }
}

/// What one call returned: success (with credentials) or the adapter's error, or a
/// broken rule of the contract.
type CallResult = Result<Result<Answer, BackendError>, String>;

struct Checker<'a> {
    settings: &'a AdapterSettings,
    secrets: BTreeMap<String, String>,
    report: Report,
}

impl Checker<'_> {
    fn request(&self, action: Action) -> Map<String, Value> {
        base_request(action, &self.settings.config, &self.secrets)
    }

    async fn call(&self, request: Map<String, Value>) -> CallResult {
        let stdin = serde_json::to_vec(&Value::Object(request)).map_err(|e| e.to_string())?;
        let finished = process::run(&self.settings.invocation(), &stdin)
            .await
            .map_err(|e| match e {
                RunError::Spawn(why) => why,
                RunError::TimedOut(limit) => format!("no result within {} s", limit.as_secs()),
                RunError::TooMuchOutput(limit) => format!("more than {limit} bytes on stdout"),
            })?;
        let response = response_violation(&finished.stdout).map_err(|why| {
            // The last line of stderr usually says why (a traceback's last line).
            let stderr = String::from_utf8_lossy(&finished.stderr);
            match stderr.lines().rev().find(|l| !l.trim().is_empty()) {
                Some(last) => format!("{why} ({}; stderr: {})", finished.status, last.trim()),
                None => format!("{why} ({})", finished.status),
            }
        })?;
        Ok(outcome(&response))
    }

    /// Calls and records `rule`: kept when the call succeeds (and, for a bind,
    /// returns credentials). Returns the credentials.
    async fn expect_ok(&mut self, rule: &str, request: Map<String, Value>) -> Option<Credentials> {
        let is_bind = request["action"] == "bind";
        let (broken, credentials) = match self.call(request).await {
            Err(why) => (Some(why), None),
            Ok(Err(error)) => (Some(format!("answered an error: {error}")), None),
            Ok(Ok(answer)) if is_bind && answer.credentials.is_none() => {
                (Some("returned no credentials".to_owned()), None)
            }
            Ok(Ok(answer)) => (None, answer.credentials),
        };
        self.report.record(rule, broken);
        credentials
    }

    /// Calls and records `rule`: kept when the adapter answers a valid error.
    async fn expect_refusal(&mut self, rule: &str, request: Map<String, Value>) {
        let broken = match self.call(request).await {
            Err(why) => Some(why),
            Ok(Ok(_)) => Some("answered ok".to_owned()),
            Ok(Err(BackendError::Unavailable(_))) => {
                Some("answered a temporary error, which bindery would retry".to_owned())
            }
            Ok(Err(BackendError::Failed(_) | BackendError::Rejected(_))) => None,
        };
        self.report.record(rule, broken);
    }
}

/// Runs the whole check against the adapter `settings` describe.
pub async fn check(settings: &AdapterSettings, secrets: BTreeMap<String, String>) -> Report {
    let mut checker = Checker {
        settings,
        secrets,
        report: Report::default(),
    };
    let instance_id = format!("adapter-check-{}", uuid::Uuid::new_v4());
    let no_parameters = Map::new();
    let plan_settings = Value::Null;
    // What Kubernetes Service Catalog sends; adapters must accept (and may ignore) it.
    let context = serde_json::json!({
        "platform": "kubernetes",
        "clusterid": "adapter-check-cluster",
        "namespace": "adapter-check",
    });
    let instance = InstanceSpec {
        instance_id: &instance_id,
        service_id: "adapter-check-service",
        plan_id: "adapter-check-plan",
        plan_settings: &plan_settings,
        parameters: &no_parameters,
        context: Some(&context),
        facts: None,
    };
    let (first_password, second_password) = (password(), password());
    let first_id = format!("{instance_id}-binding-1");
    let second_id = format!("{instance_id}-binding-2");
    let binding = |id, password| BindingSpec {
        instance,
        binding_id: id,
        parameters: &no_parameters,
        password,
    };
    let first = binding(&first_id, &first_password);
    let second = binding(&second_id, &second_password);
    let change = UpdateSpec {
        target: instance,
        previous_plan_settings: &plan_settings,
        previous_parameters: &no_parameters,
    };
    let c = &mut checker;
    c.expect_ok("health answers ok", c.request(Action::Health))
        .await;
    let provision = with_instance(c.request(Action::Provision), &instance);
    c.expect_ok("provision succeeds", provision.clone()).await;
    c.expect_ok("provision again succeeds (idempotent)", provision)
        .await;
    let bind = |c: &Checker<'_>, b: &BindingSpec<'_>, pw: &secrecy::SecretString| {
        use secrecy::ExposeSecret;
        with_binding(c.request(Action::Bind), b, Some(pw.expose_secret()))
    };
    let one = c
        .expect_ok("bind returns credentials", bind(c, &first, &first_password))
        .await;
    c.expect_ok(
        "bind again succeeds (idempotent)",
        bind(c, &first, &first_password),
    )
    .await;
    let two = c
        .expect_ok(
            "a second binding succeeds",
            bind(c, &second, &second_password),
        )
        .await;
    let distinct = match (&one, &two) {
        (Some(one), Some(two)) if one == two => {
            Some("two bindings got the same credentials".to_owned())
        }
        (Some(one), Some(two))
            if one.0.contains_key("password") && one.0.get("password") == two.0.get("password") =>
        {
            Some("two bindings got the same password".to_owned())
        }
        _ => None,
    };
    c.report
        .record("each binding gets its own credentials", distinct);
    let unbind = with_binding(c.request(Action::Unbind), &first, None);
    c.expect_ok("unbind succeeds", unbind.clone()).await;
    c.expect_ok("unbind again succeeds (idempotent)", unbind)
        .await;
    let update = with_update(c.request(Action::Update), &change, &settings.config);
    c.expect_ok("update succeeds", update.clone()).await;
    c.expect_ok("update again succeeds (idempotent)", update)
        .await;
    let unbind_second = with_binding(c.request(Action::Unbind), &second, None);
    c.expect_ok("unbind of the second binding succeeds", unbind_second)
        .await;
    let deprovision = with_instance(c.request(Action::Deprovision), &instance);
    c.expect_ok("deprovision succeeds", deprovision.clone())
        .await;
    c.expect_ok("deprovision again succeeds (idempotent)", deprovision)
        .await;
    bad_input(c).await;
    checker.report
}

/// Requests the contract says an adapter must refuse with a (non-temporary) error.
async fn bad_input(c: &mut Checker<'_>) {
    let mut unknown_contract = c.request(Action::Health);
    unknown_contract.insert("contract".into(), json!("bindery.adapter/v0"));
    c.expect_refusal("an unknown contract version is refused", unknown_contract)
        .await;
    let no_instance = c.request(Action::Provision);
    c.expect_refusal("a provision without an instance is refused", no_instance)
        .await;
    let mut unknown_action = c.request(Action::Health);
    unknown_action.insert("action".into(), json!("explode"));
    c.expect_refusal("an unknown action is refused", unknown_action)
        .await;
}

fn password() -> secrecy::SecretString {
    let bytes: [u8; 32] = crate::backends::common::random_salt().unwrap_or([7; 32]);
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let text: String = bytes
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect();
    secrecy::SecretString::from(text)
}

/// The settings of an adapter named on the command line.
pub fn settings_for(
    command: Vec<String>,
    config: Option<&str>,
    environment: &[String],
    timeout_seconds: u64,
) -> anyhow::Result<AdapterSettings> {
    let config: Value = match config {
        Some(text) => serde_json::from_str(text)
            .map_err(|e| anyhow::anyhow!("--settings is not JSON: {e}"))?,
        None => json!({}),
    };
    let mut env = Map::new();
    for entry in environment {
        let (key, value) = entry
            .split_once('=')
            .ok_or_else(|| anyhow::anyhow!("--env takes NAME=VALUE, not {entry:?}"))?;
        env.insert(key.to_owned(), json!(value));
    }
    AdapterSettings::parse(&json!({
        "command": command,
        "environment": env,
        "timeout_seconds": timeout_seconds,
        "config": config,
    }))
    .map_err(|problems| anyhow::anyhow!("{}", problems.join("; ")))
}
