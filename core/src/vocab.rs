//! The words postagent's state is made of (a message's direction and status, a hold's state,
//! a gate's policy…), as enums. Each is spelled once, here: [`Word::as_str`] is the text the
//! store keeps and the wire shows, [`Word::parse`] the only way back, and a value nobody wrote
//! is an error that names it ([`Unknown`]), never a silent default.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A stored or received value that is not a word of its vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}")]
pub struct Unknown {
    pub what: &'static str,
    pub value: String,
}

/// What every vocabulary enum can do; the store reads and writes them through it.
pub trait Word: Sized + Copy + 'static {
    /// What the vocabulary is called, for [`Unknown`].
    const WHAT: &'static str;
    /// Every word, in declaration order.
    const ALL: &'static [Self];
    fn as_str(self) -> &'static str;
    fn parse(text: &str) -> Result<Self, Unknown>;
}

/// Declares a vocabulary enum: its words and their texts, with `Display`, `FromStr`, serde
/// as the text, and [`Word`].
macro_rules! vocabulary {
    ($(#[$meta:meta])* $name:ident = $what:literal {
        $($(#[$vmeta:meta])* $variant:ident = $text:literal),+ $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl Word for $name {
            const WHAT: &'static str = $what;
            const ALL: &'static [Self] = &[$(Self::$variant),+];
            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }
            fn parse(text: &str) -> Result<Self, Unknown> {
                match text {
                    $($text => Ok(Self::$variant),)+
                    _ => Err(Unknown { what: $what, value: text.to_owned() }),
                }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl std::str::FromStr for $name {
            type Err = Unknown;
            fn from_str(s: &str) -> Result<Self, Unknown> {
                <Self as Word>::parse(s)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                <Self as Word>::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

vocabulary! {
    /// Which way a message (or a hold) goes.
    Direction = "direction" {
        Inbound = "inbound",
        Outbound = "outbound",
    }
}

vocabulary! {
    /// Where a message is in its life. Inbound: `received`, `held` (for review), `rejected`
    /// (blocked or refused by a reviewer). Outbound: `pending_review`, `accepted` (queued for
    /// Postfix), `sending`, `sent`, `failed`, `bounced`, `review_rejected`.
    MessageStatus = "message status" {
        Received = "received",
        Held = "held",
        Rejected = "rejected",
        PendingReview = "pending_review",
        Accepted = "accepted",
        Sending = "sending",
        Sent = "sent",
        Failed = "failed",
        Bounced = "bounced",
        ReviewRejected = "review_rejected",
    }
}

vocabulary! {
    /// The review side of a message's status, as the contract's `review_status` shows it.
    ReviewStatus = "review status" {
        PendingReview = "pending_review",
        ReviewApproved = "review_approved",
        ReviewExpiredApproved = "review_expired_approved",
        ReviewRejected = "review_rejected",
        ReviewExpiredRejected = "review_expired_rejected",
        /// Approved outbound mail collapses to `sent` (the contract's view).
        Sent = "sent",
    }
}

vocabulary! {
    /// Inbound mail only; outbound rows store none.
    ReadStatus = "read status" {
        Unread = "unread",
        Read = "read",
    }
}

vocabulary! {
    /// What Postfix (and the internet after it) did with an outbound message.
    DeliveryStatus = "delivery status" {
        Accepted = "accepted",
        Sending = "sending",
        Sent = "sent",
        /// Postfix or a remote MTA is retrying.
        Deferred = "deferred",
        Failed = "failed",
        Bounced = "bounced",
    }
}

vocabulary! {
    /// How an outbound message came to be; inbound rows store none.
    MessageType = "message type" {
        Send = "send",
        Reply = "reply",
        Forward = "forward",
    }
}

vocabulary! {
    /// How an outbound message leaves: through Postfix, or straight into the sender's own inbox.
    SendMethod = "send method" {
        Smtp = "smtp",
        Loopback = "loopback",
    }
}

vocabulary! {
    /// A delivery status notification's verdict (the contract's closed set).
    BounceType = "bounce type" {
        Permanent = "permanent",
        Transient = "transient",
        Undetermined = "undetermined",
    }
}

vocabulary! {
    /// A review hold's state.
    HoldState = "hold state" {
        Pending = "pending",
        Approved = "approved",
        Rejected = "rejected",
        ExpiredApproved = "expired_approved",
        ExpiredRejected = "expired_rejected",
    }
}

vocabulary! {
    /// What an unanswered hold becomes when its time is up.
    OnExpiry = "on_expiry" {
        Approve = "approve",
        Reject = "reject",
    }
}

vocabulary! {
    /// Which addresses a gate lets through without its action.
    GatePolicy = "gate policy" {
        Open = "open",
        Allowlist = "allowlist",
        Domain = "domain",
    }
}

vocabulary! {
    /// What a gate does with what its policy does not match.
    GateAction = "gate action" {
        Flag = "flag",
        Review = "review",
        Block = "block",
    }
}

vocabulary! {
    /// A content scan's sensitivity (stored and shown; no scanner runs).
    Sensitivity = "scan sensitivity" {
        Off = "off",
        Low = "low",
        Medium = "medium",
        High = "high",
    }
}

vocabulary! {
    /// A webhook delivery's state.
    DeliveryState = "webhook delivery status" {
        Pending = "pending",
        Delivered = "delivered",
        Failed = "failed",
    }
}

vocabulary! {
    /// One DNS probe of a domain: `deferred` when DNS failed (never a verdict).
    ProbeStatus = "probe status" {
        Found = "found",
        Missing = "missing",
        Mismatch = "mismatch",
        Deferred = "deferred",
        Pending = "pending",
    }
}

vocabulary! {
    /// The event catalog (contract §4.2): what an event row, a webhook subscription, a
    /// delivery and the WebSocket stream name. Payloads are built in [`crate::mail::event`].
    EventKind = "event type" {
        EmailReceived = "email.received",
        EmailSent = "email.sent",
        EmailFailed = "email.failed",
        EmailReviewApproved = "email.review_approved",
        EmailReviewRejected = "email.review_rejected",
        DomainSendingVerified = "domain.sending_verified",
        DomainSendingFailed = "domain.sending_failed",
        EmailDelivered = "email.delivered",
        EmailBounced = "email.bounced",
        EmailComplained = "email.complained",
        DomainSuppressionAdded = "domain.suppression_added",
        AgentSuppressionAdded = "agent.suppression_added",
        EmailFlagged = "email.flagged",
        EmailBlocked = "email.blocked",
        EmailReviewRequested = "email.review_requested",
    }
}

vocabulary! {
    /// What a job in the queue asks for; `ref_id` names its subject.
    JobKind = "job kind" {
        /// Deliver an event to one webhook (`ref_id`: the delivery id).
        Webhook = "webhook",
        /// Hand an accepted outbound message to Postfix (`ref_id`: the message id).
        Submit = "submit",
        /// Mail the account's reviewer about a new hold (`ref_id`: the message id).
        ReviewNotify = "review_notify",
        /// Mail a console sign-in link (`ref_id`: the login id).
        ConsoleSignIn = "console_sign_in",
    }
}

vocabulary! {
    /// Where an event row is in its fan-out.
    EventStatus = "event status" {
        /// Not yet matched against the account's webhooks.
        Pending = "pending",
        /// Deliveries were scheduled.
        Processed = "processed",
        /// No webhook wanted it.
        NoMatch = "no_match",
    }
}

vocabulary! {
    /// An SPF, DKIM or DMARC result (RFC 8601's words; SPF uses `softfail`, DKIM `policy`).
    AuthStatus = "authentication result" {
        Pass = "pass",
        Fail = "fail",
        SoftFail = "softfail",
        Neutral = "neutral",
        None = "none",
        Policy = "policy",
        TempError = "temperror",
        PermError = "permerror",
    }
}

vocabulary! {
    /// Which aligned mechanism made DMARC pass.
    Alignment = "DMARC alignment" {
        Spf = "spf",
        Dkim = "dkim",
    }
}

/// Every word's text, in declaration order (schemas, error messages).
pub fn texts<T: Word>() -> Vec<&'static str> {
    T::ALL.iter().map(|w| w.as_str()).collect()
}

/// `must be a, b or c`: what a validation error says of a vocabulary.
pub fn must_be<T: Word>() -> String {
    let words = texts::<T>();
    match words.split_last() {
        Some((last, rest)) if !rest.is_empty() => format!("must be {} or {last}", rest.join(", ")),
        _ => format!("must be {}", words.join("")),
    }
}

/// `Some(word)`, or `None` for the empty text a column keeps when the word does not apply.
pub fn parse_optional<T: Word>(text: &str) -> Result<Option<T>, Unknown> {
    if text.is_empty() { Ok(None) } else { T::parse(text).map(Some) }
}

/// The text a column keeps for an optional word.
pub fn optional_str<T: Word>(word: Option<T>) -> &'static str {
    word.map_or("", Word::as_str)
}

vocabulary! {
    /// Why an address is suppressed: a permanent bounce or a complaint (account level), or a
    /// manual block or an unsubscribe (agent level; manual also account level, by the operator).
    SuppressionSource = "suppression source" {
        Bounce = "bounce",
        Complaint = "complaint",
        Manual = "manual",
        Unsubscribe = "unsubscribe",
    }
}

vocabulary! {
    /// Why inbound mail looks automatic (RFC 3834 and its practice); shown as the system
    /// label `e2a:<word>` and used by loop protection.
    AutoClass = "automatic mail class" {
        AutoReplied = "auto-replied",
        AutoGenerated = "auto-generated",
        Bulk = "bulk",
        NullSender = "null-sender",
        Responder = "auto-responder",
    }
}

vocabulary! {
    /// How log lines are written (`log_format`).
    LogFormat = "log format" {
        Plain = "plain",
        Json = "json",
    }
}

vocabulary! {
    /// Where log lines go (`log_target`): stderr (journald under systemd) or the syslog socket.
    LogTarget = "log target" {
        Stderr = "stderr",
        Syslog = "syslog",
    }
}

vocabulary! {
    /// The syslog facility of our lines (`syslog_facility`); `mail` puts them in mail.log.
    SyslogFacility = "syslog facility" {
        Mail = "mail",
        Daemon = "daemon",
        Local0 = "local0",
        Local1 = "local1",
        Local2 = "local2",
        Local3 = "local3",
        Local4 = "local4",
        Local5 = "local5",
        Local6 = "local6",
        Local7 = "local7",
    }
}

vocabulary! {
    /// A ledger row's stage.
    LifecycleStage = "lifecycle stage" {
        Accepted = "accepted",
        Authentication = "authentication",
        Review = "review",
        Suppression = "suppression",
        Queued = "queued",
        Submission = "submission",
        Delivery = "delivery",
        Complaint = "complaint",
    }
}

vocabulary! {
    /// What the stage came to.
    LifecycleOutcome = "lifecycle outcome" {
        Accepted = "accepted",
        Passed = "passed",
        Failed = "failed",
        Indeterminate = "indeterminate",
        Pending = "pending",
        Approved = "approved",
        Rejected = "rejected",
        Blocked = "blocked",
        Applied = "applied",
        Enqueued = "enqueued",
        Deferred = "deferred",
        Delivered = "delivered",
        Bounced = "bounced",
        Reported = "reported",
    }
}

vocabulary! {
    /// The contract's reason codes; each names its stage and outcome.
    LifecycleReason = "lifecycle reason code" {
        InboundSmtp = "acceptance.inbound_smtp",
        OutboundApi = "acceptance.outbound_api",
        LocalLoopback = "acceptance.local_loopback",
        DmarcPass = "authentication.dmarc_pass",
        DmarcFail = "authentication.dmarc_fail",
        DmarcNone = "authentication.dmarc_none",
        DmarcTemporaryError = "authentication.dmarc_temporary_error",
        DmarcPermanentError = "authentication.dmarc_permanent_error",
        HoldCreated = "review.hold_created",
        ReviewApproved = "review.approved",
        ReviewRejected = "review.rejected",
        ExpiredApproved = "review.expired_approved",
        ExpiredRejected = "review.expired_rejected",
        RecipientBlocked = "suppression.recipient_blocked",
        HardBounceApplied = "suppression.hard_bounce_applied",
        ComplaintApplied = "suppression.complaint_applied",
        InboundProcessing = "queue.inbound_processing",
        OutboundSubmission = "queue.outbound_submission",
        UpstreamAccepted = "submission.upstream_accepted",
        LoopbackAccepted = "submission.local_loopback_accepted",
        TemporaryFailure = "submission.temporary_failure",
        ProviderRejected = "submission.provider_rejected",
        RetriesExhausted = "submission.local_retries_exhausted",
        Cancelled = "submission.cancelled",
        RecipientServerAccepted = "delivery.recipient_server_accepted",
        TemporaryDelay = "delivery.temporary_delay",
        PermanentBounce = "delivery.permanent_bounce",
        TransientBounce = "delivery.transient_bounce",
        UndeterminedBounce = "delivery.undetermined_bounce",
        RecipientReported = "complaint.recipient_reported",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Word + std::fmt::Debug + PartialEq>() {
        for w in T::ALL {
            assert_eq!(T::parse(w.as_str()), Ok(*w));
        }
        let e = T::parse("no-such-word").expect_err("unknown");
        assert_eq!(e.to_string(), format!("unknown {} \"no-such-word\"", T::WHAT));
    }

    #[test]
    fn every_word_reads_back_and_nothing_else_does() {
        round_trip::<Direction>();
        round_trip::<MessageStatus>();
        round_trip::<ReviewStatus>();
        round_trip::<ReadStatus>();
        round_trip::<DeliveryStatus>();
        round_trip::<MessageType>();
        round_trip::<SendMethod>();
        round_trip::<BounceType>();
        round_trip::<HoldState>();
        round_trip::<OnExpiry>();
        round_trip::<GatePolicy>();
        round_trip::<GateAction>();
        round_trip::<Sensitivity>();
        round_trip::<DeliveryState>();
        round_trip::<ProbeStatus>();
        round_trip::<EventKind>();
        round_trip::<JobKind>();
        round_trip::<LifecycleStage>();
        round_trip::<LifecycleOutcome>();
        round_trip::<LifecycleReason>();
        round_trip::<EventStatus>();
        round_trip::<AuthStatus>();
        round_trip::<Alignment>();
    }

    #[test]
    fn serde_is_the_text() {
        assert_eq!(
            serde_json::to_string(&MessageStatus::PendingReview).ok().as_deref(),
            Some("\"pending_review\"")
        );
        assert_eq!(serde_json::from_str::<GateAction>("\"block\"").ok(), Some(GateAction::Block));
        assert!(serde_json::from_str::<GateAction>("\"maybe\"").is_err());
        assert_eq!(parse_optional::<ReadStatus>(""), Ok(None));
        assert_eq!(optional_str::<MessageType>(None), "");
    }
}
