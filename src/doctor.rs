//! `postagent doctor [--send-test]`: checks a live installation end to end and says, for each
//! finding, what is wrong and how to fix it. Exit status 1 when anything failed.
//!
//! Checked: the configuration, the database (and its migrations, run on open), the secret
//! file's permissions, postagent's sockets (present, a socket, group and mode, accepting
//! connections), Postfix's settings (`postconf`: the milter, `milter_default_action`, each
//! agent domain in `relay_domains` and `transport_maps` and a sample of agents in
//! `relay_recipient_maps`, each through `postmap -q`, so through the socketmap; the originating
//! listener), the DNS resolver and each agent domain's MX, and with `--send-test` a message
//! through Postfix all the way into the store.

use crate::serve::open_shared;
use clap::Args;
use postagent_core::Config;
use postagent_core::config::ListenAddr;
use postagent_core::store::{MessageFilter, PageQuery, Store};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

#[derive(Args)]
pub struct DoctorArgs {
    /// Also send a message through Postfix to an agent and wait until it is stored.
    #[arg(long)]
    send_test: bool,
    /// The agent the test message goes to (default: the first agent found).
    #[arg(long)]
    agent: Option<String>,
    /// Where Postfix accepts mail for the test message.
    #[arg(long, default_value = "127.0.0.1:25")]
    smtp: String,
    /// The Postfix configuration directory (postconf -c); default: the default instance.
    #[arg(long)]
    postfix_config_dir: Option<PathBuf>,
}

#[derive(Default)]
struct Report {
    failed: usize,
    warned: usize,
}

impl Report {
    fn ok(&mut self, what: &str) {
        println!("ok    {what}");
    }

    fn warn(&mut self, what: &str, fix: &str) {
        self.warned += 1;
        println!("WARN  {what}\n      fix: {fix}");
    }

    fn fail(&mut self, what: &str, fix: &str) {
        self.failed += 1;
        println!("FAIL  {what}\n      fix: {fix}");
    }
}

fn postconf(dir: Option<&Path>, args: &[&str]) -> Option<String> {
    crate::postfix::postconf(dir, args).ok()
}

