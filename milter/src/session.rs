//! One SMTP connection as the milter sees it: connection facts (client, HELO, which Postfix
//! listener) for its whole life, and the current message's state from MAIL FROM to
//! end-of-message or abort. One connection carries any number of messages, so nothing of a
//! message may survive into the next.
//!
//! What a message costs is bounded whatever it holds: the bytes kept for DKIM stop at
//! `max_message_bytes` and at `max_header_fields` header fields (past either, every DKIM
//! signature is `permerror`, never `temperror`, because a retry would meet the same limit;
//! SPF-aligned DMARC still works); the body and header hashes are computed as the bytes
//! stream by; header surgery keeps only the fields it acts on ([`Surgery`]); recipients are
//! kept up to Postfix's own `smtpd_recipient_limit` default.

use crate::MilterConfig;
use crate::headers::{self, AUTHENTICATION_RESULTS, Deletion, SpfIdentity, Surgery};
use crate::verdict::{Input, Verifier};
use postagent_core::auth::canon::{BodyHasher, HeaderHasher, TOKEN_HEADERS};
use postagent_core::auth::headers::{Claims, EntityType, recipient_tag, sign, verify_set};
use postagent_core::auth::submission::{self, Submission};
use postagent_core::ids::MessageId;
use postagent_core::mail::inbound::MAX_SIGNATURE_AGE_SECS;
use postagent_core::time::Timestamp;
use std::net::IpAddr;

/// Recipients remembered per message (Postfix's `smtpd_recipient_limit` default).
const MAX_RECIPIENTS: usize = postagent_core::auth::headers::MAX_RECIPIENTS;

/// Connection-scoped state (`cx.data` in indymilter).
#[derive(Default)]
pub struct Session {
    /// Postfix sends header values exactly, leading space included (`SMFIP_HDR_LEADSPC`).
    leading_space: bool,
    /// Postfix agreed to expect no reply to connect, HELO, MAIL, each header and each body
    /// chunk (`SMFIP_NR_*`): the callbacks of those stages answer [`indymilter::Status::Noreply`].
    pub(crate) noreply: bool,
    client_ip: Option<IpAddr>,
    helo: String,
    /// Came in through the listener whose `{daemon_name}` is `ORIGINATING`.
    originating: bool,
    /// Postfix's `myhostname` (macro `j`), for SPF's `%{r}`.
    host_name: String,
    message: Option<Message>,
}

/// Message-scoped state, created at MAIL FROM.
struct Message {
    /// Without angle brackets; empty for the null sender.
    mail_from: String,
    /// Lowercase envelope recipients on our domains (agents and bounce addresses).
    recipients: Vec<String>,
    surgery: Surgery,
    header_hash: HeaderHasher,
    header_fields: usize,
    /// `From` fields among all the header fields, not only those kept for DKIM: a second
    /// `From` past `max_header_fields` still makes the author ambiguous.
    from_fields: usize,
    /// Headers and body with CRLF line ends, up to the caps, for DKIM.
    raw: Vec<u8>,
    in_body: bool,
    truncated: bool,
    /// Whether the last body byte kept was a CR (a CRLF may straddle two chunks).
    last_cr: bool,
    body_hash: BodyHasher,
}

/// What end-of-message must do: the deletions (already ordered last to first), then the
/// insertions, listed top to bottom as they must end up (insert them at index 0 in reverse).
#[derive(Debug)]
pub struct Outcome {
    pub deletions: Vec<Deletion>,
    pub insertions: Vec<(&'static str, String)>,
}

/// How end-of-message ends.
#[derive(Debug)]
pub enum Finish {
    Sign(Outcome),
    /// Refused with `550 5.7.1` and this text.
    Reject(&'static str),
}

/// The limits of one message's state, from the configuration.
#[derive(Debug, Clone, Copy)]
pub struct Caps {
    pub max_message_bytes: usize,
    pub max_header_fields: usize,
}

impl Caps {
    pub fn of(config: &MilterConfig) -> Self {
        Self { max_message_bytes: config.max_message_bytes, max_header_fields: config.max_header_fields }
    }
}

impl Session {
    pub fn new(leading_space: bool, noreply: bool) -> Self {
        Self { leading_space, noreply, ..Self::default() }
    }

    pub fn connect(&mut self, client_ip: Option<IpAddr>, daemon_name: &str, host_name: &str) {
        self.client_ip = client_ip;
        self.originating = daemon_name == crate::ORIGINATING;
        self.host_name = if host_name.is_empty() { "localhost".to_owned() } else { host_name.to_owned() };
        self.message = None;
    }

