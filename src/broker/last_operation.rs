//! `GET /v2/service_instances/:instance_id/last_operation` (OSB §4.4).

use uuid::Uuid;

use super::{Broker, LastOperationOutcome, RequestContext};
use crate::error::{BrokerError, BrokerResult};
use crate::osb::{ApiVersion, LastOperationResponse, OperationState};
use crate::store::{InstanceState, OperationKind};

impl Broker {
    /// Reports the state of the operation named by `operation`, or of the newest
    /// instance operation. A finished deprovision answers 410 (the platform reads it
    /// as success); an id never seen answers 404.
    pub async fn last_operation(
        &self,
        ctx: &RequestContext,
        instance_id: &str,
        operation: Option<&str>,
    ) -> BrokerResult<LastOperationOutcome> {
        let Some(instance) = self.store.find_instance(instance_id).await? else {
            return Err(BrokerError::NotFound(format!(
                "Service instance {instance_id} does not exist."
            )));
        };
        let op = match operation.filter(|o| !o.is_empty()) {
            Some(token) => {
                let unknown = || {
                    BrokerError::bad_request(format!(
                        "operation `{token}` is not an operation of service instance {instance_id}"
                    ))
                };
                let id = Uuid::parse_str(token).map_err(|_| unknown())?;
                match self.store.find_operation(id).await? {
                    Some(op) if op.instance_id == instance_id && !op.kind.is_binding() => Some(op),
                    _ => return Err(unknown()),
                }
            }
            None => self.store.latest_instance_operation(instance_id).await?,
        };
        let Some(op) = op else {
            return Ok(if instance.state == InstanceState::Deleted {
                LastOperationOutcome::Gone
            } else {
                LastOperationOutcome::State(LastOperationResponse {
                    state: OperationState::Succeeded,
                    description: None,
                    instance_usable: None,
                    update_repeatable: None,
                })
            });
        };
        if op.kind == OperationKind::Deprovision && op.state == OperationState::Succeeded {
            return Ok(LastOperationOutcome::Gone);
        }
        let failed_change = op.state == OperationState::Failed
            && matches!(op.kind, OperationKind::Update | OperationKind::Deprovision);
        let v2_16 = ctx.version.has(ApiVersion::V2_16) && failed_change;
        Ok(LastOperationOutcome::State(LastOperationResponse {
            state: op.state,
            description: op.description.filter(|d| !d.trim().is_empty()),
            // A failed update leaves the instance as it was; a failed deprovision may
            // have removed part of it.
            instance_usable: v2_16.then_some(op.kind == OperationKind::Update),
            update_repeatable: (v2_16 && op.kind == OperationKind::Update).then_some(true),
        }))
    }
}
