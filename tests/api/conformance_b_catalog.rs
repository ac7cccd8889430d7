//! Group B: the catalog (OSB spec, `spec.md`: "Catalog Management"), plus Kubernetes
//! Service Catalog's rules. The served catalog is checked against each rule, and the loader
//! is shown to refuse a catalog that breaks it, naming the path.

use std::sync::Arc;

use bindery::backends::BackendRegistry;
use bindery::catalog::{CatalogError, parse_catalog};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::helpers::*;
use crate::support::{RecordingBackend, TEST_CATALOG};

fn registry() -> BackendRegistry {
    let mut r = BackendRegistry::new();
    r.register("recording", Arc::new(RecordingBackend::default()));
    r
}

/// The problems the loader reports for `yaml`.
fn problems(yaml: &str) -> Vec<String> {
    match parse_catalog(yaml, "test.yaml", &registry()) {
        Ok(_) => Vec::new(),
        Err(CatalogError::Invalid { problems, .. }) => problems,
        Err(other) => vec![other.to_string()],
    }
}

/// A one-service catalog with `service` and `plan` fragments spliced in.
fn catalog(service_extra: &str, plan_extra: &str) -> String {
    format!(
        "services:\n  - id: s1\n    name: svc\n    description: d\n    bindable: true\n{service_extra}    backend: {{kind: recording}}\n    plans:\n      - id: p1\n        name: plan\n        description: d\n{plan_extra}"
    )
}

fn assert_refused(yaml: &str, path: &str, words: &str) {
    let found = problems(yaml);
    assert!(
        found
            .iter()
            .any(|p| p.starts_with(path) && p.contains(words)),
        "expected a problem at {path} mentioning {words:?}, got {found:?}"
    );
}

async fn served() -> Vec<Value> {
    let app = TestApp::spawn().await;
    let r = app.catalog().await;
    r.body["services"].as_array().unwrap().clone()
}

#[test]
fn the_base_catalog_of_these_tests_is_valid() {
    assert_eq!(problems(&catalog("", "")), Vec::<String>::new());
    assert_eq!(problems(TEST_CATALOG), Vec::<String>::new());
}

#[tokio::test]
async fn b17_the_catalog_is_200_with_a_services_array() {
    let app = TestApp::spawn().await;
    let r = app.catalog().await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body["services"].is_array());
}

#[test]
fn b17_an_empty_services_list_is_allowed() {
    assert_eq!(problems("services: []"), Vec::<String>::new());
}

#[test]
fn b18_b21_b24_b32_b37_required_strings_must_be_present_and_non_empty() {
    assert_refused(
        &catalog("", "").replace("    name: svc\n", ""),
        "services[0].name",
        "required",
    );
    assert_refused(
        &catalog("", "").replace("id: s1", "id: ''"),
        "services[0].id",
        "empty",
    );
    assert_refused(
        &catalog("", "").replace(
            "    description: d\n    bindable",
            "    description: ' '\n    bindable",
        ),
        "services[0].description",
        "empty",
    );
    assert_refused(
        &catalog("", "").replace("id: p1", "id: ''"),
        "services[0].plans[0].id",
        "empty",
    );
    assert_refused(
        &catalog("", "").replace("        description: d\n", ""),
        "services[0].plans[0].description",
        "required",
    );
    assert_refused(
        &catalog("", "").replace("name: plan", "name: 7"),
        "services[0].plans[0].name",
        "string",
    );
}

#[tokio::test]
async fn b19_b35_names_are_lowercase_letters_digits_and_hyphens_only() {
    for service in served().await {
        let ok = |n: &str| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        };
        assert!(ok(service["name"].as_str().unwrap()));
        for plan in service["plans"].as_array().unwrap() {
            assert!(ok(plan["name"].as_str().unwrap()));
        }
    }
    assert_refused(
        &catalog("", "").replace("name: svc", "name: My_Service"),
        "services[0].name",
        "lowercase",
    );
    assert_refused(
        &catalog("", "").replace("name: plan", "name: 'big plan'"),
        "services[0].plans[0].name",
        "lowercase",
    );
}

