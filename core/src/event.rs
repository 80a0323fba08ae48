//! Building outbox events: the contract's envelope `{type, id, schema_version, created_at,
//! data}` and the row that carries it.

use crate::ids::AccountId;
use crate::sign::sha256_hex;
use crate::store::NewEvent;
use crate::time::Timestamp;
use crate::vocab::EventKind;
use serde_json::{Value, json};

/// The deterministic id of the event `kind` about `subject`: the same on every retry,
/// redelivery and channel (contract §4.3).
pub fn event_id(subject: &str, kind: EventKind) -> String {
    format!("evt_{}", &sha256_hex(format!("{subject}|{kind}").as_bytes())[..32])
}

/// An event about a message of `agent_email`.
pub struct MessageEvent<'a> {
    pub account_id: &'a AccountId,
    pub agent_email: &'a str,
    pub message_id: &'a str,
    pub conversation_id: Option<&'a str>,
    pub kind: EventKind,
    pub data: Value,
    pub at: Timestamp,
}

impl MessageEvent<'_> {
    /// The row, with a deterministic id derived from the message and the kind.
    pub fn build(self) -> NewEvent {
        let id = event_id(self.message_id, self.kind);
        self.build_with_id(id)
    }

    /// The row with a given id (events that may happen more than once per message, such as
    /// one bounce per recipient, name their subject more precisely).
    pub fn build_with_id(self, id: String) -> NewEvent {
        let envelope = json!({
            "type": self.kind,
            "id": id,
            "schema_version": "1",
            "created_at": self.at,
            "data": self.data,
        });
        NewEvent {
            id,
            account_id: self.account_id.clone(),
            kind: self.kind,
            agent_email: Some(self.agent_email.to_owned()),
            message_id: Some(self.message_id.to_owned()),
            conversation_id: self.conversation_id.filter(|c| !c.is_empty()).map(str::to_owned),
            labels: Vec::new(),
            payload: envelope.to_string(),
            created_at: self.at,
            internal: false,
            only_webhook: None,
        }
    }
}

/// `data` with the fields of `extra` added (or replaced).
pub fn with_fields(mut data: Value, extra: Value) -> Value {
    if let (Some(obj), Some(more)) = (data.as_object_mut(), extra.as_object()) {
        for (k, v) in more {
            obj.insert(k.clone(), v.clone());
        }
    }
    data
}
