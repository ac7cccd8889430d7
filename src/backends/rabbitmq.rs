//! The RabbitMQ backend: a vhost per instance and a user per binding, managed through
//! the RabbitMQ management HTTP API (the `rabbitmq_management` plugin).
//!
//! Names are generated from the ids, never taken from user input, so a rerun converges
//! on the same objects: the vhost is `<prefix>_<h(instance_id)>` and a binding's user is
//! `<prefix>_<h(instance_id)[..12]>_<h(binding_id)[..12]>`, where `h` is the first 20 hex
//! characters of the SHA-256 of the id. RabbitMQ has no practical length limit on either
//! name (at most 42 characters here), so nothing is shortened. Every name is
//! `[a-z0-9_]`, yet it is still percent-encoded wherever it goes into a URL path.
//!
//! Passwords never leave the broker in clear text towards RabbitMQ: the user is created
//! with a `password_hash` computed here (RabbitMQ's `rabbit_password_hashing_sha256`).

use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use reqwest::{Method, StatusCode};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use url::Url;

use super::common::{self, Endpoint, NamePrefix};
use super::{
    BackendError, BindingSpec, Credentials, Facts, InstanceSpec, ServiceBackend, UpdateSpec,
};

pub use super::common::DEFAULT_NAME_PREFIX;

/// How the server is named in errors.
const SERVER: &str = "RabbitMQ";

/// The management API URL used when none is configured.
pub const DEFAULT_API_URL: &str = "http://127.0.0.1:15672";

/// The AMQP port written into credentials when none is configured.
pub const DEFAULT_AMQP_PORT: u16 = 5672;

/// Upper bound of the `max_connections` and `max_queues` plan settings.
pub const MAX_LIMIT: u64 = 100_000;

/// The user tags given to binding users. `management` is the least privileged tag that
/// lets the `http_api_uri` in the credentials work; it only shows the user's own vhost.
const USER_TAGS: &str = "management";

/// How long establishing a TCP connection to the management API may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a whole management API request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);

/// The message of every [`BackendError::Unavailable`] this backend returns.
const UNAVAILABLE: &str = "The RabbitMQ server for this service is unreachable; try again later.";

/// The vhost limits bindery manages: (plan setting, RabbitMQ limit name).
const LIMITS: [(&str, &str); 2] = [
    ("max_connections", "max-connections"),
    ("max_queues", "max-queues"),
];

/// How the RabbitMQ backend reaches the management API, and what goes into credentials.
#[derive(Debug, Clone)]
pub struct RabbitmqBackendConfig {
    /// Base URL of the management API, without `/api` (e.g. [`DEFAULT_API_URL`]); a path
    /// prefix is kept, for a management UI served behind a reverse proxy.
    pub api_url: String,
    /// An administrator user (tag `administrator`) of the management API.
    pub admin_username: String,
    /// That user's password.
    pub admin_password: SecretString,
    /// The AMQP host written into credentials; default: the host of `api_url`.
    pub amqp_host: Option<String>,
    /// The AMQP port written into credentials; default: [`DEFAULT_AMQP_PORT`].
    pub amqp_port: Option<u16>,
    /// Prefix of every vhost and user bindery creates: `[a-z][a-z0-9_]{0,15}`.
    pub name_prefix: String,
}

/// The RabbitMQ [`ServiceBackend`]. It holds an HTTP client only and connects lazily, so
/// the broker starts while RabbitMQ is down.
#[derive(Debug, Clone)]
pub struct RabbitmqBackend {
    client: reqwest::Client,
    /// The management API base, path ending in `/`.
    api_base: Url,
    admin_username: String,
    admin_password: SecretString,
    /// The AMQP host and port written into credentials.
    amqp: Endpoint,
    prefix: NamePrefix,
}