#[test]
fn b20_service_names_are_unique() {
    let yaml = "services:\n  - {id: a, name: same, description: d, bindable: true, backend: {kind: recording}, plans: [{id: p1, name: x, description: d}]}\n  - {id: b, name: same, description: d, bindable: true, backend: {kind: recording}, plans: [{id: p2, name: x, description: d}]}\n";
    assert_refused(yaml, "services[1].name", "already used at services[0].name");
}

#[test]
fn b22_b33_ids_are_unique_across_services_and_plans() {
    let yaml = "services:\n  - {id: a, name: one, description: d, bindable: true, backend: {kind: recording}, plans: [{id: p1, name: x, description: d}]}\n  - {id: b, name: two, description: d, bindable: true, backend: {kind: recording}, plans: [{id: p1, name: x, description: d}, {id: a, name: y, description: d}]}\n";
    assert_refused(
        yaml,
        "services[1].plans[0].id",
        "already used at services[0].plans[0].id",
    );
    assert_refused(
        yaml,
        "services[1].plans[1].id",
        "already used at services[0].id",
    );
}

#[test]
fn ids_and_names_longer_than_63_characters_are_refused_for_kubernetes() {
    let long = "a".repeat(64);
    assert_refused(
        &catalog("", "").replace("id: s1", &format!("id: {long}")),
        "services[0].id",
        "63",
    );
    assert_refused(
        &catalog("", "").replace("name: plan", &format!("name: {long}")),
        "services[0].plans[0].name",
        "63",
    );
}

#[tokio::test]
async fn b25_every_service_has_a_boolean_bindable() {
    for service in served().await {
        assert!(service["bindable"].is_boolean());
    }
    assert_refused(
        &catalog("", "").replace("    bindable: true\n", ""),
        "services[0].bindable",
        "required",
    );
    assert_refused(
        &catalog("", "").replace("bindable: true", "bindable: yes-please"),
        "services[0].bindable",
        "true or false",
    );
}

#[test]
fn b26_every_service_has_at_least_one_plan() {
    let yaml = "services:\n  - {id: a, name: one, description: d, bindable: true, plans: []}\n";
    assert_refused(yaml, "services[0].plans", "at least one plan");
}

#[test]
fn b27_requires_holds_only_the_three_defined_values() {
    assert_eq!(
        problems(&catalog(
            "    requires: [syslog_drain, route_forwarding, volume_mount]\n",
            ""
        )),
        Vec::<String>::new()
    );
    assert_refused(
        &catalog("    requires: [root_access]\n", ""),
        "services[0].requires[0]",
        "not one of",
    );
}

#[test]
fn b28_tags_are_a_list_of_strings() {
    assert_refused(
        &catalog("    tags: sql\n", ""),
        "services[0].tags",
        "list of strings",
    );
    assert_refused(
        &catalog("    tags: [1]\n", ""),
        "services[0].tags[0]",
        "string",
    );
}

#[test]
fn b29_metadata_is_an_object() {
    assert_refused(
        &catalog("    metadata: [1]\n", ""),
        "services[0].metadata",
        "object",
    );
    assert_refused(
        &catalog("", "        metadata: text\n"),
        "services[0].plans[0].metadata",
        "object",
    );
}

#[tokio::test]
async fn b30_plan_updateable_is_a_boolean_spelled_as_in_the_spec() {
    let services = served().await;
    assert_eq!(services[0]["plan_updateable"], Value::Bool(true));
    assert!(
        services[1].get("plan_updateable").is_none(),
        "absent means false"
    );
    assert_refused(
        &catalog("    plan_updateable: 1\n", ""),
        "services[0].plan_updateable",
        "true or false",
    );
    assert_refused(
        &catalog("    plan_updatable: true\n", ""),
        "services[0].plan_updatable",
        "unknown field",
    );
}

#[test]
fn b31_dashboard_client_id_and_secret_are_non_empty() {
    assert_eq!(
        problems(&catalog(
            "    dashboard_client: {id: c, secret: s, redirect_uri: 'https://x'}\n",
            ""
        )),
        Vec::<String>::new()
    );
    assert_refused(
        &catalog("    dashboard_client: {id: '', secret: s}\n", ""),
        "services[0].dashboard_client.id",
        "non-empty",
    );
    assert_refused(
        &catalog("    dashboard_client: {id: c}\n", ""),
        "services[0].dashboard_client.secret",
        "non-empty",
    );
}

