//! The rules behind managing accounts, keys, domains and agents, shared by the REST API and
//! `postagent admin` so both enforce exactly the same thing.

use crate::apikey::{self, KeyScope};
use crate::dns::Resolver;
use crate::ids::{self, AccountId, AgentEmail, DomainName};
use crate::store::{
    Account, Agent, ApiKey, Domain, DomainCheck, NewAgent, NewApiKey, NewDomain, Store, StoreError,
};
use crate::time::Timestamp;
use crate::vocab::ProbeStatus;

#[derive(Debug, thiserror::Error)]
pub enum ManageError {
    #[error("{0}")]
    InvalidEmail(String),
    #[error("{0}")]
    InvalidDomain(String),
    #[error("{0}")]
    InvalidSlug(String),
    #[error("{0}")]
    InvalidName(String),
    #[error("the shared domain {0} belongs to the deployment and cannot be registered")]
    ReservedDomain(String),
    #[error("domain {0} is not registered to this account")]
    DomainNotRegistered(String),
    #[error("domain {0} is not verified yet: publish its DNS records and verify it")]
    DomainNotVerified(String),
    #[error("domain {0} is registered to another account")]
    DomainTaken(String),
    /// Another account registered it but never proved it: publishing `token` as a TXT record
    /// at the domain (and its MX) and verifying takes the claim over.
    #[error(
        "domain {domain} is claimed by another account that has not verified it; publish the TXT record {token:?} at {domain} and verify to take the claim over"
    )]
    DomainClaimed { domain: String, token: String },
    #[error("{0} is already taken")]
    AgentTaken(String),
    #[error(
        "{0} receives an account's review notices, so it cannot be an agent (its key could approve held mail); the operator can change the reviewer with postagent admin reviewer"
    )]
    ReviewerAddress(String),
    #[error("{0} is in your trash: restore it instead")]
    AgentInTrash(String),
    #[error(
        "{0} is postagent's own: bounce+… addresses on every agent domain carry delivery reports back, so no agent may be called bounce"
    )]
    BounceAddress(String),
    #[error("agent {0} not found")]
    AgentNotFound(String),
    #[error("an account with email {0} already exists")]
    AccountExists(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Creates an account and its first account-scoped API key (shown once).
pub async fn bootstrap_account(store: &dyn Store, email: &str) -> Result<(Account, String), ManageError> {
    let email = email.trim().to_ascii_lowercase();
    if AgentEmail::parse(&email).is_none() {
        return Err(ManageError::InvalidEmail(format!("{email:?} is not an email address")));
    }
    let account = store.create_account(&email).await.map_err(|e| match e {
        StoreError::Conflict(_) => ManageError::AccountExists(email.clone()),
        e => e.into(),
    })?;
    let (_, key) = create_api_key(store, &account.id, "bootstrap", KeyScope::Account, None, None).await?;
    Ok((account, key))
}

/// Mints a key; an agent-scoped key must name one of the account's live agents.
pub async fn create_api_key(
    store: &dyn Store,
    account: &AccountId,
    name: &str,
    scope: KeyScope,
    agent_email: Option<&str>,
    expires_at: Option<Timestamp>,
) -> Result<(ApiKey, String), ManageError> {
    let agent_email = match (scope, agent_email) {
        (KeyScope::Agent, Some(e)) => {
            let email = AgentEmail::parse(e)
                .ok_or_else(|| ManageError::InvalidEmail(format!("{e:?} is not an email address")))?;
            let agent = store
                .get_agent(account, email.as_str())
                .await?
                .filter(|a| a.deleted_at.is_none())
                .ok_or_else(|| ManageError::AgentNotFound(email.to_string()))?;
            Some(agent.email)
        }
        (KeyScope::Agent, None) => {
            return Err(ManageError::InvalidEmail("an agent-scoped key needs agent_email".into()));
        }
        (KeyScope::Account, _) => None,
    };
    let minted = apikey::mint(scope);
    let key = store
        .create_api_key(NewApiKey {
            account_id: account.clone(),
            name: name.to_owned(),
            scope,
            agent_email,
            expires_at,
            key_hash: minted.hash.clone(),
            key_prefix: minted.prefix.clone(),
        })
        .await?;
    Ok((key, minted.plaintext))
}

/// How long a registration may stay unverified before it lapses (and another account may
/// register the domain without proof).
pub const UNVERIFIED_DOMAIN_DAYS: i64 = 7;

/// The TXT token with which `account` can take over another account's unverified claim on
/// `domain`: derived, so it needs no row of its own until it is proven.
pub fn takeover_token(secret: &crate::secret::Secret, account: &AccountId, domain: &str) -> String {
    let mac = crate::sign::hmac_sha256(
        secret.expose(),
        &[b"postagent-domain-takeover\n", account.as_str().as_bytes(), b"\n", domain.as_bytes()],
    );
    format!("e2a-verify={}", &hex::encode(mac)[..32])
}

/// Registers (or re-claims) a domain. `operator_owned` domains are verified at once.
///
/// A domain another account registered and never verified is not theirs for ever: past
/// [`UNVERIFIED_DOMAIN_DAYS`] the claim lapses and this registration replaces it; before that
/// the answer is [`ManageError::DomainClaimed`] with the token whose proof takes it over
/// ([`verify_domain`]). A verified domain stays with its account.
pub async fn register_domain(
    store: &dyn Store,
    secret: &crate::secret::Secret,
    account: &AccountId,
    name: &str,
    shared_domain: &str,
    operator_owned: bool,
) -> Result<(Domain, bool), ManageError> {
    let domain = DomainName::parse(name)
        .ok_or_else(|| ManageError::InvalidDomain(format!("{name:?} is not a domain name")))?;
    if !shared_domain.is_empty() && domain.as_str() == shared_domain {
        return Err(ManageError::ReservedDomain(shared_domain.to_owned()));
    }
    let new = NewDomain {
        account_id: account.clone(),
        domain: domain.to_string(),
        verification_token: ids::mint("e2a-verify=", 16),
        operator_owned,
    };
    let (row, created) = match store.register_domain(new.clone()).await {
        Ok(r) => r,
        Err(StoreError::Conflict(_)) => {
            let Some(held) = store.find_domain(domain.as_str()).await? else {
                return Err(ManageError::DomainTaken(domain.to_string()));
            };
            if held.verified || held.operator_owned {
                return Err(ManageError::DomainTaken(domain.to_string()));
            }
            let lapsed = held.created_at < Timestamp::now().plus_secs(-UNVERIFIED_DOMAIN_DAYS * 86_400);
            if !lapsed && !operator_owned {
                return Err(ManageError::DomainClaimed {
                    domain: domain.to_string(),
                    token: takeover_token(secret, account, domain.as_str()),
                });
            }
            // A lapsed claim (or the operator's word) gives way.
            let taken = store.take_over_domain(&held, &new, None, Timestamp::now()).await?;
            if !taken {
                return Err(ManageError::DomainTaken(domain.to_string()));
            }
            tracing::info!(domain = %domain, from = %held.account_id, to = %account, "unverified domain claim taken over");
            let row = store.get_domain(account, domain.as_str()).await?.ok_or(StoreError::NotFound)?;
            (row, true)
        }
        Err(e) => return Err(e.into()),
    };
    if operator_owned && !row.operator_owned {
        // The account's own self-registered row, now claimed by the operator.
        store.claim_operator_domain(account, &row.domain, Timestamp::now()).await?;
        let row = store.get_domain(account, &row.domain).await?.ok_or(StoreError::NotFound)?;
        return Ok((row, created));
    }
    Ok((row, created))
}

/// What one verification probe found.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainProbe {
    pub txt: ProbeStatus,
    pub mx: ProbeStatus,
    pub spf: ProbeStatus,
}

