//! One client connection's IO, as hyper sees it: the header-read and idle timeouts, the
//! JSON rewrite of hyper's own error answers, and a lingering close.
//!
//! hyper's own `header_read_timeout` starts when hyper starts waiting for a request head,
//! so it would also be the idle keep-alive limit. Clients keep idle connections longer
//! than a head may take to arrive (Go's transport 90 s), so both clocks live here
//! instead: [`Activity`] tells this wrapper whether a request is in flight (the service
//! marks it), and reads tell it when the next head has started.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long a closing connection keeps reading (and discarding) what the client still
/// sends, so that the client reads our last answer instead of a reset.
const LINGER: Duration = Duration::from_secs(2);
/// Most bytes discarded while lingering.
const LINGER_BYTES: usize = 1024 * 1024;

/// The connection's clocks.
#[derive(Debug, Clone, Copy)]
pub(super) struct Timeouts {
    /// Longest a request head may take: from the connection's start for the first
    /// request, from its first byte for later ones.
    pub(super) header_read: Duration,
    /// Longest a kept-alive connection may sit idle between requests.
    pub(super) idle: Duration,
}

/// What the service tells the IO about requests on one connection (HTTP/1 serves them
/// one at a time).
#[derive(Debug)]
pub(super) struct Activity {
    state: Mutex<ActivityState>,
    /// The connection's task, parked on a read while a request was in flight. hyper
    /// does not read again by itself when a response ends, so the idle clock would
    /// never start without this wake-up.
    reader: Mutex<Option<Waker>>,
}

#[derive(Debug, Clone, Copy)]
struct ActivityState {
    /// A request's head was parsed and its response is not finished.
    busy: bool,
    /// Requests finished on this connection.
    finished: u64,
    /// When the connection last became idle (or was accepted).
    idle_since: Instant,
}

impl Activity {
    pub(super) fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(ActivityState {
                busy: false,
                finished: 0,
                idle_since: Instant::now(),
            }),
            reader: Mutex::new(None),
        })
    }

    fn get(&self) -> ActivityState {
        *self.state.lock().expect("not poisoned")
    }

    /// Marks a request in flight until the returned guard is dropped (with the
    /// response body, once hyper has taken all of it, or with the request if the
    /// connection dies).
    pub(super) fn start(self: &Arc<Self>) -> InFlight {
        self.state.lock().expect("not poisoned").busy = true;
        InFlight(self.clone())
    }
}

/// A request in flight; see [`Activity::start`].
#[derive(Debug)]
pub(super) struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        {
            let mut state = self.0.state.lock().expect("not poisoned");
            state.busy = false;
            state.finished += 1;
            state.idle_since = Instant::now();
        }
        if let Some(reader) = self.0.reader.lock().expect("not poisoned").take() {
            reader.wake();
        }
    }
}

/// The IO wrapper; see the module documentation.
#[derive(Debug)]
pub(super) struct Connection<I> {
    io: I,
    activity: Arc<Activity>,
    timeouts: Timeouts,
    timer: Pin<Box<Sleep>>,
    /// Finished requests when this wrapper last looked: a change means a new idle period.
    seen_finished: u64,
    /// When the first byte of the current (not yet parsed) head arrived.
    head_started: Option<Instant>,
    /// A JSON answer replacing hyper's empty one: bytes, how many are written, and how
    /// many bytes of hyper's buffer it stands for.
    replacement: Option<(Vec<u8>, usize, usize)>,
    /// Set once the write side is shut down: reads are then discarded until this.
    linger_until: Option<Instant>,
    discarded: usize,
}

impl<I> Connection<I> {
    pub(super) fn new(io: I, activity: Arc<Activity>, timeouts: Timeouts) -> Self {
        Self {
            io,
            activity,
            timeouts,
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            seen_finished: 0,
            head_started: None,
            replacement: None,
            linger_until: None,
            discarded: 0,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for Connection<I> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let activity = this.activity.get();
        if activity.finished != this.seen_finished {
            this.seen_finished = activity.finished;
            this.head_started = None;
        }
        let before = buf.filled().len();
        if let Poll::Ready(result) = Pin::new(&mut this.io).poll_read(cx, buf) {
            if buf.filled().len() > before && !activity.busy && this.head_started.is_none() {
                this.head_started = Some(Instant::now());
            }
            return Poll::Ready(result);
        }
        // Waiting for a request body: its pace is the body-rate limit's business
        // (`body_rate`), its length the request timeout's.
        if activity.busy {
            *this.activity.reader.lock().expect("not poisoned") = Some(cx.waker().clone());
            return Poll::Pending;
        }
        let (deadline, waiting_for_head) = match this.head_started {
            Some(started) => (started + this.timeouts.header_read, true),
            None if activity.finished == 0 => {
                (activity.idle_since + this.timeouts.header_read, false)
            }
            None => (activity.idle_since + this.timeouts.idle, false),
        };
        // Moving a timer costs a timer-wheel update, and the idle deadline moves later
        // with every request: the timer is only ever moved earlier, and when it fires
        // before the real deadline it is armed again for that deadline.
        if deadline < this.timer.deadline() {
            this.timer.as_mut().reset(deadline);
        }
        loop {
            if this.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
            if Instant::now() >= deadline {
                break;
            }
            this.timer.as_mut().reset(deadline);
        }
        if waiting_for_head {
            Poll::Ready(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "the request head did not arrive in time",
            )))
        } else {
            // An idle connection ends like one the client closed: no answer is owed.
            Poll::Ready(Ok(()))
        }
    }
}

