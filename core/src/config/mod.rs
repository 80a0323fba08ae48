//! Configuration: one TOML file, `POSTAGENT_*` environment overrides, command-line flags on
//! top. Every key has a default that runs on a laptop; validation names the bad key.
//!
//! Keys are flat and identical in all three places: `api_listen` in the file is
//! `POSTAGENT_API_LISTEN` in the environment and `--api-listen` on the command line. A key is
//! spelled once, as a field of [`Config`] (with its default in `Default`): the loader, the
//! flags, `postagent config` and the reload check all work from its serde form. Values are
//! typed as they are read ([`value`]); nothing re-parses a string later.

mod derived;
pub mod value;

use crate::peers::PeerList;
use crate::ssrf::WebhookMode;
use crate::vocab::{LogFormat, LogTarget, SyslogFacility};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
pub use value::{ListenAddr, SocketMode, parse_duration, parse_schedule, redact_url};

/// Used when `--config` is not given and this file exists.
pub const SYSTEM_CONFIG_PATH: &str = "/etc/postagent/postagent.toml";

/// The name of postagent's own LMTP delivery transport in Postfix's master.cf (an `lmtp`
/// client that `postagent postfix setup` adds and tunes).
pub const TRANSPORT: &str = "postagent";

#[derive(Clone, Serialize, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Where generated state lives (the SQLite file and the secret, unless set elsewhere).
    pub data_dir: PathBuf,
    /// `sqlite://PATH` or `postgres://…`; empty means `sqlite://<data_dir>/postagent.db`.
    pub database_url: String,
    /// Largest number of pooled database connections per process.
    pub database_max_connections: u32,
    /// The deployment HMAC secret; empty means `<data_dir>/hmac.secret` (created when absent).
    pub hmac_secret_file: PathBuf,
    /// REST API listener, `HOST:PORT` or `unix:PATH`.
    #[serde(with = "value::text")]
    pub api_listen: ListenAddr,
    /// Accept backlog of every listener we bind (TCP and unix): connections the kernel queues
    /// before we accept them. Bursts past it are refused (or SYN-retried) by the kernel.
    pub listen_backlog: u32,
    /// Milter listener (`HOST:PORT` or `unix:PATH`); empty disables the role.
    #[serde(with = "value::optional")]
    pub milter_listen: Option<ListenAddr>,
    /// LMTP listener (`HOST:PORT` or `unix:PATH`); empty disables the role.
    #[serde(with = "value::optional")]
    pub lmtp_listen: Option<ListenAddr>,
    /// Peers a TCP milter listener admits (comma-separated addresses or networks); every
    /// other peer is refused before a word is said. Unix sockets are guarded by their mode.
    #[serde(with = "value::text")]
    pub milter_peers: PeerList,
    /// Peers a TCP LMTP listener admits, as `milter_peers`.
    #[serde(with = "value::text")]
    pub lmtp_peers: PeerList,
    /// Postfix lookup-table listener (`socketmap:`; `HOST:PORT` or `unix:PATH`), run beside
    /// the milter: agent domains, their transport and live recipients, straight from the
    /// store. Empty disables it.
    #[serde(with = "value::optional")]
    pub socketmap_listen: Option<ListenAddr>,
    /// Peers a TCP socketmap listener admits, as `milter_peers`.
    #[serde(with = "value::text")]
    pub socketmap_peers: PeerList,
    /// The `transport:nexthop` the socketmap's transport map answers for agent domains.
    /// Empty: `postagent:` (the LMTP transport `postfix setup` adds to master.cf) and
    /// `lmtp_listen` (a unix socket under /var/spool/postfix written relative to it, as
    /// chrooted Postfix daemons see it).
    pub lmtp_transport: String,
    /// Postfix's `recipient_delimiter`: `bot+signup@domain` reaches agent `bot@domain` (each
    /// character is a delimiter). Empty: no address extensions.
    pub recipient_delimiter: String,
    /// How long a milter connection may wait for Postfix's next command.
    #[serde(with = "value::duration")]
    pub milter_timeout: Duration,
    /// LMTP sessions served at once; more are answered `421 4.3.2` and closed.
    pub lmtp_max_sessions: u32,
    /// The longest one LMTP session may last; then it is closed (`421`) at its next wait.
    #[serde(with = "value::duration")]
    pub lmtp_session_deadline: Duration,
    /// The authserv-id of our `Authentication-Results` headers (RFC 8601); empty means
    /// `mail_hostname`. Inbound headers carrying it are removed as forgeries.
    pub authserv_id: String,
    /// Largest message the milter and the LMTP server accept, in bytes.
    pub max_message_bytes: u64,
    /// MIME parts of one message parsed into the stored view; past it the view is truncated.
    pub max_mime_parts: u32,
    /// Attachments of one message recorded (rows, event entries); past it the view is truncated.
    pub max_attachments: u32,
    /// Deepest multipart nesting parsed; deeper parts are left out of the view.
    pub max_mime_depth: u32,
    /// Header fields of one header block parsed (and kept by the milter for DKIM).
    pub max_header_fields: u32,
    /// Bytes of one header block parsed.
    pub max_header_bytes: u64,
    /// Mode of the unix sockets postagent creates (octal), e.g. "0660".
    #[serde(with = "value::text")]
    pub unix_socket_mode: SocketMode,
    /// Group given to those sockets (e.g. "postfix"); empty leaves the process's group.
    pub unix_socket_group: String,
    /// Base URL clients reach the API on (links in mail, attachment URLs).
    pub public_url: String,
    /// Domain whose agents anyone with an account may claim by slug; empty disables slugs.
    pub shared_domain: String,
    /// The host name published as the MX target of agent domains; empty means this host's name.
    pub mail_hostname: String,
    /// DNS server (`IP` or `IP:PORT`) for verification lookups; empty means the system resolver.
    #[serde(with = "value::dns_server")]
    pub dns_server: Option<SocketAddr>,
    /// Upper bound on one DNS lookup.
    #[serde(with = "value::duration")]
    pub dns_timeout: Duration,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    #[serde(with = "value::duration")]
    pub shutdown_timeout: Duration,
    /// `production` (HTTPS, public addresses only) or `development` (also `http://` and
    /// loopback receivers, for local testing). See docs/webhooks.md.
    #[serde(with = "value::text")]
    pub webhook_mode: WebhookMode,
    /// Delays between webhook tries, comma-separated; one more try than delays.
    #[serde(with = "value::schedule")]
    pub webhook_retry_schedule: Vec<Duration>,
    /// How long one webhook POST may take (connect, send, answer).
    #[serde(with = "value::duration")]
    pub webhook_timeout: Duration,
    /// Webhook POSTs in flight at once, per process.
    pub webhook_concurrency: u32,
    /// The shortest wait after a 429 or a timeout (a receiver that is overloaded).
    #[serde(with = "value::duration")]
    pub webhook_throttle_delay: Duration,
    /// The longest `Retry-After` honoured; longer requests are clamped to it.
    #[serde(with = "value::duration")]
    pub webhook_retry_after_max: Duration,
    /// A webhook failing without a single success for this long is disabled...
    #[serde(with = "value::duration")]
    pub webhook_disable_after: Duration,
    /// ...provided it failed at least this many times in that window.
    pub webhook_disable_min_failures: u32,
    /// How long the event log keeps events (`GET /v1/events/{id}` is 410 after it).
    #[serde(with = "value::duration")]
    pub events_retention: Duration,
    /// Days a message or an agent stays in the trash (restorable) before it is purged for
    /// good, messages included; at least 1.
    pub trash_retention_days: u32,
    /// Days after which the bodies of finished mail (raw MIME, draft text, attachments) are
    /// dropped, keeping the envelope, verdict, labels and states. 0 (the default): kept for
    /// ever.
    pub message_retention_days: u32,
    /// WebSocket keepalive ping interval.
    #[serde(with = "value::duration")]
    pub ws_ping_interval: Duration,
    /// Postfix's originating listener (master.cf `-o milter_macro_daemon_name=ORIGINATING`),
    /// `HOST:PORT` or `unix:PATH`, where agents' outbound mail is submitted.
    #[serde(with = "value::text")]
    pub submission_relay: ListenAddr,
    /// Delays between submission tries after a temporary (4xx or connection) failure;
    /// one more try than delays, then the message fails.
    #[serde(with = "value::schedule")]
    pub submission_retry_schedule: Vec<Duration>,
    /// How long one SMTP submission may take.
    #[serde(with = "value::duration")]
    pub submission_timeout: Duration,
    /// Sends (send, reply, forward) per agent per minute, and approvals per account per
    /// minute; past it, 429 `rate_limited`. 0 switches the limit off.
    pub send_rate_limit: u32,
    /// Reads of mail and webhooks (list and get) per account per minute; 0 switches it off.
    pub poll_rate_limit: u32,
    /// Agents created per account per hour; 0 switches it off.
    pub agent_creation_rate_limit: u32,
    /// Recipients (To, Cc and Bcc) an account may send to per UTC day; past it 402
    /// `limit_exceeded`. 0 (the default) means no quota.
    pub daily_recipient_quota: u32,
    /// Suppress an address (account list, source `bounce`) once an agent's last this many
    /// messages to it all soft-bounced (a DSN with a 4.x.x status: Postfix gave up after
    /// retrying for `maximal_queue_lifetime`). 0 (the default): soft bounces never suppress.
    pub suppress_after_soft_bounces: u32,
    /// Replies one agent may send to one correspondent within `loop_reply_window`; the next
    /// is refused (403 `blocked_by_policy`), so two agents cannot answer each other forever.
    /// 0 switches the budget off.
    pub loop_reply_budget: u32,
    /// The window of `loop_reply_budget`.
    #[serde(with = "value::duration")]
    pub loop_reply_window: Duration,
    /// Mark agent mail `Auto-Submitted: auto-generated` (sends, forwards) or `auto-replied`
    /// (replies), as RFC 3834 asks of automatic senders, so well-behaved systems never answer
    /// it (and postagent's own loop protection recognises it at the other end).
    pub mark_auto_submitted: bool,
    /// How often expired review holds are swept (their `on_expiry` applied).
    #[serde(with = "value::duration")]
    pub hold_sweep_interval: Duration,
    /// A console session ends after this long without a request.
    #[serde(with = "value::duration")]
    pub console_session_idle: Duration,
    /// A console session ends this long after sign-in, however busy.
    #[serde(with = "value::duration")]
    pub console_session_lifetime: Duration,
    /// `plain` or `json`.
    pub log_format: LogFormat,
    /// `stderr` (journald under systemd) or `syslog` (the local socket, beside Postfix).
    pub log_target: LogTarget,
    /// The syslog facility with `log_target = "syslog"`: `mail` puts lines in mail.log.
    pub syslog_facility: SyslogFacility,
    /// The local syslog socket.
    pub syslog_socket: PathBuf,
    /// Prometheus metrics listener (`HOST:PORT`, keep it on loopback); empty disables it.
    #[serde(with = "value::optional")]
    pub metrics_listen: Option<ListenAddr>,
    /// A `tracing` filter, e.g. `info` or `postagent=debug,info`.
    pub log_level: String,
}

