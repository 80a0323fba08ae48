//! The mail lab: what `postagent lab`, the end-to-end tests and `bench/inbound` run on.
//!
//! Two parts, started in this order because each needs the previous one's address:
//!
//! 1. [`SampleZone`]: the loopback DNS server holding a sample sender domain
//!    ([`SENDER_DOMAIN`]) with SPF (`ip4:127.0.0.1`), an Ed25519 DKIM key and DMARC
//!    `p=reject` with strict alignment, so mail "from" it can really pass or fail. The
//!    postagent milter is pointed at this server (`dns_server`).
//! 2. [`Wiring`]: a private Postfix configured the way `postfix-conf/` tells an operator to
//!    configure theirs (the fragments are read from the repository at build time, so the
//!    lab proves the documented lines work), with the milter on `smtpd_milters`, the agent
//!    domains relayed to the LMTP next hop and the originating listener of `master.cf`.

use std::net::{Ipv4Addr, SocketAddr};

use anyhow::Context as _;
use base64::Engine as _;
use mail_auth::common::crypto::Ed25519Key;
use mail_auth::common::headers::HeaderWriter as _;
use mail_auth::dkim::DkimSigner;

use crate::dns::DnsServer;
use crate::postfix::PostfixBuilder;

/// The sample sender domain whose records [`SampleZone`] serves.
pub const SENDER_DOMAIN: &str = "sender.test";
/// A second sample domain that authenticates by DKIM only: its SPF authorises no address of
/// this host (so mail re-submitted locally cannot pass by SPF), its DMARC says `p=reject`.
pub const DKIM_ONLY_DOMAIN: &str = "far.test";
/// The DKIM selector of [`SENDER_DOMAIN`]'s key.
pub const DKIM_SELECTOR: &str = "lab";
/// The headers [`SampleZone::sign`] covers (RFC 6376 §5.4.1's recommended core set).
const SIGNED_HEADERS: [&str; 5] = ["From", "To", "Subject", "Date", "Message-ID"];

/// `main.cf` lines an operator adds (postfix-conf/main.cf.fragment), applied by [`Wiring`]
/// except the site-specific three it sets itself.
const MAIN_CF_FRAGMENT: &str = include_str!("../../postfix-conf/main.cf.fragment");
/// The originating listener an operator adds (postfix-conf/master.cf.fragment).
const MASTER_CF_FRAGMENT: &str = include_str!("../../postfix-conf/master.cf.fragment");
/// The service written in [`MASTER_CF_FRAGMENT`] (a unix socket in Postfix's `public/`),
/// replaced by the lab's loopback TCP listener so a test can submit to it directly.
const FRAGMENT_ORIGINATING: &str = "postagent-submit unix";

/// The loopback DNS server with [`SENDER_DOMAIN`]'s SPF, DKIM and DMARC records.
pub struct SampleZone {
    dns: DnsServer,
    dkim_pkcs8: Vec<u8>,
}

impl SampleZone {
    /// Starts the DNS server (127.0.0.1, a free port, UDP and TCP) with a fresh DKIM key.
    pub async fn start() -> anyhow::Result<SampleZone> {
        let dns = DnsServer::start().await?;
        let dkim_pkcs8 = Ed25519Key::generate_pkcs8().map_err(|e| anyhow::anyhow!("DKIM key: {e}"))?;
        let key = Ed25519Key::from_pkcs8_der(&dkim_pkcs8).map_err(|e| anyhow::anyhow!("DKIM key: {e}"))?;
        let public = base64::engine::general_purpose::STANDARD.encode(key.public_key());
        dns.add_txt(SENDER_DOMAIN, "v=spf1 ip4:127.0.0.1 -all");
        dns.add_txt(
            &format!("{DKIM_SELECTOR}._domainkey.{SENDER_DOMAIN}"),
            &format!("v=DKIM1; k=ed25519; p={public}"),
        );
        dns.add_txt(&format!("_dmarc.{SENDER_DOMAIN}"), "v=DMARC1; p=reject; adkim=s; aspf=s");
        dns.add_txt(DKIM_ONLY_DOMAIN, "v=spf1 ip4:192.0.2.99 -all");
        dns.add_txt(
            &format!("{DKIM_SELECTOR}._domainkey.{DKIM_ONLY_DOMAIN}"),
            &format!("v=DKIM1; k=ed25519; p={public}"),
        );
        dns.add_txt(&format!("_dmarc.{DKIM_ONLY_DOMAIN}"), "v=DMARC1; p=reject");
        Ok(SampleZone { dns, dkim_pkcs8 })
    }

