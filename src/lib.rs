//! bindery: an Open Service Broker (OSB API 2.13, later versions negotiated per
//! request) that keeps its state in PostgreSQL and provisions real resources through
//! pluggable backends.
//!
//! A request flows `http` → `broker` → `store` / `backends`; the `worker` runs queued
//! operations against the same store and backends. `osb`, `catalog`, `config`,
//! `crypto` and `error` are leaves any layer may use.

/// Pluggable backends: the only code that talks to managed services.
pub mod backends;
/// Every OSB rule: idempotency, conflicts, sync or async, version-gated fields.
pub mod broker;
/// `catalog.yaml`: loading, validation, lookups, served bodies.
pub mod catalog;
/// The command line.
pub mod cli;
/// Settings from file and environment.
pub mod config;
/// Encryption of credentials at rest.
pub mod crypto;
/// `BrokerError`, the one error type of requests.
pub mod error;
/// `bindery healthcheck`: the container's own probe.
pub mod healthcheck;
/// The HTTP edge.
pub mod http;
/// Encryption keys over stored state: start-up check and rotation.
pub mod keys;
/// OSB wire types and headers.
pub mod osb;
/// Wiring of the application.
pub mod startup;
/// bindery's own database.
pub mod store;
/// Logging set-up.
pub mod telemetry;
/// The operation worker.
pub mod worker;
