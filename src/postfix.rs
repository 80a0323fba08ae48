//! `postagent postfix setup [--apply]` and `postagent postfix remove [--apply]`: the exact,
//! idempotent `postconf` changes that plug postagent into a Postfix instance (the default one,
//! or `-c DIR`), printed for review and applied on request.
//!
//! What setup changes, derived from postagent's own configuration:
//! - `smtpd_milters` and `non_smtpd_milters` gain postagent's milter (other milters stay, in
//!   order): mail submitted with `sendmail` is checked and signed too, so a signed set copied
//!   into a locally submitted message is replaced, never delivered;
//! - `milter_default_action`, `milter_protocol` and the milter timeouts as
//!   `postfix-conf/main.cf.fragment` explains them;
//! - `relay_domains` and `transport_maps` gain one table, `postagent_domains` in the config
//!   directory (`texthash:`, no postmap), mapping every agent domain to postagent's LMTP;
//! - `master.cf` gains the originating listener at `submission_relay`: a `unix` service in
//!   `$queue_directory/public/` (only root, postfix and the postdrop group can connect: the
//!   shipped choice) or a loopback `inet` one.
//!
//! The values it replaces are saved in `postagent.previous` beside main.cf, and remove puts
//! them back, so setup followed by remove leaves the instance as it was.

use crate::serve::open_shared;
use anyhow::{Context, bail};
use clap::Subcommand;
use postagent_core::Config;
use postagent_core::config::ListenAddr;
use postagent_core::store::Store;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const POSTCONF: &str = "/usr/sbin/postconf";
const DOMAINS_FILE: &str = "postagent_domains";
const PREVIOUS_FILE: &str = "postagent.previous";
/// Settings setup owns outright (their earlier values are saved and restored).
const OWNED: &[(&str, &str)] = &[
    ("milter_default_action", "tempfail"),
    ("milter_protocol", "6"),
    ("milter_connect_timeout", "10s"),
    ("milter_command_timeout", "30s"),
    ("milter_content_timeout", "120s"),
];

#[derive(Subcommand)]
pub enum PostfixCommand {
    /// Print (and with --apply, make) the main.cf and master.cf changes.
    Setup {
        #[arg(long)]
        apply: bool,
        /// The Postfix configuration directory (postconf -c); default: the default instance.
        #[arg(long)]
        config_dir: Option<PathBuf>,
    },
    /// Undo what setup did (print, and with --apply, make the changes).
    Remove {
        #[arg(long)]
        apply: bool,
        #[arg(long)]
        config_dir: Option<PathBuf>,
    },
}

/// `postconf [-c DIR] ARGS`, stdout on success.
pub(crate) fn postconf(dir: Option<&Path>, args: &[&str]) -> anyhow::Result<String> {
    let mut cmd = Command::new(POSTCONF);
    if let Some(d) = dir {
        cmd.arg("-c").arg(d);
    }
    let out =
        cmd.args(args).output().with_context(|| format!("cannot run {POSTCONF}: is Postfix installed?"))?;
    if !out.status.success() {
        bail!("postconf {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// A comma/space separated Postfix list.
fn list(value: &str) -> Vec<String> {
    value.split([',', ' ', '\t', '\n']).map(str::trim).filter(|s| !s.is_empty()).map(str::to_owned).collect()
}

/// How Postfix should reach a postagent listener: `unix:` paths under the queue directory
/// are written relative to it (chrooted daemons see them that way).
pub(crate) fn endpoint(addr: &ListenAddr, queue_dir: &str) -> String {
    addr.postfix_endpoint(queue_dir)
}

/// One change: the parameter, its value now, and the value setup wants; `item` is what setup
/// adds to a list parameter (remove takes exactly that out again).
struct Change {
    key: String,
    now: String,
    want: String,
    item: Option<String>,
}

struct Plan {
    main: Vec<Change>,
    service: String,
    service_options: Vec<String>,
    service_present: bool,
    service_key: String,
    domains_file: PathBuf,
    domains: String,
}

/// The originating listener as `master.cf` names it: its `service/type` key and the service
/// name to write on its line.
pub(crate) struct Originating {
    pub key: String,
    pub name: String,
    pub kind: &'static str,
}

/// Where `submission_relay` puts the originating listener. A unix socket must be
/// `$queue_directory/public/NAME`: Postfix's master creates unix services there (mode 0666 in
/// a directory only root, postfix and the postdrop group may enter).
pub(crate) fn originating(config: &Config, queue_dir: &str) -> anyhow::Result<Originating> {
    match &config.submission_relay {
        ListenAddr::Tcp(a) => Ok(Originating { key: format!("{a}/inet"), name: a.clone(), kind: "inet" }),
        ListenAddr::Unix(p) => {
            let public = Path::new(queue_dir).join("public");
            let name = p
                .strip_prefix(&public)
                .ok()
                .and_then(|n| n.to_str())
                .filter(|n| !n.is_empty() && !n.contains('/'))
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "submission_relay = \"unix:{}\": Postfix creates unix services in {}; use unix:{}/postagent-submit",
                        p.display(),
                        public.display(),
                        public.display()
                    )
                })?;
            Ok(Originating { key: format!("{name}/unix"), name: name.to_owned(), kind: "unix" })
        }
    }
}

