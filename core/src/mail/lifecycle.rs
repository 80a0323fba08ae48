//! The message lifecycle ledger (contract §3.5, beta): one row per stage a message passed
//! through (accepted, authentication, review, suppression, queued, submission, delivery,
//! complaint), each written in the same transaction as the state change it records, so the
//! ledger never claims a step the store does not show and never misses one it does.
//!
//! A row's stage, outcome and retryability follow from its reason code ([`Reason`]); what is
//! left to say is the evidence (the facts the step decided on) and the correlation ids that
//! tie it to other logs: for inbound mail the Postfix queue id, so an operator can follow a
//! message from `/var/log/mail.log` to the agent.

use crate::ids;
use crate::time::Timestamp;
use crate::vocab::Direction;
pub use crate::vocab::{LifecycleOutcome as Outcome, LifecycleReason as Reason, LifecycleStage as Stage};
use serde_json::{Map, Value, json};

impl Reason {
    pub fn stage(self) -> Stage {
        use Reason::*;
        match self {
            InboundSmtp | OutboundApi | LocalLoopback => Stage::Accepted,
            DmarcPass | DmarcFail | DmarcNone | DmarcTemporaryError | DmarcPermanentError => {
                Stage::Authentication
            }
            HoldCreated | ReviewApproved | ReviewRejected | ExpiredApproved | ExpiredRejected => {
                Stage::Review
            }
            RecipientBlocked | HardBounceApplied | ComplaintApplied => Stage::Suppression,
            InboundProcessing | OutboundSubmission => Stage::Queued,
            UpstreamAccepted | LoopbackAccepted | TemporaryFailure | ProviderRejected | RetriesExhausted
            | Cancelled => Stage::Submission,
            RecipientServerAccepted
            | TemporaryDelay
            | PermanentBounce
            | TransientBounce
            | UndeterminedBounce => Stage::Delivery,
            RecipientReported => Stage::Complaint,
        }
    }

    pub fn outcome(self) -> Outcome {
        use Reason::*;
        match self {
            InboundSmtp | OutboundApi | LocalLoopback | UpstreamAccepted | LoopbackAccepted => {
                Outcome::Accepted
            }
            DmarcPass => Outcome::Passed,
            DmarcFail | ProviderRejected | RetriesExhausted | Cancelled => Outcome::Failed,
            DmarcNone | DmarcTemporaryError | DmarcPermanentError => Outcome::Indeterminate,
            HoldCreated => Outcome::Pending,
            ReviewApproved | ExpiredApproved => Outcome::Approved,
            ReviewRejected | ExpiredRejected => Outcome::Rejected,
            RecipientBlocked => Outcome::Blocked,
            HardBounceApplied | ComplaintApplied => Outcome::Applied,
            InboundProcessing | OutboundSubmission => Outcome::Enqueued,
            TemporaryFailure | TemporaryDelay => Outcome::Deferred,
            RecipientServerAccepted => Outcome::Delivered,
            PermanentBounce | TransientBounce | UndeterminedBounce => Outcome::Bounced,
            RecipientReported => Outcome::Reported,
        }
    }

    /// Whether the step may still come out differently on its own (a retry, a later DSN).
    pub fn retryable(self) -> bool {
        matches!(
            self,
            Reason::TemporaryFailure
                | Reason::RetriesExhausted
                | Reason::TemporaryDelay
                | Reason::TransientBounce
                | Reason::DmarcTemporaryError
        )
    }

    /// Whether rows of this reason name one recipient (and only these may).
    pub fn per_recipient(self) -> bool {
        matches!(self.stage(), Stage::Delivery | Stage::Complaint | Stage::Suppression)
    }

    /// The authentication row's reason for a DMARC result word (RFC 8601's).
    pub fn of_dmarc(result: Option<&str>) -> Reason {
        match result.map(str::to_ascii_lowercase).as_deref() {
            Some("pass") => Reason::DmarcPass,
            Some("fail") => Reason::DmarcFail,
            Some("temperror") => Reason::DmarcTemporaryError,
            Some("permerror") => Reason::DmarcPermanentError,
            _ => Reason::DmarcNone,
        }
    }
}

/// One ledger row to write with a state change.
#[derive(Debug, Clone, PartialEq)]
pub struct NewStage {
    /// `mlt_<32hex>`.
    pub id: String,
    pub message_id: String,
    pub direction: Direction,
    pub recipient: Option<String>,
    pub reason: Reason,
    pub evidence: Map<String, Value>,
    pub correlation_ids: Map<String, Value>,
    pub occurred_at: Timestamp,
}

impl NewStage {
    pub fn new(message_id: &str, direction: Direction, reason: Reason, at: Timestamp) -> Self {
        Self {
            id: ids::mint("mlt_", 16),
            message_id: message_id.to_owned(),
            direction,
            recipient: None,
            reason,
            evidence: Map::new(),
            correlation_ids: Map::new(),
            occurred_at: at,
        }
    }

    /// The row's id derived from `key` (a report's own identity, such as message, reason and
    /// recipient): a report delivered twice records its step once.
    pub fn keyed(mut self, key: &str) -> Self {
        self.id = format!("mlt_{}", &crate::sign::sha256_hex(key.as_bytes())[..32]);
        self
    }

