//! Configuration: one TOML file, `POSTAGENT_*` environment overrides, command-line flags on
//! top. Every key has a default that runs on a laptop; validation names the bad key.
//!
//! Keys are flat and identical in all three places: `api_listen` in the file is
//! `POSTAGENT_API_LISTEN` in the environment and `--api-listen` on the command line.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Used when `--config` is not given and this file exists.
pub const SYSTEM_CONFIG_PATH: &str = "/etc/postagent/postagent.toml";

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
    pub api_listen: String,
    /// Milter listener (`HOST:PORT` or `unix:PATH`); empty disables the role.
    pub milter_listen: String,
    /// LMTP listener (`HOST:PORT` or `unix:PATH`); empty disables the role.
    pub lmtp_listen: String,
    /// Peers a TCP milter listener admits (comma-separated addresses or networks); every
    /// other peer is refused before a word is said. Unix sockets are guarded by their mode.
    pub milter_peers: String,
    /// Peers a TCP LMTP listener admits, as `milter_peers`.
    pub lmtp_peers: String,
    /// How long a milter connection may wait for Postfix's next command.
    pub milter_timeout: String,
    /// LMTP sessions served at once; more are answered `421 4.3.2` and closed.
    pub lmtp_max_sessions: u32,
    /// The longest one LMTP session may last; then it is closed (`421`) at its next wait.
    pub lmtp_session_deadline: String,
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
    pub unix_socket_mode: String,
    /// Group given to those sockets (e.g. "postfix"); empty leaves the process's group.
    pub unix_socket_group: String,
    /// Base URL clients reach the API on (links in mail, attachment URLs).
    pub public_url: String,
    /// Domain whose agents anyone with an account may claim by slug; empty disables slugs.
    pub shared_domain: String,
    /// The host name published as the MX target of agent domains; empty means this host's name.
    pub mail_hostname: String,
    /// DNS server (`IP` or `IP:PORT`) for verification lookups; empty means the system resolver.
    pub dns_server: String,
    /// Upper bound on one DNS lookup.
    pub dns_timeout: String,
    /// How long in-flight requests may take to finish after SIGTERM/SIGINT.
    pub shutdown_timeout: String,
    /// `production` (HTTPS, public addresses only) or `development` (also `http://` and
    /// loopback receivers, for local testing). See docs/webhooks.md.
    pub webhook_mode: String,
    /// Delays between webhook tries, comma-separated; one more try than delays.
    pub webhook_retry_schedule: String,
    /// How long one webhook POST may take (connect, send, answer).
    pub webhook_timeout: String,
    /// Webhook POSTs in flight at once, per process.
    pub webhook_concurrency: u32,
    /// The shortest wait after a 429 or a timeout (a receiver that is overloaded).
    pub webhook_throttle_delay: String,
    /// The longest `Retry-After` honoured; longer requests are clamped to it.
    pub webhook_retry_after_max: String,
    /// A webhook failing without a single success for this long is disabled...
    pub webhook_disable_after: String,
    /// ...provided it failed at least this many times in that window.
    pub webhook_disable_min_failures: u32,
    /// How long the event log keeps events (`GET /v1/events/{id}` is 410 after it).
    pub events_retention: String,
    /// WebSocket keepalive ping interval.
    pub ws_ping_interval: String,
    /// Postfix's originating listener (master.cf `-o milter_macro_daemon_name=ORIGINATING`),
    /// `HOST:PORT` or `unix:PATH`, where agents' outbound mail is submitted.
    pub submission_relay: String,
    /// Delays between submission tries after a temporary (4xx or connection) failure;
    /// one more try than delays, then the message fails.
    pub submission_retry_schedule: String,
    /// How long one SMTP submission may take.
    pub submission_timeout: String,
    /// How often expired review holds are swept (their `on_expiry` applied).
    pub hold_sweep_interval: String,
    /// `plain` or `json`.
    pub log_format: String,
    /// `stderr` (journald under systemd) or `syslog` (the local socket, beside Postfix).
    pub log_target: String,
    /// The syslog facility with `log_target = "syslog"`: `mail` puts lines in mail.log.
    pub syslog_facility: String,
    /// The local syslog socket.
    pub syslog_socket: String,
    /// Prometheus metrics listener (`HOST:PORT`, keep it on loopback); empty disables it.
    pub metrics_listen: String,
    /// A `tracing` filter, e.g. `info` or `postagent=debug,info`.
    pub log_level: String,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("."),
            database_url: String::new(),
            database_max_connections: 10,
            hmac_secret_file: PathBuf::new(),
            api_listen: "127.0.0.1:8080".into(),
            milter_listen: "127.0.0.1:8894".into(),
            lmtp_listen: "127.0.0.1:2424".into(),
            milter_peers: crate::peers::PeerList::LOOPBACK.into(),
            lmtp_peers: crate::peers::PeerList::LOOPBACK.into(),
            milter_timeout: "10m".into(),
            lmtp_max_sessions: 100,
            lmtp_session_deadline: "20m".into(),
            authserv_id: String::new(),
            max_message_bytes: 25 * 1024 * 1024,
            max_mime_parts: 250,
            max_attachments: 100,
            max_mime_depth: 20,
            max_header_fields: 1000,
            max_header_bytes: 256 * 1024,
            unix_socket_mode: "0660".into(),
            unix_socket_group: String::new(),
            public_url: String::new(),
            shared_domain: String::new(),
            mail_hostname: String::new(),
            dns_server: String::new(),
            dns_timeout: "5s".into(),
            shutdown_timeout: "30s".into(),
            webhook_mode: "production".into(),
            webhook_retry_schedule: "1m,5m,15m,1h,4h,8h,16h".into(),
            webhook_timeout: "15s".into(),
            webhook_concurrency: 64,
            webhook_throttle_delay: "5m".into(),
            webhook_retry_after_max: "6h".into(),
            webhook_disable_after: "72h".into(),
            webhook_disable_min_failures: 10,
            events_retention: "30d".into(),
            ws_ping_interval: "30s".into(),
            submission_relay: "127.0.0.1:10587".into(),
            submission_retry_schedule: "1m,5m,15m,1h,4h,8h".into(),
            submission_timeout: "60s".into(),
            hold_sweep_interval: "60s".into(),
            log_format: "plain".into(),
            log_target: "stderr".into(),
            syslog_facility: "mail".into(),
            syslog_socket: "/dev/log".into(),
            metrics_listen: String::new(),
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

