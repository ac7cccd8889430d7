//! The OSB client: the HTTP calls a platform makes to a broker, with the headers Service Catalog
//! sent. It only reports what came back; what an answer means for a resource is decided by the
//! reconcilers, per operation (kubernetes-platform.md, A.3).

use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::crd::UserInfo;

/// The OSB API version sent on every request (what Service Catalog v0.3.1 sent).
pub const API_VERSION: &str = "2.14";

/// How to authenticate to a broker, read from the broker's Secret on every reconcile.
#[derive(Clone)]
pub enum Auth {
    None,
    Basic { username: String, password: String },
    Bearer(String),
}

impl std::fmt::Debug for Auth {
    // Never print a credential.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Auth::None => "Auth::None",
            Auth::Basic { .. } => "Auth::Basic(..)",
            Auth::Bearer(_) => "Auth::Bearer(..)",
        })
    }
}

/// One broker: its base URL (without `/v2`), credentials and an HTTP client.
#[derive(Clone, Debug)]
pub struct Broker {
    http: reqwest::Client,
    base: String,
    auth: Auth,
}

/// What a call came back with: the HTTP status and the body when it was JSON.
#[derive(Clone, Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Option<Value>,
}

/// A call that got no HTTP answer (connection refused, timeout, TLS).
#[derive(Debug, thiserror::Error)]
#[error("the broker could not be reached: {detail}")]
pub struct Unreachable {
    pub detail: String,
    /// The request may have reached the broker (Service Catalog then orphan-mitigates).
    pub timed_out: bool,
}

impl Reply {
    pub fn is(&self, status: u16) -> bool {
        self.status == status
    }

    /// A body field as a string (`operation`, `state`, `description`, `dashboard_url`).
    pub fn field(&self, name: &str) -> Option<&str> {
        self.body.as_ref()?.get(name)?.as_str()
    }

    /// The broker's error in Service Catalog's words, for conditions and events:
    /// `Status: 409; ErrorMessage: Boom; Description: forced`.
    pub fn error_message(&self) -> String {
        let mut message = format!("Status: {}", self.status);
        if let Some(error) = self.field("error") {
            message.push_str(&format!("; ErrorMessage: {error}"));
        }
        if let Some(description) = self.field("description") {
            message.push_str(&format!("; Description: {description}"));
        }
        message
    }
}

/// The identity of the user who changed the resource, as the
/// `X-Broker-API-Originating-Identity` header carries it.
pub fn originating_identity(user: &UserInfo) -> String {
    let json = json!({"username": user.username, "uid": user.uid, "groups": user.groups, "extra": user.extra});
    format!(
        "kubernetes {}",
        base64::engine::general_purpose::STANDARD.encode(json.to_string())
    )
}

/// The HTTP client for brokers: rustls, the given timeout, an optional extra CA or no checks.
pub fn http_client(
    timeout: Duration,
    ca_pem: Option<&[u8]>,
    insecure: bool,
) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder().timeout(timeout).use_rustls_tls();
    if let Some(pem) = ca_pem {
        for cert in
            reqwest::Certificate::from_pem_bundle(pem).map_err(|e| format!("caBundle: {e}"))?
        {
            builder = builder.add_root_certificate(cert);
        }
    }
    if insecure {
        builder = builder.danger_accept_invalid_certs(true);
    }
    builder.build().map_err(|e| e.to_string())
}

impl Broker {
    pub fn new(http: reqwest::Client, url: &str, auth: Auth) -> Self {
        Self {
            http,
            base: url.trim_end_matches('/').to_owned(),
            auth,
        }
    }

    /// `GET /v2/catalog` (never with an originating identity).
    pub async fn catalog(&self) -> Result<Reply, Unreachable> {
        self.send(reqwest::Method::GET, "/v2/catalog", &[], None, None)
            .await
    }

    pub async fn provision(
        &self,
        iid: &str,
        body: &Value,
        who: Option<&UserInfo>,
    ) -> Result<Reply, Unreachable> {
        let path = format!("/v2/service_instances/{iid}");
        self.send(
            reqwest::Method::PUT,
            &path,
            &[("accepts_incomplete", "true")],
            Some(body),
            who,
        )
        .await
    }

    pub async fn update(
        &self,
        iid: &str,
        body: &Value,
        who: Option<&UserInfo>,
    ) -> Result<Reply, Unreachable> {
        let path = format!("/v2/service_instances/{iid}");
        self.send(
            reqwest::Method::PATCH,
            &path,
            &[("accepts_incomplete", "true")],
            Some(body),
            who,
        )
        .await
    }

    pub async fn deprovision(
        &self,
        iid: &str,
        ids: &Ids<'_>,
        who: Option<&UserInfo>,
    ) -> Result<Reply, Unreachable> {
        let path = format!("/v2/service_instances/{iid}");
        let query = [
            ("accepts_incomplete", "true"),
            ("service_id", ids.service),
            ("plan_id", ids.plan),
        ];
        self.send(reqwest::Method::DELETE, &path, &query, None, who)
            .await
    }

