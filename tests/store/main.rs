//! The store against the real databases: every test in the modules below runs once on
//! PostgreSQL and once on SQLite (`postgres::NAME`, `sqlite::NAME`), from one body, so
//! the two stores are held to the same semantics. `sqlite_file` covers what only the
//! SQLite store has (its file, its lock, its URLs).

mod audit;
mod bindings;
mod copy;
mod credentials;
mod expiry;
mod finish;
mod instances;
mod queue;
mod sqlite_file;
mod support;
