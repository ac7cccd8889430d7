//! Prometheus metrics: requests by route and status with latency, operations by kind
//! and outcome, backend call latency and errors by backend kind, and the queue (depth,
//! age of the oldest pending operation) read from the database at scrape time.
//!
//! Labels are bounded: the route template (never a path with ids), the method, the
//! status, operation kinds and backend kinds. No id and no secret is ever a label.

use std::sync::OnceLock;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

use super::AppState;

/// Latency buckets in seconds: most requests take one database round trip.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// One metric family bindery exports.
#[derive(Debug, Clone, Copy)]
pub struct Family {
    /// The family's name.
    pub name: &'static str,
    /// `counter`, `gauge` or `histogram`.
    pub kind: &'static str,
    /// Its label names (all bounded; see the module comment).
    pub labels: &'static [&'static str],
    /// The `# HELP` text.
    pub help: &'static str,
}

/// Every family bindery exports. Each is announced (`# HELP`, `# TYPE`) from start-up,
/// and the unlabelled counters start at zero, so that an alert on one of them works
/// before its first event (a missing series is not a zero to Prometheus).
/// docs/operations.md lists the same families; a test compares them.
pub const FAMILIES: &[Family] = &[
    Family {
        name: "bindery_http_requests_total",
        kind: "counter",
        labels: &["route", "method", "status"],
        help: "HTTP requests answered, by route template, method and status",
    },
    Family {
        name: "bindery_http_request_duration_seconds",
        kind: "histogram",
        labels: &["route", "method"],
        help: "time to answer an HTTP request, by route template and method",
    },
    Family {
        name: "bindery_operations_total",
        kind: "counter",
        labels: &["kind", "state"],
        help: "operation outcomes (succeeded, failed, retrying) by operation kind",
    },
    Family {
        name: "bindery_backend_call_duration_seconds",
        kind: "histogram",
        labels: &["backend", "action"],
        help: "time a backend call took, by backend kind and action",
    },
    Family {
        name: "bindery_backend_errors_total",
        kind: "counter",
        labels: &["backend", "action", "error"],
        help: "backend calls that failed, by backend kind, action and error (unavailable, failed or rejected)",
    },
    Family {
        name: "bindery_backend_healthy",
        kind: "gauge",
        labels: &["service", "plan"],
        help: "1 while the plan's service answers its backend's health check (exec adapters), else 0",
    },
    Family {
        name: "bindery_audit_events_lost_total",
        kind: "counter",
        labels: &[],
        help: "audit events that could not be written",
    },
    Family {
        name: "bindery_operations_pending",
        kind: "gauge",
        labels: &[],
        help: "operations in progress or waiting to run (read from the state database at scrape time)",
    },
    Family {
        name: "bindery_oldest_pending_operation_age_seconds",
        kind: "gauge",
        labels: &[],
        help: "age of the oldest pending operation",
    },
    Family {
        name: "bindery_state_database_up",
        kind: "gauge",
        labels: &[],
        help: "1 when the state database answered the scrape's query, else 0",
    },
];

/// Describes every family and starts the unlabelled counters at zero.
fn announce() {
    for family in FAMILIES {
        match family.kind {
            "counter" => {
                metrics::describe_counter!(family.name, family.help);
                if family.labels.is_empty() {
                    metrics::counter!(family.name).increment(0);
                }
            }
            "gauge" => metrics::describe_gauge!(family.name, family.help),
            _ => metrics::describe_histogram!(family.name, family.help),
        }
    }
}

/// The process-wide recorder (the `metrics` facade allows one).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets(BUCKETS)
            .expect("bucket list is not empty")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may be installed already (an embedding application); then
        // this handle renders nothing, which is harmless.
        let _ = metrics::set_global_recorder(recorder);
        announce();
        handle
    })
}

/// Middleware: counts and times every request by its route template.
pub async fn track(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".to_owned());
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    let status = response.status().as_u16().to_string();
    metrics::counter!("bindery_http_requests_total", "route" => route.clone(), "method" => method.clone(), "status" => status)
        .increment(1);
    metrics::histogram!("bindery_http_request_duration_seconds", "route" => route, "method" => method)
        .record(started.elapsed().as_secs_f64());
    response
}

/// `GET /metrics`: the Prometheus text format.
pub async fn render(State(state): State<AppState>) -> Response {
    match state.broker.store().queue_stats().await {
        Ok((depth, oldest)) => {
            metrics::gauge!("bindery_operations_pending").set(depth as f64);
            metrics::gauge!("bindery_oldest_pending_operation_age_seconds").set(oldest);
            metrics::gauge!("bindery_state_database_up").set(1.0);
        }
        Err(_) => metrics::gauge!("bindery_state_database_up").set(0.0),
    }
    let mut text = handle().render();
    // A labelled family has no series before its first event; the exporter then
    // prints nothing for it. Announce it all the same, so dashboards and alerts see
    // every family from start-up.
    for family in FAMILIES {
        if !text.contains(&format!("# TYPE {} ", family.name)) {
            text.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n\n",
                name = family.name,
                help = family.help,
                kind = family.kind
            ));
        }
    }
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}
