//! RCPT classification: which recipients are agents, which are unknown agents on our domains
//! (rejected at RCPT so nothing bounces later), and which are none of our business.

use async_trait::async_trait;
use postagent_core::ids::AgentEmail;
use postagent_core::mail::outbound::verp;
use postagent_core::secret::Secret;
use postagent_core::store::Store;
use std::sync::Arc;
use std::time::Duration;

/// Why a directory lookup failed; the RCPT is answered 451 and Postfix's client retries.
pub type DirectoryError = Box<dyn std::error::Error + Send + Sync>;

/// Where agents are looked up. The store in production; tests may use a fake that fails.
#[async_trait]
pub trait AgentDirectory: Send + Sync + 'static {
    /// A verified registered domain of some account (the shared domain is configuration and
    /// is checked by the caller).
    async fn is_agent_domain(&self, domain: &str) -> Result<bool, DirectoryError>;
    /// A live (not trashed) agent with exactly this lowercase address.
    async fn is_live_agent(&self, email: &str) -> Result<bool, DirectoryError>;
}

/// The store as an [`AgentDirectory`].
pub struct StoreDirectory {
    store: Arc<dyn Store>,
}

impl StoreDirectory {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }
}

#[async_trait]
impl AgentDirectory for StoreDirectory {
    async fn is_agent_domain(&self, domain: &str) -> Result<bool, DirectoryError> {
        Ok(self.store.is_agent_domain(domain).await?)
    }

    async fn is_live_agent(&self, email: &str) -> Result<bool, DirectoryError> {
        Ok(self.store.find_live_agent(email).await?.is_some())
    }
}

/// The verdict on one RCPT address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipientClass {
    /// Not one of our domains: pass untouched (Postfix decides).
    Foreign,
    /// A live agent.
    Agent,
    /// One of our domains, but no live agent has this address: `550 5.1.1`.
    UnknownAgent,
    /// The directory could not answer (in time): `451 4.3.0`.
    Unavailable(String),
}

/// How long one RCPT may wait for the directory. Postfix gives a milter command 30 s
/// (`milter_command_timeout`); answering 451 well before that keeps the SMTP client's retry
/// ours to decide rather than `milter_default_action`'s.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(10);

/// The deployment's rules for recipients, the same for the milter's RCPT check, the
/// socketmap's recipient map and LMTP.
#[derive(Debug, Clone, Copy)]
pub struct Rules<'a> {
    /// The shared agent domain, or empty.
    pub shared_domain: &'a str,
    /// Verifies VERP bounce addresses.
    pub secret: &'a Secret,
    /// Postfix's `recipient_delimiter` (each character one); empty: no extensions.
    pub delimiter: &'a str,
}

/// Classifies `rcpt` (the RCPT argument with or without angle brackets).
///
/// A genuine VERP bounce address on one of our domains (`bounce+msg_….tag@…`, what our
/// outbound mail is sent from) counts as an agent: delivery status notifications come back
/// to it. A forged one is an unknown agent, refused here so nothing is accepted that would
/// bounce again later. An address with an extension (`bot+signup@…`) is the agent's when no
/// agent has the whole address, as Postfix's `recipient_delimiter` rule reads it.
pub async fn classify(directory: &dyn AgentDirectory, rules: &Rules<'_>, rcpt: &str) -> RecipientClass {
    let (shared_domain, secret) = (rules.shared_domain, rules.secret);
    let address = strip_brackets(rcpt);
    let Some((_, domain)) = address.rsplit_once('@') else {
        // `postmaster` without a domain and the like: local to Postfix, not ours.
        return RecipientClass::Foreign;
    };
    let domain = domain.trim_end_matches('.').to_ascii_lowercase();
    let lookup = async {
        let ours = (!shared_domain.is_empty() && domain == shared_domain)
            || directory.is_agent_domain(&domain).await?;
        if !ours {
            return Ok(RecipientClass::Foreign);
        }
        if verp::looks_like_bounce(address) {
            return Ok(
                if verp::parse_bounce(secret, address, postagent_core::time::Timestamp::now()).is_some() {
                    RecipientClass::Agent
                } else {
                    RecipientClass::UnknownAgent
                },
            );
        }
        // Agent addresses are stored as AgentEmail normalises them; an address that cannot
        // be one (quoted local part, odd bytes) names no agent.
        let Some(email) = AgentEmail::parse(address) else {
            return Ok(RecipientClass::UnknownAgent);
        };
        if directory.is_live_agent(email.as_str()).await? {
            return Ok(RecipientClass::Agent);
        }
        if let Some((base, _)) = email.split_extension(rules.delimiter)
            && directory.is_live_agent(base.as_str()).await?
        {
            return Ok(RecipientClass::Agent);
        }
        Ok::<_, DirectoryError>(RecipientClass::UnknownAgent)
    };
    match tokio::time::timeout(LOOKUP_TIMEOUT, lookup).await {
        Ok(Ok(class)) => class,
        Ok(Err(e)) => RecipientClass::Unavailable(flatten(&*e)),
        Err(_) => RecipientClass::Unavailable(format!("no answer within {LOOKUP_TIMEOUT:?}")),
    }
}

