//! Outbound mail: what an agent asked to send (a [`Draft`]), the contract's limits on it,
//! the MIME we compose from it, the VERP bounce address it is sent with, and the delivery
//! status notifications that come back.
//!
//! Everything that ends up in a header is checked here, once, for line breaks and control
//! characters: a CR or LF in a recipient, subject, filename or conversation id is a refused
//! request (HTTP 422), never a header injection.

pub mod address;
pub mod agent_test;
pub mod bounce;
pub mod compose;
pub mod dsn;
pub mod notify;
pub mod send;
pub mod unsubscribe;
pub mod verp;

use address::{AddressError, Mailbox, has_control, parse_mailbox};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};

/// Recipients across to, cc and bcc.
pub const MAX_RECIPIENTS: usize = 50;
pub const MAX_ADDRESS_LEN: usize = 320;
pub const MAX_SUBJECT_CHARS: usize = 2000;
pub const MAX_BODY_BYTES: usize = 1024 * 1024;
pub const MAX_ATTACHMENTS: usize = 10;
pub const MAX_ATTACHMENT_BYTES: usize = 10 * 1024 * 1024;
pub const MAX_ATTACHMENTS_TOTAL: usize = 25 * 1024 * 1024;
/// Subject, bodies and decoded attachments together.
pub const MAX_COMPOSED_BYTES: usize = 10 * 1024 * 1024;
pub const MAX_CONVERSATION_ID: usize = 200;

/// An attachment as the API receives it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct DraftAttachment {
    pub filename: String,
    pub content_type: String,
    /// Base64 (standard alphabet).
    pub data: String,
}

/// What the agent asked to send, kept with the message so a reviewer can read and edit it
/// and approval can compose it later.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Draft {
    /// As given: `addr` or `Name <addr>`.
    pub to: Vec<String>,
    #[serde(default)]
    pub cc: Vec<String>,
    #[serde(default)]
    pub bcc: Vec<String>,
    pub subject: String,
    pub text: Option<String>,
    pub html: Option<String>,
    #[serde(default)]
    pub reply_to: Vec<String>,
    #[serde(default)]
    pub attachments: Vec<DraftAttachment>,
    /// Message-IDs without angle brackets.
    pub in_reply_to: Option<String>,
    #[serde(default)]
    pub references: Vec<String>,
    /// Managed unsubscribe: the one-click URL (RFC 8058) written into `List-Unsubscribe` and
    /// a footer. Minted by the API for the one recipient ([`super::unsubscribe`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unsubscribe_url: Option<String>,
    /// `Auto-Submitted` value (RFC 3834) when the deployment marks agent mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auto_submitted: Option<crate::vocab::AutoClass>,
}

/// Why a draft cannot be sent; the API maps each to the contract's status and body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DraftError {
    /// A schema-level problem (422 `invalid_request`), with the field's location.
    #[error("{field}: {message}")]
    Field { field: String, message: String },
    /// A check of the handler's (400 `invalid_request`), worded as e2a words it.
    #[error("{0}")]
    Invalid(String),
    #[error("at most {MAX_RECIPIENTS} recipients across to, cc and bcc; got {provided}")]
    TooManyRecipients { provided: usize },
    #[error("{field}: {message}")]
    InvalidRecipient { field: String, message: String },
    #[error("at most {MAX_ATTACHMENTS} attachments; got {0}")]
    TooManyAttachments(usize),
    #[error("attachments[{index}]: {message}")]
    InvalidAttachment { index: usize, message: String },
    /// 413 `payload_too_large`; `scope` is the contract's.
    #[error("{scope} is {actual} bytes; the limit is {max}")]
    TooLarge { scope: &'static str, actual: usize, max: usize, filename: Option<String> },
}

/// A draft that passed every check: parsed mailboxes and decoded attachments.
#[derive(Debug, Clone)]
pub struct Checked {
    pub to: Vec<Mailbox>,
    pub cc: Vec<Mailbox>,
    pub bcc: Vec<Mailbox>,
    pub reply_to: Vec<Mailbox>,
    pub attachments: Vec<(String, String, Vec<u8>)>,
}

impl Checked {
    /// Every envelope recipient, deduplicated, in order.
    pub fn envelope(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for m in self.to.iter().chain(&self.cc).chain(&self.bcc) {
            if !out.contains(&m.address) {
                out.push(m.address.clone());
            }
        }
        out
    }
}

fn field(field: impl Into<String>, message: impl Into<String>) -> DraftError {
    DraftError::Field { field: field.into(), message: message.into() }
}

