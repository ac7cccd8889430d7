//! `/metrics` after a lifecycle: the counters move, and no id reaches a label.

use reqwest::Method;

use crate::helpers::*;

fn value(metrics: &str, name: &str, labels: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|l| l.starts_with(name) && labels.iter().all(|want| l.contains(want)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn a_lifecycle_moves_the_counters_and_labels_stay_bounded() {
    let app = TestApp::spawn().await;
    let scrape = || async {
        app.send_with(Method::GET, "/metrics", None, &[], false)
            .await
            .raw
    };
    let before = scrape().await;
    let id = new_id();
    let b = new_id();
    app.provision_async(&id, provision_body("svc-db", "plan-small"))
        .await;
    app.wait_for_operation(&id, "").await;
    app.bind(&id, &b, bind_body("svc-db", "plan-small")).await;
    app.provision(&new_id(), provision_body("svc-db", "plan-failing"))
        .await;
    let after = scrape().await;

    let route = "route=\"/v2/service_instances/{instance_id}\"";
    assert!(
        value(
            &after,
            "bindery_http_requests_total",
            &[route, "method=\"PUT\"", "status=\"202\""]
        ) > value(
            &before,
            "bindery_http_requests_total",
            &[route, "method=\"PUT\"", "status=\"202\""]
        )
    );
    assert!(
        value(
            &after,
            "bindery_http_requests_total",
            &[route, "status=\"502\""]
        ) >= 1.0
    );
    assert!(
        value(
            &after,
            "bindery_operations_total",
            &["kind=\"provision\"", "state=\"succeeded\""]
        ) >= 1.0
    );
    assert!(
        value(
            &after,
            "bindery_operations_total",
            &["kind=\"bind\"", "state=\"succeeded\""]
        ) >= 1.0
    );
    assert!(
        value(
            &after,
            "bindery_operations_total",
            &["kind=\"provision\"", "state=\"failed\""]
        ) >= 1.0
    );
    assert!(
        value(
            &after,
            "bindery_backend_errors_total",
            &["backend=\"recording\"", "error=\"failed\""]
        ) >= 1.0
    );
    assert!(
        value(
            &after,
            "bindery_backend_call_duration_seconds_count",
            &["backend=\"recording\""]
        ) >= 3.0
    );
    assert!(after.contains("bindery_http_request_duration_seconds_bucket"));
    assert!(after.contains("bindery_operations_pending 0"), "{after}");
    assert!(after.contains("bindery_state_database_up 1"));
    assert!(
        !after.contains(&id) && !after.contains(&b),
        "no id in a label"
    );
    assert!(!after.contains(PASSWORD));
}

#[tokio::test]
async fn metrics_can_have_a_listener_of_their_own() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let app = TestApp::spawn_with(Spawn {
        env: vec![("BINDERY_METRICS_LISTEN".into(), format!("127.0.0.1:{port}"))],
        ..Spawn::default()
    })
    .await;
    app.catalog().await;
    let on_api = app
        .send_with(Method::GET, "/metrics", None, &[], false)
        .await;
    assert_eq!(
        on_api.status,
        reqwest::StatusCode::NOT_FOUND,
        "not on the API port"
    );
    let separate = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await
        .unwrap();
    assert_eq!(separate.status(), reqwest::StatusCode::OK);
    assert!(
        separate
            .text()
            .await
            .unwrap()
            .contains("bindery_http_requests_total")
    );
}
