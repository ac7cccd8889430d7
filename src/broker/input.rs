//! Checks of request fields that every endpoint shares: required strings, JSON
//! objects, catalog membership, parameter schemas.

use serde_json::{Map, Value};

use crate::catalog::schema::ParameterSchema;
use crate::catalog::{Catalog, Plan, Service};
use crate::error::{BrokerError, BrokerResult};
use crate::osb::ApiVersion;

/// A platform-chosen id the stores can index (`osb::ids`). The HTTP edge checks path
/// ids already; this keeps callers of the broker API to the same rule.
pub(super) fn platform_id(value: &str, field: &str) -> BrokerResult<()> {
    crate::osb::ids::check_id(field, value).map_err(BrokerError::bad_request)
}

/// A required, non-empty string field.
pub(super) fn required<'a>(value: &'a Option<String>, field: &str) -> BrokerResult<&'a str> {
    match value.as_deref() {
        Some(s) if !s.trim().is_empty() => Ok(s),
        Some(_) => Err(BrokerError::bad_request(format!(
            "{field} must not be empty"
        ))),
        None => Err(BrokerError::bad_request(format!("{field} is required"))),
    }
}

/// A required, non-empty query parameter.
pub(super) fn required_query<'a>(value: Option<&'a str>, name: &str) -> BrokerResult<&'a str> {
    match value {
        Some(s) if !s.trim().is_empty() => Ok(s),
        _ => Err(BrokerError::bad_request(format!(
            "the {name} query parameter is required and must not be empty"
        ))),
    }
}

/// An optional string that, if present, must not be empty.
pub(super) fn optional<'a>(
    value: &'a Option<String>,
    field: &str,
) -> BrokerResult<Option<&'a str>> {
    match value.as_deref() {
        Some(s) if s.trim().is_empty() => Err(BrokerError::bad_request(format!(
            "{field} must not be empty when present"
        ))),
        other => Ok(other),
    }
}

/// An optional field that must be a JSON object when present.
pub(super) fn object(
    value: Option<Value>,
    field: &str,
) -> BrokerResult<Option<Map<String, Value>>> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Object(map)) => Ok(Some(map)),
        Some(_) => Err(BrokerError::bad_request(format!(
            "{field} must be a JSON object"
        ))),
    }
}

/// Finds a service and one of its plans; unknown ids are invalid data (400).
pub(super) fn plan<'c>(
    catalog: &'c Catalog,
    service_id: &str,
    plan_id: &str,
) -> BrokerResult<(&'c Service, &'c Plan)> {
    let service = catalog.service(service_id).ok_or_else(|| {
        BrokerError::bad_request(format!(
            "service_id `{service_id}` is not in the broker's catalog"
        ))
    })?;
    let plan = service.plan(plan_id).ok_or_else(|| {
        BrokerError::bad_request(format!(
            "plan_id `{plan_id}` is not a plan of service `{}`",
            service.name
        ))
    })?;
    Ok((service, plan))
}

/// Validates parameters against a plan schema (400 naming the field).
pub(super) fn parameters(
    schema: Option<&ParameterSchema>,
    parameters: &Map<String, Value>,
) -> BrokerResult<()> {
    if let Some(schema) = schema {
        schema
            .check(&Value::Object(parameters.clone()))
            .map_err(|e| BrokerError::bad_request(format!("invalid parameters: {e}")))?;
    }
    Ok(())
}

/// 2.15: a request's `maintenance_info.version` must equal the plan's.
pub(super) fn maintenance_info(
    version: ApiVersion,
    requested: Option<&Value>,
    plan: &Plan,
) -> BrokerResult<()> {
    if !version.has(ApiVersion::V2_15) {
        return Ok(());
    }
    let Some(requested) = requested.filter(|v| !v.is_null()) else {
        return Ok(());
    };
    let requested_version = requested.get("version").and_then(Value::as_str);
    if requested_version.is_none() {
        return Err(BrokerError::bad_request(
            "maintenance_info.version is required when maintenance_info is present",
        ));
    }
    if requested_version != plan.maintenance_version.as_deref() {
        return Err(BrokerError::MaintenanceInfoConflict);
    }
    Ok(())
}