impl DomainProbe {
    /// What a probe records: verified when the TXT and the MX were both found.
    pub fn check(&self, at: Timestamp) -> DomainCheck {
        DomainCheck {
            verified: self.txt == ProbeStatus::Found && self.mx == ProbeStatus::Found,
            txt_status: self.txt,
            mx_status: self.mx,
            checked_at: at,
        }
    }
}

/// Looks the domain's records up: ownership TXT at the apex containing the token, and an MX
/// pointing at `mail_hostname`. A DNS failure is `deferred`, never a verdict.
pub async fn probe_domain(resolver: &Resolver, domain: &Domain, mail_hostname: &str) -> DomainProbe {
    let (txt, mx) = tokio::join!(resolver.txt(&domain.domain), resolver.mx(&domain.domain));
    let (txt_status, spf) = match &txt {
        Ok(records) => (
            if records.iter().any(|r| r.contains(&domain.verification_token)) {
                ProbeStatus::Found
            } else {
                ProbeStatus::Missing
            },
            if records.iter().any(|r| r.trim_start().to_ascii_lowercase().starts_with("v=spf1")) {
                ProbeStatus::Found
            } else {
                ProbeStatus::Missing
            },
        ),
        Err(e) => {
            tracing::warn!(domain = %domain.domain, error = %e, "ownership TXT lookup failed");
            (ProbeStatus::Deferred, ProbeStatus::Deferred)
        }
    };
    let want = mail_hostname.trim_end_matches('.').to_ascii_lowercase();
    let mx_status = match &mx {
        Ok(hosts) if hosts.iter().any(|(_, h)| *h == want) => ProbeStatus::Found,
        Ok(hosts) if hosts.is_empty() => ProbeStatus::Missing,
        Ok(_) => ProbeStatus::Mismatch,
        Err(e) => {
            tracing::warn!(domain = %domain.domain, error = %e, "MX lookup failed");
            ProbeStatus::Deferred
        }
    };
    DomainProbe { txt: txt_status, mx: mx_status, spf }
}

