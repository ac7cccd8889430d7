//! The messages of the adapter contract `bindery.adapter/v1` (docs/adapters.md): the
//! request bindery writes to an adapter's stdin and the one result it reads from its
//! stdout, checked against the JSON Schemas in `adapters/schema/`.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use serde_json::{Map, Value, json};

use crate::backends::{BackendError, BindingSpec, Credentials, Facts, InstanceSpec, UpdateSpec};

/// The contract's name and version, in every request and every response.
pub const CONTRACT: &str = "bindery.adapter/v1";

/// The JSON Schema of a request.
pub const REQUEST_SCHEMA: &str = include_str!("../../../adapters/schema/request.json");
/// The JSON Schema of a response.
pub const RESPONSE_SCHEMA: &str = include_str!("../../../adapters/schema/response.json");

/// One backend action.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Create the instance's resources.
    Provision,
    /// Apply a plan or parameter change.
    Update,
    /// Remove the instance's resources.
    Deprovision,
    /// Create a binding's credentials.
    Bind,
    /// Revoke a binding's credentials.
    Unbind,
    /// Say whether the managed service is reachable.
    Health,
}

impl Action {
    /// The action's name in a request.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provision => "provision",
            Self::Update => "update",
            Self::Deprovision => "deprovision",
            Self::Bind => "bind",
            Self::Unbind => "unbind",
            Self::Health => "health",
        }
    }
}

/// The instance as a request carries it; `context` and `facts` only when there are any.
fn instance_json(instance: &InstanceSpec<'_>) -> Value {
    let mut entry = json!({
        "id": instance.instance_id,
        "service_id": instance.service_id,
        "plan_id": instance.plan_id,
        "parameters": instance.parameters,
    });
    if let Some(context) = instance.context.filter(|c| c.is_object()) {
        entry["context"] = context.clone();
    }
    if let Some(facts) = instance.facts.filter(|f| f.is_object()) {
        entry["facts"] = facts.clone();
    }
    entry
}

/// A request without its instance, binding or previous values.
pub fn base_request(
    action: Action,
    config: &Value,
    secrets: &BTreeMap<String, String>,
) -> Map<String, Value> {
    let mut request = Map::new();
    request.insert("contract".into(), json!(CONTRACT));
    request.insert("action".into(), json!(action.as_str()));
    request.insert("settings".into(), config.clone());
    request.insert("secrets".into(), json!(secrets));
    request
}

/// Adds the instance (provision, deprovision).
pub fn with_instance(
    mut request: Map<String, Value>,
    instance: &InstanceSpec<'_>,
) -> Map<String, Value> {
    request.insert("instance".into(), instance_json(instance));
    request
}

/// Adds the instance and its previous settings and parameters (update); the
/// previous settings are the plan's previous `config`.
pub fn with_update(
    request: Map<String, Value>,
    change: &UpdateSpec<'_>,
    previous_config: &Value,
) -> Map<String, Value> {
    let mut request = with_instance(request, &change.target);
    request.insert(
        "previous".into(),
        json!({"settings": previous_config, "parameters": change.previous_parameters}),
    );
    request
}

/// Adds the instance and the binding (bind with its password, unbind without).
pub fn with_binding(
    request: Map<String, Value>,
    binding: &BindingSpec<'_>,
    password: Option<&str>,
) -> Map<String, Value> {
    let mut request = with_instance(request, &binding.instance);
    let mut entry = json!({"id": binding.binding_id, "parameters": binding.parameters});
    if let Some(password) = password {
        entry["password"] = json!(password);
    }
    request.insert("binding".into(), entry);
    request
}

static RESPONSE_VALIDATOR: LazyLock<jsonschema::Validator> = LazyLock::new(|| {
    let schema: Value = serde_json::from_str(RESPONSE_SCHEMA).expect("response schema is JSON");
    jsonschema::draft7::new(&schema).expect("response schema compiles")
});

/// Why a response breaks the contract, for the log and for adapter-check; `None`
/// when it is valid.
pub fn response_violation(stdout: &[u8]) -> Result<Value, String> {
    let text = std::str::from_utf8(stdout).map_err(|_| "stdout is not UTF-8".to_owned())?;
    let value: Value = serde_json::from_str(text.trim())
        .map_err(|e| format!("stdout is not one JSON document: {e}"))?;
    let errors: Vec<String> = RESPONSE_VALIDATOR
        .iter_errors(&value)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    if errors.is_empty() {
        Ok(value)
    } else {
        Err(format!(
            "response does not match {CONTRACT}: {}",
            errors.join("; ")
        ))
    }
}

/// What a successful response carries.
#[derive(Debug, Default, PartialEq)]
pub struct Answer {
    /// A bind's credentials.
    pub credentials: Option<Credentials>,
    /// A provision's or update's facts about the instance.
    pub facts: Facts,
}