    /// The DNS server, to point resolvers at and to add records for other domains.
    pub fn dns(&self) -> &DnsServer {
        &self.dns
    }

    /// `message` (CRLF line ends) with a `DKIM-Signature` of [`SENDER_DOMAIN`] prepended
    /// (ed25519-sha256, relaxed/relaxed).
    pub fn sign(&self, message: &str) -> anyhow::Result<String> {
        self.sign_as(SENDER_DOMAIN, message)
    }

    /// [`Self::sign`] for `domain` ([`SENDER_DOMAIN`] or [`DKIM_ONLY_DOMAIN`]).
    pub fn sign_as(&self, domain: &str, message: &str) -> anyhow::Result<String> {
        let key =
            Ed25519Key::from_pkcs8_der(&self.dkim_pkcs8).map_err(|e| anyhow::anyhow!("DKIM key: {e}"))?;
        let signature = DkimSigner::from_key(key)
            .domain(domain)
            .selector(DKIM_SELECTOR)
            .headers(SIGNED_HEADERS)
            .sign(message.as_bytes())
            .map_err(|e| anyhow::anyhow!("DKIM signing failed: {e}"))?;
        Ok(format!("{}{message}", signature.to_header()))
    }
}

/// A message from `alice@` [`SENDER_DOMAIN`] to `to`, CRLF line ends, every header a
/// [`SampleZone::sign`] signature covers.
pub fn sample_message(to: &str, subject: &str, message_id: &str, body: &str) -> String {
    format!(
        "From: Alice <alice@{SENDER_DOMAIN}>\r\nTo: {to}\r\nSubject: {subject}\r\n\
         Date: Wed, 02 Dec 2026 10:00:00 +0000\r\nMessage-ID: <{message_id}@{SENDER_DOMAIN}>\r\n\
         MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n{body}"
    )
}

/// How the private Postfix is wired to postagent.
#[derive(Debug, Clone)]
pub struct Wiring {
    /// Postfix's `myhostname`, which postagent's `authserv_id` must equal.
    pub hostname: String,
    /// Domains relayed to [`Wiring::lmtp`] (the agent domains).
    pub agent_domains: Vec<String>,
    /// `smtpd_milters`, e.g. `inet:127.0.0.1:8894`; `None` runs without a milter.
    pub milter: Option<String>,
    /// The transport of the agent domains, e.g. `lmtp:inet:127.0.0.1:2424`.
    pub lmtp: String,
    /// The SMTP listener's port; `None` picks a free one.
    pub smtp_port: Option<u16>,
    /// The originating listener (master.cf.fragment) on this port; `None` leaves it out.
    pub originating_port: Option<u16>,
}

