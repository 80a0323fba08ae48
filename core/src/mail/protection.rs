//! Per-agent protection (contract §7.2): an inbound and an outbound gate, each a policy
//! (`open`, `allowlist`, `domain`) and the action for what the policy does not match
//! (`flag`, `review`, `block`), plus how holds behave (`ttl_seconds`, `on_expiry`).
//!
//! Human-in-the-loop for every send is `outbound.gate = {policy: allowlist, allowlist: [],
//! action: review}`: nothing matches an empty list, so everything is held.

use crate::vocab::{AutoClass, GateAction, GatePolicy, OnExpiry, Sensitivity, Word, must_be};
use serde::{Deserialize, Serialize};

pub const DEFAULT_TTL_SECS: i64 = 604_800;
pub const MAX_TTL_SECS: i64 = 604_800;
pub const MAX_ALLOWLIST: usize = 1000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Gate {
    pub policy: GatePolicy,
    pub allowlist: Vec<String>,
    pub action: GateAction,
    /// Inbound only: what happens to mail that classifies as automatic (an extension of the
    /// contract's gate, left out of the view when unset).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub automatic: Option<AutomaticRule>,
}

impl Default for Gate {
    fn default() -> Self {
        Self { policy: GatePolicy::Open, allowlist: Vec::new(), action: GateAction::Flag, automatic: None }
    }
}

/// The inbound gate's rule for automatic mail (docs/sending-safety.md): mail of one of
/// `classes` (the `e2a:<class>` labels) gets `action`, whoever sent it. With `block`, an
/// autoresponder's answer never reaches the agent, so an agent that answers everything it
/// receives cannot answer it either.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct AutomaticRule {
    pub action: GateAction,
    #[serde(default = "AutomaticRule::default_classes")]
    pub classes: Vec<AutoClass>,
}

