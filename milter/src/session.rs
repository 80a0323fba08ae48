//! One SMTP connection as the milter sees it: connection facts (client, HELO, which Postfix
//! listener) for its whole life, and the current message's state from MAIL FROM to
//! end-of-message or abort. One connection carries any number of messages, so nothing of a
//! message may survive into the next.
//!
//! Size cap: the headers and body are kept (for DKIM) up to `max_message_bytes`. Past the cap
//! the milter stops keeping bytes but goes on hashing the body, so `Body-Hash` still covers
//! all of it; every DKIM signature is then reported `permerror` ("message larger than
//! max_message_bytes"), never `temperror`, because a retry would meet the same limit. SPF
//! and DMARC-through-SPF still work, so a large message can still be verified by an aligned
//! SPF pass. Set the cap at or above Postfix's `message_size_limit` to avoid this.

use crate::MilterConfig;
use crate::headers::{self, AUTHENTICATION_RESULTS, Deletion};
use crate::verdict::{Input, Verifier};
use postagent_core::auth::headers::{BodyHasher, Claims, EntityType, sign};
use postagent_core::ids::MessageId;
use postagent_core::time::Timestamp;
use std::net::IpAddr;

/// Connection-scoped state (`cx.data` in indymilter).
#[derive(Default)]
pub struct Session {
    /// Postfix sends header values exactly, leading space included (`SMFIP_HDR_LEADSPC`).
    leading_space: bool,
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
    /// Every header name in order (for deletion indices), with the value kept only where a
    /// deletion decision needs it (`Authentication-Results`).
    headers: Vec<(String, Vec<u8>)>,
    /// Headers and body with CRLF line ends, up to the cap.
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

impl Session {
    pub fn new(leading_space: bool) -> Self {
        Self { leading_space, ..Self::default() }
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
            headers: Vec::new(),
            raw: Vec::new(),
            in_body: false,
            truncated: false,
            last_cr: false,
            body_hash: BodyHasher::default(),
        });
    }

    pub fn abort_message(&mut self) {
        self.message = None;
    }

    pub fn header(&mut self, name: &[u8], value: &[u8], cap: usize) {
        let leading_space = self.leading_space;
        let Some(m) = self.message.as_mut() else { return };
        let name_text = String::from_utf8_lossy(name).into_owned();
        let kept =
            if name_text.eq_ignore_ascii_case(AUTHENTICATION_RESULTS) { value.to_vec() } else { Vec::new() };
        m.headers.push((name_text, kept));
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
        field.extend_from_slice(b"\r\n");
        m.keep(&field, cap);
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

    /// Evaluates the message, signs the verdict and says which headers to change; logs the
    /// message's one info line. Clears the message state: the next MAIL starts afresh.
    /// `None` when no message is in progress (a protocol error on the MTA's side).
    pub async fn finish_message(
        &mut self,
        verifier: &Verifier,
        config: &MilterConfig,
        queue_id: &str,
    ) -> Option<Outcome> {
        let mut m = self.message.take()?;
        m.start_body(config.max_message_bytes);
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
        let message_id = MessageId::mint();
        let claims = Claims {
            sender: evaluation.from.clone().unwrap_or_default(),
            entity_type: if self.originating { EntityType::Agent } else { EntityType::Human },
            // Agent mail's `agent=…;human=…` is known only to the submitting API; the Outbound
            // issue passes it in a header this milter will read. Until then it is empty.
            delegation: String::new(),
            timestamp: Timestamp::now(),
            message_id: message_id.to_string(),
            body_hash: std::mem::take(&mut m.body_hash).finish(),
            authentication: auth.clone(),
        };
        let verified = claims.verified();
        let mut insertions = sign(&config.secret, &claims);
        insertions.push((
            AUTHENTICATION_RESULTS,
            headers::authentication_results(&config.authserv_id, &auth, evaluation.spf_identity),
        ));
        if self.leading_space {
            // With SMFIP_HDR_LEADSPC Postfix writes `name:value` exactly, in both directions.
            for (_, value) in &mut insertions {
                value.insert(0, ' ');
            }
        }
        let deletions = headers::deletions(&m.headers, &config.authserv_id, self.originating);
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
            if self.originating { " origin=ORIGINATING" } else { "" },
        );
        postagent_core::metrics::MILTER_VERDICTS.inc(match (self.originating, verified) {
            (true, _) => "agent",
            (false, true) => "verified",
            (false, false) => "unverified",
        });
        Some(Outcome { deletions, insertions })
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

    #[test]
    fn rebuilds_the_message_with_crlf_and_caps_it() {
        let mut s = Session::new(true);
        s.connect(None, "mx", "mx.test");
        s.start_message("<a@example.org>");
        s.header(b"Subject", b" folded\n\tline", 1000);
        s.header(b"Authentication-Results", b" mx.test; spf=pass", 1000);
        s.body(b"one\r", 1000);
        s.body(b"\ntwo\nthree\r\n", 1000);
        let m = s.message.as_ref().expect("message");
        assert_eq!(
            String::from_utf8_lossy(&m.raw),
            "Subject: folded\r\n\tline\r\nAuthentication-Results: mx.test; spf=pass\r\n\r\none\r\ntwo\r\nthree\r\n"
        );
        assert_eq!(m.headers[0], ("Subject".to_owned(), Vec::new()));
        assert_eq!(m.headers[1].1, b" mx.test; spf=pass".to_vec());
        assert_eq!(m.mail_from, "a@example.org");

        let mut s = Session::new(false);
        s.start_message("<>");
        s.header(b"Subject", b"x", 30);
        s.body(b"0123456789012345678901234567890123456789", 30);
        let m = s.message.as_ref().expect("message");
        assert!(m.truncated);
        assert_eq!(m.raw, b"Subject: x\r\n\r\n");
        assert_eq!(m.mail_from, "");
        s.abort_message();
        assert!(s.message.is_none());
    }
}
