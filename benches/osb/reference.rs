//! The reference role: the least an OSB broker must do per request, written for the
//! benchmark and sharing no code with bindery (only axum, tokio and sqlx, the crates
//! bindery is built on). The driver starts this binary again with
//! `BINDERY_BENCH_ROLE=reference` and compares every bindery workload with the matching
//! one here, in the same run (`docs/benchmarks.md`, "The reference").
//!
//! Every `/v2` request: the `Authorization` header compared in constant time with the
//! configured credentials (SHA-256 of the presented header against SHA-256 of the
//! expected one, compared with `subtle`, so neither a matching prefix nor the length
//! leaks), then `X-Broker-API-Version` (412 unless it is 2.13 or a later 2.x). Then:
//!
//! - `GET /v2/catalog`: a fixed body (bindery's own catalog bytes, read from a file).
//! - `GET /v2/service_instances/{id}/last_operation[?operation=…]`: one SELECT on the
//!   operation bindery wrote: by primary key with the token, the instance's newest
//!   operation (the `operation_by_instance` index) without it.
//! - `PUT /v2/service_instances/{id}` and `PUT …/service_bindings/{id}`: the body's
//!   `service_id` and `plan_id` parsed, one INSERT into a table of the reference's own
//!   in the same database, committed on its own (one durable commit), then 201.
//!
//! No request id, no log line, no metrics, no audit trail, no catalog validation, no
//! intent recorded before a backend call: those are what bindery adds to the ceiling.

use std::io::{Read as _, Write as _};
use std::str::FromStr as _;
use std::sync::Arc;

use anyhow::Context as _;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions as _, PgPool};
use subtle::ConstantTimeEq as _;

use crate::PORT_LINE;

/// The environment variable naming the file with the catalog body to serve.
pub(crate) const CATALOG_VAR: &str = "BINDERY_BENCH_REFERENCE_CATALOG";
/// `application_name` of the reference's database connections, so the driver can
/// read their CPU apart from bindery's.
pub(crate) const APPLICATION_NAME: &str = "bindery-reference";

/// The lowest `X-Broker-API-Version` minor accepted (2.13, bindery's default).
const MIN_MINOR: u32 = 13;

struct Reference {
    pool: PgPool,
    /// SHA-256 of the one `Authorization` value accepted.
    authorization: [u8; 32],
    catalog: Bytes,
}

type Shared = Arc<Reference>;

pub(crate) async fn serve() -> anyhow::Result<()> {
    let env = |name: &str| std::env::var(name).with_context(|| format!("{name} is not set"));
    let options = PgConnectOptions::from_str(&env("DATABASE_URL")?)
        .context("DATABASE_URL")?
        .application_name(APPLICATION_NAME)
        .log_statements(tracing::log::LevelFilter::Off);
    // As bindery's pool: 16 connections, no ping before each checkout.
    let max: u32 = std::env::var("BINDERY_DATABASE_MAX_CONNECTIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let pool = PgPoolOptions::new()
        .max_connections(max)
        .test_before_acquire(false)
        .connect_with(options)
        .await
        .context("connecting to the database")?;
    sqlx::query(
        "create table if not exists bench_reference_change ( \
            change_id   text primary key, \
            instance_id text not null, \
            kind        text not null, \
            service_id  text not null, \
            plan_id     text not null, \
            parameters  jsonb not null default '{}'::jsonb, \
            created_at  timestamptz not null default now())",
    )
    .execute(&pool)
    .await
    .context("creating the reference's table")?;
    let expected = format!(
        "Basic {}",
        base64_encode(
            format!("{}:{}", env("BINDERY_USERNAME")?, env("BINDERY_PASSWORD")?).as_bytes()
        )
    );
    let catalog_body = std::fs::read(env(CATALOG_VAR)?).context("reading the catalog body")?;
    let state = Arc::new(Reference {
        pool,
        authorization: Sha256::digest(expected.as_bytes()).into(),
        catalog: Bytes::from(catalog_body),
    });
    let app = Router::new()
        .route("/v2/catalog", get(catalog))
        .route("/v2/service_instances/{instance_id}", put(provision))
        .route(
            "/v2/service_instances/{instance_id}/last_operation",
            get(last_operation),
        )
        .route(
            "/v2/service_instances/{instance_id}/service_bindings/{binding_id}",
            put(bind),
        )
        .route("/readyz", get(|| async { StatusCode::OK }))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{PORT_LINE}{}", listener.local_addr()?.port())?;
        out.flush()?;
    }
    // Stop when the driver closes our stdin (or dies).
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    std::thread::spawn(move || {
        let mut sink = Vec::new();
        let _ = std::io::stdin().read_to_end(&mut sink);
        let _ = stop.send(());
    });
    axum::serve(listener, app)
        .with_graceful_shutdown(async move {
            let _ = stopped.await;
        })
        .await?;
    Ok(())
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn answer(status: StatusCode, body: serde_json::Value) -> Response {
    (status, axum::Json(body)).into_response()
}

/// What every `/v2` request must pass: credentials, then the API version. `Some`: the
/// answer refusing the request.
fn refusal(state: &Reference, headers: &HeaderMap) -> Option<Response> {
    let presented: [u8; 32] = Sha256::digest(
        headers
            .get(header::AUTHORIZATION)
            .map_or(&b""[..], |v| v.as_bytes()),
    )
    .into();
    if !bool::from(presented.ct_eq(&state.authorization)) {
        let mut response = answer(
            StatusCode::UNAUTHORIZED,
            serde_json::json!({"description": "unauthorized"}),
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Basic realm=\"osb\""),
        );
        return Some(response);
    }
    let version = headers
        .get("x-broker-api-version")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once('.'))
        .and_then(|(major, minor)| Some((major.parse::<u32>().ok()?, minor.parse::<u32>().ok()?)));
    match version {
        Some((2, minor)) if minor >= MIN_MINOR => None,
        _ => Some(answer(
            StatusCode::PRECONDITION_FAILED,
            serde_json::json!({"description": "X-Broker-API-Version 2.13 or a later 2.x is required"}),
        )),
    }
}

