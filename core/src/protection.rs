//! Per-agent protection (contract §7.2): an inbound and an outbound gate, each a policy
//! (`open`, `allowlist`, `domain`) and the action for what the policy does not match
//! (`flag`, `review`, `block`), plus how holds behave (`ttl_seconds`, `on_expiry`).
//!
//! Human-in-the-loop for every send is `outbound.gate = {policy: allowlist, allowlist: [],
//! action: review}`: nothing matches an empty list, so everything is held.

use serde::{Deserialize, Serialize};

pub const DEFAULT_TTL_SECS: i64 = 604_800;
pub const MAX_TTL_SECS: i64 = 604_800;
pub const MAX_ALLOWLIST: usize = 1000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Gate {
    pub policy: String,
    pub allowlist: Vec<String>,
    pub action: String,
}

impl Default for Gate {
    fn default() -> Self {
        Self { policy: "open".into(), allowlist: Vec::new(), action: "flag".into() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Scan {
    pub sensitivity: String,
}

impl Default for Scan {
    fn default() -> Self {
        Self { sensitivity: "off".into() }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(default)]
pub struct DirectionConfig {
    pub gate: Gate,
    pub scan: Scan,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Holds {
    pub ttl_seconds: i64,
    pub on_expiry: String,
    pub suppress_notifications: bool,
}

impl Default for Holds {
    fn default() -> Self {
        Self { ttl_seconds: DEFAULT_TTL_SECS, on_expiry: "reject".into(), suppress_notifications: false }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(default)]
pub struct Protection {
    pub inbound: DirectionConfig,
    pub outbound: DirectionConfig,
    pub holds: Holds,
}

/// `reason_source` of gate events (e2a's review-reason vocabulary): the inbound gate judges
/// the sender, the outbound gate the recipients.
pub const SENDER_GATE: &str = "sender_gate";
pub const RECIPIENT_GATE: &str = "recipient_gate";

/// What a gate decided about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Not matched; `reason` says why, for `hold_reason` / `flag_reason`.
    Flag {
        reason: String,
    },
    Review {
        reason: String,
    },
    Block {
        reason: String,
    },
}

impl Verdict {
    fn for_action(action: &str, reason: String) -> Self {
        match action {
            "review" => Self::Review { reason },
            "block" => Self::Block { reason },
            _ => Self::Flag { reason },
        }
    }

    /// The contract's `hold_reason` object for a held message.
    pub fn hold_reason(&self, direction: &str) -> serde_json::Value {
        let summary = match self {
            Self::Flag { reason } | Self::Review { reason } | Self::Block { reason } => reason.clone(),
            Self::Pass => String::new(),
        };
        serde_json::json!({
            "type": "gate",
            "code": format!("{direction}_gate"),
            "summary": summary,
            "category": "policy",
        })
    }
}

fn domain_of(address: &str) -> &str {
    address.rsplit_once('@').map_or("", |(_, d)| d)
}

fn listed(list: &[String], value: &str) -> bool {
    list.iter().any(|e| e.trim().trim_start_matches('@').eq_ignore_ascii_case(value))
}

impl Protection {
    /// Checks a PUT body's values (the request schema's enums and bounds).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        for (dir, d) in [("inbound", &self.inbound), ("outbound", &self.outbound)] {
            if !matches!(d.gate.policy.as_str(), "open" | "allowlist" | "domain") {
                out.push((format!("body.{dir}.gate.policy"), "must be open, allowlist or domain".into()));
            }
            if !matches!(d.gate.action.as_str(), "flag" | "review" | "block") {
                out.push((format!("body.{dir}.gate.action"), "must be flag, review or block".into()));
            }
            if d.gate.allowlist.len() > MAX_ALLOWLIST {
                out.push((format!("body.{dir}.gate.allowlist"), "at most 1000 entries".into()));
            }
            for (i, e) in d.gate.allowlist.iter().enumerate() {
                if e.trim().is_empty() || e.len() > 320 || e.chars().any(char::is_control) {
                    out.push((
                        format!("body.{dir}.gate.allowlist[{i}]"),
                        "must be an address or a domain".into(),
                    ));
                }
            }
            if !matches!(d.scan.sensitivity.as_str(), "off" | "low" | "medium" | "high") {
                out.push((format!("body.{dir}.scan.sensitivity"), "must be off, low, medium or high".into()));
            }
        }
        if !(1..=MAX_TTL_SECS).contains(&self.holds.ttl_seconds) {
            out.push(("body.holds.ttl_seconds".into(), "must be between 1 and 604800".into()));
        }
        if !matches!(self.holds.on_expiry.as_str(), "approve" | "reject") {
            out.push(("body.holds.on_expiry".into(), "must be approve or reject".into()));
        }
        out
    }

    /// Outbound: every recipient must match (one unlisted recipient is enough to hold or
    /// block the whole message).
    pub fn outbound_verdict(&self, agent_domain: &str, recipients: &[String]) -> Verdict {
        let gate = &self.outbound.gate;
        let unmatched: Vec<&String> = match gate.policy.as_str() {
            "allowlist" => recipients.iter().filter(|r| !listed(&gate.allowlist, r)).collect(),
            "domain" => {
                recipients.iter().filter(|r| !domain_of(r).eq_ignore_ascii_case(agent_domain)).collect()
            }
            _ => Vec::new(),
        };
        if unmatched.is_empty() {
            return Verdict::Pass;
        }
        let names: Vec<&str> = unmatched.iter().take(5).map(|s| s.as_str()).collect();
        let reason = format!("outbound {} policy does not cover {}", gate.policy, names.join(", "));
        Verdict::for_action(&gate.action, reason)
    }

    /// Inbound: the From address must match, and only counts when it is authenticated:
    /// `verified_domain` (DMARC-aligned, from the milter's signed verdict) must be its domain.
    /// An unauthenticated From is never on an allowlist, so a forged one cannot slip past a
    /// gate.
    pub fn inbound_verdict(&self, sender: Option<&str>, verified_domain: Option<&str>) -> Verdict {
        let gate = &self.inbound.gate;
        let sender = sender.unwrap_or("").to_ascii_lowercase();
        let authentic = verified_domain.is_some_and(|d| d.eq_ignore_ascii_case(domain_of(&sender)));
        let matched = match gate.policy.as_str() {
            "allowlist" => authentic && listed(&gate.allowlist, &sender),
            "domain" => authentic && listed(&gate.allowlist, domain_of(&sender)),
            _ => true,
        };
        if matched {
            return Verdict::Pass;
        }
        let shown = if sender.is_empty() { "<>" } else { sender.as_str() };
        let why = if authentic || gate.policy == "open" {
            "does not cover"
        } else {
            "needs an authenticated From; not"
        };
        Verdict::for_action(&gate.action, format!("inbound {} policy {why} {shown}", gate.policy))
    }

    /// The stored JSON, or the defaults when there is none (or it cannot be read).
    pub fn from_stored(stored: Option<&str>) -> Self {
        stored.and_then(|s| serde_json::from_str(s).ok()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_outbound(policy: &str, list: &[&str], action: &str) -> Protection {
        let mut p = Protection::default();
        p.outbound.gate = Gate {
            policy: policy.into(),
            allowlist: list.iter().map(|s| s.to_string()).collect(),
            action: action.into(),
        };
        p
    }

    #[test]
    fn gates() {
        let open = Protection::default();
        assert_eq!(open.outbound_verdict("agents.test", &["a@x.test".into()]), Verdict::Pass);
        let hitl = with_outbound("allowlist", &[], "review");
        assert!(matches!(hitl.outbound_verdict("agents.test", &["a@x.test".into()]), Verdict::Review { .. }));
        let listed = with_outbound("allowlist", &["A@x.test"], "block");
        assert_eq!(listed.outbound_verdict("agents.test", &["a@x.test".into()]), Verdict::Pass);
        assert!(matches!(
            listed.outbound_verdict("agents.test", &["a@x.test".into(), "b@x.test".into()]),
            Verdict::Block { .. }
        ));
        let domain = with_outbound("domain", &[], "review");
        assert_eq!(domain.outbound_verdict("agents.test", &["peer@agents.test".into()]), Verdict::Pass);
        let mut inbound = Protection::default();
        inbound.inbound.gate =
            Gate { policy: "domain".into(), allowlist: vec!["trusted.test".into()], action: "review".into() };
        assert_eq!(inbound.inbound_verdict(Some("x@trusted.test"), Some("trusted.test")), Verdict::Pass);
        assert!(matches!(
            inbound.inbound_verdict(Some("x@other.test"), Some("other.test")),
            Verdict::Review { .. }
        ));
        assert!(matches!(inbound.inbound_verdict(None, None), Verdict::Review { .. }));
        // A From on the list that did not authenticate (or authenticated another domain) is
        // not on the list.
        assert!(matches!(inbound.inbound_verdict(Some("x@trusted.test"), None), Verdict::Review { .. }));
        assert!(matches!(
            inbound.inbound_verdict(Some("x@trusted.test"), Some("other.test")),
            Verdict::Review { .. }
        ));
        inbound.inbound.gate.policy = "open".into();
        assert_eq!(inbound.inbound_verdict(Some("x@forged.test"), None), Verdict::Pass, "open lets all in");
    }

    #[test]
    fn validation_and_defaults() {
        assert!(Protection::default().problems().is_empty());
        let mut p = Protection::default();
        p.holds.ttl_seconds = 0;
        p.outbound.gate.action = "drop".into();
        let fields: Vec<String> = p.problems().into_iter().map(|(f, _)| f).collect();
        assert_eq!(fields, vec!["body.outbound.gate.action", "body.holds.ttl_seconds"]);
        assert_eq!(Protection::from_stored(Some("not json")), Protection::default());
    }
}
