//! The connection edge, over raw TCP: slow and idle clients are cut off, probes answer
//! while the OSB API is saturated, oversized bodies are refused up front, and every
//! answer (hyper's own parse errors included) is a JSON object with a description.

use std::time::{Duration, Instant};

use bindery::config::Settings;
use bindery::startup::Application;
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;

use crate::helpers::*;

/// `host:port` of a test broker.
fn address(app: &TestApp) -> String {
    app.base.trim_start_matches("http://").to_owned()
}

/// A raw HTTP answer: status, lower-cased head and body.
#[derive(Debug)]
struct Raw {
    status: u16,
    head: String,
    body: String,
}

impl Raw {
    fn parse(bytes: &[u8]) -> Self {
        let text = String::from_utf8_lossy(bytes).into_owned();
        let (head, body) = text
            .split_once("\r\n\r\n")
            .unwrap_or_else(|| panic!("no complete answer: {text:?}"));
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line: {head:?}"));
        Self {
            status,
            head: head.to_ascii_lowercase(),
            body: body.to_owned(),
        }
    }

    /// Asserts the answer is a complete JSON error: content type, length, description.
    fn assert_json_error(&self, status: u16) {
        assert_eq!(self.status, status, "{self:?}");
        assert!(
            self.head.contains("\r\ncontent-type: application/json"),
            "{self:?}"
        );
        assert!(
            self.head
                .contains(&format!("\r\ncontent-length: {}", self.body.len())),
            "the length matches the body: {self:?}"
        );
        let body: Value = serde_json::from_str(&self.body).unwrap_or(Value::Null);
        assert!(
            body["description"].as_str().is_some_and(|d| !d.is_empty()),
            "{self:?}"
        );
    }
}

