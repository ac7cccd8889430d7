//! The HTTP integration suite: one binary, one module per area. Every test gets its
//! own bindery database on the local PostgreSQL and its own broker on port 0.
//! Conformance tests (the `conformance_*` modules) are named `<group><number>_<rule>`: the
//! rest of the name states the rule the test proves; the letter is its group (A transport,
//! headers and authentication; B catalog; C synchronous and asynchronous operations;
//! D provision; E update; F deprovision; G last operation; H bind; I unbind; J errors and
//! orphans; K forward-compatible extras from OSB 2.14 on), and the number orders the rules
//! through the groups (`a03_...` is rule 3, in group A). Each module names the sections of
//! the public OSB specification (`spec.md` in openservicebrokerapi/servicebroker) that set
//! its rules.

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
mod exec_adapters;
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
