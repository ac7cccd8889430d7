//! Parse, then apply: each request body's fields are checked, and its catalog entries
//! looked up, once, into a typed request that the broker then applies. Nothing here
//! reads the store; the checks run in the order their errors are answered.

use serde_json::{Map, Value};

use super::input;
use crate::catalog::{Catalog, Plan};
use crate::error::{BrokerError, BrokerResult};
use crate::osb::{ApiVersion, BindRequest, ProvisionRequest, UpdateRequest};

/// A provision whose fields are present, whose plan is offered, and whose parameters
/// suit the plan's create schema.
#[derive(Debug)]
pub(super) struct NewInstanceRequest<'a> {
    pub instance_id: &'a str,
    pub service_id: &'a str,
    pub plan: &'a Plan,
    pub organization_guid: &'a str,
    pub space_guid: &'a str,
    pub parameters: Map<String, Value>,
    pub context: Option<Value>,
}

impl<'a> NewInstanceRequest<'a> {
    pub fn parse(
        catalog: &'a Catalog,
        version: ApiVersion,
        instance_id: &'a str,
        request: &'a ProvisionRequest,
    ) -> BrokerResult<Self> {
        input::platform_id(instance_id, "instance_id")?;
        let service_id = input::required(&request.service_id, "service_id")?;
        let plan_id = input::required(&request.plan_id, "plan_id")?;
        let organization_guid = input::required(&request.organization_guid, "organization_guid")?;
        let space_guid = input::required(&request.space_guid, "space_guid")?;
        let parameters = input::object(request.parameters.clone(), "parameters")?;
        let context = input::object(request.context.clone(), "context")?;
        let (_, plan) = input::plan(catalog, service_id, plan_id)?;
        input::maintenance_info(version, request.maintenance_info.as_ref(), plan)?;
        let parameters = parameters.unwrap_or_default();
        input::parameters(plan.create_schema.as_ref(), &parameters)?;
        Ok(Self {
            instance_id,
            service_id,
            plan,
            organization_guid,
            space_guid,
            parameters,
            context: context.map(Value::Object),
        })
    }
}

/// An update's own fields, checked; what they mean depends on the stored instance.
#[derive(Debug)]
pub(super) struct UpdateFields<'a> {
    pub service_id: &'a str,
    /// The target plan, when the request names one.
    pub plan_id: Option<&'a str>,
    /// Parameters to change, when the request has any.
    pub parameters: Option<Map<String, Value>>,
    pub maintenance_info: Option<&'a Value>,
}

impl<'a> UpdateFields<'a> {
    pub fn parse(request: &'a UpdateRequest) -> BrokerResult<Self> {
        let service_id = input::required(&request.service_id, "service_id")?;
        let plan_id = input::optional(&request.plan_id, "plan_id")?;
        let parameters = input::object(request.parameters.clone(), "parameters")?;
        input::object(request.context.clone(), "context")?;
        Ok(Self {
            service_id,
            plan_id,
            parameters,
            maintenance_info: request.maintenance_info.as_ref(),
        })
    }

    /// Whether a 2.15 client asks for a maintenance version other than `current`: an
    /// upgrade the backend performs by applying the plan's current settings again.
    pub fn changes_maintenance(&self, version: ApiVersion, current: Option<&str>) -> bool {
        version.has(ApiVersion::V2_15)
            && self
                .maintenance_info
                .and_then(|m| m.get("version"))
                .and_then(Value::as_str)
                .is_some_and(|v| Some(v) != current)
    }
}

/// A bind whose fields are present, whose plan is offered and bindable (and rotatable
/// when it rotates), and whose parameters suit the plan's bind schema.
#[derive(Debug)]
pub(super) struct NewBindingRequest<'a> {
    pub instance_id: &'a str,
    pub binding_id: &'a str,
    pub service_id: &'a str,
    pub plan: &'a Plan,
    pub parameters: Map<String, Value>,
    pub app_guid: Option<&'a str>,
    pub route: Option<&'a str>,
    pub bind_resource: Option<Value>,
    pub context: Option<Value>,
    /// 2.17: the binding this one rotates.
    pub predecessor: Option<&'a str>,
}

impl<'a> NewBindingRequest<'a> {
    /// `request` has had what a rotation leaves out filled in from `predecessor`.
    pub fn parse(
        catalog: &'a Catalog,
        (instance_id, binding_id): (&'a str, &'a str),
        request: &'a BindRequest,
        predecessor: Option<&'a str>,
    ) -> BrokerResult<Self> {
        let service_id = input::required(&request.service_id, "service_id")?;
        let plan_id = input::required(&request.plan_id, "plan_id")?;
        input::optional(&request.app_guid, "app_guid")?;
        let parameters = input::object(request.parameters.clone(), "parameters")?;
        let bind_resource = input::object(request.bind_resource.clone(), "bind_resource")?;
        let context = input::object(request.context.clone(), "context")?;
        let (service, plan) = input::plan(catalog, service_id, plan_id)?;
        if !plan.bindable {
            return Err(BrokerError::bad_request(format!(
                "plan `{}` of service `{}` is not bindable",
                plan.name, service.name
            )));
        }
        if predecessor.is_some() && !plan.binding_rotatable {
            return Err(BrokerError::Unprocessable(format!(
                "Bindings of plan `{}` cannot be rotated.",
                plan.name
            )));
        }
        let app_guid = request.effective_app_guid();
        if plan.requires_app && app_guid.is_none() {
            return Err(BrokerError::RequiresApp);
        }
        let parameters = parameters.unwrap_or_default();
        input::parameters(plan.bind_schema.as_ref(), &parameters)?;
        Ok(Self {
            instance_id,
            binding_id,
            service_id,
            plan,
            parameters,
            app_guid,
            route: request.route(),
            bind_resource: bind_resource.map(Value::Object),
            context: context.map(Value::Object),
            predecessor,
        })
    }
}

/// The `service_id` and `plan_id` query parameters a delete must carry (hints only:
/// the stored resource is the truth).
#[derive(Debug, Clone, Copy)]
pub(super) struct DeleteHints<'a> {
    pub service_id: &'a str,
    pub plan_id: &'a str,
}

impl<'a> DeleteHints<'a> {
    pub fn parse(service_id: Option<&'a str>, plan_id: Option<&'a str>) -> BrokerResult<Self> {
        Ok(Self {
            service_id: input::required_query(service_id, "service_id")?,
            plan_id: input::required_query(plan_id, "plan_id")?,
        })
    }
}