async fn catalog(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(refused) = refusal(&state, &headers) {
        return refused;
    }
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.catalog.clone(),
    )
        .into_response()
}

#[derive(Deserialize)]
struct Poll {
    operation: Option<String>,
}

async fn last_operation(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(instance_id): Path<String>,
    Query(poll): Query<Poll>,
) -> Response {
    if let Some(refused) = refusal(&state, &headers) {
        return refused;
    }
    let row: Result<Option<(String, Option<String>)>, sqlx::Error> = match &poll.operation {
        Some(token) => {
            let Ok(id) = uuid::Uuid::parse_str(token) else {
                return answer(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"description": "operation is not a UUID"}),
                );
            };
            sqlx::query_as(
                "select state, description from operation \
                 where operation_id = $1 and instance_id = $2",
            )
            .bind(id)
            .bind(&instance_id)
            .fetch_optional(&state.pool)
            .await
        }
        None => {
            sqlx::query_as(
                "select state, description from operation \
                 where instance_id = $1 order by created_at desc limit 1",
            )
            .bind(&instance_id)
            .fetch_optional(&state.pool)
            .await
        }
    };
    match row {
        Ok(Some((state, description))) => answer(
            StatusCode::OK,
            match description {
                Some(d) => serde_json::json!({"state": state, "description": d}),
                None => serde_json::json!({"state": state}),
            },
        ),
        Ok(None) => answer(StatusCode::NOT_FOUND, serde_json::json!({})),
        Err(_) => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"description": "the database did not answer"}),
        ),
    }
}

/// The part of a provision or bind body every broker must read.
#[derive(Deserialize)]
struct Change {
    service_id: String,
    plan_id: String,
    #[serde(default)]
    parameters: Option<serde_json::Value>,
}

async fn provision(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path(instance_id): Path<String>,
    body: Bytes,
) -> Response {
    if let Some(refused) = refusal(&state, &headers) {
        return refused;
    }
    record(
        &state,
        &instance_id,
        &instance_id,
        "provision",
        &body,
        serde_json::json!({}),
    )
    .await
}

async fn bind(
    State(state): State<Shared>,
    headers: HeaderMap,
    Path((instance_id, binding_id)): Path<(String, String)>,
    body: Bytes,
) -> Response {
    if let Some(refused) = refusal(&state, &headers) {
        return refused;
    }
    let created = serde_json::json!({"credentials": {
        "uri": "noop://bench-user:bench-secret@noop.invalid:1/bench",
        "username": "bench-user",
        "password": "bench-secret",
    }});
    record(&state, &binding_id, &instance_id, "bind", &body, created).await
}

/// One INSERT, committed on its own; 201 with `created` when it is durable.
async fn record(
    state: &Reference,
    change_id: &str,
    instance_id: &str,
    kind: &str,
    body: &[u8],
    created: serde_json::Value,
) -> Response {
    let Ok(change) = serde_json::from_slice::<Change>(body) else {
        return answer(
            StatusCode::BAD_REQUEST,
            serde_json::json!({"description": "the body needs service_id and plan_id"}),
        );
    };
    let inserted = sqlx::query(
        "insert into bench_reference_change \
         (change_id, instance_id, kind, service_id, plan_id, parameters) \
         values ($1, $2, $3, $4, $5, $6)",
    )
    .bind(change_id)
    .bind(instance_id)
    .bind(kind)
    .bind(&change.service_id)
    .bind(&change.plan_id)
    .bind(change.parameters.unwrap_or_else(|| serde_json::json!({})))
    .execute(&state.pool)
    .await;
    match inserted {
        Ok(_) => answer(StatusCode::CREATED, created),
        Err(_) => answer(
            StatusCode::SERVICE_UNAVAILABLE,
            serde_json::json!({"description": "the database did not answer"}),
        ),
    }
}
