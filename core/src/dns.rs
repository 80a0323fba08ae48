//! The DNS resolver every role uses: the system's by default, or one named server
//! (`dns_server`), always with a timeout so a dead server is an error, never a hang.

use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::proto::rr::RData;
use std::net::SocketAddr;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cannot set up the DNS resolver: {0}")]
    Setup(String),
    #[error("DNS lookup of {name} failed: {reason}")]
    Lookup { name: String, reason: String },
}

#[derive(Clone)]
pub struct Resolver {
    inner: TokioResolver,
}

impl Resolver {
    /// `server = None` reads `/etc/resolv.conf`.
    pub fn new(server: Option<SocketAddr>, timeout: Duration) -> Result<Self, DnsError> {
        let mut opts = ResolverOpts::default();
        opts.timeout = timeout;
        opts.attempts = 1;
        // Verification must see a record as soon as the operator publishes it.
        opts.cache_size = 0;
        let mut builder = match server {
            Some(addr) => {
                let mut ns = NameServerConfig::udp_and_tcp(addr.ip());
                for c in &mut ns.connections {
                    c.port = addr.port();
                }
                TokioResolver::builder_with_config(
                    ResolverConfig::from_name_servers(vec![ns]),
                    TokioRuntimeProvider::default(),
                )
            }
            None => TokioResolver::builder_tokio().map_err(|e| DnsError::Setup(e.to_string()))?,
        };
        *builder.options_mut() = opts;
        let inner = builder.build().map_err(|e| DnsError::Setup(e.to_string()))?;
        Ok(Self { inner })
    }

    /// TXT strings at `name` (the character-strings of each record joined). An absent name or
    /// type is an empty list; only a failure to get an answer is an error.
    pub async fn txt(&self, name: &str) -> Result<Vec<String>, DnsError> {
        let fqdn = fqdn(name);
        match self.inner.txt_lookup(fqdn.as_str()).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|r| match &r.data {
                    RData::TXT(txt) => {
                        Some(txt.txt_data.iter().map(|s| String::from_utf8_lossy(s)).collect::<String>())
                    }
                    _ => None,
                })
                .collect()),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(DnsError::Lookup { name: fqdn, reason: e.to_string() }),
        }
    }

    /// MX targets at `name` as `(preference, host without trailing dot)`, lowest first.
    pub async fn mx(&self, name: &str) -> Result<Vec<(u16, String)>, DnsError> {
        let fqdn = fqdn(name);
        match self.inner.mx_lookup(fqdn.as_str()).await {
            Ok(lookup) => {
                let mut out: Vec<(u16, String)> = lookup
                    .answers()
                    .iter()
                    .filter_map(|r| match &r.data {
                        RData::MX(mx) => Some((
                            mx.preference,
                            mx.exchange.to_ascii().trim_end_matches('.').to_ascii_lowercase(),
                        )),
                        _ => None,
                    })
                    .collect();
                out.sort();
                Ok(out)
            }
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(DnsError::Lookup { name: fqdn, reason: e.to_string() }),
        }
    }

    /// Every A and AAAA address of `name` (an absent name is an empty list).
    pub async fn ips(&self, name: &str) -> Result<Vec<std::net::IpAddr>, DnsError> {
        let fqdn = fqdn(name);
        match self.inner.lookup_ip(fqdn.as_str()).await {
            Ok(lookup) => Ok(lookup.iter().collect()),
            Err(e) if e.is_no_records_found() => Ok(Vec::new()),
            Err(e) => Err(DnsError::Lookup { name: fqdn, reason: e.to_string() }),
        }
    }

    /// The addresses a webhook to `host` may connect to under `mode`: refused when any
    /// address of the name is (see [`crate::ssrf`]).
    pub async fn webhook_addresses(
        &self,
        host: &str,
        mode: crate::ssrf::WebhookMode,
    ) -> Result<Vec<std::net::IpAddr>, crate::ssrf::Refused> {
        let ips = match crate::ssrf::localhost(host) {
            Some(ips) => ips,
            None => self.ips(host).await.map_err(|e| crate::ssrf::Refused::Unresolvable {
                host: host.to_owned(),
                reason: match e {
                    DnsError::Lookup { reason, .. } => reason,
                    other => other.to_string(),
                },
            })?,
        };
        crate::ssrf::check_addresses(host, &ips, mode)?;
        Ok(ips)
    }
}

fn fqdn(name: &str) -> String {
    if name.ends_with('.') { name.to_owned() } else { format!("{name}.") }
}