impl RabbitmqBackend {
    /// Checks the configuration and builds the HTTP client; does not connect.
    pub fn new(config: RabbitmqBackendConfig) -> anyhow::Result<Self> {
        let prefix = NamePrefix::new(SERVER, &config.name_prefix)?;
        let mut api_base = Url::parse(&config.api_url)
            .map_err(|e| anyhow::anyhow!("the RabbitMQ management API URL is invalid: {e}"))?;
        if !matches!(api_base.scheme(), "http" | "https") {
            anyhow::bail!("the RabbitMQ management API URL must use http or https");
        }
        if !api_base.username().is_empty() || api_base.password().is_some() {
            // Credentials belong in admin_username/admin_password, where they stay secret.
            anyhow::bail!("the RabbitMQ management API URL must not contain a user or password");
        }
        if api_base.query().is_some() || api_base.fragment().is_some() {
            anyhow::bail!("the RabbitMQ management API URL must not have a query or fragment");
        }
        let Some(api_host) = api_base.host_str().map(str::to_owned) else {
            anyhow::bail!("the RabbitMQ management API URL has no host");
        };
        if !api_base.path().ends_with('/') {
            let path = format!("{}/", api_base.path());
            api_base.set_path(&path);
        }
        if config.admin_username.is_empty() {
            anyhow::bail!("the RabbitMQ admin user name is empty");
        }
        let amqp_host = config.amqp_host.unwrap_or(api_host);
        let amqp_port = config.amqp_port.unwrap_or(DEFAULT_AMQP_PORT);
        let amqp = Endpoint::new("RabbitMQ AMQP", amqp_host, amqp_port)?;
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(REQUEST_TIMEOUT)
            .build()
            .map_err(|e| anyhow::anyhow!("cannot build the RabbitMQ HTTP client: {e}"))?;
        Ok(Self {
            client,
            api_base,
            admin_username: config.admin_username,
            admin_password: config.admin_password,
            amqp,
            prefix,
        })
    }

    /// The vhost of an instance.
    pub fn vhost_name(&self, instance_id: &str) -> String {
        self.prefix.instance_name(instance_id)
    }

    /// The user of a binding.
    pub fn user_name(&self, instance_id: &str, binding_id: &str) -> String {
        self.prefix.binding_user(instance_id, binding_id)
    }

