//! `whoami`, `agents`, `keys`, `protection` and `domains`: the account's set-up, one `/v1`
//! call (or a read then a write) per command.

use super::http::{Call, seg};
use super::output::{Col, list, s, when};
use super::{CliError, Conn, Exit, Outcome, Session};
use clap::{Subcommand, ValueEnum};
use reqwest::Method;
use serde_json::{Value, json};

/// A fresh `Idempotency-Key`, so a retried write happens once.
pub fn idempotency_key() -> String {
    postagent_core::ids::mint("cli-", 16)
}

/// Deletions need `--yes`: a script says so explicitly, a typo never deletes.
fn confirmed(yes: bool, what: &str) -> Result<(), CliError> {
    if yes { Ok(()) } else { Err(CliError::usage(format!("refusing to delete {what} without --yes"))) }
}

pub async fn whoami(session: &Session) -> Outcome {
    let a = session.api.get("/v1/account").await?;
    let used = |k: &str, max: &str| format!("{} / {}", s(&a["usage"][k]), s(&a["limits"][max]));
    session.out.fields(
        &a,
        &[
            ("url", session.api.base().to_owned()),
            ("user", format!("{} ({})", s(&a["user"]["email"]), s(&a["user"]["id"]))),
            ("scope", s(&a["scope"])),
            ("agent", s(&a["agent_email"])),
            ("default agent", session.configured_agent().unwrap_or("-").to_owned()),
            ("plan", s(&a["plan_code"])),
            ("agents", used("agents", "max_agents")),
            ("domains", used("domains", "max_domains")),
            ("messages this month", used("messages_month", "max_messages_month")),
        ],
    );
    Ok(Exit::Ok)
}

