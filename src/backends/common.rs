//! What the built-in backends share: the settings of a server reached through one
//! admin URL, the names derived from platform ids, the endpoint written into
//! credentials and the URIs built on it, the `read_only` bind parameter, salts, and
//! the sorting of sqlx errors the two SQL backends have in common.
//!
//! Nothing here talks to a server; each backend keeps its own client.

use std::fmt;
use std::sync::LazyLock;
use std::time::Duration;

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tracing::log::LevelFilter;
use url::Url;

use super::{BackendError, Credentials};

/// The name prefix used when the configuration does not choose one.
pub const DEFAULT_NAME_PREFIX: &str = "bindery";

/// Hex characters of `sha256(id)` that name an instance: 80 bits, so collisions
/// between instances are not a practical concern.
pub const ID_HASH_LEN: usize = 20;

/// Hex characters of `sha256(id)` in a binding's name (48 bits, only needs to be
/// unique among the bindings of one instance).
pub const BINDING_HASH_LEN: usize = 12;

/// Longest accepted name prefix, so that every generated name stays short.
pub const MAX_PREFIX_LEN: usize = 16;

/// How to reach a managed server through one admin URL (PostgreSQL, MariaDB, Redis)
/// and how to name what is created on it. Each backend documents the URL's scheme
/// and the privileges its user needs. `Debug` does not show the admin URL.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Admin connection URL, e.g. `postgres://postgres@127.0.0.1:5432/postgres`.
    pub admin_url: SecretString,
    /// Host written into credentials (apps may reach the server by another name than
    /// bindery); default: the admin URL's host.
    pub credentials_host: Option<String>,
    /// Port written into credentials; default: the admin URL's port.
    pub credentials_port: Option<u16>,
    /// Prefix of every generated name; default [`DEFAULT_NAME_PREFIX`]; must match
    /// `[a-z][a-z0-9_]{0,15}`.
    pub name_prefix: String,
}

impl ServerConfig {
    /// A configuration with the default prefix, writing the admin URL's host and port
    /// into credentials.
    pub fn new(admin_url: SecretString) -> Self {
        Self {
            admin_url,
            credentials_host: None,
            credentials_port: None,
            name_prefix: DEFAULT_NAME_PREFIX.to_owned(),
        }
    }

    /// Checks the name prefix and parses the admin URL, which must use one of
    /// `schemes`. `server` names the server in errors ("PostgreSQL"); no error quotes
    /// the URL, which holds a password.
    pub fn check(&self, server: &str, schemes: &[&str]) -> anyhow::Result<(Url, NamePrefix)> {
        let prefix = NamePrefix::new(server, &self.name_prefix)?;
        let url = Url::parse(self.admin_url.expose_secret())
            .map_err(|_| invalid_admin_url(server, schemes))?;
        if !schemes.contains(&url.scheme()) {
            return Err(invalid_admin_url(server, schemes));
        }
        Ok((url, prefix))
    }

    /// The options of an sqlx admin connection from the admin URL (after [`Self::check`]),
    /// statement logging off: statements carry password hashes or verifiers.
    pub fn sqlx_options<O: sqlx::ConnectOptions>(
        &self,
        server: &str,
        schemes: &[&str],
    ) -> anyhow::Result<(O, NamePrefix)> {
        let (_, prefix) = self.check(server, schemes)?;
        let options = O::from_str(self.admin_url.expose_secret())
            .map_err(|_| invalid_admin_url(server, schemes))?
            .log_statements(LevelFilter::Off)
            .log_slow_statements(LevelFilter::Off, Duration::from_secs(3600));
        Ok((options, prefix))
    }

    /// The endpoint written into credentials: the configured host and port, else the
    /// admin connection's. `admin_host` is `None` when the admin connection uses a Unix
    /// socket, which applications cannot be given.
    pub fn endpoint(
        &self,
        server: &str,
        admin_host: Option<&str>,
        admin_port: u16,
    ) -> anyhow::Result<Endpoint> {
        let host = match (&self.credentials_host, admin_host) {
            (Some(host), _) => host.clone(),
            (None, Some(host)) => host.to_owned(),
            (None, None) => anyhow::bail!(
                "the {server} admin URL uses a Unix socket: set the host written into credentials"
            ),
        };
        Endpoint::new(server, host, self.credentials_port.unwrap_or(admin_port))
    }
}

