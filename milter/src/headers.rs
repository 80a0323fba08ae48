//! Header surgery: which inbound headers go, and the `Authentication-Results` that comes.
//!
//! Deletion is by (name, per-name index), the only addressing the milter protocol has
//! (`smfi_chgheader`). Postfix matches names case-insensitively and counts every field of
//! that name the milter was shown, so indices are computed over the headers exactly as
//! received. Deleting the first of two equal names would renumber the second, so deletions
//! run from the last header to the first (the bug behind OpenDKIM CVE-2022-48521), and all of
//! them run before anything is inserted.
//!
//! [`Surgery`] is fed header by header and keeps only the fields it may act on, so a message
//! with a million header fields costs a counter, not a million strings; a message with more
//! than [`MAX_DELETIONS`] fields to delete is refused outright.

use postagent_core::auth::Authentication;
use postagent_core::auth::headers::PREFIX;
use postagent_core::auth::submission;

/// Names compared case-insensitively, as RFC 5322 and Postfix do.
pub const CONVERSATION_ID: &str = "X-E2A-Conversation-Id";
pub const AUTHENTICATION_RESULTS: &str = "Authentication-Results";
/// The outbound message's postagent id, written by the composer; the submission token names it.
pub const MESSAGE_ID: &str = "X-E2A-Message-Id";

/// More forged fields than any honest message carries (a set has 13): past this the message
/// is refused rather than answered with an unbounded list of deletions.
pub const MAX_DELETIONS: usize = 1000;

/// Copies of the set's fields kept for a possible carry-over; more means a forged set anyway.
const MAX_SET_FIELDS: usize = 32;

/// One `smfi_chgheader(name, index, NULL)`: delete the `index`-th (1-based) field named
/// `name`, counted case-insensitively over the headers as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deletion {
    pub name: String,
    pub index: i32,
}

/// Why a field goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Doom {
    /// Always: our namespace, our authserv-id, the submission token.
    Always,
    /// Unless the message is proven agent mail.
    Conversation,
}

/// The header fields of one message that the milter deletes or reads, collected as Postfix
/// shows them.
#[derive(Debug, Default)]
pub struct Surgery {
    /// Fields seen so far per lowercase name, for the names we may delete only.
    counts: Vec<(String, i32)>,
    doomed: Vec<(Deletion, Doom)>,
    /// `X-E2A-Auth-*` fields as (name, unfolded value), for a carry-over check.
    pub set: Vec<(String, String)>,
    /// `X-E2A-Submission` values (one is expected).
    pub tokens: Vec<String>,
    /// `X-E2A-Message-Id` values.
    pub message_ids: Vec<String>,
    overflow: bool,
}

impl Surgery {
    /// Looks at one field (`value` as received, folding included).
    pub fn add(&mut self, name: &str, value: &[u8], authserv_id: &str) {
        let name = name.trim();
        let ours = starts_with_ignore_case(name, PREFIX);
        let token = name.eq_ignore_ascii_case(submission::HEADER);
        let conversation = name.eq_ignore_ascii_case(CONVERSATION_ID);
        let results = name.eq_ignore_ascii_case(AUTHENTICATION_RESULTS);
        if name.eq_ignore_ascii_case(MESSAGE_ID) && self.message_ids.len() < 2 {
            self.message_ids.push(unfold(value));
        }
        if !(ours || token || conversation || results) {
            return;
        }
        let lower = name.to_ascii_lowercase();
        let index = match self.counts.iter_mut().find(|(n, _)| *n == lower) {
            Some((_, count)) => {
                *count += 1;
                *count
            }
            None => {
                if self.counts.len() >= MAX_DELETIONS {
                    self.overflow = true;
                    return;
                }
                self.counts.push((lower, 1));
                1
            }
        };
        if ours && self.set.len() < MAX_SET_FIELDS {
            self.set.push((name.to_owned(), unfold(value)));
        }
        if token && self.tokens.len() < 2 {
            self.tokens.push(unfold(value));
        }
        let doom = if ours || token {
            Some(Doom::Always)
        } else if conversation {
            Some(Doom::Conversation)
        } else {
            // A verdict in our name is a forgery; other hops' results are kept.
            authserv_id_of(value).filter(|id| id.eq_ignore_ascii_case(authserv_id)).map(|_| Doom::Always)
        };
        if let Some(doom) = doom {
            if self.doomed.len() >= MAX_DELETIONS {
                self.overflow = true;
                return;
            }
            self.doomed.push((Deletion { name: name.to_owned(), index }, doom));
        }
    }

