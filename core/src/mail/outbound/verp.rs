//! The envelope sender of outbound mail: a VERP address that names the message, so a
//! delivery status notification routed back to our LMTP server says which message bounced.
//!
//! `bounce+<msg id>.<day>.<tag>@<agent domain>`: the agent's own domain already routes to
//! postagent (no new DNS or transport entry), `bounce+` cannot be an agent on the shared
//! domain (slugs have no `+`), and, as in BATV, the tag is an HMAC of the message id and the
//! day the address was made (days since 1970) under the deployment secret: nobody can forge
//! a bounce for a message without having seen its address, and an address stops being
//! accepted [`MAX_AGE_DAYS`] after it was made, so one seen once cannot be used to forge
//! bounces for the message's other recipients for ever. The address shows the day modulo
//! 1000 (three digits); the MAC covers the whole day number, which the verifier rebuilds as
//! the latest day with those digits, so an address never comes back to life 1000 days on.

use crate::secret::Secret;
use crate::sign::{ct_eq, hmac_sha256};
use crate::time::Timestamp;

const PREFIX: &str = "bounce+";
const TAG_HEX: usize = 12;
/// How long a bounce address is accepted: longer than any MTA keeps retrying a message
/// (Postfix's `maximal_queue_lifetime` is 5 days; RFC 5321 §4.5.4.1 suggests 4–5) plus the
/// time an asynchronous DSN may take.
pub const MAX_AGE_DAYS: i64 = 30;

fn day_of(now: Timestamp) -> i64 {
    now.as_micros().div_euclid(86_400 * 1_000_000)
}

fn tag(secret: &Secret, message_id: &str, day: i64) -> String {
    let day = day.to_string();
    let mac = hmac_sha256(secret.expose(), &[b"verp-v2\n", message_id.as_bytes(), b"\n", day.as_bytes()]);
    hex::encode(mac)[..TAG_HEX].to_owned()
}

pub fn bounce_address(secret: &Secret, message_id: &str, domain: &str, now: Timestamp) -> String {
    let day = day_of(now);
    format!("{PREFIX}{message_id}.{:03}.{}@{domain}", day.rem_euclid(1000), tag(secret, message_id, day))
}

/// Whether the local part has the bounce form at all (before the tag is checked): such a
/// recipient is never an agent.
pub fn looks_like_bounce(address: &str) -> bool {
    address.get(..PREFIX.len()).is_some_and(|p| p.eq_ignore_ascii_case(PREFIX))
}

/// The message id named by a genuine bounce address made within [`MAX_AGE_DAYS`] of `now`.
pub fn parse_bounce(secret: &Secret, address: &str, now: Timestamp) -> Option<String> {
    let (local, _) = address.rsplit_once('@')?;
    let rest = local.get(PREFIX.len()..).filter(|_| looks_like_bounce(local))?.to_ascii_lowercase();
    let mut fields = rest.rsplitn(3, '.');
    let (given, day, id) = (fields.next()?, fields.next()?, fields.next()?);
    let well_formed = id.len() == 36
        && id.starts_with("msg_")
        && id[4..].bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
        && day.len() == 3
        && day.bytes().all(|b| b.is_ascii_digit());
    if !well_formed {
        return None;
    }
    // The day it was made, rebuilt from its three digits: today's age modulo 1000, where
    // 999 is a day ahead (another replica's clock just past midnight).
    let today = day_of(now);
    let age = (today - day.parse::<i64>().ok()?).rem_euclid(1000);
    let age = if age == 999 { -1 } else { age };
    if age > MAX_AGE_DAYS || !ct_eq(given.as_bytes(), tag(secret, id, today - age).as_bytes()) {
        return None;
    }
    Some(id.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_forgery_and_expiry() {
        let s = Secret::new(vec![7; 32]);
        let id = "msg_0123456789abcdef0123456789abcdef";
        let now = Timestamp::parse_rfc3339("2026-12-07T10:00:00Z").expect("time");
        let a = bounce_address(&s, id, "agents.test", now);
        assert!(a.starts_with("bounce+msg_") && a.ends_with("@agents.test"), "{a}");
        assert!(a.split('@').next().is_some_and(|l| l.len() <= 64), "a local part fits RFC 5321: {a}");
        assert_eq!(parse_bounce(&s, &a, now).as_deref(), Some(id));
        assert_eq!(parse_bounce(&s, &a.to_ascii_uppercase(), now).as_deref(), Some(id), "case-insensitive");
        assert_eq!(parse_bounce(&s, &a, now.plus_secs(29 * 86_400)).as_deref(), Some(id), "within 30 days");
        assert_eq!(parse_bounce(&s, &a, now.plus_secs(31 * 86_400)), None, "expired");
        let forged = a.replacen(".", ".0", 1);
        assert_eq!(parse_bounce(&s, &forged, now), None);
        let (local, domain) = a.split_once('@').expect("@");
        let (head, tag) = local.rsplit_once('.').expect("tag");
        let (base, day) = head.rsplit_once('.').expect("day");
        let moved = format!("{base}.{:03}.{tag}@{domain}", (day.parse::<i64>().expect("day") + 5) % 1000);
        assert_eq!(
            parse_bounce(&s, &moved, now.plus_secs(40 * 86_400)),
            None,
            "a changed day breaks the tag"
        );
        let earlier = format!("{base}.{:03}.{tag}@{domain}", (day.parse::<i64>().expect("day") + 995) % 1000);
        assert_eq!(parse_bounce(&s, &earlier, now), None, "a day within the window breaks the tag too");
        assert_eq!(parse_bounce(&Secret::new(vec![8; 32]), &a, now), None, "another deployment's tag");
        assert_eq!(parse_bounce(&s, &a, now.plus_secs(1000 * 86_400)), None, "1000 days on it stays dead");
        assert_eq!(parse_bounce(&s, &a, now.plus_secs(1010 * 86_400)), None);
        let ahead = bounce_address(&s, id, "agents.test", now.plus_secs(86_400));
        assert_eq!(parse_bounce(&s, &ahead, now).as_deref(), Some(id), "a replica a day ahead");
        let two_ahead = bounce_address(&s, id, "agents.test", now.plus_secs(2 * 86_400));
        assert_eq!(parse_bounce(&s, &two_ahead, now), None);
        assert_eq!(
            parse_bounce(&s, &format!("bounce+{id}.{tag}@agents.test"), now),
            None,
            "untimed tags are over"
        );
        assert_eq!(parse_bounce(&s, "bot@agents.test", now), None);
        assert!(looks_like_bounce("Bounce+x@y.test") && !looks_like_bounce("bot@y.test"));
    }
}
