//! What a run starts from: the catalog it serves, the plan it uses, the machine it runs on.

use anyhow::{Context as _, bail};
use serde_json::Value;
use sqlx::PgPool;

use crate::CATALOG;

/// The catalog bindery ships, with every backend kind served by the no-op backend.
pub(super) fn noop_catalog(text: &str) -> String {
    text.lines()
        .map(|line| {
            let trimmed = line.trim_start();
            if trimmed.starts_with("kind:") {
                format!("{}kind: noop", &line[..line.len() - trimmed.len()])
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first bindable plan of the first bindable service, and parameters for it.
pub(super) fn pick_plan() -> anyhow::Result<(String, String, Value)> {
    let catalog: Value = serde_yaml::from_str(CATALOG).context("catalog.yaml")?;
    let services = catalog["services"].as_array().context("no services")?;
    for service in services {
        if service["bindable"] != Value::Bool(true) {
            continue;
        }
        for plan in service["plans"].as_array().into_iter().flatten() {
            if plan["bindable"] == Value::Bool(false)
                || plan["requires_app"] == Value::Bool(true)
                || plan["asynchronous"]
                    .as_str()
                    .is_some_and(|a| a != "optional")
            {
                continue;
            }
            let create = &plan["schemas"]["service_instance"]["create"]["parameters"];
            let parameters = if create["properties"]["connection_limit"].is_object() {
                serde_json::json!({"connection_limit": 5})
            } else {
                serde_json::json!({})
            };
            let id = |v: &Value| v.as_str().map(str::to_owned).context("an id");
            return Ok((id(&service["id"])?, id(&plan["id"])?, parameters));
        }
    }
    bail!("catalog.yaml has no bindable plan")
}

pub(super) async fn facts(admin: &PgPool) -> String {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let cpuinfo = read("/proc/cpuinfo");
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let mem_kib: u64 = read("/proc/meminfo")
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|r| r.split_whitespace().next()?.parse().ok())
        .unwrap_or(0);
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let loadavg = read("/proc/loadavg");
    let load: Vec<&str> = loadavg.split_whitespace().take(3).collect();
    let version: String = sqlx::query_scalar("select version()")
        .fetch_one(admin)
        .await
        .unwrap_or_default();
    let mut settings = Vec::new();
    for name in [
        "shared_buffers",
        "synchronous_commit",
        "fsync",
        "max_connections",
    ] {
        let value: String = sqlx::query_scalar(&format!("show {name}"))
            .fetch_one(admin)
            .await
            .unwrap_or_default();
        settings.push(format!("{name}={value}"));
    }
    format!(
        "- machine: {cores} cores ({model}), {:.1} GiB memory, Linux {}; load average at start {}\n- PostgreSQL: {} ({}), same machine\n- load generator: this process, 2 tokio worker threads, reqwest over keep-alive HTTP/1.1",
        mem_kib as f64 / 1024.0 / 1024.0,
        read("/proc/sys/kernel/osrelease").trim(),
        load.join(" "),
        version.split(" on ").next().unwrap_or(&version),
        settings.join(", ")
    )
}