impl Wiring {
    /// The Postfix configuration: the lab recipe (crate::postfix), the operator's
    /// main.cf.fragment and master.cf.fragment, and this wiring's addresses.
    pub fn builder(&self) -> anyhow::Result<PostfixBuilder> {
        let mut b = PostfixBuilder::new().main_cf("myhostname", &self.hostname);
        for domain in &self.agent_domains {
            b = b.relay_domain(domain).transport(domain, &self.lmtp);
        }
        if let Some(milter) = &self.milter {
            b = b.milter(milter);
            for (key, value) in fragment_settings(MAIN_CF_FRAGMENT) {
                // Site-specific: the builder sets these from the wiring.
                if !matches!(
                    key.as_str(),
                    "relay_domains" | "transport_maps" | "smtpd_milters" | "non_smtpd_milters"
                ) {
                    b = b.main_cf(&key, &value);
                }
            }
            // As the fragment says: locally submitted mail passes the milter too.
            b = b.main_cf("non_smtpd_milters", milter);
        }
        if let Some(port) = self.smtp_port {
            b = b.smtp_port(port);
        }
        if let Some(port) = self.originating_port {
            let service: Vec<&str> = MASTER_CF_FRAGMENT.lines().filter(|l| !l.starts_with('#')).collect();
            let service = service.join("\n");
            anyhow::ensure!(
                service.contains(FRAGMENT_ORIGINATING),
                "master.cf.fragment no longer names {FRAGMENT_ORIGINATING}"
            );
            let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
            b = b.master_cf_service(&service.replace(FRAGMENT_ORIGINATING, &format!("{addr} inet")));
        }
        Ok(b)
    }
}

/// `key = value` lines of a main.cf fragment (comments and blank lines skipped).
fn fragment_settings(fragment: &str) -> Vec<(String, String)> {
    fragment
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

/// The swaks command that sends a plain message from `alice@` [`SENDER_DOMAIN`] to `to`
/// through `smtp`: SPF passes for 127.0.0.1 and aligns with the From domain, so DMARC passes.
/// With `data`, the file is sent as the message instead (e.g. one made by
/// [`SampleZone::sign`]).
pub fn swaks_command(smtp: SocketAddr, to: &str, data: Option<&std::path::Path>) -> String {
    let base = format!(
        "swaks --server {} --port {} --ehlo mail.{SENDER_DOMAIN} --from alice@{SENDER_DOMAIN} --to {to}",
        smtp.ip(),
        smtp.port()
    );
    match data {
        Some(path) => format!("{base} --data {}", path.display()),
        None => format!("{base} --header 'Subject: Hello from the postagent lab' --body 'It works.'"),
    }
}

/// Checks that Postfix can run here, with the reason when it cannot (for `postagent lab`;
/// tests use [`crate::postfix::require_postfix`]).
pub fn check_can_run_postfix() -> anyhow::Result<()> {
    anyhow::ensure!(
        crate::find_tool("/usr/sbin/postfix").is_some()
            && std::path::Path::new("/usr/share/postfix/master.cf.dist").is_file(),
        "Postfix is not installed: apt install postfix (choose \"No configuration\"; the lab never touches the system instance)"
    );
    anyhow::ensure!(
        crate::is_root(),
        "the lab must run as root: Postfix's master starts as root, then drops to user postfix"
    );
    Ok(())
}

/// A message id's worth of randomness, for unique Message-IDs in samples.
pub fn unique_token() -> anyhow::Result<String> {
    let path = std::path::Path::new("/proc/sys/kernel/random/uuid");
    let uuid = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    Ok(uuid.trim().replace('-', ""))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_operator_fragment_is_applied_except_site_settings() {
        let settings = fragment_settings(MAIN_CF_FRAGMENT);
        let keys: Vec<&str> = settings.iter().map(|(k, _)| k.as_str()).collect();
        assert!(keys.contains(&"milter_default_action"), "{keys:?}");
        assert!(keys.contains(&"smtpd_milters") && keys.contains(&"non_smtpd_milters"), "{keys:?}");
        assert!(settings.iter().all(|(k, _)| !k.is_empty() && !k.contains(' ')), "{settings:?}");
        assert!(MASTER_CF_FRAGMENT.contains(FRAGMENT_ORIGINATING));
    }

    #[test]
    fn swaks_command_names_the_server_and_recipient() {
        let cmd = swaks_command(SocketAddr::from(([127, 0, 0, 1], 2525)), "hello@agents.lab.test", None);
        assert!(cmd.starts_with("swaks --server 127.0.0.1 --port 2525 "), "{cmd}");
        assert!(cmd.contains("--from alice@sender.test --to hello@agents.lab.test"), "{cmd}");
    }
}