    pub fn helo(&mut self, helo: &str) {
        self.helo = helo.trim().to_owned();
    }

    pub fn start_message(&mut self, mail_from: &str) {
        self.message = Some(Message {
            mail_from: crate::recipients::strip_brackets(mail_from).to_owned(),
            recipients: Vec::new(),
            surgery: Surgery::default(),
            header_hash: HeaderHasher::default(),
            header_fields: 0,
            from_fields: 0,
            raw: Vec::new(),
            in_body: false,
            truncated: false,
            last_cr: false,
            body_hash: BodyHasher::new(),
        });
    }

    pub fn abort_message(&mut self) {
        self.message = None;
    }

    /// A recipient on our domains that the milter accepted (the signed set names it).
    pub fn add_recipient(&mut self, address: &str) {
        let Some(m) = self.message.as_mut() else { return };
        let address = crate::recipients::strip_brackets(address).to_ascii_lowercase();
        if m.recipients.len() < MAX_RECIPIENTS && !m.recipients.contains(&address) {
            m.recipients.push(address);
        }
    }

    pub fn header(&mut self, name: &[u8], value: &[u8], caps: Caps, authserv_id: &str) {
        let leading_space = self.leading_space;
        let Some(m) = self.message.as_mut() else { return };
        let name_text = String::from_utf8_lossy(name);
        m.surgery.add(&name_text, value, authserv_id);
        m.header_fields += 1;
        if name.trim_ascii().eq_ignore_ascii_case(b"from") {
            m.from_fields += 1;
        }
        let mut field = Vec::with_capacity(name.len() + value.len() + 4);
        field.extend_from_slice(name);
        field.push(b':');
        if !leading_space {
            // Without SMFIP_HDR_LEADSPC Postfix drops the space after the colon.
            field.push(b' ');
        }
        let mut prev_cr = false;
        for &b in value {
            // Postfix folds header values with bare LF; DKIM canonicalisation works on CRLF.
            if b == b'\n' && !prev_cr {
                field.push(b'\r');
            }
            field.push(b);
            prev_cr = b == b'\r';
        }
        m.header_hash.add(&name_text, &field);
        field.extend_from_slice(b"\r\n");
        if m.header_fields > caps.max_header_fields {
            m.truncated = true;
        }
        m.keep(&field, caps.max_message_bytes);
    }

    pub fn body(&mut self, chunk: &[u8], cap: usize) {
        let Some(m) = self.message.as_mut() else { return };
        m.start_body(cap);
        m.body_hash.update(chunk);
        if m.truncated {
            return;
        }
        let mut normalized = Vec::with_capacity(chunk.len() + 16);
        let mut prev_cr = m.last_cr;
        for &b in chunk {
            if b == b'\n' && !prev_cr {
                normalized.push(b'\r');
            }
            normalized.push(b);
            prev_cr = b == b'\r';
        }
        m.last_cr = prev_cr;
        m.keep(&normalized, cap);
    }

