//! OSB wire types and headers only: serde shapes that mirror the spec, no rules.

pub mod binding;
pub mod catalog;
pub mod error;
pub mod identity;
pub mod ids;
pub mod instance;
pub mod last_operation;
pub mod text;
pub mod version;

pub use binding::{BindRequest, BindResponse};
pub use error::{ErrorBody, ErrorCode};
pub use identity::OriginatingIdentity;
pub use instance::{
    InstanceResponse, OperationResponse, ProvisionRequest, ProvisionResponse, UpdateRequest,
};
pub use last_operation::{LastOperationResponse, OperationState};
pub use version::ApiVersion;

/// Header a 2.15+ platform sends to identify a request; echoed back.
pub const REQUEST_IDENTITY_HEADER: &str = "x-broker-api-request-identity";
