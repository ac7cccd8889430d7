//! The HTTP integration suite: one binary, one module per area. Every test gets its
//! own bindery database on the local PostgreSQL and its own broker on port 0.
//! Conformance tests are named after the item of the OSB 2.13 checklist in
//! `osb-spec.md` §12 they prove (`a03_...` is item A.3).

mod helpers;
mod support;

mod backends_e2e;
mod concurrency;
mod conformance_a_transport;
mod conformance_b_catalog;
mod conformance_cdef_instances;
mod conformance_g_last_operation;
mod conformance_hi_bindings;
mod conformance_jk_errors;
mod durable_operations;
mod edge;
mod expiry;
mod fencing;
mod id_bounds;
mod later_versions;
mod metrics;
mod openapi;
mod postgres_e2e;
mod private_pg;
#[path = "../common/private_redis.rs"]
mod private_redis;
mod retired_plans;
mod security;
mod shipped_catalog;
mod state_model;
mod store_migration;
mod sync_failures;
mod tls;
