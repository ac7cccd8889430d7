//! Wire types of `GET .../last_operation`.

use serde::{Deserialize, Serialize};

/// The three states the spec allows, spelled exactly as on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum OperationState {
    /// Still running; the platform keeps polling.
    #[serde(rename = "in progress")]
    InProgress,
    /// Finished and the resource is usable (or gone, for a delete).
    #[serde(rename = "succeeded")]
    Succeeded,
    /// Finished without success.
    #[serde(rename = "failed")]
    Failed,
}

impl OperationState {
    /// The value stored in the `operation.state` column (the wire spelling).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InProgress => "in progress",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
        }
    }

    /// Reads a stored state; anything unknown is a bug in the store.
    pub fn from_stored(s: &str) -> Option<Self> {
        match s {
            "in progress" => Some(Self::InProgress),
            "succeeded" => Some(Self::Succeeded),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }
}

/// Body of a 200 from last_operation.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct LastOperationResponse {
    /// The state of the operation.
    pub state: OperationState,
    /// User-facing progress or failure text; never `""`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// 2.16+: whether the instance is still usable after a failed update or deprovision.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instance_usable: Option<bool>,
    /// 2.16+: whether repeating a failed update can succeed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update_repeatable: Option<bool>,
}
