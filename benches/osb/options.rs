//! The bench's command line.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, bail};

/// Workload names for `--only`.
pub(crate) const WORKLOADS: &[&str] = &[
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

pub(crate) const USAGE: &str =
    "usage: cargo bench --bench osb -- [--quick] [--scale N[,N...]] [--base N] \
[--connections C] [--seconds S] [--burst N] [--log FILTER] [--out FILE] [--rounds N]
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
  --rounds N       rounds of the side-by-side comparison with the reference server
                   at the first level, the order alternating (default 3; 0: none)
Environment: BINDERY_BENCH_DATABASE_SERVER (default postgres://postgres@127.0.0.1:5432);
other BINDERY_* variables reach the server (e.g. BINDERY_DATABASE_MAX_CONNECTIONS).";

#[derive(Debug, Clone)]
pub(crate) struct Options {
    pub(crate) quick: bool,
    pub(crate) base: u64,
    pub(crate) scales: Vec<u64>,
    pub(crate) connections: usize,
    pub(crate) seconds: Duration,
    pub(crate) burst: u64,
    pub(crate) log: Option<String>,
    pub(crate) out: Option<PathBuf>,
    pub(crate) server_url: String,
    pub(crate) only: Option<Vec<String>>,
    pub(crate) pg_set: Vec<(String, String)>,
    pub(crate) sslmode: Option<String>,
    /// Rounds of the comparison with the reference (0: no reference).
    pub(crate) rounds: usize,
}

impl Options {
    pub(crate) fn parse(args: &[String]) -> anyhow::Result<Self> {
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
            rounds: 3,
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
                "--rounds" => o.rounds = value("--rounds")?.parse()?,
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