async fn plan(config: &Config, dir: Option<&Path>) -> anyhow::Result<Plan> {
    let config_dir = PathBuf::from(postconf(dir, &["-h", "config_directory"])?);
    let queue_dir = postconf(dir, &["-h", "queue_directory"])?;
    let (Some(milter), Some(lmtp)) = (&config.milter_listen, &config.lmtp_listen) else {
        bail!("milter_listen and lmtp_listen must be set: Postfix needs both");
    };
    let milter = endpoint(milter, &queue_dir);
    let lmtp = format!("lmtp:{}", endpoint(lmtp, &queue_dir));
    let domains_file = config_dir.join(DOMAINS_FILE);
    let table = format!("texthash:{}", domains_file.display());

    let shared = open_shared(config).await?;
    let store: &dyn Store = shared.store.as_ref();
    let domains = postagent_core::service::agent_domains(store, &config.shared_domain).await?;
    shared.store.close().await;
    let mut text =
        String::from("# Written by `postagent postfix setup`: agent domains, relayed to postagent's LMTP.\n");
    for d in &domains {
        text.push_str(&format!("{d}\t{lmtp}\n"));
    }

    let mut main = Vec::new();
    let mut add_to_list = |key: &str, item: &str| -> anyhow::Result<()> {
        // A default may be an expression (relay_domains': `${{$compatibility_level} <level
        // {2} ? …}`): extend what it means now, not its text.
        let explicit = postconf(dir, &["-n", "-h", key])?;
        let now = if explicit.is_empty() { postconf(dir, &["-x", "-h", key])? } else { explicit };
        let mut items = list(&now);
        if !items.iter().any(|i| i == item) {
            items.push(item.to_owned());
        }
        main.push(Change { key: key.to_owned(), now, want: items.join(", "), item: Some(item.to_owned()) });
        Ok(())
    };
    add_to_list("smtpd_milters", &milter)?;
    add_to_list("non_smtpd_milters", &milter)?;
    add_to_list("relay_domains", &table)?;
    add_to_list("transport_maps", &table)?;
    for (key, value) in OWNED {
        main.push(Change {
            key: (*key).to_owned(),
            now: postconf(dir, &["-h", key])?,
            want: (*value).to_owned(),
            item: None,
        });
    }

    let o = originating(config, &queue_dir)?;
    let service = &o.key;
    let present = postconf(dir, &["-M", service]).is_ok_and(|s| !s.is_empty());
    // Chrooted like the instance's own smtpd (Debian: yes; a private instance: often no).
    let chroot = postconf(dir, &["-M"])
        .unwrap_or_default()
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.len() > 7 && f[1] == "inet" && f[7] == "smtpd" && f[0] != o.name)
        .map(|f| f[4].to_owned())
        .filter(|c| c == "y" || c == "n")
        .unwrap_or_else(|| "y".into());
    // Postfix treats a unix-socket client as localhost[127.0.0.1], so mynetworks (which
    // always holds the loopback network unless an operator removes it) admits both kinds.
    // smtpd_relay_restrictions stays the instance's own: the site's outbound policy applies.
    let restrictions = [
        "smtpd_client_restrictions=permit_mynetworks,reject",
        "smtpd_recipient_restrictions=permit_mynetworks,reject",
    ];
    let mut service_options = vec![
        format!("{service}/syslog_name=postfix/postagent"),
        format!("{service}/milter_macro_daemon_name=ORIGINATING"),
    ];
    service_options.extend(restrictions.iter().map(|r| format!("{service}/{r}")));
    service_options.push(format!("{service}/smtpd_tls_security_level=none"));
    Ok(Plan {
        main,
        service_present: present,
        service: format!("{service}={} {} n - {chroot} - - smtpd", o.name, o.kind),
        service_options,
        service_key: service.clone(),
        domains_file,
        domains: text,
    })
}

