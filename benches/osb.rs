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
//! The driver runs every workload twice: closed loop (a fixed number of connections,
//! each sending its next request when the previous one is answered) and open loop (a
//! fixed timetable of send times; latency is measured from the scheduled time, so a
//! stalled server is charged for the requests it delayed: no coordinated omission).
//! Every request uses its own instance or binding id (polls cycle over the instances
//! provisioned asynchronously). Any answer other than the expected 2xx fails the run.
//! How to read the output: `docs/benchmarks.md`.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use async_trait::async_trait;
use base64::Engine as _;
use bindery::backends::{
    BackendError, BackendRegistry, BindingSpec, Credentials, InstanceSpec, ServiceBackend,
    UpdateSpec,
};
use bindery::config::Settings;
use bindery::startup::Application;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use sqlx::PgPool;
use sqlx::postgres::PgPoolOptions;
use tokio_util::sync::CancellationToken;

const ROLE_VAR: &str = "BINDERY_BENCH_ROLE";
const PORT_LINE: &str = "BINDERY_BENCH_PORT ";
const USER: &str = "bench-platform";
const PASSWORD: &str = "bench-password-5b1e";
/// 32 fixed bytes: this key only ever protects the no-op backend's fixed credentials.
const KEY: &str = "bench:AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const API_VERSION: &str = "2.13";
/// Most requests in flight in an open-loop run; later ones wait (and are charged for it,
/// latency counting from the scheduled time). 64, like a platform's bounded client pool:
/// with 512, a 2 ms hiccup at 28,000 req/s made the generator open hundreds of new
/// connections, and both processes then spent the shared cores on connection set-up
/// (bindery's RSS 21 -> 55 MiB, p99 40-70 ms) instead of on requests.
const MAX_IN_FLIGHT: usize = 64;
/// Delay between two polls of the same operation in the lifecycle workload.
const POLL_INTERVAL: Duration = Duration::from_millis(5);
/// Open-loop rates are this fraction of the first level's closed-loop throughput.
const RATE_FACTOR: f64 = 0.5;
const CATALOG: &str = include_str!("../catalog.yaml");
/// Workload names for `--only`.
const WORKLOADS: &[&str] = &[
    "catalog",
    "provision",
    "async",
    "burst",
    "last_operation",
    "bind",
    "unbind",
    "deprovision",
    "lifecycle",
];

const USAGE: &str = "usage: cargo bench --bench osb -- [--quick] [--scale N[,N...]] [--base N] \
[--connections C] [--seconds S] [--burst N] [--log FILTER] [--out FILE]
  --quick          1 s per run and a 2,000-operation burst (default: 3 s, 10,000)
  --scale N,...    after the base level, repeat every workload with N instances stored
  --base N         instances stored at the first level (default 1000)
  --connections C  closed-loop connections (default 32)
  --seconds S      seconds per closed-loop and per open-loop run
  --burst N        asynchronous provisions queued at once
  --log FILTER     bindery's BINDERY_LOG (default: the environment's, else info)
  --out FILE       also write the markdown report to FILE
  --only W,...     run only these workloads (catalog, provision, async, burst,
                   last_operation, bind, unbind, deprovision, lifecycle)
  --sslmode MODE   sslmode of bindery's DATABASE_URL (default: none given = prefer)
  --pg-set N=V     ALTER DATABASE <bench db> SET N = V before the server starts
                   (an experiment, e.g. synchronous_commit=off; reported)
Environment: BINDERY_BENCH_DATABASE_SERVER (default postgres://postgres@127.0.0.1:5432);
other BINDERY_* variables reach the server (e.g. BINDERY_DATABASE_MAX_CONNECTIONS).";

fn main() -> ExitCode {
    if std::env::var(ROLE_VAR).as_deref() == Ok("server") {
        return server::main();
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

#[derive(Debug, Clone)]
struct Options {
    quick: bool,
    base: u64,
    scales: Vec<u64>,
    connections: usize,
    seconds: Duration,
    burst: u64,
    log: Option<String>,
    out: Option<PathBuf>,
    server_url: String,
    only: Option<Vec<String>>,
    pg_set: Vec<(String, String)>,
    sslmode: Option<String>,
}

impl Options {
    fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut o = Options {
            quick: false,
            base: 1_000,
            scales: Vec::new(),
            connections: 32,
            seconds: Duration::from_secs(3),
            burst: 10_000,
            log: None,
            out: None,
            only: None,
            pg_set: Vec::new(),
            sslmode: None,
            server_url: std::env::var("BINDERY_BENCH_DATABASE_SERVER")
                .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".to_owned()),
        };
        let (mut seconds, mut burst) = (None, None);
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = |name: &str| {
                it.next()
                    .cloned()
                    .with_context(|| format!("{name} needs a value"))
            };
            match arg.as_str() {
                "--bench" => {}
                "--quick" => o.quick = true,
                "--scale" => {
                    for n in value("--scale")?.split(',') {
                        o.scales.push(parse_count(n)?);
                    }
                }
                "--base" => o.base = parse_count(&value("--base")?)?,
                "--connections" => o.connections = value("--connections")?.parse()?,
                "--seconds" => seconds = Some(value("--seconds")?.parse::<f64>()?),
                "--burst" => burst = Some(parse_count(&value("--burst")?)?),
                "--log" => o.log = Some(value("--log")?),
                "--out" => o.out = Some(PathBuf::from(value("--out")?)),
                "--only" => {
                    let names: Vec<String> = value("--only")?
                        .split(',')
                        .map(|n| n.trim().to_owned())
                        .collect();
                    if let Some(bad) = names.iter().find(|n| !WORKLOADS.contains(&n.as_str())) {
                        bail!("unknown workload `{bad}` (one of {})", WORKLOADS.join(", "));
                    }
                    o.only = Some(names);
                }
                "--sslmode" => o.sslmode = Some(value("--sslmode")?),
                "--pg-set" => {
                    let setting = value("--pg-set")?;
                    let (name, v) = setting
                        .split_once('=')
                        .context("--pg-set takes NAME=VALUE")?;
                    if !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.')
                    {
                        bail!("`{name}` is not a setting name");
                    }
                    o.pg_set.push((name.to_owned(), v.to_owned()));
                }
                "--help" | "-h" => bail!("help"),
                other => bail!("unknown argument `{other}`"),
            }
        }
        o.seconds = Duration::from_secs_f64(seconds.unwrap_or(if o.quick { 1.0 } else { 3.0 }));
        o.burst = burst.unwrap_or(if o.quick { 2_000 } else { 10_000 });
        o.scales.sort_unstable();
        o.scales.retain(|&n| n > o.base);
        o.scales.dedup();
        if o.connections == 0 {
            bail!("--connections must be at least 1");
        }
        Ok(o)
    }
}

fn parse_count(text: &str) -> anyhow::Result<u64> {
    let digits: String = text.chars().filter(|c| *c != '_' && *c != ',').collect();
    digits
        .trim()
        .parse()
        .with_context(|| format!("`{text}` is not a count"))
}

/// The server role: bindery with a no-op backend registered through the public API.
mod server {
    use super::*;

    /// A backend that does nothing and always succeeds; binds return fixed credentials.
    #[derive(Debug)]
    struct NoopBackend;

    #[async_trait]
    impl ServiceBackend for NoopBackend {
        fn check_plan_settings(&self, _settings: &Value) -> Vec<String> {
            Vec::new()
        }

        async fn provision(&self, _instance: &InstanceSpec<'_>) -> Result<(), BackendError> {
            Ok(())
        }

        async fn update(&self, _change: &UpdateSpec<'_>) -> Result<(), BackendError> {
            Ok(())
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

    pub(super) fn main() -> ExitCode {
        // The same runtime as `#[tokio::main]` in bindery's binary.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("a tokio runtime");
        match runtime.block_on(serve()) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("bindery (bench server): {e:#}");
                ExitCode::FAILURE
            }
        }
    }

    async fn serve() -> anyhow::Result<()> {
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
}

/// Reading CPU time and memory from `/proc`.
mod procfs {
    use super::*;

    /// Clock ticks per second of `/proc/*/stat` and `/proc/stat` (USER_HZ).
    pub(super) fn ticks_per_second() -> f64 {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|o| String::from_utf8(o.stdout).ok())
            .and_then(|s| s.trim().parse::<f64>().ok())
            .unwrap_or(100.0)
    }

    /// utime + stime of a process, all threads, in ticks.
    pub(super) fn cpu_ticks(pid: u32) -> Option<u64> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
    }

    /// (busy, total) ticks of the whole machine.
    pub(super) fn machine_ticks() -> (u64, u64) {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let line = stat.lines().next().unwrap_or_default();
        let v: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .take(8)
            .filter_map(|x| x.parse().ok())
            .collect();
        let total: u64 = v.iter().sum();
        let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
        (total - idle, total)
    }

    fn status_kib(pid: u32, key: &str) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.parse().ok())
    }

    /// Peak resident set size (VmHWM) in KiB.
    pub(super) fn peak_rss_kib(pid: u32) -> Option<u64> {
        status_kib(pid, "VmHWM:")
    }

    /// Current resident set size in KiB.
    pub(super) fn rss_kib(pid: u32) -> Option<u64> {
        status_kib(pid, "VmRSS:")
    }

    /// Resets VmHWM to the current RSS, so the next reading is the peak of one run.
    pub(super) fn reset_peak_rss(pid: u32) -> bool {
        std::fs::write(format!("/proc/{pid}/clear_refs"), "5").is_ok()
    }
}

