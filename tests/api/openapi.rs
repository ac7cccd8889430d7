//! The OpenAPI document: committed file up to date, served document equal to it, real
//! responses of a lifecycle valid against it, and the interactive page self-contained.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::*;

#[test]
fn the_committed_openapi_file_is_what_the_code_generates() {
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi/openapi.yaml"))
            .unwrap();
    let generated = bindery::http::openapi::document_yaml();
    assert!(
        committed == generated,
        "openapi/openapi.yaml is stale: run `cargo run -- openapi --output openapi/openapi.yaml`"
    );
}

/// Validates `body` against the schema the document gives for this response.
fn check(doc: &Value, template: &str, method: &str, status: StatusCode, body: &Value) {
    let responses = &doc["paths"][template][method]["responses"];
    let response = &responses[status.as_str()];
    assert!(
        response.is_object(),
        "{method} {template} answered {status}, which the document does not list"
    );
    let Some(schema) = response.pointer("/content/application~1json/schema") else {
        return;
    };
    let mut schema = schema.clone();
    schema["components"] = doc["components"].clone();
    let validator = jsonschema::options()
        .build(&schema)
        .expect("the document's schema compiles");
    let errors: Vec<String> = validator.iter_errors(body).map(|e| e.to_string()).collect();
    assert!(
        errors.is_empty(),
        "{method} {template} {status}: {body} does not match: {errors:?}"
    );
}

#[tokio::test]
async fn a_lifecycle_answers_as_the_served_document_says() {
    let mut app = TestApp::spawn().await;
    let doc = app
        .send_with(Method::GET, "/openapi.json", None, &[], false)
        .await;
    assert_eq!(doc.status, StatusCode::OK);
    assert!(
        doc.body == serde_json::to_value(bindery::http::openapi::document()).unwrap(),
        "served and generated documents differ"
    );
    let doc = doc.body;
    let instance = "/v2/service_instances/{instance_id}";
    let binding = "/v2/service_instances/{instance_id}/service_bindings/{binding_id}";
    let id = new_id();
    let b = new_id();
    let r = app.catalog().await;
    check(&doc, "/v2/catalog", "get", r.status, &r.body);
    let r = app
        .provision_async(&id, provision_body("svc-db", "plan-dashboard"))
        .await;
    check(&doc, instance, "put", r.status, &r.body);
    let r = app.wait_for_operation(&id, "").await;
    check(
        &doc,
        "/v2/service_instances/{instance_id}/last_operation",
        "get",
        r.status,
        &r.body,
    );
    let r = app
        .provision(&id, provision_body("svc-db", "plan-dashboard"))
        .await;
    check(&doc, instance, "put", r.status, &r.body);
    let r = app
        .provision(&id, provision_body("svc-db", "plan-small"))
        .await;
    check(&doc, instance, "put", r.status, &r.body);
    let r = app.provision(&new_id(), json!({})).await;
    check(&doc, instance, "put", r.status, &r.body);
    let r = app
        .update(
            &id,
            "",
            json!({"service_id": "svc-db", "parameters": {"size": 3}}),
        )
        .await;
    check(&doc, instance, "patch", r.status, &r.body);
    let r = app
        .bind(&id, &b, bind_body("svc-db", "plan-dashboard"))
        .await;
    check(&doc, binding, "put", r.status, &r.body);
    let r = app
        .bind(&id, &b, bind_body("svc-db", "plan-dashboard"))
        .await;
    check(&doc, binding, "put", r.status, &r.body);
    app.version = "2.14".into();
    let r = app
        .send(
            Method::GET,
            &format!("/v2/service_instances/{id}/service_bindings/{b}"),
            None,
        )
        .await;
    check(&doc, binding, "get", r.status, &r.body);
    let r = app
        .send(Method::GET, &format!("/v2/service_instances/{id}"), None)
        .await;
    check(&doc, instance, "get", r.status, &r.body);
    let r = app
        .send(
            Method::GET,
            &format!("/v2/service_instances/{id}/service_bindings/{b}/last_operation"),
            None,
        )
        .await;
    check(
        &doc,
        "/v2/service_instances/{instance_id}/service_bindings/{binding_id}/last_operation",
        "get",
        r.status,
        &r.body,
    );
    app.version = "2.13".into();
    let r = app
        .unbind(&id, &b, "?service_id=svc-db&plan_id=plan-dashboard")
        .await;
    check(&doc, binding, "delete", r.status, &r.body);
    let r = app
        .unbind(&id, &b, "?service_id=svc-db&plan_id=plan-dashboard")
        .await;
    check(&doc, binding, "delete", r.status, &r.body);
    let r = app
        .send_with(Method::GET, "/v2/catalog", None, &[], true)
        .await;
    check(&doc, "/v2/catalog", "get", r.status, &r.body);
    let r = app
        .send_with(
            Method::GET,
            "/v2/catalog",
            None,
            &[("X-Broker-API-Version", "2.13")],
            false,
        )
        .await;
    check(&doc, "/v2/catalog", "get", r.status, &r.body);
    let r = app
        .deprovision(
            &id,
            "?service_id=svc-db&plan_id=plan-dashboard&accepts_incomplete=true",
        )
        .await;
    check(&doc, instance, "delete", r.status, &r.body);
    let r = app.wait_for_operation(&id, "").await;
    check(
        &doc,
        "/v2/service_instances/{instance_id}/last_operation",
        "get",
        r.status,
        &r.body,
    );
    let r = app
        .deprovision(&id, "?service_id=svc-db&plan_id=plan-dashboard")
        .await;
    check(&doc, instance, "delete", r.status, &r.body);
}

#[tokio::test]
async fn the_interactive_page_loads_its_assets_from_bindery() {
    let app = TestApp::spawn().await;
    let page = app
        .client
        .get(format!("{}/docs/", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), StatusCode::OK);
    let html = page.text().await.unwrap();
    assert!(
        !html.contains("https://") && !html.contains("http://"),
        "no asset from the internet: {html}"
    );
    let assets: Vec<&str> = html
        .split(['"', '\''])
        .filter(|s| s.ends_with(".js") || s.ends_with(".css"))
        .collect();
    assert!(assets.len() >= 2, "{html}");
    for asset in assets {
        let url = format!("{}/docs/{}", app.base, asset.trim_start_matches("./"));
        let r = app.client.get(&url).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "{url}");
        assert!(r.bytes().await.unwrap().len() > 100, "{url}");
    }
    let init = app
        .client
        .get(format!("{}/docs/swagger-initializer.js", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(init.contains("/openapi.json"), "{init}");
}