    /// `api/<segments...>` under the base URL, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.api_base.clone();
        {
            // The base is http(s), so it always has path segments.
            let mut path = url
                .path_segments_mut()
                .expect("an http(s) URL has path segments");
            path.pop_if_empty().push("api");
            for segment in segments {
                path.push(segment);
            }
        }
        url
    }

    /// Sends one admin request; returns the status and the body of a 2xx or 404
    /// response, maps everything else to a [`BackendError`].
    async fn call(
        &self,
        method: Method,
        url: Url,
        body: Option<&Value>,
        what: &str,
    ) -> Result<(StatusCode, String), BackendError> {
        let mut request = self.client.request(method, url).basic_auth(
            &self.admin_username,
            Some(self.admin_password.expose_secret()),
        );
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().await.map_err(transport_error)?;
        let status = response.status();
        let text = response.text().await.map_err(transport_error)?;
        if status.is_success() || status == StatusCode::NOT_FOUND {
            return Ok((status, text));
        }
        Err(status_error(status, &text, what))
    }

    /// GET of a JSON value; `None` on 404.
    async fn get_json<T: for<'de> Deserialize<'de>>(
        &self,
        url: Url,
        what: &str,
    ) -> Result<Option<T>, BackendError> {
        let (status, text) = self.call(Method::GET, url, None, what).await?;
        if status == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        serde_json::from_str(&text).map(Some).map_err(|_| {
            BackendError::Failed(format!(
                "RabbitMQ returned an unexpected answer while {what}; check that the management plugin is a supported version."
            ))
        })
    }

    /// PUT of a JSON body; 404 is an error (the parent object is missing).
    async fn put(&self, url: Url, body: &Value, what: &str) -> Result<(), BackendError> {
        let (status, _) = self.call(Method::PUT, url, Some(body), what).await?;
        if status == StatusCode::NOT_FOUND {
            return Err(BackendError::Failed(format!(
                "RabbitMQ reported a missing object while {what}."
            )));
        }
        Ok(())
    }

    /// DELETE; 404 (already gone) counts as success.
    async fn delete(&self, url: Url, what: &str) -> Result<(), BackendError> {
        self.call(Method::DELETE, url, None, what).await.map(|_| ())
    }

    /// Whether the vhost exists.
    async fn vhost_exists(&self, vhost: &str) -> Result<bool, BackendError> {
        let found: Option<Value> = self
            .get_json(self.url(&["vhosts", vhost]), "looking up the vhost")
            .await?;
        Ok(found.is_some())
    }

    /// Sets the limits the plan names and removes the ones it does not, so the vhost
    /// ends up with exactly the plan's limits whatever it had before.
    async fn apply_limits(&self, vhost: &str, plan_settings: &Value) -> Result<(), BackendError> {
        for (setting, limit) in LIMITS {
            let url = self.url(&["vhost-limits", vhost, limit]);
            match limit_setting(plan_settings, setting)? {
                Some(value) => {
                    let what = format!("setting the vhost limit {limit}");
                    self.put(url, &json!({ "value": value }), &what).await?;
                }
                None => {
                    let what = format!("removing the vhost limit {limit}");
                    self.delete(url, &what).await?;
                }
            }
        }
        Ok(())
    }

    /// Closes connections by name; one closed meanwhile (404) is fine.
    async fn close_connections(
        &self,
        connections: Vec<ConnectionInfo>,
        reason: &str,
    ) -> Result<(), BackendError> {
        for connection in connections {
            let url = self.url(&["connections", &connection.name]);
            let response = self
                .client
                .delete(url)
                .basic_auth(
                    &self.admin_username,
                    Some(self.admin_password.expose_secret()),
                )
                // RabbitMQ passes this on to the client in the connection.close frame.
                .header("X-Reason", reason)
                .send()
                .await
                .map_err(transport_error)?;
            let status = response.status();
            if !status.is_success() && status != StatusCode::NOT_FOUND {
                let text = response.text().await.unwrap_or_default();
                return Err(status_error(status, &text, "closing a connection"));
            }
        }
        Ok(())
    }

    /// Closes every connection of one user.
    async fn close_user_connections(&self, user: &str) -> Result<(), BackendError> {
        let connections: Vec<ConnectionInfo> = self
            .get_json(
                self.url(&["connections", "username", user]),
                "listing the binding's connections",
            )
            .await?
            .unwrap_or_default();
        self.close_connections(connections, "The credentials of this binding were revoked.")
            .await
    }
}

#[async_trait]
impl ServiceBackend for RabbitmqBackend {
    fn check_plan_settings(&self, settings: &Value) -> Vec<String> {
        check_plan_settings(settings)
    }

    async fn provision(&self, instance: &InstanceSpec<'_>) -> Result<Facts, BackendError> {
        let vhost = self.vhost_name(instance.instance_id);
        // PUT creates the vhost or leaves an existing one alone.
        let body = json!({ "description": "Managed by bindery" });
        self.put(self.url(&["vhosts", &vhost]), &body, "creating the vhost")
            .await?;
        self.apply_limits(&vhost, instance.plan_settings)
            .await
            .map(|()| None)
    }

    async fn update(&self, change: &UpdateSpec<'_>) -> Result<Facts, BackendError> {
        let vhost = self.vhost_name(change.target.instance_id);
        // Limits of a missing vhost fail with a 500, so say what is actually wrong.
        if !self.vhost_exists(&vhost).await? {
            return Err(BackendError::Failed(
                "The instance's RabbitMQ vhost does not exist; deprovision the instance and create it again.".to_owned(),
            ));
        }
        self.apply_limits(&vhost, change.target.plan_settings)
            .await
            .map(|()| None)
    }

