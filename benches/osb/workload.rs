//! The workloads: what one unit of each sends, and what a run records.

use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::client::Ctx;

/// Delay between two polls of the same operation in the lifecycle workload.
const POLL_INTERVAL: Duration = Duration::from_millis(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Kind {
    Catalog,
    Provision,
    ProvisionAsync,
    LastOperation,
    /// last_operation without the `operation` token (a platform that lost it, e.g.
    /// after a restart): the instance's newest operation.
    LastOperationLatest,
    Bind,
    Unbind,
    Deprovision,
    Lifecycle,
}

impl Kind {
    pub(crate) fn label(self) -> &'static str {
        match self {
            Kind::Catalog => "catalog",
            Kind::Provision => "provision (sync, 201)",
            Kind::ProvisionAsync => "provision (async, 202)",
            Kind::LastOperation => "last_operation",
            Kind::LastOperationLatest => "last_operation without `operation`",
            Kind::Bind => "bind",
            Kind::Unbind => "unbind",
            Kind::Deprovision => "deprovision",
            Kind::Lifecycle => "lifecycle",
        }
    }

    pub(crate) fn is_async(self) -> bool {
        matches!(self, Kind::ProvisionAsync | Kind::Lifecycle)
    }
}

/// The ids a run works on, fixed when it starts.
#[derive(Default)]
pub(crate) struct Input {
    pub(crate) ready: Vec<String>,
    pub(crate) ops: Vec<(String, String)>,
    pub(crate) bindings: Vec<(String, String)>,
}

/// What one generator task saw.
#[derive(Default)]
pub(crate) struct Rec {
    /// Per request, µs (open loop: the first request of a unit from its scheduled time).
    pub(crate) lat: Vec<u64>,
    /// Open loop: how late each unit was sent after its scheduled time, µs.
    pub(crate) lag: Vec<u64>,
    /// Lifecycle: whole unit, µs from its (scheduled) start.
    pub(crate) units_lat: Vec<u64>,
    pub(crate) units: u64,
    pub(crate) ready: Vec<String>,
    pub(crate) ops: Vec<(String, String)>,
    pub(crate) bindings: Vec<(String, String)>,
    pub(crate) end: Option<Instant>,
}

impl Rec {
    pub(crate) fn merge(&mut self, mut other: Rec) {
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

pub(crate) fn micros(since: Instant) -> u64 {
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
pub(crate) async fn run_unit(
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
        Kind::Provision => provision(ctx, start, rec).await?,
        Kind::ProvisionAsync => {
            let id = new_id();
            let body = provision_async(ctx, &id).await?;
            rec.lat.push(micros(start));
            rec.ops.push((id, operation_of(&body)?));
        }
        Kind::LastOperation => last_operation(ctx, input, k, true, start, rec).await?,
        Kind::LastOperationLatest => last_operation(ctx, input, k, false, start, rec).await?,
        Kind::Bind => bind(ctx, input, k, start, rec).await?,
        Kind::Unbind => return unbind(ctx, input, k, start, rec).await,
        Kind::Deprovision => return deprovision(ctx, input, k, start, rec).await,
        Kind::Lifecycle => lifecycle(ctx, start, rec).await?,
    }
    Ok(true)
}

async fn provision(ctx: &Ctx, start: Instant, rec: &mut Rec) -> Result<(), String> {
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
    Ok(())
}

/// Sends an asynchronous provision of instance `id`; the 202's body.
async fn provision_async(ctx: &Ctx, id: &str) -> Result<String, String> {
    let path = format!("/v2/service_instances/{id}?accepts_incomplete=true");
    ctx.call(
        Method::PUT,
        &path,
        Some(ctx.provision_body),
        StatusCode::ACCEPTED,
        true,
    )
    .await
}

/// A poll of one of the asynchronously provisioned instances, with the operation token
/// of its 202 when `token`.
async fn last_operation(
    ctx: &Ctx,
    input: &Input,
    k: usize,
    token: bool,
    start: Instant,
    rec: &mut Rec,
) -> Result<(), String> {
    if input.ops.is_empty() {
        return Err("no asynchronously provisioned instance to poll".to_owned());
    }
    let (id, op) = &input.ops[k % input.ops.len()];
    let path = if token {
        format!("/v2/service_instances/{id}/last_operation?operation={op}")
    } else {
        format!("/v2/service_instances/{id}/last_operation")
    };
    ctx.call(Method::GET, &path, None, StatusCode::OK, false)
        .await?;
    rec.lat.push(micros(start));
    Ok(())
}

async fn bind(
    ctx: &Ctx,
    input: &Input,
    k: usize,
    start: Instant,
    rec: &mut Rec,
) -> Result<(), String> {
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
    Ok(())
}

/// `Ok(false)`: every binding of the run is unbound already.
async fn unbind(
    ctx: &Ctx,
    input: &Input,
    k: usize,
    start: Instant,
    rec: &mut Rec,
) -> Result<bool, String> {
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
    Ok(true)
}

/// `Ok(false)`: every instance of the run is deprovisioned already.
async fn deprovision(
    ctx: &Ctx,
    input: &Input,
    k: usize,
    start: Instant,
    rec: &mut Rec,
) -> Result<bool, String> {
    let Some(instance) = input.ready.get(k) else {
        return Ok(false);
    };
    let path = format!("/v2/service_instances/{instance}{}", ctx.delete_query);
    ctx.call(Method::DELETE, &path, None, StatusCode::OK, false)
        .await?;
    rec.lat.push(micros(start));
    Ok(true)
}

/// provision (async) → poll until succeeded → bind → unbind → deprovision
async fn lifecycle(ctx: &Ctx, start: Instant, rec: &mut Rec) -> Result<(), String> {
    let id = new_id();
    let body = provision_async(ctx, &id).await?;
    rec.lat.push(micros(start));
    let op = operation_of(&body)?;
    let poll = format!("/v2/service_instances/{id}/last_operation?operation={op}");
    poll_until_succeeded(ctx, &poll, rec).await?;
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
    Ok(())
}

/// Polls `poll` (a last_operation path) every `POLL_INTERVAL` until the operation
/// succeeded; any other end, or 60 s in progress, is an error.
async fn poll_until_succeeded(ctx: &Ctx, poll: &str, rec: &mut Rec) -> Result<(), String> {
    let mut polls = 0;
    loop {
        let t = Instant::now();
        let body = ctx
            .call(Method::GET, poll, None, StatusCode::OK, true)
            .await?;
        rec.lat.push(micros(t));
        if body.contains("\"succeeded\"") {
            return Ok(());
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
}
