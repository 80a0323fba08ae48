//! Response bodies, field for field as the e2a contract names them. Optional fields are
//! omitted when absent; required fields are always present (the SDK validates strictly).

use postagent_core::store::{Agent, ApiKey, Domain};
use postagent_core::time::Timestamp;
use postagent_core::vocab::ProbeStatus;
use serde::Serialize;

#[derive(Serialize)]
pub struct Page<T: Serialize> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

#[derive(Serialize)]
pub struct ApiKeyView {
    pub id: String,
    pub name: String,
    pub key_prefix: String,
    pub scope: &'static str,
    pub created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent_email: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_used_at: Option<Timestamp>,
}

impl From<&ApiKey> for ApiKeyView {
    fn from(k: &ApiKey) -> Self {
        Self {
            id: k.id.to_string(),
            name: k.name.clone(),
            key_prefix: k.key_prefix.clone(),
            scope: k.scope.as_str(),
            created_at: k.created_at,
            agent_email: k.agent_email.clone(),
            expires_at: k.expires_at,
            last_used_at: k.last_used_at,
        }
    }
}

#[derive(Serialize)]
pub struct AgentView {
    pub email: String,
    pub name: String,
    pub domain: String,
    pub registered_domain: String,
    pub domain_verified: bool,
    pub created_at: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deleted_at: Option<Timestamp>,
}

impl AgentView {
    /// `shared_domain` agents are valid by construction (the operator owns that domain).
    pub fn new(a: &Agent, shared_domain: &str) -> Self {
        let shared = !shared_domain.is_empty() && a.domain == shared_domain;
        Self {
            email: a.email.clone(),
            name: a.name.clone(),
            domain: a.domain.clone(),
            registered_domain: a.domain.clone(),
            domain_verified: shared || a.domain_verified,
            created_at: a.created_at,
            deleted_at: a.deleted_at,
        }
    }
}

#[derive(Serialize)]
pub struct DnsRecordView {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub name: String,
    pub value: String,
    pub priority: Option<i64>,
    pub purpose: &'static str,
    pub status: &'static str,
}

#[derive(Serialize)]
pub struct SendingRampView {
    pub status: &'static str,
    pub daily_recipient_limit: i64,
    pub recipients_used_today: i64,
    pub active_days: i64,
    pub ramp_days: i64,
}

#[derive(Serialize)]
pub struct CapabilitiesView {
    pub inbound: &'static str,
    pub outbound: &'static str,
}

#[derive(Serialize)]
pub struct DomainView {
    pub domain: String,
    pub verified: bool,
    pub verification_token: String,
    pub dns_records: Vec<DnsRecordView>,
    pub created_at: Timestamp,
    pub agent_count: i64,
    pub sending_status: &'static str,
    pub sending_ramp: SendingRampView,
    pub capabilities: CapabilitiesView,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub verified_at: Option<Timestamp>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_checked_at: Option<Timestamp>,
}

fn record_status(probe: ProbeStatus) -> &'static str {
    match probe {
        ProbeStatus::Found => "verified",
        ProbeStatus::Missing | ProbeStatus::Mismatch => "failed",
        ProbeStatus::Deferred | ProbeStatus::Pending => "pending",
    }
}

impl DomainView {
    /// `mail_hostname` is what the MX record must point at: this Postfix.
    pub fn new(d: &Domain, mail_hostname: &str) -> Self {
        // Mail leaves through the operator's own Postfix, so a domain that may receive may
        // also send; there is no provider-side warm-up to report.
        let outbound = if d.verified { "verified" } else { "pending" };
        Self {
            domain: d.domain.clone(),
            verified: d.verified,
            verification_token: d.verification_token.clone(),
            dns_records: vec![
                DnsRecordView {
                    kind: "TXT",
                    name: d.domain.clone(),
                    value: d.verification_token.clone(),
                    priority: None,
                    purpose: "ownership",
                    status: if d.operator_owned { "verified" } else { record_status(d.txt_status) },
                },
                DnsRecordView {
                    kind: "MX",
                    name: d.domain.clone(),
                    value: mail_hostname.to_owned(),
                    priority: Some(10),
                    purpose: "inbound_mx",
                    status: if d.operator_owned { "verified" } else { record_status(d.mx_status) },
                },
            ],
            created_at: d.created_at,
            agent_count: d.agent_count,
            sending_status: outbound,
            sending_ramp: SendingRampView {
                status: "exempt",
                daily_recipient_limit: 0,
                recipients_used_today: 0,
                active_days: 0,
                ramp_days: 0,
            },
            capabilities: CapabilitiesView {
                inbound: if d.verified { "verified" } else { "pending" },
                outbound,
            },
            verified_at: d.verified_at,
            last_checked_at: d.last_checked_at,
        }
    }
}
