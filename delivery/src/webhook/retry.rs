//! What happens after a try: the retry schedule with jitter, `Retry-After`, the longer wait
//! after throttling, and when to give up.

use postagent_core::config::WebhookSettings;
use std::time::Duration;

/// How a try ended, as far as scheduling cares.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The receiver answered with this status (and maybe a `Retry-After`).
    Status { code: u16, retry_after: Option<Duration> },
    /// No answer within the timeout.
    Timeout,
    /// No answer at all: refused by the SSRF guard, DNS, connect or TLS failure.
    Failed,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Delivered,
    /// 410: stop, and disable the webhook.
    Gone,
    GiveUp,
    RetryIn(Duration),
}

/// Decides after try number `attempt` (1-based). `jitter` is in [-1, 1] and spreads the delay
/// by up to ±10% so a receiver that comes back is not hit by every retry at once.
pub fn decide(s: &WebhookSettings, attempt: i64, answer: &Answer, jitter: f64) -> Decision {
    match answer {
        Answer::Status { code, .. } if (200..300).contains(code) => return Decision::Delivered,
        Answer::Status { code: 410, .. } => return Decision::Gone,
        _ => {}
    }
    let Some(base) = usize::try_from(attempt - 1).ok().and_then(|i| s.schedule.get(i)) else {
        return Decision::GiveUp;
    };
    let spread = base.as_secs_f64() * 0.1 * jitter.clamp(-1.0, 1.0);
    let mut delay = Duration::from_secs_f64((base.as_secs_f64() + spread).max(0.0));
    let throttled = matches!(answer, Answer::Timeout | Answer::Status { code: 429, .. });
    if throttled {
        delay = delay.max(s.throttle_delay);
    }
    if let Answer::Status { code: 429 | 503, retry_after: Some(ra) } = answer {
        // The receiver knows best when it can take more, within our bounds.
        delay = delay.max((*ra).min(s.retry_after_max));
    }
    Decision::RetryIn(delay)
}

/// `Retry-After` as seconds or an HTTP date (RFC 9110 §10.2.3), relative to now.
pub fn parse_retry_after(value: &str, now_unix: i64) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let format = time::format_description::well_known::Rfc2822;
    let at = time::OffsetDateTime::parse(v, &format).ok()?.unix_timestamp();
    Some(Duration::from_secs(u64::try_from(at - now_unix).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> WebhookSettings {
        WebhookSettings {
            schedule: vec![Duration::from_secs(60), Duration::from_secs(300)],
            throttle_delay: Duration::from_secs(120),
            retry_after_max: Duration::from_secs(3600),
            ..WebhookSettings::default()
        }
    }

    fn status(code: u16) -> Answer {
        Answer::Status { code, retry_after: None }
    }

    #[test]
    fn schedule_jitter_and_give_up() {
        let s = settings();
        assert_eq!(decide(&s, 1, &status(204), 0.0), Decision::Delivered);
        assert_eq!(decide(&s, 1, &status(500), 0.0), Decision::RetryIn(Duration::from_secs(60)));
        assert_eq!(decide(&s, 1, &status(500), 1.0), Decision::RetryIn(Duration::from_secs(66)));
        assert_eq!(decide(&s, 1, &status(500), -1.0), Decision::RetryIn(Duration::from_secs(54)));
        assert_eq!(decide(&s, 2, &status(302), 0.0), Decision::RetryIn(Duration::from_secs(300)));
        assert_eq!(decide(&s, 3, &status(500), 0.0), Decision::GiveUp, "three tries for two delays");
        assert_eq!(decide(&s, 1, &status(410), 0.0), Decision::Gone);
    }

    #[test]
    fn throttling_waits_longer_and_retry_after_is_bounded() {
        let s = settings();
        assert_eq!(decide(&s, 1, &status(429), 0.0), Decision::RetryIn(Duration::from_secs(120)));
        assert_eq!(decide(&s, 1, &Answer::Timeout, 0.0), Decision::RetryIn(Duration::from_secs(120)));
        assert_eq!(decide(&s, 1, &Answer::Failed, 0.0), Decision::RetryIn(Duration::from_secs(60)));
        let ra = |secs| Answer::Status { code: 429, retry_after: Some(Duration::from_secs(secs)) };
        assert_eq!(decide(&s, 1, &ra(900), 0.0), Decision::RetryIn(Duration::from_secs(900)));
        assert_eq!(decide(&s, 1, &ra(86400), 0.0), Decision::RetryIn(Duration::from_secs(3600)), "clamped");
        assert_eq!(decide(&s, 1, &ra(1), 0.0), Decision::RetryIn(Duration::from_secs(120)), "never sooner");
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("120", 0), Some(Duration::from_secs(120)));
        let now = 1_445_412_480; // Wed, 21 Oct 2015 07:28:00 GMT
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("soon", now), None);
    }
}
