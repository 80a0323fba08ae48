//! Rows as the rest of the program sees them.

use crate::apikey::KeyScope;
use crate::ids::{AccountId, ApiKeyId};
use crate::time::Timestamp;

#[derive(Debug, Clone, PartialEq)]
pub struct Account {
    pub id: AccountId,
    pub email: String,
    pub reviewer_email: Option<String>,
    pub plan_code: String,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub agents: i64,
    pub domains: i64,
    pub messages_month: i64,
    pub storage_bytes: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewApiKey {
    pub account_id: AccountId,
    pub name: String,
    pub scope: KeyScope,
    pub agent_email: Option<String>,
    pub expires_at: Option<Timestamp>,
    pub key_hash: String,
    pub key_prefix: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ApiKey {
    pub id: ApiKeyId,
    pub account_id: AccountId,
    pub name: String,
    pub key_prefix: String,
    pub scope: KeyScope,
    pub agent_email: Option<String>,
    pub expires_at: Option<Timestamp>,
    pub last_used_at: Option<Timestamp>,
    pub created_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewDomain {
    pub account_id: AccountId,
    pub domain: String,
    pub verification_token: String,
    /// Operator-owned domains are verified on creation.
    pub operator_owned: bool,
}

/// The state of one DNS probe: `found`, `missing`, `mismatch`, `deferred` or `pending`.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainCheck {
    pub verified: bool,
    pub txt_status: String,
    pub mx_status: String,
    pub checked_at: Timestamp,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Domain {
    pub domain: String,
    pub account_id: AccountId,
    pub verification_token: String,
    pub verified: bool,
    pub operator_owned: bool,
    pub verified_at: Option<Timestamp>,
    pub last_checked_at: Option<Timestamp>,
    pub txt_status: String,
    pub mx_status: String,
    pub created_at: Timestamp,
    /// Live agents on this domain.
    pub agent_count: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NewAgent {
    pub account_id: AccountId,
    pub email: String,
    pub domain: String,
    pub name: String,
    /// False only for the shared domain, which is the operator's and not a row.
    pub require_verified_domain: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Agent {
    pub email: String,
    pub account_id: AccountId,
    pub domain: String,
    pub name: String,
    pub created_at: Timestamp,
    pub deleted_at: Option<Timestamp>,
    /// Whether the agent's domain is a verified registered domain (false for the shared
    /// domain, which is not a row; callers know it is always valid).
    pub domain_verified: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Job {
    pub id: i64,
    pub kind: String,
    pub ref_id: String,
    /// Including the one this claim starts.
    pub attempts: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyBegin {
    /// First use: the caller runs the request and then finishes or releases the key.
    Started,
    /// The same request completed before; replay its response.
    Replay { status: u16, body: String },
    /// The same key is being processed right now.
    InFlight,
    /// The key was used with a different request.
    Mismatch,
}