#[test]
fn b36_plan_names_are_unique_within_their_service() {
    let yaml = catalog("", "      - {id: p2, name: plan, description: d}\n");
    assert_refused(&yaml, "services[0].plans[1].name", "already used");
}

#[tokio::test]
async fn b38_free_is_a_boolean() {
    let services = served().await;
    let large = services[0]["plans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "plan-large")
        .unwrap();
    assert_eq!(large["free"], Value::Bool(false));
    assert_refused(
        &catalog("", "        free: maybe\n"),
        "services[0].plans[0].free",
        "true or false",
    );
}

#[tokio::test]
async fn b39_a_plans_bindable_overrides_the_services() {
    let app = TestApp::spawn().await;
    let id = new_id();
    app.provisioned(&id, "plan-unbindable").await;
    let r = app
        .bind(&id, &new_id(), bind_body("svc-db", "plan-unbindable"))
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.raw);
    assert!(
        r.body["description"]
            .as_str()
            .unwrap()
            .contains("not bindable")
    );
}

#[test]
fn b40_schemas_use_only_the_three_defined_places() {
    let yaml = catalog(
        "",
        "        schemas:\n          service_instance:\n            delete: {parameters: {}}\n",
    );
    assert_refused(
        &yaml,
        "services[0].plans[0].schemas.service_instance.delete",
        "unknown field",
    );
    let yaml = catalog(
        "",
        "        schemas:\n          service_binding:\n            update: {parameters: {}}\n",
    );
    assert_refused(
        &yaml,
        "services[0].plans[0].schemas.service_binding.update",
        "unknown field",
    );
}

#[test]
fn b41_every_parameter_schema_declares_its_version() {
    let yaml = catalog(
        "",
        "        schemas:\n          service_instance:\n            create:\n              parameters: {type: object}\n",
    );
    assert_refused(
        &yaml,
        "services[0].plans[0].schemas.service_instance.create.parameters",
        "$schema",
    );
}

#[test]
fn b42_no_parameter_schema_has_external_references() {
    let yaml = catalog(
        "",
        "        schemas:\n          service_binding:\n            create:\n              parameters: {$schema: 'http://json-schema.org/draft-04/schema#', properties: {a: {$ref: 'http://evil.example/x.json'}}}\n",
    );
    assert_refused(
        &yaml,
        "services[0].plans[0].schemas.service_binding.create.parameters",
        "external",
    );
}

#[test]
fn b43_no_parameter_schema_is_larger_than_64_kb() {
    let big: String = (0..3000)
        .map(|i| format!("p{i}: {{type: string, description: padding-padding-padding}}, "))
        .collect();
    let yaml = catalog(
        "",
        &format!(
            "        schemas:\n          service_instance:\n            create:\n              parameters: {{$schema: 'http://json-schema.org/draft-04/schema#', properties: {{{big}}}}}\n"
        ),
    );
    assert_refused(
        &yaml,
        "services[0].plans[0].schemas.service_instance.create.parameters",
        "64 kB",
    );
}

#[test]
fn b44_parameter_schemas_must_compile_as_draft_04() {
    let yaml = catalog(
        "",
        "        schemas:\n          service_instance:\n            create:\n              parameters: {$schema: 'http://json-schema.org/draft-04/schema#', type: 12}\n",
    );
    assert_refused(
        &yaml,
        "services[0].plans[0].schemas.service_instance.create.parameters",
        "draft-04",
    );
    let yaml = catalog(
        "",
        "        schemas:\n          service_instance:\n            create:\n              parameters: {$schema: 'https://json-schema.org/draft/2020-12/schema'}\n",
    );
    assert_refused(
        &yaml,
        "services[0].plans[0].schemas.service_instance.create.parameters",
        "draft-04",
    );
}

#[tokio::test]
async fn b45_ids_do_not_change_between_fetches() {
    let app = TestApp::spawn().await;
    let first = app.catalog().await;
    let second = app.catalog().await;
    assert_eq!(first.raw, second.raw);
}