impl Default for Config {
    fn default() -> Self {
        let minutes = |m: u64| Duration::from_secs(m * 60);
        let hours = |h: u64| Duration::from_secs(h * 3600);
        Self {
            data_dir: PathBuf::from("."),
            database_url: String::new(),
            database_max_connections: 10,
            hmac_secret_file: PathBuf::new(),
            api_listen: ListenAddr::Tcp("127.0.0.1:8080".into()),
            listen_backlog: 4096,
            milter_listen: Some(ListenAddr::Tcp("127.0.0.1:8894".into())),
            lmtp_listen: Some(ListenAddr::Tcp("127.0.0.1:2424".into())),
            milter_peers: PeerList::loopback(),
            socketmap_listen: Some(ListenAddr::Tcp("127.0.0.1:8895".into())),
            socketmap_peers: PeerList::loopback(),
            lmtp_transport: String::new(),
            recipient_delimiter: "+".into(),
            lmtp_peers: PeerList::loopback(),
            milter_timeout: minutes(10),
            lmtp_max_sessions: 100,
            lmtp_session_deadline: minutes(20),
            authserv_id: String::new(),
            max_message_bytes: 25 * 1024 * 1024,
            max_mime_parts: 250,
            max_attachments: 100,
            max_mime_depth: 20,
            max_header_fields: 1000,
            max_header_bytes: 256 * 1024,
            unix_socket_mode: SocketMode(0o660),
            unix_socket_group: String::new(),
            public_url: String::new(),
            shared_domain: String::new(),
            mail_hostname: String::new(),
            dns_server: None,
            dns_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(30),
            webhook_mode: WebhookMode::Production,
            webhook_retry_schedule: [1, 5, 15]
                .map(minutes)
                .into_iter()
                .chain([1, 4, 8, 16].map(hours))
                .collect(),
            webhook_timeout: Duration::from_secs(15),
            webhook_concurrency: 64,
            webhook_throttle_delay: minutes(5),
            webhook_retry_after_max: hours(6),
            webhook_disable_after: hours(72),
            webhook_disable_min_failures: 10,
            events_retention: hours(30 * 24),
            trash_retention_days: 30,
            message_retention_days: 0,
            ws_ping_interval: Duration::from_secs(30),
            submission_relay: ListenAddr::Tcp("127.0.0.1:10587".into()),
            submission_retry_schedule: [1, 5, 15]
                .map(minutes)
                .into_iter()
                .chain([1, 4, 8].map(hours))
                .collect(),
            submission_timeout: Duration::from_secs(60),
            send_rate_limit: 60,
            poll_rate_limit: 240,
            agent_creation_rate_limit: 200,
            daily_recipient_quota: 0,
            mark_auto_submitted: false,
            suppress_after_soft_bounces: 0,
            loop_reply_budget: 5,
            loop_reply_window: minutes(10),
            hold_sweep_interval: Duration::from_secs(60),
            console_session_idle: Duration::from_secs(12 * 3600),
            console_session_lifetime: Duration::from_secs(7 * 86_400),
            log_format: LogFormat::Plain,
            log_target: LogTarget::Stderr,
            syslog_facility: SyslogFacility::Mail,
            syslog_socket: PathBuf::from("/dev/log"),
            metrics_listen: None,
            log_level: "info".into(),
        }
    }
}