impl<I: AsyncWrite + AsyncRead + Unpin> AsyncWrite for Connection<I> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        // hyper's automatic answer is a bare head: a buffer ending in a body (every
        // answer of bindery's own) is passed on without a look.
        if this.replacement.is_none()
            && buf.ends_with(b"\r\n\r\n")
            && !this.activity.get().busy
            && let Some(replacement) = replace_automatic_error(buf)
        {
            this.replacement = Some((replacement, 0, buf.len()));
        }
        let Some((bytes, written, stands_for)) = &mut this.replacement else {
            return Pin::new(&mut this.io).poll_write(cx, buf);
        };
        // hyper is told its buffer was written only once the whole replacement is.
        while *written < bytes.len() {
            let n = ready!(Pin::new(&mut this.io).poll_write(cx, &bytes[*written..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            *written += n;
        }
        let consumed = *stands_for;
        this.replacement = None;
        Poll::Ready(Ok(consumed))
    }

    /// hyper then hands a response's head and body over as they are instead of copying
    /// the body into its write buffer first (7% of a catalog request's instructions).
    /// hyper's automatic answer (a bare head, see `poll_write`) and a replacement being
    /// written go through `poll_write`, one slice at a time.
    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let last = bufs.iter().rev().find(|b| !b.is_empty());
        if this.replacement.is_some() || last.is_some_and(|b| b.ends_with(b"\r\n\r\n")) {
            let first = bufs
                .iter()
                .find(|b| !b.is_empty())
                .map_or(&[][..], |b| &**b);
            return Pin::new(this).poll_write(cx, first);
        }
        Pin::new(&mut this.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    /// Shuts the write side, then reads and discards what the client still sends for
    /// a short while: closing a socket with unread data makes the kernel send a reset,
    /// which can destroy the answer (a 413, 408 or 431) before the client reads it.
    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let until = match this.linger_until {
            Some(until) => until,
            None => {
                ready!(Pin::new(&mut this.io).poll_shutdown(cx))?;
                let until = Instant::now() + LINGER;
                this.linger_until = Some(until);
                this.timer.as_mut().reset(until);
                until
            }
        };
        if this.timer.deadline() != until {
            this.timer.as_mut().reset(until);
        }
        let mut scratch = [0u8; 8192];
        loop {
            if this.timer.as_mut().poll(cx).is_ready() || this.discarded >= LINGER_BYTES {
                return Poll::Ready(Ok(()));
            }
            let mut read = ReadBuf::new(&mut scratch);
            match Pin::new(&mut this.io).poll_read(cx, &mut read) {
                Poll::Ready(Ok(())) if read.filled().is_empty() => return Poll::Ready(Ok(())),
                Poll::Ready(Ok(())) => this.discarded += read.filled().len(),
                Poll::Ready(Err(_)) => return Poll::Ready(Ok(())),
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

/// hyper answers a request it cannot parse (400, 414, 431) by itself, with a head and
/// no body, as the last bytes of the connection; hyper offers no hook to change it.
/// When `buf` ends with such a head, returns `buf` with that head replaced by a
/// complete JSON answer. bindery's own answers always carry a JSON body and a
/// content type, so they never match.
fn replace_automatic_error(buf: &[u8]) -> Option<Vec<u8>> {
    let start = buf.windows(9).rposition(|w| w == b"HTTP/1.1 ")?;
    let head = std::str::from_utf8(&buf[start..]).ok()?;
    let head = head.strip_suffix("\r\n\r\n")?;
    let mut lines = head.split("\r\n");
    let status: u16 = lines.next()?.get(9..12)?.parse().ok()?;
    if !(400..600).contains(&status) {
        return None;
    }
    let mut empty = false;
    for line in lines {
        let (name, value) = line.split_once(':')?;
        match (name.to_ascii_lowercase().as_str(), value.trim()) {
            ("content-length", "0") => empty = true,
            ("connection" | "date", _) => {}
            _ => return None,
        }
    }
    if !empty {
        return None;
    }
    let description = match status {
        400 => "The request is not valid HTTP/1.1.",
        414 => "The request's path and query are too long.",
        431 => "The request's headers are too large or too many.",
        _ => "The request could not be read.",
    };
    let body = serde_json::json!({ "description": description }).to_string();
    let reason = http_reason(status);
    let mut answer = buf[..start].to_vec();
    answer.extend_from_slice(
        format!(
            "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
    Some(answer)
}

fn http_reason(status: u16) -> &'static str {
    axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
}

#[cfg(test)]
mod tests {
    use super::replace_automatic_error;

    #[test]
    fn hypers_empty_error_head_becomes_a_json_answer() {
        let head = b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\ncontent-length: 0\r\ndate: Wed, 02 Dec 2026 06:43:40 GMT\r\n\r\n";
        let answer = String::from_utf8(replace_automatic_error(head).unwrap()).unwrap();
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"));
        assert!(head.contains(&format!("content-length: {}", body.len())));
        let body: serde_json::Value = serde_json::from_str(body).unwrap();
        assert!(body["description"].is_string());
    }

    #[test]
    fn an_earlier_answer_in_the_same_buffer_is_kept() {
        let buf = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\n\r\n";
        let answer = String::from_utf8(replace_automatic_error(buf).unwrap()).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(answer.contains("{}HTTP/1.1 400 Bad Request\r\ncontent-type: application/json"));
    }

    #[test]
    fn bindery_answers_are_left_alone() {
        for buf in [
            &b"HTTP/1.1 400 Bad Request\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}"[..],
            b"HTTP/1.1 404 Not Found\r\ncontent-type: application/json\r\ncontent-length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n",
            b"{\"description\": \"x\"}",
        ] {
            assert!(replace_automatic_error(buf).is_none());
        }
    }
}
