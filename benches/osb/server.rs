//! The server role: bindery with a no-op backend registered through the public API. The
//! driver starts this binary again with `BINDERY_BENCH_ROLE=server` to get it.

use std::io::{Read as _, Write as _};
use std::sync::Arc;

use async_trait::async_trait;
use bindery::backends::{
    BackendError, BackendRegistry, BindingSpec, Credentials, Facts, InstanceSpec, ServiceBackend,
    UpdateSpec,
};
use bindery::config::Settings;
use bindery::startup::Application;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::PORT_LINE;

/// A backend that does nothing and always succeeds; binds return fixed credentials.
#[derive(Debug)]
struct NoopBackend;

#[async_trait]
impl ServiceBackend for NoopBackend {
    fn check_plan_settings(&self, _settings: &Value) -> Vec<String> {
        Vec::new()
    }

    async fn provision(&self, _instance: &InstanceSpec<'_>) -> Result<Facts, BackendError> {
        Ok(None)
    }

    async fn update(&self, _change: &UpdateSpec<'_>) -> Result<Facts, BackendError> {
        Ok(None)
    }

    async fn deprovision(&self, _instance: &InstanceSpec<'_>) -> Result<(), BackendError> {
        Ok(())
    }

    async fn bind(&self, _binding: &BindingSpec<'_>) -> Result<Credentials, BackendError> {
        Ok(Credentials::default()
            .with("uri", "noop://bench-user:bench-secret@noop.invalid:1/bench")
            .with("username", "bench-user")
            .with("password", "bench-secret"))
    }

    async fn unbind(&self, _binding: &BindingSpec<'_>) -> Result<(), BackendError> {
        Ok(())
    }
}

pub(crate) async fn serve() -> anyhow::Result<()> {
    let settings = Settings::load(None)?;
    init_logging(&settings.log.filter, &settings.log.format);
    let mut registry = BackendRegistry::new();
    registry.register("noop", Arc::new(NoopBackend));
    let app = Application::build(&settings, registry).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{PORT_LINE}{}", app.port())?;
        out.flush()?;
    }
    // Stop when the driver closes our stdin (or dies).
    let stop = CancellationToken::new();
    let on_eof = stop.clone();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        on_eof.cancel();
    });
    app.run_until_stopped(stop, true).await
}

/// `bindery::telemetry::init`, writing to stderr (stdout carries the port).
fn init_logging(filter: &str, format: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_new(filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr);
    let _ = if format == "json" {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