/// What was wrong, and with which key (file key, env var or flag).
#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{key}: {message}")]
pub struct ConfigError {
    pub key: String,
    pub message: String,
}

fn bad(key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError { key: key.to_owned(), message: message.into() }
}

/// Outbound submission and review-hold settings, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmissionSettings {
    /// The originating listener: `HOST:PORT` or a unix socket.
    pub relay: ListenAddr,
    /// The delay before try n+2 is `retry[n]`.
    pub retry: Vec<Duration>,
    pub timeout: Duration,
    pub hold_sweep_every: Duration,
    /// Our EHLO name.
    pub helo: String,
    /// The base of magic links in review notices.
    pub public_url: String,
}

/// The API's rate limits (contract §2.6) and the loop budget; 0 is no limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimits {
    /// Replies to one correspondent per agent within `loop_window`.
    pub loop_replies: u32,
    /// Write `Auto-Submitted` on agent mail.
    pub mark_auto_submitted: bool,
    pub loop_window: Duration,
    /// Per agent (send, reply, forward) or per account (approve), per minute.
    pub send_per_minute: u32,
    /// Per account, per minute.
    pub poll_per_minute: u32,
    /// Per account, per hour.
    pub agents_per_hour: u32,
    /// Recipients per account per UTC day (402, not 429).
    pub daily_recipients: u32,
}