fn dash_c(dir: Option<&Path>) -> String {
    dir.map(|d| format!(" -c {}", d.display())).unwrap_or_default()
}

pub async fn run(config: Config, cmd: PostfixCommand) -> anyhow::Result<()> {
    match cmd {
        PostfixCommand::Setup { apply, config_dir } => setup(&config, config_dir.as_deref(), apply).await,
        PostfixCommand::Remove { apply, config_dir } => remove(config_dir.as_deref(), apply),
    }
}

async fn setup(config: &Config, dir: Option<&Path>, apply: bool) -> anyhow::Result<()> {
    let p = plan(config, dir).await?;
    let c = dash_c(dir);
    println!("# {}: {} agent domain(s)", p.domains_file.display(), p.domains.lines().count() - 1);
    print!("{}", p.domains.lines().skip(1).map(|l| format!("#   {l}\n")).collect::<String>());
    for ch in &p.main {
        if ch.now == ch.want {
            println!("# {} is already {:?}", ch.key, ch.want);
        } else {
            println!("postconf{c} -e '{} = {}'", ch.key, ch.want);
        }
    }
    println!("postconf{c} -M '{}'", p.service);
    for o in &p.service_options {
        println!("postconf{c} -P '{o}'");
    }
    println!("postfix{c} reload");
    if !apply {
        println!("# Nothing changed. Re-run with --apply to make these changes.");
        return Ok(());
    }
    let config_dir = PathBuf::from(postconf(dir, &["-h", "config_directory"])?);
    let previous_path = config_dir.join(PREVIOUS_FILE);
    // The first setup's "before" is what remove restores; a repeated setup keeps it.
    if !previous_path.exists() && p.service_present {
        bail!(
            "master.cf already has a service at {}: choose another submission_relay, or remove that service first",
            config.submission_relay
        );
    }
    if !previous_path.exists() {
        // Only what main.cf set explicitly is restored as a value; a default is restored by
        // removing the line again.
        let mut before: BTreeMap<&str, Option<String>> = BTreeMap::new();
        for ch in &p.main {
            let explicit = postconf(dir, &["-n", &ch.key])?;
            before.insert(ch.key.as_str(), (!explicit.is_empty()).then(|| ch.now.clone()));
        }
        let items: BTreeMap<&str, &str> =
            p.main.iter().filter_map(|ch| ch.item.as_deref().map(|i| (ch.key.as_str(), i))).collect();
        let saved = serde_json::json!({
            "main": before,
            "items": items,
            "service": p.service_key,
        });
        std::fs::write(&previous_path, saved.to_string())
            .with_context(|| format!("cannot write {}", previous_path.display()))?;
    }
    std::fs::write(&p.domains_file, &p.domains)
        .with_context(|| format!("cannot write {}", p.domains_file.display()))?;
    for ch in p.main.iter().filter(|ch| ch.now != ch.want) {
        postconf(dir, &["-e", &format!("{} = {}", ch.key, ch.want)])?;
    }
    postconf(dir, &["-M", &p.service])?;
    for o in &p.service_options {
        postconf(dir, &["-P", o])?;
    }
    println!("# Applied. Run `postfix{c} reload` (or `systemctl reload postfix`) to load it.");
    Ok(())
}