/// A header-bound single-line value (`name` as the client calls it): CR or LF is e2a's
/// "must not contain CR or LF" (400); any other control character is refused the same way,
/// since it has no business in a header either.
fn check_line(name: &str, value: &str, cr_lf: &str) -> Result<(), DraftError> {
    if value.contains(['\r', '\n']) {
        return Err(DraftError::Invalid(format!("{name} must not contain {cr_lf}")));
    }
    if has_control(value) {
        return Err(DraftError::Invalid(format!("{name} must not contain control characters")));
    }
    Ok(())
}

/// A conversation id as agents may set it: ≤200 characters (the schema's bound, 422), one
/// line (400).
pub fn check_conversation_id(value: &str) -> Result<(), DraftError> {
    if value.chars().count() > MAX_CONVERSATION_ID {
        return Err(field("body.conversation_id", "must be at most 200 characters"));
    }
    check_line("conversation_id", value, "CR or LF")
}

fn mailboxes(name: &str, list: &[String]) -> Result<Vec<Mailbox>, DraftError> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            let loc = format!("body.{name}[{i}]");
            parse_mailbox(s).map_err(|e| DraftError::InvalidRecipient { field: loc, message: e.to_string() })
        })
        .collect()
}

/// `type/subtype` tokens only (RFC 2045), so a content type cannot carry parameters or
/// header syntax of its own.
fn valid_content_type(ct: &str) -> bool {
    let token =
        |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b));
    ct.split_once('/').is_some_and(|(a, b)| token(a) && token(b))
}