    async fn deprovision(&self, instance: &InstanceSpec<'_>) -> Result<(), BackendError> {
        let vhost = self.vhost_name(instance.instance_id);
        let user_prefix = self.prefix.user_prefix(instance.instance_id);
        // Users go first so nobody reconnects while the connections are being closed.
        let mut users_url = self.url(&["users"]);
        users_url.query_pairs_mut().append_pair("columns", "name");
        let users: Vec<UserInfo> = self
            .get_json(users_url, "listing users")
            .await?
            .unwrap_or_default();
        for user in users
            .iter()
            .filter(|u| common::is_binding_user(&u.name, &user_prefix))
        {
            self.delete(self.url(&["users", &user.name]), "deleting a binding user")
                .await?;
        }
        // An unknown vhost lists no connections (200 with an empty list).
        let connections: Vec<ConnectionInfo> = self
            .get_json(
                self.url(&["vhosts", &vhost, "connections"]),
                "listing the vhost's connections",
            )
            .await?
            .unwrap_or_default();
        self.close_connections(connections, "This service instance was deleted.")
            .await?;
        self.delete(self.url(&["vhosts", &vhost]), "deleting the vhost")
            .await
    }

    async fn bind(&self, binding: &BindingSpec<'_>) -> Result<Credentials, BackendError> {
        let read_only = common::read_only_parameter(binding.parameters)?;
        let vhost = self.vhost_name(binding.instance.instance_id);
        let user = self.user_name(binding.instance.instance_id, binding.binding_id);
        if !self.vhost_exists(&vhost).await? {
            return Err(BackendError::Failed(
                "The instance's RabbitMQ vhost does not exist; provision the instance again or deprovision it.".to_owned(),
            ));
        }
        // Every run of one bind operation sets the same password (`BindingSpec`), so a
        // rerun converges on the credentials that are stored.
        let password = binding.password;
        let user_body = json!({
            "password_hash": rabbit_sha256_password_hash(password.expose_secret())?,
            "hashing_algorithm": "rabbit_password_hashing_sha256",
            "tags": USER_TAGS,
        });
        self.put(
            self.url(&["users", &user]),
            &user_body,
            "creating the binding user",
        )
        .await?;
        // "^$" matches no resource, not even the default exchange: RabbitMQ checks
        // publishes to it as "amq.default".
        let permissions = if read_only {
            json!({ "configure": "^$", "write": "^$", "read": ".*" })
        } else {
            json!({ "configure": ".*", "write": ".*", "read": ".*" })
        };
        self.put(
            self.url(&["permissions", &vhost, &user]),
            &permissions,
            "granting the binding user access to the vhost",
        )
        .await?;

        let secret = password.expose_secret();
        let uri = self.amqp.uri("amqp", &user, secret, Some(&vhost));
        let mut http_api_uri = self.url(&[]);
        {
            let mut path = http_api_uri
                .path_segments_mut()
                .expect("an http(s) URL has path segments");
            // A trailing empty segment gives ".../api/".
            path.push("");
        }
        // Both are [a-z0-9_] / alphanumeric, so these cannot fail on an http(s) URL.
        let _ = http_api_uri.set_username(&user);
        let _ = http_api_uri.set_password(Some(secret));
        Ok(self
            .amqp
            .credentials("rabbitmq", uri)
            .with("vhost", vhost)
            .with("username", user)
            .with("password", secret)
            .with("http_api_uri", http_api_uri.to_string()))
    }

    async fn unbind(&self, binding: &BindingSpec<'_>) -> Result<(), BackendError> {
        let user = self.user_name(binding.instance.instance_id, binding.binding_id);
        // Deleting the user first stops new logins; a rerun after a crash still closes
        // the connections, since listing them needs no user.
        self.delete(self.url(&["users", &user]), "deleting the binding user")
            .await?;
        self.close_user_connections(&user).await
    }
}

