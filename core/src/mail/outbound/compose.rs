//! The MIME we send: built with mail-builder (RFC 2047 words for non-ASCII, folding, base64
//! attachments) from a [`Checked`](super::Checked) draft, so every header value has already
//! been refused if it held a line break.

use super::address::Mailbox;
use super::{Checked, Draft};
use mail_builder::MessageBuilder;
use mail_builder::headers::address::Address;
use mail_builder::headers::message_id::MessageId;
use mail_builder::headers::raw::Raw;

/// The ids a composed message carries.
#[derive(Debug, Clone)]
pub struct Ids<'a> {
    /// postagent's `msg_…` id (`X-E2A-Message-Id`, for operators correlating feedback).
    pub message_id: &'a str,
    /// The RFC 5322 Message-ID, without angle brackets.
    pub rfc_message_id: &'a str,
    /// `X-E2A-Conversation-Id`: trusted on the way back in only when it comes through our
    /// own originating listener (agent-to-agent mail).
    pub conversation_id: &'a str,
}

/// `msg_…@domain`: unique, and tells a reply which of our messages it answers.
pub fn rfc_message_id(message_id: &str, domain: &str) -> String {
    format!("{message_id}@{domain}")
}

fn address(m: &Mailbox) -> Address<'_> {
    Address::new_address(m.name.as_deref(), m.address.as_str())
}

fn list(ms: &[Mailbox]) -> Address<'_> {
    if ms.len() == 1 { address(&ms[0]) } else { Address::new_list(ms.iter().map(address).collect()) }
}

/// A Message-ID safe to write as is: one token, printable ASCII, no angle brackets.
pub fn plain_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 250 && id.bytes().all(|b| b.is_ascii_graphic() && b != b'<' && b != b'>')
}

/// The message as it goes to Postfix. Bcc recipients are envelope-only: they never appear
/// in a header.
pub fn compose(draft: &Draft, checked: &Checked, from: &Mailbox, ids: &Ids<'_>) -> std::io::Result<Vec<u8>> {
    let mut b = MessageBuilder::new()
        .from(address(from))
        .subject(draft.subject.as_str())
        .message_id(ids.rfc_message_id)
        .header("X-E2A-Conversation-Id", Raw::new(ids.conversation_id))
        .header("X-E2A-Message-Id", Raw::new(ids.message_id));
    // A Cc-only message has no To (RFC 5322 §3.6.3: every destination field is optional).
    if !checked.to.is_empty() {
        b = b.to(list(&checked.to));
    }
    if !checked.cc.is_empty() {
        b = b.cc(list(&checked.cc));
    }
    if !checked.reply_to.is_empty() {
        b = b.reply_to(list(&checked.reply_to));
    }
    // Ids come from mail we received: written raw by mail-builder, so anything that is not a
    // plain `left@right` token (whitespace, control characters, angle brackets) is left out.
    if let Some(parent) = draft.in_reply_to.as_deref().filter(|id| plain_id(id)) {
        b = b.in_reply_to(parent);
    }
    let refs: Vec<&str> = draft.references.iter().map(String::as_str).filter(|id| plain_id(id)).collect();
    if !refs.is_empty() {
        // The newest 50: enough for any thread, bounded for a hostile one.
        let keep = &refs[refs.len().saturating_sub(50)..];
        b = b.references(MessageId::new_list(keep.iter().copied()));
    }
    if let Some(class) = draft.auto_submitted {
        b = b.header("Auto-Submitted", Raw::new(class.as_str()));
    }
    // Managed unsubscribe (RFC 8058): one-click headers, and the link in a footer for people.
    let (mut text, mut html) = (draft.text.clone(), draft.html.clone());
    if let Some(url) =
        draft.unsubscribe_url.as_deref().filter(|u| u.starts_with("http") && !u.contains(['\r', '\n', '>']))
    {
        b = b
            .header("List-Unsubscribe", Raw::new(format!("<{url}>")))
            .header("List-Unsubscribe-Post", Raw::new("List-Unsubscribe=One-Click"));
        let footer = format!("\n\n--\nTo stop receiving these messages: {url}\n");
        text = Some(format!("{}{footer}", text.unwrap_or_default()));
        html = html.map(|h| format!("{h}<p style=\"font-size:small\"><a href=\"{url}\">Unsubscribe</a></p>"));
    }
    match (&text, &html) {
        (text, Some(html)) => {
            b = b.html_body(html.clone());
            if let Some(t) = text {
                b = b.text_body(t.clone());
            }
        }
        (text, None) => b = b.text_body(text.clone().unwrap_or_default()),
    }
    for (filename, content_type, bytes) in &checked.attachments {
        b = b.attachment(content_type.as_str(), filename.as_str(), bytes.as_slice());
    }
    b.write_to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mail::inbound;
    use crate::mail::outbound::DraftAttachment;
    use base64::Engine as _;

    #[test]
    fn composes_what_the_parser_reads_back() {
        let draft = Draft {
            to: vec!["Ann Example <ann@example.org>".into()],
            cc: vec!["cc@example.org".into()],
            bcc: vec!["hidden@example.org".into()],
            subject: "Grüße, Ann".into(),
            text: Some("Hello Ann".into()),
            html: Some("<p>Hello Ann</p>".into()),
            attachments: vec![DraftAttachment {
                filename: "notes.txt".into(),
                content_type: "text/plain".into(),
                data: base64::engine::general_purpose::STANDARD.encode("the notes"),
            }],
            in_reply_to: Some("parent@example.org".into()),
            references: vec!["root@example.org".into(), "parent@example.org".into()],
            ..Draft::default()
        };
        let checked = draft.check().expect("valid");
        let from = Mailbox { name: Some("Bot".into()), address: "bot@agents.test".into() };
        let ids = Ids { message_id: "msg_1", rfc_message_id: "msg_1@agents.test", conversation_id: "conv_1" };
        let raw = compose(&draft, &checked, &from, &ids).expect("compose");
        let p = inbound::parse(&raw);
        assert_eq!(p.header_from.as_deref(), Some("bot@agents.test"));
        assert_eq!(p.to, vec!["ann@example.org"]);
        assert_eq!(p.cc, vec!["cc@example.org"]);
        assert_eq!(p.subject, "Grüße, Ann");
        assert_eq!(p.rfc_message_id.as_deref(), Some("msg_1@agents.test"));
        assert_eq!(p.in_reply_to.as_deref(), Some("parent@example.org"));
        assert_eq!(p.references, vec!["root@example.org", "parent@example.org"]);
        assert_eq!(p.conversation_header.as_deref(), Some("conv_1"));
        assert_eq!(p.attachments.len(), 1);
        assert_eq!(inbound::attachment_bytes(&raw, 0).as_deref(), Some(&b"the notes"[..]));
        let text = String::from_utf8_lossy(&raw);
        assert!(!text.to_ascii_lowercase().contains("hidden@example.org"), "bcc stays off the headers");
        let mut hostile = draft.clone();
        hostile.in_reply_to = Some("a\rBcc: x@y.test".into());
        hostile.references = vec!["ok@x.test".into(), "bad id@x.test".into(), "<b@x.test>".into()];
        let raw = compose(&hostile, &checked, &from, &ids).expect("compose");
        let p = inbound::parse(&raw);
        assert_eq!(p.in_reply_to, None, "an unsafe parent id is left out");
        assert_eq!(p.references, vec!["ok@x.test"]);
        assert!(checked.envelope().contains(&"hidden@example.org".to_owned()));
    }
}