/// The bindery process under test.
struct Server {
    child: Child,
    stdin: Option<ChildStdin>,
    pid: u32,
    port: u16,
    startup: Duration,
    log: PathBuf,
}

impl Server {
    async fn start(env: Vec<(&'static str, String)>, log: PathBuf) -> anyhow::Result<Self> {
        let exe = std::env::current_exe().context("locating the bench binary")?;
        let log_file =
            std::fs::File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let started = Instant::now();
        let mut child = Command::new(exe)
            .env(ROLE_VAR, "server")
            .envs(env)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log_file)
            .spawn()
            .context("starting the server process")?;
        let pid = child.id();
        let stdout = child.stdout.take().context("server stdout")?;
        let reader = tokio::task::spawn_blocking(move || -> anyhow::Result<u16> {
            for line in BufReader::new(stdout).lines() {
                if let Some(port) = line?.strip_prefix(PORT_LINE) {
                    return Ok(port.trim().parse()?);
                }
            }
            bail!("the server exited before it listened")
        });
        let port = match tokio::time::timeout(Duration::from_secs(120), reader).await {
            Ok(Ok(Ok(port))) => port,
            Ok(Ok(Err(e))) => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("{e}: {}", tail(&log))
            }
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the server did not listen within 120 s: {}", tail(&log))
            }
        };
        let client = reqwest::Client::builder().no_proxy().build()?;
        let ready = format!("http://127.0.0.1:{port}/readyz");
        loop {
            if client
                .get(&ready)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
            {
                break;
            }
            if started.elapsed() > Duration::from_secs(120) {
                let _ = child.kill();
                let _ = child.wait();
                bail!("the server was not ready within 120 s: {}", tail(&log));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let startup = started.elapsed();
        Ok(Self {
            stdin: child.stdin.take(),
            child,
            pid,
            port,
            startup,
            log,
        })
    }

    /// Graceful stop: close stdin, wait for the worker to drain, kill after 30 s.
    async fn stop(mut self, keep_log: bool) {
        drop(self.stdin.take());
        for _ in 0..3000 {
            if let Ok(Some(_)) = self.child.try_wait() {
                if !keep_log {
                    let _ = std::fs::remove_file(&self.log);
                }
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn tail(path: &PathBuf) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    let start = lines.len().saturating_sub(15);
    format!(
        "last lines of {}:\n{}",
        path.display(),
        lines[start..].join("\n")
    )
}

/// What the load generator needs to talk to bindery.
struct Ctx {
    client: reqwest::Client,
    base: String,
    provision_body: &'static str,
    bind_body: &'static str,
    delete_query: &'static str,
    abort: AtomicBool,
}

impl Ctx {
    fn new(port: u16, service_id: &str, plan_id: &str, parameters: &Value) -> Self {
        let mut headers = HeaderMap::new();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {basic}")).expect("ascii"),
        );
        headers.insert(
            "X-Broker-API-Version",
            HeaderValue::from_static(API_VERSION),
        );
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .no_proxy()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(300))
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client");
        let provision_body = serde_json::json!({
            "service_id": service_id,
            "plan_id": plan_id,
            "organization_guid": "bench-org",
            "space_guid": "bench-space",
            "parameters": parameters,
            "context": {"platform": "kubernetes", "namespace": "bench", "clusterid": "bench-cluster", "instance_name": "bench"},
        })
        .to_string();
        let bind_body = serde_json::json!({
            "service_id": service_id,
            "plan_id": plan_id,
            "bind_resource": {"app_guid": "bench-app"},
            "context": {"platform": "kubernetes", "namespace": "bench"},
        })
        .to_string();
        Self {
            client,
            base: format!("http://127.0.0.1:{port}"),
            provision_body: provision_body.leak(),
            bind_body: bind_body.leak(),
            delete_query: format!("?service_id={service_id}&plan_id={plan_id}").leak(),
            abort: AtomicBool::new(false),
        }
    }

    /// One request; anything but `expect` is an error that fails the run.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&'static str>,
        expect: StatusCode,
        read: bool,
    ) -> Result<String, String> {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("{method} {path}: reading the answer: {e}"))?;
        if status != expect {
            return Err(format!(
                "{method} {path}: expected {expect}, got {status}: {}",
                String::from_utf8_lossy(&bytes)
            ));
        }
        Ok(if read {
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            String::new()
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Catalog,
    Provision,
    ProvisionAsync,
    LastOperation,
    Bind,
    Unbind,
    Deprovision,
    Lifecycle,
}

impl Kind {
    fn label(self) -> &'static str {
        match self {
            Kind::Catalog => "catalog",
            Kind::Provision => "provision (sync, 201)",
            Kind::ProvisionAsync => "provision (async, 202)",
            Kind::LastOperation => "last_operation",
            Kind::Bind => "bind",
            Kind::Unbind => "unbind",
            Kind::Deprovision => "deprovision",
            Kind::Lifecycle => "lifecycle",
        }
    }

    fn is_async(self) -> bool {
        matches!(self, Kind::ProvisionAsync | Kind::Lifecycle)
    }
}

/// The ids a run works on, fixed when it starts.
#[derive(Default)]
struct Input {
    ready: Vec<String>,
    ops: Vec<(String, String)>,
    bindings: Vec<(String, String)>,
}

/// What one generator task saw.
#[derive(Default)]
struct Rec {
    /// Per request, µs (open loop: the first request of a unit from its scheduled time).
    lat: Vec<u64>,
    /// Open loop: how late each unit was sent after its scheduled time, µs.
    lag: Vec<u64>,
    /// Lifecycle: whole unit, µs from its (scheduled) start.
    units_lat: Vec<u64>,
    units: u64,
    ready: Vec<String>,
    ops: Vec<(String, String)>,
    bindings: Vec<(String, String)>,
    end: Option<Instant>,
}

impl Rec {
    fn merge(&mut self, mut other: Rec) {
        self.lat.append(&mut other.lat);
        self.lag.append(&mut other.lag);
        self.units_lat.append(&mut other.units_lat);
        self.units += other.units;
        self.ready.append(&mut other.ready);
        self.ops.append(&mut other.ops);
        self.bindings.append(&mut other.bindings);
        self.end = match (self.end, other.end) {
            (Some(a), Some(b)) => Some(a.max(b)),
            (a, b) => a.or(b),
        };
    }
}

fn micros(since: Instant) -> u64 {
    since.elapsed().as_micros() as u64
}

fn new_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

fn operation_of(body: &str) -> Result<String, String> {
    serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| {
            v.get("operation")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .ok_or_else(|| format!("a 202 without an operation: {body}"))
}

/// Runs unit `k` of a workload. `Ok(false)`: the run's ids are used up.
async fn run_unit(
    ctx: &Ctx,
    kind: Kind,
    input: &Input,
    k: u64,
    start: Instant,
    rec: &mut Rec,
) -> Result<bool, String> {
    let k = k as usize;
    match kind {
        Kind::Catalog => {
            ctx.call(Method::GET, "/v2/catalog", None, StatusCode::OK, false)
                .await?;
            rec.lat.push(micros(start));
        }
        Kind::Provision => {
            let id = new_id();
            let path = format!("/v2/service_instances/{id}");
            ctx.call(
                Method::PUT,
                &path,
                Some(ctx.provision_body),
                StatusCode::CREATED,
                false,
            )
            .await?;
            rec.lat.push(micros(start));
            rec.ready.push(id);
        }
        Kind::ProvisionAsync => {
            let id = new_id();
            let path = format!("/v2/service_instances/{id}?accepts_incomplete=true");
            let body = ctx
                .call(
                    Method::PUT,
                    &path,
                    Some(ctx.provision_body),
                    StatusCode::ACCEPTED,
                    true,
                )
                .await?;
            rec.lat.push(micros(start));
            rec.ops.push((id, operation_of(&body)?));
        }
        Kind::LastOperation => {
            if input.ops.is_empty() {
                return Err("no asynchronously provisioned instance to poll".to_owned());
            }
            let (id, op) = &input.ops[k % input.ops.len()];
            let path = format!("/v2/service_instances/{id}/last_operation?operation={op}");
            ctx.call(Method::GET, &path, None, StatusCode::OK, false)
                .await?;
            rec.lat.push(micros(start));
        }
        Kind::Bind => {
            if input.ready.is_empty() {
                return Err("no provisioned instance to bind".to_owned());
            }
            let instance = &input.ready[k % input.ready.len()];
            let binding = new_id();
            let path = format!("/v2/service_instances/{instance}/service_bindings/{binding}");
            ctx.call(
                Method::PUT,
                &path,
                Some(ctx.bind_body),
                StatusCode::CREATED,
                false,
            )
            .await?;
            rec.lat.push(micros(start));
            rec.bindings.push((instance.clone(), binding));
        }
        Kind::Unbind => {
            let Some((instance, binding)) = input.bindings.get(k) else {
                return Ok(false);
            };
            let path = format!(
                "/v2/service_instances/{instance}/service_bindings/{binding}{}",
                ctx.delete_query
            );
            ctx.call(Method::DELETE, &path, None, StatusCode::OK, false)
                .await?;
            rec.lat.push(micros(start));
        }
        Kind::Deprovision => {
            let Some(instance) = input.ready.get(k) else {
                return Ok(false);
            };
            let path = format!("/v2/service_instances/{instance}{}", ctx.delete_query);
            ctx.call(Method::DELETE, &path, None, StatusCode::OK, false)
                .await?;
            rec.lat.push(micros(start));
        }
        Kind::Lifecycle => {
            // provision (async) → poll until succeeded → bind → unbind → deprovision
            let id = new_id();
            let path = format!("/v2/service_instances/{id}?accepts_incomplete=true");
            let body = ctx
                .call(
                    Method::PUT,
                    &path,
                    Some(ctx.provision_body),
                    StatusCode::ACCEPTED,
                    true,
                )
                .await?;
            rec.lat.push(micros(start));
            let op = operation_of(&body)?;
            let poll = format!("/v2/service_instances/{id}/last_operation?operation={op}");
            let mut polls = 0;
            loop {
                let t = Instant::now();
                let body = ctx
                    .call(Method::GET, &poll, None, StatusCode::OK, true)
                    .await?;
                rec.lat.push(micros(t));
                if body.contains("\"succeeded\"") {
                    break;
                }
                if !body.contains("\"in progress\"") {
                    return Err(format!("GET {poll}: provisioning did not succeed: {body}"));
                }
                polls += 1;
                if polls > 12_000 {
                    return Err(format!("GET {poll}: still in progress after 60 s"));
                }
                tokio::time::sleep(POLL_INTERVAL).await;
            }
            let binding = new_id();
            let bind = format!("/v2/service_instances/{id}/service_bindings/{binding}");
            let t = Instant::now();
            ctx.call(
                Method::PUT,
                &bind,
                Some(ctx.bind_body),
                StatusCode::CREATED,
                false,
            )
            .await?;
            rec.lat.push(micros(t));
            let t = Instant::now();
            let unbind = format!("{bind}{}", ctx.delete_query);
            ctx.call(Method::DELETE, &unbind, None, StatusCode::OK, false)
                .await?;
            rec.lat.push(micros(t));
            let t = Instant::now();
            let delete = format!("/v2/service_instances/{id}{}", ctx.delete_query);
            ctx.call(Method::DELETE, &delete, None, StatusCode::OK, false)
                .await?;
            rec.lat.push(micros(t));
            rec.units_lat.push(micros(start));
        }
    }
    Ok(true)
}

/// How a run offers load.
#[derive(Debug, Clone, Copy)]
enum Mode {
    /// `connections` tasks, each sending its next unit when the last one is answered.
    Closed { connections: usize },
    /// Units started on a fixed timetable, `rate` per second.
    Open { rate: f64 },
}

impl Mode {
    fn label(self, unit: &str) -> String {
        match self {
            Mode::Closed { connections } => format!("closed, {connections} conn"),
            Mode::Open { rate } => format!("open, {} {unit}/s", group(rate as u64)),
        }
    }
}

struct Outcome {
    rec: Rec,
    elapsed: Duration,
}

async fn drive(
    ctx: &Arc<Ctx>,
    kind: Kind,
    input: &Arc<Input>,
    mode: Mode,
    duration: Duration,
    limit: u64,
) -> Result<Outcome, String> {
    let next = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let start;
    match mode {
        Mode::Closed { connections } => {
            start = Instant::now();
            let deadline = start + duration;
            for _ in 0..connections {
                let (ctx, input, next) = (ctx.clone(), input.clone(), next.clone());
                tasks.push(tokio::spawn(async move {
                    let mut rec = Rec::default();
                    while Instant::now() < deadline && !ctx.abort.load(Ordering::Relaxed) {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        if k >= limit {
                            break;
                        }
                        match run_unit(&ctx, kind, &input, k, Instant::now(), &mut rec).await {
                            Ok(true) => rec.units += 1,
                            Ok(false) => break,
                            Err(e) => {
                                ctx.abort.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                    rec.end = Some(Instant::now());
                    Ok(rec)
                }));
            }
        }
        Mode::Open { rate } => {
            let n = ((rate * duration.as_secs_f64()).round() as u64).clamp(1, limit);
            let interval = 1.0 / rate;
            start = Instant::now() + Duration::from_millis(20);
            for _ in 0..(n as usize).min(MAX_IN_FLIGHT) {
                let (ctx, input, next) = (ctx.clone(), input.clone(), next.clone());
                tasks.push(tokio::spawn(async move {
                    let mut rec = Rec::default();
                    while !ctx.abort.load(Ordering::Relaxed) {
                        let k = next.fetch_add(1, Ordering::Relaxed);
                        if k >= n {
                            break;
                        }
                        let scheduled = start + Duration::from_secs_f64(k as f64 * interval);
                        tokio::time::sleep_until(scheduled.into()).await;
                        rec.lag.push(micros(scheduled));
                        match run_unit(&ctx, kind, &input, k, scheduled, &mut rec).await {
                            Ok(true) => rec.units += 1,
                            Ok(false) => break,
                            Err(e) => {
                                ctx.abort.store(true, Ordering::Relaxed);
                                return Err(e);
                            }
                        }
                    }
                    rec.end = Some(Instant::now());
                    Ok(rec)
                }));
            }
        }
    }
    let mut all = Rec::default();
    let mut first_error = None;
    for task in tasks {
        match task.await {
            Ok(Ok(rec)) => all.merge(rec),
            Ok(Err(e)) => {
                first_error.get_or_insert(e);
            }
            Err(e) => {
                first_error.get_or_insert(format!("a generator task panicked: {e}"));
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let elapsed = all
        .end
        .map_or(Duration::ZERO, |end| end.saturating_duration_since(start));
    Ok(Outcome { rec: all, elapsed })
}

#[derive(Debug, Clone, Copy, Default)]
struct Summary {
    p50: u64,
    p99: u64,
    p999: u64,
    max: u64,
}

fn summarize(mut v: Vec<u64>) -> Summary {
    if v.is_empty() {
        return Summary::default();
    }
    v.sort_unstable();
    let at = |q: f64| v[((q * v.len() as f64).ceil() as usize).clamp(1, v.len()) - 1];
    Summary {
        p50: at(0.50),
        p99: at(0.99),
        p999: at(0.999),
        max: v[v.len() - 1],
    }
}

fn ms(us: u64) -> String {
    let ms = us as f64 / 1000.0;
    if ms < 10.0 {
        format!("{ms:.2}")
    } else if ms < 100.0 {
        format!("{ms:.1}")
    } else {
        format!("{ms:.0}")
    }
}

fn group(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Two significant digits, rounded down.
fn round_rate(x: f64) -> f64 {
    if x < 10.0 {
        return x.max(1.0).floor();
    }
    let magnitude = 10f64.powi(x.log10().floor() as i32 - 1);
    (x / magnitude).floor() * magnitude
}

/// CPU counters at one moment.
struct Usage {
    at: Instant,
    bindery: u64,
    postgres: HashMap<i32, u64>,
    generator: u64,
    machine_busy: u64,
    /// Bytes of WAL the server has written (whole cluster).
    wal: i64,
}

/// One measured run.
struct Row {
    workload: String,
    kind: Option<Kind>,
    closed: bool,
    mode: String,
    requests: u64,
    elapsed: Duration,
    lat: Summary,
    lag_p99: Option<u64>,
    bindery_cpu: f64,
    postgres_cpu: f64,
    generator_cpu: f64,
    machine_busy: f64,
    /// CPU seconds of bindery, its PostgreSQL backends and the generator.
    our_cpu: f64,
    /// WAL bytes per request (whole cluster: other databases' writes count too).
    wal_per_request: f64,
    wall: f64,
    peak_rss_kib: Option<u64>,
    /// The burst: operations completed per second, first request to last completion.
    drain_rate: Option<f64>,
    note: String,
}

impl Row {
    /// Cores busy with anything but bindery, its PostgreSQL backends and the generator.
    fn rest_of_machine(&self) -> f64 {
        ((self.machine_busy - self.our_cpu) / self.wall.max(1e-9)).max(0.0)
    }

    fn rps(&self) -> f64 {
        self.requests as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

struct Level {
    stored: u64,
    prefill: Duration,
    startup: Duration,
    idle_rss_kib: Option<u64>,
    rows: Vec<Row>,
}

/// The driver: database, server, workloads, report.
mod driver {
    use super::*;

    struct Bench {
        options: Options,
        database: String,
        database_url: String,
        dir: PathBuf,
        service_id: String,
        plan_id: String,
        parameters: Value,
        ticks: f64,
        db: Option<PgPool>,
        server: Option<Server>,
        /// Open-loop rates, fixed from the first level's closed-loop throughput.
        rates: HashMap<Kind, f64>,
        levels: Vec<Level>,
        cold_start: Option<Duration>,
        peak_reset_works: bool,
        admin: PgPool,
    }

    pub(super) async fn run(options: Options) -> anyhow::Result<()> {
        let database = format!(
            "bindery_bench_{}",
            &uuid::Uuid::new_v4().simple().to_string()[..12]
        );
        let admin = PgPoolOptions::new()
            .max_connections(1)
            .acquire_timeout(Duration::from_secs(10))
            .connect(&format!("{}/postgres", options.server_url))
            .await
            .with_context(|| format!("connecting to {}", options.server_url))?;
        let facts = facts(&admin).await;
        eprintln!("{facts}");
        let dir = std::env::temp_dir().join(&database);
        std::fs::create_dir_all(&dir)?;
        let (service_id, plan_id, parameters) = pick_plan()?;
        std::fs::write(dir.join("catalog.yaml"), noop_catalog(CATALOG))?;
        let mut bench = Bench {
            database_url: format!("{}/{database}", options.server_url),
            database,
            options,
            dir,
            service_id,
            plan_id,
            parameters,
            ticks: procfs::ticks_per_second(),
            db: None,
            server: None,
            rates: HashMap::new(),
            levels: Vec::new(),
            cold_start: None,
            peak_reset_works: false,
            admin: admin.clone(),
        };
        let result = bench.run_all().await;
        // Clean up whatever happened.
        if let Some(server) = bench.server.take() {
            server.stop(result.is_err()).await;
        }
        if let Some(db) = bench.db.take() {
            db.close().await;
        }
        let dropped = sqlx::query(&format!(
            "drop database if exists \"{}\" with (force)",
            bench.database
        ))
        .execute(&admin)
        .await;
        if let Err(e) = dropped {
            eprintln!("osb: could not drop {}: {e}", bench.database);
        }
        if result.is_ok() {
            let _ = std::fs::remove_dir_all(&bench.dir);
        }
        result?;
        let report = bench.report(&facts);
        println!("{report}");
        if let Some(out) = &bench.options.out {
            std::fs::write(out, &report).with_context(|| format!("writing {}", out.display()))?;
        }
        Ok(())
    }

    impl Bench {
        fn server_env(&self) -> Vec<(&'static str, String)> {
            let mut env = vec![
                (
                    "DATABASE_URL",
                    match &self.options.sslmode {
                        Some(mode) => format!("{}?sslmode={mode}", self.database_url),
                        None => self.database_url.clone(),
                    },
                ),
                ("BINDERY_LISTEN", "127.0.0.1:0".to_owned()),
                (
                    "BINDERY_CATALOG",
                    self.dir.join("catalog.yaml").display().to_string(),
                ),
                ("BINDERY_USERNAME", USER.to_owned()),
                ("BINDERY_PASSWORD", PASSWORD.to_owned()),
                ("BINDERY_ENCRYPTION_KEYS", KEY.to_owned()),
            ];
            if let Some(log) = &self.options.log {
                env.push(("BINDERY_LOG", log.clone()));
            }
            env
        }

        async fn start_server(&mut self) -> anyhow::Result<()> {
            let log = self.dir.join(format!("server-{}.log", self.levels.len()));
            self.server = Some(Server::start(self.server_env(), log).await?);
            Ok(())
        }

        async fn stop_server(&mut self) {
            if let Some(server) = self.server.take() {
                server.stop(false).await;
            }
        }

        async fn run_all(&mut self) -> anyhow::Result<()> {
            // Cold start: the server creates the database and applies the migrations.
            self.start_server().await?;
            let cold = self.server.as_ref().map(|s| s.startup);
            self.cold_start = cold;
            eprintln!(
                "osb: cold start (create database + migrate) ready in {} ms",
                cold.map_or(0, |d| d.as_millis())
            );
            self.stop_server().await;
            for (name, value) in &self.options.pg_set {
                let statement: String = sqlx::query_scalar(
                    "select format('alter database %I set %s = %L', $1::text, $2::text, $3::text)",
                )
                .bind(&self.database)
                .bind(name)
                .bind(value)
                .fetch_one(&self.admin)
                .await?;
                sqlx::query(&statement).execute(&self.admin).await?;
            }
            self.db = Some(
                PgPoolOptions::new()
                    .max_connections(2)
                    .connect(&self.database_url)
                    .await?,
            );
            let mut levels = vec![self.options.base];
            levels.extend(self.options.scales.iter().copied());
            for stored in levels {
                let level = self.level(stored).await?;
                self.levels.push(level);
            }
            Ok(())
        }

        fn db(&self) -> &PgPool {
            self.db.as_ref().expect("connected")
        }

        /// Tops the store up to `target` live instances, each with its finished
        /// provision operation and audit event, as bindery would have written them.
        async fn prefill(&self, target: u64) -> anyhow::Result<Duration> {
            let started = Instant::now();
            let live: i64 = sqlx::query_scalar(
                "select count(*) from service_instance where deleted_at is null",
            )
            .fetch_one(self.db())
            .await?;
            let mut missing = target.saturating_sub(live as u64);
            eprintln!(
                "osb: storing {} more instances ({} live)",
                group(missing),
                group(live as u64)
            );
            while missing > 0 {
                let batch = missing.min(100_000);
                sqlx::query(
                    "with instance as ( \
                       insert into service_instance (instance_id, service_id, plan_id, parameters, \
                           organization_guid, space_guid, context, state, created_at, updated_at) \
                       select gen_random_uuid()::text, $2, $3, $4, 'bench-org', 'bench-space', \
                           '{\"platform\": \"kubernetes\", \"namespace\": \"prefill\"}'::jsonb, 'ready', \
                           now() - interval '1 day', now() - interval '1 day' \
                       from generate_series(1, $1) \
                       returning instance_id), \
                     operation as ( \
                       insert into operation (operation_id, instance_id, kind, state, attempts, \
                           deadline_at, next_attempt_at, created_at, updated_at, finished_at) \
                       select gen_random_uuid(), instance_id, 'provision', 'succeeded', 1, \
                           now() - interval '23 hours', now() - interval '1 day', \
                           now() - interval '1 day', now() - interval '1 day', now() - interval '1 day' \
                       from instance \
                       returning operation_id, instance_id) \
                     insert into audit_event (occurred_at, action, instance_id, operation_id, status, api_version) \
                     select now() - interval '1 day', 'provision', instance_id, operation_id, 201, '2.13' \
                     from operation",
                )
                .bind(batch as i64)
                .bind(&self.service_id)
                .bind(&self.plan_id)
                .bind(&self.parameters)
                .execute(self.db())
                .await
                .context("storing instances")?;
                missing -= batch;
            }
            // A store in steady state: statistics current, visibility map set, and no
            // checkpoint of the fill landing in the measurements.
            sqlx::query("vacuum analyze service_instance, operation, service_binding, audit_event")
                .execute(self.db())
                .await?;
            sqlx::query("checkpoint").execute(self.db()).await?;
            Ok(started.elapsed())
        }

        async fn postgres_pids(&self) -> Vec<i32> {
            sqlx::query_scalar(
                "select pid from pg_stat_activity where datname = $1 and application_name = 'bindery'",
            )
            .bind(&self.database)
            .fetch_all(self.db())
            .await
            .unwrap_or_default()
        }

        async fn usage(&self) -> Usage {
            let pid = self.server.as_ref().map_or(0, |s| s.pid);
            let mut postgres = HashMap::new();
            for p in self.postgres_pids().await {
                if let Some(t) = procfs::cpu_ticks(p as u32) {
                    postgres.insert(p, t);
                }
            }
            Usage {
                at: Instant::now(),
                bindery: procfs::cpu_ticks(pid).unwrap_or(0),
                postgres,
                generator: procfs::cpu_ticks(std::process::id()).unwrap_or(0),
                machine_busy: procfs::machine_ticks().0,
                wal: sqlx::query_scalar(
                    "select pg_wal_lsn_diff(pg_current_wal_insert_lsn(), '0/0')::bigint",
                )
                .fetch_one(self.db())
                .await
                .unwrap_or(0),
            }
        }

        async fn wait_drained(&self, timeout: Duration) -> anyhow::Result<Duration> {
            let started = Instant::now();
            loop {
                let left: i64 = sqlx::query_scalar(
                    "select count(*) from operation where state = 'in progress'",
                )
                .fetch_one(self.db())
                .await?;
                if left == 0 {
                    return Ok(started.elapsed());
                }
                if started.elapsed() > timeout {
                    bail!("{left} operations still in progress after {timeout:?}");
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }

        /// One measured run: counters around it, the queue drained for async kinds.
        async fn measure(
            &mut self,
            ctx: &Arc<Ctx>,
            stored: u64,
            kind: Kind,
            input: Input,
            mode: Mode,
        ) -> anyhow::Result<(Row, Rec)> {
            let workload = kind.label().to_owned();
            let pid = self.server.as_ref().map_or(0, |s| s.pid);
            self.peak_reset_works = procfs::reset_peak_rss(pid);
            let input = Arc::new(input);
            let before = self.usage().await;
            let outcome = drive(ctx, kind, &input, mode, self.options.seconds, u64::MAX)
                .await
                .map_err(|e| anyhow::anyhow!("{workload}: {e}"))?;
            let mut note = String::new();
            if kind.is_async() {
                let drained = self.wait_drained(Duration::from_secs(300)).await?;
                write!(note, "queue empty {} ms after the run", drained.as_millis())?;
            }
            let after = self.usage().await;
            let peak = procfs::peak_rss_kib(pid);
            let rec = outcome.rec;
            let requests = rec.lat.len() as u64;
            let per_request = |ticks: u64| ticks as f64 / self.ticks / requests.max(1) as f64 * 1e6;
            let postgres_ticks: u64 = after
                .postgres
                .iter()
                .map(|(p, t)| t.saturating_sub(before.postgres.get(p).copied().unwrap_or(0)))
                .sum();
            let wall = after.at.duration_since(before.at).as_secs_f64();
            let lag_p99 = (!rec.lag.is_empty()).then(|| summarize(rec.lag.clone()).p99);
            if kind == Kind::Lifecycle {
                let s = summarize(rec.units_lat.clone());
                if !note.is_empty() {
                    note.push_str("; ");
                }
                write!(
                    note,
                    "{} lifecycles ({:.0}/s), each p50 {} ms p99 {} ms, {:.1} requests each",
                    rec.units,
                    rec.units as f64 / outcome.elapsed.as_secs_f64(),
                    ms(s.p50),
                    ms(s.p99),
                    requests as f64 / rec.units.max(1) as f64
                )?;
            }
            if matches!(kind, Kind::Unbind | Kind::Deprovision)
                && outcome.elapsed < self.options.seconds.mul_f64(0.9)
            {
                if !note.is_empty() {
                    note.push_str("; ");
                }
                note.push_str("ran out of prepared ids before the time was up");
            }
            let row = Row {
                workload,
                kind: Some(kind),
                closed: matches!(mode, Mode::Closed { .. }),
                mode: mode.label(if kind == Kind::Lifecycle {
                    "lifecycles"
                } else {
                    "req"
                }),
                requests,
                elapsed: outcome.elapsed,
                lat: summarize(rec.lat.clone()),
                lag_p99,
                bindery_cpu: per_request(after.bindery.saturating_sub(before.bindery)),
                postgres_cpu: per_request(postgres_ticks),
                generator_cpu: per_request(after.generator.saturating_sub(before.generator)),
                machine_busy: after.machine_busy.saturating_sub(before.machine_busy) as f64
                    / self.ticks,
                our_cpu: (after.bindery.saturating_sub(before.bindery)
                    + postgres_ticks
                    + after.generator.saturating_sub(before.generator))
                    as f64
                    / self.ticks,
                wal_per_request: (after.wal - before.wal) as f64 / requests.max(1) as f64,
                wall,
                peak_rss_kib: peak,
                drain_rate: None,
                note,
            };
            eprintln!(
                "osb: {:>9} stored | {:<24} | {:<22} | {:>7} req {:>9.0} req/s | p50 {:>6} p99 {:>6} p99.9 {:>6} ms | bindery {:>5.0} µs/req",
                group(stored),
                row.workload,
                row.mode,
                row.requests,
                row.rps(),
                ms(row.lat.p50),
                ms(row.lat.p99),
                ms(row.lat.p999),
                row.bindery_cpu
            );
            Ok((row, rec))
        }

        /// Creates `count` instances (or bindings) without measuring, for the runs that consume them.
        async fn prepare(
            &self,
            ctx: &Arc<Ctx>,
            kind: Kind,
            input: Input,
            count: u64,
        ) -> anyhow::Result<Rec> {
            if count == 0 {
                return Ok(Rec::default());
            }
            let outcome = drive(
                ctx,
                kind,
                &Arc::new(input),
                Mode::Closed {
                    connections: self.options.connections,
                },
                Duration::from_secs(600),
                count,
            )
            .await
            .map_err(|e| anyhow::anyhow!("preparing ids: {e}"))?;
            Ok(outcome.rec)
        }

        fn selected(&self, workload: &str) -> bool {
            self.options
                .only
                .as_ref()
                .is_none_or(|only| only.iter().any(|w| w == workload))
        }

        /// Ids to prepare for a consuming workload (unbind, deprovision): enough for a
        /// closed-loop run a little faster than `creation_rate` plus the open-loop run.
        fn ids_needed(&self, kind: Kind, creation_rate: Option<f64>) -> u64 {
            let seconds = self.options.seconds.as_secs_f64();
            let closed = self
                .rates
                .get(&kind)
                .map(|r| r / RATE_FACTOR)
                .or(creation_rate)
                .unwrap_or(1_000.0);
            let open = self
                .rates
                .get(&kind)
                .copied()
                .unwrap_or(closed * RATE_FACTOR);
            ((closed * 1.5 + open) * seconds) as u64 + 100
        }

        fn rate(&mut self, kind: Kind, closed: &Row, units: u64) -> f64 {
            let measured = units as f64 / closed.elapsed.as_secs_f64().max(1e-9);
            *self
                .rates
                .entry(kind)
                .or_insert_with(|| round_rate(measured * RATE_FACTOR))
        }

        async fn level(&mut self, stored: u64) -> anyhow::Result<Level> {
            let prefill = self.prefill(stored).await?;
            self.start_server().await?;
            let (pid, port, startup) = {
                let s = self.server.as_ref().expect("started");
                (s.pid, s.port, s.startup)
            };
            let idle_rss_kib = procfs::rss_kib(pid);
            eprintln!(
                "osb: level {}: server (pid {pid}) ready in {} ms, RSS {} KiB",
                group(stored),
                startup.as_millis(),
                idle_rss_kib.unwrap_or(0)
            );
            let ctx = Arc::new(Ctx::new(
                port,
                &self.service_id,
                &self.plan_id,
                &self.parameters,
            ));
            let closed = Mode::Closed {
                connections: self.options.connections,
            };
            let mut rows = Vec::new();

            // Warm-up (not measured): connections to bindery and bindery's pool.
            for kind in [Kind::Catalog, Kind::Provision] {
                drive(
                    &ctx,
                    kind,
                    &Arc::new(Input::default()),
                    closed,
                    Duration::from_millis(300),
                    u64::MAX,
                )
                .await
                .map_err(|e| anyhow::anyhow!("warm-up: {e}"))?;
            }

            if self.selected("catalog") {
                let (row, _) = self
                    .measure(&ctx, stored, Kind::Catalog, Input::default(), closed)
                    .await?;
                let rate = self.rate(Kind::Catalog, &row, row.requests);
                rows.push(row);
                let (row, _) = self
                    .measure(
                        &ctx,
                        stored,
                        Kind::Catalog,
                        Input::default(),
                        Mode::Open { rate },
                    )
                    .await?;
                rows.push(row);
            }

            // Synchronous provision; the new instances feed bind and deprovision.
            let mut ready = Vec::new();
            let mut provision_rate = None;
            if self.selected("provision") {
                let (row, rec) = self
                    .measure(&ctx, stored, Kind::Provision, Input::default(), closed)
                    .await?;
                provision_rate = Some(row.rps());
                let rate = self.rate(Kind::Provision, &row, row.requests);
                rows.push(row);
                ready.extend(rec.ready);
                let (row, rec) = self
                    .measure(
                        &ctx,
                        stored,
                        Kind::Provision,
                        Input::default(),
                        Mode::Open { rate },
                    )
                    .await?;
                rows.push(row);
                ready.extend(rec.ready);
            }

            // Asynchronous provision: 202s while the worker drains the queue.
            let mut ops = Vec::new();
            if self.selected("async") {
                let (row, rec) = self
                    .measure(&ctx, stored, Kind::ProvisionAsync, Input::default(), closed)
                    .await?;
                let rate = self.rate(Kind::ProvisionAsync, &row, row.requests);
                rows.push(row);
                ops.extend(rec.ops);
                let (row, rec) = self
                    .measure(
                        &ctx,
                        stored,
                        Kind::ProvisionAsync,
                        Input::default(),
                        Mode::Open { rate },
                    )
                    .await?;
                rows.push(row);
                ops.extend(rec.ops);
            }

            // The burst: `--burst` asynchronous provisions queued at once.
            if self.selected("burst") {
                let (row, rec) = self.burst(&ctx, stored).await?;
                rows.push(row);
                ops.extend(rec.ops);
            }

            // last_operation: polls cycle over the instances provisioned asynchronously.
            if self.selected("last_operation") {
                if ops.is_empty() {
                    ops = self
                        .prepare(&ctx, Kind::ProvisionAsync, Input::default(), 2_000)
                        .await?
                        .ops;
                    self.wait_drained(Duration::from_secs(300)).await?;
                }
                let input = || Input {
                    ops: ops.clone(),
                    ..Input::default()
                };
                let (row, _) = self
                    .measure(&ctx, stored, Kind::LastOperation, input(), closed)
                    .await?;
                let rate = self.rate(Kind::LastOperation, &row, row.requests);
                rows.push(row);
                let (row, _) = self
                    .measure(
                        &ctx,
                        stored,
                        Kind::LastOperation,
                        input(),
                        Mode::Open { rate },
                    )
                    .await?;
                rows.push(row);
            }

            // Bind: new binding ids on the synchronously provisioned instances.
            let needs_ready = ["bind", "unbind"].iter().any(|w| self.selected(w));
            if needs_ready && ready.is_empty() {
                ready = self
                    .prepare(&ctx, Kind::Provision, Input::default(), 1_000)
                    .await?
                    .ready;
            }
            let mut bindings = Vec::new();
            let mut bind_rate = None;
            if self.selected("bind") {
                let input = || Input {
                    ready: ready.clone(),
                    ..Input::default()
                };
                let (row, rec) = self
                    .measure(&ctx, stored, Kind::Bind, input(), closed)
                    .await?;
                bind_rate = Some(row.rps());
                let rate = self.rate(Kind::Bind, &row, row.requests);
                rows.push(row);
                bindings.extend(rec.bindings);
                let (row, rec) = self
                    .measure(&ctx, stored, Kind::Bind, input(), Mode::Open { rate })
                    .await?;
                rows.push(row);
                bindings.extend(rec.bindings);
            }

            // Unbind: each binding once; enough are prepared for both runs.
            if self.selected("unbind") {
                let want = self.ids_needed(Kind::Unbind, bind_rate);
                let missing = want.saturating_sub(bindings.len() as u64);
                let input = Input {
                    ready: ready.clone(),
                    ..Input::default()
                };
                bindings.extend(
                    self.prepare(&ctx, Kind::Bind, input, missing)
                        .await?
                        .bindings,
                );
                let (row, _) = self
                    .measure(
                        &ctx,
                        stored,
                        Kind::Unbind,
                        Input {
                            bindings: bindings.clone(),
                            ..Input::default()
                        },
                        closed,
                    )
                    .await?;
                let rate = self.rate(Kind::Unbind, &row, row.requests);
                bindings.drain(..(row.requests as usize).min(bindings.len()));
                rows.push(row);
                let (row, _) = self
                    .measure(
                        &ctx,
                        stored,
                        Kind::Unbind,
                        Input {
                            bindings,
                            ..Input::default()
                        },
                        Mode::Open { rate },
                    )
                    .await?;
                rows.push(row);
            }

            // Deprovision: each synchronously provisioned instance once.
            if self.selected("deprovision") {
                let want = self.ids_needed(Kind::Deprovision, provision_rate);
                let missing = want.saturating_sub(ready.len() as u64);
                ready.extend(
                    self.prepare(&ctx, Kind::Provision, Input::default(), missing)
                        .await?
                        .ready,
                );
                let (row, _) = self
                    .measure(
                        &ctx,
                        stored,
                        Kind::Deprovision,
                        Input {
                            ready: ready.clone(),
                            ..Input::default()
                        },
                        closed,
                    )
                    .await?;
                let rate = self.rate(Kind::Deprovision, &row, row.requests);
                ready.drain(..(row.requests as usize).min(ready.len()));
                rows.push(row);
                let (row, _) = self
                    .measure(
                        &ctx,
                        stored,
                        Kind::Deprovision,
                        Input {
                            ready,
                            ..Input::default()
                        },
                        Mode::Open { rate },
                    )
                    .await?;
                rows.push(row);
            }

            // The lifecycle: provision (async) → poll → bind → unbind → deprovision.
            if self.selected("lifecycle") {
                let (row, rec) = self
                    .measure(&ctx, stored, Kind::Lifecycle, Input::default(), closed)
                    .await?;
                let rate = self.rate(Kind::Lifecycle, &row, rec.units);
                rows.push(row);
                let (row, _) = self
                    .measure(
                        &ctx,
                        stored,
                        Kind::Lifecycle,
                        Input::default(),
                        Mode::Open { rate },
                    )
                    .await?;
                rows.push(row);
            }

            let failed: i64 =
                sqlx::query_scalar("select count(*) from operation where state = 'failed'")
                    .fetch_one(self.db())
                    .await?;
            if failed > 0 {
                bail!("{failed} operations failed");
            }
            self.stop_server().await;
            Ok(Level {
                stored,
                prefill,
                startup,
                idle_rss_kib,
                rows,
            })
        }

        /// `burst` asynchronous provisions sent as fast as 64 connections allow; the
        /// worker drains the queue meanwhile and after.
        async fn burst(&mut self, ctx: &Arc<Ctx>, stored: u64) -> anyhow::Result<(Row, Rec)> {
            let n = self.options.burst;
            let connections = 64;
            let pid = self.server.as_ref().map_or(0, |s| s.pid);
            procfs::reset_peak_rss(pid);
            let before = self.usage().await;
            let started = Instant::now();
            let outcome = drive(
                ctx,
                Kind::ProvisionAsync,
                &Arc::new(Input::default()),
                Mode::Closed { connections },
                Duration::from_secs(600),
                n,
            )
            .await
            .map_err(|e| anyhow::anyhow!("async burst: {e}"))?;
            let submitted = started.elapsed();
            let backlog: i64 =
                sqlx::query_scalar("select count(*) from operation where state = 'in progress'")
                    .fetch_one(self.db())
                    .await?;
            let after_submit = self.wait_drained(Duration::from_secs(600)).await?;
            let total = started.elapsed();
            let after = self.usage().await;
            let ids: Vec<uuid::Uuid> = outcome
                .rec
                .ops
                .iter()
                .filter_map(|(_, op)| uuid::Uuid::parse_str(op).ok())
                .collect();
            let succeeded: i64 = sqlx::query_scalar(
                "select count(*) from operation where operation_id = any($1) and state = 'succeeded'",
            )
            .bind(&ids)
            .fetch_one(self.db())
            .await?;
            if succeeded as u64 != n {
                bail!("async burst: {succeeded} of {n} operations succeeded");
            }
            let rec = outcome.rec;
            let requests = rec.lat.len() as u64;
            let per = |ticks: u64| ticks as f64 / self.ticks / n.max(1) as f64 * 1e6;
            let postgres_ticks: u64 = after
                .postgres
                .iter()
                .map(|(p, t)| t.saturating_sub(before.postgres.get(p).copied().unwrap_or(0)))
                .sum();
            let note = format!(
                "all {} succeeded; last one {:.2} s after the first request = **{:.0} ops/s**; {} queued when the last 202 was sent ({:.2} s), drained in {:.2} s more",
                group(n),
                total.as_secs_f64(),
                n as f64 / total.as_secs_f64(),
                group(backlog as u64),
                submitted.as_secs_f64(),
                after_submit.as_secs_f64()
            );
            let row = Row {
                workload: format!("async burst of {}", group(n)),
                kind: None,
                closed: true,
                mode: format!("closed, {connections} conn"),
                requests,
                elapsed: outcome.elapsed,
                lat: summarize(rec.lat),
                lag_p99: None,
                bindery_cpu: per(after.bindery.saturating_sub(before.bindery)),
                postgres_cpu: per(postgres_ticks),
                generator_cpu: per(after.generator.saturating_sub(before.generator)),
                machine_busy: after.machine_busy.saturating_sub(before.machine_busy) as f64
                    / self.ticks,
                our_cpu: (after.bindery.saturating_sub(before.bindery)
                    + postgres_ticks
                    + after.generator.saturating_sub(before.generator))
                    as f64
                    / self.ticks,
                wal_per_request: (after.wal - before.wal) as f64 / n.max(1) as f64,
                wall: after.at.duration_since(before.at).as_secs_f64(),
                peak_rss_kib: procfs::peak_rss_kib(pid),
                drain_rate: Some(n as f64 / total.as_secs_f64()),
                note,
            };
            eprintln!(
                "osb: {:>9} stored | {} | {}",
                group(stored),
                row.workload,
                row.note
            );
            let ops = Rec {
                ops: rec.ops,
                ..Rec::default()
            };
            Ok((row, ops))
        }

        fn report(&self, facts: &str) -> String {
            let mut out = String::new();
            let o = &self.options;
            let _ = writeln!(out, "## Run\n");
            let _ = writeln!(out, "{facts}");
            let _ = writeln!(
                out,
                "- options: {} s per run, {} closed-loop connections, burst {}, open-loop rate = {} × the first level's closed-loop throughput; bindery log filter: {}; DATABASE_URL sslmode: {}; database settings: {}",
                o.seconds.as_secs_f64(),
                o.connections,
                group(o.burst),
                RATE_FACTOR,
                o.log
                    .clone()
                    .or_else(|| std::env::var("BINDERY_LOG").ok())
                    .unwrap_or_else(|| "info (default)".to_owned()),
                o.sslmode.as_deref().unwrap_or("not set (prefer)"),
                if o.pg_set.is_empty() {
                    "server defaults".to_owned()
                } else {
                    o.pg_set
                        .iter()
                        .map(|(n, v)| format!("{n}={v}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            );
            if let Some(cold) = self.cold_start {
                let _ = writeln!(
                    out,
                    "- cold start (creates the database, applies migrations) to `/readyz` 200: {} ms",
                    cold.as_millis()
                );
            }
            if !self.peak_reset_works {
                let _ = writeln!(
                    out,
                    "- note: /proc/PID/clear_refs could not be written, so peak RSS is the peak since the server started"
                );
            }
            for level in &self.levels {
                let _ = writeln!(
                    out,
                    "\n### {} instances stored\n\nStore topped up in {:.1} s; server start-up to `/readyz` 200: **{} ms**; RSS when ready: {:.1} MiB.\n",
                    group(level.stored),
                    level.prefill.as_secs_f64(),
                    level.startup.as_millis(),
                    level.idle_rss_kib.unwrap_or(0) as f64 / 1024.0
                );
                let _ = writeln!(
                    out,
                    "| workload | load | requests | req/s | p50 ms | p99 ms | p99.9 ms | max ms | non-2xx | bindery CPU µs/req | PostgreSQL CPU µs/req | load generator CPU µs/req | rest of machine (cores) | WAL bytes/req | bindery peak RSS MiB |"
                );
                let _ = writeln!(
                    out,
                    "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
                );
                for r in &level.rows {
                    let _ = writeln!(
                        out,
                        "| {} | {} | {} | {} | {} | {} | {} | {} | 0 | {:.0} | {:.0} | {:.0} | {:.2} | {} | {} |",
                        r.workload,
                        r.mode,
                        group(r.requests),
                        group(r.rps() as u64),
                        ms(r.lat.p50),
                        ms(r.lat.p99),
                        ms(r.lat.p999),
                        ms(r.lat.max),
                        r.bindery_cpu,
                        r.postgres_cpu,
                        r.generator_cpu,
                        r.rest_of_machine(),
                        group(r.wal_per_request.max(0.0) as u64),
                        r.peak_rss_kib
                            .map_or("?".to_owned(), |k| format!("{:.1}", k as f64 / 1024.0)),
                    );
                }
                let notes: Vec<String> = level
                    .rows
                    .iter()
                    .filter_map(|r| {
                        let mut parts = Vec::new();
                        if !r.note.is_empty() {
                            parts.push(r.note.clone());
                        }
                        if let Some(lag) = r.lag_p99.filter(|&l| l >= 2_000) {
                            parts.push(format!(
                                "the generator sent p99 {} ms late (counted in the latency)",
                                ms(lag)
                            ));
                        }
                        (!parts.is_empty())
                            .then(|| format!("- {} ({}): {}", r.workload, r.mode, parts.join("; ")))
                    })
                    .collect();
                if !notes.is_empty() {
                    let _ = writeln!(out, "\n{}", notes.join("\n"));
                }
            }
            out.push_str(&self.targets());
            out
        }

        fn find(&self, level: usize, kind: Kind, closed: bool) -> Option<&Row> {
            self.levels
                .get(level)?
                .rows
                .iter()
                .find(|r| r.kind == Some(kind) && r.closed == closed)
        }

        fn targets(&self) -> String {
            let mut out = String::from("\n### Targets\n\n| target | measured | |\n|---|---|---|\n");
            let mut line = |target: &str, measured: String, ok: Option<bool>| {
                let verdict = match ok {
                    Some(true) => "met",
                    Some(false) => "**not met**",
                    None => "not measured",
                };
                let _ = writeln!(out, "| {target} | {measured} | {verdict} |");
            };
            if let Some(r) = self.find(0, Kind::Catalog, true) {
                line(
                    "catalog ≥ 50,000 req/s",
                    format!("{} req/s", group(r.rps() as u64)),
                    Some(r.rps() >= 50_000.0),
                );
            }
            if let Some(r) = self.find(0, Kind::Provision, true) {
                line(
                    "sync provision ≥ 4,000/s, p99 < 20 ms at 32 connections",
                    format!(
                        "{} /s, p99 {} ms at {} connections",
                        group(r.rps() as u64),
                        ms(r.lat.p99),
                        self.options.connections
                    ),
                    Some(
                        r.rps() >= 4_000.0 && r.lat.p99 < 20_000 && self.options.connections == 32,
                    ),
                );
            }
            if let Some(r) = self.find(0, Kind::LastOperation, true) {
                line(
                    "last_operation ≥ 10,000 req/s",
                    format!("{} req/s", group(r.rps() as u64)),
                    Some(r.rps() >= 10_000.0),
                );
            }
            if let Some(level) = self.levels.first() {
                if let Some(r) = level.rows.iter().find(|r| r.kind.is_none()) {
                    let rate = r.drain_rate.unwrap_or(0.0);
                    line(
                        &format!(
                            "async: {} queued at once all complete, drained ≥ 2,000 ops/s",
                            group(self.options.burst)
                        ),
                        format!("all complete, {rate:.0} ops/s"),
                        Some(rate >= 2_000.0 && self.options.burst >= 10_000),
                    );
                }
                line(
                    "start-up to ready < 1 s",
                    self.levels
                        .iter()
                        .map(|l| format!("{} ms at {}", l.startup.as_millis(), group(l.stored)))
                        .collect::<Vec<_>>()
                        .join(", "),
                    Some(
                        self.levels
                            .iter()
                            .all(|l| l.startup < Duration::from_secs(1)),
                    ),
                );
            }
            let million = self.levels.iter().position(|l| l.stored >= 1_000_000);
            match million {
                Some(i) => {
                    let peak = self.levels[i]
                        .rows
                        .iter()
                        .filter_map(|r| r.peak_rss_kib)
                        .max()
                        .unwrap_or(0);
                    line(
                        "peak RSS < 64 MiB with 1,000,000 stored instances",
                        format!("{:.1} MiB", peak as f64 / 1024.0),
                        Some(peak < 64 * 1024),
                    );
                    let mut worst: Option<(f64, String)> = None;
                    let mut ratios = Vec::new();
                    for base in &self.levels[0].rows {
                        let Some(kind) = base.kind else { continue };
                        if let Some(big) = self.find(i, kind, base.closed) {
                            let ratio = big.lat.p99 as f64 / base.lat.p99.max(1) as f64;
                            ratios.push(format!(
                                "{} {}: {ratio:.2}×",
                                base.workload,
                                if base.closed { "closed" } else { "open" }
                            ));
                            if worst.as_ref().is_none_or(|(w, _)| ratio > *w) {
                                worst = Some((ratio, base.workload.clone()));
                            }
                        }
                    }
                    if let Some((ratio, name)) = worst {
                        line(
                            &format!(
                                "p99 at {} within 1.5× its value at {}",
                                group(self.levels[i].stored),
                                group(self.levels[0].stored)
                            ),
                            format!("worst {ratio:.2}× ({name}); {}", ratios.join(", ")),
                            Some(ratio <= 1.5),
                        );
                    }
                }
                None => {
                    line(
                        "peak RSS < 64 MiB with 1,000,000 stored instances",
                        "run with --scale 1000000".to_owned(),
                        None,
                    );
                    line(
                        "p99 at 1,000,000 within 1.5× its value at 1,000",
                        "run with --scale 1000000".to_owned(),
                        None,
                    );
                }
            }
            out
        }
    }

    /// The catalog bindery ships, with every backend kind served by the no-op backend.
    pub(super) fn noop_catalog(text: &str) -> String {
        text.lines()
            .map(|line| {
                let trimmed = line.trim_start();
                if trimmed.starts_with("kind:") {
                    format!("{}kind: noop", &line[..line.len() - trimmed.len()])
                } else {
                    line.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The first bindable plan of the first bindable service, and parameters for it.
    fn pick_plan() -> anyhow::Result<(String, String, Value)> {
        let catalog: Value = serde_yaml::from_str(CATALOG).context("catalog.yaml")?;
        let services = catalog["services"].as_array().context("no services")?;
        for service in services {
            if service["bindable"] != Value::Bool(true) {
                continue;
            }
            for plan in service["plans"].as_array().into_iter().flatten() {
                if plan["bindable"] == Value::Bool(false)
                    || plan["requires_app"] == Value::Bool(true)
                    || plan["asynchronous"]
                        .as_str()
                        .is_some_and(|a| a != "optional")
                {
                    continue;
                }
                let create = &plan["schemas"]["service_instance"]["create"]["parameters"];
                let parameters = if create["properties"]["connection_limit"].is_object() {
                    serde_json::json!({"connection_limit": 5})
                } else {
                    serde_json::json!({})
                };
                let id = |v: &Value| v.as_str().map(str::to_owned).context("an id");
                return Ok((id(&service["id"])?, id(&plan["id"])?, parameters));
            }
        }
        bail!("catalog.yaml has no bindable plan")
    }

    async fn facts(admin: &PgPool) -> String {
        let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
        let cpuinfo = read("/proc/cpuinfo");
        let model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|m| m.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_default();
        let mem_kib: u64 = read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|r| r.split_whitespace().next()?.parse().ok())
            .unwrap_or(0);
        let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
        let loadavg = read("/proc/loadavg");
        let load: Vec<&str> = loadavg.split_whitespace().take(3).collect();
        let version: String = sqlx::query_scalar("select version()")
            .fetch_one(admin)
            .await
            .unwrap_or_default();
        let mut settings = Vec::new();
        for name in [
            "shared_buffers",
            "synchronous_commit",
            "fsync",
            "max_connections",
        ] {
            let value: String = sqlx::query_scalar(&format!("show {name}"))
                .fetch_one(admin)
                .await
                .unwrap_or_default();
            settings.push(format!("{name}={value}"));
        }
        format!(
            "- machine: {cores} cores ({model}), {:.1} GiB memory, Linux {}; load average at start {}\n- PostgreSQL: {} ({}), same machine\n- load generator: this process, 2 tokio worker threads, reqwest over keep-alive HTTP/1.1",
            mem_kib as f64 / 1024.0 / 1024.0,
            read("/proc/sys/kernel/osrelease").trim(),
            load.join(" "),
            version.split(" on ").next().unwrap_or(&version),
            settings.join(", ")
        )
    }
}
