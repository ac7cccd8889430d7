//! The controller's own HTTP endpoint: `/metrics` (Prometheus text) and `/healthz`.

use axum::Router;
use axum::routing::get;
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Installs the metrics recorder; its handle renders `/metrics`.
pub fn install_metrics() -> anyhow::Result<PrometheusHandle> {
    let handle = PrometheusBuilder::new().install_recorder()?;
    metrics::describe_counter!(
        "bindery_controller_reconciliations_total",
        "Reconciliations by kind and result."
    );
    metrics::describe_counter!(
        "bindery_controller_osb_requests_total",
        "OSB requests by operation and HTTP status."
    );
    metrics::describe_counter!(
        "bindery_controller_catalog_syncs_total",
        "Catalog fetches by result."
    );
    metrics::describe_gauge!(
        "bindery_controller_leader",
        "1 while this replica holds the Lease."
    );
    metrics::gauge!("bindery_controller_leader").set(0.0);
    Ok(handle)
}

/// Serves the endpoint on `listener` until the process ends.
pub async fn serve(
    listener: tokio::net::TcpListener,
    handle: PrometheusHandle,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/metrics", get(move || std::future::ready(handle.render())))
        .route("/healthz", get(|| std::future::ready("ok")));
    axum::serve(listener, app).await
}
