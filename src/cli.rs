//! The command line: `bindery serve | migrate | migrate-store | check-catalog | rotate-keys |
//! openapi | healthcheck | adapter-check`.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::catalog::load_catalog;
use crate::config::Settings;
use crate::startup::{Application, builtin_backends};
use crate::store::copy::{DEFAULT_PAGE_SIZE, copy_state};
use crate::store::{Store, StoreOptions};

/// bindery, an Open Service Broker.
#[derive(Debug, Parser)]
#[command(name = "bindery", version, about, long_about = None)]
pub struct Cli {
    /// YAML configuration file; environment variables override it (see docs/configuration.md).
    #[arg(long, global = true, env = "BINDERY_CONFIG")]
    pub config: Option<PathBuf>,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply migrations, validate the catalog and serve the OSB API with the worker.
    Serve,
    /// Create bindery's database if needed and apply pending migrations, then exit.
    Migrate,
    /// Copy all of bindery's state (instances, bindings, operations, audit trail) from
    /// one store to another, e.g. from a SQLite file to PostgreSQL, then exit. Stop the
    /// broker first. The target is migrated first and must hold no instance, binding or
    /// operation.
    MigrateStore {
        /// The store to copy from: sqlite://PATH or postgres://USER@HOST/DATABASE.
        #[arg(long, value_name = "URL")]
        from: String,
        /// The store to copy into: sqlite://PATH or postgres://USER@HOST/DATABASE.
        #[arg(long, value_name = "URL")]
        to: String,
    },
    /// Re-encrypt every stored credential under the primary key (the first of
    /// BINDERY_ENCRYPTION_KEYS), then exit. Run it after adding a new primary key and
    /// before removing an old one.
    RotateKeys,
    /// Print the OpenAPI document (YAML) generated from the routes, or write it to FILE.
    Openapi {
        /// Where to write it; default: standard output.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Ask the configured listener (TLS when configured) for /healthz; exit 0 only on a
    /// 200. For a container's HEALTHCHECK.
    Healthcheck,
    /// Validate a catalog file and list every problem, then exit (non-zero on problems).
    CheckCatalog {
        /// Catalog to check; default: the configured catalog (BINDERY_CATALOG).
        file: Option<PathBuf>,
    },
    /// Run a complete lifecycle against an `exec` adapter (docs/adapters.md) and list
    /// the rules of the adapter contract it breaks, then exit (non-zero if any).
    /// Needs no configuration; use a test instance of the service.
    AdapterCheck {
        /// The adapter's `settings.config`, as JSON.
        #[arg(long, value_name = "JSON")]
        settings: Option<String>,
        /// A variable of the adapter's environment, NAME=VALUE (repeatable).
        #[arg(long = "env", value_name = "NAME=VALUE")]
        environment: Vec<String>,
        /// A secret sent in the request, KEY=VARIABLE: the value is read from this
        /// process's environment variable VARIABLE (repeatable).
        #[arg(long = "secret", value_name = "KEY=VARIABLE")]
        secrets: Vec<String>,
        /// Time limit of each call, in seconds.
        #[arg(long, default_value_t = 60)]
        timeout: u64,
        /// The adapter executable and its arguments.
        #[arg(required = true, trailing_var_arg = true, allow_hyphen_values = true)]
        command: Vec<String>,
    },
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    if let Command::Openapi { output } = &cli.command {
        // Needs no configuration: the document comes from the code alone.
        let yaml = crate::http::openapi::document_yaml();
        return match output {
            Some(path) => std::fs::write(path, yaml)
                .with_context(|| format!("cannot write {}", path.display())),
            None => {
                print!("{yaml}");
                Ok(())
            }
        };
    }
    if let Command::AdapterCheck {
        settings,
        environment,
        secrets,
        timeout,
        command,
    } = cli.command
    {
        return adapter_check(
            command,
            settings.as_deref(),
            &environment,
            &secrets,
            timeout,
        )
        .await;
    }
    let settings = Settings::load(cli.config.as_deref())?;
    crate::telemetry::init(&settings.log.filter, &settings.log.format);
    match cli.command {
        Command::Serve => serve(&settings).await,
        Command::Healthcheck => crate::healthcheck::run(&settings).await,
        Command::Openapi { .. } | Command::AdapterCheck { .. } => {
            unreachable!("handled before loading settings")
        }
        Command::Migrate => migrate(&settings).await,
        Command::MigrateStore { from, to } => migrate_store(&from, &to).await,
        Command::RotateKeys => rotate_keys(&settings).await,
        Command::CheckCatalog { file } => check_catalog(&settings, file),
    }
}

/// `bindery migrate`: applies the state store's migrations and exits.
async fn migrate(settings: &Settings) -> anyhow::Result<()> {
    let store = Store::open(
        settings.store_url().expose_secret(),
        &StoreOptions::default(),
    )
    .await?;
    let migrated = store.migrate().await;
    store.close().await;
    migrated?;
    println!("migrations applied");
    Ok(())
}

/// `bindery rotate-keys`: re-encrypts every stored credential under the primary key.
async fn rotate_keys(settings: &Settings) -> anyhow::Result<()> {
    let spec = settings
        .encryption_keys
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("BINDERY_ENCRYPTION_KEYS is not set"))?;
    let keyring =
        crate::crypto::Keyring::parse(spec.expose_secret()).context("BINDERY_ENCRYPTION_KEYS")?;
    let store = Store::open(
        settings.store_url().expose_secret(),
        &StoreOptions::default(),
    )
    .await?;
    let report = match store.migrate().await {
        Ok(()) => crate::keys::rotate(&store, &keyring).await,
        Err(e) => Err(e),
    };
    store.close().await;
    let report = report?;
    println!(
        "re-encrypted {} credential(s) under key `{}`",
        report.resealed,
        keyring.primary_label()
    );
    if !report.failed.is_empty() {
        for (binding, reason) in &report.failed {
            eprintln!("binding {binding}: {reason}");
        }
        anyhow::bail!(
            "{} credential(s) could not be decrypted",
            report.failed.len()
        );
    }
    Ok(())
}

