//! The load generator's HTTP client: bindery's address, credentials and request bodies.

use std::sync::atomic::AtomicBool;
use std::time::Duration;

use base64::Engine as _;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::{PASSWORD, USER};

const API_VERSION: &str = "2.13";

/// What the load generator needs to talk to bindery.
pub(crate) struct Ctx {
    client: reqwest::Client,
    base: String,
    pub(crate) provision_body: &'static str,
    pub(crate) bind_body: &'static str,
    pub(crate) delete_query: &'static str,
    pub(crate) abort: AtomicBool,
}

impl Ctx {
    pub(crate) fn new(port: u16, service_id: &str, plan_id: &str, parameters: &Value) -> Self {
        let mut headers = HeaderMap::new();
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{PASSWORD}"));
        headers.insert(
            AUTHORIZATION,
            HeaderValue::from_str(&format!("Basic {basic}")).expect("ascii"),
        );
        headers.insert(
            "X-Broker-API-Version",
            HeaderValue::from_static(API_VERSION),
        );
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .no_proxy()
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(300))
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client");
        let provision_body = serde_json::json!({
            "service_id": service_id,
            "plan_id": plan_id,
            "organization_guid": "bench-org",
            "space_guid": "bench-space",
            "parameters": parameters,
            "context": {"platform": "kubernetes", "namespace": "bench", "clusterid": "bench-cluster", "instance_name": "bench"},
        })
        .to_string();
        let bind_body = serde_json::json!({
            "service_id": service_id,
            "plan_id": plan_id,
            "bind_resource": {"app_guid": "bench-app"},
            "context": {"platform": "kubernetes", "namespace": "bench"},
        })
        .to_string();
        Self {
            client,
            base: format!("http://127.0.0.1:{port}"),
            provision_body: provision_body.leak(),
            bind_body: bind_body.leak(),
            delete_query: format!("?service_id={service_id}&plan_id={plan_id}").leak(),
            abort: AtomicBool::new(false),
        }
    }

    /// One request; anything but `expect` is an error that fails the run.
    pub(crate) async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&'static str>,
        expect: StatusCode,
        read: bool,
    ) -> Result<String, String> {
        let mut request = self
            .client
            .request(method.clone(), format!("{}{path}", self.base));
        if let Some(body) = body {
            request = request.header(CONTENT_TYPE, "application/json").body(body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("{method} {path}: {e}"))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| format!("{method} {path}: reading the answer: {e}"))?;
        if status != expect {
            return Err(format!(
                "{method} {path}: expected {expect}, got {status}: {}",
                String::from_utf8_lossy(&bytes)
            ));
        }
        Ok(if read {
            String::from_utf8_lossy(&bytes).into_owned()
        } else {
            String::new()
        })
    }
}
