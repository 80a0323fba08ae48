//! Replies: the backend's per-recipient verdict ([`Reply`]) and how it becomes a reply line.
//!
//! The backend speaks in outcomes (ok, try later, never); the session owns the wire format.
//! That keeps a buggy or careless backend from breaking the protocol: a `Temp` with a 5xx
//! code, an enhanced code of the wrong class, or a text containing CR/LF (which would inject
//! a reply line and desynchronise Postfix's per-recipient accounting, RFC 2033 §4.2) is
//! repaired here instead of being sent as is.

/// The backend's answer for one recipient, at RCPT time or after DATA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Accepted: `250 2.1.5` at RCPT, `250 2.0.0` after DATA (RFC 3463 §3.2 / §3.1).
    Ok,
    /// Transient failure (4xx): Postfix keeps the message queued and retries this recipient.
    Temp { code: u16, enhanced: String, text: String },
    /// Permanent failure (5xx): Postfix bounces this recipient.
    Perm { code: u16, enhanced: String, text: String },
}

impl Reply {
    /// A transient failure; `code` should be 4xx and `enhanced` `4.x.y` (repaired if not).
    pub fn temp(code: u16, enhanced: &str, text: &str) -> Self {
        Reply::Temp { code, enhanced: enhanced.to_owned(), text: text.to_owned() }
    }

    /// A permanent failure; `code` should be 5xx and `enhanced` `5.x.y` (repaired if not).
    pub fn perm(code: u16, enhanced: &str, text: &str) -> Self {
        Reply::Perm { code, enhanced: enhanced.to_owned(), text: text.to_owned() }
    }

    /// `550 5.1.1`: no such agent (RFC 3463 §3.2, "bad destination mailbox address").
    pub fn unknown_recipient() -> Self {
        Reply::perm(550, "5.1.1", "no such agent")
    }

    /// `451 4.3.0`: the store is unreachable or failed; Postfix keeps the mail and retries.
    pub fn store_unavailable() -> Self {
        Reply::temp(451, "4.3.0", "temporary storage failure, try again later")
    }

    /// `552 5.3.4`: the message exceeds the configured size (RFC 3463 §3.4, RFC 1870 §6).
    pub fn message_too_big() -> Self {
        Reply::perm(552, "5.3.4", "message size exceeds fixed limit")
    }

    /// True for [`Reply::Ok`].
    pub fn is_ok(&self) -> bool {
        matches!(self, Reply::Ok)
    }

    /// The basic reply code as it goes on the wire (250 for `Ok`), after repair.
    pub fn code(&self) -> u16 {
        match self {
            Reply::Ok => 250,
            Reply::Temp { code, .. } => repaired_code(*code, 4, 451),
            Reply::Perm { code, .. } => repaired_code(*code, 5, 550),
        }
    }

    /// The wire line (with CRLF) for this reply; `ok_enhanced`/`ok_text` are what `Ok`
    /// means in the calling context (RCPT or end of DATA).
    pub(crate) fn line(&self, ok_enhanced: &str, ok_text: &str) -> String {
        match self {
            Reply::Ok => format_line(250, ok_enhanced, ok_text),
            Reply::Temp { enhanced, text, .. } => format_line(
                self.code(),
                &repaired_enhanced(enhanced, '4'),
                &clean_text(text, "try again later"),
            ),
            Reply::Perm { enhanced, text, .. } => {
                format_line(self.code(), &repaired_enhanced(enhanced, '5'), &clean_text(text, "rejected"))
            }
        }
    }
}

/// Keeps `code` when it is in the class (`4` → 400..=499), else the class's generic code.
fn repaired_code(code: u16, class: u16, fallback: u16) -> u16 {
    if code / 100 == class { code } else { fallback }
}

/// An RFC 3463 §2 status code `class.subject.detail` (subject and detail 1–3 digits) whose
/// class matches the basic code's, else the class's generic `c.0.0`.
fn repaired_enhanced(enhanced: &str, class: char) -> String {
    let digits = |p: &str| (1..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit());
    let valid = match enhanced.split('.').collect::<Vec<_>>()[..] {
        [c, subject, detail] => c.len() == 1 && c.starts_with(class) && digits(subject) && digits(detail),
        _ => false,
    };
    if valid { enhanced.to_owned() } else { format!("{class}.0.0") }
}

/// Printable ASCII only, at most 200 characters: a reply line must stay within 512 octets
/// (RFC 5321 §4.5.3.1.5), and CR/LF in the text would forge extra reply lines.
fn clean_text(text: &str, fallback: &str) -> String {
    let cleaned: String =
        text.chars().map(|c| if c == ' ' || c.is_ascii_graphic() { c } else { ' ' }).take(200).collect();
    let cleaned = cleaned.trim();
    if cleaned.is_empty() { fallback.to_owned() } else { cleaned.to_owned() }
}

/// One reply line `CODE ENHANCED TEXT\r\n` (RFC 2034 §3: the enhanced code leads the text).
pub(crate) fn format_line(code: u16, enhanced: &str, text: &str) -> String {
    format!("{code} {enhanced} {text}\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ok_uses_the_context() {
        assert_eq!(Reply::Ok.line("2.1.5", "<a@b> ok"), "250 2.1.5 <a@b> ok\r\n");
        assert_eq!(Reply::Ok.code(), 250);
    }

    #[test]
    fn helpers_have_the_documented_codes() {
        assert_eq!(Reply::unknown_recipient().line("", ""), "550 5.1.1 no such agent\r\n");
        assert!(Reply::store_unavailable().line("", "").starts_with("451 4.3.0 "));
        assert!(Reply::message_too_big().line("", "").starts_with("552 5.3.4 "));
    }

    #[test]
    fn repairs_wrong_classes_and_injected_lines() {
        let r = Reply::temp(550, "5.1.1", "bad\r\n250 2.0.0 forged");
        assert_eq!(r.code(), 451);
        assert_eq!(r.line("", ""), "451 4.0.0 bad  250 2.0.0 forged\r\n");
        let r = Reply::perm(451, "5.1.10", "");
        assert_eq!(r.line("", ""), "550 5.1.10 rejected\r\n");
        assert_eq!(Reply::perm(554, "5.1", "x").line("", ""), "554 5.0.0 x\r\n");
        assert_eq!(Reply::perm(554, "5.1.1.1", "x").line("", ""), "554 5.0.0 x\r\n");
        assert_eq!(Reply::perm(554, "5.a.1", "x").line("", ""), "554 5.0.0 x\r\n");
        assert_eq!(Reply::temp(421, "4.3.2", &"x".repeat(600)).line("", "").len(), 4 + 6 + 200 + 2);
    }
}