    /// More fields to delete than [`MAX_DELETIONS`]: the message is refused.
    pub fn overflowed(&self) -> bool {
        self.overflow
    }

    /// The deletions in the order they must be sent (last field first). The conversation id
    /// stays only on proven agent mail (threading trusts it there).
    pub fn deletions(&self, keep_conversation: bool) -> Vec<Deletion> {
        self.doomed
            .iter()
            .rev()
            .filter(|(_, doom)| !(keep_conversation && *doom == Doom::Conversation))
            .map(|(d, _)| d.clone())
            .collect()
    }
}

/// A value as a header reader sees it: Postfix's long-line breaks undone, unfolded, trimmed.
fn unfold(value: &[u8]) -> String {
    let value = postagent_core::auth::canon::undo_postfix_breaks(value);
    let kept: Vec<u8> = value.iter().copied().filter(|&b| b != b'\r' && b != b'\n').collect();
    String::from_utf8_lossy(&kept).trim().to_owned()
}

/// The deletions for a whole header block at once (tests and tools).
pub fn deletions<N: AsRef<str>, V: AsRef<[u8]>>(
    headers: &[(N, V)],
    authserv_id: &str,
    keep_conversation: bool,
) -> Vec<Deletion> {
    let mut s = Surgery::default();
    for (name, value) in headers {
        s.add(name.as_ref(), value.as_ref(), authserv_id);
    }
    s.deletions(keep_conversation)
}

fn starts_with_ignore_case(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

/// The authserv-id of an `Authentication-Results` value (RFC 8601 §2.2: the first token,
/// possibly followed by a version, before the first `;`), ignoring comments and folding.
pub fn authserv_id_of(value: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(value);
    let head = text.split(';').next().unwrap_or("");
    let mut plain = String::with_capacity(head.len());
    let mut depth = 0usize;
    for c in head.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth = depth.saturating_sub(1),
            _ if depth == 0 => plain.push(c),
            _ => {}
        }
    }
    let id = plain.split_whitespace().next()?;
    Some(id.trim_matches('"').to_owned())
}

/// Which SPF identity was checked: MAIL FROM's domain, or HELO's for the null sender.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpfIdentity {
    MailFrom,
    Helo,
}

/// The RFC 8601 `Authentication-Results` value for `auth`, on one line:
/// `mx.example; spf=pass smtp.mailfrom=example.org; dkim=pass header.d=example.org
/// header.s=sel1; dmarc=pass (p=reject) header.from=example.org`.
pub fn authentication_results(authserv_id: &str, auth: &Authentication, identity: SpfIdentity) -> String {
    let mut parts = vec![value(authserv_id)];
    let mut spf = format!("spf={}", auth.spf.status);
    if let Some(d) = &auth.spf.domain {
        let ptype = match identity {
            SpfIdentity::MailFrom => "smtp.mailfrom",
            SpfIdentity::Helo => "smtp.helo",
        };
        spf.push_str(&format!(" {ptype}={}", value(d)));
    }
    parts.push(spf);
    if auth.dkim.is_empty() {
        parts.push("dkim=none".to_owned());
    }
    for d in &auth.dkim {
        let mut item = format!("dkim={}", d.status);
        if let Some(detail) = &d.detail {
            item.push_str(&format!(" ({})", comment(detail)));
        }
        if let Some(domain) = &d.domain {
            item.push_str(&format!(" header.d={}", value(domain)));
        }
        if let Some(selector) = &d.selector {
            item.push_str(&format!(" header.s={}", value(selector)));
        }
        parts.push(item);
    }
    let mut dmarc = format!("dmarc={}", auth.dmarc.status);
    if let Some(p) = &auth.dmarc.policy {
        dmarc.push_str(&format!(" (p={})", comment(p)));
    }
    if let Some(d) = &auth.dmarc.domain {
        dmarc.push_str(&format!(" header.from={}", value(d)));
    }
    parts.push(dmarc);
    parts.join("; ")
}

/// An RFC 8601 `value` (RFC 2045 token or quoted-string): a hostile `d=` like
/// `x; dmarc=pass` must stay one quoted value, never become a second result.
fn value(s: &str) -> String {
    let token = !s.is_empty()
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b'@' | b'+'));
    if token {
        return s.to_owned();
    }
    let inner: String = s
        .chars()
        .filter(|c| !c.is_control())
        .map(|c| if c == '"' || c == '\\' { format!("\\{c}") } else { c.to_string() })
        .collect();
    format!("\"{inner}\"")
}

