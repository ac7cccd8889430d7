//! What each setting accepts, and the one-line refusal when a value does not fit.
//!
//! A bad value must stop the broker with one line that names the setting (its variable
//! and its file key) and the accepted form, never a parser's message alone ("invalid
//! socket address syntax", "expected u16"), and never the value itself: it may be a
//! secret. Numeric bounds refuse values that cannot work (a 10-byte header limit
//! answers every request 431); docs/configuration.md states each bound, and a test
//! checks it does.

use serde_json::{Map, Value};

use super::ENVIRONMENT;
use crate::osb::ApiVersion;

/// Numeric settings and their accepted range (inclusive), by file key.
pub(super) const BOUNDS: &[(&str, u64, u64)] = &[
    ("max_body_bytes", 1024, u32::MAX as u64),
    ("max_header_bytes", 1024, u32::MAX as u64),
    ("request_timeout_seconds", 1, 86_400),
    ("max_concurrent_requests", 1, u32::MAX as u64),
    ("header_read_timeout_seconds", 1, 86_400),
    ("idle_timeout_seconds", 1, 86_400),
    ("min_body_bytes_per_second", 1, u32::MAX as u64),
    ("database_max_connections", 1, u32::MAX as u64),
    ("worker.concurrency", 1, 100_000),
    ("worker.lease_seconds", 3, 86_400),
    ("worker.liveness_seconds", 2, 86_400),
    ("worker.shutdown_grace_seconds", 0, 86_400),
    ("backends.postgresql.credentials_port", 1, 65_535),
    ("backends.mariadb.credentials_port", 1, 65_535),
    ("backends.redis.credentials_port", 1, 65_535),
    ("backends.rabbitmq.amqp_port", 1, 65_535),
];

/// The accepted form of the setting at `path` (a file key), in words.
pub(super) fn form(path: &str) -> String {
    if let Some((_, min, max)) = BOUNDS.iter().find(|(p, _, _)| *p == path) {
        return if *max >= u64::from(u32::MAX) {
            format!("a whole number, at least {min}")
        } else {
            format!("a whole number from {min} to {max}")
        };
    }
    match path {
        "listen" | "metrics_listen" => {
            "an IP address and port, e.g. 0.0.0.0:8080 or [::]:8080 (port 0: any free port)".into()
        }
        "min_api_version" => format!(
            "an OSB API version from 2.13 to {}.{}",
            ApiVersion::V2_17.major,
            ApiVersion::V2_17.minor
        ),
        "log.format" => "text or json".into(),
        "log.filter" => "a tracing filter, e.g. info or bindery=debug,info".into(),
        _ => "a text value".into(),
    }
}

/// The refusal of the setting at `path`: `BINDERY_X (file key x) must be <form>`.
pub(super) fn refusal(path: &str) -> String {
    let path = path.trim_start_matches('.');
    match ENVIRONMENT.iter().find(|v| v.path == path) {
        Some(var) => format!("{} ({}) must be {}", var.name, path, form(path)),
        None => format!("the setting {path} is not valid: it must be {}", form(path)),
    }
}

/// Checks every bounded number present in the merged settings document.
pub(super) fn check_bounds(document: &Map<String, Value>) -> Result<(), String> {
    for (path, min, max) in BOUNDS {
        let mut value = Some(document);
        let mut parts = path.split('.').peekable();
        while let Some(part) = parts.next() {
            let Some(map) = value else { break };
            if parts.peek().is_none() {
                if let Some(v) = map.get(part)
                    && !v.as_u64().is_some_and(|n| (*min..=*max).contains(&n))
                {
                    return Err(refusal(path));
                }
                break;
            }
            value = map.get(part).and_then(Value::as_object);
        }
    }
    Ok(())
}

/// The lowest API version setting: a 2.x version bindery serves.
pub(super) fn check_min_api_version(raw: &str) -> Result<(), String> {
    match raw.parse::<ApiVersion>() {
        Ok(v) if v.major == 2 && v >= ApiVersion::V2_13 && v <= ApiVersion::V2_17 => Ok(()),
        _ => Err(refusal("min_api_version")),
    }
}