/// What a backend on a shared server keeps besides its client: where applications
/// reach the server, and the prefix of every name it creates. It holds no secret, so
/// it is what a backend's `Debug` shows.
#[derive(Debug, Clone)]
pub struct SharedServer {
    /// Host and port written into credentials.
    pub endpoint: Endpoint,
    /// Prefix of generated names.
    pub prefix: NamePrefix,
}

impl SharedServer {
    /// A backend's `Debug`: its name and this, nothing else (its client or connect
    /// options would print the admin password).
    pub fn debug_as(&self, backend: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(backend)
            .field("server", self)
            .finish_non_exhaustive()
    }
}

/// The error for an admin URL that does not parse or has the wrong scheme; it never
/// quotes the URL (a parser's own message could, password included).
pub fn invalid_admin_url(server: &str, schemes: &[&str]) -> anyhow::Error {
    let expected: Vec<String> = schemes.iter().map(|s| format!("{s}://")).collect();
    anyhow::anyhow!(
        "the {server} admin URL is not a valid {} URL",
        expected.join(" or ")
    )
}

/// A checked prefix of generated names, `[a-z][a-z0-9_]{0,15}`, and the names every
/// backend derives from it and the platform's ids. Ids are opaque input: they only
/// ever reach a server hashed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePrefix(String);

impl NamePrefix {
    /// Checks `prefix`; `server` names the backend in the error.
    pub fn new(server: &str, prefix: &str) -> anyhow::Result<Self> {
        if !is_valid_prefix(prefix) {
            anyhow::bail!(
                "the {server} name prefix {prefix:?} is not valid: it must match [a-z][a-z0-9_]{{0,15}}"
            );
        }
        Ok(Self(prefix.to_owned()))
    }

    /// The prefix.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The object of an instance (database, vhost): `<prefix>_<h(instance)>`, at most
    /// 37 characters.
    pub fn instance_name(&self, instance_id: &str) -> String {
        format!("{}_{}", self.0, id_hash(instance_id, ID_HASH_LEN))
    }

    /// What every binding user of an instance starts with: `<prefix>_<h(instance)[..12]>_`.
    pub fn user_prefix(&self, instance_id: &str) -> String {
        format!("{}_{}_", self.0, id_hash(instance_id, BINDING_HASH_LEN))
    }

    /// The user of a binding: `<prefix>_<h(instance)[..12]>_<h(binding)[..12]>`, at
    /// most 42 characters.
    pub fn binding_user(&self, instance_id: &str, binding_id: &str) -> String {
        format!(
            "{}{}",
            self.user_prefix(instance_id),
            id_hash(binding_id, BINDING_HASH_LEN)
        )
    }
}

impl fmt::Display for NamePrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Whether `prefix` is acceptable as the prefix of generated names:
/// `[a-z][a-z0-9_]{0,15}`.
pub fn is_valid_prefix(prefix: &str) -> bool {
    let bytes = prefix.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_PREFIX_LEN
        && bytes[0].is_ascii_lowercase()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
}

/// The first `len` hex characters of `sha256(id)`: a fixed-size, name-safe stand-in
/// for an opaque platform id, the same on every call so that every step can be rerun.
pub fn id_hash(id: &str, len: usize) -> String {
    let mut hex = hex::encode(Sha256::digest(id.as_bytes()));
    hex.truncate(len);
    hex
}

/// Whether `user` is a binding user bindery generates under `user_prefix`: the prefix
/// followed by exactly 12 lowercase hex digits, so that no other name (say, of another
/// bindery whose prefix happens to extend ours) is ever matched.
pub fn is_binding_user(user: &str, user_prefix: &str) -> bool {
    user.strip_prefix(user_prefix).is_some_and(|rest| {
        rest.len() == BINDING_HASH_LEN
            && rest.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    })
}

