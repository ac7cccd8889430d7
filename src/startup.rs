//! Wiring: settings and backends in, a bound listener, a broker and a worker out.
//! The caller injects the shutdown signal, so tests bind port 0 and stop at will.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context as _, bail};
use secrecy::ExposeSecret;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::backends::common::ServerConfig;
use crate::backends::mariadb::{self, MariaDbBackend};
use crate::backends::postgres::{self, PostgresBackend};
use crate::backends::rabbitmq::{self, RabbitmqBackend};
use crate::backends::redis::{self, RedisBackend};
use crate::backends::{BackendRegistry, ServiceBackend, SettingsChecker};
use crate::broker::{Broker, BrokerOptions};
use crate::catalog::load_catalog;
use crate::config::{ServerSettings, Settings};
use crate::crypto::Keyring;
use crate::http::{AppState, Authenticator, HttpOptions, MinimumVersion};
use crate::osb::ApiVersion;
use crate::store::{Store, StoreOptions};
use crate::worker::{Worker, WorkerOptions};

/// The built-in backends, registered where their server is configured and declared
/// "known but unconfigured" otherwise (their plans are then not served).
pub fn builtin_backends(settings: &Settings) -> anyhow::Result<BackendRegistry> {
    type Build = fn(ServerConfig) -> anyhow::Result<Arc<dyn ServiceBackend>>;
    let mut registry = BackendRegistry::new();
    let backends = &settings.backends;
    let servers: [(&str, &Option<ServerSettings>, SettingsChecker, &str, Build); 3] = [
        (
            "postgresql",
            &backends.postgresql,
            postgres::check_plan_settings,
            "set BINDERY_POSTGRES_ADMIN_URL",
            |config| Ok(Arc::new(PostgresBackend::new(config)?)),
        ),
        (
            "mariadb",
            &backends.mariadb,
            mariadb::check_plan_settings,
            "set BINDERY_MARIADB_ADMIN_URL",
            |config| Ok(Arc::new(MariaDbBackend::new(config)?)),
        ),
        (
            "redis",
            &backends.redis,
            redis::check_plan_settings,
            "set BINDERY_REDIS_ADMIN_URL",
            |config| Ok(Arc::new(RedisBackend::new(config)?)),
        ),
    ];
    for (kind, server, checker, how_to_configure, build) in servers {
        let config = server.as_ref().and_then(ServerSettings::backend_config);
        register(
            &mut registry,
            kind,
            checker,
            how_to_configure,
            config,
            build,
        )?;
    }
    register(
        &mut registry,
        "rabbitmq",
        rabbitmq::check_plan_settings,
        "set BINDERY_RABBITMQ_API_URL",
        backends.rabbitmq.as_ref().and_then(|s| s.backend_config()),
        |config| Ok(Arc::new(RabbitmqBackend::new(config)?)),
    )?;
    // Adapters need no server of bindery's: the kind is always usable.
    registry.register(
        crate::backends::exec::KIND,
        Arc::new(crate::backends::exec::ExecBackend::default()),
    );
    Ok(registry)
}

/// Registers `kind` built from its configuration, or declares it unconfigured.
fn register<C>(
    registry: &mut BackendRegistry,
    kind: &str,
    checker: SettingsChecker,
    how_to_configure: &str,
    configured: Option<C>,
    build: impl FnOnce(C) -> anyhow::Result<Arc<dyn ServiceBackend>>,
) -> anyhow::Result<()> {
    match configured {
        Some(config) => {
            let backend =
                build(config).with_context(|| format!("configuring the {kind} backend"))?;
            registry.register(kind, backend);
        }
        None => {
            registry.declare_unconfigured(kind, checker, how_to_configure);
        }
    }
    Ok(())
}

