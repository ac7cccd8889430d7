//! `/metrics` after a lifecycle: the counters move, and no id reaches a label.

use reqwest::Method;

use crate::helpers::*;

fn value(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_lifecycle_moves_the_counters_and_labels_stay_bounded() {
    let app = TestApp::spawn().await;
    let scrape = || async {
        app.send_with(Method::GET, "/metrics", None, &[], false)
            .await
            .raw
    };
    let before = scrape().await;
    let id = new_id();
    let b = new_id();
    app.provision_async(&id, provision_body("svc-db", "plan-small"))
        .await;
    app.wait_for_operation(&id, "").await;
    app.bind(&id, &b, bind_body("svc-db", "plan-small")).await;
    app.provision(&new_id(), provision_body("svc-db", "plan-failing"))
        .await;
    let after = scrape().await;

    let route = "route=\"/v2/service_instances/{instance_id}\"";
    assert!(
        value(
            &after,
            "bindery_http_requests_total",
            &[route, "method=\"PUT\"", "status=\"202\""]
        ) > value(
            &before,
            "bindery_http_requests_total",
            &[route, "method=\"PUT\"", "status=\"202\""]
        )
    );
    assert!(
        value(
            &after,
            "bindery_http_requests_total",
            &[route, "status=\"502\""]
        ) >= 1.0
    );
    assert!(
        value(
            &after,
            "bindery_operations_total",
            &["kind=\"provision\"", "state=\"succeeded\""]
        ) >= 1.0
    );
    assert!(
        value(
            &after,
            "bindery_operations_total",
            &["kind=\"bind\"", "state=\"succeeded\""]
        ) >= 1.0
    );
    assert!(
        value(
            &after,
            "bindery_operations_total",
            &["kind=\"provision\"", "state=\"failed\""]
        ) >= 1.0
    );
    assert!(
        value(
            &after,
            "bindery_backend_errors_total",
            &["backend=\"recording\"", "error=\"failed\""]
        ) >= 1.0
    );
    assert!(
        value(
            &after,
            "bindery_backend_call_duration_seconds_count",
            &["backend=\"recording\""]
        ) >= 3.0
    );
    assert!(after.contains("bindery_http_request_duration_seconds_bucket"));
    assert!(after.contains("bindery_operations_pending 0"), "{after}");
    assert!(after.contains("bindery_state_database_up 1"));
    assert!(
        !after.contains(&id) && !after.contains(&b),
        "no id in a label"
    );
    assert!(!after.contains(PASSWORD));
}

#[tokio::test]
async fn metrics_can_have_a_listener_of_their_own() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = TestApp::spawn_with(Spawn {
        env: vec![("BINDERY_METRICS_LISTEN".into(), format!("127.0.0.1:{port}"))],
        ..Spawn::default()
    })
    .await;
    app.catalog().await;
    let on_api = app
        .send_with(Method::GET, "/metrics", None, &[], false)
        .await;
    assert_eq!(
        on_api.status,
        reqwest::StatusCode::NOT_FOUND,
        "not on the API port"
    );
    let separate = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    assert_eq!(separate.status(), reqwest::StatusCode::OK);
    assert!(
        separate
            .text()
            .await
            .unwrap()
            .contains("bindery_http_requests_total")
    );
}

/// (type, labels) of every family in the table of docs/operations.md.
fn documented_families() -> std::collections::BTreeMap<String, (String, Vec<String>)> {
    let doc = include_str!("../../docs/operations.md");
    doc.lines()
        .filter(|l| l.starts_with("| `bindery_"))
        .map(|l| {
            let cells: Vec<&str> = l.split('|').map(str::trim).collect();
            let labels = cells[3]
                .split(',')
                .map(|c| c.trim().trim_matches('`').to_owned())
                .filter(|c| !c.is_empty())
                .collect();
            (
                cells[1].trim_matches('`').to_owned(),
                (cells[2].to_owned(), labels),
            )
        })
        .collect()
}