fn number<T: std::str::FromStr>(key: &str, v: &str) -> Result<T, ConfigError> {
    v.parse().map_err(|_| bad(key, format!("{v:?} is not a number")))
}

/// A listener address: TCP `HOST:PORT` or a unix socket path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenAddr {
    Tcp(String),
    Unix(PathBuf),
}

impl ListenAddr {
    pub fn parse(s: &str) -> Result<Self, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path".into());
            }
            return Ok(Self::Unix(PathBuf::from(path)));
        }
        let (host, port) =
            s.rsplit_once(':').ok_or_else(|| format!("{s:?} is neither HOST:PORT nor unix:PATH"))?;
        if host.is_empty() {
            return Err(format!("{s:?} has no host; write 127.0.0.1:{port} or [::]:{port}"));
        }
        port.parse::<u16>().map_err(|_| format!("{s:?} has no valid port"))?;
        Ok(Self::Tcp(s.to_owned()))
    }
}

impl fmt::Display for ListenAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Tcp(a) => f.write_str(a),
            Self::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// `250ms`, `5s`, `2m`, `1h`, `7d`; a bare number is seconds.
pub fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().ok()?;
    let ms = match unit.trim() {
        "ms" => n,
        "" | "s" => n.checked_mul(1_000)?,
        "m" => n.checked_mul(60_000)?,
        "h" => n.checked_mul(3_600_000)?,
        "d" => n.checked_mul(86_400_000)?,
        _ => return None,
    };
    Some(Duration::from_millis(ms))
}

