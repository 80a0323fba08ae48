//! One module per resource; handlers parse, call the domain layer, render.

pub mod account;
pub mod agents;
pub mod contacts;
pub mod conversations;
pub mod data;
pub mod domains;
pub mod events;
pub mod lifecycle;
pub mod loops;
pub mod messages;
pub mod meta;
pub mod metrics;
pub mod reviews;
pub mod send;
mod send_body;
pub mod suppressions;
pub mod table;
pub mod templates;
pub mod webhooks;

use crate::error::ApiError;
use postagent_core::service::ManageError;

/// How the management rules' failures look on the wire (codes from the contract).
impl From<ManageError> for ApiError {
    fn from(e: ManageError) -> Self {
        let msg = e.to_string();
        match e {
            ManageError::InvalidEmail(_) => ApiError::field("body.email", &msg),
            ManageError::InvalidDomain(_) => ApiError::bad_request("invalid_domain", msg),
            ManageError::InvalidSlug(_) => ApiError::bad_request("invalid_slug", msg),
            ManageError::InvalidName(_) => ApiError::field("body.name", &msg),
            ManageError::ReservedDomain(_) => ApiError::bad_request("reserved_domain", msg),
            ManageError::DomainNotRegistered(_) => ApiError::bad_request("domain_not_registered", msg),
            ManageError::DomainNotVerified(_) => ApiError::bad_request("domain_not_verified", msg),
            ManageError::DomainTaken(_) => ApiError::conflict("domain_taken", msg),
            ManageError::ReviewerAddress(_) | ManageError::BounceAddress(_) => {
                ApiError::conflict("agent_address_reserved", msg)
            }
            ManageError::DomainClaimed { token, .. } => ApiError::conflict("domain_taken", msg).with_details(
                serde_json::json!({"takeover_txt": token, "hint": "publish this TXT record at the domain (and its MX) and call verify"}),
            ),
            ManageError::AgentTaken(_) => ApiError::conflict("agent_taken", msg),
            ManageError::AgentInTrash(_) => ApiError::conflict("address_in_trash", msg),
            ManageError::AgentNotFound(_) => ApiError::field("body.agent_email", &msg),
            ManageError::AccountExists(_) => ApiError::conflict("conflict", msg),
            ManageError::Store(e) => e.into(),
        }
    }
}

/// Path segments arrive percent-decoded by axum; emails and domains compare lowercase.
pub fn normalize(segment: &str) -> String {
    segment.trim().to_ascii_lowercase()
}