/// Sends `request` on a new connection (from a task of its own, so that a broker that
/// answers before it has read everything is not blocked) and reads until the broker
/// closes the connection, at most `wait`.
async fn exchange(address: &str, request: Vec<u8>, wait: Duration) -> Raw {
    let stream = TcpStream::connect(address).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let writer = tokio::spawn(async move {
        let _ = write.write_all(&request).await;
        // Keep the write half open: a half-close would look like a client that left.
        tokio::time::sleep(Duration::from_secs(30)).await;
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(wait, read.read_to_end(&mut answer)).await;
    writer.abort();
    assert!(
        read.is_ok(),
        "the broker did not answer and close within {wait:?}; read so far: {:?}",
        String::from_utf8_lossy(&answer)
    );
    Raw::parse(&answer)
}

/// Waits until the broker closes `stream`, at most `wait`; true when it did.
async fn closed_within(stream: &mut TcpStream, wait: Duration) -> bool {
    let mut buf = [0u8; 1024];
    let deadline = Instant::now() + wait;
    loop {
        match tokio::time::timeout_at(deadline.into(), stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => continue,
        }
    }
}

fn edge_env(extra: &[(&str, &str)]) -> Vec<(String, String)> {
    extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

async fn spawn_edge(extra: &[(&str, &str)]) -> TestApp {
    TestApp::spawn_with(Spawn {
        env: edge_env(extra),
        ..Spawn::default()
    })
    .await
}

// --- Item 3: slow and idle connections -----------------------------------------------

#[tokio::test]
async fn a_connection_that_sends_nothing_is_closed_after_the_header_read_timeout() {
    let app = spawn_edge(&[("BINDERY_HEADER_READ_TIMEOUT_SECONDS", "1")]).await;
    let mut stream = TcpStream::connect(address(&app)).await.unwrap();
    let started = Instant::now();
    assert!(
        closed_within(&mut stream, Duration::from_secs(4)).await,
        "a silent connection stays open"
    );
    assert!(started.elapsed() >= Duration::from_millis(900));
}

#[tokio::test]
async fn a_request_head_sent_one_byte_at_a_time_is_cut_off_at_the_header_read_timeout() {
    let app = spawn_edge(&[("BINDERY_HEADER_READ_TIMEOUT_SECONDS", "1")]).await;
    let stream = TcpStream::connect(address(&app)).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let started = Instant::now();
    // A head that never ends: one byte every 100 ms for 10 s.
    let trickle = tokio::spawn(async move {
        let head = "GET /healthz HTTP/1.1\r\n".to_owned() + &"X-Slow: yes\r\n".repeat(20);
        for byte in head.bytes() {
            if write.write_all(&[byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    });
    let mut buf = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(4), read.read_to_end(&mut buf)).await;
    trickle.abort();
    assert!(closed.is_ok(), "a trickled head kept the connection open");
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn an_idle_keep_alive_connection_outlives_the_header_read_timeout_then_closes() {
    let app = spawn_edge(&[
        ("BINDERY_HEADER_READ_TIMEOUT_SECONDS", "1"),
        ("BINDERY_IDLE_TIMEOUT_SECONDS", "3"),
    ])
    .await;
    let mut stream = TcpStream::connect(address(&app)).await.unwrap();
    let request = b"GET /healthz HTTP/1.1\r\nHost: bindery\r\n\r\n";
    for _ in 0..2 {
        stream.write_all(request).await.unwrap();
        let mut buf = vec![0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(2), stream.read(&mut buf))
            .await
            .expect("an answer")
            .unwrap();
        assert!(
            String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&buf[..n])
        );
        // Idle for longer than the header read timeout, shorter than the idle timeout.
        tokio::time::sleep(Duration::from_millis(1800)).await;
    }
    // Already 1.8 s idle; the idle timeout (3 s) closes it.
    assert!(
        closed_within(&mut stream, Duration::from_secs(3)).await,
        "an idle connection stays open past the idle timeout"
    );
}

#[tokio::test]
async fn a_body_slower_than_the_minimum_rate_gets_a_json_408_and_the_connection_closes() {
    let app = spawn_edge(&[
        ("BINDERY_HEADER_READ_TIMEOUT_SECONDS", "1"),
        ("BINDERY_MIN_BODY_BYTES_PER_SECOND", "100"),
    ])
    .await;
    let stream = TcpStream::connect(address(&app)).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    let head = format!(
        "PUT /v2/service_instances/{} HTTP/1.1\r\nHost: bindery\r\nAuthorization: {}\r\n\
         X-Broker-API-Version: 2.13\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n",
        new_id(),
        basic(USER, PASSWORD)
    );
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        write.write_all(head.as_bytes()).await.unwrap();
        for _ in 0..100 {
            if write.write_all(b" ").await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    });
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), read.read_to_end(&mut answer)).await;
    trickle.abort();
    assert!(
        closed.is_ok(),
        "a slow body holds the request: {:?}",
        String::from_utf8_lossy(&answer)
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    let raw = Raw::parse(&answer);
    raw.assert_json_error(408);
    assert!(raw.head.contains("\r\nconnection: close"), "{raw:?}");
    assert!(app.backend.calls().is_empty());
}

#[tokio::test]
async fn graceful_shutdown_does_not_wait_for_connections_that_clients_hold() {
    let dir = std::env::temp_dir().join(format!("bindery-edge-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let catalog = dir.join("catalog.yaml");
    std::fs::write(
        &catalog,
        crate::support::TEST_CATALOG.replace("delay_ms: 300", "delay_ms: 8000"),
    )
    .unwrap();
    let env = [
        (
            "DATABASE_URL",
            format!("sqlite://{}", dir.join("bindery.db").display()),
        ),
        ("BINDERY_LISTEN", "127.0.0.1:0".to_owned()),
        ("BINDERY_CATALOG", catalog.display().to_string()),
        ("BINDERY_USERNAME", USER.to_owned()),
        ("BINDERY_PASSWORD", PASSWORD.to_owned()),
        ("BINDERY_ENCRYPTION_KEYS", TEST_KEY.to_owned()),
        ("BINDERY_REQUEST_TIMEOUT_SECONDS", "30".to_owned()),
        ("BINDERY_HEADER_READ_TIMEOUT_SECONDS", "20".to_owned()),
        ("BINDERY_SHUTDOWN_GRACE_SECONDS", "1".to_owned()),
    ];
    let settings = Settings::load_from(None, |n| {
        env.iter().find(|(k, _)| *k == n).map(|(_, v)| v.clone())
    })
    .unwrap();
    let mut registry = bindery::backends::BackendRegistry::new();
    registry.register(
        "recording",
        std::sync::Arc::new(crate::support::RecordingBackend::default()),
    );
    let app = Application::build(&settings, registry).await.unwrap();
    let address = format!("127.0.0.1:{}", app.port());
    let stop = CancellationToken::new();
    let served = tokio::spawn(app.run_until_stopped(stop.clone(), false));

    // One client holds a request in flight (an 8 s backend call), another a head that
    // never ends.
    let slow = tokio::spawn({
        let url = format!("http://{address}/v2/service_instances/{}", new_id());
        async move {
            reqwest::Client::new()
                .put(url)
                .basic_auth(USER, Some(PASSWORD))
                .header("X-Broker-API-Version", "2.13")
                .json(&provision_body("svc-db", "plan-slow"))
                .send()
                .await
        }
    });
    let mut partial = TcpStream::connect(&address).await.unwrap();
    partial
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: bin")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;

    let started = Instant::now();
    stop.cancel();
    let finished = tokio::time::timeout(Duration::from_secs(5), served).await;
    assert!(
        finished.is_ok(),
        "the shutdown waited for connections clients hold"
    );
    assert!(started.elapsed() < Duration::from_secs(4));
    slow.abort();
    std::fs::remove_dir_all(&dir).ok();
}

// --- Item 4: probes are not behind the OSB request limit -------------------------------

#[tokio::test]
async fn probes_and_metrics_answer_while_every_request_slot_is_held() {
    let app = TestApp::spawn_with(Spawn {
        env: edge_env(&[
            ("BINDERY_MAX_CONCURRENT_REQUESTS", "2"),
            ("BINDERY_REQUEST_TIMEOUT_SECONDS", "20"),
        ]),
        catalog: crate::support::TEST_CATALOG.replace("delay_ms: 300", "delay_ms: 4000"),
        ..Spawn::default()
    })
    .await;
    let slow = |id: String| {
        let (base, client) = (app.base.clone(), app.client.clone());
        tokio::spawn(async move {
            client
                .put(format!("{base}/v2/service_instances/{id}"))
                .basic_auth(USER, Some(PASSWORD))
                .header("X-Broker-API-Version", "2.13")
                .json(&provision_body("svc-db", "plan-slow"))
                .send()
                .await
                .map(|r| r.status())
        })
    };
    let held = [slow(new_id()), slow(new_id())];
    tokio::time::sleep(Duration::from_millis(500)).await;
    // The OSB API is saturated...
    assert_eq!(app.catalog().await.status, StatusCode::SERVICE_UNAVAILABLE);
    // ...and the probes still answer, at once.
    for path in ["/healthz", "/readyz", "/metrics"] {
        let started = Instant::now();
        let r = app.send_with(Method::GET, path, None, &[], false).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.raw);
        assert!(started.elapsed() < Duration::from_secs(1), "{path}");
    }
    for h in held {
        assert_eq!(h.await.unwrap().unwrap(), StatusCode::CREATED);
    }
}

// --- Item 5: an oversized Content-Length ------------------------------------------------

#[tokio::test]
async fn an_oversized_content_length_gets_413_at_once_without_taking_a_slot() {
    let app = TestApp::spawn_with(Spawn {
        env: edge_env(&[("BINDERY_MAX_CONCURRENT_REQUESTS", "1")]),
        catalog: crate::support::TEST_CATALOG.replace("delay_ms: 300", "delay_ms: 3000"),
        ..Spawn::default()
    })
    .await;
    // The only slot is taken by a slow provision.
    let held = {
        let (base, client) = (app.base.clone(), app.client.clone());
        tokio::spawn(async move {
            client
                .put(format!("{base}/v2/service_instances/{}", new_id()))
                .basic_auth(USER, Some(PASSWORD))
                .header("X-Broker-API-Version", "2.13")
                .json(&provision_body("svc-db", "plan-slow"))
                .send()
                .await
                .map(|r| r.status())
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let request = format!(
        "PUT /v2/service_instances/{} HTTP/1.1\r\nHost: bindery\r\nAuthorization: {}\r\n\
         X-Broker-API-Version: 2.13\r\nContent-Type: application/json\r\nContent-Length: 100000000\r\n\r\n{{",
        new_id(),
        basic(USER, PASSWORD)
    );
    let started = Instant::now();
    let raw = exchange(&address(&app), request.into_bytes(), Duration::from_secs(2)).await;
    raw.assert_json_error(413);
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(held.await.unwrap().unwrap(), StatusCode::CREATED);
}

// --- Item 6: errors hyper produces itself -------------------------------------------------

#[tokio::test]
async fn more_than_a_hundred_headers_get_a_json_431() {
    let app = spawn_edge(&[]).await;
    let mut request = "GET /v2/catalog HTTP/1.1\r\nHost: bindery\r\n".to_owned();
    for i in 0..120 {
        request.push_str(&format!("X-Header-{i}: {i}\r\n"));
    }
    request.push_str("\r\n");
    let raw = exchange(&address(&app), request.into_bytes(), Duration::from_secs(3)).await;
    raw.assert_json_error(431);
}

#[tokio::test]
async fn one_huge_header_gets_a_json_431() {
    let app = spawn_edge(&[]).await;
    let request = format!(
        "GET /v2/catalog HTTP/1.1\r\nHost: bindery\r\nX-Huge: {}\r\n\r\n",
        "a".repeat(1024 * 1024)
    );
    let raw = exchange(&address(&app), request.into_bytes(), Duration::from_secs(3)).await;
    raw.assert_json_error(431);
}

#[tokio::test]
async fn a_path_over_64_kib_gets_a_json_414() {
    let app = spawn_edge(&[]).await;
    let request = format!(
        "GET /v2/{} HTTP/1.1\r\nHost: bindery\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let raw = exchange(&address(&app), request.into_bytes(), Duration::from_secs(3)).await;
    raw.assert_json_error(414);
}

#[tokio::test]
async fn a_garbage_request_line_gets_a_json_400() {
    let app = spawn_edge(&[]).await;
    let raw = exchange(
        &address(&app),
        b"\x16\x03\x01 this is not HTTP\r\n\r\n".to_vec(),
        Duration::from_secs(3),
    )
    .await;
    raw.assert_json_error(400);
}

#[tokio::test]
async fn answers_after_a_good_request_on_the_same_connection_are_json_too() {
    let app = spawn_edge(&[]).await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: bindery\r\n\r\nNOT HTTP AT ALL\r\n\r\n".to_vec();
    let stream = TcpStream::connect(address(&app)).await.unwrap();
    let (mut read, mut write) = stream.into_split();
    write.write_all(&request).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(3), read.read_to_end(&mut answer))
        .await
        .expect("answered and closed")
        .unwrap();
    let text = String::from_utf8_lossy(&answer);
    let second = text.find("HTTP/1.1 400").expect("a 400 after the 200");
    assert!(text.starts_with("HTTP/1.1 200"), "{text}");
    Raw::parse(&answer[second..]).assert_json_error(400);
}

// --- #13 item 7: /readyz fails fast ---------------------------------------------------------

#[tokio::test]
async fn readyz_answers_503_within_a_second_when_the_state_database_is_down() {
    let cluster = crate::private_pg::PrivateCluster::start();
    let app = TestApp::spawn_with(Spawn {
        env: edge_env(&[("DATABASE_URL", &cluster.url("bindery_readyz"))]),
        ..Spawn::default()
    })
    .await;
    let ready = app
        .send_with(Method::GET, "/readyz", None, &[], false)
        .await;
    assert_eq!(ready.status, StatusCode::OK);
    cluster.crash();
    for _ in 0..3 {
        let started = Instant::now();
        let r = app
            .send_with(Method::GET, "/readyz", None, &[], false)
            .await;
        assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE, "{}", r.raw);
        assert!(r.body["description"].is_string(), "{}", r.raw);
        assert!(
            started.elapsed() < Duration::from_secs(1),
            "/readyz took {:?}",
            started.elapsed()
        );
    }
}
