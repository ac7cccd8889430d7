//! The `GET /v2/catalog` bodies, serialised once at load for each version tier.
//!
//! A 2.13 client must never see a field 2.13 does not define (the 2.13 conformance
//! checker sets `additionalProperties: false` on plans and the top level), so each
//! tier strips the fields that arrived later.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

use super::bytes_body::Body;
use crate::osb::ApiVersion;

/// Service fields and the version that introduced them.
const SERVICE_FIELDS_AFTER_2_13: &[(&str, ApiVersion)] = &[
    ("instances_retrievable", ApiVersion::V2_14),
    ("bindings_retrievable", ApiVersion::V2_14),
    ("allow_context_updates", ApiVersion::V2_15),
];
/// Plan fields and the version that introduced them.
const PLAN_FIELDS_AFTER_2_13: &[(&str, ApiVersion)] = &[
    ("maintenance_info", ApiVersion::V2_15),
    ("maximum_polling_duration", ApiVersion::V2_15),
    ("plan_updateable", ApiVersion::V2_15),
    ("binding_rotatable", ApiVersion::V2_17),
];
/// The versions at which the served catalog changes shape.
const TIERS: [ApiVersion; 4] = [
    ApiVersion::V2_13,
    ApiVersion::V2_14,
    ApiVersion::V2_15,
    ApiVersion::V2_17,
];

#[derive(Debug)]
pub(super) struct CatalogBodies {
    /// One body per entry of `TIERS`, same order.
    tiers: Vec<Body>,
}

impl CatalogBodies {
    pub(super) fn build(services: &[Value]) -> Self {
        let tiers = TIERS
            .iter()
            .map(|&tier| {
                let services: Vec<Value> =
                    services.iter().map(|s| shape_service(s, tier)).collect();
                let mut root = Map::new();
                root.insert("services".to_owned(), Value::Array(services));
                let json = serde_json::to_vec(&Value::Object(root)).expect("JSON values serialise");
                let etag = format!("\"{}\"", hex::encode(&Sha256::digest(&json)[..16]));
                Body {
                    json: json.into(),
                    etag,
                }
            })
            .collect();
        Self { tiers }
    }

    pub(super) fn for_version(&self, version: ApiVersion) -> &Body {
        let index = TIERS.iter().rposition(|&t| version >= t).unwrap_or(0);
        &self.tiers[index]
    }
}

fn shape_service(service: &Value, tier: ApiVersion) -> Value {
    let mut service = service.as_object().cloned().unwrap_or_default();
    strip_newer(&mut service, SERVICE_FIELDS_AFTER_2_13, tier);
    if let Some(Value::Array(plans)) = service.get_mut("plans") {
        for plan in plans.iter_mut() {
            if let Value::Object(plan) = plan {
                strip_newer(plan, PLAN_FIELDS_AFTER_2_13, tier);
            }
        }
    }
    Value::Object(service)
}

fn strip_newer(map: &mut Map<String, Value>, fields: &[(&str, ApiVersion)], tier: ApiVersion) {
    for (field, introduced) in fields {
        if !tier.has(*introduced) {
            map.remove(*field);
        }
    }
}