/// Everything but RFC 3986 unreserved characters, which is right for the userinfo,
/// path and query parts alike.
const NOT_UNRESERVED: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn percent_encode(s: &str) -> String {
    utf8_percent_encode(s, NOT_UNRESERVED).to_string()
}

/// Where applications reach a managed server: the host and port written into
/// credentials, checked to fit into a URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// Host name or address, as configured (an IPv6 address without brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl Endpoint {
    /// Checks that `host` can stand in a URI authority; `server` names the backend in
    /// the error.
    pub fn new(server: &str, host: String, port: u16) -> anyhow::Result<Self> {
        let endpoint = Self { host, port };
        let host = &endpoint.host;
        let plausible = !host.is_empty()
            && !host
                .chars()
                .any(|c| c.is_whitespace() || c.is_control() || "/@?#".contains(c));
        if !plausible || endpoint.base("x").is_none() {
            anyhow::bail!("the {server} credentials host {host:?} is not a valid host name");
        }
        Ok(endpoint)
    }

    /// `<scheme>://<host>:<port>`, an IPv6 address bracketed.
    fn base(&self, scheme: &str) -> Option<Url> {
        let mut url = Url::parse(&format!("{scheme}://localhost")).ok()?;
        let host = if self.host.contains(':') && !self.host.starts_with('[') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        url.set_host(Some(&host)).ok()?;
        url.set_port(Some(self.port)).ok()?;
        Some(url)
    }

    fn checked_base(&self, scheme: &str) -> Url {
        self.base(scheme)
            .expect("the host was checked by Endpoint::new and schemes are constants")
    }

    /// `<scheme>://<user>:<password>@<host>:<port>[/<path>]`, user, password and path
    /// percent-encoded (everything but unreserved characters).
    pub fn uri(&self, scheme: &str, user: &str, password: &str, path: Option<&str>) -> String {
        let mut url = self.checked_base(scheme);
        // Already encoded: `url` leaves `%XX` and unreserved characters alone.
        let login = url
            .set_username(&percent_encode(user))
            .and_then(|()| url.set_password(Some(&percent_encode(password))));
        login.expect("a URL with a host takes a user and password");
        if let Some(path) = path {
            url.set_path(&format!("/{}", percent_encode(path)));
        }
        url.to_string()
    }

    /// The credentials of a Service Binding `service_type` reached at this endpoint:
    /// `type`, `provider`, `uri`, `host` and `port`; the backend adds the rest.
    pub fn credentials(&self, service_type: &str, uri: String) -> Credentials {
        Credentials::service_binding(service_type)
            .with("uri", uri)
            .with("host", self.host.clone())
            .with("port", self.port.to_string())
    }

    /// `jdbc:<subprotocol>://<host>:<port>/<database>?user=<user>&password=<password>`,
    /// the values percent-encoded.
    pub fn jdbc_url(
        &self,
        subprotocol: &str,
        database: &str,
        user: &str,
        password: &str,
    ) -> String {
        let mut url = self.checked_base(subprotocol);
        url.set_path(&format!("/{}", percent_encode(database)));
        url.set_query(Some(&format!(
            "user={}&password={}",
            percent_encode(user),
            percent_encode(password)
        )));
        format!("jdbc:{url}")
    }
}

/// The credentials of a database on a SQL server (PostgreSQL, MariaDB): `uri`,
/// `jdbc_url`, host, port, database, user name and password. The three names are the
/// Service Binding `type`, the URI scheme and the JDBC subprotocol.
pub fn database_credentials(
    [service_type, scheme, jdbc_subprotocol]: [&str; 3],
    endpoint: &Endpoint,
    database: &str,
    username: &str,
    password: &SecretString,
) -> Credentials {
    let password = password.expose_secret();
    let uri = endpoint.uri(scheme, username, password, Some(database));
    endpoint
        .credentials(service_type, uri)
        .with(
            "jdbc_url",
            endpoint.jdbc_url(jdbc_subprotocol, database, username, password),
        )
        .with("database", database)
        .with("username", username)
        .with("password", password)
}

