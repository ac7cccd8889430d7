//! The command line: `bindery serve | migrate | migrate-store | check-catalog | rotate-keys |
//! openapi | healthcheck`.

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
    let settings = Settings::load(cli.config.as_deref())?;
    crate::telemetry::init(&settings.log.filter, &settings.log.format);
    match cli.command {
        Command::Serve => serve(&settings).await,
        Command::Healthcheck => crate::healthcheck::run(&settings).await,
        Command::Openapi { .. } => unreachable!("handled before loading settings"),
        Command::Migrate => {
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
        Command::MigrateStore { from, to } => migrate_store(&from, &to).await,
        Command::RotateKeys => {
            let spec = settings
                .encryption_keys
                .as_ref()
                .ok_or_else(|| anyhow::anyhow!("BINDERY_ENCRYPTION_KEYS is not set"))?;
            let keyring = crate::crypto::Keyring::parse(spec.expose_secret())
                .context("BINDERY_ENCRYPTION_KEYS")?;
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
        Command::CheckCatalog { file } => {
            let path = file.unwrap_or_else(|| settings.catalog.clone());
            let registry = builtin_backends(&settings)?;
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
