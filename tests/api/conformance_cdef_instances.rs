//! Groups C (sync/async), D (provision), E (update) and F (deprovision). OSB spec
//! (`spec.md`): "Synchronous and Asynchronous Operations", "Blocking Operations",
//! "Provisioning", "Updating a Service Instance", "Deprovisioning".

use reqwest::StatusCode;
use serde_json::json;

use crate::helpers::*;

const DEL: &str = "?service_id=svc-db&plan_id=plan-small";

async fn quiet_app() -> TestApp {
    TestApp::spawn_with(Spawn {
        run_worker: false,
        ..Spawn::default()
    })
    .await
}

// ---- C: synchronous and asynchronous semantics ----

#[tokio::test]
async fn c49_a_synchronous_provision_returns_201() {
    let app = TestApp::spawn().await;
    let id = new_id();
    let r = app
        .provision(&id, provision_body("svc-db", "plan-small"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    assert_eq!(app.backend.count("provision", &id), 1);
}

#[tokio::test]
async fn c50_a_synchronous_update_or_deprovision_returns_200() {
    let app = TestApp::spawn().await;
    let id = new_id();
    app.provisioned(&id, "plan-small").await;
    let r = app
        .update(
            &id,
            "",
            json!({"service_id": "svc-db", "parameters": {"size": 3}}),
        )
        .await;
    assert_eq!(
        (r.status, r.body.clone()),
        (StatusCode::OK, json!({})),
        "{}",
        r.raw
    );
    let r = app.deprovision(&id, DEL).await;
    assert_eq!((r.status, r.body), (StatusCode::OK, json!({})));
}

#[tokio::test]
async fn c51_202_is_returned_only_with_accepts_incomplete_true() {
    let app = quiet_app().await;
    let id = new_id();
    let r = app
        .provision(&id, provision_body("svc-db", "plan-small"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = app
        .update(
            &id,
            "?accepts_incomplete=false",
            json!({"service_id": "svc-db", "parameters": {"size": 2}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let r = app
        .deprovision(&id, &format!("{DEL}&accepts_incomplete=false"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn c52_an_asynchronous_provision_update_and_deprovision_return_202() {
    let app = quiet_app().await;
    let id = new_id();
    let r = app
        .provision_async(&id, provision_body("svc-db", "plan-small"))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.raw);
    assert_eq!(
        app.backend.count("provision", &id),
        0,
        "nothing ran before the worker"
    );
    app.drain().await;
    assert_eq!(app.backend.count("provision", &id), 1);
    let r = app
        .update(
            &id,
            "?accepts_incomplete=true",
            json!({"service_id": "svc-db", "parameters": {"size": 4}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    app.drain().await;
    let r = app
        .deprovision(&id, &format!("{DEL}&accepts_incomplete=true"))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    app.drain().await;
    assert_eq!(app.backend.count("deprovision", &id), 1);
}

#[tokio::test]
async fn c53_a_202_body_carries_the_dashboard_url_and_an_operation() {
    let app = quiet_app().await;
    let id = new_id();
    let r = app
        .provision_async(&id, provision_body("svc-db", "plan-dashboard"))
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
    assert_eq!(
        r.body["dashboard_url"],
        format!("https://dashboard.example.com/instances/{id}")
    );
    assert!(r.body["operation"].as_str().is_some_and(|o| !o.is_empty()));
}

#[tokio::test]
async fn c54_accepts_incomplete_false_is_the_same_as_absent() {
    let app = quiet_app().await;
    let r = app
        .provision(
            &format!("{}?accepts_incomplete=false", new_id()),
            provision_body("svc-db", "plan-small"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = app
        .provision(
            &format!("{}?accepts_incomplete=false", new_id()),
            provision_body("svc-db", "plan-async"),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn c54_an_accepts_incomplete_that_is_not_a_boolean_is_400() {
    let app = quiet_app().await;
    let r = app
        .provision(
            &format!("{}?accepts_incomplete=yes", new_id()),
            provision_body("svc-db", "plan-small"),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn c55_an_async_only_plan_without_accepts_incomplete_gets_422_async_required() {
    let app = quiet_app().await;
    for query in ["", "?accepts_incomplete=false"] {
        let id = new_id();
        let r = app
            .provision(
                &format!("{id}{query}"),
                provision_body("svc-db", "plan-async"),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(r.body["error"], "AsyncRequired");
        assert!(
            r.body["description"]
                .as_str()
                .unwrap()
                .contains("asynchronous")
        );
        assert!(
            app.store.find_instance(&id).await.unwrap().is_none(),
            "a 422 creates nothing"
        );
    }
}

#[tokio::test]
async fn c57_an_async_only_deprovision_needs_accepts_incomplete() {
    let app = quiet_app().await;
    let id = new_id();
    app.provision_async(&id, provision_body("svc-db", "plan-async"))
        .await;
    app.drain().await;
    for query in ["", "&accepts_incomplete=false"] {
        let r = app
            .deprovision(
                &id,
                &format!("?service_id=svc-db&plan_id=plan-async{query}"),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{query}");
        assert_eq!(r.body["error"], "AsyncRequired");
    }
    assert_eq!(app.backend.count("deprovision", &id), 0);
    let r = app
        .deprovision(
            &id,
            "?service_id=svc-db&plan_id=plan-async&accepts_incomplete=true",
        )
        .await;
    assert_eq!(r.status, StatusCode::ACCEPTED);
}

#[tokio::test]
async fn c56_an_update_to_an_async_only_plan_without_accepts_incomplete_gets_422() {
    let app = quiet_app().await;
    let id = new_id();
    app.provisioned(&id, "plan-small").await;
    let r = app
        .update(
            &id,
            "",
            json!({"service_id": "svc-db", "plan_id": "plan-async"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(r.body["error"], "AsyncRequired");
}

#[tokio::test]
async fn c59_bind_and_unbind_never_answer_202_to_a_2_13_client() {
    let app = quiet_app().await;
    let id = new_id();
    app.provisioned(&id, "plan-small").await;
    let b = new_id();
    let r = app
        .send(
            reqwest::Method::PUT,
            &format!("/v2/service_instances/{id}/service_bindings/{b}?accepts_incomplete=true"),
            Some(bind_body("svc-db", "plan-small")),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = app
        .unbind(&id, &b, &format!("{DEL}&accepts_incomplete=true"))
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn c60_c61_a_request_blocked_by_a_running_operation_gets_422_with_a_description() {
    let app = quiet_app().await;
    let id = new_id();
    app.provision_async(&id, provision_body("svc-db", "plan-small"))
        .await;
    let blocked = [
        app.update(
            &id,
            "?accepts_incomplete=true",
            json!({"service_id": "svc-db", "parameters": {"size": 2}}),
        )
        .await,
        // A synchronous delete cannot wait for the provision; an asynchronous one
        // supersedes it (state_model::a_delete_during_provisioning_*).
        app.deprovision(&id, DEL).await,
        app.bind(&id, &new_id(), bind_body("svc-db", "plan-small"))
            .await,
    ];
    for r in blocked {
        assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", r.raw);
        assert_eq!(r.body["error"], "ConcurrencyError");
        assert!(
            r.body["description"]
                .as_str()
                .is_some_and(|d| d.contains("in progress"))
        );
    }
}

// ---- D: provision ----

#[tokio::test]
async fn d62_to_d66_missing_or_empty_required_fields_and_bad_bodies_get_400() {
    let app = TestApp::spawn().await;
    let full = provision_body("svc-db", "plan-small");
    for field in ["service_id", "plan_id", "organization_guid", "space_guid"] {
        let mut missing = full.clone();
        missing.as_object_mut().unwrap().remove(field);
        let r = app.provision(&new_id(), missing).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "missing {field}");
        assert!(
            r.body["description"].as_str().unwrap().contains(field),
            "{}",
            r.raw
        );
        let mut empty = full.clone();
        empty[field] = json!("");
        let r = app.provision(&new_id(), empty).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "empty {field}");
    }
    for body in ["{", "[]", "\"text\"", "", "{\"service_id\": 5}"] {
        let r = app
            .send_raw(
                reqwest::Method::PUT,
                &format!("/v2/service_instances/{}", new_id()),
                body,
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "body {body:?}");
        assert!(r.body["description"].is_string());
    }
    assert!(app.backend.calls().is_empty(), "a 400 creates nothing");
}

#[tokio::test]
async fn d67_an_unknown_service_or_a_plan_of_another_service_gets_400() {
    let app = TestApp::spawn().await;
    for (service, plan) in [
        ("svc-nope", "plan-small"),
        ("svc-db", "plan-nope"),
        ("svc-db", "plan-fixed-a"),
    ] {
        let r = app
            .provision(&new_id(), provision_body(service, plan))
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{service}/{plan}");
    }
}

#[tokio::test]
async fn d68_parameters_that_break_the_schema_get_400_naming_the_field() {
    let app = TestApp::spawn().await;
    let id = new_id();
    let mut body = provision_body("svc-db", "plan-small");
    body["parameters"] = json!({"size": 99});
    let r = app.provision(&id, body.clone()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body["description"]
            .as_str()
            .unwrap()
            .contains("parameters.size"),
        "{}",
        r.raw
    );
    body["parameters"] = json!({"colour": "red"});
    let r = app.provision(&id, body.clone()).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    body["parameters"] = json!([1, 2]);
    let r = app.provision(&id, body).await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(app.store.find_instance(&id).await.unwrap().is_none());
}

#[tokio::test]
async fn d69_d70_d71_201_then_200_with_the_same_body_for_an_identical_put() {
    let app = TestApp::spawn().await;
    let id = new_id();
    let body = provision_body("svc-db", "plan-dashboard");
    let first = app.provision(&id, body.clone()).await;
    assert_eq!(first.status, StatusCode::CREATED);
    let second = app.provision(&id, body).await;
    assert_eq!(second.status, StatusCode::OK);
    assert_eq!(first.body, second.body);
    assert!(first.body["dashboard_url"].is_string());
    assert_eq!(app.backend.count("provision", &id), 1, "provisioned once");
}

#[tokio::test]
async fn d70_a_changed_context_alone_still_replays_200() {
    let app = TestApp::spawn().await;
    let id = new_id();
    app.provisioned(&id, "plan-small").await;
    let mut body = provision_body("svc-db", "plan-small");
    body["context"]["instance_name"] = json!("renamed");
    assert_eq!(app.provision(&id, body).await.status, StatusCode::OK);
}

#[tokio::test]
async fn d72_a_resent_put_while_provisioning_gets_202_with_the_same_operation() {
    let app = quiet_app().await;
    let id = new_id();
    let first = app
        .provision_async(&id, provision_body("svc-db", "plan-small"))
        .await;
    let again = app
        .provision_async(&id, provision_body("svc-db", "plan-small"))
        .await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(first.body["operation"], again.body["operation"]);
    app.drain().await;
    let done = app
        .provision_async(&id, provision_body("svc-db", "plan-small"))
        .await;
    assert_eq!(done.status, StatusCode::OK, "identical and finished: 200");
}

#[tokio::test]
async fn d73_d74_a_put_with_different_attributes_gets_409_with_a_description() {
    let app = quiet_app().await;
    let id = new_id();
    app.provisioned(&id, "plan-small").await;
    let mut different = provision_body("svc-db", "plan-small");
    different["parameters"] = json!({"size": 2});
    for body in [provision_body("svc-db", "plan-large"), different, {
        let mut b = provision_body("svc-db", "plan-small");
        b["space_guid"] = json!("another-space");
        b
    }] {
        let r = app.provision(&id, body).await;
        assert_eq!(r.status, StatusCode::CONFLICT);
        assert!(r.body.is_object() && r.body["description"].is_string());
    }
    // also while it is still being provisioned (2.15 makes this explicit)
    let id = new_id();
    app.provision_async(&id, provision_body("svc-db", "plan-small"))
        .await;
    let r = app
        .provision_async(&id, provision_body("svc-db", "plan-large"))
        .await;
    assert_eq!(r.status, StatusCode::CONFLICT);
}

#[tokio::test]
async fn d75_d76_d77_dashboard_url_identifies_the_instance_and_comes_in_the_first_response() {
    let app = TestApp::spawn().await;
    let id = new_id();
    let r = app
        .provision(&id, provision_body("svc-db", "plan-dashboard"))
        .await;
    let url = r.body["dashboard_url"].as_str().unwrap();
    assert!(url.contains(&id));
    let plain = app
        .provision(&new_id(), provision_body("svc-db", "plan-small"))
        .await;
    assert!(plain.body.get("dashboard_url").is_none());
    assert!(
        plain.body.get("operation").is_none(),
        "no operation on a synchronous answer"
    );
}

#[tokio::test]
async fn d78_the_broker_creates_the_resource() {
    let app = TestApp::spawn().await;
    let id = new_id();
    app.provisioned(&id, "plan-small").await;
    assert_eq!(
        app.backend.calls(),
        vec![("provision".to_owned(), id.clone(), None)]
    );
}

#[tokio::test]
async fn d79_a_provision_answered_with_a_4xx_creates_nothing() {
    let app = TestApp::spawn().await;
    let id = new_id();
    let mut bad = provision_body("svc-db", "plan-small");
    bad["parameters"] = json!({"size": 0});
    assert_eq!(
        app.provision(&id, bad).await.status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        app.provision(&id, provision_body("svc-db", "plan-async"))
            .await
            .status,
        StatusCode::UNPROCESSABLE_ENTITY
    );
    assert!(app.backend.calls().is_empty());
    assert!(app.store.find_instance(&id).await.unwrap().is_none());
    // the id is still free
    assert_eq!(
        app.provision(&id, provision_body("svc-db", "plan-small"))
            .await
            .status,
        StatusCode::CREATED
    );
}

// ---- E: update ----

#[tokio::test]
async fn e80_an_update_without_service_id_gets_400() {
    let app = TestApp::spawn().await;
    let id = new_id();
    app.provisioned(&id, "plan-small").await;
    for body in [json!({"plan_id": "plan-large"}), json!({"service_id": ""})] {
        let r = app.update(&id, "", body).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
    }
}

#[tokio::test]
async fn e81_e82_absent_plan_id_or_parameters_change_nothing() {
    let app = TestApp::spawn().await;
    let id = new_id();
    let mut body = provision_body("svc-db", "plan-small");
    body["parameters"] = json!({"size": 5});
    app.provision(&id, body).await;
    let r = app
        .update(
            &id,
            "",
            json!({"service_id": "svc-db", "plan_id": "plan-large"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let i = app.store.find_instance(&id).await.unwrap().unwrap();
    assert_eq!(
        (i.plan_id.as_str(), i.parameters.clone()),
        ("plan-large", json!({"size": 5}))
    );
    let r = app
        .update(
            &id,
            "",
            json!({"service_id": "svc-db", "parameters": {"size": 6}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);
    let i = app.store.find_instance(&id).await.unwrap().unwrap();
    assert_eq!(
        (i.plan_id.as_str(), i.parameters),
        ("plan-large", json!({"size": 6}))
    );
}

#[tokio::test]
async fn e83_update_parameters_are_validated() {
    let app = TestApp::spawn().await;
    let id = new_id();
    app.provisioned(&id, "plan-small").await;
    let r = app
        .update(
            &id,
            "",
            json!({"service_id": "svc-db", "parameters": {"size": "big"}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(
        r.body["description"]
            .as_str()
            .unwrap()
            .contains("parameters.size")
    );
    assert_eq!(app.backend.count("update", &id), 0);
}

#[tokio::test]
async fn e84_an_applied_update_gets_200_with_an_empty_object() {
    let app = TestApp::spawn().await;
    let id = new_id();
    app.provisioned(&id, "plan-small").await;
    let r = app
        .update(
            &id,
            "",
            json!({"service_id": "svc-db", "parameters": {"size": 2}}),
        )
        .await;
    assert_eq!((r.status, r.body), (StatusCode::OK, json!({})));
    assert_eq!(app.backend.count("update", &id), 1);
}

#[tokio::test]
async fn e85_e86_e92_an_async_update_gets_202_and_a_resent_patch_gets_202_again() {
    let app = quiet_app().await;
    let id = new_id();
    app.provisioned(&id, "plan-small").await;
    let body = json!({"service_id": "svc-db", "parameters": {"size": 7}});
    let first = app
        .update(&id, "?accepts_incomplete=true", body.clone())
        .await;
    assert_eq!(first.status, StatusCode::ACCEPTED);
    assert!(
        first.body["operation"]
            .as_str()
            .is_some_and(|o| !o.is_empty())
    );
    let again = app.update(&id, "?accepts_incomplete=true", body).await;
    assert_eq!(again.status, StatusCode::ACCEPTED);
    assert_eq!(first.body["operation"], again.body["operation"]);
    app.drain().await;
    assert_eq!(app.backend.count("update", &id), 1);
}

#[tokio::test]
async fn e87_e89_e90_a_plan_change_on_a_service_that_is_not_plan_updateable_gets_422() {
    let app = TestApp::spawn().await;
    let id = new_id();
    let r = app
        .provision(&id, provision_body("svc-fixed", "plan-fixed-a"))
        .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let r = app
        .update(
            &id,
            "",
            json!({"service_id": "svc-fixed", "plan_id": "plan-fixed-b"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.body["description"]
            .as_str()
            .unwrap()
            .contains("cannot be changed")
    );
    assert_eq!(
        app.store.find_instance(&id).await.unwrap().unwrap().plan_id,
        "plan-fixed-a"
    );
}

#[tokio::test]
async fn e88_an_update_the_instance_state_does_not_allow_gets_422() {
    let app = TestApp::spawn().await;
    let id = new_id();
    let r = app
        .provision(&id, provision_body("svc-db", "plan-failing"))
        .await;
    assert!(r.status.is_server_error());
    let r = app
        .update(
            &id,
            "",
            json!({"service_id": "svc-db", "plan_id": "plan-small"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(r.body["description"].is_string());
}

#[tokio::test]
async fn e91_a_malformed_update_gets_400() {
    let app = TestApp::spawn().await;
    let id = new_id();
    app.provisioned(&id, "plan-small").await;
    for body in ["{", "[1]", "{\"service_id\":\"svc-db\",\"parameters\":[1]}"] {
        let r = app
            .send_raw(
                reqwest::Method::PATCH,
                &format!("/v2/service_instances/{id}"),
                body,
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{body}");
    }
    let r = app
        .update(
            &id,
            "",
            json!({"service_id": "svc-db", "plan_id": "plan-nope"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_update_of_an_unknown_instance_gets_404() {
    let app = TestApp::spawn().await;
    let r = app
        .update(&new_id(), "", json!({"service_id": "svc-db"}))
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(r.body["description"].is_string());
}

// ---- F: deprovision ----

#[tokio::test]
async fn f93_f94_a_delete_without_service_id_or_plan_id_gets_400() {
    let app = TestApp::spawn().await;
    let id = new_id();
    app.provisioned(&id, "plan-small").await;
    for query in [
        "?plan_id=plan-small",
        "?service_id=svc-db",
        "",
        "?service_id=&plan_id=plan-small",
    ] {
        let r = app.deprovision(&id, query).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST, "{query}");
    }
    let r = app.deprovision(&new_id(), "").await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "400 comes before 410");
    assert_eq!(app.backend.count("deprovision", &id), 0);
}

#[tokio::test]
async fn f95_f96_a_deprovision_deletes_the_resource_and_answers_200_with_an_empty_object() {
    let app = TestApp::spawn().await;
    let id = new_id();
    app.provisioned(&id, "plan-small").await;
    let r = app.deprovision(&id, DEL).await;
    assert_eq!((r.status, r.body), (StatusCode::OK, json!({})));
    assert_eq!(app.backend.count("deprovision", &id), 1);
}

#[tokio::test]
async fn f97_f98_an_async_deprovision_gets_202_and_a_resent_delete_gets_202() {
    let app = quiet_app().await;
    let id = new_id();
    app.provisioned(&id, "plan-small").await;
    let q = format!("{DEL}&accepts_incomplete=true");
    let first = app.deprovision(&id, &q).await;
    let again = app.deprovision(&id, &q).await;
    assert_eq!(
        (first.status, again.status),
        (StatusCode::ACCEPTED, StatusCode::ACCEPTED)
    );
    assert_eq!(first.body["operation"], again.body["operation"]);
    app.drain().await;
    assert_eq!(app.backend.count("deprovision", &id), 1);
}

#[tokio::test]
async fn f99_a_delete_of_an_unknown_or_deleted_instance_gets_410_with_an_empty_object() {
    let app = TestApp::spawn().await;
    let r = app.deprovision(&new_id(), DEL).await;
    assert_eq!((r.status, r.body), (StatusCode::GONE, json!({})));
    let id = new_id();
    app.provisioned(&id, "plan-small").await;
    app.deprovision(&id, DEL).await;
    let r = app.deprovision(&id, DEL).await;
    assert_eq!((r.status, r.body), (StatusCode::GONE, json!({})));
}

#[tokio::test]
async fn f100_a_delete_cleans_up_a_failed_provision() {
    let app = TestApp::spawn().await;
    let id = new_id();
    let r = app
        .provision(&id, provision_body("svc-db", "plan-failing"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{}", r.raw);
    assert!(r.body["description"].as_str().unwrap().contains("refused"));
    let r = app
        .deprovision(&id, "?service_id=svc-db&plan_id=plan-failing")
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
    assert_eq!(
        app.backend.count("deprovision", &id),
        1,
        "the backend was asked to clean up"
    );
    assert_eq!(
        app.deprovision(&id, "?service_id=svc-db&plan_id=plan-failing")
            .await
            .status,
        StatusCode::GONE
    );
}

#[tokio::test]
async fn deprovision_hints_that_differ_from_the_instance_do_not_block_the_delete() {
    let app = TestApp::spawn().await;
    let id = new_id();
    app.provisioned(&id, "plan-small").await;
    let r = app
        .deprovision(&id, "?service_id=svc-db&plan_id=plan-large")
        .await;
    assert_eq!(r.status, StatusCode::OK);
}

#[tokio::test]
async fn deprovision_removes_the_bindings_of_the_instance() {
    let app = TestApp::spawn().await;
    let id = new_id();
    let b = new_id();
    app.provisioned(&id, "plan-small").await;
    assert_eq!(
        app.bind(&id, &b, bind_body("svc-db", "plan-small"))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(app.deprovision(&id, DEL).await.status, StatusCode::OK);
    assert_eq!(app.unbind(&id, &b, DEL).await.status, StatusCode::GONE);
    let sealed: Option<Vec<u8>> =
        sqlx::query_scalar("select credentials from service_binding where binding_id = $1")
            .bind(&b)
            .fetch_one(app.db_pool())
            .await
            .unwrap();
    assert!(
        sealed.is_none(),
        "credentials of a deleted binding are wiped"
    );
}