/// Every metric name the code records (`counter!("…"`, `gauge!`, `histogram!`).
fn families_in_the_code() -> std::collections::BTreeSet<String> {
    fn walk(dir: &std::path::Path, names: &mut std::collections::BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(&path, names);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = std::fs::read_to_string(&path).unwrap();
                for macro_name in ["counter!(", "gauge!(", "histogram!("] {
                    for (at, _) in text.match_indices(macro_name) {
                        let rest = text[at + macro_name.len()..].trim_start();
                        if let Some(name) = rest.strip_prefix('"').and_then(|r| r.split('"').next())
                        {
                            names.insert(name.to_owned());
                        }
                    }
                }
            }
        }
    }
    let mut names = std::collections::BTreeSet::new();
    walk(
        std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/src")),
        &mut names,
    );
    names
}

#[tokio::test]
async fn every_family_is_exported_from_start_up_and_documented_with_its_labels() {
    let app = TestApp::spawn().await;
    let scrape = || async {
        app.send_with(Method::GET, "/metrics", None, &[], false)
            .await
            .raw
    };
    let fresh = scrape().await;
    let exported: std::collections::BTreeMap<String, String> = fresh
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
        .collect();
    let documented = documented_families();
    assert_eq!(
        exported.keys().collect::<Vec<_>>(),
        documented.keys().collect::<Vec<_>>(),
        "the families of a fresh broker's /metrics (left) and of docs/operations.md (right)"
    );
    for (name, kind) in &exported {
        assert_eq!(
            &documented[name].0, kind,
            "{name}: the type in docs/operations.md"
        );
        assert!(
            fresh.contains(&format!("# HELP {name} ")),
            "{name} has no HELP"
        );
    }
    for name in families_in_the_code() {
        assert!(
            exported.contains_key(&name),
            "{name} is recorded by the code but not exported from start-up (http::metrics::FAMILIES)"
        );
    }
    assert!(
        fresh
            .lines()
            .any(|l| l == "bindery_audit_events_lost_total 0"),
        "the lost-audit-events counter starts at zero:\n{fresh}"
    );

    // Once events happened, every series carries exactly the documented labels.
    let id = new_id();
    app.provision_async(&id, provision_body("svc-db", "plan-small"))
        .await;
    app.wait_for_operation(&id, "").await;
    app.bind(&id, &new_id(), bind_body("svc-db", "plan-small"))
        .await;
    app.provision(&new_id(), provision_body("svc-db", "plan-failing"))
        .await;
    let after = scrape().await;
    let mut seen = std::collections::BTreeSet::new();
    for line in after.lines().filter(|l| l.starts_with("bindery_")) {
        let series = line.rsplit_once(' ').unwrap().0;
        let (name, labels) = match series.split_once('{') {
            Some((name, labels)) => (name, labels.trim_end_matches('}')),
            None => (series, ""),
        };
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| {
                name.strip_suffix(suffix)
                    .filter(|base| documented.get(*base).is_some_and(|d| d.0 == "histogram"))
            })
            .unwrap_or(name);
        let mut names: Vec<String> = labels
            .split("\",")
            .filter_map(|pair| pair.split_once('=').map(|(k, _)| k.to_owned()))
            .filter(|k| k != "le")
            .collect();
        names.sort();
        let mut expected = documented
            .get(family)
            .unwrap_or_else(|| panic!("{family} is not in docs/operations.md"))
            .1
            .clone();
        expected.sort();
        assert_eq!(names, expected, "labels of {line}");
        seen.insert(family.to_owned());
    }
    // The health gauge has series only for plans with a health check (exec adapters):
    // exec_adapters::the_worker_checks_adapter_health_and_exports_it_per_plan has them.
    seen.insert("bindery_backend_healthy".to_owned());
    assert_eq!(
        seen.len(),
        documented.len(),
        "every family has a series now: {seen:?}"
    );
}
