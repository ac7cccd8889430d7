//! What makes two provision or bind requests "identical" (200) rather than
//! "different" (409). One function per resource, so the policy is easy to change.

use super::requests::{NewBindingRequest, NewInstanceRequest};
use crate::store::{BindingRecord, InstanceRecord};

/// The attributes of a provision that define the instance. `context` is left out on
/// purpose: platforms add volatile fields (names, annotations) to it.
pub(super) fn same_instance(existing: &InstanceRecord, request: &NewInstanceRequest<'_>) -> bool {
    existing.service_id == request.service_id
        && existing.plan_id == request.plan.id
        && existing.parameters.as_object() == Some(&request.parameters)
        && existing.organization_guid.as_deref() == Some(request.organization_guid)
        && existing.space_guid.as_deref() == Some(request.space_guid)
}

/// The attributes of a bind that define the binding.
pub(super) fn same_binding(existing: &BindingRecord, request: &NewBindingRequest<'_>) -> bool {
    existing.instance_id == request.instance_id
        && existing.service_id == request.service_id
        && existing.plan_id == request.plan.id
        && existing.parameters.as_object() == Some(&request.parameters)
        && existing.app_guid.as_deref() == request.app_guid
        && existing.route.as_deref() == request.route
}