/// Webhook delivery and event-log settings, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSettings {
    pub mode: WebhookMode,
    /// The delay before try n+2 is `schedule[n]`; `schedule.len() + 1` tries in all.
    pub schedule: Vec<Duration>,
    pub timeout: Duration,
    pub concurrency: usize,
    pub throttle_delay: Duration,
    pub retry_after_max: Duration,
    pub disable_after: Duration,
    pub disable_min_failures: i64,
    pub events_retention: Duration,
    pub ws_ping_interval: Duration,
}

impl Default for WebhookSettings {
    fn default() -> Self {
        Config::default().webhooks()
    }
}

/// Where an override came from, for error messages: the variable or the flag the operator
/// actually typed, not the file key.
struct Origin {
    key: String,
    source: String,
}

impl Config {
    /// Loads the layered configuration. `file` is `--config`; without it the system path is
    /// used when it exists. `env` is the process environment; `flags` are `(key, value)` pairs
    /// from the command line, applied last.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &[(String, String)],
    ) -> Result<(Self, Option<PathBuf>), ConfigError> {
        let path = match file {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from(SYSTEM_CONFIG_PATH)).filter(|p| p.exists()),
        };
        Self::layered(path, env, flags)
    }

    /// The defaults with `flags` on top: no file and no environment. For `postagent lab`,
    /// which must never pick up a production `/etc/postagent/postagent.toml`.
    pub fn from_flags(flags: &[(String, String)]) -> Result<Self, ConfigError> {
        Self::layered(None, std::iter::empty(), flags).map(|(cfg, _)| cfg)
    }

    /// Every key, in its text form (what `postagent config` prints and flags are made from).
    pub fn keys() -> Vec<String> {
        Self::default().table().keys().cloned().collect()
    }

    /// This configuration as a TOML table (every key, every value in its text form).
    pub fn table(&self) -> toml::Table {
        toml::Table::try_from(self).unwrap_or_default()
    }

    fn layered(
        path: Option<PathBuf>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &[(String, String)],
    ) -> Result<(Self, Option<PathBuf>), ConfigError> {
        let defaults = Self::default().table();
        let mut table = match &path {
            Some(p) => Self::read_table(p)?,
            None => toml::Table::new(),
        };
        let mut origin: Vec<Origin> = Vec::new();
        let env = env.into_iter().filter_map(|(name, value)| {
            let key = name.strip_prefix("POSTAGENT_")?.to_ascii_lowercase();
            (key != "config").then_some((key, name, value))
        });
        let flags = flags
            .iter()
            .map(|(key, value)| (key.clone(), format!("--{}", key.replace('_', "-")), value.clone()));
        for (key, source, text) in env.collect::<Vec<_>>().into_iter().chain(flags) {
            let value = Self::override_value(&defaults, &key, &text).map_err(|m| bad(&source, m))?;
            table.insert(key.clone(), value);
            origin.push(Origin { key, source });
        }
        let mut cfg: Config = toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| bad("configuration", e.message()))?;
        cfg.normalize();
        cfg.validate().map_err(|mut e| {
            if let Some(o) = origin.iter().rev().find(|o| o.key == e.key) {
                e.key = o.source.clone();
            } else if let Some(p) = &path {
                e.key = format!("{} in {}", e.key, p.display());
            }
            e
        })?;
        Ok((cfg, path))
    }

    /// An override's text as the TOML value its key takes (a number where the key is one),
    /// checked on its own so the error names where it came from.
    fn override_value(defaults: &toml::Table, key: &str, text: &str) -> Result<toml::Value, String> {
        let value = match defaults.get(key) {
            None => return Err(format!("unknown configuration key {key:?}")),
            Some(toml::Value::Integer(_)) => {
                toml::Value::Integer(text.trim().parse().map_err(|_| format!("{text:?} is not a number"))?)
            }
            Some(toml::Value::Boolean(_)) => {
                toml::Value::Boolean(match text.trim().to_ascii_lowercase().as_str() {
                    "true" | "yes" | "on" | "1" => true,
                    "false" | "no" | "off" | "0" => false,
                    _ => return Err(format!("{text:?} is not true or false")),
                })
            }
            Some(_) => toml::Value::String(text.to_owned()),
        };
        Self::check_one(key, &value)?;
        Ok(value)
    }

    /// Reads one key alone onto the defaults: the value's own shape, whatever else is set.
    fn check_one(key: &str, value: &toml::Value) -> Result<(), String> {
        let mut one = toml::Table::new();
        one.insert(key.to_owned(), value.clone());
        toml::Value::Table(one)
            .try_into::<Config>()
            .map(|_| ())
            .map_err(|e| e.message().trim_end().to_owned())
    }

    /// A configuration file as a table, every key checked on its own (the error names it).
    fn read_table(path: &Path) -> Result<toml::Table, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| bad(&shown, e.to_string()))?;
        // toml's syntax errors show the line.
        let table: toml::Table =
            text.parse().map_err(|e: toml::de::Error| bad(&shown, e.to_string().trim_end().to_owned()))?;
        let keys = Self::default().table();
        for (key, value) in &table {
            if !keys.contains_key(key) {
                return Err(bad(&shown, format!("unknown configuration key {key:?}")));
            }
            Self::check_one(key, value).map_err(|m| bad(&format!("{key} in {shown}"), m))?;
        }
        Ok(table)
    }

    /// A configuration file on the defaults, without the cross-key checks of [`Config::load`].
    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        toml::Value::Table(Self::read_table(path)?)
            .try_into()
            .map_err(|e: toml::de::Error| bad(&shown, e.message()))
    }

    /// Canonical forms: domain names lowercase without the trailing dot of DNS notation.
    pub fn normalize(&mut self) {
        for name in [&mut self.shared_domain, &mut self.mail_hostname] {
            let trimmed = name.trim();
            *name = trimmed.strip_suffix('.').unwrap_or(trimmed).to_ascii_lowercase();
        }
        self.public_url = self.public_url.trim().trim_end_matches('/').to_owned();
    }

    /// Checks what a value's type cannot (ranges, and keys read against each other), naming
    /// the key of the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let url = self.database_url();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(bad("database_url", "must start with sqlite:, postgres:// or postgresql://"));
        }
        if self.max_message_bytes < 1024 {
            return Err(bad("max_message_bytes", "must be at least 1024"));
        }
        for (key, v) in [
            ("lmtp_max_sessions", u64::from(self.lmtp_max_sessions)),
            ("max_mime_parts", u64::from(self.max_mime_parts)),
            ("max_attachments", u64::from(self.max_attachments)),
            ("max_mime_depth", u64::from(self.max_mime_depth)),
            ("max_header_fields", u64::from(self.max_header_fields)),
            ("max_header_bytes", self.max_header_bytes),
            ("database_max_connections", u64::from(self.database_max_connections)),
            ("webhook_concurrency", u64::from(self.webhook_concurrency)),
            ("listen_backlog", u64::from(self.listen_backlog)),
            ("trash_retention_days", u64::from(self.trash_retention_days)),
        ] {
            if v == 0 {
                return Err(bad(key, "must be at least 1"));
            }
        }
        for (key, d) in [
            ("hold_sweep_interval", self.hold_sweep_interval),
            ("ws_ping_interval", self.ws_ping_interval),
            ("console_session_idle", self.console_session_idle),
            ("console_session_lifetime", self.console_session_lifetime),
        ] {
            if d.is_zero() {
                return Err(bad(key, "must be more than 0"));
            }
        }
        let url_ok = |u: &str| u.starts_with("http://") || u.starts_with("https://");
        if !self.public_url.is_empty() && !url_ok(&self.public_url) {
            return Err(bad("public_url", "must start with http:// or https://"));
        }
        if !self.shared_domain.is_empty() && crate::ids::DomainName::parse(&self.shared_domain).is_none() {
            return Err(bad("shared_domain", format!("{:?} is not a domain name", self.shared_domain)));
        }
        if !self.mail_hostname.is_empty() && crate::ids::DomainName::parse(&self.mail_hostname).is_none() {
            return Err(bad(
                "mail_hostname",
                format!("{:?} is not a fully qualified host name (e.g. mx.example.org)", self.mail_hostname),
            ));
        }
        if matches!(self.metrics_listen, Some(ListenAddr::Unix(_))) {
            return Err(bad("metrics_listen", "must be HOST:PORT (Prometheus scrapes over TCP)"));
        }
        // As Postfix reads it: separator characters that cannot be part of a domain or of
        // the `@`, a few at most.
        if self.recipient_delimiter.chars().count() > 8
            || self
                .recipient_delimiter
                .chars()
                .any(|c| c.is_alphanumeric() || c.is_whitespace() || "@.\"".contains(c))
        {
            return Err(bad("recipient_delimiter", "must be a few separator characters such as + or -"));
        }
        let t = &self.lmtp_transport;
        if !t.is_empty() && (!t.contains(':') || t.chars().any(|c| c.is_whitespace() || c.is_control())) {
            return Err(bad(
                "lmtp_transport",
                "must be transport:nexthop, e.g. postagent:unix:postagent/lmtp.sock",
            ));
        }
        Ok(())
    }
}

/// Every key with its value in text form, the database password hidden.
impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = f.debug_struct("Config");
        for (key, value) in &self.table() {
            match value {
                toml::Value::String(text) if key == "database_url" => out.field(key, &redact_url(text)),
                toml::Value::String(text) => out.field(key, text),
                other => out.field(key, &format_args!("{other}")),
            };
        }
        out.finish()
    }
}

#[cfg(test)]
mod tests;