#[derive(Subcommand, Debug)]
pub enum AgentsCmd {
    /// List the account's agents.
    List {
        /// The trash instead (deleted agents, restorable).
        #[arg(long)]
        deleted: bool,
        /// At most this many.
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Create an agent on a verified domain (or the shared domain).
    Create {
        email: String,
        /// A display name.
        #[arg(long)]
        name: Option<String>,
    },
    /// Show one agent (default: the configured agent).
    Get { email: Option<String> },
    /// Rename an agent.
    Update {
        email: String,
        #[arg(long)]
        name: String,
    },
    /// Delete an agent: to the trash, or for good with --permanent.
    Delete {
        email: String,
        #[arg(long)]
        permanent: bool,
        /// Confirm the deletion.
        #[arg(long)]
        yes: bool,
    },
    /// Bring an agent back from the trash.
    Restore { email: String },
}

const AGENT_COLS: &[Col] = &[
    Col { head: "EMAIL", get: |v| s(&v["email"]) },
    Col { head: "NAME", get: |v| s(&v["name"]) },
    Col { head: "DOMAIN", get: |v| s(&v["domain"]) },
    Col { head: "VERIFIED", get: |v| s(&v["domain_verified"]) },
    Col { head: "CREATED", get: |v| when(&v["created_at"]) },
];

fn show_agent(session: &Session, a: &Value) {
    session.out.fields(
        a,
        &[
            ("email", s(&a["email"])),
            ("name", s(&a["name"])),
            ("domain", format!("{} (verified: {})", s(&a["domain"]), s(&a["domain_verified"]))),
            ("created", s(&a["created_at"])),
            ("deleted", s(&a["deleted_at"])),
        ],
    );
}

pub async fn agents(session: &Session, cmd: AgentsCmd) -> Outcome {
    let api = &session.api;
    match cmd {
        AgentsCmd::List { deleted, limit } => {
            let call = Call::new(Method::GET, "/v1/agents").query_opt("deleted", deleted.then_some("true"));
            session.out.table(&api.list(call, limit).await?, AGENT_COLS);
        }
        AgentsCmd::Create { email, name } => {
            let mut body = json!({"email": email});
            if let Some(n) = name {
                body["name"] = n.into();
            }
            let a = api.call(Call::new(Method::POST, "/v1/agents").body(body)).await?.body;
            show_agent(session, &a);
        }
        AgentsCmd::Get { email } => {
            let email = session.agent_or(email.as_deref()).await?;
            show_agent(session, &api.get(format!("/v1/agents/{}", seg(&email))).await?);
        }
        AgentsCmd::Update { email, name } => {
            let call =
                Call::new(Method::PATCH, format!("/v1/agents/{}", seg(&email))).body(json!({"name": name}));
            show_agent(session, &api.call(call).await?.body);
        }
        AgentsCmd::Delete { email, permanent, yes } => {
            confirmed(yes, &email)?;
            let call = Call::new(Method::DELETE, format!("/v1/agents/{}", seg(&email)))
                .query("confirm", "DELETE")
                .query_opt("permanent", permanent.then_some("true"));
            let r = api.call(call).await?.body;
            let how = if permanent { "deleted for good" } else { "moved to the trash" };
            session.out.fields(
                &r,
                &[("deleted", format!("{email} {how}")), ("messages deleted", s(&r["messages_deleted"]))],
            );
        }
        AgentsCmd::Restore { email } => {
            let call = Call::new(Method::POST, format!("/v1/agents/{}/restore", seg(&email)));
            show_agent(session, &api.call(call).await?.body);
        }
    }
    Ok(Exit::Ok)
}

#[derive(Subcommand, Debug)]
pub enum KeysCmd {
    /// List the account's API keys (never the keys themselves).
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Create an API key; it is printed once and never stored. With --agent the key is bound
    /// to that agent (least privilege).
    Create {
        #[arg(long)]
        name: Option<String>,
        /// Expire at this RFC 3339 time.
        #[arg(long, conflicts_with = "expires_in")]
        expires_at: Option<String>,
        /// Expire after this long (`30d`, `12h`).
        #[arg(long)]
        expires_in: Option<String>,
    },
    /// Revoke an API key by its id (`apk_…`).
    Delete {
        id: String,
        /// Confirm the revocation.
        #[arg(long)]
        yes: bool,
    },
}

const KEY_COLS: &[Col] = &[
    Col { head: "ID", get: |v| s(&v["id"]) },
    Col { head: "NAME", get: |v| s(&v["name"]) },
    Col { head: "PREFIX", get: |v| s(&v["key_prefix"]) },
    Col { head: "SCOPE", get: |v| s(&v["scope"]) },
    Col { head: "AGENT", get: |v| s(&v["agent_email"]) },
    Col { head: "CREATED", get: |v| when(&v["created_at"]) },
    Col { head: "LAST USED", get: |v| when(&v["last_used_at"]) },
    Col { head: "EXPIRES", get: |v| when(&v["expires_at"]) },
];

pub async fn keys(session: &Session, conn: &Conn, cmd: KeysCmd) -> Outcome {
    let api = &session.api;
    match cmd {
        KeysCmd::List { limit } => {
            session
                .out
                .table(&api.list(Call::new(Method::GET, "/v1/account/api-keys"), limit).await?, KEY_COLS);
        }
        KeysCmd::Create { name, expires_at, expires_in } => {
            let mut body = json!({});
            if let Some(n) = name {
                body["name"] = n.into();
            }
            // Only an explicit --agent binds the key, never E2A_AGENT_EMAIL or the file.
            if let Some(agent) = &conn.agent {
                body["scope"] = "agent".into();
                body["agent_email"] = agent.clone().into();
            }
            if let Some(t) = expires_at {
                body["expires_at"] = t.into();
            } else if let Some(d) = expires_in {
                let d = postagent_core::config::parse_duration(&d).ok_or_else(|| {
                    CliError::usage(format!("--expires-in {d:?} is not a duration like 30d or 12h"))
                })?;
                let at = postagent_core::time::Timestamp::now()
                    .plus_secs(i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                body["expires_at"] = at.to_rfc3339().into();
            }
            let call =
                Call::new(Method::POST, "/v1/account/api-keys").body(body).idempotent(idempotency_key());
            let k = api.call(call).await?.body;
            session.out.fields(
                &k,
                &[
                    ("API key", s(&k["key"])),
                    ("id", s(&k["id"])),
                    ("scope", s(&k["scope"])),
                    ("agent", s(&k["agent_email"])),
                    ("expires", s(&k["expires_at"])),
                ],
            );
            if !session.out.json {
                eprintln!("postagent: the key is shown once; store it now");
            }
        }
        KeysCmd::Delete { id, yes } => {
            confirmed(yes, &id)?;
            let call = Call::new(Method::DELETE, format!("/v1/account/api-keys/{}", seg(&id)))
                .query("confirm", "DELETE");
            let r = api.call(call).await?.body;
            session.out.fields(&r, &[("revoked", id)]);
        }
    }
    Ok(Exit::Ok)
}

#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Switch {
    On,
    Off,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum OnExpiry {
    Approve,
    Reject,
}

#[derive(Subcommand, Debug)]
pub enum ProtectionCmd {
    /// Show an agent's protection (default: the configured agent).
    Get { email: Option<String> },
    /// Change only the settings named; the rest is kept (read, changed, written back).
    Set {
        email: Option<String>,
        /// Hold outbound mail for review (`on`: every send the gate does not allow is held;
        /// an open gate becomes an empty allowlist, so every send is held) or let it go
        /// (`off`: flagged, not held, and the content scan off).
        #[arg(long)]
        outbound_review: Option<Switch>,
        /// The same for inbound mail.
        #[arg(long)]
        inbound_review: Option<Switch>,
        /// How long a hold waits for a decision (`2h`, `7d`; at most 7 days).
        #[arg(long)]
        hold_ttl: Option<String>,
        /// What happens to a hold nobody decided in time.
        #[arg(long)]
        on_expiry: Option<OnExpiry>,
        /// Stop (`on`) or send (`off`) the review notice emails.
        #[arg(long)]
        suppress_notifications: Option<Switch>,
    },
}

fn review(direction: &mut Value, mode: Switch) {
    let gate = &mut direction["gate"];
    match mode {
        Switch::On => {
            gate["action"] = "review".into();
            if gate["policy"].as_str().is_none_or(|p| p == "open") {
                gate["policy"] = "allowlist".into();
            }
        }
        Switch::Off => {
            gate["action"] = "flag".into();
            direction["scan"]["sensitivity"] = "off".into();
        }
    }
}

fn show_protection(session: &Session, email: &str, p: &Value) {
    let dir = |d: &Value| {
        let g = &d["gate"];
        let mut line = format!("gate={}/{}", s(&g["policy"]), s(&g["action"]));
        if g["allowlist"].as_array().is_some_and(|a| !a.is_empty()) {
            line.push_str(&format!(" allow=[{}]", list(&g["allowlist"])));
        }
        if g["automatic"].is_object() {
            line.push_str(&format!(" automatic={}", s(&g["automatic"]["action"])));
        }
        format!("{line} scan={}", s(&d["scan"]["sensitivity"]))
    };
    let h = &p["holds"];
    session.out.fields(
        p,
        &[
            ("agent", email.to_owned()),
            ("outbound", dir(&p["outbound"])),
            ("inbound", dir(&p["inbound"])),
            (
                "holds",
                format!(
                    "ttl={}s on_expiry={} suppress_notifications={}",
                    s(&h["ttl_seconds"]),
                    s(&h["on_expiry"]),
                    s(&h["suppress_notifications"])
                ),
            ),
        ],
    );
}

pub async fn protection(session: &Session, cmd: ProtectionCmd) -> Outcome {
    let api = &session.api;
    match cmd {
        ProtectionCmd::Get { email } => {
            let email = session.agent_or(email.as_deref()).await?;
            let p = api.get(format!("/v1/agents/{}/protection", seg(&email))).await?;
            show_protection(session, &email, &p);
        }
        ProtectionCmd::Set {
            email,
            outbound_review,
            inbound_review,
            hold_ttl,
            on_expiry,
            suppress_notifications,
        } => {
            let email = session.agent_or(email.as_deref()).await?;
            if outbound_review.is_none()
                && inbound_review.is_none()
                && hold_ttl.is_none()
                && on_expiry.is_none()
                && suppress_notifications.is_none()
            {
                return Err(CliError::usage("nothing to set: name at least one setting (see --help)"));
            }
            let ttl = match hold_ttl {
                Some(t) => Some(
                    postagent_core::config::parse_duration(&t)
                        .ok_or_else(|| {
                            CliError::usage(format!("--hold-ttl {t:?} is not a duration like 2h or 7d"))
                        })?
                        .as_secs(),
                ),
                None => None,
            };
            let path = format!("/v1/agents/{}/protection", seg(&email));
            // The write replaces the whole configuration, so it is built on a successful read:
            // a failed read never resets what was not asked for.
            let mut p = api.get(path.clone()).await?;
            if let Some(m) = outbound_review {
                review(&mut p["outbound"], m);
            }
            if let Some(m) = inbound_review {
                review(&mut p["inbound"], m);
            }
            if let Some(t) = ttl {
                p["holds"]["ttl_seconds"] = t.into();
            }
            if let Some(e) = on_expiry {
                p["holds"]["on_expiry"] = match e {
                    OnExpiry::Approve => "approve",
                    OnExpiry::Reject => "reject",
                }
                .into();
            }
            if let Some(sw) = suppress_notifications {
                p["holds"]["suppress_notifications"] = (sw == Switch::On).into();
            }
            let p = api.call(Call::new(Method::PUT, path).body(p)).await?.body;
            show_protection(session, &email, &p);
        }
    }
    Ok(Exit::Ok)
}

#[derive(Subcommand, Debug)]
pub enum DomainsCmd {
    /// List the account's domains.
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Register a domain; prints the DNS records to publish.
    Add { domain: String },
    /// Show a domain and the status of each of its DNS records.
    Get { domain: String },
    /// Check the domain's DNS now. Exits 0 once verified, 1 while it is not (yet).
    Verify { domain: String },
}

const DOMAIN_COLS: &[Col] = &[
    Col { head: "DOMAIN", get: |v| s(&v["domain"]) },
    Col { head: "VERIFIED", get: |v| s(&v["verified"]) },
    Col { head: "SENDING", get: |v| s(&v["sending_status"]) },
    Col { head: "AGENTS", get: |v| s(&v["agent_count"]) },
    Col { head: "CREATED", get: |v| when(&v["created_at"]) },
];

const RECORD_COLS: &[Col] = &[
    Col { head: "TYPE", get: |v| s(&v["type"]) },
    Col { head: "NAME", get: |v| s(&v["name"]) },
    Col {
        head: "VALUE",
        get: |v| match v["priority"].as_i64() {
            Some(p) => format!("{p} {}", s(&v["value"])),
            None => s(&v["value"]),
        },
    },
    Col { head: "PURPOSE", get: |v| s(&v["purpose"]) },
    Col { head: "STATUS", get: |v| s(&v["status"]) },
];

fn show_domain(session: &Session, d: &Value) {
    if session.out.json {
        return session.out.json_line(d);
    }
    session.out.fields(
        d,
        &[("domain", s(&d["domain"])), ("verified", s(&d["verified"])), ("sending", s(&d["sending_status"]))],
    );
    super::output::line("");
    session.out.table(d["dns_records"].as_array().map_or(&[][..], Vec::as_slice), RECORD_COLS);
}

pub async fn domains(session: &Session, cmd: DomainsCmd) -> Outcome {
    let api = &session.api;
    match cmd {
        DomainsCmd::List { limit } => {
            session.out.table(&api.list(Call::new(Method::GET, "/v1/domains"), limit).await?, DOMAIN_COLS);
        }
        DomainsCmd::Add { domain } => {
            let d =
                api.call(Call::new(Method::POST, "/v1/domains").body(json!({"domain": domain}))).await?.body;
            show_domain(session, &d);
        }
        DomainsCmd::Get { domain } => {
            show_domain(session, &api.get(format!("/v1/domains/{}", seg(&domain))).await?)
        }
        DomainsCmd::Verify { domain } => {
            let call = Call::new(Method::POST, format!("/v1/domains/{}/verify", seg(&domain)));
            let v = api.call(call).await?.body;
            session.out.fields(
                &v,
                &[
                    ("domain", s(&v["domain"])),
                    ("verified", s(&v["verified"])),
                    ("mx", s(&v["mx"])),
                    ("spf", s(&v["spf"])),
                    ("dkim", s(&v["dkim"])),
                ],
            );
            if v["verified"] != true {
                return Err(CliError::new(
                    Exit::Error,
                    format!(
                        "{domain} is not verified yet: publish its records (postagent domains get {domain})"
                    ),
                ));
            }
        }
    }
    Ok(Exit::Ok)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn review_on_holds_everything_the_gate_does_not_allow() {
        let mut d = json!({"gate": {"policy": "open", "action": "flag"}, "scan": {"sensitivity": "high"}});
        review(&mut d, Switch::On);
        assert_eq!(d["gate"], json!({"policy": "allowlist", "action": "review"}));
        let mut d = json!({"gate": {"policy": "domain", "action": "flag"}, "scan": {"sensitivity": "high"}});
        review(&mut d, Switch::On);
        assert_eq!(d["gate"]["policy"], "domain", "a narrower gate is kept");
        review(&mut d, Switch::Off);
        assert_eq!(
            (d["gate"]["action"].as_str(), d["scan"]["sensitivity"].as_str()),
            (Some("flag"), Some("off"))
        );
    }
}
