//! `POST /v1/agents/{email}/test`: a test message from the deployment's noreply identity to
//! the agent, over the real route. It is stored as an outbound message of the agent's (so the
//! API can answer with a `message_id` that `GET …/messages/{id}` follows, and `email.sent` or
//! `email.failed` reports its outcome) and queued for the submission worker, which hands it to
//! Postfix's originating listener; Postfix routes it back in through the milter and LMTP like
//! any mail from outside, where it lands in the agent's inbox. Nothing short-cuts inside
//! postagent: a test that passes proves the agent's inbound path.

use super::compose;
use super::send::Outcome;
use crate::ids;
use crate::mail::lifecycle::{self, NewStage, Reason};
use crate::store::{Agent, NewAttachment, NewJob, NewOutboundMessage, OutboundInsert, Store, StoreError};
use crate::time::Timestamp;
use crate::vocab::{DeliveryStatus, Direction, JobKind, MessageStatus, MessageType, SendMethod};
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;

/// The test message's sender: the deployment's noreply identity.
pub fn sender(mail_hostname: &str) -> String {
    format!("postagent-noreply@{mail_hostname}")
}

/// The test message for `agent`, with its Message-ID `id@mail_hostname`.
pub fn compose_test(agent: &str, id: &str, mail_hostname: &str, now: Timestamp) -> std::io::Result<Vec<u8>> {
    let text = format!(
        "This is a test message for {agent}, sent by postagent at {now} through the mail server's\n\
         own route (Postfix, the milter and LMTP), as mail from outside arrives.\n\n\
         If it is in the agent's inbox, inbound mail works. It is marked automatic\n\
         (Auto-Submitted), so agents never answer it.\n"
    );
    MessageBuilder::new()
        .from(Address::new_address(Some("postagent test"), sender(mail_hostname)))
        .to(agent)
        .subject(format!("postagent test message for {agent}"))
        .message_id(compose::rfc_message_id(id, mail_hostname))
        .header("Auto-Submitted", mail_builder::headers::raw::Raw::new("auto-generated"))
        .text_body(text)
        .write_to_vec()
}

/// Stores the test message and queues it; the send result (always `accepted`: the test
/// bypasses the outbound gate, since it is the deployment's mail to the agent, not the
/// agent's to anyone).
pub async fn send_test(
    store: &dyn Store,
    agent: &Agent,
    mail_hostname: &str,
    now: Timestamp,
) -> Result<Outcome, StoreError> {
    let id = ids::mint("msg_", 16);
    let raw = compose_test(&agent.email, &id, mail_hostname, now)
        .map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let subject = format!("postagent test message for {}", agent.email);
    let message = NewOutboundMessage {
        id: id.clone(),
        account_id: agent.account_id.clone(),
        agent_email: agent.email.clone(),
        status: MessageStatus::Accepted,
        review_status: None,
        delivery_status: Some(DeliveryStatus::Accepted),
        message_type: MessageType::Send,
        method: SendMethod::Smtp,
        sent_as: "relay".into(),
        header_from: sender(mail_hostname),
        to: vec![agent.email.clone()],
        cc: Vec::new(),
        bcc: Vec::new(),
        reply_to: Vec::new(),
        subject,
        rfc_message_id: compose::rfc_message_id(&id, mail_hostname),
        in_reply_to: None,
        references: Vec::new(),
        conversation_id: ids::mint("conv_", 16),
        size_bytes: raw.len() as i64,
        raw: Some(raw),
        draft: "{}".into(),
        provider_message_id: None,
        created_at: now,
        flag_reason: None,
        scheduled_at: None,
    };
    let insert = OutboundInsert {
        message,
        attachments: Vec::<NewAttachment>::new(),
        hold: None,
        twin: None,
        events: Vec::new(),
        jobs: vec![NewJob { kind: JobKind::Submit, ref_id: id.clone(), run_at: now }],
        idempotency: None,
        lifecycle: lifecycle::in_order(vec![
            NewStage::new(&id, Direction::Outbound, Reason::OutboundApi, now),
            NewStage::new(&id, Direction::Outbound, Reason::OutboundSubmission, now),
        ]),
    };
    store.insert_outbound(insert).await?;
    tracing::info!("NOQUEUE: agent test msg={id} agent={} from=<{}>", agent.email, sender(mail_hostname));
    Ok(Outcome::Accepted { id })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_message_says_what_it_is_and_that_it_is_automatic() {
        let raw =
            compose_test("bot@agents.test", "msg_1", "mx.example.org", Timestamp::now()).expect("compose");
        let text = String::from_utf8(raw).expect("utf-8");
        assert!(text.contains("From: \"postagent test\" <postagent-noreply@mx.example.org>"), "{text}");
        assert!(text.contains("To: <bot@agents.test>"), "{text}");
        assert!(text.contains("Auto-Submitted: auto-generated"), "{text}");
        assert!(text.contains("Message-ID: <msg_1@mx.example.org>"), "{text}");
    }
}
