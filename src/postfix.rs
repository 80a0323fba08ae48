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
//! - `relay_domains`, `transport_maps` and `relay_recipient_maps` gain postagent's socketmap
//!   tables (`domains`, `transport`, `recipients`): Postfix asks postagent, which answers from
//!   the store, so domains and agents created later need no new setup run and no reload. An
//!   instance whose `relay_recipient_maps` was empty gets `recipients-or-foreign`, which
//!   keeps accepting every recipient of its other relay domains. The `texthash:` table of
//!   earlier versions (`postagent_domains`) is taken out and its file deleted;
//! - `master.cf` gains postagent's own LMTP delivery transport, `postagent` (an `lmtp`
//!   client), which the transport map names, so its tuning
//!   (`postagent_destination_concurrency_failed_cohort_limit`) touches no other LMTP
//!   destination: a restart of postagent then costs queued mail seconds, not a queue run
//!   (with the listeners handed over by systemd, docs/postfix-maps.md);
//! - `master.cf` gains the originating listener at `submission_relay`: a `unix` service in
//!   `$queue_directory/public/` (only root, postfix and the postdrop group can connect: the
//!   shipped choice) or a loopback `inet` one.
//!
//! The values it replaces are saved in `postagent.previous` beside main.cf, and remove puts
//! them back, so setup followed by remove leaves the instance as it was.

use anyhow::{Context, bail};
use clap::Subcommand;
use postagent_core::Config;
use postagent_core::config::ListenAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

