//! A binding's `secretTransforms`, applied in order to the Secret's keys before it is written:
//! `renameKey`, `addKey` (`value` or `stringValue`), `addKeysFrom` and `removeKey`.
//! `addKey.jsonPathExpression` is refused (not implemented; docs/kubernetes.md).

use std::collections::BTreeMap;

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use kube::Api;
use serde_json::Value;

use crate::context::{Context, Error, Result};

pub async fn apply(
    ctx: &Context,
    namespace: &str,
    transforms: &[Value],
    data: &mut BTreeMap<String, Vec<u8>>,
) -> Result<()> {
    for transform in transforms {
        if let Some(from) = transform.pointer("/addKeysFrom/secretRef") {
            let ns = from
                .get("namespace")
                .and_then(Value::as_str)
                .unwrap_or(namespace);
            let name = from.get("name").and_then(Value::as_str).unwrap_or_default();
            let secret = Api::<Secret>::namespaced(ctx.client.clone(), ns)
                .get(name)
                .await?;
            for (k, v) in secret.data.unwrap_or_default() {
                data.insert(k, v.0);
            }
        } else {
            apply_local(transform, data).map_err(Error::Other)?;
        }
    }
    Ok(())
}

/// The transforms that need nothing but the keys themselves.
pub fn apply_local(transform: &Value, data: &mut BTreeMap<String, Vec<u8>>) -> Result<(), String> {
    let text = |path: &str| transform.pointer(path).and_then(Value::as_str);
    if let (Some(from), Some(to)) = (text("/renameKey/from"), text("/renameKey/to")) {
        if let Some(v) = data.remove(from) {
            data.insert(to.to_owned(), v);
        }
    } else if let Some(key) = text("/addKey/key") {
        let value = if let Some(b64) = text("/addKey/value") {
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| format!("addKey {key:?}: value is not base64: {e}"))?
        } else if let Some(s) = text("/addKey/stringValue") {
            s.as_bytes().to_vec()
        } else {
            return Err(format!(
                "addKey {key:?}: only value and stringValue are supported"
            ));
        };
        data.insert(key.to_owned(), value);
    } else if let Some(key) = text("/removeKey/key") {
        data.remove(key);
    } else {
        return Err(format!("unknown secretTransform {transform}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rename_add_remove() {
        let mut data: BTreeMap<String, Vec<u8>> = [
            ("uri".to_owned(), b"x".to_vec()),
            ("port".to_owned(), b"1".to_vec()),
        ]
        .into();
        apply_local(
            &json!({"renameKey": {"from": "uri", "to": "DATABASE_URL"}}),
            &mut data,
        )
        .unwrap();
        apply_local(
            &json!({"addKey": {"key": "k", "stringValue": "v"}}),
            &mut data,
        )
        .unwrap();
        apply_local(&json!({"addKey": {"key": "b", "value": "aGk="}}), &mut data).unwrap();
        apply_local(&json!({"removeKey": {"key": "port"}}), &mut data).unwrap();
        let keys: Vec<_> = data.keys().cloned().collect();
        assert_eq!(keys, ["DATABASE_URL", "b", "k"]);
        assert_eq!(data["b"], b"hi");
        assert!(
            apply_local(
                &json!({"addKey": {"key": "j", "jsonPathExpression": "{.x}"}}),
                &mut data
            )
            .is_err()
        );
    }
}
