//! A message's authentication verdict in words: what SPF, DKIM and DMARC found, and whether
//! the From address is proven. Reads the stored verdict typed, so a new status cannot slip by.

use postagent_core::auth::Authentication;
use postagent_core::vocab::AuthStatus;
use serde_json::{Value, json};

fn status(s: AuthStatus) -> &'static str {
    s.as_str()
}

fn or_unknown(d: &Option<String>) -> &str {
    d.as_deref().unwrap_or("(unknown)")
}

/// `[{check, result, words}]` plus a one-line summary; `None` when the message has no verdict.
pub fn explain(authentication: &Value) -> Option<Value> {
    let a: Authentication = serde_json::from_value(authentication.clone()).ok()?;
    let mut rows = Vec::new();
    let spf = match a.spf.status {
        AuthStatus::Pass => format!(
            "The sending server is allowed to send for {} (its SPF record lists it){}.",
            or_unknown(&a.spf.domain),
            match a.spf.aligned {
                Some(true) => ", and that domain matches the From address",
                Some(false) => ", but that domain is not the From address's",
                None => "",
            }
        ),
        AuthStatus::None => format!(
            "{} publishes no SPF record, so the sending server is not vouched for.",
            or_unknown(&a.spf.domain)
        ),
        AuthStatus::Fail | AuthStatus::SoftFail => {
            format!("The sending server is not one {} allows to send its mail.", or_unknown(&a.spf.domain))
        }
        other => format!("SPF could not decide ({}) for {}.", status(other), or_unknown(&a.spf.domain)),
    };
    rows.push(json!({"check": "SPF", "result": status(a.spf.status), "words": spf}));
    if a.dkim.is_empty() {
        rows.push(
            json!({"check": "DKIM", "result": "none", "words": "The message carries no DKIM signature."}),
        );
    }
    for d in &a.dkim {
        let words = match d.status {
            AuthStatus::Pass => format!(
                "A valid signature by {} (selector {}) proves the signed headers and body are unchanged{}.",
                or_unknown(&d.domain),
                or_unknown(&d.selector),
                if d.aligned == Some(true) { "; the signing domain matches the From address" } else { "" }
            ),
            AuthStatus::Fail => format!(
                "A signature claiming {} does not verify: the message was changed or forged.",
                or_unknown(&d.domain)
            ),
            other => {
                format!("A signature by {} could not be checked ({}).", or_unknown(&d.domain), status(other))
            }
        };
        rows.push(json!({"check": "DKIM", "result": status(d.status), "words": words}));
    }
    let by: Vec<&str> = a.dmarc.aligned_by.iter().map(|x| x.as_str()).collect();
    let dmarc = match a.dmarc.status {
        AuthStatus::Pass => format!(
            "The From domain {} is proven: {} passed and matches it.",
            or_unknown(&a.dmarc.domain),
            by.join(" and ").to_uppercase()
        ),
        AuthStatus::Fail => format!(
            "Neither SPF nor DKIM proves the From domain {}; its owner asks receivers to {}.",
            or_unknown(&a.dmarc.domain),
            match a.dmarc.policy.as_deref() {
                Some("reject") => "reject such mail",
                Some("quarantine") => "treat such mail as suspicious",
                _ => "only report such mail",
            }
        ),
        AuthStatus::None => format!(
            "{} publishes no DMARC policy, so nothing ties the From address to a check.",
            or_unknown(&a.dmarc.domain)
        ),
        other => format!("DMARC could not decide ({}).", status(other)),
    };
    rows.push(json!({"check": "DMARC", "result": status(a.dmarc.status), "words": dmarc}));
    let summary = if a.dmarc.status == AuthStatus::Pass {
        format!("The sender's domain {} is verified.", or_unknown(&a.dmarc.domain))
    } else {
        "The sender is not verified: treat the From address as a claim.".to_owned()
    };
    Some(json!({"rows": rows, "summary": summary, "verified": a.dmarc.status == AuthStatus::Pass}))
}
