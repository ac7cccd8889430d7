//! The `bindery-controller` binary: settings, leader election, then the controllers.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use bindery_controller::broker::parse_go_duration;
use bindery_controller::context::{self, Context, Settings};
use bindery_controller::{http, leader, run};
use clap::Parser;

/// Serves Kubernetes Service Catalog's API (servicecatalog.k8s.io/v1beta1 CRDs) against OSB brokers.
#[derive(Parser, Debug)]
#[command(version)]
struct Args {
    /// Address of /metrics and /healthz.
    #[arg(
        long,
        env = "BINDERY_CONTROLLER_METRICS_LISTEN",
        default_value = "0.0.0.0:8080"
    )]
    metrics_listen: String,
    /// Namespace of the Lease and of the ConfigMap cluster-info (the cluster id).
    #[arg(long, env = "POD_NAMESPACE", default_value = "default")]
    namespace: String,
    /// This replica's name in the Lease and in events (default: the host name and a random suffix).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    #[arg(long, default_value = "bindery-controller")]
    lease_name: String,
    /// Go duration, e.g. 15s.
    #[arg(long, default_value = "15s", value_parser = duration)]
    lease_duration: Duration,
    /// Timeout of one OSB request.
    #[arg(long, default_value = "60s", value_parser = duration)]
    osb_timeout: Duration,
    /// Longest wait between retries and polls.
    #[arg(long, default_value = "20m", value_parser = duration)]
    max_backoff: Duration,
    /// How long a provision, update or deprovision is retried before it is given up.
    #[arg(long, default_value = "168h", value_parser = duration)]
    max_retry_duration: Duration,
    /// Relist interval of a broker without relistDuration.
    #[arg(long, default_value = "15m", value_parser = duration)]
    broker_relist_interval: Duration,
}

fn duration(text: &str) -> Result<Duration, String> {
    parse_go_duration(text).ok_or_else(|| format!("{text:?} is not a duration such as 15s or 20m"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let args = Args::parse();
    let identity = args.identity.clone().unwrap_or_else(|| {
        let host = std::fs::read_to_string("/etc/hostname")
            .unwrap_or_default()
            .trim()
            .to_owned();
        format!("{host}-{}", &uuid::Uuid::new_v4().to_string()[..8])
    });
    let handle = http::install_metrics()?;
    let listener = tokio::net::TcpListener::bind(&args.metrics_listen)
        .await
        .with_context(|| format!("binding {}", args.metrics_listen))?;
    tracing::info!(address = %listener.local_addr()?, "serving /metrics and /healthz");
    tokio::spawn(http::serve(listener, handle));

    let client = kube::Client::try_default()
        .await
        .context("no Kubernetes client configuration")?;
    let elector = leader::Elector::new(
        client.clone(),
        &args.namespace,
        &args.lease_name,
        &identity,
        args.lease_duration,
    );
    tracing::info!(%identity, lease = %args.lease_name, "waiting for the lease");
    tokio::select! {
        r = elector.acquire() => r?,
        () = shutdown_signal() => return Ok(()),
    }
    tracing::info!(%identity, "leading");
    metrics::gauge!("bindery_controller_leader").set(1.0);
    let cluster_id = context::cluster_id(&client, &args.namespace).await?;
    let settings = Settings {
        osb_timeout: args.osb_timeout,
        max_backoff: args.max_backoff,
        max_retry_duration: args.max_retry_duration,
        default_relist: args.broker_relist_interval,
        identity: identity.clone(),
    };
    let ctx = Arc::new(Context::new(client, settings, cluster_id)?);
    tokio::select! {
        () = run::controllers(ctx) => anyhow::bail!("a controller stopped"),
        () = elector.hold() => {
            // Another replica may act from now on: stop at once, before it takes over.
            tracing::error!("lost the lease; exiting");
            std::process::exit(1);
        }
        () = shutdown_signal() => {
            elector.release().await;
            tracing::info!("released the lease; exiting");
            Ok(())
        }
    }
}

async fn shutdown_signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
