//! The parameters sent to the broker: `spec.parameters` merged with every
//! `spec.parametersFrom[].secretKeyRef` (a Secret key holding a JSON object), as Service Catalog
//! merged them; a key given twice is an error.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use crate::context::{Context, Error, Result};
use crate::crd::ParametersFromSource;

/// The merged parameters, what the status may show of them, and their checksum.
#[derive(Debug, Clone, PartialEq)]
pub struct Parameters {
    /// What is sent to the broker.
    pub merged: Map<String, Value>,
    /// The same keys, with every value that came from a Secret replaced by `<redacted>`.
    pub redacted: Map<String, Value>,
    /// sha256 of the merged parameters, to notice a change without storing secret values.
    pub checksum: String,
}

/// Reads the Secrets and merges.
pub async fn resolve(
    ctx: &Context,
    namespace: &str,
    inline: Option<&Map<String, Value>>,
    from: &[ParametersFromSource],
) -> Result<Parameters> {
    let mut sources = Vec::with_capacity(from.len());
    for source in from {
        let r = &source.secret_key_ref;
        let text = ctx.secret_key(namespace, &r.name, &r.key).await?;
        let value: Value = serde_json::from_str(&text).map_err(|_| {
            Error::Other(format!(
                "key {:?} of Secret {:?} is not JSON",
                r.key, r.name
            ))
        })?;
        let Value::Object(object) = value else {
            return Err(Error::Other(format!(
                "key {:?} of Secret {:?} is not a JSON object",
                r.key, r.name
            )));
        };
        sources.push(object);
    }
    merge(inline, sources).map_err(Error::Other)
}

/// The pure part of [`resolve`].
pub fn merge(
    inline: Option<&Map<String, Value>>,
    secrets: Vec<Map<String, Value>>,
) -> Result<Parameters, String> {
    let mut merged = inline.cloned().unwrap_or_default();
    let mut redacted = merged.clone();
    for object in secrets {
        for (key, value) in object {
            if merged.contains_key(&key) {
                return Err(format!("parameter {key:?} is given more than once"));
            }
            redacted.insert(key.clone(), Value::String("<redacted>".into()));
            merged.insert(key, value);
        }
    }
    let checksum = Sha256::digest(Value::Object(merged.clone()).to_string().as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(Parameters {
        merged,
        redacted,
        checksum,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn secret_values_are_merged_and_redacted() {
        let inline = object(json!({"size": "s"}));
        let p = merge(Some(&inline), vec![object(json!({"password": "hunter2"}))]).unwrap();
        assert_eq!(
            Value::Object(p.merged),
            json!({"size": "s", "password": "hunter2"})
        );
        assert_eq!(
            Value::Object(p.redacted),
            json!({"size": "s", "password": "<redacted>"})
        );
    }

    #[test]
    fn a_key_given_twice_is_an_error() {
        let inline = object(json!({"size": "s"}));
        assert!(
            merge(Some(&inline), vec![object(json!({"size": "m"}))])
                .unwrap_err()
                .contains("size")
        );
    }

    #[test]
    fn the_checksum_follows_the_values() {
        let a = merge(Some(&object(json!({"a": 1}))), vec![]).unwrap();
        let b = merge(Some(&object(json!({"a": 2}))), vec![]).unwrap();
        assert_ne!(a.checksum, b.checksum);
        assert_eq!(
            a.checksum,
            merge(Some(&object(json!({"a": 1}))), vec![])
                .unwrap()
                .checksum
        );
    }
}
