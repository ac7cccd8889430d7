//! The `exec` kind's plan settings: which adapter to run, with which environment,
//! secrets and limits, and the `config` handed to it.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::{Map, Value};

use super::process::{DEFAULT_PATH, Invocation};
use crate::backends::common::{settings_map, unknown_keys};

/// Default time one adapter call may take.
pub const DEFAULT_TIMEOUT_SECONDS: u64 = 60;
/// Default limit of an adapter's stdout (and of the stderr kept for the log).
pub const DEFAULT_MAX_OUTPUT_BYTES: usize = 64 * 1024;

const KNOWN: &[&str] = &[
    "command",
    "environment",
    "secrets",
    "timeout_seconds",
    "max_output_bytes",
    "config",
];

/// A plan's parsed `exec` settings.
#[derive(Debug, Clone)]
pub struct AdapterSettings {
    /// The executable and its arguments, the executable first.
    pub command: Vec<String>,
    /// Variables set for the adapter (nothing else of bindery's environment is).
    pub environment: BTreeMap<String, String>,
    /// Secrets sent in the request: request key → name of a variable of bindery's own
    /// environment holding the value (never the value itself: catalogs are not secret).
    pub secrets: BTreeMap<String, String>,
    /// Time limit of one call.
    pub timeout: Duration,
    /// Output limit of one call.
    pub max_output_bytes: usize,
    /// Handed to the adapter as `settings`, not interpreted by bindery.
    pub config: Value,
}

impl AdapterSettings {
    /// Parses a plan's settings, or lists every problem.
    pub fn parse(settings: &Value) -> Result<Self, Vec<String>> {
        let map = settings_map(settings, "exec settings must be a mapping with `command`")?;
        let mut problems = unknown_keys(map, KNOWN, "exec setting");
        let command = match map.get("command") {
            Some(Value::Array(items)) if !items.is_empty() => {
                strings(items, "command", &mut problems)
            }
            Some(Value::String(program)) if !program.is_empty() => vec![program.clone()],
            None => {
                problems
                    .push("command: required (the adapter executable and its arguments)".into());
                Vec::new()
            }
            Some(_) => {
                problems.push("command: must be a non-empty string or list of strings".into());
                Vec::new()
            }
        };
        let environment = string_map(map, "environment", &mut problems);
        let secrets = string_map(map, "secrets", &mut problems);
        let timeout_seconds = positive(
            map,
            "timeout_seconds",
            DEFAULT_TIMEOUT_SECONDS,
            &mut problems,
        );
        let max_output_bytes = positive(
            map,
            "max_output_bytes",
            DEFAULT_MAX_OUTPUT_BYTES as u64,
            &mut problems,
        );
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            command,
            environment,
            secrets,
            timeout: Duration::from_secs(timeout_seconds),
            max_output_bytes: usize::try_from(max_output_bytes).unwrap_or(usize::MAX),
            config: map
                .get("config")
                .cloned()
                .unwrap_or(Value::Object(Map::new())),
        })
    }

    /// How to run the adapter: its environment is what the settings name, plus a
    /// default `PATH` when they name none.
    pub fn invocation(&self) -> Invocation {
        let mut environment = self.environment.clone();
        environment
            .entry("PATH".to_owned())
            .or_insert_with(|| DEFAULT_PATH.to_owned());
        Invocation {
            argv: self.command.clone(),
            environment,
            timeout: self.timeout,
            max_output_bytes: self.max_output_bytes,
        }
    }

    /// The secrets' values (from bindery's environment, through `lookup`); a missing variable is the
    /// operator's mistake, named without any value.
    pub fn secret_values(
        &self,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<BTreeMap<String, String>, String> {
        self.secrets
            .iter()
            .map(|(key, variable)| match lookup(variable) {
                Some(value) => Ok((key.clone(), value)),
                None => Err(format!(
                    "The adapter's secret {key:?} is configured from the environment variable {variable}, which is not set in the broker; contact the broker operator."
                )),
            })
            .collect()
    }
}

fn strings(items: &[Value], setting: &str, problems: &mut Vec<String>) -> Vec<String> {
    items
        .iter()
        .filter_map(|item| match item {
            Value::String(s) => Some(s.clone()),
            _ => {
                problems.push(format!("{setting}: every item must be a string"));
                None
            }
        })
        .collect()
}

fn string_map(
    map: &Map<String, Value>,
    setting: &str,
    problems: &mut Vec<String>,
) -> BTreeMap<String, String> {
    match map.get(setting) {
        None => BTreeMap::new(),
        Some(Value::Object(entries)) => entries
            .iter()
            .filter_map(|(key, value)| match value {
                Value::String(s) => Some((key.clone(), s.clone())),
                _ => {
                    problems.push(format!("{setting}.{key}: must be a string"));
                    None
                }
            })
            .collect(),
        Some(_) => {
            problems.push(format!("{setting}: must be a mapping of strings"));
            BTreeMap::new()
        }
    }
}

fn positive(
    map: &Map<String, Value>,
    setting: &str,
    default: u64,
    problems: &mut Vec<String>,
) -> u64 {
    match map.get(setting) {
        None => default,
        Some(value) => match value.as_u64() {
            Some(n) if n > 0 => n,
            _ => {
                problems.push(format!("{setting}: must be a positive integer"));
                default
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn parses_and_defaults() {
        let s =
            AdapterSettings::parse(&json!({"command": ["/bin/true", "-x"], "config": {"a": 1}}))
                .unwrap();
        assert_eq!(s.command, ["/bin/true", "-x"]);
        assert_eq!(s.timeout, Duration::from_secs(DEFAULT_TIMEOUT_SECONDS));
        assert_eq!(s.config, json!({"a": 1}));
        assert_eq!(s.invocation().environment["PATH"], DEFAULT_PATH);
    }

    #[test]
    fn lists_every_problem() {
        let problems = AdapterSettings::parse(&json!({
            "environment": {"A": 1}, "timeout_seconds": 0, "colour": "red"
        }))
        .unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
    }
}