#[tokio::test]
async fn b46_bindable_services_and_plans_are_declared_bindable() {
    let services = served().await;
    let db = &services[0];
    assert_eq!(db["bindable"], Value::Bool(true));
    let unbindable = db["plans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "plan-unbindable")
        .unwrap();
    assert_eq!(unbindable["bindable"], Value::Bool(false));
}

#[test]
fn every_problem_is_reported_at_once_with_its_path() {
    let yaml = "services:\n  - id: ''\n    name: Bad Name\n    bindable: maybe\n    backend: {kind: nosuch}\n    plans:\n      - {id: p1, name: x}\n      - {id: p1, name: x, description: d, color: red}\n";
    let found = problems(yaml);
    for expected in [
        "services[0].id:",
        "services[0].name:",
        "services[0].description:",
        "services[0].bindable:",
        "services[0].plans[0].description:",
        "services[0].plans[0].backend.kind:",
        "services[0].plans[1].id:",
        "services[0].plans[1].name:",
        "services[0].plans[1].color:",
    ] {
        assert!(
            found.iter().any(|p| p.starts_with(expected)),
            "missing {expected} in {found:#?}"
        );
    }
}

#[test]
fn backend_kinds_and_settings_are_checked() {
    assert_refused(
        &catalog("", "").replace("kind: recording", "kind: oracle"),
        "services[0].plans[0].backend.kind",
        "known kinds: recording",
    );
    assert_refused(
        &catalog("", "        backend: {settings: {colour: blue}}\n"),
        "services[0].plans[0].backend.settings",
        "colour",
    );
}

#[tokio::test]
async fn a_2_13_client_sees_no_field_that_2_13_does_not_define() {
    let app = TestApp::spawn().await;
    let later_service = [
        "instances_retrievable",
        "bindings_retrievable",
        "allow_context_updates",
    ];
    let later_plan = [
        "maintenance_info",
        "maximum_polling_duration",
        "plan_updateable",
        "binding_rotatable",
    ];
    for service in app.catalog().await.body["services"].as_array().unwrap() {
        for f in later_service {
            assert!(service.get(f).is_none(), "2.13 catalog has service.{f}");
        }
        for plan in service["plans"].as_array().unwrap() {
            for f in later_plan {
                assert!(plan.get(f).is_none(), "2.13 catalog has plan.{f}");
            }
            for bindery_only in ["backend", "asynchronous", "requires_app"] {
                assert!(
                    plan.get(bindery_only).is_none(),
                    "served plan has {bindery_only}"
                );
            }
        }
    }
    let r = app
        .send_with(
            Method::GET,
            "/v2/catalog",
            None,
            &[("X-Broker-API-Version", "2.17")],
            true,
        )
        .await;
    let services = r.body["services"].as_array().unwrap();
    let large = services[0]["plans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "plan-large")
        .unwrap();
    assert_eq!(large["maintenance_info"]["version"], "2.0.0");
    assert_eq!(large["binding_rotatable"], Value::Bool(true));
    assert_eq!(services[1]["instances_retrievable"], Value::Bool(true));
    let r = app
        .send_with(
            Method::GET,
            "/v2/catalog",
            None,
            &[("X-Broker-API-Version", "2.14")],
            true,
        )
        .await;
    let large = r.body["services"][0]["plans"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == "plan-large")
        .unwrap()
        .clone();
    assert!(
        large.get("maintenance_info").is_none(),
        "maintenance_info is 2.15"
    );
}

#[tokio::test]
async fn from_2_16_the_catalog_has_an_etag_and_answers_304() {
    let app = TestApp::spawn().await;
    let r = app
        .send_with(
            Method::GET,
            "/v2/catalog",
            None,
            &[("X-Broker-API-Version", "2.16")],
            true,
        )
        .await;
    let etag = r
        .headers
        .get("etag")
        .expect("etag")
        .to_str()
        .unwrap()
        .to_owned();
    let again = app
        .send_with(
            Method::GET,
            "/v2/catalog",
            None,
            &[("X-Broker-API-Version", "2.16"), ("If-None-Match", &etag)],
            true,
        )
        .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    let old = app.catalog().await;
    assert!(old.headers.get("etag").is_none(), "2.13 gets no ETag");
}