/// The credentials platforms may present: the main user, any extra users (for a
/// rotation without downtime) and bearer tokens. At least one must be configured.
fn authenticator(auth: &crate::config::AuthSettings) -> anyhow::Result<Authenticator> {
    let mut users: Vec<(String, String)> = Vec::new();
    if let (Some(user), Some(password)) = (&auth.username, &auth.password)
        && !user.is_empty()
        && !password.expose_secret().is_empty()
    {
        users.push((user.clone(), password.expose_secret().to_owned()));
    }
    if let Some(extra) = &auth.extra_users {
        for entry in extra
            .expose_secret()
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
        {
            match entry.split_once(':') {
                Some((user, password)) if !user.is_empty() && !password.is_empty() => {
                    users.push((user.to_owned(), password.to_owned()));
                }
                // Never echo the entry: it holds a password.
                _ => bail!("BINDERY_EXTRA_USERS must be user:password[,user:password...]"),
            }
        }
    }
    let tokens: Vec<String> = auth
        .bearer_tokens
        .as_ref()
        .map(|t| {
            t.expose_secret()
                .split(',')
                .map(|t| t.trim().to_owned())
                .filter(|t| !t.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if users.is_empty() && tokens.is_empty() {
        bail!(
            "no platform credentials configured: set BINDERY_USERNAME and BINDERY_PASSWORD (or BINDERY_BEARER_TOKENS)"
        );
    }
    Ok(
        Authenticator::new(users.iter().map(|(u, p)| (u.as_str(), p.as_str())))
            .with_tokens(tokens.iter().map(String::as_str)),
    )
}

/// The keys that encrypt credentials at rest; bindery refuses to start without one.
fn keyring(settings: &Settings) -> anyhow::Result<Keyring> {
    match &settings.encryption_keys {
        Some(spec) => Keyring::parse(spec.expose_secret()).context("BINDERY_ENCRYPTION_KEYS"),
        None => bail!(
            "no encryption key configured: set BINDERY_ENCRYPTION_KEYS to label:<base64 of 32 random bytes> (for example `primary:$(head -c32 /dev/urandom | base64)`); bindery never stores credentials unencrypted"
        ),
    }
}

/// A new primary key: re-encrypts what older keys sealed, in the background so that
/// start-up stays fast; `bindery rotate-keys` does the same in the foreground.
fn spawn_key_rotation(store: Store, keyring: Keyring) {
    tokio::spawn(async move {
        match crate::keys::rotate(&store, &keyring).await {
            Ok(report) if report.resealed > 0 || !report.failed.is_empty() => {
                tracing::info!(
                    resealed = report.resealed,
                    failed = report.failed.len(),
                    "re-encrypted credentials under the primary key"
                );
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(error = %format!("{e:#}"), "key rotation at start-up did not finish; run `bindery rotate-keys`")
            }
        }
    });
}

/// The HTTP side's settings: platform credentials, lowest API version, limits.
fn http_options(settings: &Settings) -> anyhow::Result<HttpOptions> {
    let authenticator = authenticator(&settings.auth)?;
    let min_version: ApiVersion = settings
        .min_api_version
        .parse()
        .context("BINDERY_MIN_API_VERSION")?;
    if min_version.major != 2 || min_version < ApiVersion::V2_13 {
        bail!("BINDERY_MIN_API_VERSION must be 2.13 or a later 2.x version");
    }
    Ok(HttpOptions {
        authenticator: Arc::new(authenticator),
        min_version: MinimumVersion(min_version),
        max_body_bytes: settings.max_body_bytes,
        request_timeout: Duration::from_secs(settings.request_timeout_seconds),
        max_concurrent_requests: settings.max_concurrent_requests,
        metrics_on_api_listener: settings.metrics_listen.is_none(),
        max_header_bytes: settings.max_header_bytes,
        header_read_timeout: Duration::from_secs(settings.header_read_timeout_seconds),
        idle_timeout: Duration::from_secs(settings.idle_timeout_seconds),
        min_body_bytes_per_second: settings.min_body_bytes_per_second,
        shutdown_grace: Duration::from_secs(settings.worker.shutdown_grace_seconds),
    })
}

/// The certificate and key of the API listener, loaded once so that a bad certificate
/// stops start-up, not the first client.
fn tls_files(settings: &Settings) -> anyhow::Result<Option<crate::http::tls::TlsFiles>> {
    match (&settings.tls.cert_file, &settings.tls.key_file) {
        (Some(cert), Some(key)) => {
            let files = crate::http::tls::TlsFiles {
                cert: cert.clone(),
                key: key.clone(),
            };
            files.load()?;
            Ok(Some(files))
        }
        _ => Ok(None),
    }
}

/// A broker ready to serve: listener bound, database migrated, catalog validated.
#[derive(Debug)]
pub struct Application {
    listener: TcpListener,
    state: AppState,
    http: HttpOptions,
    worker: Worker,
    store: Store,
    tls: Option<crate::http::tls::TlsFiles>,
    metrics_listener: Option<TcpListener>,
    /// This process's lease owner name and how long its promise to be alive lasts.
    owner: Arc<str>,
    liveness: Duration,
}

impl Application {
    /// Builds everything from settings and a backend registry.
    pub async fn build(settings: &Settings, backends: BackendRegistry) -> anyhow::Result<Self> {
        let keyring = keyring(settings)?;
        let http = http_options(settings)?;
        let catalog = Arc::new(load_catalog(&settings.catalog, &backends)?);

        let store = Store::open(
            settings.store_url().expose_secret(),
            &StoreOptions {
                max_connections: settings.database_max_connections,
                ..StoreOptions::default()
            },
        )
        .await?;
        store.migrate().await?;
        store.release_orphaned_leases().await?;
        crate::broker::retired::reconcile_instance_plans(&store, &catalog).await?;
        crate::keys::check_keys_in_use(&store, &keyring).await?;
        spawn_key_rotation(store.clone(), keyring.clone());

        let owner: Arc<str> = owner_name().into();
        let wake = Arc::new(Notify::new());
        let lease = Duration::from_secs(settings.worker.lease_seconds);
        let broker = Broker::new(
            store.clone(),
            catalog,
            Arc::new(backends),
            Arc::new(keyring),
            owner.clone(),
            wake.clone(),
            BrokerOptions { lease },
        );
        let worker = Worker::new(
            broker.executor().clone(),
            owner.clone(),
            wake,
            WorkerOptions {
                concurrency: settings.worker.concurrency,
                shutdown_grace: Duration::from_secs(settings.worker.shutdown_grace_seconds),
                ..WorkerOptions::default()
            },
        );
        let listener = TcpListener::bind(settings.listen)
            .await
            .with_context(|| format!("cannot listen on {}", settings.listen))?;
        Ok(Self {
            listener,
            state: AppState { broker },
            http,
            worker,
            store,
            owner,
            liveness: Duration::from_secs(settings.worker.liveness_seconds),
            metrics_listener: match settings.metrics_listen {
                Some(address) => Some(
                    TcpListener::bind(address)
                        .await
                        .with_context(|| format!("cannot listen on {address} for metrics"))?,
                ),
                None => None,
            },
            tls: tls_files(settings)?,
        })
    }

    /// The port actually bound (useful with port 0).
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The broker, for tests and tools that act without HTTP.
    pub fn broker(&self) -> &crate::broker::Broker {
        &self.state.broker
    }

    /// The worker (tests call `try_execute_next` on it).
    pub fn worker(&self) -> &Worker {
        &self.worker
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Serves until `stop` is cancelled; with `run_worker`, the worker runs alongside.
    /// On stop: no new connections, in-flight requests finish, the worker drains.
    pub async fn run_until_stopped(
        self,
        stop: CancellationToken,
        run_worker: bool,
    ) -> anyhow::Result<()> {
        crate::http::metrics::handle();
        // Kept until the worker has drained, so that no replica takes over what this
        // process is still finishing; withdrawn last.
        let alive = CancellationToken::new();
        let liveness = tokio::spawn(crate::worker::liveness::keep_alive(
            self.store.clone(),
            self.owner.clone(),
            self.liveness,
            alive.clone(),
        ));
        let serving = self.http.serve_options();
        if let Some(listener) = self.metrics_listener {
            let metrics = crate::http::metrics_router().with_state(self.state.clone());
            let stop = stop.clone();
            tokio::spawn(crate::http::serve::serve(
                listener,
                metrics,
                serving,
                async move { stop.cancelled().await },
            ));
        }
        let broker = self.state.broker.clone();
        let router = crate::http::router(self.state, &self.http);
        let worker_task =
            run_worker.then(|| tokio::spawn(self.worker.run_until_stopped(stop.clone())));
        let serve_stop = stop.clone();
        let shutdown = async move { serve_stop.cancelled().await };
        match self.tls {
            Some(files) => {
                let listener = crate::http::tls::TlsListener::start(self.listener, files)?;
                crate::http::serve::serve(listener, router, serving, shutdown).await;
            }
            None => crate::http::serve::serve(self.listener, router, serving, shutdown).await,
        }
        if let Some(task) = worker_task {
            stop.cancel();
            let _ = task.await;
        }
        alive.cancel();
        let _ = liveness.await;
        broker.flush_audit().await;
        Ok(())
    }
}

/// A lease owner name unique to this process: host, pid and a random suffix.
fn owner_name() -> String {
    let host = std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/etc/hostname").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "bindery".to_owned());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &suffix[..8])
}
