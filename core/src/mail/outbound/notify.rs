//! The email a reviewer gets when an agent's message is held (contract §7.5): who wants to
//! send what to whom, and one link to approve, one to reject. The links open a confirmation
//! page; nothing acts on a GET, so a mail scanner that follows links decides nothing.

use crate::store::{Agent, Message};
use crate::time::Timestamp;
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;

/// How much of the body the email previews.
const PREVIEW_CHARS: usize = 2000;

pub struct Notice<'a> {
    pub agent: &'a Agent,
    pub message: &'a Message,
    pub text: Option<&'a str>,
    pub reviewer: &'a str,
    pub approve_url: &'a str,
    pub reject_url: &'a str,
    /// The message's page in the console (read it whole, edit it, decide it there).
    pub console_url: &'a str,
    pub expires_at: Timestamp,
}

/// `hitl-noreply@<agent domain>`: the sender of review notices.
pub fn sender(agent: &Agent) -> String {
    format!("hitl-noreply@{}", agent.domain)
}

pub fn compose(n: &Notice<'_>) -> std::io::Result<Vec<u8>> {
    let m = n.message;
    let recipients =
        [m.to.clone(), m.cc.clone(), m.bcc.iter().map(|b| format!("{b} (bcc)")).collect()].concat();
    let preview: String = n.text.unwrap_or("").chars().take(PREVIEW_CHARS).collect();
    let text = format!(
        "{agent} wants to send a message that needs your review.\n\n\
         To:      {to}\nSubject: {subject}\n\n{preview}\n\n\
         Approve: {approve}\nReject:  {reject}\n\n\
         Each link opens a page that asks you to confirm. Without a decision the hold ends at {expires}.\n\n\
         Read it whole, edit it or decide it in the console: {console}\n",
        agent = n.agent.email,
        to = recipients.join(", "),
        subject = m.subject,
        approve = n.approve_url,
        reject = n.reject_url,
        console = n.console_url,
        expires = n.expires_at,
    );
    let from = sender(n.agent);
    MessageBuilder::new()
        .from(Address::new_address(Some("postagent review"), from.as_str()))
        .to(n.reviewer)
        .subject(format!("Review needed: {} from {}", m.subject, n.agent.email))
        .message_id(format!("hitl-approve-{}@{}", m.id, n.agent.domain))
        .header("Auto-Submitted", mail_builder::headers::raw::Raw::new("auto-generated"))
        .header("X-E2A-Message-Id", mail_builder::headers::raw::Raw::new(m.id.as_str()))
        .text_body(text)
        .write_to_vec()
}

/// The email with a console sign-in link, from `postagent-noreply@<mail hostname>`.
pub fn compose_sign_in(
    to: &str,
    link: &str,
    mail_hostname: &str,
    expires_at: Timestamp,
) -> std::io::Result<Vec<u8>> {
    let text = format!(
        "Someone, hopefully you, asked to sign in to the postagent console as {to}.\n\n\
         Sign in: {link}\n\n\
         The link works once, until {expires_at}. If you did not ask for it, ignore this email;\n\
         nobody can sign in without the link.\n"
    );
    let from = format!("postagent-noreply@{mail_hostname}");
    MessageBuilder::new()
        .from(Address::new_address(Some("postagent console"), from.as_str()))
        .to(to)
        .subject("Your postagent console sign-in link")
        .header("Auto-Submitted", mail_builder::headers::raw::Raw::new("auto-generated"))
        .text_body(text)
        .write_to_vec()
}
