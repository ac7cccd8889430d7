//! Instances whose plan, or whole service, left the catalog: a platform can still
//! fetch, poll, unbind and delete what it created (issue 13). Restarts a broker on
//! the same database, so PostgreSQL only (postgres_only.txt).

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

const BEFORE: &str = r##"
services:
  - id: svc-keep
    name: keep
    description: A service that loses one plan.
    bindable: true
    plan_updateable: true
    backend: {kind: recording}
    plans:
      - {id: p-stay, name: stay, description: Stays.}
      - {id: p-retire, name: retire, description: Leaves the catalog.}
  - id: svc-gone
    name: gone
    description: A service that leaves the catalog.
    bindable: true
    backend: {kind: recording}
    plans:
      - {id: p-gone, name: gone, description: Leaves with its service.}
"##;

const AFTER: &str = r##"
services:
  - id: svc-keep
    name: keep
    description: A service that lost one plan.
    bindable: true
    plan_updateable: true
    backend: {kind: recording}
    plans:
      - {id: p-stay, name: stay, description: Stays.}
"##;

async fn provisioned_and_bound(app: &TestApp, service: &str, plan: &str) -> (String, String) {
    let (id, b) = (new_id(), new_id());
    let r = app.provision(&id, provision_body(service, plan)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    let r = app.bind(&id, &b, bind_body(service, plan)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    (id, b)
}

#[tokio::test]
async fn instances_on_removed_plans_and_services_can_still_be_fetched_polled_unbound_and_deleted() {
    let first = TestApp::spawn_with(Spawn {
        catalog: BEFORE.to_owned(),
        ..Spawn::default()
    })
    .await;
    let (on_plan, on_plan_binding) = provisioned_and_bound(&first, "svc-keep", "p-retire").await;
    let (on_service, on_service_binding) =
        provisioned_and_bound(&first, "svc-gone", "p-gone").await;
    // Rows written before bindery recorded the backend kind.
    let old_retired = new_id();
    first
        .provisioned_on(&old_retired, "svc-keep", "p-retire")
        .await;
    let old_kept = new_id();
    first.provisioned_on(&old_kept, "svc-keep", "p-stay").await;
    sqlx::query("update service_instance set backend_kind = null where instance_id in ($1, $2)")
        .bind(&old_retired)
        .bind(&old_kept)
        .execute(first.db_pool())
        .await
        .unwrap();
    first.shut_down();

    // The broker restarts with the plan, and the other service, gone.
    let mut app = TestApp::spawn_with(Spawn {
        catalog: AFTER.to_owned(),
        env: vec![(
            "DATABASE_URL".into(),
            format!("{}/{}", server_url(), first.database),
        )],
        ..Spawn::default()
    })
    .await;
    app.version = "2.14".into();
    let kind: Option<String> =
        sqlx::query_scalar("select backend_kind from service_instance where instance_id = $1")
            .bind(&old_kept)
            .fetch_one(app.db_pool())
            .await
            .unwrap();
    assert_eq!(kind.as_deref(), Some("recording"), "filled in at start-up");

    for (id, binding, service, plan) in [
        (&on_plan, &on_plan_binding, "svc-keep", "p-retire"),
        (&on_service, &on_service_binding, "svc-gone", "p-gone"),
    ] {
        let r = app
            .send(
                reqwest::Method::GET,
                &format!("/v2/service_instances/{id}"),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "fetch: {}", r.raw);
        assert_eq!(r.body["plan_id"], plan);
        let r = app.last_operation(id, "").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
        assert_eq!(r.body["state"], "succeeded");
        let r = app
            .send(
                reqwest::Method::GET,
                &format!("/v2/service_instances/{id}/service_bindings/{binding}"),
                None,
            )
            .await;
        assert_eq!(r.status, StatusCode::OK, "fetch binding: {}", r.raw);

        let r = app
            .update(
                id,
                "",
                json!({"service_id": service, "parameters": {"a": 1}}),
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.raw);
        assert!(r.raw.contains("no longer offered"), "{}", r.raw);

        let query = format!("?service_id={service}&plan_id={plan}");
        let r = app.unbind(id, binding, &query).await;
        assert_eq!(r.status, StatusCode::OK, "unbind: {}", r.raw);
        assert_eq!(app.backend.count("unbind", id), 1);
    }

    // Synchronously, and through the worker.
    let r = app
        .deprovision(&on_plan, "?service_id=svc-keep&plan_id=p-retire")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    let r = app
        .deprovision(
            &on_service,
            "?service_id=svc-gone&plan_id=p-gone&accepts_incomplete=true",
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.raw);
    let r = app.wait_for_operation(&on_service, "").await;
    assert_eq!(r.status, StatusCode::GONE, "{}", r.raw);
    // A row without a recorded kind falls back to the kind of its service's plans.
    let r = app
        .deprovision(&old_retired, "?service_id=svc-keep&plan_id=p-retire")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    for id in [&on_plan, &on_service, &old_retired] {
        assert_eq!(app.backend.count("deprovision", id), 1, "{id}");
    }

    // An update to a plan that is gone is refused clearly.
    let r = app
        .update(
            &old_kept,
            "",
            json!({"service_id": "svc-keep", "plan_id": "p-retire"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.raw);
    assert!(r.raw.contains("p-retire"), "{}", r.raw);
}