/// `postmap -q KEY TABLE`, run in the queue directory: a socketmap's relative unix path
/// (`socketmap:unix:postagent/socketmap.sock:…`, as chrooted daemons see it) resolves there
/// as it does for Postfix's daemons.
fn postmap_q(dir: Option<&Path>, queue_dir: &str, key: &str, table: &str) -> Option<String> {
    let mut cmd = Command::new("/usr/sbin/postmap");
    cmd.current_dir(queue_dir);
    if let Some(d) = dir {
        cmd.arg("-c").arg(d);
    }
    let out = cmd.args(["-q", key, table]).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A mail listener on TCP: who may connect. Loopback admits every local user; beyond it only
/// the allowlist stands between the network and a signing oracle.
fn check_peers(r: &mut Report, role: &str, addr: &str, peers: &postagent_core::peers::PeerList, key: &str) {
    let ip = addr.parse::<std::net::SocketAddr>().map(|a| a.ip()).ok();
    let loopback = ip.is_some_and(|ip| ip.is_loopback());
    if loopback {
        r.warn(
            &format!("{role} listens on loopback TCP {addr}: every local user can connect to it"),
            &format!("use a unix socket under Postfix's queue directory ({role_key}_listen = \"unix:/var/spool/postfix/postagent/{sock}.sock\", docs/security.md)",
                role_key = key.trim_end_matches("_peers"), sock = key.trim_end_matches("_peers")),
        );
    } else if peers.admits_anyone() || peers.is_loopback_only() {
        r.fail(
            &format!("{role} listens on {addr} beyond loopback and {key} = \"{peers}\" names no peer there"),
            &format!("set {key} to Postfix's address(es), e.g. {key} = \"192.0.2.25\""),
        );
    } else {
        r.ok(&format!("{role} on {addr} admits only {peers}"));
    }
}

fn check_socket(r: &mut Report, role: &str, listen: &ListenAddr, config: &Config) {
    match listen {
        ListenAddr::Tcp(addr) => match std::net::TcpStream::connect_timeout(
            &addr.parse().unwrap_or_else(|_| std::net::SocketAddr::from(([127, 0, 0, 1], 0))),
            Duration::from_secs(2),
        ) {
            Ok(_) => r.ok(&format!("{role} accepts connections on {addr}")),
            Err(e) => {
                r.fail(&format!("{role} on {addr}: {e}"), "start postagent (systemctl start postagent)")
            }
        },
        ListenAddr::Unix(path) => {
            let Ok(meta) = std::fs::metadata(path) else {
                r.fail(
                    &format!("{role} socket {} does not exist", path.display()),
                    "start postagent (systemctl start postagent)",
                );
                return;
            };
            if !meta.file_type().is_socket() {
                r.fail(
                    &format!("{} is not a socket", path.display()),
                    "remove the file; postagent creates the socket",
                );
                return;
            }
            let mode = meta.permissions().mode() & 0o777;
            if config.unix_socket_mode.0 != mode {
                r.warn(
                    &format!(
                        "{} has mode {mode:04o}, configured {}",
                        path.display(),
                        config.unix_socket_mode
                    ),
                    "restart postagent; it sets the mode when it creates the socket",
                );
            }
            if mode & 0o006 != 0 {
                r.warn(
                    &format!("{} is world-accessible ({mode:04o})", path.display()),
                    "unix_socket_mode = \"0660\"",
                );
            }
            let group_ok = config.unix_socket_group.is_empty()
                || crate::serve::group_id(&config.unix_socket_group) == Some(meta.gid());
            if !group_ok {
                r.fail(
                    &format!("{} belongs to group {}, not {}", path.display(), meta.gid(), config.unix_socket_group),
                    "check unix_socket_group and that postagent may use that group (SupplementaryGroups=postfix)",
                );
            }
            match std::os::unix::net::UnixStream::connect(path) {
                Ok(_) => r.ok(&format!("{role} accepts connections on unix:{}", path.display())),
                Err(e) => r.fail(&format!("{role} socket {}: {e}", path.display()), "start postagent"),
            }
        }
    }
}

fn endpoint(listen: &Option<ListenAddr>, queue_dir: &str) -> Option<String> {
    listen.as_ref().map(|a| crate::postfix::endpoint(a, queue_dir))
}

/// Agents looked up in `relay_recipient_maps`.
const SAMPLE_AGENTS: usize = 5;

fn check_postfix(r: &mut Report, config: &Config, dir: Option<&Path>, domains: &[String], agents: &[String]) {
    let Some(queue_dir) = postconf(dir, &["-h", "queue_directory"]) else {
        r.fail(
            "postconf does not answer",
            "install Postfix (apt install postfix), or pass --postfix-config-dir",
        );
        return;
    };
    let setup = "postagent postfix setup --apply && systemctl reload postfix";
    let milters = postconf(dir, &["-h", "smtpd_milters"]).unwrap_or_default();
    match endpoint(&config.milter_listen, &queue_dir) {
        Some(m) if milters.split([',', ' ']).any(|x| x == m) => r.ok(&format!("smtpd_milters includes {m}")),
        Some(m) => r.fail(&format!("smtpd_milters ({milters:?}) does not include {m}"), setup),
        None => r.fail(
            "milter_listen is not set",
            "milter_listen = \"unix:/var/spool/postfix/postagent/milter.sock\"",
        ),
    }
    match postconf(dir, &["-h", "milter_default_action"]).as_deref() {
        Some("tempfail") => r.ok("milter_default_action = tempfail"),
        Some(other) => r.warn(
            &format!("milter_default_action = {other}: while postagent is down, mail is not deferred"),
            "postconf -e milter_default_action=tempfail (docs/postfix.md)",
        ),
        None => {}
    }
    let lmtp = if config.lmtp_transport.is_empty() {
        endpoint(&config.lmtp_listen, &queue_dir)
            .map(|e| format!("{}:{e}", postagent_core::config::TRANSPORT))
            .unwrap_or_default()
    } else {
        config.lmtp_transport.clone()
    };
    let tables = |key: &str| -> Vec<String> {
        postconf(dir, &["-h", key])
            .unwrap_or_default()
            .split([',', ' '])
            .filter(|t| t.contains(':'))
            .map(str::to_owned)
            .collect()
    };
    let (transports, relays) = (tables("transport_maps"), tables("relay_domains"));
    let relay_list = postconf(dir, &["-h", "relay_domains"]).unwrap_or_default();
    for d in domains {
        let routed = transports.iter().find_map(|t| postmap_q(dir, &queue_dir, d, t));
        match routed {
            Some(hop) if hop == lmtp => r.ok(&format!("{d} is routed to {hop}")),
            Some(hop) => r.fail(&format!("{d} is routed to {hop}, not {lmtp}"), setup),
            None => r.fail(&format!("{d} has no transport_maps entry"), setup),
        }
        let relayed = relay_list.split([',', ' ']).any(|x| x == d)
            || relays.iter().any(|t| postmap_q(dir, &queue_dir, d, t).is_some());
        if relayed {
            r.ok(&format!("{d} is in relay_domains"));
        } else {
            r.fail(&format!("{d} is not in relay_domains: Postfix refuses its mail"), setup);
        }
    }
    // Postfix itself refuses unknown agents only when it can look them up.
    let recipients = tables("relay_recipient_maps");
    for a in agents {
        match recipients.iter().find_map(|t| postmap_q(dir, &queue_dir, a, t)) {
            Some(_) => r.ok(&format!("{a} is in relay_recipient_maps")),
            None if recipients.is_empty() => r.warn(
                "relay_recipient_maps is empty: Postfix accepts mail for agents that do not exist and only the milter refuses it",
                setup,
            ),
            None => r.fail(&format!("{a} is not in relay_recipient_maps: Postfix refuses its mail"), setup),
        }
        if recipients.is_empty() {
            break;
        }
    }
    let non_smtpd = postconf(dir, &["-h", "non_smtpd_milters"]).unwrap_or_default();
    match endpoint(&config.milter_listen, &queue_dir) {
        Some(m) if non_smtpd.split([',', ' ']).any(|x| x == m) => r.ok(&format!("non_smtpd_milters includes {m}")),
        Some(m) => r.warn(
            &format!("non_smtpd_milters ({non_smtpd:?}) does not include {m}: mail submitted with sendmail is not checked"),
            setup,
        ),
        None => {}
    }
    match crate::postfix::originating(config, &queue_dir) {
        Ok(o) => match postconf(dir, &["-M", &o.key]) {
            Some(s) if s.contains("milter_macro_daemon_name=ORIGINATING") => {
                r.ok(&format!("originating listener {}", o.key))
            }
            _ => r.fail(&format!("no originating listener {}: agents cannot send", o.key), setup),
        },
        Err(e) => r.fail(&format!("{e:#}"), "set submission_relay"),
    }
}

async fn check_dns(r: &mut Report, config: &Config, domains: &[String]) {
    let Ok(resolver) = postagent_core::dns::Resolver::new(config.dns_server, config.dns_timeout) else {
        r.fail("cannot build the DNS resolver", "check dns_server");
        return;
    };
    let want = config.mail_hostname();
    for d in domains {
        match resolver.mx(d).await {
            Ok(hosts) if hosts.iter().any(|(_, h)| *h == want) => r.ok(&format!("{d} MX points at {want}")),
            Ok(hosts) if hosts.is_empty() => {
                r.warn(&format!("{d} has no MX"), &format!("publish: {d}. MX 10 {want}."))
            }
            Ok(hosts) => r.warn(
                &format!(
                    "{d} MX is {:?}, not {want}",
                    hosts.iter().map(|(_, h)| h.as_str()).collect::<Vec<_>>()
                ),
                "point the MX at this host, or set mail_hostname",
            ),
            Err(e) => {
                r.fail(&format!("DNS lookup of {d} MX failed: {e}"), "check dns_server and the resolver")
            }
        }
    }
}

async fn send_test(r: &mut Report, store: &dyn Store, smtp: &str, agent: &str) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let token = postagent_core::ids::mint("doctor-", 8);
    let conversation = async {
        let stream = tokio::net::TcpStream::connect(smtp).await?;
        let (rd, mut w) = stream.into_split();
        let mut rd = BufReader::new(rd);
        let mut line = String::new();
        let mut expect = async |cmd: Option<String>, want: &str| -> std::io::Result<String> {
            if let Some(c) = cmd {
                w.write_all(format!("{c}\r\n").as_bytes()).await?;
            }
            loop {
                line.clear();
                rd.read_line(&mut line).await?;
                if line.as_bytes().get(3) != Some(&b'-') {
                    break;
                }
            }
            if !line.starts_with(want) {
                return Err(std::io::Error::other(format!("Postfix answered {:?}", line.trim_end())));
            }
            Ok(line.trim_end().to_owned())
        };
        expect(None, "220").await?;
        expect(Some("EHLO doctor.postagent".into()), "250").await?;
        expect(Some("MAIL FROM:<>".into()), "250").await?;
        expect(Some(format!("RCPT TO:<{agent}>")), "250").await?;
        expect(Some("DATA".into()), "354").await?;
        let body = format!(
            "From: postagent doctor <postmaster@localhost>\r\nTo: {agent}\r\nSubject: {token}\r\n\r\npostagent doctor round trip\r\n."
        );
        let queued = expect(Some(body), "250").await?;
        let _ = w.write_all(b"QUIT\r\n").await;
        Ok::<_, std::io::Error>(queued)
    };
    let queued = match tokio::time::timeout(Duration::from_secs(30), conversation).await {
        Ok(Ok(q)) => q,
        Ok(Err(e)) => {
            return r.fail(
                &format!("test message to {agent} via {smtp}: {e}"),
                "read Postfix's log for the reason",
            );
        }
        Err(_) => {
            return r
                .fail(&format!("Postfix at {smtp} did not answer"), "is Postfix running? --smtp HOST:PORT");
        }
    };
    let Some(agent_row) = store.find_live_agent(agent).await.ok().flatten() else {
        return r.fail(&format!("{agent} is not an agent"), "postagent admin agents list");
    };
    let filter = MessageFilter {
        subject_contains: Some(token.clone()),
        direction: Some(postagent_core::vocab::Direction::Inbound),
        ..Default::default()
    };
    for _ in 0..60 {
        let found = store
            .list_messages(&agent_row.account_id, agent, &filter, &PageQuery { after: None, limit: 1 })
            .await
            .unwrap_or_default();
        if let Some(m) = found.first() {
            let _ = store.set_message_trashed(&m.id, Some(postagent_core::time::Timestamp::now())).await;
            return r.ok(&format!(
                "test message through Postfix stored for {agent} ({queued}); moved to the trash"
            ));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    r.fail(
        &format!("test message accepted by Postfix ({queued}) but not stored within 30 s"),
        "grep the queue id in the mail log: the transport, the LMTP socket or the milter",
    );
}

pub async fn run(config: Config, file: Option<PathBuf>, args: DoctorArgs) -> anyhow::Result<()> {
    let mut r = Report::default();
    r.ok(&format!(
        "configuration valid ({})",
        file.as_deref().map_or("defaults, no file".into(), |p| p.display().to_string())
    ));
    let secret_path = config.hmac_secret_path();
    match std::fs::metadata(&secret_path) {
        Ok(m) if m.permissions().mode() & 0o077 != 0 => r.fail(
            &format!(
                "{} is readable by others ({:04o})",
                secret_path.display(),
                m.permissions().mode() & 0o777
            ),
            &format!("chmod 0600 {}", secret_path.display()),
        ),
        Ok(_) => r.ok(&format!("deployment secret {} is private", secret_path.display())),
        Err(_) => r.warn(
            &format!("no deployment secret at {}", secret_path.display()),
            "postagent serve creates it on first start",
        ),
    }
    let shared = match open_shared(&config).await {
        Ok(s) => s,
        Err(e) => {
            r.fail(&format!("database: {e:#}"), "check database_url and that the database server runs");
            println!("\n{} failed, {} warnings", r.failed, r.warned);
            anyhow::bail!("doctor found problems");
        }
    };
    let store: &dyn Store = shared.store.as_ref();
    r.ok(&format!("database reachable, migrations applied ({})", store.backend_name()));
    let domains = postagent_core::service::agent_domains(store, &config.shared_domain).await?;
    // A few agents of each account (at most SAMPLE_AGENTS in all) for the recipient map.
    let mut sample = Vec::new();
    for account in store.list_accounts().await? {
        if sample.len() >= SAMPLE_AGENTS {
            break;
        }
        let page = PageQuery { after: None, limit: 2 };
        sample.extend(store.list_agents(&account.id, false, &page).await?.into_iter().map(|a| a.email));
    }
    sample.truncate(SAMPLE_AGENTS);
    let first_agent = sample.first().cloned();
    for (role, listen) in [
        ("milter", config.milter_listen.as_ref()),
        ("socketmap", config.socketmap_listen.as_ref()),
        ("LMTP", config.lmtp_listen.as_ref()),
        ("API", Some(&config.api_listen)),
    ] {
        if let Some(listen) = listen {
            check_socket(&mut r, role, listen, &config);
        }
    }
    for (role, listen, peers, key) in [
        ("milter", &config.milter_listen, &config.milter_peers, "milter_peers"),
        ("LMTP", &config.lmtp_listen, &config.lmtp_peers, "lmtp_peers"),
        ("socketmap", &config.socketmap_listen, &config.socketmap_peers, "socketmap_peers"),
    ] {
        if let Some(ListenAddr::Tcp(addr)) = listen {
            check_peers(&mut r, role, addr, peers, key);
        }
    }
    check_postfix(&mut r, &config, args.postfix_config_dir.as_deref(), &domains, &sample);
    check_dns(&mut r, &config, &domains).await;
    if args.send_test {
        match args.agent.or(first_agent) {
            Some(agent) => send_test(&mut r, store, &args.smtp, &agent).await,
            None => r.fail("--send-test needs an agent and there is none", "postagent admin agents add …"),
        }
    }
    shared.store.close().await;
    println!("\n{} failed, {} warnings", r.failed, r.warned);
    if r.failed > 0 {
        anyhow::bail!("doctor found problems");
    }
    Ok(())
}
