//! The rules behind managing accounts, keys, domains and agents, shared by the REST API and
//! `postagent admin` so both enforce exactly the same thing.

use crate::apikey::{self, KeyScope};
use crate::dns::Resolver;
use crate::ids::{self, AccountId, AgentEmail, DomainName};
use crate::store::{
    Account, Agent, ApiKey, Domain, DomainCheck, NewAgent, NewApiKey, NewDomain, Store, StoreError,
};
use crate::time::Timestamp;

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
    #[error("{0} is already taken")]
    AgentTaken(String),
    #[error("{0} is in your trash: restore it instead")]
    AgentInTrash(String),
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

/// Registers (or re-claims) a domain. `operator_owned` domains are verified at once.
pub async fn register_domain(
    store: &dyn Store,
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
    let (row, created) = store.register_domain(new).await.map_err(|e| match e {
        StoreError::Conflict(_) => ManageError::DomainTaken(domain.to_string()),
        e => e.into(),
    })?;
    if operator_owned && !row.operator_owned {
        // The account's own self-registered row, now claimed by the operator.
        store.claim_operator_domain(account, &row.domain, Timestamp::now()).await?;
        let row = store.get_domain(account, &row.domain).await?.ok_or(StoreError::NotFound)?;
        return Ok((row, created));
    }
    Ok((row, created))
}

/// What one verification probe found (`found`, `missing`, `mismatch`, `deferred`).
#[derive(Debug, Clone, PartialEq)]
pub struct DomainProbe {
    pub txt: &'static str,
    pub mx: &'static str,
    pub spf: &'static str,
}

/// Looks the domain's records up: ownership TXT at the apex containing the token, and an MX
/// pointing at `mail_hostname`. A DNS failure is `deferred`, never a verdict.
pub async fn probe_domain(resolver: &Resolver, domain: &Domain, mail_hostname: &str) -> DomainProbe {
    let (txt, mx) = tokio::join!(resolver.txt(&domain.domain), resolver.mx(&domain.domain));
    let (txt_status, spf) = match &txt {
        Ok(records) => (
            if records.iter().any(|r| r.contains(&domain.verification_token)) { "found" } else { "missing" },
            if records.iter().any(|r| r.trim_start().to_ascii_lowercase().starts_with("v=spf1")) {
                "found"
            } else {
                "missing"
            },
        ),
        Err(e) => {
            tracing::warn!(domain = %domain.domain, error = %e, "ownership TXT lookup failed");
            ("deferred", "deferred")
        }
    };
    let want = mail_hostname.trim_end_matches('.').to_ascii_lowercase();
    let mx_status = match &mx {
        Ok(hosts) if hosts.iter().any(|(_, h)| *h == want) => "found",
        Ok(hosts) if hosts.is_empty() => "missing",
        Ok(_) => "mismatch",
        Err(e) => {
            tracing::warn!(domain = %domain.domain, error = %e, "MX lookup failed");
            "deferred"
        }
    };
    DomainProbe { txt: txt_status, mx: mx_status, spf }
}

/// Probes and records the result; returns the updated row and the probe.
pub async fn verify_domain(
    store: &dyn Store,
    resolver: &Resolver,
    account: &AccountId,
    name: &str,
    mail_hostname: &str,
) -> Result<Option<(Domain, DomainProbe)>, ManageError> {
    let Some(domain) = store.get_domain(account, name).await? else { return Ok(None) };
    let probe = probe_domain(resolver, &domain, mail_hostname).await;
    let check = DomainCheck {
        verified: probe.txt == "found" && probe.mx == "found",
        txt_status: probe.txt.to_owned(),
        mx_status: probe.mx.to_owned(),
        checked_at: Timestamp::now(),
    };
    tracing::info!(domain = %domain.domain, txt = probe.txt, mx = probe.mx, spf = probe.spf,
        verified = check.verified, "domain verification probe");
    if !store.record_domain_check(account, &domain.domain, &domain.verification_token, check).await? {
        tracing::info!(domain = %domain.domain, "domain changed hands during verification; result dropped");
    }
    let updated = store.get_domain(account, name).await?.ok_or(StoreError::NotFound)?;
    Ok(Some((updated, probe)))
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
