//! Delivery status notifications (RFC 3464): `multipart/report; report-type=delivery-status`
//! with a `message/delivery-status` part of per-recipient field groups. Postfix's bounce(8)
//! writes them for mail it could not deliver (or delivered late), and so do other MTAs.
//! Complaint reports (ARF, RFC 5965: `report-type=feedback-report`) are read here too.

use crate::vocab::BounceType;
use mail_parser::{MessageParser, MimeHeaders};

/// One recipient's verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecipientStatus {
    /// The `Final-Recipient` address.
    pub recipient: String,
    /// `failed`, `delayed`, `delivered`, `relayed` or `expanded`.
    pub action: String,
    /// The enhanced status code, e.g. `5.1.1`.
    pub status: String,
    /// `Diagnostic-Code` without its type prefix, e.g. `550 5.1.1 <x@y>: no such user`.
    pub diagnostic: Option<String>,
}

impl RecipientStatus {
    /// The contract's `bounce_type` for a failure; `None` when the recipient did not fail
    /// (a delay warning or a success notice).
    pub fn bounce_type(&self) -> Option<BounceType> {
        if self.action != "failed" {
            return None;
        }
        Some(match self.status.chars().next() {
            Some('5') => BounceType::Permanent,
            Some('4') => BounceType::Transient,
            _ => BounceType::Undetermined,
        })
    }
}

/// How much of a report is read: the delivery-status part comes second, after a short
/// notice, so a report whose status part lies further in is not one we act on, and a hostile
/// one (a huge header block, millions of lines) costs no more than this.
pub const MAX_REPORT_BYTES: usize = 256 * 1024;

/// The first [`MAX_REPORT_BYTES`] of `raw`, cut at a line end.
fn head(raw: &[u8]) -> &[u8] {
    if raw.len() <= MAX_REPORT_BYTES {
        return raw;
    }
    let cut = raw[..MAX_REPORT_BYTES].iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    &raw[..cut]
}

/// Whether `raw` is a `multipart/report` of `report_type`.
fn is_report_of(raw: &[u8], report_type: &str) -> bool {
    let raw = head(raw);
    let Some(m) = MessageParser::default().parse_headers(raw) else { return false };
    m.content_type().is_some_and(|ct| {
        ct.ctype().eq_ignore_ascii_case("multipart")
            && ct.subtype().is_some_and(|s| s.eq_ignore_ascii_case("report"))
            && ct.attribute("report-type").is_some_and(|t| t.eq_ignore_ascii_case(report_type))
    })
}

/// Whether `raw` is a delivery status notification at all.
pub fn is_report(raw: &[u8]) -> bool {
    is_report_of(raw, "delivery-status")
}

/// What a complaint report (ARF) says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feedback {
    /// `abuse`, `fraud`, `not-spam`, …, lowercase.
    pub feedback_type: String,
    /// `Original-Rcpt-To` addresses (lowercase), when the reporter gives them.
    pub recipients: Vec<String>,
}

/// The report's lines from the first blank line after the `Content-Type` line naming `part`.
fn part_body<'a>(lines: &[&'a str], part: &str) -> Option<Vec<&'a str>> {
    let ct_at = lines.iter().position(|l| {
        let lower = l.to_ascii_lowercase();
        lower.starts_with("content-type:") && lower.contains(part) && !lower.contains("multipart")
    })?;
    let body_at = lines[ct_at..].iter().position(|l| l.is_empty()).map(|i| ct_at + i + 1)?;
    Some(lines[body_at..].iter().take_while(|l| !l.starts_with("--")).copied().collect())
}

/// The `message/feedback-report` part of an ARF report; `None` when `raw` is not one.
pub fn feedback(raw: &[u8]) -> Option<Feedback> {
    if !is_report_of(raw, "feedback-report") {
        return None;
    }
    let text = String::from_utf8_lossy(head(raw));
    let lines: Vec<&str> = text.lines().map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    let body = part_body(&lines, "feedback-report")?;
    let group: Vec<&str> = body
        .iter()
        .copied()
        .skip_while(|l| l.trim().is_empty())
        .take_while(|l| !l.trim().is_empty())
        .collect();
    let f = fields(&group);
    Some(Feedback {
        feedback_type: f.iter().find(|(k, _)| k == "feedback-type").map(|(_, v)| v.to_ascii_lowercase())?,
        recipients: f
            .iter()
            .filter(|(k, _)| k == "original-rcpt-to")
            .map(|(_, v)| typed_value(v).to_ascii_lowercase())
            .collect(),
    })
}

