//! Parameter schemas: compiled once at load (JSON Schema draft-04) and used to check
//! request `parameters`. The only module that uses the `jsonschema` crate.

use std::fmt;

use serde_json::Value;

/// Largest schema the spec allows.
pub const MAX_SCHEMA_BYTES: usize = 64 * 1024;

/// A compiled draft-04 schema for one plan action (create, update or bind).
pub struct ParameterSchema {
    validator: jsonschema::Validator,
}

impl fmt::Debug for ParameterSchema {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ParameterSchema")
    }
}

impl ParameterSchema {
    /// Compiles `schema`, listing every reason it is unusable.
    ///
    /// The crate is built without its HTTP and file resolvers, so a schema can never
    /// make bindery fetch anything; external `$ref`s are refused before compiling.
    pub fn compile(schema: &Value) -> Result<Self, Vec<String>> {
        let mut problems = Vec::new();
        match schema.get("$schema") {
            Some(Value::String(s)) if !s.trim().is_empty() => {
                if !s.contains("draft-04") {
                    problems.push(format!(
                        "$schema is `{s}`; bindery validates JSON Schema draft-04 (http://json-schema.org/draft-04/schema#), the draft every platform must support"
                    ));
                }
            }
            _ => problems.push("must declare its version with a `$schema` key".to_owned()),
        }
        let size = serde_json::to_vec(schema).map(|v| v.len()).unwrap_or(0);
        if size > MAX_SCHEMA_BYTES {
            problems.push(format!("is {size} bytes; the spec allows at most 64 kB"));
        }
        find_external_refs(schema, "", &mut problems);
        if !problems.is_empty() {
            return Err(problems);
        }
        jsonschema::draft4::new(schema)
            .map(|validator| Self { validator })
            .map_err(|e| vec![format!("does not compile as draft-04: {e}")])
    }

    /// Checks `parameters`; the error names the first offending field.
    pub fn check(&self, parameters: &Value) -> Result<(), String> {
        let mut errors: Vec<String> = self
            .validator
            .iter_errors(parameters)
            .map(|e| {
                let path = e.instance_path().as_str().to_owned();
                let field = if path.is_empty() {
                    "parameters".to_owned()
                } else {
                    format!("parameters{}", path.replace('/', "."))
                };
                format!("{field}: {}", e.masked())
            })
            .collect();
        if errors.is_empty() {
            return Ok(());
        }
        errors.sort();
        errors.dedup();
        Err(errors.join("; "))
    }
}

fn find_external_refs(value: &Value, path: &str, problems: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, child) in map {
                if key == "$ref"
                    && let Value::String(target) = child
                    && !target.starts_with('#')
                {
                    problems.push(format!(
                        "{path}/$ref points outside the schema (`{target}`); external references are not allowed"
                    ));
                }
                find_external_refs(child, &format!("{path}/{key}"), problems);
            }
        }
        Value::Array(items) => {
            for (i, child) in items.iter().enumerate() {
                find_external_refs(child, &format!("{path}/{i}"), problems);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema() -> ParameterSchema {
        ParameterSchema::compile(&json!({
            "$schema": "http://json-schema.org/draft-04/schema#",
            "type": "object",
            "properties": {"size": {"type": "integer", "minimum": 1, "maximum": 10}},
            "additionalProperties": false
        }))
        .expect("compiles")
    }

    #[test]
    fn accepts_valid_parameters() {
        assert!(schema().check(&json!({"size": 3})).is_ok());
    }

    #[test]
    fn names_the_offending_field() {
        let err = schema().check(&json!({"size": 30})).unwrap_err();
        assert!(err.contains("parameters.size"), "{err}");
    }

    #[test]
    fn requires_dollar_schema() {
        let err = ParameterSchema::compile(&json!({"type": "object"})).unwrap_err();
        assert!(err[0].contains("$schema"));
    }

    #[test]
    fn refuses_external_refs() {
        let err = ParameterSchema::compile(&json!({
            "$schema": "http://json-schema.org/draft-04/schema#",
            "properties": {"a": {"$ref": "https://example.com/x.json"}}
        }))
        .unwrap_err();
        assert!(err.iter().any(|p| p.contains("external")), "{err:?}");
    }

    #[test]
    fn refuses_schemas_that_do_not_compile() {
        let err = ParameterSchema::compile(&json!({
            "$schema": "http://json-schema.org/draft-04/schema#",
            "type": 12
        }))
        .unwrap_err();
        assert!(err[0].contains("draft-04"), "{err:?}");
    }
}