fn remove(dir: Option<&Path>, apply: bool) -> anyhow::Result<()> {
    let config_dir = PathBuf::from(postconf(dir, &["-h", "config_directory"])?);
    let previous_path = config_dir.join(PREVIOUS_FILE);
    let text = std::fs::read_to_string(&previous_path).with_context(|| {
        format!(
            "{} not found: setup was not applied to this instance (nothing to remove)",
            previous_path.display()
        )
    })?;
    let saved: serde_json::Value = serde_json::from_str(&text).context("postagent.previous is not JSON")?;
    let c = dash_c(dir);
    let mut changes: Vec<(String, Option<String>)> = Vec::new();
    let items = saved["items"].as_object().cloned().unwrap_or_default();
    for (key, value) in saved["main"].as_object().into_iter().flatten() {
        let before = value.as_str().map(str::to_owned);
        // A list setup extended loses only postagent's item: whatever was added to it since
        // stays. Other parameters get their earlier value back.
        let value = match items.get(key).and_then(|i| i.as_str()) {
            Some(item) => {
                let rest: Vec<String> =
                    list(&postconf(dir, &["-h", key])?).into_iter().filter(|x| x != item).collect();
                if rest.is_empty() && before.is_none() { None } else { Some(rest.join(", ")) }
            }
            None => before,
        };
        match &value {
            Some(v) => println!("postconf{c} -e '{key} = {v}'"),
            None => println!("postconf{c} -X {key}"),
        }
        changes.push((key.clone(), value));
    }
    // Exactly the service setup added, never one found by its options (Debian's own
    // submission service also says milter_macro_daemon_name=ORIGINATING).
    let relay_service = saved["service"].as_str().map(str::to_owned);
    if let Some(s) = &relay_service {
        println!("postconf{c} -MX '{s}'");
    }
    println!("rm {}", config_dir.join(DOMAINS_FILE).display());
    println!("postfix{c} reload");
    if !apply {
        println!("# Nothing changed. Re-run with --apply to make these changes.");
        return Ok(());
    }
    for (key, value) in &changes {
        match value {
            Some(v) => postconf(dir, &["-e", &format!("{key} = {v}")])?,
            None => postconf(dir, &["-X", key])?,
        };
    }
    if let Some(s) = &relay_service
        && postconf(dir, &["-M", s]).is_ok_and(|l| !l.is_empty())
    {
        postconf(dir, &["-MX", s])?;
    }
    let _ = std::fs::remove_file(config_dir.join(DOMAINS_FILE));
    std::fs::remove_file(&previous_path)
        .with_context(|| format!("cannot remove {}", previous_path.display()))?;
    println!("# Removed. Run `postfix{c} reload` to load it.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_for_postfix() {
        assert_eq!(
            endpoint(&ListenAddr::parse("127.0.0.1:8894").expect("address"), "/var/spool/postfix"),
            "inet:127.0.0.1:8894"
        );
        assert_eq!(
            endpoint(
                &ListenAddr::parse("unix:/var/spool/postfix/postagent/milter.sock").expect("address"),
                "/var/spool/postfix"
            ),
            "unix:postagent/milter.sock"
        );
        assert_eq!(
            endpoint(&ListenAddr::parse("unix:/run/pa.sock").expect("address"), "/var/spool/postfix"),
            "unix:/run/pa.sock"
        );
        assert_eq!(list("a, b\tc,,d"), vec!["a", "b", "c", "d"]);
    }
}
