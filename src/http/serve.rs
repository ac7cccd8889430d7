//! The accept loop: serves a router over HTTP/1.1 on a plain or TLS listener, one task
//! per connection, with the timeouts of [`connection`](super::connection) and a
//! graceful shutdown that waits for requests in flight, but never longer than its bound.
//!
//! `axum::serve` is not used: it gives hyper no timer and no way to bound idle or
//! half-sent connections, and it cannot rewrite hyper's own error answers.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::Request;
use axum::serve::Listener;
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::TokioIo;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::task::JoinSet;
use tower::ServiceExt as _;

use super::connection::{Activity, Connection, InFlight, Timeouts};

/// How connections are served.
#[derive(Debug, Clone, Copy)]
pub struct ServeOptions {
    /// Longest a request head may take to arrive.
    pub header_read_timeout: Duration,
    /// Longest a kept-alive connection may sit idle.
    pub idle_timeout: Duration,
    /// Longest a graceful shutdown waits for open connections; then they are closed.
    pub drain_timeout: Duration,
}

/// Serves `router` on `listener` until `shutdown` completes, then stops accepting,
/// lets requests in flight finish (closing idle connections at once) and returns when
/// every connection is closed or `drain_timeout` has passed.
pub async fn serve<L: Listener>(
    mut listener: L,
    router: Router,
    options: ServeOptions,
    shutdown: impl Future<Output = ()>,
) {
    let timeouts = Timeouts {
        header_read: options.header_read_timeout,
        idle: options.idle_timeout,
    };
    // No hyper timer: both clocks are kept by `Connection`, which knows whether a
    // request is in flight (hyper's header_read_timeout would also cut idle keep-alive).
    let builder = http1::Builder::new();
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (io, _peer) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = &mut shutdown => break,
        };
        // Reap finished connection tasks so the set does not grow.
        while connections.try_join_next().is_some() {}
        let activity = Activity::new();
        let io = TokioIo::new(Connection::new(io, activity.clone(), timeouts));
        let service = hyper::service::service_fn({
            let router = router.clone();
            move |request: Request<Incoming>| {
                let in_flight = activity.start();
                let answered = router.clone().oneshot(request);
                async move {
                    let response = answered.await?;
                    Ok::<_, Infallible>(response.map(|body| Tracked {
                        body,
                        _in_flight: in_flight,
                    }))
                }
            }
        });
        let served = graceful.watch(builder.serve_connection(io, service));
        connections.spawn(async move {
            if let Err(e) = served.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    drop(listener);
    if tokio::time::timeout(options.drain_timeout, graceful.shutdown())
        .await
        .is_err()
    {
        tracing::warn!(
            open = connections.len(),
            "connections still open when the shutdown grace ended; closing them"
        );
    }
    connections.shutdown().await;
}

/// A response body that keeps its request marked in flight until hyper has taken all
/// of it (or dropped it), so the connection's idle clock starts only then.
#[derive(Debug)]
struct Tracked {
    body: Body,
    _in_flight: InFlight,
}

impl HttpBody for Tracked {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
