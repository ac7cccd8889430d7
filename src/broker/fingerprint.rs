//! What makes two provision or bind requests "identical" (200) rather than
//! "different" (409). One function per resource, so the policy is easy to change.

use serde_json::Value;

use crate::store::{BindingRecord, InstanceRecord};

/// The attributes of a provision that define the instance. `context` is left out on
/// purpose: platforms add volatile fields (names, annotations) to it.
#[derive(Debug, Clone, Copy)]
pub(super) struct ProvisionFingerprint<'a> {
    pub service_id: &'a str,
    pub plan_id: &'a str,
    pub parameters: &'a Value,
    pub organization_guid: &'a str,
    pub space_guid: &'a str,
}

pub(super) fn same_instance(existing: &InstanceRecord, request: &ProvisionFingerprint<'_>) -> bool {
    existing.service_id == request.service_id
        && existing.plan_id == request.plan_id
        && &existing.parameters == request.parameters
        && existing.organization_guid.as_deref() == Some(request.organization_guid)
        && existing.space_guid.as_deref() == Some(request.space_guid)
}

/// The attributes of a bind that define the binding.
#[derive(Debug, Clone, Copy)]
pub(super) struct BindFingerprint<'a> {
    pub instance_id: &'a str,
    pub service_id: &'a str,
    pub plan_id: &'a str,
    pub parameters: &'a Value,
    pub app_guid: Option<&'a str>,
    pub route: Option<&'a str>,
}

pub(super) fn same_binding(existing: &BindingRecord, request: &BindFingerprint<'_>) -> bool {
    existing.instance_id == request.instance_id
        && existing.service_id == request.service_id
        && existing.plan_id == request.plan_id
        && &existing.parameters == request.parameters
        && existing.app_guid.as_deref() == request.app_guid
        && existing.route.as_deref() == request.route
}