const POSTCONF: &str = "/usr/sbin/postconf";
/// The `texthash:` table earlier versions wrote; setup migrates it away.
const DOMAINS_FILE: &str = "postagent_domains";
const PREVIOUS_FILE: &str = "postagent.previous";
/// Settings setup owns outright (their earlier values are saved and restored).
const OWNED: &[(&str, &str)] = &[
    // A crash cuts every LMTP session at once: Postfix must not take that one failed cohort
    // for a dead destination and defer the whole queue until its next queue run.
    ("postagent_destination_concurrency_failed_cohort_limit", "10"),
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
    /// postagent's LMTP delivery transport: its `master.cf` line and `service/type` key.
    transport: String,
    transport_key: String,
    /// An earlier version's `texthash:` table, to delete once main.cf no longer names it.
    old_domains_file: PathBuf,
    /// What the operator should know (a differing `recipient_delimiter`, …).
    notes: Vec<String>,
    /// `postagent.previous` beside main.cf, and its text when a setup was applied before.
    previous_path: PathBuf,
    previous_text: Option<String>,
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

fn plan(config: &Config, dir: Option<&Path>) -> anyhow::Result<Plan> {
    let config_dir = PathBuf::from(postconf(dir, &["-h", "config_directory"])?);
    let queue_dir = postconf(dir, &["-h", "queue_directory"])?;
    let (Some(milter), Some(lmtp), Some(maps)) =
        (&config.milter_listen, &config.lmtp_listen, &config.socketmap_listen)
    else {
        bail!("milter_listen, lmtp_listen and socketmap_listen must be set: Postfix needs all three");
    };
    let milter = endpoint(milter, &queue_dir);
    let maps = endpoint(maps, &queue_dir);
    let table = |name: &str| format!("socketmap:{maps}:{name}");
    let old_domains_file = config_dir.join(DOMAINS_FILE);
    let old_table = format!("texthash:{}", old_domains_file.display());
    // What an earlier setup added (its endpoint may have changed since): replaced, not kept.
    let previous_path = config_dir.join(PREVIOUS_FILE);
    let previous_text = std::fs::read_to_string(&previous_path).ok();
    let previous: serde_json::Value =
        previous_text.as_deref().and_then(|t| serde_json::from_str(t).ok()).unwrap_or_default();
    let mut notes = Vec::new();
    let hop = format!("{}:{}", postagent_core::config::TRANSPORT, endpoint(lmtp, &queue_dir));
    if config.lmtp_transport() != hop {
        notes.push(format!(
            "postagent's transport map answers {:?}; this instance reaches its LMTP as {hop:?}: set lmtp_transport = \"{hop}\"",
            config.lmtp_transport()
        ));
    }
    // Postfix's empty default leaves extensions to postagent (its maps strip them for agent
    // domains); a delimiter Postfix does use must be postagent's too.
    let delimiter = postconf(dir, &["-h", "recipient_delimiter"])?;
    if !delimiter.is_empty() && delimiter != config.recipient_delimiter {
        notes.push(format!(
            "Postfix's recipient_delimiter is {delimiter:?}, postagent's {:?}: set recipient_delimiter = \"{delimiter}\" in postagent's configuration so both read extensions alike",
            config.recipient_delimiter
        ));
    }

    let mut main = Vec::new();
    let mut add_to_list = |key: &str, item: &str| -> anyhow::Result<()> {
        // A default may be an expression (relay_domains': `${{$compatibility_level} <level
        // {2} ? …}`): extend what it means now, not its text.
        let explicit = postconf(dir, &["-n", "-h", key])?;
        let now = if explicit.is_empty() { postconf(dir, &["-x", "-h", key])? } else { explicit };
        // An earlier version's table goes, and so does what an earlier setup added here (an
        // endpoint since changed); the current item replaces them.
        let earlier = previous["items"][key].as_str().unwrap_or_default();
        let mut items: Vec<String> = list(&now)
            .into_iter()
            .filter(|i| *i != old_table && (earlier.is_empty() || i != earlier))
            .collect();
        if !items.iter().any(|i| i == item) {
            items.push(item.to_owned());
        }
        main.push(Change { key: key.to_owned(), now, want: items.join(", "), item: Some(item.to_owned()) });
        Ok(())
    };
    add_to_list("smtpd_milters", &milter)?;
    add_to_list("non_smtpd_milters", &milter)?;
    add_to_list("relay_domains", &table("domains"))?;
    add_to_list("transport_maps", &table("transport"))?;
    // With relay_recipient_maps empty, Postfix accepts any recipient of a relay domain: the
    // permissive map keeps that for the instance's other relay domains (postagent's own
    // recipients are checked either way).
    let recipients = postconf(dir, &["-h", "relay_recipient_maps"])?;
    let ours = [table("recipients"), table("recipients-or-foreign")];
    let recipient_map = match list(&recipients).into_iter().find(|i| ours.contains(i)) {
        Some(already) => already,
        None if list(&recipients).is_empty() => table("recipients-or-foreign"),
        None => table("recipients"),
    };
    add_to_list("relay_recipient_maps", &recipient_map)?;
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
        transport: format!("{t}/unix={t} unix - - {chroot} - - lmtp", t = postagent_core::config::TRANSPORT),
        transport_key: format!("{}/unix", postagent_core::config::TRANSPORT),
        old_domains_file,
        notes,
        previous_path,
        previous_text,
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
    let p = plan(config, dir)?;
    let c = dash_c(dir);
    for note in &p.notes {
        println!("# note: {note}");
    }
    for ch in &p.main {
        if ch.now == ch.want {
            println!("# {} is already {:?}", ch.key, ch.want);
        } else {
            println!("postconf{c} -e '{} = {}'", ch.key, ch.want);
        }
    }
    println!("postconf{c} -M '{}'", p.transport);
    println!("postconf{c} -M '{}'", p.service);
    for o in &p.service_options {
        println!("postconf{c} -P '{o}'");
    }
    println!("postfix{c} reload");
    if !apply {
        println!("# Nothing changed. Re-run with --apply to make these changes.");
        return Ok(());
    }
    let previous_path = &p.previous_path;
    // The first setup's "before" is what remove restores; a repeated setup keeps it.
    if p.previous_text.is_none() && p.service_present {
        bail!(
            "master.cf already has a service at {}: choose another submission_relay, or remove that service first",
            config.submission_relay
        );
    }
    // The first setup's "before" is what remove restores. A later setup (a new version adding
    // a parameter, or replacing the texthash table) adds what it newly touches, and records
    // the items it owns now, so remove takes out exactly those.
    let mut saved: serde_json::Value = match &p.previous_text {
        Some(text) => serde_json::from_str(text).context("postagent.previous is not JSON")?,
        None => serde_json::json!({"main": {}, "items": {}, "service": p.service_key}),
    };
    if saved.get("transport_service").is_none() {
        if postconf(dir, &["-M", &p.transport_key]).is_ok_and(|s| !s.is_empty()) {
            bail!("master.cf already has a service {}: remove it first", p.transport_key);
        }
        saved["transport_service"] = serde_json::json!(p.transport_key);
    }
    for ch in &p.main {
        if saved["main"].get(&ch.key).is_none() {
            // Only what main.cf set explicitly is restored as a value; a default is restored
            // by removing the line again.
            let explicit = postconf(dir, &["-n", &ch.key])?;
            saved["main"][&ch.key] = serde_json::json!((!explicit.is_empty()).then(|| ch.now.clone()));
        }
        if let Some(item) = &ch.item {
            saved["items"][&ch.key] = serde_json::json!(item);
        }
    }
    std::fs::write(previous_path, saved.to_string())
        .with_context(|| format!("cannot write {}", previous_path.display()))?;
    for ch in p.main.iter().filter(|ch| ch.now != ch.want) {
        postconf(dir, &["-e", &format!("{} = {}", ch.key, ch.want)])?;
    }
    postconf(dir, &["-M", &p.transport])?;
    postconf(dir, &["-M", &p.service])?;
    for o in &p.service_options {
        postconf(dir, &["-P", o])?;
    }
    if p.old_domains_file.exists() {
        std::fs::remove_file(&p.old_domains_file)
            .with_context(|| format!("cannot remove {}", p.old_domains_file.display()))?;
        println!("# Removed {}: Postfix now asks postagent.", p.old_domains_file.display());
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
    let services: Vec<String> = ["service", "transport_service"]
        .iter()
        .filter_map(|k| saved[*k].as_str().map(str::to_owned))
        .collect();
    for s in &services {
        println!("postconf{c} -MX '{s}'");
    }
    if config_dir.join(DOMAINS_FILE).exists() {
        println!("rm {}", config_dir.join(DOMAINS_FILE).display());
    }
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
    for s in &services {
        if postconf(dir, &["-M", s]).is_ok_and(|l| !l.is_empty()) {
            postconf(dir, &["-MX", s])?;
        }
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
