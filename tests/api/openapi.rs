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

/// The fields whose absence the broker answers with a 400 naming them: each field
/// of `complete` is left out in turn and the request sent.
async fn fields_refused_without(
    app: &TestApp,
    complete: &Value,
    send: impl AsyncFn(&TestApp, Value) -> Reply,
) -> Vec<String> {
    let mut required = Vec::new();
    for field in complete.as_object().unwrap().keys() {
        let mut body = complete.clone();
        body.as_object_mut().unwrap().remove(field);
        let r = send(app, body).await;
        if r.status == StatusCode::BAD_REQUEST {
            assert!(
                r.raw.contains(field.as_str()),
                "the 400 names the missing {field}: {}",
                r.raw
            );
            required.push(field.clone());
        } else {
            assert!(
                r.status.is_success(),
                "without {field}: {} {}",
                r.status,
                r.raw
            );
        }
    }
    required.sort();
    required
}

/// The document's `required` list of a request schema, checking that each required
/// property is a non-nullable, non-empty string.
fn documented_required(doc: &Value, schema: &str) -> Vec<String> {
    let schema = &doc["components"]["schemas"][schema];
    let mut required: Vec<String> = schema["required"]
        .as_array()
        .map(|r| r.iter().map(|f| f.as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    for field in &required {
        let property = &schema["properties"][field];
        assert_eq!(
            property["type"], "string",
            "{field} is a plain string: {property}"
        );
        assert!(property.get("nullable").is_none(), "{field}: {property}");
        assert_eq!(
            property["minLength"], 1,
            "{field} may not be empty: {property}"
        );
    }
    required.sort();
    required
}

#[tokio::test]
async fn request_schemas_require_exactly_the_fields_the_broker_refuses_to_go_without() {
    let app = TestApp::spawn().await;
    let doc = serde_json::to_value(bindery::http::openapi::document()).unwrap();

    let mut provision = provision_body("svc-db", "plan-small");
    provision["parameters"] = json!({"size": 2});
    let refused = fields_refused_without(&app, &provision, async |app, body| {
        app.provision(&new_id(), body).await
    })
    .await;
    assert_eq!(refused, documented_required(&doc, "ProvisionRequest"));
    assert_eq!(
        refused,
        ["organization_guid", "plan_id", "service_id", "space_guid"]
    );

    let id = new_id();
    app.provisioned(&id, "plan-small").await;
    let update = json!({
        "service_id": "svc-db",
        "plan_id": "plan-small",
        "parameters": {"size": 3},
        "context": {"platform": "kubernetes"},
        "previous_values": {"plan_id": "plan-small"},
    });
    let refused = fields_refused_without(&app, &update, async |app, body| {
        app.update(&id, "", body).await
    })
    .await;
    assert_eq!(refused, documented_required(&doc, "UpdateRequest"));
    assert_eq!(refused, ["service_id"]);

    let mut bind = bind_body("svc-db", "plan-small");
    bind["parameters"] = json!({"read_only": true});
    bind["app_guid"] = json!("app-1");
    let refused = fields_refused_without(&app, &bind, async |app, body| {
        app.bind(&id, &new_id(), body).await
    })
    .await;
    assert_eq!(refused, documented_required(&doc, "BindRequest"));
    assert_eq!(refused, ["plan_id", "service_id"]);
}