/// Text inside `( … )`: no parentheses, backslashes or control characters.
fn comment(s: &str) -> String {
    s.chars().filter(|c| !c.is_control() && !matches!(c, '(' | ')' | '\\')).take(200).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use postagent_core::auth::DkimResult;
    use postagent_core::vocab::AuthStatus;

    #[test]
    fn deletes_ours_last_to_first_case_insensitively() {
        let h = [
            ("Received", "from x"),
            ("X-E2A-AUTH-Verified", " true"),
            ("Authentication-Results", " mx.test; spf=pass"),
            ("x-e2a-auth-verified", " true"),
            ("Authentication-Results", " other.example; dkim=pass"),
            ("X-E2A-Conversation-Id", " conv_1"),
            ("AUTHENTICATION-RESULTS", " (forged)\r\n\tMX.TEST 1 ; dmarc=pass"),
            ("X-E2A-Auth-Signature", " 00"),
        ];
        let names = |d: Vec<Deletion>| d.into_iter().map(|d| (d.name, d.index)).collect::<Vec<_>>();
        assert_eq!(
            names(deletions(&h, "mx.test", false)),
            vec![
                ("X-E2A-Auth-Signature".to_owned(), 1),
                ("AUTHENTICATION-RESULTS".to_owned(), 3),
                ("X-E2A-Conversation-Id".to_owned(), 1),
                ("x-e2a-auth-verified".to_owned(), 2),
                ("Authentication-Results".to_owned(), 1),
                ("X-E2A-AUTH-Verified".to_owned(), 1),
            ]
        );
        let originating = names(deletions(&h, "mx.test", true));
        assert!(!originating.iter().any(|(n, _)| n == "X-E2A-Conversation-Id"));
        assert_eq!(originating.len(), 5);
    }

    #[test]
    fn tokens_always_go_and_hostile_counts_are_bounded() {
        let mut s = Surgery::default();
        s.add("X-E2A-Submission", b" v=1; m=x", "mx.test");
        s.add("X-E2A-Message-Id", b" msg_1", "mx.test");
        s.add("X-E2A-Auth-Version", b" 2\r\n", "mx.test");
        assert_eq!(s.tokens, vec!["v=1; m=x".to_owned()]);
        assert_eq!(s.message_ids, vec!["msg_1".to_owned()]);
        assert_eq!(s.set, vec![("X-E2A-Auth-Version".to_owned(), "2".to_owned())]);
        let kept = s.deletions(true);
        assert_eq!(kept.len(), 2, "the token and the set go even from agent mail: {kept:?}");
        assert!(!s.overflowed());
        let mut hostile = Surgery::default();
        for i in 0..5000 {
            hostile.add(&format!("X-E2A-Auth-F{i}"), b" x", "mx.test");
            hostile.add("Received", b" from x", "mx.test");
        }
        assert!(hostile.overflowed());
        assert!(hostile.counts.len() <= MAX_DELETIONS && hostile.doomed.len() <= MAX_DELETIONS);
        assert!(hostile.set.len() <= MAX_SET_FIELDS);
    }

    #[test]
    fn reads_authserv_ids() {
        assert_eq!(authserv_id_of(b" mx.test; spf=pass").as_deref(), Some("mx.test"));
        assert_eq!(authserv_id_of(b"mx.test 1; none").as_deref(), Some("mx.test"));
        assert_eq!(authserv_id_of(b" (c) mx.test").as_deref(), Some("mx.test"));
        assert_eq!(authserv_id_of(b" ; x"), None);
    }

    #[test]
    fn formats_authentication_results_safely() {
        let mut auth = Authentication::aligned_pass("example.org", "sel1");
        auth.dkim.push(DkimResult {
            status: AuthStatus::Fail,
            domain: Some("evil; dmarc=pass".into()),
            selector: None,
            aligned: None,
            detail: Some("body hash (mismatch)".into()),
        });
        assert_eq!(
            authentication_results("mx.test", &auth, SpfIdentity::MailFrom),
            "mx.test; spf=pass smtp.mailfrom=example.org; dkim=pass header.d=example.org header.s=sel1; \
             dkim=fail (body hash mismatch) header.d=\"evil; dmarc=pass\"; dmarc=pass (p=reject) header.from=example.org"
        );
    }
}
