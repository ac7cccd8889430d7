//! Basic authentication of every `/v2` request, compared in constant time.
//!
//! Both the presented and the configured user name and password are hashed with
//! SHA-256 and the digests compared with `subtle`, so neither the length nor a
//! matching prefix of a secret leaks through timing, and both halves are always
//! checked before deciding.

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
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Authenticator({} user(s))", self.users.len())
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
        }
    }

    /// True when the `Authorization` header carries valid Basic credentials.
    pub fn verify(&self, header: Option<&str>) -> bool {
        let Some(presented) = header.and_then(decode_basic) else {
            return false;
        };
        let (user, password) = (
            digest(presented.0.as_bytes()),
            digest(presented.1.as_bytes()),
        );
        let mut ok = subtle::Choice::from(0);
        for (u, p) in &self.users {
            ok |= u.ct_eq(&user) & p.ct_eq(&password);
        }
        ok.into()
    }
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
    fn passwords_may_contain_colons() {
        let auth = Authenticator::new([("a", "x:y")]);
        assert!(auth.verify(Some(&basic("a", "x:y"))));
    }
}
