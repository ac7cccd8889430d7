//! Polling and fetching: instance and binding `last_operation` (OSB §4.4, 2.14 §
//! "binding last operation") and the 2.14 fetch endpoints.

use chrono::Utc;
use uuid::Uuid;

use super::{Broker, LastOperationOutcome, RequestContext, busy, no_such};
use crate::error::{BrokerError, BrokerResult};
use crate::osb::{ApiVersion, InstanceResponse, LastOperationResponse, OperationState};
use crate::store::{BindingState, InstanceState, OperationKind, OperationRecord};

/// What a poll is about.
#[derive(Debug, Clone, Copy)]
enum Polled<'a> {
    Instance(&'a str),
    Binding(&'a str),
}

impl Broker {
    /// Instance last_operation. A finished deprovision answers 410 (the platform reads
    /// it as success); an instance never seen answers 404.
    pub async fn last_operation(
        &self,
        ctx: &RequestContext,
        instance_id: &str,
        operation: Option<&str>,
    ) -> BrokerResult<LastOperationOutcome> {
        self.poll(ctx, instance_id, Polled::Instance(instance_id), operation)
            .await
    }

    /// Binding last_operation (2.14+ only). A finished unbind answers 410.
    pub async fn binding_last_operation(
        &self,
        ctx: &RequestContext,
        instance_id: &str,
        binding_id: &str,
        operation: Option<&str>,
    ) -> BrokerResult<LastOperationOutcome> {
        if !ctx.version.has(ApiVersion::V2_14) {
            return Err(BrokerError::NotFound(
                "Binding last_operation needs X-Broker-API-Version 2.14 or later.".to_owned(),
            ));
        }
        self.poll(ctx, instance_id, Polled::Binding(binding_id), operation)
            .await
    }

    /// A poll of an instance or of one of its bindings.
    async fn poll(
        &self,
        ctx: &RequestContext,
        instance_id: &str,
        polled: Polled<'_>,
        operation: Option<&str>,
    ) -> BrokerResult<LastOperationOutcome> {
        let binding_id = match polled {
            Polled::Instance(_) => None,
            Polled::Binding(binding_id) => Some(binding_id),
        };
        if let Some(op) = self
            .operation_of(operation, instance_id, binding_id)
            .await?
        {
            return Ok(self.poll_outcome(ctx, Some(op), false));
        }
        // Without a token (a platform that lost it, e.g. after a restart), an instance's
        // poll is one read too.
        if matches!(polled, Polled::Instance(_)) && operation.is_none_or(str::is_empty) {
            let Some(poll) = self.store.instance_poll(instance_id).await? else {
                return Err(no_such("instance", instance_id));
            };
            let deleted = poll.state == InstanceState::Deleted;
            return Ok(self.poll_outcome(ctx, poll.latest, deleted));
        }
        let deleted = match polled {
            Polled::Instance(_) => match self.store.find_instance(instance_id).await? {
                Some(instance) => instance.state == InstanceState::Deleted,
                None => return Err(no_such("instance", instance_id)),
            },
            Polled::Binding(binding_id) => match self.store.find_binding(binding_id).await? {
                Some(b) if b.instance_id == instance_id => b.state == BindingState::Deleted,
                _ => return Err(no_such("binding", binding_id)),
            },
        };
        let op = self.polled_operation(polled, operation).await?;
        Ok(self.poll_outcome(ctx, op, deleted))
    }

    /// The common poll, one read: the operation the token names, when it is one of
    /// this instance's (or binding's). Its row proves that the instance or binding
    /// exists (they are never removed, only tombstoned), so nothing else is read.
    /// `None` sends the poll down the full path, which tells 404 from 400.
    async fn operation_of(
        &self,
        token: Option<&str>,
        instance_id: &str,
        binding_id: Option<&str>,
    ) -> BrokerResult<Option<OperationRecord>> {
        let Some(id) = token.and_then(|t| Uuid::parse_str(t).ok()) else {
            return Ok(None);
        };
        Ok(self.store.find_operation(id).await?.filter(|op| {
            // A revocation is bindery's own work, never the platform's to poll.
            op.kind != OperationKind::Revoke
                && op.instance_id == instance_id
                && match binding_id {
                    Some(binding_id) => op.binding_id.as_deref() == Some(binding_id),
                    None => !op.kind.is_binding(),
                }
        }))
    }

    /// The full path of a poll, once the resource is known to exist: without a token,
    /// the newest operation; with one, [`operation_of`](Self::operation_of) has already
    /// looked it up and found no operation of this resource under it.
    async fn polled_operation(
        &self,
        polled: Polled<'_>,
        token: Option<&str>,
    ) -> BrokerResult<Option<OperationRecord>> {
        match token.filter(|t| !t.is_empty()) {
            None => Ok(match polled {
                Polled::Instance(id) => self.store.latest_instance_operation(id).await?,
                Polled::Binding(id) => self.store.latest_binding_operation(id).await?,
            }),
            Some(token) => Err(BrokerError::bad_request(format!(
                "operation `{token}` is not an operation of this resource"
            ))),
        }
    }

    fn poll_outcome(
        &self,
        ctx: &RequestContext,
        op: Option<OperationRecord>,
        deleted: bool,
    ) -> LastOperationOutcome {
        let Some(op) = op else {
            return if deleted {
                LastOperationOutcome::Gone
            } else {
                LastOperationOutcome::State(
                    LastOperationResponse {
                        state: OperationState::Succeeded,
                        description: None,
                        instance_usable: None,
                        update_repeatable: None,
                    },
                    None,
                )
            };
        };
        if matches!(op.kind, OperationKind::Deprovision | OperationKind::Unbind)
            && op.state == OperationState::Succeeded
        {
            return LastOperationOutcome::Gone;
        }
        let failed_change = op.state == OperationState::Failed
            && matches!(op.kind, OperationKind::Update | OperationKind::Deprovision);
        let v2_16 = ctx.version.has(ApiVersion::V2_16) && failed_change;
        let retry_after = (ctx.version.has(ApiVersion::V2_15)
            && op.state == OperationState::InProgress)
            .then(|| {
                // When a retry is scheduled, poll when it is due; otherwise soon.
                let wait = (op.next_attempt_at - Utc::now()).num_seconds();
                wait.clamp(1, 60) as u64
            });
        LastOperationOutcome::State(
            LastOperationResponse {
                state: op.state,
                description: op.description.filter(|d| !d.trim().is_empty()),
                // A failed update leaves the instance as it was; a failed deprovision
                // may have removed part of it.
                instance_usable: v2_16.then_some(op.kind == OperationKind::Update),
                update_repeatable: (v2_16 && op.kind == OperationKind::Update).then_some(true),
            },
            retry_after,
        )
    }

    /// `GET /v2/service_instances/:instance_id` (2.14+): the instance as stored; 404
    /// while it is being provisioned, 422 `ConcurrencyError` while it is being updated.
    pub async fn get_instance(
        &self,
        ctx: &RequestContext,
        instance_id: &str,
    ) -> BrokerResult<InstanceResponse> {
        if !ctx.version.has(ApiVersion::V2_14) {
            return Err(BrokerError::NotFound(
                "Fetching an instance needs X-Broker-API-Version 2.14 or later.".to_owned(),
            ));
        }
        let instance = match self.store.find_instance(instance_id).await? {
            Some(i) if i.state == InstanceState::Ready => i,
            _ => return Err(no_such("instance", instance_id)),
        };
        if let Some(active) = self.store.active_instance_operation(&instance).await?
            && active.kind == OperationKind::Update
        {
            return Err(busy("service instance"));
        }
        let v2_17 = ctx.version.has(ApiVersion::V2_17);
        let maintenance_info = instance
            .maintenance_version
            .clone()
            .filter(|_| v2_17)
            .map(|version| serde_json::json!({ "version": version }));
        let metadata = if v2_17 {
            self.instance_metadata(ctx, &instance.service_id, &instance.plan_id)
        } else {
            None
        };
        Ok(InstanceResponse {
            service_id: instance.service_id,
            plan_id: instance.plan_id,
            dashboard_url: instance.dashboard_url,
            parameters: instance
                .parameters
                .as_object()
                .filter(|p| !p.is_empty())
                .cloned(),
            maintenance_info,
            metadata,
        })
    }
}