/// A comma-separated list of durations; empty means "no retries".
pub fn parse_schedule(s: &str) -> Option<Vec<Duration>> {
    if s.trim().is_empty() {
        return Some(Vec::new());
    }
    s.split(',').map(parse_duration).collect()
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

/// Webhook delivery and event-log settings, typed.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookSettings {
    pub mode: crate::ssrf::WebhookMode,
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

impl Config {
    /// Loads the layered configuration. `file` is `--config`; without it the system path is
    /// used when it exists. `env` is the process environment; `flags` are `(key, value)` pairs
    /// from the command line, applied last.
    pub fn load(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &[(&str, String)],
    ) -> Result<(Self, Option<PathBuf>), ConfigError> {
        let path = match file {
            Some(p) => Some(p.to_path_buf()),
            None => Some(PathBuf::from(SYSTEM_CONFIG_PATH)).filter(|p| p.exists()),
        };
        Self::layered(path, env, flags)
    }

    /// The defaults with `flags` on top: no file and no environment. For `postagent lab`,
    /// which must never pick up a production `/etc/postagent/postagent.toml`.
    pub fn from_flags(flags: &[(&str, String)]) -> Result<Self, ConfigError> {
        Self::layered(None, std::iter::empty(), flags).map(|(cfg, _)| cfg)
    }

    fn layered(
        path: Option<PathBuf>,
        env: impl IntoIterator<Item = (String, String)>,
        flags: &[(&str, String)],
    ) -> Result<(Self, Option<PathBuf>), ConfigError> {
        let mut cfg = match &path {
            Some(p) => Self::from_file(p)?,
            None => Self::default(),
        };
        // Where each overridden key came from, so a validation error names what the
        // operator actually typed (the variable or the flag, not the file key).
        let mut origin: Vec<(String, String)> = Vec::new();
        for (name, value) in env {
            let Some(key) = name.strip_prefix("POSTAGENT_") else { continue };
            if key == "CONFIG" {
                continue;
            }
            let key = key.to_ascii_lowercase();
            cfg.set(&key, &value).map_err(|e| bad(&name, e.message))?;
            origin.push((key, name.clone()));
        }
        for (key, value) in flags {
            let flag = format!("--{}", key.replace('_', "-"));
            cfg.set(key, value).map_err(|e| bad(&flag, e.message))?;
            origin.push(((*key).to_owned(), flag));
        }
        cfg.normalize();
        cfg.validate().map_err(|mut e| {
            if let Some((_, source)) = origin.iter().rev().find(|(k, _)| *k == e.key) {
                e.key = source.clone();
            } else if let Some(p) = &path {
                e.key = format!("{} in {}", e.key, p.display());
            }
            e
        })?;
        Ok((cfg, path))
    }

    pub fn from_file(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| bad(&shown, e.to_string()))?;
        // toml's message names the key and shows the line, e.g. "unknown field `api_lisen`".
        toml::from_str(&text).map_err(|e| bad(&shown, e.to_string().trim_end().to_owned()))
    }

    /// Sets one key from its string form (environment variable or flag).
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let v = value.to_owned();
        match key {
            "data_dir" => self.data_dir = PathBuf::from(v),
            "database_url" => self.database_url = v,
            "database_max_connections" => {
                self.database_max_connections =
                    v.parse().map_err(|_| bad(key, format!("{v:?} is not a number")))?;
            }
            "hmac_secret_file" => self.hmac_secret_file = PathBuf::from(v),
            "api_listen" => self.api_listen = v,
            "milter_listen" => self.milter_listen = v,
            "lmtp_listen" => self.lmtp_listen = v,
            "milter_peers" => self.milter_peers = v,
            "lmtp_peers" => self.lmtp_peers = v,
            "milter_timeout" => self.milter_timeout = v,
            "lmtp_max_sessions" => self.lmtp_max_sessions = number(key, &v)?,
            "lmtp_session_deadline" => self.lmtp_session_deadline = v,
            "max_mime_parts" => self.max_mime_parts = number(key, &v)?,
            "max_attachments" => self.max_attachments = number(key, &v)?,
            "max_mime_depth" => self.max_mime_depth = number(key, &v)?,
            "max_header_fields" => self.max_header_fields = number(key, &v)?,
            "max_header_bytes" => self.max_header_bytes = number(key, &v)?,
            "authserv_id" => self.authserv_id = v,
            "max_message_bytes" => {
                self.max_message_bytes =
                    v.parse().map_err(|_| bad(key, format!("{v:?} is not a number of bytes")))?;
            }
            "unix_socket_mode" => self.unix_socket_mode = v,
            "unix_socket_group" => self.unix_socket_group = v,
            "public_url" => self.public_url = v,
            "shared_domain" => self.shared_domain = v,
            "mail_hostname" => self.mail_hostname = v,
            "dns_server" => self.dns_server = v,
            "dns_timeout" => self.dns_timeout = v,
            "shutdown_timeout" => self.shutdown_timeout = v,
            "webhook_mode" => self.webhook_mode = v,
            "webhook_retry_schedule" => self.webhook_retry_schedule = v,
            "webhook_timeout" => self.webhook_timeout = v,
            "webhook_concurrency" => {
                self.webhook_concurrency =
                    v.parse().map_err(|_| bad(key, format!("{v:?} is not a number")))?;
            }
            "webhook_throttle_delay" => self.webhook_throttle_delay = v,
            "webhook_retry_after_max" => self.webhook_retry_after_max = v,
            "webhook_disable_after" => self.webhook_disable_after = v,
            "webhook_disable_min_failures" => {
                self.webhook_disable_min_failures =
                    v.parse().map_err(|_| bad(key, format!("{v:?} is not a number")))?;
            }
            "events_retention" => self.events_retention = v,
            "ws_ping_interval" => self.ws_ping_interval = v,
            "submission_relay" => self.submission_relay = v,
            "submission_retry_schedule" => self.submission_retry_schedule = v,
            "submission_timeout" => self.submission_timeout = v,
            "hold_sweep_interval" => self.hold_sweep_interval = v,
            "log_format" => self.log_format = v,
            "log_target" => self.log_target = v,
            "syslog_facility" => self.syslog_facility = v,
            "syslog_socket" => self.syslog_socket = v,
            "metrics_listen" => self.metrics_listen = v,
            "log_level" => self.log_level = v,
            _ => return Err(bad(key, "unknown configuration key")),
        }
        Ok(())
    }

    /// Canonical forms: domain names lowercase without the trailing dot of DNS notation.
    pub fn normalize(&mut self) {
        for name in [&mut self.shared_domain, &mut self.mail_hostname] {
            let trimmed = name.trim();
            *name = trimmed.strip_suffix('.').unwrap_or(trimmed).to_ascii_lowercase();
        }
        self.public_url = self.public_url.trim().trim_end_matches('/').to_owned();
    }

    /// Checks every value that has a shape, naming the key of the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        ListenAddr::parse(&self.api_listen).map_err(|m| bad("api_listen", m))?;
        for (key, v) in [("milter_listen", &self.milter_listen), ("lmtp_listen", &self.lmtp_listen)] {
            if !v.is_empty() {
                ListenAddr::parse(v).map_err(|m| bad(key, m))?;
            }
        }
        let url = self.database_url();
        if !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(bad("database_url", "must start with sqlite:, postgres:// or postgresql://"));
        }
        if self.unix_socket_mode().is_none() {
            return Err(bad(
                "unix_socket_mode",
                format!("{:?} is not an octal mode like 0660", self.unix_socket_mode),
            ));
        }
        if self.max_message_bytes < 1024 {
            return Err(bad("max_message_bytes", "must be at least 1024"));
        }
        for (key, v) in [("milter_peers", &self.milter_peers), ("lmtp_peers", &self.lmtp_peers)] {
            crate::peers::PeerList::parse(v).map_err(|m| bad(key, m))?;
        }
        for (key, v) in [
            ("lmtp_max_sessions", u64::from(self.lmtp_max_sessions)),
            ("max_mime_parts", u64::from(self.max_mime_parts)),
            ("max_attachments", u64::from(self.max_attachments)),
            ("max_mime_depth", u64::from(self.max_mime_depth)),
            ("max_header_fields", u64::from(self.max_header_fields)),
            ("max_header_bytes", self.max_header_bytes),
        ] {
            if v == 0 {
                return Err(bad(key, "must be at least 1"));
            }
        }
        if self.database_max_connections == 0 {
            return Err(bad("database_max_connections", "must be at least 1"));
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
        if !self.dns_server.is_empty() {
            self.dns_server_addr().map_err(|m| bad("dns_server", m))?;
        }
        for (key, v) in [
            ("dns_timeout", &self.dns_timeout),
            ("shutdown_timeout", &self.shutdown_timeout),
            ("webhook_timeout", &self.webhook_timeout),
            ("webhook_throttle_delay", &self.webhook_throttle_delay),
            ("webhook_retry_after_max", &self.webhook_retry_after_max),
            ("webhook_disable_after", &self.webhook_disable_after),
            ("events_retention", &self.events_retention),
            ("ws_ping_interval", &self.ws_ping_interval),
            ("submission_timeout", &self.submission_timeout),
            ("hold_sweep_interval", &self.hold_sweep_interval),
            ("milter_timeout", &self.milter_timeout),
            ("lmtp_session_deadline", &self.lmtp_session_deadline),
        ] {
            if parse_duration(v).is_none() {
                return Err(bad(key, format!("{v:?} is not a duration (e.g. 250ms, 5s, 2m)")));
            }
        }
        if crate::ssrf::WebhookMode::parse(&self.webhook_mode).is_none() {
            return Err(bad("webhook_mode", "must be production or development"));
        }
        if parse_schedule(&self.webhook_retry_schedule).is_none() {
            return Err(bad(
                "webhook_retry_schedule",
                format!(
                    "{:?} is not a comma-separated list of durations (e.g. 1m,5m,1h)",
                    self.webhook_retry_schedule
                ),
            ));
        }
        if parse_schedule(&self.submission_retry_schedule).is_none() {
            return Err(bad(
                "submission_retry_schedule",
                format!("{:?} is not a comma-separated list of durations", self.submission_retry_schedule),
            ));
        }
        ListenAddr::parse(&self.submission_relay).map_err(|m| {
            bad(
                "submission_relay",
                format!("{m}: write HOST:PORT (127.0.0.1:10587) or unix:PATH (unix:/var/spool/postfix/public/postagent-submit)"),
            )
        })?;
        if parse_duration(&self.hold_sweep_interval).is_some_and(|d| d.is_zero()) {
            return Err(bad("hold_sweep_interval", "must be more than 0"));
        }
        if self.webhook_concurrency == 0 {
            return Err(bad("webhook_concurrency", "must be at least 1"));
        }
        if parse_duration(&self.ws_ping_interval).is_some_and(|d| d.is_zero()) {
            return Err(bad("ws_ping_interval", "must be more than 0"));
        }
        if !matches!(self.log_format.as_str(), "plain" | "json") {
            return Err(bad("log_format", "must be plain or json"));
        }
        if !matches!(self.log_target.as_str(), "stderr" | "syslog") {
            return Err(bad("log_target", "must be stderr or syslog"));
        }
        if !matches!(
            self.syslog_facility.as_str(),
            "mail"
                | "daemon"
                | "local0"
                | "local1"
                | "local2"
                | "local3"
                | "local4"
                | "local5"
                | "local6"
                | "local7"
        ) {
            return Err(bad("syslog_facility", "must be mail, daemon or local0..local7"));
        }
        if !self.metrics_listen.is_empty() {
            ListenAddr::parse(&self.metrics_listen).map_err(|m| bad("metrics_listen", m))?;
        }
        Ok(())
    }

    /// The socket mode as bits, when valid octal no wider than 0777.
    pub fn unix_socket_mode(&self) -> Option<u32> {
        u32::from_str_radix(self.unix_socket_mode.trim_start_matches("0o"), 8).ok().filter(|m| *m <= 0o777)
    }

    pub fn authserv_id(&self) -> String {
        if self.authserv_id.is_empty() { self.mail_hostname() } else { self.authserv_id.clone() }
    }

    pub fn database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("postagent.db").display())
        } else {
            self.database_url.clone()
        }
    }

    pub fn hmac_secret_path(&self) -> PathBuf {
        if self.hmac_secret_file.as_os_str().is_empty() {
            self.data_dir.join("hmac.secret")
        } else {
            self.hmac_secret_file.clone()
        }
    }

    pub fn api_listen_addr(&self) -> ListenAddr {
        ListenAddr::parse(&self.api_listen).unwrap_or(ListenAddr::Tcp("127.0.0.1:8080".into()))
    }

    /// `None` for the system resolver.
    pub fn dns_server_addr(&self) -> Result<Option<SocketAddr>, String> {
        if self.dns_server.is_empty() {
            return Ok(None);
        }
        if let Ok(ip) = self.dns_server.parse::<std::net::IpAddr>() {
            return Ok(Some(SocketAddr::new(ip, 53)));
        }
        self.dns_server
            .parse::<SocketAddr>()
            .map(Some)
            .map_err(|_| format!("{:?} is not IP or IP:PORT", self.dns_server))
    }

    pub fn dns_timeout(&self) -> Duration {
        parse_duration(&self.dns_timeout).unwrap_or(Duration::from_secs(5))
    }

    /// The webhook settings, typed (call after [`Config::validate`]).
    pub fn webhooks(&self) -> WebhookSettings {
        let d = |v: &str, fallback: u64| parse_duration(v).unwrap_or(Duration::from_secs(fallback));
        WebhookSettings {
            mode: crate::ssrf::WebhookMode::parse(&self.webhook_mode)
                .unwrap_or(crate::ssrf::WebhookMode::Production),
            schedule: parse_schedule(&self.webhook_retry_schedule).unwrap_or_default(),
            timeout: d(&self.webhook_timeout, 15),
            concurrency: self.webhook_concurrency.max(1) as usize,
            throttle_delay: d(&self.webhook_throttle_delay, 300),
            retry_after_max: d(&self.webhook_retry_after_max, 6 * 3600),
            disable_after: d(&self.webhook_disable_after, 72 * 3600),
            disable_min_failures: i64::from(self.webhook_disable_min_failures),
            events_retention: d(&self.events_retention, 30 * 86400),
            ws_ping_interval: d(&self.ws_ping_interval, 30),
        }
    }

    pub fn submission(&self) -> SubmissionSettings {
        let d = |v: &str, fallback: u64| parse_duration(v).unwrap_or(Duration::from_secs(fallback));
        SubmissionSettings {
            relay: ListenAddr::parse(&self.submission_relay)
                .unwrap_or_else(|_| ListenAddr::Tcp("127.0.0.1:10587".into())),
            retry: parse_schedule(&self.submission_retry_schedule).unwrap_or_default(),
            timeout: d(&self.submission_timeout, 60),
            hold_sweep_every: d(&self.hold_sweep_interval, 60),
            helo: self.mail_hostname(),
            public_url: self.public_url(),
        }
    }

    /// The peer allowlists (call after [`Config::validate`]; a bad list falls back to loopback).
    pub fn milter_peers(&self) -> crate::peers::PeerList {
        crate::peers::PeerList::parse(&self.milter_peers)
            .unwrap_or_else(|_| crate::peers::PeerList::loopback())
    }

    pub fn lmtp_peers(&self) -> crate::peers::PeerList {
        crate::peers::PeerList::parse(&self.lmtp_peers).unwrap_or_else(|_| crate::peers::PeerList::loopback())
    }

    pub fn milter_timeout(&self) -> Duration {
        parse_duration(&self.milter_timeout).unwrap_or(Duration::from_secs(600))
    }

    pub fn lmtp_session_deadline(&self) -> Duration {
        parse_duration(&self.lmtp_session_deadline).unwrap_or(Duration::from_secs(1200))
    }

    /// The caps on one message's parsed view ([`crate::mime`]).
    pub fn mime_caps(&self) -> crate::mime::Caps {
        let n = |v: u32| usize::try_from(v).unwrap_or(usize::MAX);
        crate::mime::Caps {
            max_parts: n(self.max_mime_parts),
            max_attachments: n(self.max_attachments),
            max_depth: n(self.max_mime_depth),
            max_header_fields: n(self.max_header_fields),
            max_header_bytes: usize::try_from(self.max_header_bytes).unwrap_or(usize::MAX),
        }
    }

    pub fn shutdown_timeout(&self) -> Duration {
        parse_duration(&self.shutdown_timeout).unwrap_or(Duration::from_secs(30))
    }

    /// The public base URL without a trailing slash (derived from the API listener if unset).
    pub fn public_url(&self) -> String {
        if self.public_url.is_empty() {
            format!("http://{}", self.api_listen)
        } else {
            self.public_url.trim_end_matches('/').to_owned()
        }
    }

    /// The configured MX target, else this host's name (which may be a short name: callers
    /// that publish it warn when it is not fully qualified).
    pub fn mail_hostname(&self) -> String {
        if !self.mail_hostname.is_empty() {
            return self.mail_hostname.clone();
        }
        std::fs::read_to_string("/etc/hostname")
            .ok()
            .map(|h| h.trim().trim_end_matches('.').to_ascii_lowercase())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into())
    }
}