/// What a valid response says: success (with credentials, for a bind, and facts, for a
/// provision or update) or an error of the adapter's class, as bindery's own error kinds.
pub fn outcome(response: &Value) -> Result<Answer, BackendError> {
    if response["status"] == "ok" {
        let credentials = response
            .get("credentials")
            .and_then(Value::as_object)
            .map(|c| {
                Credentials(
                    c.iter()
                        .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                        .collect(),
                )
            });
        let facts = response.get("facts").and_then(Value::as_object).cloned();
        return Ok(Answer { credentials, facts });
    }
    let description = response["error"]["description"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    Err(match response["error"]["class"].as_str() {
        // Only a temporary error is retried. A user's mistake is a 400 when the
        // platform waits for the answer, else the failed operation's description (it
        // is written for the platform's user).
        Some("temporary") => BackendError::Unavailable(description),
        Some("user") => BackendError::Rejected(description),
        _ => BackendError::Failed(description),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_map_onto_backend_errors() {
        let ok = response_violation(br#"{"contract":"bindery.adapter/v1","status":"ok"}"#).unwrap();
        assert_eq!(outcome(&ok), Ok(Answer::default()));
        let facts = response_violation(
            br#"{"contract":"bindery.adapter/v1","status":"ok","facts":{"cluster":"c-7"}}"#,
        )
        .unwrap();
        assert_eq!(
            outcome(&facts).unwrap().facts,
            json!({"cluster": "c-7"}).as_object().cloned()
        );
        let temporary = response_violation(
            br#"{"contract":"bindery.adapter/v1","status":"error","error":{"class":"temporary","description":"busy"}}"#,
        )
        .unwrap();
        assert_eq!(
            outcome(&temporary),
            Err(BackendError::Unavailable("busy".into()))
        );
        let user = json!({"status":"error","error":{"class":"user","description":"bad size"}});
        assert_eq!(
            outcome(&user),
            Err(BackendError::Rejected("bad size".into()))
        );
        let permanent =
            json!({"status":"error","error":{"class":"permanent","description":"gone"}});
        assert_eq!(
            outcome(&permanent),
            Err(BackendError::Failed("gone".into()))
        );
    }

    fn request_validator() -> jsonschema::Validator {
        jsonschema::draft7::new(&serde_json::from_str(REQUEST_SCHEMA).unwrap()).unwrap()
    }

    #[test]
    fn every_request_bindery_writes_matches_the_request_schema() {
        let validator = request_validator();
        let settings = json!({"command": "/bin/true"});
        let parameters = json!({"size": 3}).as_object().unwrap().clone();
        let context = json!({"platform": "kubernetes", "namespace": "apps"});
        let facts = json!({"cluster": "c-7"});
        let instance = InstanceSpec {
            instance_id: "i-1",
            service_id: "s",
            plan_id: "p",
            plan_settings: &settings,
            parameters: &parameters,
            context: Some(&context),
            facts: Some(&facts),
        };
        let bare = InstanceSpec {
            context: None,
            facts: None,
            ..instance
        };
        let password = secrecy::SecretString::from("a".repeat(32));
        let binding = BindingSpec {
            instance,
            binding_id: "b-1",
            parameters: &parameters,
            password: &password,
        };
        let change = UpdateSpec {
            target: instance,
            previous_plan_settings: &settings,
            previous_parameters: &parameters,
        };
        let secrets = BTreeMap::from([("admin".to_owned(), "x".to_owned())]);
        let config = json!({"prefix": "apps"});
        let base = |action| base_request(action, &config, &secrets);
        let requests = [
            base(Action::Health),
            with_instance(base(Action::Provision), &bare),
            with_instance(base(Action::Provision), &instance),
            with_instance(base(Action::Deprovision), &instance),
            with_update(base(Action::Update), &change, &config),
            with_binding(base(Action::Bind), &binding, Some(&"a".repeat(32))),
            with_binding(base(Action::Unbind), &binding, None),
        ];
        for request in requests {
            let request = Value::Object(request);
            let errors: Vec<String> = validator
                .iter_errors(&request)
                .map(|e| e.to_string())
                .collect();
            assert!(errors.is_empty(), "{request}: {errors:?}");
        }
    }

    #[test]
    fn the_schemas_refuse_what_the_contract_forbids() {
        let validator = request_validator();
        // A bind without the binding's password, an update without previous values.
        for bad in [
            json!({"contract": CONTRACT, "action": "bind", "settings": {}, "secrets": {},
                   "instance": {"id": "i", "service_id": "s", "plan_id": "p", "parameters": {}},
                   "binding": {"id": "b", "parameters": {}}}),
            json!({"contract": CONTRACT, "action": "update", "settings": {}, "secrets": {},
                   "instance": {"id": "i", "service_id": "s", "plan_id": "p", "parameters": {}}}),
            json!({"contract": "bindery.adapter/v0", "action": "health", "settings": {}, "secrets": {}}),
        ] {
            assert!(!validator.is_valid(&bad), "{bad}");
        }
        for bad in [
            json!({"contract": CONTRACT, "status": "error", "error": {"class": "fatal", "description": "x"}}),
            json!({"contract": CONTRACT, "status": "ok", "error": {"class": "user", "description": "x"}}),
            json!({"contract": CONTRACT, "status": "error"}),
        ] {
            assert!(!RESPONSE_VALIDATOR.is_valid(&bad), "{bad}");
        }
    }

    #[test]
    fn violations_are_named() {
        assert!(
            response_violation(b"hello")
                .unwrap_err()
                .contains("not one JSON")
        );
        let e = response_violation(
            br#"{"contract":"bindery.adapter/v1","status":"ok","credentials":{"a":1}}"#,
        )
        .unwrap_err();
        assert!(e.contains("does not match"), "{e}");
        assert!(response_violation(br#"{"contract":"v0","status":"ok"}"#).is_err());
    }
}
