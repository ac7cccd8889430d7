//! Authentication of every `/v2` request: HTTP Basic with any of several users (so a
//! platform can rotate its credentials without downtime) or a bearer token
//! (Kubernetes Service Catalog's `authInfo.bearer`), compared in constant time.
//!
//! Presented and configured secrets are hashed with SHA-256 and the digests compared
//! with `subtle`, so neither the length nor a matching prefix of a secret leaks through
//! timing; every configured credential is checked before deciding.

use std::fmt;

use axum::extract::{Request, State};
use axum::http::header::AUTHORIZATION;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::BrokerError;

/// The credentials platforms may present.
#[derive(Clone)]
pub struct Authenticator {
    users: Vec<([u8; 32], [u8; 32])>,
    tokens: Vec<[u8; 32]>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Authenticator({} user(s), {} token(s))",
            self.users.len(),
            self.tokens.len()
        )
    }
}

fn digest(value: &[u8]) -> [u8; 32] {
    Sha256::digest(value).into()
}

impl Authenticator {
    /// Accepts any of `users` (user name, password).
    pub fn new<'a>(users: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        Self {
            users: users
                .into_iter()
                .map(|(u, p)| (digest(u.as_bytes()), digest(p.as_bytes())))
                .collect(),
            tokens: Vec::new(),
        }
    }

    /// Also accepts `Authorization: Bearer <token>` for any of `tokens`.
    pub fn with_tokens<'a>(mut self, tokens: impl IntoIterator<Item = &'a str>) -> Self {
        self.tokens.extend(
            tokens
                .into_iter()
                .filter(|t| !t.is_empty())
                .map(|t| digest(t.as_bytes())),
        );
        self
    }

    /// True when the `Authorization` header carries valid credentials.
    pub fn verify(&self, header: Option<&str>) -> bool {
        let Some(header) = header else {
            return false;
        };
        let mut ok = subtle::Choice::from(0);
        if let Some((user, password)) = decode_basic(header) {
            let (user, password) = (digest(user.as_bytes()), digest(password.as_bytes()));
            for (u, p) in &self.users {
                ok |= u.ct_eq(&user) & p.ct_eq(&password);
            }
        } else if let Some(token) = decode_bearer(header) {
            let token = digest(token.as_bytes());
            for t in &self.tokens {
                ok |= t.ct_eq(&token);
            }
        }
        ok.into()
    }
}

fn decode_bearer(header: &str) -> Option<&str> {
    let (scheme, token) = header.trim().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then_some(token.trim())
        .filter(|t| !t.is_empty())
}

fn decode_basic(header: &str) -> Option<(String, String)> {
    let (scheme, encoded) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

/// Middleware: 401 with a JSON body and `WWW-Authenticate` unless authenticated.
pub async fn require_auth(
    State(auth): State<std::sync::Arc<Authenticator>>,
    request: Request,
    next: Next,
) -> Response {
    let header = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if auth.verify(header) {
        next.run(request).await
    } else {
        BrokerError::Unauthorized.into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user: &str, pass: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"))
        )
    }

    #[test]
    fn accepts_any_configured_user() {
        let auth = Authenticator::new([("a", "1"), ("b", "2")]);
        assert!(auth.verify(Some(&basic("a", "1"))));
        assert!(auth.verify(Some(&basic("b", "2"))));
    }

    #[test]
    fn rejects_wrong_missing_and_mixed_credentials() {
        let auth = Authenticator::new([("a", "1"), ("b", "2")]);
        assert!(!auth.verify(None));
        assert!(!auth.verify(Some(&basic("a", "2"))));
        assert!(!auth.verify(Some(&basic("a", ""))));
        assert!(!auth.verify(Some("Bearer abc")));
        assert!(!auth.verify(Some("Basic !!!")));
    }

    #[test]
    fn bearer_tokens_are_accepted_only_when_configured() {
        let auth = Authenticator::new([("a", "1")]).with_tokens(["tok-1", "tok-2"]);
        assert!(auth.verify(Some("Bearer tok-2")));
        assert!(auth.verify(Some("bearer tok-1")));
        assert!(!auth.verify(Some("Bearer tok-3")));
        assert!(!auth.verify(Some("Bearer ")));
        assert!(!Authenticator::new([("a", "1")]).verify(Some("Bearer tok-1")));
    }

    #[test]
    fn passwords_may_contain_colons() {
        let auth = Authenticator::new([("a", "x:y")]);
        assert!(auth.verify(Some(&basic("a", "x:y"))));
    }
}
