//! Load benchmark: bindery in release mode, over HTTP, against a fresh PostgreSQL database.
//!
//! ```sh
//! cargo bench --bench osb -- [--quick] [--scale 100000,1000000]
//! ```
//!
//! The bench binary re-executes itself as the server (`BINDERY_BENCH_ROLE=server`): that
//! process builds `Settings` from the environment, registers a no-op backend under kind
//! `noop` through the public `BackendRegistry` API, serves the shipped `catalog.yaml`
//! (every backend kind replaced by `noop`) and runs `Application::run_until_stopped` with
//! the worker. Running it as a separate process lets the driver read bindery's own CPU
//! time and peak RSS from `/proc`, apart from the load generator's.
//!
//! Beside it, at the first level, the binary runs once more as the reference
//! (`BINDERY_BENCH_ROLE=reference`, `reference.rs`): a minimal axum server doing only
//! what every OSB request must (credentials, version header, a fixed catalog, one
//! SELECT per poll, one INSERT per change). The compared workloads run against both,
//! the order alternating over rounds, and are reported as ratios to the reference.
//!
//! The driver runs every workload twice: closed loop (a fixed number of connections,
//! each sending its next request when the previous one is answered) and open loop (a
//! fixed timetable of send times; latency is measured from the scheduled time, so a
//! stalled server is charged for the requests it delayed: no coordinated omission).
//! Every request uses its own instance or binding id (polls cycle over the instances
//! provisioned asynchronously). Any answer other than the expected 2xx fails the run.
//! How to read the output: `docs/benchmarks.md`.

mod client;
mod driver;
mod load;
mod options;
mod process;
mod procfs;
mod reference;
mod server;
mod stats;
mod workload;

use std::process::ExitCode;

use options::{Options, USAGE};

/// Set to `server` in the environment of the process the driver starts as bindery, to
/// `reference` in that of the reference server.
const ROLE_VAR: &str = "BINDERY_BENCH_ROLE";
/// The line on which the server process tells the driver its port.
const PORT_LINE: &str = "BINDERY_BENCH_PORT ";
const USER: &str = "bench-platform";
const PASSWORD: &str = "bench-password-5b1e";
/// 32 fixed bytes: this key only ever protects the no-op backend's fixed credentials.
const KEY: &str = "bench:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const CATALOG: &str = include_str!("../../catalog.yaml");

fn main() -> ExitCode {
    match std::env::var(ROLE_VAR).as_deref() {
        Ok("server") => return serve_role("bindery", server::serve()),
        Ok("reference") => return serve_role("reference", reference::serve()),
        _ => {}
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        // A test runner listing tests (cargo nextest): this target has none.
        return ExitCode::SUCCESS;
    }
    if !args.iter().any(|a| a == "--bench") {
        eprintln!("osb: a load benchmark; run it with `cargo bench --bench osb` (nothing to test)");
        return ExitCode::SUCCESS;
    }
    let options = match Options::parse(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("osb: {e}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(driver::run(options)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("osb: FAILED: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a server role on the runtime `#[tokio::main]` builds in bindery's binary, so
/// both servers run on the same one.
fn serve_role(name: &str, serve: impl Future<Output = anyhow::Result<()>>) -> ExitCode {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    match runtime.block_on(serve) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{name} (bench server): {e:#}");
            ExitCode::FAILURE
        }
    }
}
