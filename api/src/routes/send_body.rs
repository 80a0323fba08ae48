//! The bodies of send, reply and forward as the API takes them (the fields they share,
//! `send_at`), and how a draft's and a send's problems look on the wire.

use crate::body::{RequestBody, check_len};
use crate::error::{ApiError, FieldError};
use axum::http::StatusCode;
use postagent_core::mail::outbound::send::SendError;
use postagent_core::mail::outbound::{self, DraftAttachment, DraftError};
use postagent_core::time::Timestamp;
use serde::Deserialize;
use serde_json::{Value, json};

/// `reply_to`: one address, or (SDK 5.6+) a list of up to five.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub(super) fn into_vec(self) -> Vec<String> {
        match self {
            Self::One(s) => vec![s],
            Self::Many(v) => v,
        }
    }
}

/// An attachment in a request body (send, reply, forward, approve).
#[derive(Deserialize, Debug)]
pub struct AttachmentIn {
    filename: String,
    content_type: String,
    data: String,
}

pub fn attachments(list: Option<Vec<AttachmentIn>>) -> Vec<DraftAttachment> {
    list.unwrap_or_default()
        .into_iter()
        .map(|a| DraftAttachment { filename: a.filename, content_type: a.content_type, data: a.data })
        .collect()
}

/// The fields every send request shares, checked the same way.
fn common_errors(
    errors: &mut Vec<FieldError>,
    reply_to: &Option<OneOrMany>,
    conversation_id: &Option<String>,
    send_at: &Option<String>,
) {
    if let Some(OneOrMany::Many(list)) = reply_to
        && list.len() > 5
    {
        errors.push(FieldError::new("body.reply_to", "at most 5 addresses"));
    }
    if let Some(c) = conversation_id {
        check_len(errors, "body.conversation_id", c, outbound::MAX_CONVERSATION_ID);
    }
    if let Some(at) = send_at
        && Timestamp::parse_lenient(at, false).is_none()
    {
        errors.push(FieldError::new("body.send_at", "must be an RFC 3339 date-time with a UTC offset"));
    }
}

/// How far ahead a send may be scheduled.
pub const MAX_SCHEDULE_DAYS: i64 = 90;

/// A `send_at` (already well-formed): `None` when absent or not in the future (sent now).
pub(super) fn scheduled(send_at: &Option<String>) -> Result<Option<Timestamp>, ApiError> {
    let now = Timestamp::now();
    let Some(at) = send_at.as_deref().and_then(|s| Timestamp::parse_lenient(s, false)) else {
        return Ok(None);
    };
    if at > now.plus_secs(MAX_SCHEDULE_DAYS * 86_400) {
        return Err(ApiError::bad_request(
            "invalid_request",
            format!("send_at must be no more than {MAX_SCHEDULE_DAYS} days ahead"),
        ));
    }
    Ok(Some(at).filter(|at| *at > now))
}

#[derive(Deserialize, Debug)]
pub struct SendRequest {
    pub(super) to: Vec<String>,
    #[serde(default)]
    pub(super) cc: Vec<String>,
    #[serde(default)]
    pub(super) bcc: Vec<String>,
    pub(super) subject: Option<String>,
    pub(super) text: Option<String>,
    pub(super) html: Option<String>,
    pub(super) reply_to: Option<OneOrMany>,
    pub(super) conversation_id: Option<String>,
    pub(super) attachments: Option<Vec<AttachmentIn>>,
    pub(super) template_id: Option<String>,
    pub(super) template_alias: Option<String>,
    pub(super) template_data: Option<serde_json::Map<String, Value>>,
    pub(super) unsubscribe: Option<Value>,
    pub(super) send_at: Option<String>,
}

impl RequestBody for SendRequest {
    const FIELDS: &'static [&'static str] = &[
        "to",
        "cc",
        "bcc",
        "subject",
        "text",
        "html",
        "reply_to",
        "conversation_id",
        "attachments",
        "template_id",
        "template_alias",
        "template_data",
        "unsubscribe",
        "send_at",
    ];

    fn validate(&self, errors: &mut Vec<FieldError>) {
        common_errors(errors, &self.reply_to, &self.conversation_id, &self.send_at);
    }
}