/// Probes and records the result; returns the updated row and the probe. For a domain
/// another account claimed and never verified, a proof of this account's
/// [`takeover_token`] (and the MX) moves the claim here, verified.
pub async fn verify_domain(
    store: &dyn Store,
    secret: &crate::secret::Secret,
    resolver: &Resolver,
    account: &AccountId,
    name: &str,
    mail_hostname: &str,
) -> Result<Option<(Domain, DomainProbe)>, ManageError> {
    let Some(domain) = store.get_domain(account, name).await? else {
        return take_over(store, secret, resolver, account, name, mail_hostname).await;
    };
    let probe = probe_domain(resolver, &domain, mail_hostname).await;
    let check = probe.check(Timestamp::now());
    tracing::info!(domain = %domain.domain, txt = %probe.txt, mx = %probe.mx, spf = %probe.spf,
        verified = check.verified, "domain verification probe");
    if !store.record_domain_check(account, &domain.domain, &domain.verification_token, check).await? {
        tracing::info!(domain = %domain.domain, "domain changed hands during verification; result dropped");
    }
    let updated = store.get_domain(account, name).await?.ok_or(StoreError::NotFound)?;
    Ok(Some((updated, probe)))
}

async fn take_over(
    store: &dyn Store,
    secret: &crate::secret::Secret,
    resolver: &Resolver,
    account: &AccountId,
    name: &str,
    mail_hostname: &str,
) -> Result<Option<(Domain, DomainProbe)>, ManageError> {
    let Some(held) = store.find_domain(name).await?.filter(|d| !d.verified && !d.operator_owned) else {
        return Ok(None);
    };
    let mut ours = held.clone();
    ours.verification_token = takeover_token(secret, account, name);
    let probe = probe_domain(resolver, &ours, mail_hostname).await;
    tracing::info!(domain = %name, account = %account, txt = %probe.txt, mx = %probe.mx,
        "domain takeover probe");
    let check = probe.check(Timestamp::now());
    if !check.verified {
        return Ok(None);
    }
    let new = NewDomain {
        account_id: account.clone(),
        domain: name.to_owned(),
        verification_token: ours.verification_token.clone(),
        operator_owned: false,
    };
    if !store.take_over_domain(&held, &new, Some(check), Timestamp::now()).await? {
        return Ok(None);
    }
    tracing::info!(domain = %name, from = %held.account_id, to = %account, "unverified domain claim taken over by proof");
    Ok(store.get_domain(account, name).await?.map(|d| (d, probe)))
}

/// Agent display names end up in From headers: one line, at most 200 characters.
pub fn check_agent_name(name: &str) -> Result<(), ManageError> {
    if name.chars().count() > 200 {
        return Err(ManageError::InvalidName("must be at most 200 characters".into()));
    }
    if name.chars().any(char::is_control) {
        return Err(ManageError::InvalidName("must not contain line breaks or control characters".into()));
    }
    Ok(())
}

