//! `postagent lab`: the whole inbound path on one machine, in one command.
//!
//! Starts a loopback DNS server with a sample sender domain (SPF, DKIM, DMARC), postagent's
//! roles (API, milter, LMTP) on a SQLite file in a lab directory, and a private Postfix
//! wired to them the way `postfix-conf/` tells an operator to wire theirs; then prints the
//! swaks command that delivers a verified message to a sample agent, and how to look at it.
//! Everything listens on 127.0.0.1; the system's Postfix and `/etc/postagent` are never read
//! or touched. The end-to-end tests and `bench/inbound` run on the same
//! [`postagent_lab::mail_lab`] code.

use crate::serve::{Roles, Running, open_shared, shutdown_signal};
use anyhow::Context;
use clap::Args;
use postagent_core::Config;
use postagent_core::apikey::KeyScope;
use postagent_core::service::{self, ManageError};
use postagent_core::store::Store;
use postagent_lab::mail_lab::{self, SENDER_DOMAIN, SampleZone, Wiring};
use std::path::{Path, PathBuf};

/// The lab's agent domain (the deployment's shared domain) and its sample agent.
const AGENT_DOMAIN: &str = "agents.lab.test";
const AGENT: &str = "hello@agents.lab.test";
/// Postfix's myhostname and postagent's authserv-id.
const HOSTNAME: &str = "mx.lab.test";
const OWNER: &str = "owner@lab.test";

#[derive(Args)]
pub struct LabArgs {
    /// Directory for the lab's database, secret and sample message (default: a new
    /// directory under /tmp, kept after exit so the mail can still be read).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Port of the private Postfix's SMTP listener on 127.0.0.1 (default: 2525).
    #[arg(long, default_value_t = 2525)]
    smtp_port: u16,
}

pub async fn run(args: LabArgs, flags: Vec<(String, String)>) -> anyhow::Result<()> {
    mail_lab::check_can_run_postfix()?;
    let dir = match args.dir {
        Some(d) => {
            std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
            d
        }
        None => tempfile::Builder::new().prefix("postagent-lab-").tempdir_in("/tmp")?.keep(),
    };
    let zone = SampleZone::start().await?;
    // The originating listener's port is chosen first: the submission worker needs it.
    let originating_port = postagent_lab::free_port()?;
    let config = lab_config(&dir, &zone, originating_port, flags)?;
    crate::logging::init(&config)?;
    let shared = open_shared(&config).await?;
    let key = sample_agent(shared.store.as_ref(), &config).await?;

    let signal = shutdown_signal()?;
    postagent_core::mime::configure(config.mime_caps());
    let running = Running::start(&config, &shared, Roles::all()).await?;
    let (Some(milter), Some(lmtp), Some(api)) =
        (running.milter_addr.clone(), running.lmtp_addr.clone(), running.api_addr.clone())
    else {
        anyhow::bail!("the lab needs the API, milter and LMTP roles on TCP listeners");
    };
    let wiring = Wiring {
        hostname: HOSTNAME.into(),
        agent_domains: vec![AGENT_DOMAIN.into()],
        milter: Some(format!("inet:{milter}")),
        lmtp: format!("lmtp:inet:{lmtp}"),
        smtp_port: Some(args.smtp_port),
        originating_port: Some(originating_port),
    };
    let builder = wiring.builder()?;
    let postfix = tokio::task::spawn_blocking(move || builder.start())
        .await?
        .with_context(|| format!("cannot start the private Postfix on 127.0.0.1:{}", args.smtp_port))?;

    let token = mail_lab::unique_token()?;
    let sample = mail_lab::sample_message(
        AGENT,
        "Signed hello from the postagent lab",
        &token,
        "Signed with DKIM.\r\n",
    );
    let signed_path = dir.join("signed.eml");
    std::fs::write(&signed_path, zone.sign(&sample)?)
        .with_context(|| format!("cannot write {}", signed_path.display()))?;

    print_instructions(&Shown {
        smtp: postfix.smtp_addr(),
        maillog: postfix.log_path(),
        api: &api,
        milter: &milter,
        lmtp: &lmtp,
        dns: zone.dns().addr(),
        dir: &dir,
        key: &key,
        signed: &signed_path,
    });

    let result = running.serve_until(signal, &shared).await;
    // Dropping the instance stops the private Postfix and removes its directory.
    tokio::task::spawn_blocking(move || drop(postfix)).await?;
    eprintln!("postagent lab stopped; the database is kept in {}", dir.display());
    result
}

