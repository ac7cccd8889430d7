//! `X-Broker-API-Originating-Identity`: who on the platform asked for a change.
//!
//! The header is `<platform> <base64(JSON object)>`. The spec defines no error for a
//! malformed header, so parsing never fails a request: a value that does not decode
//! is kept as "unparsable" for the audit trail and otherwise ignored.

use base64::Engine as _;
use serde_json::{Map, Value};

/// Name of the header.
pub const ORIGINATING_IDENTITY_HEADER: &str = "x-broker-api-originating-identity";

/// The decoded identity of the platform user behind a request.
#[derive(Debug, Clone, PartialEq)]
pub struct OriginatingIdentity {
    /// The platform token, e.g. `kubernetes` or `cloudfoundry`.
    pub platform: String,
    /// The decoded JSON object (`{"username": ..., "uid": ...}` on Kubernetes).
    pub value: Map<String, Value>,
}

impl OriginatingIdentity {
    /// Parses a header value; `None` when it is not `<platform> <base64 JSON object>`.
    pub fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim();
        let split_at = raw.find(char::is_whitespace)?;
        let (platform, encoded) = raw.split_at(split_at);
        let encoded = encoded.trim();
        if platform.is_empty() || encoded.is_empty() {
            return None;
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(encoded)
            .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded))
            .ok()?;
        match serde_json::from_slice::<Value>(&bytes).ok()? {
            Value::Object(value) => Some(Self {
                platform: platform.to_owned(),
                value,
            }),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_kubernetes_example() {
        let encoded = base64::engine::general_purpose::STANDARD
            .encode(r#"{"username":"harness-user","uid":"u1","groups":["system:authenticated"]}"#);
        let id = OriginatingIdentity::parse(&format!("kubernetes {encoded}")).expect("parses");
        assert_eq!(id.platform, "kubernetes");
        assert_eq!(id.value["username"], "harness-user");
    }

    #[test]
    fn accepts_unpadded_base64() {
        let encoded = base64::engine::general_purpose::STANDARD_NO_PAD.encode(r#"{"user_id":"a"}"#);
        let id = OriginatingIdentity::parse(&format!("cloudfoundry {encoded}")).expect("parses");
        assert_eq!(id.value["user_id"], "a");
    }

    #[test]
    fn garbage_is_none_not_an_error() {
        assert!(OriginatingIdentity::parse("kubernetes").is_none());
        assert!(OriginatingIdentity::parse("kubernetes !!!").is_none());
        let array = base64::engine::general_purpose::STANDARD.encode("[1]");
        assert!(OriginatingIdentity::parse(&format!("k {array}")).is_none());
    }
}
