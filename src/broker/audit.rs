//! The audit trail writer: a request hands its audit event to a background task that
//! writes events in batches, so the trail costs no round trip on the request path.

use tokio::sync::{mpsc, oneshot};

use crate::store::{AuditEvent, Store};

/// Most events written by one statement.
const BATCH: usize = 512;

/// Events waiting to be written; a request waits for room beyond this (backpressure
/// when the database is slow, rather than unbounded memory).
const QUEUE: usize = 8192;

enum Message {
    Event(AuditEvent),
    Flush(oneshot::Sender<()>),
}

/// Sends events to the writer task. Cheap to clone; the task ends when the last
/// clone is dropped, after writing what it holds.
#[derive(Debug, Clone)]
pub struct AuditTrail {
    sender: mpsc::Sender<Message>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Event(e) => write!(f, "Event({})", e.action),
            Self::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl AuditTrail {
    /// Starts the writer task on the current runtime.
    pub fn start(store: Store) -> Self {
        let (sender, receiver) = mpsc::channel(QUEUE);
        tokio::spawn(write_batches(store, receiver));
        Self { sender }
    }

    /// Queues an event. Waits only when the queue is full.
    pub async fn record(&self, event: AuditEvent) {
        if self.sender.send(Message::Event(event)).await.is_err() {
            tracing::warn!("the audit writer has stopped; an audit event was not written");
        }
    }

    /// Returns once every event queued before the call has been written (or its
    /// write has failed and been logged): at shutdown, and in tests.
    pub async fn flush(&self) {
        let (done, written) = oneshot::channel();
        if self.sender.send(Message::Flush(done)).await.is_ok() {
            let _ = written.await;
        }
    }
}

async fn write_batches(store: Store, mut receiver: mpsc::Receiver<Message>) {
    let mut messages = Vec::with_capacity(BATCH);
    let mut events = Vec::with_capacity(BATCH);
    let mut flushed = Vec::new();
    // `recv_many` takes whatever is queued (at least one message) without waiting for
    // more: an idle broker writes each event at once, a busy one in batches.
    while receiver.recv_many(&mut messages, BATCH).await > 0 {
        for message in messages.drain(..) {
            match message {
                Message::Event(event) => events.push(event),
                Message::Flush(done) => flushed.push(done),
            }
        }
        if !events.is_empty() {
            if let Err(e) = store.record_audit_events(&events).await {
                metrics::counter!("bindery_audit_events_lost_total").increment(events.len() as u64);
                tracing::warn!(error = %e, count = events.len(), "could not write audit events");
            }
            events.clear();
        }
        for done in flushed.drain(..) {
            let _ = done.send(());
        }
    }
}
