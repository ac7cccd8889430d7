//! The HTTP edge: routing, extractors, middleware and the mapping of broker outcomes
//! to status codes. No OSB rules and no SQL live here.

mod audit;
mod auth;
mod bindings;
mod body_rate;
mod catalog;
mod connection;
mod errors;
mod extract;
mod health;
mod instances;
mod limits;
pub mod metrics;
pub mod openapi;
mod responses;
pub mod serve;
pub mod tls;
mod version;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderName, Request};
use axum::response::Response;
use axum::{Extension, Router, middleware};
use tower::ServiceBuilder;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;
use utoipa::OpenApi as _;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use utoipa_swagger_ui::SwaggerUi;

pub use auth::Authenticator;
use extract::BodyLimit;
pub use version::MinimumVersion;

use crate::broker::Broker;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct AppState {
    /// The broker service.
    pub broker: Broker,
}

impl HttpOptions {
    /// How the listeners serve connections with these settings.
    pub fn serve_options(&self) -> serve::ServeOptions {
        serve::ServeOptions {
            header_read_timeout: self.header_read_timeout,
            idle_timeout: self.idle_timeout,
            drain_timeout: self.shutdown_grace,
        }
    }
}

/// Edge settings.
#[derive(Debug, Clone)]
pub struct HttpOptions {
    /// Accepted credentials.
    pub authenticator: Arc<Authenticator>,
    /// Lowest accepted version.
    pub min_version: MinimumVersion,
    /// Largest request body in bytes.
    pub max_body_bytes: usize,
    /// Longest a request may take.
    pub request_timeout: Duration,
    /// Most requests in flight.
    pub max_concurrent_requests: usize,
    /// Largest total size of request headers.
    pub max_header_bytes: usize,
    /// Longest a request head may take to arrive (also the grace a body gets before
    /// its pace counts).
    pub header_read_timeout: Duration,
    /// Longest a kept-alive connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// Slowest pace a request body may arrive at, in bytes per second.
    pub min_body_bytes_per_second: u64,
    /// Longest a graceful shutdown waits for open connections.
    pub shutdown_grace: Duration,
    /// Whether `/metrics` is served here (false when it has a listener of its own).
    pub metrics_on_api_listener: bool,
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The OSB routes and the probes, with their OpenAPI annotations. The same lists
/// build the router and the document.
fn api_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(openapi::ApiDoc::openapi())
        .routes(routes!(catalog::get_catalog))
        .routes(routes!(
            instances::get_instance,
            instances::provision,
            instances::update,
            instances::deprovision
        ))
        .routes(routes!(instances::last_operation))
        .routes(routes!(
            bindings::get_binding,
            bindings::bind,
            bindings::unbind
        ))
        .routes(routes!(bindings::last_operation))
}

fn probe_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(health::healthz))
        .routes(routes!(health::readyz))
}

/// `/metrics` alone, for the API listener or a listener of its own.
pub fn metrics_router() -> Router<AppState> {
    Router::new().route("/metrics", axum::routing::get(metrics::render))
}

/// Builds the whole application router.
///
/// The middleware is composed with `ServiceBuilder` into concrete types and boxed once
/// (per OSB route, and once around the whole router) rather than with one
/// `Router::layer` call per middleware: each of those boxes every route again, and a
/// request then cloned every box of the stack below each `from_fn` layer it passed
/// (the largest cost of a catalog request in the profile, docs/benchmarks.md). The
/// order is unchanged: `ServiceBuilder` runs its layers top to bottom.
pub fn router(state: AppState, options: &HttpOptions) -> Router {
    let (osb, _) = api_routes().split_for_parts();
    // Authentication (401) comes before the version check (412), as conformance suites
    // expect, and only a request that passed both is audited. The request bound covers
    // the OSB API only: probes and metrics must answer while every slot is held.
    let osb = osb.route_layer(
        ServiceBuilder::new()
            .layer(middleware::from_fn_with_state(
                limits::Bound {
                    request_timeout: options.request_timeout,
                    in_flight: Arc::new(tokio::sync::Semaphore::new(
                        options.max_concurrent_requests.max(1),
                    )),
                },
                limits::bound,
            ))
            .layer(middleware::from_fn_with_state(
                options.authenticator.clone(),
                auth::require_auth,
            ))
            .layer(middleware::from_fn_with_state(
                options.min_version,
                version::require_version,
            ))
            .layer(middleware::from_fn_with_state(state.clone(), audit::record)),
    );
    let (probes, _) = probe_routes().split_for_parts();
    let document = openapi::document();

    // Inside the router: the metrics layer needs the matched route.
    let routed = Router::new()
        .merge(osb)
        .merge(probes)
        .merge(SwaggerUi::new("/docs").url("/openapi.json", document))
        .merge(if options.metrics_on_api_listener {
            metrics_router()
        } else {
            Router::new()
        })
        .fallback(errors::not_found)
        .method_not_allowed_fallback(errors::method_not_allowed)
        .layer(middleware::from_fn(metrics::track))
        .with_state(state);
    let edge = ServiceBuilder::new()
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    let id = request
                        .headers()
                        .get(&REQUEST_ID)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-");
                    // The path holds platform ids, not secrets; the query string and
                    // the body are never logged.
                    tracing::info_span!("http.request", method = %request.method(), path = %request.uri().path(), request_id = id)
                })
                // One line per request at debug: at info, a platform's polls would fill
                // the log and cost about a tenth of the catalog's throughput. The audit
                // trail has every mutating request; errors are logged where they happen.
                .on_response(|response: &Response, latency: Duration, _span: &tracing::Span| {
                    tracing::debug!(status = response.status().as_u16(), latency_ms = latency.as_millis() as u64, "answered");
                })
                .on_failure(()),
        )
        .layer(middleware::from_fn(errors::echo_request_identity))
        .layer(middleware::from_fn(errors::log_internal_errors))
        .layer(middleware::from_fn_with_state(
            limits::Sizes {
                max_header_bytes: options.max_header_bytes,
                max_body_bytes: options.max_body_bytes,
            },
            limits::refuse_oversized,
        ))
        .layer(middleware::from_fn_with_state(
            body_rate::BodyRate {
                min_bytes_per_second: options.min_body_bytes_per_second,
                grace: options.header_read_timeout,
            },
            body_rate::enforce,
        ))
        .layer(CatchPanicLayer::custom(errors::panic_response))
        .layer(Extension(BodyLimit(options.max_body_bytes)))
        .layer(DefaultBodyLimit::max(options.max_body_bytes))
        .service(routed);
    // One box for the whole edge: what the accept loop clones per request.
    Router::new().fallback_service(edge)
}