impl Draft {
    /// Every limit of contract §8.6 and every header-bound field, in the order the contract
    /// reports them: schema problems, recipients, attachments, sizes.
    pub fn check(&self) -> Result<Checked, DraftError> {
        // The request schema's bounds first (422), as e2a's schema runs before its handler.
        if self.subject.chars().count() > MAX_SUBJECT_CHARS {
            return Err(field("body.subject", "must be at most 2000 characters"));
        }
        for (name, body) in [("body.text", &self.text), ("body.html", &self.html)] {
            if body.as_ref().is_some_and(|b| b.len() > MAX_BODY_BYTES) {
                return Err(field(name, "must be at most 1 MiB"));
            }
        }
        for (name, list) in [("to", &self.to), ("cc", &self.cc), ("bcc", &self.bcc)] {
            if let Some(i) = list.iter().position(|a| a.chars().count() > MAX_ADDRESS_LEN) {
                return Err(field(format!("body.{name}[{i}]"), "must be at most 320 characters"));
            }
        }
        if self.reply_to.iter().any(|a| a.chars().count() > MAX_ADDRESS_LEN) {
            return Err(field("body.reply_to", "must be at most 320 characters"));
        }
        // Then the handler's checks (400), in e2a's order.
        check_line("subject", &self.subject, "CR or LF characters")?;
        if self.to.is_empty() && self.cc.is_empty() {
            return Err(DraftError::Invalid("at least one recipient in to or cc is required".into()));
        }
        let provided = self.to.len() + self.cc.len() + self.bcc.len();
        if provided > MAX_RECIPIENTS {
            return Err(DraftError::TooManyRecipients { provided });
        }
        let (to, cc, bcc) =
            (mailboxes("to", &self.to)?, mailboxes("cc", &self.cc)?, mailboxes("bcc", &self.bcc)?);
        let reply_to = self
            .reply_to
            .iter()
            .map(|r| {
                parse_mailbox(r).map_err(|e| {
                    let why = match e {
                        AddressError::ControlCharacter => {
                            "it holds a line break or control character".to_owned()
                        }
                        AddressError::Invalid(_) => e.to_string(),
                    };
                    DraftError::Invalid(format!("reply_to is not a valid email address: {why}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        if self.attachments.len() > MAX_ATTACHMENTS {
            return Err(DraftError::TooManyAttachments(self.attachments.len()));
        }
        let mut attachments = Vec::with_capacity(self.attachments.len());
        let mut total = 0usize;
        for (index, a) in self.attachments.iter().enumerate() {
            if has_control(&a.filename) || has_control(&a.content_type) {
                return Err(DraftError::InvalidAttachment {
                    index,
                    message: "filename and content_type must not contain line breaks or control characters"
                        .into(),
                });
            }
            if a.filename.trim().is_empty() || a.filename.chars().count() > 255 {
                return Err(DraftError::InvalidAttachment {
                    index,
                    message: "filename must be 1-255 characters".into(),
                });
            }
            if !valid_content_type(&a.content_type) {
                return Err(DraftError::InvalidAttachment {
                    index,
                    message: format!("{:?} is not a type/subtype content type", a.content_type),
                });
            }
            let bytes = B64.decode(a.data.trim()).map_err(|_| DraftError::InvalidAttachment {
                index,
                message: "data is not valid base64".into(),
            })?;
            if bytes.len() > MAX_ATTACHMENT_BYTES {
                return Err(DraftError::TooLarge {
                    scope: "attachment",
                    actual: bytes.len(),
                    max: MAX_ATTACHMENT_BYTES,
                    filename: Some(a.filename.clone()),
                });
            }
            total += bytes.len();
            attachments.push((a.filename.clone(), a.content_type.to_ascii_lowercase(), bytes));
        }
        if total > MAX_ATTACHMENTS_TOTAL {
            return Err(DraftError::TooLarge {
                scope: "attachments_total",
                actual: total,
                max: MAX_ATTACHMENTS_TOTAL,
                filename: None,
            });
        }
        let composed = self.subject.len()
            + self.text.as_ref().map_or(0, String::len)
            + self.html.as_ref().map_or(0, String::len)
            + total;
        if composed > MAX_COMPOSED_BYTES {
            return Err(DraftError::TooLarge {
                scope: "composed_message",
                actual: composed,
                max: MAX_COMPOSED_BYTES,
                filename: None,
            });
        }
        Ok(Checked { to, cc, bcc, reply_to, attachments })
    }
}

/// `Re: subject`, without stacking prefixes.
pub fn reply_subject(subject: &str) -> String {
    let trimmed = subject.trim_start();
    if trimmed.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("re:")) {
        trimmed.to_owned()
    } else {
        format!("Re: {trimmed}")
    }
}

/// `Fwd: subject`, without stacking prefixes.
pub fn forward_subject(subject: &str) -> String {
    let trimmed = subject.trim_start();
    let lower = trimmed.to_ascii_lowercase();
    if lower.starts_with("fwd:") || lower.starts_with("fw:") {
        trimmed.to_owned()
    } else {
        format!("Fwd: {trimmed}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draft() -> Draft {
        Draft {
            to: vec!["a@x.test".into()],
            subject: "hi".into(),
            text: Some("t".into()),
            ..Draft::default()
        }
    }

    #[test]
    fn limits_and_injection() {
        assert!(draft().check().is_ok());
        let mut d = draft();
        d.subject = "hi\r\nBcc: victim@y.test".into();
        assert_eq!(
            d.check().err(),
            Some(DraftError::Invalid("subject must not contain CR or LF characters".into()))
        );
        let mut d = draft();
        d.cc = vec!["b@y.test\nBcc: c@z.test".into()];
        assert!(
            matches!(d.check(), Err(DraftError::InvalidRecipient { field, .. }) if field == "body.cc[0]")
        );
        let mut d = draft();
        d.to.clear();
        assert_eq!(
            d.check().err(),
            Some(DraftError::Invalid("at least one recipient in to or cc is required".into()))
        );
        d.cc = vec!["c@x.test".into()];
        assert!(d.check().is_ok(), "Cc alone is enough");
        let mut d = draft();
        d.subject = "s".repeat(MAX_SUBJECT_CHARS + 1) + "\n";
        assert!(matches!(d.check(), Err(DraftError::Field { .. })), "the schema's bound comes first");
        let mut d = draft();
        d.to = (0..51).map(|i| format!("r{i}@x.test")).collect();
        assert_eq!(d.check().err(), Some(DraftError::TooManyRecipients { provided: 51 }));
        let mut d = draft();
        d.to = vec!["not an address".into()];
        assert!(matches!(d.check(), Err(DraftError::InvalidRecipient { .. })));
        let mut d = draft();
        d.attachments = vec![DraftAttachment {
            filename: "a.txt\r\nX-Evil: 1".into(),
            content_type: "text/plain".into(),
            data: B64.encode("x"),
        }];
        assert!(matches!(d.check(), Err(DraftError::InvalidAttachment { index: 0, .. })));
        d.attachments[0].filename = "a.txt".into();
        d.attachments[0].content_type = "text/plain; name=\"x\"".into();
        assert!(matches!(d.check(), Err(DraftError::InvalidAttachment { index: 0, .. })));
        d.attachments[0].content_type = "text/plain".into();
        d.attachments[0].data = "!!!".into();
        assert!(matches!(d.check(), Err(DraftError::InvalidAttachment { index: 0, .. })));
        d.attachments[0].data = B64.encode(vec![0u8; MAX_ATTACHMENT_BYTES + 1]);
        assert!(matches!(d.check(), Err(DraftError::TooLarge { scope: "attachment", .. })));
    }

    #[test]
    fn subjects() {
        assert_eq!(reply_subject("Hello"), "Re: Hello");
        assert_eq!(reply_subject("RE: Hello"), "RE: Hello");
        assert_eq!(forward_subject("Hello"), "Fwd: Hello");
        assert_eq!(forward_subject("Fw: Hello"), "Fw: Hello");
    }
}
