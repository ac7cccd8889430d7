//! Text that bindery can store: no NUL character (U+0000) anywhere in a request's JSON.
//!
//! JSON allows `\u0000`; PostgreSQL's `jsonb` and `text` refuse it (SQLite would keep it,
//! and `migrate-store` to PostgreSQL would then fail). Refusing it where a request
//! enters keeps the two stores alike and answers 400 instead of a database error.

use serde_json::Value;

/// True when any string or key inside `value` holds a NUL character.
pub fn has_nul(value: &Value) -> bool {
    match value {
        Value::String(s) => s.contains('\0'),
        Value::Array(items) => items.iter().any(has_nul),
        Value::Object(map) => map.iter().any(|(k, v)| k.contains('\0') || has_nul(v)),
        Value::Null | Value::Bool(_) | Value::Number(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nul_in_keys_values_and_nested_arrays() {
        assert!(!has_nul(
            &serde_json::json!({"a": ["b", {"c": 1}], "d": null})
        ));
        assert!(has_nul(&serde_json::json!({"a": "x\u{0}"})));
        assert!(has_nul(&serde_json::json!({"a\u{0}": 1})));
        assert!(has_nul(&serde_json::json!({"a": [1, ["\u{0}"]]})));
    }
}