    /// Evaluates the message (or carries a valid set over to this queue entry), signs the
    /// verdict and says which headers to change; logs the message's one info line. Clears the
    /// message state: the next MAIL starts afresh. `None` when no message is in progress (a
    /// protocol error on the MTA's side).
    pub async fn finish_message(
        &mut self,
        verifier: &Verifier,
        config: &MilterConfig,
        queue_id: &str,
    ) -> Option<Finish> {
        let mut m = self.message.take()?;
        if m.surgery.overflowed() {
            tracing::info!(
                "{queue_id}: reject: more than {} X-E2A or Authentication-Results fields to remove",
                headers::MAX_DELETIONS
            );
            return Some(Finish::Reject("too many X-E2A header fields"));
        }
        m.start_body(config.max_message_bytes);
        let body_hash = std::mem::take(&mut m.body_hash).finish();
        let now = Timestamp::now();
        if let Some(outcome) = self.carry_over(&m, config, queue_id, &body_hash, now) {
            return Some(Finish::Sign(outcome));
        }
        let input = Input {
            client_ip: self.client_ip,
            helo: &self.helo,
            mail_from: &m.mail_from,
            host_name: &self.host_name,
            message: &m.raw,
            body_complete: !m.truncated,
        };
        let started = std::time::Instant::now();
        let evaluation = verifier.evaluate(&input).await;
        tracing::debug!("{queue_id}: evaluation took {:?}", started.elapsed());
        let auth = evaluation.authentication;
        // The signed Sender is the one From address, counted over every field.
        let sender =
            if m.from_fields == 1 { evaluation.from.clone().unwrap_or_default() } else { String::new() };
        let all_headers = m.header_hash.clone().finish();
        let token_headers = m.header_hash.clone().finish_only(&TOKEN_HEADERS);
        let submission = self.submission(&m, config, queue_id, &sender, &token_headers, &body_hash, now);
        let agent = submission.is_some();
        // The conversation id stays (and is signed) only on proven agent mail.
        let header_hash = if agent {
            all_headers
        } else {
            let mut h = std::mem::take(&mut m.header_hash);
            h.forget(headers::CONVERSATION_ID);
            h.finish()
        };
        let message_id = MessageId::mint().to_string();
        let claims = Claims {
            entity_type: if agent { EntityType::Agent } else { EntityType::Human },
            delegation: submission.map(|s| s.delegation(&sender)).unwrap_or_default(),
            sender,
            timestamp: now,
            recipients: m.recipients.iter().map(|r| recipient_tag(&config.secret, &message_id, r)).collect(),
            message_id: message_id.clone(),
            queue_id: queue_id.to_owned(),
            header_hash,
            body_hash,
            authentication: auth.clone(),
        };
        let verified = claims.verified();
        let dkim: Vec<&str> = auth.dkim.iter().map(|d| d.status.as_str()).collect();
        let from_domain = evaluation.from.as_deref().and_then(|f| f.rsplit_once('@')).map_or("-", |(_, d)| d);
        tracing::info!(
            "{queue_id}: msg={message_id} client={} helo={} mail_from={} from_domain={} spf={} dkim={} dmarc={} \
             verified={verified}{}",
            self.client_ip.map_or_else(|| "unknown".to_owned(), |ip| ip.to_string()),
            printable(&self.helo),
            if m.mail_from.is_empty() { "<>".to_owned() } else { printable(&m.mail_from) },
            printable(from_domain),
            auth.spf.status,
            if dkim.is_empty() { "none".to_owned() } else { dkim.join(",") },
            auth.dmarc.status,
            match (self.originating, agent) {
                (true, true) => " origin=ORIGINATING entity=agent",
                (true, false) => " origin=ORIGINATING entity=human",
                _ => "",
            },
        );
        postagent_core::metrics::MILTER_VERDICTS.inc(match (agent, verified) {
            (true, _) => "agent",
            (false, true) => "verified",
            (false, false) => "unverified",
        });
        Some(Finish::Sign(self.outcome(&m, config, &claims, evaluation.spf_identity)))
    }

    /// The submission our worker proved with its token, on mail from the originating
    /// listener; anything else (no token, a bad one, another listener) is `None`, logged.
    #[allow(clippy::too_many_arguments)]
    fn submission(
        &self,
        m: &Message,
        config: &MilterConfig,
        queue_id: &str,
        sender: &str,
        header_hash: &str,
        body_hash: &str,
        now: Timestamp,
    ) -> Option<Submission> {
        if !self.originating {
            if !m.surgery.tokens.is_empty() {
                tracing::info!("{queue_id}: submission token outside the originating listener ignored");
            }
            return None;
        }
        let checked = match (m.surgery.tokens.as_slice(), m.surgery.message_ids.as_slice()) {
            ([token], [id]) => submission::check(
                &config.secret,
                token,
                Some(id.as_str()),
                sender,
                header_hash,
                body_hash,
                now,
            )
            .map_err(|e| e.to_string()),
            ([], _) => Err("no submission token".to_owned()),
            (_, ids) if ids.len() > 1 => Err("more than one X-E2A-Message-Id".to_owned()),
            ([_], _) => Err("no X-E2A-Message-Id".to_owned()),
            _ => Err("more than one submission token".to_owned()),
        };
        match checked {
            Ok(s) => Some(s),
            Err(reason) => {
                tracing::warn!(
                    "{queue_id}: origin=ORIGINATING from={} without a valid submission token ({reason}): \
                     signed as human mail",
                    printable(sender)
                );
                None
            }
        }
    }