/// The `read_only` bind parameter (default false) of a backend that leaves other bind
/// parameters to the plan's schema (Redis, RabbitMQ).
pub fn read_only_parameter(parameters: &Map<String, Value>) -> Result<bool, BackendError> {
    match parameters.get("read_only") {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(BackendError::Failed(
            "The bind parameter `read_only` must be true or false.".to_owned(),
        )),
    }
}

/// The `read_only` bind parameter (default false) of a backend that takes no other
/// bind parameter and refuses any (PostgreSQL, MariaDB).
pub fn only_read_only_parameter(parameters: &Map<String, Value>) -> Result<bool, BackendError> {
    if let Some(key) = parameters.keys().find(|k| *k != "read_only") {
        return Err(BackendError::Failed(format!(
            "Unknown bind parameter {key:?}: this service accepts read_only"
        )));
    }
    match parameters.get("read_only") {
        None => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(BackendError::Failed(
            "The bind parameter read_only must be true or false".to_owned(),
        )),
    }
}

/// `N` random bytes from the operating system, the salt of a password hash.
pub fn random_salt<const N: usize>() -> Result<[u8; N], BackendError> {
    let mut salt = [0u8; N];
    getrandom::fill(&mut salt).map_err(|_| {
        BackendError::Failed(
            "The broker could not hash a password: the operating system's random number generator failed."
                .to_owned(),
        )
    })?;
    Ok(salt)
}

/// The mapping of a plan's `backend.settings` (`null`: an empty one), or the one
/// problem `not_a_mapping`.
pub fn settings_map<'a>(
    settings: &'a Value,
    not_a_mapping: &str,
) -> Result<&'a Map<String, Value>, Vec<String>> {
    static EMPTY: LazyLock<Map<String, Value>> = LazyLock::new(Map::new);
    match settings {
        Value::Null => Ok(&EMPTY),
        Value::Object(map) => Ok(map),
        _ => Err(vec![not_a_mapping.to_owned()]),
    }
}

/// One problem per key of `map` that is not among `known`: "unknown <setting> "key"
/// (known: ...)".
pub fn unknown_keys(map: &Map<String, Value>, known: &[&str], setting: &str) -> Vec<String> {
    map.keys()
        .filter(|key| !known.contains(&key.as_str()))
        .map(|key| format!("unknown {setting} {key:?} (known: {})", known.join(", ")))
        .collect()
}

/// The error of an operation on a plan whose settings do not parse: `what` ("The
/// plan's MariaDB settings are invalid") and the problems.
pub fn invalid_plan_settings(what: &str, problems: Vec<String>) -> BackendError {
    BackendError::Failed(format!("{what}: {}", problems.join("; ")))
}

/// The problems of a plan's settings as a list (empty when they parse).
pub fn problems<T>(parsed: Result<T, Vec<String>>) -> Vec<String> {
    parsed.err().unwrap_or_default()
}

/// Whether an sqlx error means the server could not be reached (try again later)
/// rather than refused something.
pub fn is_transport_error(err: &sqlx::Error) -> bool {
    matches!(
        err,
        sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed
    )
}

/// The `Unavailable` error of an unreachable `server` ("PostgreSQL").
pub fn unreachable(server: &str, what: &str) -> BackendError {
    BackendError::Unavailable(format!(
        "The {server} server for this service is unreachable; try again later (could not {what})."
    ))
}

/// The error of an operation on an instance whose database is gone.
pub fn missing_database(server: &str) -> BackendError {
    BackendError::Failed(format!(
        "The database of this service instance does not exist on the {server} server; \
         it was deleted or never finished provisioning"
    ))
}

/// Sorts an sqlx error of a SQL backend into "try again later" and "this will not
/// work": a transport failure is [`unreachable`], a refusal by the server is whatever
/// `refused` makes of it, anything else is [`unexpected`].
pub fn classify_sqlx(
    server: &str,
    err: &sqlx::Error,
    what: &str,
    refused: impl FnOnce(&dyn sqlx::error::DatabaseError) -> BackendError,
) -> BackendError {
    if is_transport_error(err) {
        tracing::warn!(error = %err, "{server} server unreachable while trying to {what}");
        return unreachable(server, what);
    }
    match err.as_database_error() {
        Some(db) => refused(db),
        None => unexpected(server, err, what),
    }
}