/// `bindery check-catalog`: validates a catalog file against the backends it names.
fn check_catalog(settings: &Settings, file: Option<PathBuf>) -> anyhow::Result<()> {
    let path = file.unwrap_or_else(|| settings.catalog.clone());
    let registry = builtin_backends(settings)?;
    // Kinds without a server (as in a CI pipeline) are stood in for, so that
    // every service and plan of the file is validated, not only those served here.
    let (checking, unconfigured) = crate::backends::check_only::for_checking(&registry);
    let catalog = load_catalog(&path, &checking)?;
    let plans: usize = catalog.services().iter().map(|s| s.plans.len()).sum();
    println!(
        "{}: valid ({} services, {plans} plans)",
        path.display(),
        catalog.services().len()
    );
    for missing in &unconfigured {
        let count = catalog
            .services()
            .iter()
            .flat_map(|s| &s.plans)
            .filter(|p| p.backend_kind == missing.kind)
            .count();
        if count > 0 {
            println!(
                "  {count} {} plan(s) would not be served here: no {} server is configured ({})",
                missing.kind, missing.kind, missing.reason
            );
        }
    }
    Ok(())
}

/// `bindery adapter-check`: prints one line per contract rule; fails if any is broken.
async fn adapter_check(
    command: Vec<String>,
    config: Option<&str>,
    environment: &[String],
    secrets: &[String],
    timeout_seconds: u64,
) -> anyhow::Result<()> {
    use crate::backends::exec::check;
    let settings = check::settings_for(command, config, environment, timeout_seconds)?;
    let mut values = std::collections::BTreeMap::new();
    for entry in secrets {
        let (key, variable) = entry
            .split_once('=')
            .with_context(|| format!("--secret takes KEY=VARIABLE, not {entry:?}"))?;
        let value = std::env::var(variable)
            .with_context(|| format!("--secret {key}: the variable {variable} is not set"))?;
        values.insert(key.to_owned(), value);
    }
    let report = check::check(&settings, values).await;
    print!("{}", report.render());
    if report.passed() {
        println!("the adapter keeps every rule checked");
        Ok(())
    } else {
        anyhow::bail!("the adapter breaks the contract (see FAIL above)")
    }
}

async fn migrate_store(from: &str, to: &str) -> anyhow::Result<()> {
    let options = StoreOptions::default();
    let source = Store::open_existing(from, &options)
        .await
        .context("opening the store to copy from (--from)")?;
    let target = Store::open(to, &options)
        .await
        .context("opening the store to copy into (--to)")?;
    let copied = copy_state(&source, &target, DEFAULT_PAGE_SIZE).await;
    source.close().await;
    target.close().await;
    let copied = copied?;
    println!(
        "copied from {} to {}:",
        source.describe(),
        target.describe()
    );
    println!("  instances:    {}", copied.instances);
    println!("  bindings:     {}", copied.bindings);
    println!("  operations:   {}", copied.operations);
    println!("  audit events: {}", copied.audit_events);
    Ok(())
}

async fn serve(settings: &Settings) -> anyhow::Result<()> {
    if settings.database_url.is_none() {
        // The first line a new user sees: where their state goes, and how to move it.
        tracing::info!(
            path = %settings.data_dir.join("bindery.db").display(),
            "DATABASE_URL is not set: keeping bindery's state in a SQLite file in the data directory (BINDERY_DATA_DIR); one replica only, set DATABASE_URL=postgres://… for production"
        );
    }
    let registry = builtin_backends(settings)?;
    let app = Application::build(settings, registry).await?;
    tracing::info!(port = app.port(), "bindery is serving the OSB API");
    let stop = CancellationToken::new();
    let signal_stop = stop.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("shutdown requested; finishing in-flight work");
        signal_stop.cancel();
    });
    let store = app.store().clone();
    let served = app.run_until_stopped(stop, true).await.context("serving");
    // Checkpoints SQLite's write-ahead log into the file, so that a copy of the file
    // alone is a complete backup; closes PostgreSQL's connections cleanly.
    store.close().await;
    served
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
