//! The OSB error body: `{"error": "...", "description": "..."}`.

use serde::Serialize;

/// The machine-readable error codes the spec defines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum ErrorCode {
    /// The plan needs `accepts_incomplete=true`.
    AsyncRequired,
    /// Another operation is running on the resource.
    ConcurrencyError,
    /// The bind needs an `app_guid`.
    RequiresApp,
    /// The request's `maintenance_info` differs from the plan's (2.15).
    MaintenanceInfoConflict,
}

/// An error response body. Both fields are left out when absent, never `""`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    /// One of the spec's codes, only where the spec names one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorCode>,
    /// A user-facing explanation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}