#[derive(Deserialize, Debug)]
pub struct ReplyRequest {
    pub(super) text: String,
    pub(super) html: Option<String>,
    #[serde(default)]
    pub(super) cc: Vec<String>,
    #[serde(default)]
    pub(super) bcc: Vec<String>,
    #[serde(default)]
    pub(super) reply_all: bool,
    pub(super) reply_to: Option<OneOrMany>,
    pub(super) conversation_id: Option<String>,
    pub(super) attachments: Option<Vec<AttachmentIn>>,
    pub(super) unsubscribe: Option<Value>,
    pub(super) send_at: Option<String>,
}

impl RequestBody for ReplyRequest {
    const FIELDS: &'static [&'static str] = &[
        "text",
        "html",
        "cc",
        "bcc",
        "reply_all",
        "reply_to",
        "conversation_id",
        "attachments",
        "unsubscribe",
        "send_at",
    ];

    fn validate(&self, errors: &mut Vec<FieldError>) {
        common_errors(errors, &self.reply_to, &self.conversation_id, &self.send_at);
    }
}

#[derive(Deserialize, Debug)]
pub struct ForwardRequest {
    pub(super) to: Vec<String>,
    pub(super) text: String,
    #[serde(default)]
    pub(super) cc: Vec<String>,
    #[serde(default)]
    pub(super) bcc: Vec<String>,
    pub(super) html: Option<String>,
    pub(super) reply_to: Option<OneOrMany>,
    pub(super) conversation_id: Option<String>,
    pub(super) attachments: Option<Vec<AttachmentIn>>,
    pub(super) unsubscribe: Option<Value>,
    pub(super) send_at: Option<String>,
}

impl RequestBody for ForwardRequest {
    const FIELDS: &'static [&'static str] = &[
        "to",
        "text",
        "cc",
        "bcc",
        "html",
        "reply_to",
        "conversation_id",
        "attachments",
        "unsubscribe",
        "send_at",
    ];

    fn validate(&self, errors: &mut Vec<FieldError>) {
        common_errors(errors, &self.reply_to, &self.conversation_id, &self.send_at);
    }
}

/// How a draft's problems look on the wire (contract §3.5 send-path errors).
impl From<DraftError> for ApiError {
    fn from(e: DraftError) -> Self {
        let msg = e.to_string();
        match e {
            DraftError::Field { field, message } => ApiError::field(&field, &message),
            DraftError::Invalid(message) => ApiError::bad_request("invalid_request", message),
            DraftError::TooManyRecipients { provided } => ApiError::bad_request("too_many_recipients", msg)
                .with_details(json!({"max_recipients": outbound::MAX_RECIPIENTS, "provided": provided})),
            DraftError::InvalidRecipient { field, message } => {
                ApiError::bad_request("invalid_recipient", msg)
                    .with_details(json!({"fields": [{"location": field, "message": message}]}))
            }
            DraftError::TooManyAttachments(_) => ApiError::bad_request("invalid_request", msg).with_details(
                json!({"fields": [{"location": "body.attachments", "message": "at most 10 attachments"}]}),
            ),
            DraftError::InvalidAttachment { .. } => ApiError::bad_request("invalid_attachment", msg),
            DraftError::TooLarge { scope, actual, max, filename } => {
                let mut details = json!({"scope": scope, "actual_bytes": actual, "max_bytes": max});
                if let (Some(f), Some(obj)) = (filename, details.as_object_mut()) {
                    obj.insert("filename".into(), json!(f));
                }
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", msg).with_details(details)
            }
        }
    }
}

impl From<SendError> for ApiError {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Draft(d) => d.into(),
            SendError::Blocked(reason) => ApiError::new(
                StatusCode::FORBIDDEN,
                "blocked_by_policy",
                format!("blocked by the agent's outbound gate: {reason}"),
            ),
            SendError::Compose(e) => {
                tracing::error!(error = %e, "composing an outbound message failed");
                ApiError::internal()
            }
            SendError::Store(e) => e.into(),
            SendError::Suppressed { address, by } => {
                postagent_core::metrics::SUPPRESSED_SENDS.inc("api");
                super::suppressions::suppressed(&address, by)
            }
        }
    }
}