impl AutomaticRule {
    /// Every class an agent may not answer: all but list mail.
    pub fn default_classes() -> Vec<AutoClass> {
        AutoClass::ALL.iter().copied().filter(|c| *c != AutoClass::Bulk).collect()
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(default)]
pub struct Scan {
    pub sensitivity: Sensitivity,
}

impl Default for Scan {
    fn default() -> Self {
        Self { sensitivity: Sensitivity::Off }
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
    pub on_expiry: OnExpiry,
    pub suppress_notifications: bool,
}

impl Default for Holds {
    fn default() -> Self {
        Self { ttl_seconds: DEFAULT_TTL_SECS, on_expiry: OnExpiry::Reject, suppress_notifications: false }
    }
}

/// An agent's protection, as stored (JSON) and shown. A field missing from stored JSON
/// (written by an older version) takes its default; a word that is not one is an error.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(default)]
pub struct Protection {
    pub inbound: DirectionConfig,
    pub outbound: DirectionConfig,
    pub holds: Holds,
}

/// A PUT body as sent: every value still text, so each wrong one can be named
/// ([`ProtectionRequest::check`]); a field left out takes its default.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct ProtectionRequest {
    pub inbound: DirectionRequest,
    pub outbound: DirectionRequest,
    pub holds: HoldsRequest,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct DirectionRequest {
    pub gate: GateRequest,
    pub scan: ScanRequest,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct GateRequest {
    pub policy: String,
    pub allowlist: Vec<String>,
    pub action: String,
    pub automatic: Option<AutomaticRequest>,
}

impl Default for GateRequest {
    fn default() -> Self {
        let g = Gate::default();
        Self {
            policy: g.policy.as_str().into(),
            allowlist: Vec::new(),
            action: g.action.as_str().into(),
            automatic: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(default)]
pub struct AutomaticRequest {
    pub action: Option<String>,
    pub classes: Option<Vec<String>>,
}

impl AutomaticRequest {
    fn check(self, at: &str, out: &mut Vec<(String, String)>) -> Option<AutomaticRule> {
        let action = match self.action.as_deref().map(GateAction::parse) {
            Some(Ok(a)) => Some(a),
            Some(Err(_)) => {
                out.push((format!("{at}.action"), must_be::<GateAction>()));
                None
            }
            None => {
                out.push((format!("{at}.action"), "required".into()));
                None
            }
        };
        let classes = match self.classes {
            None => Some(AutomaticRule::default_classes()),
            Some(list) if list.is_empty() => {
                out.push((
                    format!("{at}.classes"),
                    "at least one class, or leave it out for all but bulk".into(),
                ));
                None
            }
            Some(list) => {
                let mut classes = Vec::new();
                for (i, word) in list.iter().enumerate() {
                    match AutoClass::parse(word) {
                        Ok(c) if !classes.contains(&c) => classes.push(c),
                        Ok(_) => {}
                        Err(_) => out.push((format!("{at}.classes[{i}]"), must_be::<AutoClass>())),
                    }
                }
                Some(classes)
            }
        };
        Some(AutomaticRule { action: action?, classes: classes? })
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct ScanRequest {
    pub sensitivity: String,
}

impl Default for ScanRequest {
    fn default() -> Self {
        Self { sensitivity: Sensitivity::Off.as_str().into() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default)]
pub struct HoldsRequest {
    pub ttl_seconds: i64,
    pub on_expiry: String,
    pub suppress_notifications: bool,
}

impl Default for HoldsRequest {
    fn default() -> Self {
        let h = Holds::default();
        Self {
            ttl_seconds: h.ttl_seconds,
            on_expiry: h.on_expiry.as_str().into(),
            suppress_notifications: h.suppress_notifications,
        }
    }
}

impl ProtectionRequest {
    /// The typed protection, or every offending field (the request schema's enums and
    /// bounds) as `(location, message)`.
    pub fn check(self) -> Result<Protection, Vec<(String, String)>> {
        let mut out = Vec::new();
        let direction = |dir: &str, d: DirectionRequest, out: &mut Vec<(String, String)>| {
            let policy = GatePolicy::parse(&d.gate.policy)
                .map_err(|_| out.push((format!("body.{dir}.gate.policy"), must_be::<GatePolicy>())))
                .ok();
            let action = GateAction::parse(&d.gate.action)
                .map_err(|_| out.push((format!("body.{dir}.gate.action"), must_be::<GateAction>())))
                .ok();
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
            let at = format!("body.{dir}.gate.automatic");
            let automatic = match d.gate.automatic {
                Some(_) if dir == "outbound" => {
                    out.push((at, "only the inbound gate judges automatic mail".into()));
                    None
                }
                Some(rule) => rule.check(&at, out),
                None => None,
            };
            let sensitivity = Sensitivity::parse(&d.scan.sensitivity)
                .map_err(|_| out.push((format!("body.{dir}.scan.sensitivity"), must_be::<Sensitivity>())))
                .ok();
            match (policy, action, sensitivity) {
                (Some(policy), Some(action), Some(sensitivity)) => Some(DirectionConfig {
                    gate: Gate { policy, allowlist: d.gate.allowlist, action, automatic },
                    scan: Scan { sensitivity },
                }),
                _ => None,
            }
        };
        let inbound = direction("inbound", self.inbound, &mut out);
        let outbound = direction("outbound", self.outbound, &mut out);
        if !(1..=MAX_TTL_SECS).contains(&self.holds.ttl_seconds) {
            out.push(("body.holds.ttl_seconds".into(), "must be between 1 and 604800".into()));
        }
        let on_expiry = OnExpiry::parse(&self.holds.on_expiry)
            .map_err(|_| out.push(("body.holds.on_expiry".into(), must_be::<OnExpiry>())))
            .ok();
        match (inbound, outbound, on_expiry) {
            (Some(inbound), Some(outbound), Some(on_expiry)) if out.is_empty() => Ok(Protection {
                inbound,
                outbound,
                holds: Holds {
                    ttl_seconds: self.holds.ttl_seconds,
                    on_expiry,
                    suppress_notifications: self.holds.suppress_notifications,
                },
            }),
            _ => Err(out),
        }
    }
}

/// Which rule judged a message: its name is the `reason_source` of gate events (e2a's
/// review-reason vocabulary) and the `code` of a hold's `hold_reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The inbound gate, on the sender.
    SenderGate,
    /// The outbound gate, on the recipients.
    RecipientGate,
    /// The inbound gate's rule for automatic mail.
    AutomaticMail,
}

impl Rule {
    pub const fn source(self) -> &'static str {
        match self {
            Self::SenderGate => "sender_gate",
            Self::RecipientGate => "recipient_gate",
            Self::AutomaticMail => "automatic_mail",
        }
    }

    /// `hold_reason.code`: the gate's direction, or the automatic-mail rule.
    const fn code(self) -> &'static str {
        match self {
            Self::SenderGate => "inbound_gate",
            Self::RecipientGate => "outbound_gate",
            Self::AutomaticMail => "automatic_mail",
        }
    }
}

/// What a gate decided about one message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    /// Not matched; `reason` says why, for `hold_reason` / `flag_reason`.
    Flag {
        reason: String,
        rule: Rule,
    },
    Review {
        reason: String,
        rule: Rule,
    },
    Block {
        reason: String,
        rule: Rule,
    },
}

impl Verdict {
    fn for_action(action: GateAction, reason: String, rule: Rule) -> Self {
        match action {
            GateAction::Review => Self::Review { reason, rule },
            GateAction::Block => Self::Block { reason, rule },
            GateAction::Flag => Self::Flag { reason, rule },
        }
    }

    /// Why, when not `Pass` (empty for `Pass`).
    pub fn reason(&self) -> &str {
        match self {
            Self::Flag { reason, .. } | Self::Review { reason, .. } | Self::Block { reason, .. } => reason,
            Self::Pass => "",
        }
    }

    /// The rule that decided, when not `Pass`.
    pub fn rule(&self) -> Option<Rule> {
        match self {
            Self::Flag { rule, .. } | Self::Review { rule, .. } | Self::Block { rule, .. } => Some(*rule),
            Self::Pass => None,
        }
    }

    /// Pass < flag < review < block.
    fn severity(&self) -> u8 {
        match self {
            Self::Pass => 0,
            Self::Flag { .. } => 1,
            Self::Review { .. } => 2,
            Self::Block { .. } => 3,
        }
    }

    /// The contract's `hold_reason` object for a held message.
    pub fn hold_reason(&self) -> serde_json::Value {
        serde_json::json!({
            "type": "gate",
            "code": self.rule().map_or("", Rule::code),
            "summary": self.reason(),
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
    /// Outbound: every recipient must match (one unlisted recipient is enough to hold or
    /// block the whole message).
    pub fn outbound_verdict(&self, agent_domain: &str, recipients: &[String]) -> Verdict {
        let gate = &self.outbound.gate;
        let unmatched: Vec<&String> = match gate.policy {
            GatePolicy::Allowlist => recipients.iter().filter(|r| !listed(&gate.allowlist, r)).collect(),
            GatePolicy::Domain => {
                recipients.iter().filter(|r| !domain_of(r).eq_ignore_ascii_case(agent_domain)).collect()
            }
            GatePolicy::Open => Vec::new(),
        };
        if unmatched.is_empty() {
            return Verdict::Pass;
        }
        let names: Vec<&str> = unmatched.iter().take(5).map(|s| s.as_str()).collect();
        let reason = format!("outbound {} policy does not cover {}", gate.policy, names.join(", "));
        Verdict::for_action(gate.action, reason, Rule::RecipientGate)
    }

    /// Inbound: the sender rule and, for automatic mail (`class`), the automatic-mail rule;
    /// the stricter verdict wins (the sender rule's at equal strictness).
    pub fn inbound_verdict(
        &self,
        sender: Option<&str>,
        verified_domain: Option<&str>,
        class: Option<AutoClass>,
    ) -> Verdict {
        let by_sender = self.sender_verdict(sender, verified_domain);
        let automatic = match (&self.inbound.gate.automatic, class) {
            (Some(rule), Some(class)) if rule.classes.contains(&class) => Verdict::for_action(
                rule.action,
                format!("automatic mail ({class}): the inbound gate's automatic rule"),
                Rule::AutomaticMail,
            ),
            _ => Verdict::Pass,
        };
        if automatic.severity() > by_sender.severity() { automatic } else { by_sender }
    }

    /// The From address must match, and only counts when it is authenticated:
    /// `verified_domain` (DMARC-aligned, from the milter's signed verdict) must be its domain.
    /// An unauthenticated From is never on an allowlist, so a forged one cannot slip past a
    /// gate.
    fn sender_verdict(&self, sender: Option<&str>, verified_domain: Option<&str>) -> Verdict {
        let gate = &self.inbound.gate;
        let sender = sender.unwrap_or("").to_ascii_lowercase();
        let authentic = verified_domain.is_some_and(|d| d.eq_ignore_ascii_case(domain_of(&sender)));
        let matched = match gate.policy {
            GatePolicy::Allowlist => authentic && listed(&gate.allowlist, &sender),
            GatePolicy::Domain => authentic && listed(&gate.allowlist, domain_of(&sender)),
            GatePolicy::Open => true,
        };
        if matched {
            return Verdict::Pass;
        }
        let shown = if sender.is_empty() { "<>" } else { sender.as_str() };
        let why = if authentic || gate.policy == GatePolicy::Open {
            "does not cover"
        } else {
            "needs an authenticated From; not"
        };
        Verdict::for_action(
            gate.action,
            format!("inbound {} policy {why} {shown}", gate.policy),
            Rule::SenderGate,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_outbound(policy: GatePolicy, list: &[&str], action: GateAction) -> Protection {
        let mut p = Protection::default();
        p.outbound.gate =
            Gate { policy, allowlist: list.iter().map(|s| s.to_string()).collect(), action, automatic: None };
        p
    }

    #[test]
    fn gates() {
        let open = Protection::default();
        assert_eq!(open.outbound_verdict("agents.test", &["a@x.test".into()]), Verdict::Pass);
        let hitl = with_outbound(GatePolicy::Allowlist, &[], GateAction::Review);
        assert!(matches!(hitl.outbound_verdict("agents.test", &["a@x.test".into()]), Verdict::Review { .. }));
        let listed = with_outbound(GatePolicy::Allowlist, &["A@x.test"], GateAction::Block);
        assert_eq!(listed.outbound_verdict("agents.test", &["a@x.test".into()]), Verdict::Pass);
        assert!(matches!(
            listed.outbound_verdict("agents.test", &["a@x.test".into(), "b@x.test".into()]),
            Verdict::Block { .. }
        ));
        let domain = with_outbound(GatePolicy::Domain, &[], GateAction::Review);
        assert_eq!(domain.outbound_verdict("agents.test", &["peer@agents.test".into()]), Verdict::Pass);
        let mut inbound = Protection::default();
        inbound.inbound.gate = Gate {
            policy: GatePolicy::Domain,
            allowlist: vec!["trusted.test".into()],
            action: GateAction::Review,
            automatic: None,
        };
        assert_eq!(
            inbound.inbound_verdict(Some("x@trusted.test"), Some("trusted.test"), None),
            Verdict::Pass
        );
        assert!(matches!(
            inbound.inbound_verdict(Some("x@other.test"), Some("other.test"), None),
            Verdict::Review { .. }
        ));
        assert!(matches!(inbound.inbound_verdict(None, None, None), Verdict::Review { .. }));
        // A From on the list that did not authenticate (or authenticated another domain) is
        // not on the list.
        assert!(matches!(
            inbound.inbound_verdict(Some("x@trusted.test"), None, None),
            Verdict::Review { .. }
        ));
        assert!(matches!(
            inbound.inbound_verdict(Some("x@trusted.test"), Some("other.test"), None),
            Verdict::Review { .. }
        ));
        inbound.inbound.gate.policy = GatePolicy::Open;
        assert_eq!(
            inbound.inbound_verdict(Some("x@forged.test"), None, None),
            Verdict::Pass,
            "open lets all in"
        );
    }

    #[test]
    fn the_automatic_rule_judges_automatic_mail_and_the_stricter_verdict_wins() {
        let mut p = Protection::default();
        let auto = Some(AutoClass::AutoReplied);
        assert_eq!(p.inbound_verdict(Some("x@a.test"), None, auto), Verdict::Pass, "no rule, no verdict");
        p.inbound.gate.automatic =
            Some(AutomaticRule { action: GateAction::Block, classes: AutomaticRule::default_classes() });
        let v = p.inbound_verdict(Some("x@a.test"), Some("a.test"), auto);
        assert!(matches!(v, Verdict::Block { rule: Rule::AutomaticMail, .. }), "{v:?}");
        assert_eq!(v.hold_reason()["code"], "automatic_mail");
        assert!(v.reason().contains("auto-replied"), "{v:?}");
        // List mail is not in the default classes; a person's mail has no class.
        assert_eq!(p.inbound_verdict(Some("x@a.test"), None, Some(AutoClass::Bulk)), Verdict::Pass);
        assert_eq!(p.inbound_verdict(Some("x@a.test"), None, None), Verdict::Pass);
        // With a sender gate too, the stricter of the two decides; at equal strictness the
        // sender gate names the reason.
        p.inbound.gate.policy = GatePolicy::Allowlist;
        p.inbound.gate.action = GateAction::Review;
        let v = p.inbound_verdict(Some("x@a.test"), None, auto);
        assert!(matches!(v, Verdict::Block { rule: Rule::AutomaticMail, .. }), "{v:?}");
        p.inbound.gate.automatic =
            Some(AutomaticRule { action: GateAction::Review, classes: vec![AutoClass::AutoReplied] });
        let v = p.inbound_verdict(Some("x@a.test"), None, auto);
        assert!(matches!(v, Verdict::Review { rule: Rule::SenderGate, .. }), "{v:?}");
        p.inbound.gate.action = GateAction::Flag;
        let v = p.inbound_verdict(Some("x@a.test"), None, auto);
        assert!(matches!(v, Verdict::Review { rule: Rule::AutomaticMail, .. }), "{v:?}");
    }

    #[test]
    fn the_automatic_rule_is_checked_and_inbound_only() {
        let mut r = ProtectionRequest::default();
        r.inbound.gate.automatic = Some(AutomaticRequest { action: Some("block".into()), classes: None });
        let p = r.clone().check().expect("valid");
        assert_eq!(
            p.inbound.gate.automatic.map(|a| a.classes),
            Some(vec![
                AutoClass::AutoReplied,
                AutoClass::AutoGenerated,
                AutoClass::NullSender,
                AutoClass::Responder
            ])
        );
        r.inbound.gate.automatic =
            Some(AutomaticRequest { action: None, classes: Some(vec!["bulk".into(), "spam".into()]) });
        r.outbound.gate.automatic = Some(AutomaticRequest { action: Some("flag".into()), classes: None });
        let problems = r.check().expect_err("invalid");
        let fields: Vec<&str> = problems.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "body.inbound.gate.automatic.action",
                "body.inbound.gate.automatic.classes[1]",
                "body.outbound.gate.automatic",
            ],
            "{problems:?}"
        );
        // Unset, it is left out of what is stored and shown.
        let text = serde_json::to_string(&Protection::default()).expect("json");
        assert!(!text.contains("automatic"), "{text}");
    }

    #[test]
    fn requests_are_checked_field_by_field() {
        assert_eq!(ProtectionRequest::default().check(), Ok(Protection::default()));
        let mut r = ProtectionRequest::default();
        r.holds.ttl_seconds = 0;
        r.outbound.gate.action = "drop".into();
        r.inbound.scan.sensitivity = "max".into();
        let problems = r.check().expect_err("invalid");
        assert_eq!(
            problems,
            vec![
                ("body.inbound.scan.sensitivity".to_owned(), "must be off, low, medium or high".to_owned()),
                ("body.outbound.gate.action".to_owned(), "must be flag, review or block".to_owned()),
                ("body.holds.ttl_seconds".to_owned(), "must be between 1 and 604800".to_owned()),
            ]
        );
        // Stored JSON reads back typed; a word nobody wrote is an error, not a default.
        let text = serde_json::to_string(&Protection::default()).expect("json");
        assert_eq!(serde_json::from_str::<Protection>(&text).ok(), Some(Protection::default()));
        let bad = text.replace("\"flag\"", "\"drop\"");
        assert!(serde_json::from_str::<Protection>(&bad).is_err());
    }
}