/// The lab's configuration: its own directory and DNS, loopback listeners on free ports
/// (the API on 127.0.0.1:8080 unless `--api-listen` says otherwise), never a config file.
fn lab_config(
    dir: &Path,
    zone: &SampleZone,
    originating_port: u16,
    flags: Vec<(String, String)>,
) -> anyhow::Result<Config> {
    let mut pairs: Vec<(String, String)> = [
        ("data_dir", dir.display().to_string()),
        ("milter_listen", "127.0.0.1:0".into()),
        ("lmtp_listen", "127.0.0.1:0".into()),
        ("socketmap_listen", "127.0.0.1:0".into()),
        ("shared_domain", AGENT_DOMAIN.into()),
        ("mail_hostname", HOSTNAME.into()),
        ("dns_server", zone.dns().addr().to_string()),
        ("dns_timeout", "2s".into()),
        ("submission_relay", format!("127.0.0.1:{originating_port}")),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .into();
    // The operator's flags win, except where the lab's wiring depends on the value.
    for (key, value) in flags {
        if matches!(key.as_str(), "dns_server" | "shared_domain" | "mail_hostname" | "submission_relay") {
            anyhow::bail!(
                "--{} cannot be changed in the lab: its DNS zone and Postfix depend on it",
                key.replace('_', "-")
            );
        }
        pairs.retain(|(k, _)| *k != key);
        pairs.push((key, value));
    }
    Config::from_flags(&pairs).map_err(|e| anyhow::anyhow!("configuration error: {e}"))
}

/// The lab account and its agent (created on first use of the directory) and a fresh
/// account key for this run.
async fn sample_agent(store: &dyn Store, config: &Config) -> anyhow::Result<String> {
    let account = match service::bootstrap_account(store, OWNER).await {
        Ok((account, _)) => account,
        Err(ManageError::AccountExists(_)) => {
            store.find_account_by_email(OWNER).await?.context("the lab account vanished")?
        }
        Err(e) => return Err(e.into()),
    };
    match service::create_agent(store, &account.id, AGENT, "Lab agent", &config.shared_domain).await {
        Ok(_) | Err(ManageError::AgentTaken(_)) => {}
        Err(e) => return Err(e.into()),
    }
    let (_, key) = service::create_api_key(store, &account.id, "lab", KeyScope::Account, None, None).await?;
    Ok(key)
}

struct Shown<'a> {
    smtp: std::net::SocketAddr,
    maillog: PathBuf,
    api: &'a str,
    milter: &'a str,
    lmtp: &'a str,
    dns: std::net::SocketAddr,
    dir: &'a Path,
    key: &'a str,
    signed: &'a Path,
}

fn print_instructions(s: &Shown<'_>) {
    let plain = mail_lab::swaks_command(s.smtp, AGENT, None);
    let signed = mail_lab::swaks_command(s.smtp, AGENT, Some(s.signed));
    let api = format!("http://{}", s.api);
    let key = s.key;
    let dir = s.dir.display();
    println!(
        "\npostagent lab is running. Ctrl-C stops it (and the private Postfix).\n\n\
         \x20 Postfix (private)  smtp {smtp}, log {maillog}\n\
         \x20 postagent          API {api}, milter inet:{milter}, LMTP {lmtp}\n\
         \x20 DNS (test zone)    {dns}: {SENDER_DOMAIN} has SPF ip4:127.0.0.1, DKIM {sel}._domainkey (ed25519), DMARC p=reject\n\
         \x20 state              {dir} (postagent.db, hmac.secret, signed.eml)\n\
         \x20 agent              {AGENT}\n\
         \x20 API key            {key}\n\n\
         Send a verified message (SPF passes for 127.0.0.1 and aligns with the From domain, so DMARC passes):\n\n\
         \x20 {plain}\n\n\
         Or one DKIM-signed by {SENDER_DOMAIN} (DKIM and SPF both pass):\n\n\
         \x20 {signed}\n\n\
         Read it (the newest first; `authentication` and `verified_domain` show the verdict):\n\n\
         \x20 curl -s -H 'Authorization: Bearer {key}' {api}/v1/agents/{AGENT}/messages\n\
         \x20 curl -s -H 'Authorization: Bearer {key}' {api}/v1/agents/{AGENT}/messages/MSG_ID\n\n\
         Check the signed X-E2A-Auth-* headers of the raw message:\n\n\
         \x20 curl -s -H 'Authorization: Bearer {key}' {api}/v1/agents/{AGENT}/messages/MSG_ID \\\n\
         \x20   | jq -r .raw_message | base64 -d | postagent verify --secret-file {dir}/hmac.secret\n",
        smtp = s.smtp,
        maillog = s.maillog.display(),
        milter = s.milter,
        lmtp = s.lmtp,
        dns = s.dns,
        sel = mail_lab::DKIM_SELECTOR,
    );
}
