//! `postagent admin`: the sysadmin's tools, against the same configuration and database.

use crate::serve::open_shared;
use anyhow::{Context, bail};
use clap::Subcommand;
use postagent_core::Config;
use postagent_core::apikey::KeyScope;
use postagent_core::service;
use postagent_core::store::{Account, PageQuery, Store};
use postagent_core::time::Timestamp;

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create an account and print its first API key (shown once).
    Bootstrap {
        #[arg(long)]
        email: String,
    },
    /// Domains of an account.
    #[command(subcommand)]
    Domains(DomainsCommand),
    /// Agents of an account.
    #[command(subcommand)]
    Agents(AgentsCommand),
    /// API keys of an account.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Accounts: list them, export one (the e2a export envelope, to a file or stdout), delete
    /// one with everything it owns.
    #[command(subcommand)]
    Accounts(AccountsCommand),
    /// Where an account's review notices (held messages, with approve/reject links) are
    /// mailed; without an address, back to the account's own email.
    Reviewer {
        /// The reviewer's address (omit with --reset).
        email: Option<String>,
        /// Send notices to the account's own email again.
        #[arg(long, conflicts_with = "email")]
        reset: bool,
        #[arg(long)]
        account: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum AccountsCommand {
    /// Every account: id, email, created.
    List,
    /// Write the account's export (GET /v1/account/export's document): its domains, agents,
    /// keys (no secrets), suppressions, protection events and every message with its raw MIME.
    Export {
        #[arg(long)]
        account: Option<String>,
        /// Where to write it (default: stdout). Created 0600, never overwritten.
        #[arg(long, short)]
        output: Option<std::path::PathBuf>,
    },
    /// Delete the account and everything that names it, in one transaction (irreversible).
    Delete {
        #[arg(long)]
        account: String,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
}

#[derive(Subcommand)]
pub enum DomainsCommand {
    /// Register a domain; with --verified it is operator-owned and needs no TXT record.
    Add {
        domain: String,
        #[arg(long)]
        verified: bool,
        /// The owning account (default: the only account).
        #[arg(long)]
        account: Option<String>,
    },
    List {
        #[arg(long)]
        account: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum AgentsCommand {
    /// Create an agent on a registered, verified domain or the shared domain.
    Add {
        email: String,
        #[arg(long, default_value = "")]
        name: String,
        #[arg(long)]
        account: Option<String>,
    },
    List {
        #[arg(long)]
        account: Option<String>,
    },
}

#[derive(Subcommand)]
pub enum KeysCommand {
    /// Mint an API key (account-scoped, or limited to one agent with --agent).
    Create {
        #[arg(long)]
        agent: Option<String>,
        #[arg(long, default_value = "admin")]
        name: String,
        #[arg(long)]
        account: Option<String>,
    },
}

pub async fn run(config: Config, cmd: AdminCommand) -> anyhow::Result<()> {
    let shared = open_shared(&config).await?;
    let store: &dyn Store = shared.store.as_ref();
    let shared_domain = config.shared_domain.to_ascii_lowercase();
    let result = match cmd {
        AdminCommand::Bootstrap { email } => {
            let (account, key) = service::bootstrap_account(store, &email).await?;
            println!("Account: {} <{}>", account.id, account.email);
            println!("API key: {key}");
            println!("Keep the key safe: it is shown only once.");
            Ok(())
        }
        AdminCommand::Domains(DomainsCommand::Add { domain, verified, account }) => {
            let account = pick_account(store, account.as_deref()).await?;
            let (d, created) = service::register_domain(
                store,
                &shared.secret,
                &account.id,
                &domain,
                &shared_domain,
                verified,
            )
            .await?;
            println!(
                "{} {} (verified: {})",
                if created { "Added" } else { "Already registered:" },
                d.domain,
                d.verified
            );
            if !d.verified {
                println!("Publish, then verify with the API (POST /v1/domains/{}/verify):", d.domain);
                println!("  {}.  TXT  \"{}\"", d.domain, d.verification_token);
                println!("  {}.  MX   10 {}.", d.domain, config.mail_hostname());
            }
            Ok(())
        }
        AdminCommand::Domains(DomainsCommand::List { account }) => {
            let account = pick_account(store, account.as_deref()).await?;
            let rows = store.list_domains(&account.id, &all()).await?;
            println!("{:<40} {:<9} {:>6}  created", "DOMAIN", "VERIFIED", "AGENTS");
            for d in rows {
                println!("{:<40} {:<9} {:>6}  {}", d.domain, d.verified, d.agent_count, d.created_at);
            }
            Ok(())
        }
        AdminCommand::Agents(AgentsCommand::Add { email, name, account }) => {
            let account = pick_account(store, account.as_deref()).await?;
            let agent = service::create_agent(store, &account.id, &email, &name, &shared_domain).await?;
            println!("Added agent {}", agent.email);
            Ok(())
        }
        AdminCommand::Agents(AgentsCommand::List { account }) => {
            let account = pick_account(store, account.as_deref()).await?;
            let rows = store.list_agents(&account.id, false, &all()).await?;
            println!("{:<48} {:<24} created", "EMAIL", "NAME");
            for a in rows {
                println!("{:<48} {:<24} {}", a.email, a.name, a.created_at);
            }
            Ok(())
        }
        AdminCommand::Keys(KeysCommand::Create { agent, name, account }) => {
            let account = pick_account(store, account.as_deref()).await?;
            let scope = if agent.is_some() { KeyScope::Agent } else { KeyScope::Account };
            let (key, plaintext) = service::create_api_key(
                store,
                &account.id,
                &name,
                scope,
                agent.as_deref(),
                None::<Timestamp>,
            )
            .await?;
            println!(
                "Key id: {} ({} scope{})",
                key.id,
                scope.as_str(),
                key.agent_email.as_deref().map(|e| format!(", agent {e}")).unwrap_or_default()
            );
            println!("API key: {plaintext}");
            Ok(())
        }
        AdminCommand::Accounts(cmd) => accounts(store, &shared_domain, cmd).await,
        AdminCommand::Reviewer { email, reset, account } => {
            let account = pick_account(store, account.as_deref()).await?;
            let reviewer = match (email, reset) {
                (Some(e), false) => {
                    let e = postagent_core::ids::AgentEmail::parse(e.trim())
                        .with_context(|| format!("{e:?} is not an email address"))?;
                    Some(e.to_string())
                }
                (None, true) => None,
                _ => {
                    let now = account.reviewer_email.as_deref().unwrap_or(&account.email);
                    println!("Review notices for {} go to {now}", account.email);
                    shared.store.close().await;
                    return Ok(());
                }
            };
            if let Some(r) = &reviewer
                && store.find_live_agent(r).await?.is_some()
            {
                bail!(
                    "{r} is an agent: its own key could read the approve links and approve its agents' mail; \
                     choose a person's address"
                );
            }
            store.set_reviewer_email(&account.id, reviewer.as_deref()).await?;
            println!(
                "Review notices for {} now go to {}",
                account.email,
                reviewer.as_deref().unwrap_or(&account.email)
            );
            Ok(())
        }
    };
    shared.store.close().await;
    result
}

async fn accounts(store: &dyn Store, shared_domain: &str, cmd: AccountsCommand) -> anyhow::Result<()> {
    match cmd {
        AccountsCommand::List => {
            for a in store.list_accounts().await? {
                println!("{}  {}  {}", a.id, a.email, a.created_at);
            }
        }
        AccountsCommand::Export { account, output } => {
            let account = pick_account(store, account.as_deref()).await?;
            let started = std::time::Instant::now();
            let done = match output {
                Some(path) => {
                    use std::os::unix::fs::OpenOptionsExt;
                    if path.exists() {
                        bail!("{} exists: an export never overwrites a file", path.display());
                    }
                    // Written beside the target and renamed once whole: a failed export leaves
                    // no truncated file behind.
                    let partial = path.with_extension("partial");
                    let file = std::fs::OpenOptions::new()
                        .write(true)
                        .create_new(true)
                        .mode(0o600)
                        .open(&partial)
                        .with_context(|| format!("cannot create {}", partial.display()))?;
                    let mut out = tokio::io::BufWriter::new(tokio::fs::File::from_std(file));
                    let written = postagent_core::export::write(
                        store,
                        &account.id,
                        shared_domain,
                        Timestamp::now(),
                        &mut out,
                    )
                    .await;
                    let done = match written {
                        Ok(d) => d,
                        Err(e) => {
                            let _ = std::fs::remove_file(&partial);
                            return Err(e.into());
                        }
                    };
                    std::fs::rename(&partial, &path)
                        .with_context(|| format!("cannot create {}", path.display()))?;
                    done
                }
                None => {
                    let mut out = tokio::io::BufWriter::new(tokio::io::stdout());
                    postagent_core::export::write(
                        store,
                        &account.id,
                        shared_domain,
                        Timestamp::now(),
                        &mut out,
                    )
                    .await?
                }
            };
            eprintln!(
                "exported {}: {} messages, {} bytes in {:.1} s",
                account.email,
                done.messages,
                done.bytes,
                started.elapsed().as_secs_f64()
            );
        }
        AccountsCommand::Delete { account, yes } => {
            let account = pick_account(store, Some(&account)).await?;
            if !yes {
                bail!("deleting {} and everything it owns cannot be undone: add --yes", account.email);
            }
            let gone = store.delete_account(&account.id).await?.context("the account is already gone")?;
            tracing::warn!(account = %account.id, messages = gone.messages, "account deleted by the operator");
            println!("{}", postagent_api::routes::data::result(&gone));
            let left = store.rows_naming(&account.id).await?;
            if !left.is_empty() {
                bail!("rows still name {} after the deletion: {left:?}", account.id);
            }
        }
    }
    Ok(())
}

/// Every row (operator listings are not paginated).
fn all() -> PageQuery {
    PageQuery { after: None, limit: u32::MAX - 1 }
}

/// The account named by `--account EMAIL`, or the only account there is.
async fn pick_account(store: &dyn Store, email: Option<&str>) -> anyhow::Result<Account> {
    if let Some(email) = email {
        return store.find_account_by_email(&email.trim().to_ascii_lowercase()).await?.with_context(|| {
            format!("no account with email {email}; create it with `postagent admin bootstrap`")
        });
    }
    let mut accounts = store.list_accounts().await?;
    match accounts.len() {
        0 => bail!("no account yet: run `postagent admin bootstrap --email YOU@EXAMPLE.ORG` first"),
        1 => Ok(accounts.remove(0)),
        n => bail!("{n} accounts exist: say which with --account EMAIL"),
    }
}