    pub async fn last_operation(
        &self,
        iid: &str,
        operation: Option<&str>,
        ids: &Ids<'_>,
        who: Option<&UserInfo>,
    ) -> Result<Reply, Unreachable> {
        let path = format!("/v2/service_instances/{iid}/last_operation");
        let mut query = vec![("service_id", ids.service), ("plan_id", ids.plan)];
        if let Some(op) = operation {
            query.insert(0, ("operation", op));
        }
        self.send(reqwest::Method::GET, &path, &query, None, who)
            .await
    }

    pub async fn bind(
        &self,
        iid: &str,
        bid: &str,
        body: &Value,
        who: Option<&UserInfo>,
    ) -> Result<Reply, Unreachable> {
        let path = format!("/v2/service_instances/{iid}/service_bindings/{bid}");
        self.send(reqwest::Method::PUT, &path, &[], Some(body), who)
            .await
    }

    pub async fn unbind(
        &self,
        iid: &str,
        bid: &str,
        ids: &Ids<'_>,
        who: Option<&UserInfo>,
    ) -> Result<Reply, Unreachable> {
        let path = format!("/v2/service_instances/{iid}/service_bindings/{bid}");
        let query = [("service_id", ids.service), ("plan_id", ids.plan)];
        self.send(reqwest::Method::DELETE, &path, &query, None, who)
            .await
    }

    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Option<&Value>,
        who: Option<&UserInfo>,
    ) -> Result<Reply, Unreachable> {
        let operation = operation_label(&method, path);
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .query(query)
            .header("X-Broker-API-Version", API_VERSION);
        request = match &self.auth {
            Auth::None => request,
            Auth::Basic { username, password } => request.basic_auth(username, Some(password)),
            Auth::Bearer(token) => request.bearer_auth(token),
        };
        if let Some(user) = who {
            request = request.header(
                "X-Broker-API-Originating-Identity",
                originating_identity(user),
            );
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let result = request.send().await;
        let response = match result {
            Ok(response) => response,
            Err(e) => {
                metrics::counter!("bindery_controller_osb_requests_total", "operation" => operation, "status" => "unreachable")
                    .increment(1);
                return Err(Unreachable {
                    detail: without_url(&e),
                    timed_out: e.is_timeout(),
                });
            }
        };
        let status = response.status().as_u16();
        metrics::counter!("bindery_controller_osb_requests_total", "operation" => operation, "status" => status.to_string())
            .increment(1);
        let bytes = response.bytes().await.map_err(|e| Unreachable {
            detail: without_url(&e),
            timed_out: e.is_timeout(),
        })?;
        Ok(Reply {
            status,
            body: serde_json::from_slice(&bytes).ok(),
        })
    }
}

/// The service and plan ids sent as query parameters on deletes and polls.
#[derive(Clone, Copy, Debug)]
pub struct Ids<'a> {
    pub service: &'a str,
    pub plan: &'a str,
}

/// A low-cardinality name of the call, for metrics.
fn operation_label(method: &reqwest::Method, path: &str) -> &'static str {
    let binding = path.contains("/service_bindings/");
    match (method.as_str(), binding, path.ends_with("/last_operation")) {
        ("GET", _, true) => "last_operation",
        ("GET", false, false) if path == "/v2/catalog" => "catalog",
        ("PUT", false, _) => "provision",
        ("PATCH", _, _) => "update",
        ("DELETE", false, _) => "deprovision",
        ("PUT", true, _) => "bind",
        ("DELETE", true, _) => "unbind",
        _ => "other",
    }
}

/// A transport error's text without its URL (which is not secret, but long and repeated).
fn without_url(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connection failed"
    } else {
        "request failed"
    };
    let mut source = std::error::Error::source(e);
    let mut detail = String::new();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_owned()
    } else {
        format!("{kind}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_message_is_service_catalogs() {
        let reply = Reply {
            status: 409,
            body: Some(json!({"error": "Boom", "description": "forced"})),
        };
        assert_eq!(
            reply.error_message(),
            "Status: 409; ErrorMessage: Boom; Description: forced"
        );
        assert_eq!(
            Reply {
                status: 500,
                body: None
            }
            .error_message(),
            "Status: 500"
        );
    }

    #[test]
    fn originating_identity_is_base64_json() {
        let user = UserInfo {
            username: "u".into(),
            uid: "1".into(),
            groups: vec!["g".into()],
            ..Default::default()
        };
        let header = originating_identity(&user);
        let encoded = header.strip_prefix("kubernetes ").unwrap();
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .unwrap();
        let value: Value = serde_json::from_slice(&decoded).unwrap();
        assert_eq!(value["username"], "u");
        assert_eq!(value["groups"][0], "g");
    }

    #[test]
    fn auth_debug_hides_the_secret() {
        let auth = Auth::Basic {
            username: "admin".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{auth:?}").contains("hunter2"));
    }
}