/// An sqlx error that is neither a transport failure nor the server's refusal: logged,
/// and reported without detail.
pub fn unexpected(server: &str, err: &sqlx::Error, what: &str) -> BackendError {
    tracing::warn!(error = %err, "unexpected error while trying to {what}");
    BackendError::Failed(format!(
        "Could not {what} on the {server} server: unexpected error (see the broker's log)"
    ))
}

/// A JSON object as parameters, for tests.
#[cfg(test)]
pub(crate) fn params(object: Value) -> Map<String, Value> {
    object.as_object().expect("a JSON object").clone()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The hand-written encoder the backends used before `percent-encoding`.
    fn old_percent_encode(s: &str) -> String {
        let mut out = String::with_capacity(s.len());
        for b in s.bytes() {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                out.push(char::from(b));
            } else {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }

    /// The host as the backends put it into their URIs by hand.
    fn old_host(host: &str) -> String {
        if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host.to_owned()
        }
    }

    /// The URIs as PostgreSQL, MariaDB and RabbitMQ formatted them by hand.
    fn old_uri(scheme: &str, host: &str, port: u16, user: &str, pw: &str, path: &str) -> String {
        let host = old_host(host);
        let e = old_percent_encode;
        format!("{scheme}://{}:{}@{host}:{port}/{}", e(user), e(pw), e(path))
    }

    fn old_jdbc(sub: &str, host: &str, port: u16, user: &str, pw: &str, db: &str) -> String {
        let host = old_host(host);
        let e = old_percent_encode;
        format!(
            "jdbc:{sub}://{host}:{port}/{}?user={}&password={}",
            e(db),
            e(user),
            e(pw)
        )
    }

    #[test]
    fn percent_encoding() {
        assert_eq!(percent_encode("aZ0-._~"), "aZ0-._~");
        assert_eq!(percent_encode("a b@c:d/é"), "a%20b%40c%3Ad%2F%C3%A9");
        assert_eq!(percent_encode("a_b/c d"), "a_b%2Fc%20d");
        for s in [
            "",
            "p w",
            "!$&'()*+,;=%",
            "ü\u{7f}\0:/?#[]@",
            "Xk3pQ9rT7mWv2LzN8bYc",
        ] {
            assert_eq!(percent_encode(s), old_percent_encode(s), "{s:?}");
        }
    }

    #[test]
    fn uris_are_the_same_as_the_hand_built_ones() {
        let users = ["bd_0123456789ab_ba9876543210", "u s@r:!", "ü%"];
        let passwords = ["Xk3pQ9rT7mWv2LzN8bYc4HdJ6fGs1aEu", "p w", "p@/x?#&=+'%25"];
        for host in ["db.example", "::1", "[::1]", "10.0.0.7", "DB.Internal"] {
            let endpoint = Endpoint::new("test", host.to_owned(), 6543).unwrap();
            for (user, pw) in users.iter().zip(passwords) {
                for (scheme, path) in [("postgresql", "bd_db"), ("mysql", "a b"), ("amqp", "v/h")] {
                    assert_eq!(
                        endpoint.uri(scheme, user, pw, Some(path)),
                        old_uri(scheme, host, 6543, user, pw, path)
                    );
                }
                for sub in ["postgresql", "mariadb"] {
                    assert_eq!(
                        endpoint.jdbc_url(sub, "bd_db", user, pw),
                        old_jdbc(sub, host, 6543, user, pw, "bd_db")
                    );
                }
            }
        }
    }

    #[test]
    fn redis_uris_encode_and_bracket() {
        // What Redis's `credentials_uri` (built with `url` too) returned.
        let endpoint = Endpoint::new("Redis", "::1".to_owned(), 6380).unwrap();
        assert_eq!(
            endpoint.uri("redis", "u_1", "p", None),
            "redis://u_1:p@[::1]:6380"
        );
        let endpoint = Endpoint::new("Redis", "redis.example".to_owned(), 6379).unwrap();
        assert_eq!(
            endpoint.uri("redis", "u", "p@/x", None),
            "redis://u:p%40%2Fx@redis.example:6379"
        );
    }

    #[test]
    fn hosts_that_cannot_be_in_a_uri_are_refused() {
        for host in [
            "", "a b", "a/b", "u@h", "h?x", "h#x", "a\nb", "[::1", "a:b:zz",
        ] {
            assert!(
                Endpoint::new("test", host.to_owned(), 1).is_err(),
                "{host:?}"
            );
        }
        let config = ServerConfig::new(SecretString::from("postgres:///db"));
        let err = config.endpoint("PostgreSQL", None, 5432).unwrap_err();
        assert!(err.to_string().contains("Unix socket"), "{err}");
        let config = ServerConfig {
            credentials_port: Some(7),
            ..ServerConfig::new(SecretString::from("x://h"))
        };
        let endpoint = config.endpoint("x", Some("h"), 5432).unwrap();
        assert_eq!((endpoint.host.as_str(), endpoint.port), ("h", 7));
    }

    #[test]
    fn admin_urls_are_checked_without_being_quoted() {
        let check = |url: &str, prefix: &str| {
            ServerConfig {
                name_prefix: prefix.to_owned(),
                ..ServerConfig::new(SecretString::from(url.to_owned()))
            }
            .check("MariaDB", &["mysql", "mariadb"])
        };
        assert!(check("mysql://root:s3cr3tpw@h:3306", "bindery").is_ok());
        assert!(check("mariadb://h", "a").is_ok());
        for (url, prefix) in [
            ("postgres://admin:s3cr3tpw@x/y", "bindery"),
            ("not a url s3cr3tpw", "bindery"),
            ("mysql://admin:s3cr3tpw@x/y", "Bad-Prefix"),
        ] {
            let err = format!("{:#}", check(url, prefix).unwrap_err());
            assert!(
                err.contains("MariaDB") && !err.contains("s3cr3tpw"),
                "{err}"
            );
        }
        let err = check("redis://x", "bindery").unwrap_err().to_string();
        assert!(err.contains("mysql:// or mariadb://"), "{err}");
    }

    #[test]
    fn prefixes_and_names() {
        for good in ["bindery", "a", "a_0123456789abcd"] {
            assert!(is_valid_prefix(good), "{good}");
        }
        for bad in [
            "",
            "1abc",
            "0a",
            "Bindery",
            "a-b",
            "a*",
            "a_0123456789abcde",
        ] {
            assert!(!is_valid_prefix(bad), "{bad}");
            assert!(NamePrefix::new("Redis", bad).is_err(), "{bad}");
        }
        let prefix = NamePrefix::new("test", "abcdefghijklmnop").unwrap();
        assert_eq!(
            prefix.instance_name("i"),
            format!("abcdefghijklmnop_{}", id_hash("i", 20))
        );
        let user = prefix.binding_user("i", "b");
        assert_eq!(user.len(), 42);
        let user_prefix = prefix.user_prefix("i");
        assert!(is_binding_user(&user, &user_prefix));
        assert!(!is_binding_user(&user, &prefix.user_prefix("j")));
        assert!(!is_binding_user(
            &format!("{user_prefix}0123456789ab_"),
            &user_prefix
        ));
        assert!(!is_binding_user(
            &format!("{user_prefix}0123456789AB"),
            &user_prefix
        ));
        // sha256("abc") = ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad
        assert_eq!(id_hash("abc", 12), "ba7816bf8f01");
    }

    #[test]
    fn read_only_parameters() {
        assert!(!read_only_parameter(&Map::new()).unwrap());
        assert!(!read_only_parameter(&params(json!({"read_only": null}))).unwrap());
        assert!(read_only_parameter(&params(json!({"read_only": true, "x": 1}))).unwrap());
        assert!(read_only_parameter(&params(json!({"read_only": "yes"}))).is_err());
        assert!(!only_read_only_parameter(&Map::new()).unwrap());
        assert!(only_read_only_parameter(&params(json!({"read_only": true}))).unwrap());
        assert!(only_read_only_parameter(&params(json!({"read_only": null}))).is_err());
        assert!(only_read_only_parameter(&params(json!({"admin": true}))).is_err());
    }
}
