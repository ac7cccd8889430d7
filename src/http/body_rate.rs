//! The minimum pace of a request body: after a grace period, a body must keep arriving at
//! a configured number of bytes per second on average, or the request is answered 408
//! and its connection closed. Without it, a client trickling a body would hold a
//! request slot until the request deadline.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use serde_json::json;
use tokio::time::{Instant, Sleep};

/// The minimum pace.
#[derive(Debug, Clone, Copy)]
pub struct BodyRate {
    /// Bytes per second a body must average once the grace period is over.
    pub min_bytes_per_second: u64,
    /// Time a body gets before the pace counts.
    pub grace: Duration,
}

/// Middleware: wraps the request body in the pace check and turns a body that fell
/// behind into a JSON 408 with `connection: close`.
pub async fn enforce(State(rate): State<BodyRate>, request: Request, next: Next) -> Response {
    let too_slow = Arc::new(AtomicBool::new(false));
    let request = request.map(|body| {
        Body::new(Paced {
            body,
            rate,
            started: Instant::now(),
            received: 0,
            timer: None,
            too_slow: too_slow.clone(),
        })
    });
    let response = next.run(request).await;
    if !too_slow.load(Ordering::Relaxed) {
        return response;
    }
    (
        StatusCode::REQUEST_TIMEOUT,
        // The rest of the body may still be on its way: the connection cannot be reused.
        [(header::CONNECTION, "close")],
        Json(json!({"description": format!(
            "The request body arrived slower than {} bytes per second.",
            rate.min_bytes_per_second
        )})),
    )
        .into_response()
}

/// A request body that fails once it falls behind the pace.
struct Paced {
    body: Body,
    rate: BodyRate,
    started: Instant,
    received: u64,
    timer: Option<Pin<Box<Sleep>>>,
    too_slow: Arc<AtomicBool>,
}

impl Paced {
    /// When the body falls behind: every byte received buys 1/rate seconds.
    fn deadline(&self) -> Instant {
        let rate = self.rate.min_bytes_per_second.max(1);
        self.started + self.rate.grace + Duration::from_secs_f64(self.received as f64 / rate as f64)
    }
}

impl HttpBody for Paced {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            if let Some(Ok(frame)) = &frame
                && let Some(data) = frame.data_ref()
            {
                this.received += data.len() as u64;
            }
            return Poll::Ready(frame);
        }
        let deadline = this.deadline();
        let timer = this
            .timer
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if timer.deadline() != deadline {
            timer.as_mut().reset(deadline);
        }
        if timer.as_mut().poll(cx).is_pending() {
            return Poll::Pending;
        }
        this.too_slow.store(true, Ordering::Relaxed);
        Poll::Ready(Some(Err(axum::Error::new(
            "the request body arrived too slowly",
        ))))
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