/// `<a@b>` → `a@b`; SMTP arguments after the path (`NOTIFY=…`) arrive as separate args.
pub(crate) fn strip_brackets(arg: &str) -> &str {
    let arg = arg.trim();
    arg.strip_prefix('<').and_then(|a| a.strip_suffix('>')).unwrap_or(arg)
}

/// The error and its causes on one line (style: the milter flattens cause chains).
pub(crate) fn flatten(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake {
        domains: Vec<&'static str>,
        agents: Vec<&'static str>,
        fail: bool,
    }

    #[async_trait]
    impl AgentDirectory for Fake {
        async fn is_agent_domain(&self, domain: &str) -> Result<bool, DirectoryError> {
            if self.fail {
                return Err("database is down".into());
            }
            Ok(self.domains.contains(&domain))
        }
        async fn is_live_agent(&self, email: &str) -> Result<bool, DirectoryError> {
            if self.fail {
                return Err("database is down".into());
            }
            Ok(self.agents.contains(&email))
        }
    }

    #[tokio::test]
    async fn classifies_by_domain_then_agent() {
        let dir =
            Fake { domains: vec!["own.test"], agents: vec!["bot@own.test", "bot@agents.test"], fail: false };
        let secret = Secret::new(vec![1; 32]);
        let rules = Rules { shared_domain: "agents.test", secret: &secret, delimiter: "+" };
        let c = |r: &'static str| {
            let (dir, rules) = (&dir, &rules);
            async move { classify(dir, rules, r).await }
        };
        assert_eq!(c("<Bot@Own.Test>").await, RecipientClass::Agent);
        assert_eq!(c("<bot@agents.test>").await, RecipientClass::Agent);
        assert_eq!(c("<nobody@agents.test>").await, RecipientClass::UnknownAgent);
        assert_eq!(c("<nobody@own.test>").await, RecipientClass::UnknownAgent);
        assert_eq!(c("<\"odd one\"@own.test>").await, RecipientClass::UnknownAgent);
        assert_eq!(c("<someone@elsewhere.test>").await, RecipientClass::Foreign);
        assert_eq!(c("<postmaster>").await, RecipientClass::Foreign);
        // Extensions: the agent's, once no agent has the whole address; only at the delimiter.
        assert_eq!(c("<bot+signup@own.test>").await, RecipientClass::Agent);
        assert_eq!(c("<Bot+a+b@agents.test>").await, RecipientClass::Agent);
        assert_eq!(c("<nobody+x@own.test>").await, RecipientClass::UnknownAgent);
        assert_eq!(c("<+bot@own.test>").await, RecipientClass::UnknownAgent);
        assert_eq!(c("<bot-x@own.test>").await, RecipientClass::UnknownAgent);
        let dashes = Rules { delimiter: "-+", ..rules };
        assert_eq!(classify(&dir, &dashes, "<bot-x@own.test>").await, RecipientClass::Agent);
        let none = Rules { delimiter: "", ..rules };
        assert_eq!(classify(&dir, &none, "<bot+x@own.test>").await, RecipientClass::UnknownAgent);
        let bounce = verp::bounce_address(
            &Secret::new(vec![1; 32]),
            "msg_0123456789abcdef0123456789abcdef",
            "own.test",
            postagent_core::time::Timestamp::now(),
        );
        assert_eq!(classify(&dir, &rules, &bounce).await, RecipientClass::Agent);
        let other = Secret::new(vec![2; 32]);
        assert_eq!(
            classify(&dir, &Rules { secret: &other, ..rules }, &bounce).await,
            RecipientClass::UnknownAgent,
            "a bounce address under another secret is forged"
        );
        let old = verp::bounce_address(
            &Secret::new(vec![1; 32]),
            "msg_0123456789abcdef0123456789abcdef",
            "own.test",
            postagent_core::time::Timestamp::now().plus_secs(-40 * 86_400),
        );
        assert_eq!(
            classify(&dir, &rules, &old).await,
            RecipientClass::UnknownAgent,
            "an expired bounce address is refused at RCPT"
        );
        let down = Fake { domains: vec![], agents: vec![], fail: true };
        assert!(matches!(classify(&down, &rules, "<x@own.test>").await, RecipientClass::Unavailable(_)));
        // The shared domain needs no domain lookup, but the agent lookup still fails.
        assert!(matches!(classify(&down, &rules, "<x@agents.test>").await, RecipientClass::Unavailable(_)));
    }
}