/// Problems in a plan's `backend.settings` for the RabbitMQ backend, one message each:
/// an object with the optional integers `max_connections` and `max_queues` (1..=100000).
pub fn check_plan_settings(settings: &Value) -> Vec<String> {
    let map = match common::settings_map(settings, "the RabbitMQ plan settings must be a mapping") {
        Ok(map) => map,
        Err(problems) => return problems,
    };
    let mut problems = Vec::new();
    for (key, value) in map {
        if LIMITS.iter().any(|(setting, _)| setting == key) {
            if let Err(message) = parse_limit(key, value) {
                problems.push(message);
            }
        } else {
            problems.push(format!(
                "unknown RabbitMQ plan setting `{key}` (known: max_connections, max_queues)"
            ));
        }
    }
    problems
}

/// The value of one limit setting, if present and valid.
fn parse_limit(key: &str, value: &Value) -> Result<u64, String> {
    value
        .as_u64()
        .filter(|n| (1..=MAX_LIMIT).contains(n))
        .ok_or_else(|| format!("`{key}` must be an integer from 1 to {MAX_LIMIT}, not {value}"))
}

/// One limit of a plan, re-checked at use: settings were checked at start-up, but a
/// bad value must never reach RabbitMQ.
fn limit_setting(plan_settings: &Value, key: &str) -> Result<Option<u64>, BackendError> {
    match plan_settings.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(value) => parse_limit(key, value)
            .map(Some)
            .map_err(|m| BackendError::Failed(format!("The plan's settings are invalid: {m}."))),
    }
}

/// RabbitMQ's `rabbit_password_hashing_sha256`: base64(salt ++ sha256(salt ++ password))
/// with a 4-byte random salt.
fn rabbit_sha256_password_hash(password: &str) -> Result<String, BackendError> {
    Ok(salted_sha256_hash(common::random_salt()?, password))
}

/// The hash for a given salt (split out so it can be checked against a known value).
fn salted_sha256_hash(salt: [u8; 4], password: &str) -> String {
    let digest = Sha256::new()
        .chain_update(salt)
        .chain_update(password.as_bytes())
        .finalize();
    let mut salted = Vec::with_capacity(4 + digest.len());
    salted.extend_from_slice(&salt);
    salted.extend_from_slice(&digest);
    base64::engine::general_purpose::STANDARD.encode(salted)
}

/// A transport failure (refused, timed out, reset): RabbitMQ may come back.
fn transport_error(error: reqwest::Error) -> BackendError {
    let cause = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "connection failed"
    } else {
        "the connection broke"
    };
    tracing::warn!(error = %error.without_url(), "RabbitMQ management API request failed");
    BackendError::Unavailable(format!("{UNAVAILABLE} ({cause})"))
}

/// An HTTP error status of the management API.
fn status_error(status: StatusCode, body: &str, what: &str) -> BackendError {
    // RabbitMQ answers {"error": ..., "reason": ...}; the reason names only generated
    // objects (bindery never sends a clear-text password), so it is safe to show.
    let reason = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v.get("reason").and_then(Value::as_str).map(str::to_owned))
        .map(|r| r.chars().take(200).collect::<String>())
        .unwrap_or_default();
    tracing::warn!(%status, %reason, "RabbitMQ management API request was refused while {what}");
    match status {
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => BackendError::Failed(format!(
            "RabbitMQ refused the broker's admin credentials while {what}; the operator must check the RabbitMQ admin user (it needs the administrator tag)."
        )),
        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
            BackendError::Unavailable(format!("{UNAVAILABLE} (HTTP {})", s.as_u16()))
        }
        s => BackendError::Failed(format!(
            "RabbitMQ refused the request while {what} (HTTP {}{}{reason}).",
            s.as_u16(),
            if reason.is_empty() { "" } else { ": " }
        )),
    }
}

/// The part of a connection listing bindery uses.
#[derive(Debug, Deserialize)]
struct ConnectionInfo {
    name: String,
}

/// The part of a user listing bindery uses.
#[derive(Debug, Deserialize)]
struct UserInfo {
    name: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn password_hash_matches_rabbitmq() {
        // The example from RabbitMQ's "Computing a password hash" documentation uses
        // salt 908DC60A and password "test12".
        assert_eq!(
            salted_sha256_hash([0x90, 0x8d, 0xc6, 0x0a], "test12"),
            "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR"
        );
    }
}