/// Hides the password of a database URL.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_owned() };
    let (base, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let base = match base.split_once('@') {
        Some((userinfo, host)) if userinfo.contains(':') => {
            let user = userinfo.split(':').next().unwrap_or("");
            format!("{user}:<redacted>@{host}")
        }
        _ => base.to_owned(),
    };
    // libpq also takes the password as a parameter: `?password=…`.
    let query = query.map(|q| {
        q.split('&')
            .map(|kv| match kv.split_once('=') {
                Some((k, _)) if k.eq_ignore_ascii_case("password") => format!("{k}=<redacted>"),
                _ => kv.to_owned(),
            })
            .collect::<Vec<_>>()
            .join("&")
    });
    match query {
        Some(q) => format!("{scheme}://{base}?{q}"),
        None => format!("{scheme}://{base}"),
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("data_dir", &self.data_dir)
            .field("database_url", &redact_url(&self.database_url))
            .field("database_max_connections", &self.database_max_connections)
            .field("hmac_secret_file", &self.hmac_secret_file)
            .field("api_listen", &self.api_listen)
            .field("milter_listen", &self.milter_listen)
            .field("lmtp_listen", &self.lmtp_listen)
            .field("milter_peers", &self.milter_peers)
            .field("lmtp_peers", &self.lmtp_peers)
            .field("milter_timeout", &self.milter_timeout)
            .field("lmtp_max_sessions", &self.lmtp_max_sessions)
            .field("lmtp_session_deadline", &self.lmtp_session_deadline)
            .field("authserv_id", &self.authserv_id)
            .field("max_message_bytes", &self.max_message_bytes)
            .field("max_mime_parts", &self.max_mime_parts)
            .field("max_attachments", &self.max_attachments)
            .field("max_mime_depth", &self.max_mime_depth)
            .field("max_header_fields", &self.max_header_fields)
            .field("max_header_bytes", &self.max_header_bytes)
            .field("unix_socket_mode", &self.unix_socket_mode)
            .field("unix_socket_group", &self.unix_socket_group)
            .field("public_url", &self.public_url)
            .field("shared_domain", &self.shared_domain)
            .field("mail_hostname", &self.mail_hostname)
            .field("dns_server", &self.dns_server)
            .field("dns_timeout", &self.dns_timeout)
            .field("shutdown_timeout", &self.shutdown_timeout)
            .field("webhook_mode", &self.webhook_mode)
            .field("webhook_retry_schedule", &self.webhook_retry_schedule)
            .field("webhook_timeout", &self.webhook_timeout)
            .field("webhook_concurrency", &self.webhook_concurrency)
            .field("webhook_throttle_delay", &self.webhook_throttle_delay)
            .field("webhook_retry_after_max", &self.webhook_retry_after_max)
            .field("webhook_disable_after", &self.webhook_disable_after)
            .field("webhook_disable_min_failures", &self.webhook_disable_min_failures)
            .field("events_retention", &self.events_retention)
            .field("ws_ping_interval", &self.ws_ping_interval)
            .field("submission_relay", &self.submission_relay)
            .field("submission_retry_schedule", &self.submission_retry_schedule)
            .field("submission_timeout", &self.submission_timeout)
            .field("hold_sweep_interval", &self.hold_sweep_interval)
            .field("log_format", &self.log_format)
            .field("log_target", &self.log_target)
            .field("syslog_facility", &self.syslog_facility)
            .field("syslog_socket", &self.syslog_socket)
            .field("metrics_listen", &self.metrics_listen)
            .field("log_level", &self.log_level)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_env() -> Vec<(String, String)> {
        Vec::new()
    }

    #[test]
    fn defaults_run_on_a_laptop() {
        let cfg = Config::default();
        cfg.validate().expect("defaults are valid");
        assert_eq!(cfg.database_url(), "sqlite://./postagent.db");
        assert_eq!(cfg.hmac_secret_path(), PathBuf::from("./hmac.secret"));
        assert_eq!(cfg.api_listen_addr(), ListenAddr::Tcp("127.0.0.1:8080".into()));
    }

    #[test]
    fn file_then_env_then_flags() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("postagent.toml");
        std::fs::write(&path, "api_listen = \"127.0.0.1:9000\"\nshared_domain = \"agents.test\"\n")
            .expect("write");
        let env = vec![
            ("POSTAGENT_API_LISTEN".to_owned(), "127.0.0.1:9001".to_owned()),
            ("POSTAGENT_DNS_SERVER".to_owned(), "127.0.0.1:5353".to_owned()),
            ("HOME".to_owned(), "/nowhere".to_owned()),
        ];
        let (cfg, used) =
            Config::load(Some(&path), env, &[("dns_server", "127.0.0.2".into())]).expect("valid");
        assert_eq!(used.as_deref(), Some(path.as_path()));
        assert_eq!(cfg.api_listen, "127.0.0.1:9001");
        assert_eq!(cfg.shared_domain, "agents.test");
        assert_eq!(cfg.dns_server_addr(), Ok(Some("127.0.0.2:53".parse().expect("addr"))));
    }

    #[test]
    fn errors_name_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "api_lisen = \"x\"\n").expect("write");
        let err = Config::load(Some(&path), no_env(), &[]).expect_err("unknown key");
        assert!(err.message.contains("api_lisen"), "{err}");

        let env = vec![("POSTAGENT_NOPE".to_owned(), "1".to_owned())];
        let err = Config::load(None, env, &[]).expect_err("unknown env");
        assert_eq!(err.key, "POSTAGENT_NOPE");

        let err = Config::load(None, no_env(), &[("lmtp_listen", "nowhere".into())]).expect_err("bad");
        assert_eq!(err.key, "--lmtp-listen");
        let err = Config::load(None, no_env(), &[("database_url", "mysql://x".into())]).expect_err("bad");
        assert_eq!(err.key, "--database-url");
        let env = vec![("POSTAGENT_DNS_TIMEOUT".to_owned(), "soon".to_owned())];
        let err = Config::load(None, env, &[]).expect_err("bad");
        assert_eq!(err.key, "POSTAGENT_DNS_TIMEOUT");
        std::fs::write(&path, "log_format = \"xml\"\n").expect("write");
        let err = Config::load(Some(&path), no_env(), &[]).expect_err("bad value in file");
        assert_eq!(err.key, format!("log_format in {}", path.display()));
        let err = Config::load(None, no_env(), &[("nope", "1".into())]).expect_err("bad flag");
        assert_eq!(err.key, "--nope");
    }

    #[test]
    fn domain_names_are_normalised() {
        let flags = [
            ("shared_domain", "Agents.Example.ORG.".to_owned()),
            ("mail_hostname", "MX.example.org.".to_owned()),
            ("public_url", "https://api.example.org/".to_owned()),
        ];
        let (cfg, _) = Config::load(None, no_env(), &flags).expect("valid");
        assert_eq!(cfg.shared_domain, "agents.example.org");
        assert_eq!(cfg.mail_hostname(), "mx.example.org");
        assert_eq!(cfg.public_url(), "https://api.example.org");
        let err = Config::load(None, no_env(), &[("mail_hostname", "mx".into())]).expect_err("short name");
        assert_eq!(err.key, "--mail-hostname");
    }

    #[test]
    fn listen_addresses_and_durations() {
        assert_eq!(ListenAddr::parse("unix:/run/x.sock"), Ok(ListenAddr::Unix("/run/x.sock".into())));
        assert!(ListenAddr::parse("[::1]:25").is_ok());
        assert!(ListenAddr::parse(":25").is_err());
        assert!(ListenAddr::parse("host:99999").is_err());
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("x"), None);
    }

    #[test]
    fn debug_redacts_database_password() {
        let cfg = Config { database_url: "postgres://pa:hunter2@db/postagent".into(), ..Config::default() };
        let shown = format!("{cfg:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("postgres://pa:<redacted>@db/postagent"));
        let q = redact_url("postgres://pa@db/x?sslmode=require&password=hunter2&host=/run");
        assert_eq!(q, "postgres://pa@db/x?sslmode=require&password=<redacted>&host=/run");
    }

    #[test]
    fn the_sample_file_is_valid_and_documents_every_key() {
        let sample = Path::new(env!("CARGO_MANIFEST_DIR")).join("../postfix-conf/postagent.toml");
        let cfg = Config::from_file(&sample).expect("the sample parses");
        cfg.validate().expect("the sample is valid");
        let text = std::fs::read_to_string(&sample).expect("read");
        let keys = toml::Table::try_from(Config::default()).expect("serialize");
        for key in keys.keys() {
            assert!(text.contains(&format!("\n{key} = ")), "postfix-conf/postagent.toml lacks {key}");
        }
    }
}