/// Creates an agent: a slug on the shared domain, or any address on a verified domain the
/// account registered.
pub async fn create_agent(
    store: &dyn Store,
    account: &AccountId,
    email: &str,
    name: &str,
    shared_domain: &str,
) -> Result<Agent, ManageError> {
    check_agent_name(name)?;
    let email = AgentEmail::parse(email)
        .ok_or_else(|| ManageError::InvalidEmail(format!("{email:?} is not a valid agent address")))?;
    let on_shared = !shared_domain.is_empty() && email.domain() == shared_domain;
    if on_shared && let Some(problem) = ids::slug_problem(email.local_part()) {
        return Err(ManageError::InvalidSlug(format!("{}: {problem}", email.local_part())));
    }
    // `bounce+<message>…@domain` is our outbound mail's envelope sender on every agent domain:
    // an agent `bounce` (or `bounce+x`) would never get its extensions, or would get DSNs.
    if email.local_part() == "bounce" || crate::mail::outbound::verp::looks_like_bounce(email.as_str()) {
        return Err(ManageError::BounceAddress(email.to_string()));
    }
    // An agent's key reads its mail; an agent that received review notices could approve the
    // holds they are about, its own account's or another's.
    if store.is_reviewer_address(email.as_str()).await? {
        return Err(ManageError::ReviewerAddress(email.to_string()));
    }
    let new = NewAgent {
        account_id: account.clone(),
        email: email.to_string(),
        domain: email.domain().to_owned(),
        name: name.to_owned(),
        require_verified_domain: !on_shared,
    };
    store.create_agent(new).await.map_err(|e| match e {
        StoreError::Precondition("domain_not_registered") => {
            ManageError::DomainNotRegistered(email.domain().to_owned())
        }
        StoreError::Precondition("domain_not_verified") => {
            ManageError::DomainNotVerified(email.domain().to_owned())
        }
        StoreError::Conflict("agent_in_trash") => ManageError::AgentInTrash(email.to_string()),
        StoreError::Conflict(_) => ManageError::AgentTaken(email.to_string()),
        e => e.into(),
    })
}

/// Renames a live agent; `None` when the account has no such live agent.
pub async fn rename_agent(
    store: &dyn Store,
    account: &AccountId,
    email: &str,
    name: &str,
) -> Result<Option<Agent>, ManageError> {
    check_agent_name(name)?;
    Ok(store.rename_agent(account, email, name).await?)
}

/// Every domain Postfix must hand to postagent: the shared domain (if any) and every verified
/// domain of every account, in that order, once each.
pub async fn agent_domains(store: &dyn Store, shared_domain: &str) -> Result<Vec<String>, StoreError> {
    let mut domains: Vec<String> = Vec::new();
    if !shared_domain.is_empty() {
        domains.push(shared_domain.to_owned());
    }
    let all = crate::store::PageQuery { after: None, limit: u32::MAX - 1 };
    for account in store.list_accounts().await? {
        for d in store.list_domains(&account.id, &all).await? {
            if d.verified && !domains.contains(&d.domain) {
                domains.push(d.domain);
            }
        }
    }
    Ok(domains)
}

/// Seals every webhook secret still stored in the clear (rows written before secrets were
/// sealed); run at start by every replica, so it is idempotent and races harmlessly.
/// Returns how many webhooks it sealed.
pub async fn seal_webhook_secrets(
    store: &dyn Store,
    secret: &crate::secret::Secret,
) -> Result<usize, StoreError> {
    use crate::webhook_sig::{is_plain, seal_secret};
    let mut sealed = 0;
    loop {
        let rows = store.plain_webhook_secrets(100).await?;
        if rows.is_empty() {
            return Ok(sealed);
        }
        let mut progress = false;
        for (id, current, previous) in rows {
            let before = sealed;
            let seal = |s: &str| if is_plain(s) { seal_secret(secret, s) } else { Some(s.to_owned()) };
            let (Some(new_current), Some(new_previous)) =
                (seal(&current), previous.as_deref().map(seal).unwrap_or(Some(String::new())))
            else {
                return Err(StoreError::Precondition("no random source to seal webhook secrets"));
            };
            let new_previous = previous.as_ref().map(|_| new_previous);
            if store
                .replace_webhook_secrets(
                    &id,
                    (&current, previous.as_deref()),
                    (&new_current, new_previous.as_deref()),
                )
                .await?
            {
                sealed += 1;
            }
            progress |= sealed > before;
        }
        // A batch where nothing could be replaced (rows changing under us) ends the pass.
        if !progress {
            return Ok(sealed);
        }
    }
}