    /// A message that arrives carrying a valid set of ours for exactly this content and for
    /// every recipient on our domains (a content filter re-injecting it, a second Postfix
    /// instance): the verdict is carried over to this queue entry instead of being evaluated
    /// again from a client that is only the filter. Only the queue id changes, so a copy that
    /// reaches an agent twice is stored once.
    fn carry_over(
        &self,
        m: &Message,
        config: &MilterConfig,
        queue_id: &str,
        body_hash: &str,
        now: Timestamp,
    ) -> Option<Outcome> {
        if m.surgery.set.is_empty() {
            return None;
        }
        let header_hash = m.header_hash.clone().finish();
        let checked = verify_set(
            &config.secret,
            &m.surgery.set,
            &header_hash,
            body_hash,
            now,
            Some(MAX_SIGNATURE_AGE_SECS),
        );
        let claims = match checked {
            Ok(c) => c,
            Err(e) => {
                tracing::info!("{queue_id}: a signed set arrived and is removed: {e}");
                return None;
            }
        };
        if let Some(r) = m.recipients.iter().find(|r| !claims.binds_recipient(&config.secret, r)) {
            tracing::info!(
                "{queue_id}: a signed set for msg={} arrived for a recipient it does not name (<{}>) and is removed",
                claims.message_id,
                printable(r)
            );
            return None;
        }
        tracing::info!(
            "{queue_id}: msg={} carried over from queue id {} verified={} entity={}",
            claims.message_id,
            printable(&claims.queue_id),
            claims.verified(),
            claims.entity_type.as_str()
        );
        postagent_core::metrics::MILTER_VERDICTS.inc("carried");
        let carried = Claims { queue_id: queue_id.to_owned(), ..claims };
        Some(self.outcome(m, config, &carried, SpfIdentity::MailFrom))
    }

    fn outcome(&self, m: &Message, config: &MilterConfig, claims: &Claims, identity: SpfIdentity) -> Outcome {
        let mut insertions = sign(&config.secret, claims);
        insertions.push((
            AUTHENTICATION_RESULTS,
            headers::authentication_results(&config.authserv_id, &claims.authentication, identity),
        ));
        if self.leading_space {
            // With SMFIP_HDR_LEADSPC Postfix writes `name:value` exactly, in both directions.
            for (_, value) in &mut insertions {
                value.insert(0, ' ');
            }
        }
        let deletions = m.surgery.deletions(claims.entity_type == EntityType::Agent);
        Outcome { deletions, insertions }
    }
}

impl Message {
    /// The blank line between headers and body, once.
    fn start_body(&mut self, cap: usize) {
        if !self.in_body {
            self.in_body = true;
            self.keep(b"\r\n", cap);
        }
    }

    fn keep(&mut self, bytes: &[u8], cap: usize) {
        if self.truncated || self.raw.len() + bytes.len() > cap {
            self.truncated = true;
            return;
        }
        self.raw.extend_from_slice(bytes);
    }
}

/// Client-supplied text for a log line: one token, no control characters or spaces.
fn printable(s: &str) -> String {
    if s.is_empty() {
        return "-".to_owned();
    }
    s.chars().take(200).map(|c| if c.is_control() || c.is_whitespace() { '_' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAPS: Caps = Caps { max_message_bytes: 1000, max_header_fields: 100 };

    #[test]
    fn rebuilds_the_message_with_crlf_and_caps_it() {
        let mut s = Session::new(true, false);
        s.connect(None, "mx", "mx.test");
        s.start_message("<a@example.org>");
        s.add_recipient("<Bot@Agents.Test>");
        s.add_recipient("bot@agents.test");
        s.header(b"Subject", b" folded\n\tline", CAPS, "mx.test");
        s.header(b"Authentication-Results", b" mx.test; spf=pass", CAPS, "mx.test");
        s.body(b"one\r", 1000);
        s.body(b"\ntwo\nthree\r\n", 1000);
        let m = s.message.as_ref().expect("message");
        assert_eq!(
            String::from_utf8_lossy(&m.raw),
            "Subject: folded\r\n\tline\r\nAuthentication-Results: mx.test; spf=pass\r\n\r\none\r\ntwo\r\nthree\r\n"
        );
        assert_eq!(m.recipients, vec!["bot@agents.test".to_owned()]);
        assert_eq!(m.surgery.deletions(false).len(), 1, "our authserv-id's results go");
        assert_eq!(m.mail_from, "a@example.org");

        let mut s = Session::new(false, false);
        s.start_message("<>");
        s.header(b"Subject", b"x", Caps { max_message_bytes: 30, max_header_fields: 100 }, "mx.test");
        s.body(b"0123456789012345678901234567890123456789", 30);
        let m = s.message.as_ref().expect("message");
        assert!(m.truncated);
        assert_eq!(m.raw, b"Subject: x\r\n\r\n");
        assert_eq!(m.mail_from, "");
        s.abort_message();
        assert!(s.message.is_none());
    }

    #[test]
    fn too_many_header_fields_stop_the_dkim_copy() {
        let mut s = Session::new(true, false);
        s.start_message("<a@example.org>");
        for _ in 0..101 {
            s.header(b"X-Filler", b" x", CAPS, "mx.test");
        }
        let m = s.message.as_ref().expect("message");
        assert!(m.truncated, "past max_header_fields DKIM is not attempted");
        assert!(m.raw.len() < 101 * 12);
    }
}