/// `name: value` fields of a block, continuation lines unfolded, names lowercased.
fn fields(block: &[&str]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for line in block {
        if line.starts_with([' ', '\t']) {
            if let Some(last) = out.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((name, value)) = line.split_once(':') {
            out.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
        }
    }
    out
}

/// `rfc822; addr` → `addr`.
fn typed_value(v: &str) -> String {
    v.split_once(';').map_or(v, |(_, rest)| rest).trim().trim_matches(['<', '>']).to_owned()
}

/// The per-recipient groups of the report; empty when `raw` is not one.
pub fn parse(raw: &[u8]) -> Vec<RecipientStatus> {
    if !is_report(raw) {
        return Vec::new();
    }
    let text = String::from_utf8_lossy(head(raw));
    let lines: Vec<&str> = text.lines().map(|l| l.strip_suffix('\r').unwrap_or(l)).collect();
    // The part's headers end at the first blank line after its Content-Type.
    let Some(body) = part_body(&lines, "delivery-status") else { return Vec::new() };
    body.split(|l| l.trim().is_empty())
        .skip_while(|g| g.is_empty())
        .skip(1) // the per-message group
        .filter(|g| !g.is_empty())
        .filter_map(|group| {
            let f = fields(group);
            let get = |n: &str| f.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
            Some(RecipientStatus {
                recipient: typed_value(&get("final-recipient")?).to_ascii_lowercase(),
                action: get("action")?.to_ascii_lowercase(),
                status: get("status").unwrap_or_default(),
                diagnostic: get("diagnostic-code").map(|d| typed_value(&d)),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARF: &str = "From: fbl@mailbox.example\r\nTo: bounce+msg_1@agents.test\r\nSubject: complaint\r\n\
MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\r\n\r\n\
--F\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n\
--F\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: FBL/1.0\r\n\
Version: 1\r\nOriginal-Rcpt-To: <Ann@Example.org>\r\n\r\n\
--F\r\nContent-Type: message/rfc822\r\n\r\nFrom: bot@agents.test\r\nSubject: hi\r\n\r\nhello\r\n--F--\r\n";

    #[test]
    fn arf_reports_name_their_type_and_recipient() {
        let f = feedback(ARF.as_bytes()).expect("an ARF report");
        assert_eq!(f, Feedback { feedback_type: "abuse".into(), recipients: vec!["ann@example.org".into()] });
        assert!(!is_report(ARF.as_bytes()), "not a DSN");
        assert_eq!(feedback(POSTFIX_BOUNCE.as_bytes()), None);
    }

    const POSTFIX_BOUNCE: &str = "From: MAILER-DAEMON@mx.postagent.test (Mail Delivery System)\r\n\
Subject: Undelivered Mail Returned to Sender\r\n\
To: bounce+msg_0123@agents.test\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/report; report-type=delivery-status;\r\n\tboundary=\"B1\"\r\n\
\r\n\
--B1\r\nContent-Description: Notification\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n\
I'm sorry to have to inform you that your message could not be delivered.\r\n\r\n\
--B1\r\nContent-Description: Delivery report\r\nContent-Type: message/delivery-status\r\n\r\n\
Reporting-MTA: dns; mx.postagent.test\r\nX-Postfix-Queue-ID: 4dQ1\r\n\
Arrival-Date: Thu,  3 Dec 2026 06:00:00 +0000 (UTC)\r\n\r\n\
Final-Recipient: rfc822; nobody@human.test\r\nOriginal-Recipient: rfc822;nobody@human.test\r\n\
Action: failed\r\nStatus: 5.1.1\r\nRemote-MTA: dns; 127.0.0.1\r\n\
Diagnostic-Code: smtp; 550 5.1.1 <nobody@human.test>: Recipient address\r\n    rejected\r\n\r\n\
Final-Recipient: rfc822; slow@human.test\r\nAction: delayed\r\nStatus: 4.4.1\r\n\r\n\
--B1\r\nContent-Description: Undelivered Message\r\nContent-Type: message/rfc822\r\n\r\n\
Subject: hi\r\n\r\nbody\r\n--B1--\r\n";

    #[test]
    fn reads_postfix_reports() {
        let r = parse(POSTFIX_BOUNCE.as_bytes());
        assert_eq!(r.len(), 2, "{r:?}");
        assert_eq!(r[0].recipient, "nobody@human.test");
        assert_eq!(r[0].status, "5.1.1");
        assert_eq!(r[0].bounce_type(), Some(BounceType::Permanent));
        assert_eq!(
            r[0].diagnostic.as_deref(),
            Some("550 5.1.1 <nobody@human.test>: Recipient address rejected")
        );
        assert_eq!(r[1].action, "delayed");
        assert_eq!(r[1].bounce_type(), None);
    }

    #[test]
    fn a_hostile_report_costs_its_first_quarter_megabyte() {
        let mut huge = POSTFIX_BOUNCE.replace("--B1--\r\n", "");
        huge.push_str(&"Final-Recipient: rfc822; x@y.test\r\nAction: failed\r\n\r\n".repeat(200_000));
        let r = parse(huge.as_bytes());
        assert!(r.len() < 10_000, "{}", r.len());
        let mut headers = "X-A: b\r\n".repeat(200_000);
        headers.push_str(POSTFIX_BOUNCE);
        assert!(parse(headers.as_bytes()).is_empty(), "a report's headers are at the top");
    }

    #[test]
    fn ordinary_mail_is_no_report() {
        assert!(parse(b"From: a@b.test\r\nSubject: Action: failed\r\n\r\nStatus: 5.1.1\r\n").is_empty());
    }
}