    pub fn recipient(mut self, address: &str) -> Self {
        self.recipient = Some(address.to_ascii_lowercase());
        self
    }

    /// Adds a fact the step decided on (nothing from a body, nothing secret).
    pub fn evidence(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.evidence.insert(key.to_owned(), value.into());
        self
    }

    /// Adds an id of another log (`postfix_queue_id`, `source_id`, `event_id`…).
    pub fn correlate(mut self, key: &str, id: Option<&str>) -> Self {
        if let Some(id) = id.filter(|s| !s.is_empty()) {
            self.correlation_ids.insert(key.to_owned(), json!(id));
        }
        self
    }

    /// The contract's `MessageLifecycleTransition`.
    pub fn view(&self) -> Value {
        let mut v = json!({
            "id": self.id,
            "message_id": self.message_id,
            "direction": self.direction,
            "recipient": self.recipient,
            "stage": self.reason.stage(),
            "outcome": self.reason.outcome(),
            "reason_code": self.reason,
            "retryable": self.reason.retryable(),
            "evidence": self.evidence,
            "correlation_ids": self.correlation_ids,
            "occurred_at": self.occurred_at,
            "reconstructed": false,
        });
        // Only the per-recipient reasons carry the key (as e2a words it: absent, not null).
        if self.recipient.is_none()
            && let Some(obj) = v.as_object_mut()
        {
            obj.remove("recipient");
        }
        v
    }
}

/// The source id of a loopback self-send's arriving copy: this prefix, then the sent id.
pub const LOOPBACK_SOURCE: &str = "loopback:";

/// An inbound copy's first rows: accepted at its Postfix queue id, the authentication
/// verdict the milter signed (DMARC's, with SPF and DKIM as evidence), then where the gate
/// put it (`then`: queued for the agent or held; `None` when the gate blocked it, which no
/// stage of the contract names).
/// The arriving copy of a loopback self-send (`source_id` [`LOOPBACK_SOURCE`]…) never passed
/// SMTP or the milter: accepted locally, then queued for the agent.
pub fn inbound(
    message_id: &str,
    queue_id: Option<&str>,
    source_id: &str,
    delivered_to: &str,
    auth: Option<&crate::auth::Authentication>,
    then: Option<Reason>,
    at: Timestamp,
) -> Vec<NewStage> {
    let row = |reason| NewStage::new(message_id, Direction::Inbound, reason, at);
    if let Some(outbound) = source_id.strip_prefix(LOOPBACK_SOURCE) {
        let accepted = row(Reason::LocalLoopback).correlate("sent_message_id", Some(outbound));
        return in_order(std::iter::once(accepted).chain(then.map(row)).collect());
    }
    let accepted = row(Reason::InboundSmtp)
        .evidence("delivered_to", delivered_to)
        .correlate("postfix_queue_id", queue_id)
        .correlate("source_id", Some(source_id));
    let authentication = match auth {
        Some(a) => row(Reason::of_dmarc(Some(a.dmarc.status.as_str())))
            .evidence("authentication", serde_json::to_value(a).unwrap_or(Value::Null)),
        // Unsigned by the milter, or signed for other recipients: nothing was verified.
        None => row(Reason::DmarcNone).evidence("signed", false),
    };
    in_order([accepted, authentication].into_iter().chain(then.map(row)).collect())
}

/// Rows written together keep their order when read back (ascending `(occurred_at, id)`):
/// the n-th row of a batch is stamped n microseconds after the first.
pub fn in_order(mut rows: Vec<NewStage>) -> Vec<NewStage> {
    for i in 1..rows.len() {
        if rows[i].occurred_at <= rows[i - 1].occurred_at {
            rows[i].occurred_at = rows[i - 1].occurred_at.plus_micros(1);
        }
    }
    rows
}

/// `lifecycle_transitions` for an event's `data`.
pub fn views(rows: &[NewStage]) -> Value {
    Value::Array(rows.iter().map(NewStage::view).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::Word;

    #[test]
    fn every_reason_is_in_the_stage_its_prefix_names() {
        for r in Reason::ALL {
            let prefix = r.as_str().split('.').next().unwrap_or_default();
            let stage = match prefix {
                "acceptance" => Stage::Accepted,
                "queue" => Stage::Queued,
                other => other.parse().expect("a stage"),
            };
            assert_eq!(r.stage(), stage, "{r}");
        }
        assert_eq!(Reason::ALL.len(), 30);
    }

    #[test]
    fn a_batch_reads_back_in_the_order_it_was_written() {
        let at = Timestamp::from_micros(1_000);
        let rows = in_order(vec![
            NewStage::new("msg_a", Direction::Inbound, Reason::InboundSmtp, at),
            NewStage::new("msg_a", Direction::Inbound, Reason::DmarcPass, at),
            NewStage::new("msg_a", Direction::Inbound, Reason::InboundProcessing, at),
        ]);
        let times: Vec<i64> = rows.iter().map(|r| r.occurred_at.as_micros()).collect();
        assert_eq!(times, vec![1_000, 1_001, 1_002]);
        let v = rows[1].view();
        assert_eq!(v["stage"], "authentication");
        assert_eq!(v["outcome"], "passed");
        assert_eq!(v["reconstructed"], false);
        assert!(v["id"].as_str().is_some_and(|s| s.starts_with("mlt_") && s.len() == 36));
    }
}
