//! What the roles read from a [`Config`]: settings derived from several keys (the webhook,
//! submission and rate-limit settings, the MIME caps) and the values whose default depends on
//! another key or the host (`authserv_id`, `database_url`, `lmtp_transport`, …).

use super::*;

impl Config {
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

    /// The webhook settings, typed.
    pub fn webhooks(&self) -> WebhookSettings {
        WebhookSettings {
            mode: self.webhook_mode,
            schedule: self.webhook_retry_schedule.clone(),
            timeout: self.webhook_timeout,
            concurrency: self.webhook_concurrency.max(1) as usize,
            throttle_delay: self.webhook_throttle_delay,
            retry_after_max: self.webhook_retry_after_max,
            disable_after: self.webhook_disable_after,
            disable_min_failures: i64::from(self.webhook_disable_min_failures),
            events_retention: self.events_retention,
            ws_ping_interval: self.ws_ping_interval,
        }
    }

    pub fn submission(&self) -> SubmissionSettings {
        SubmissionSettings {
            relay: self.submission_relay.clone(),
            retry: self.submission_retry_schedule.clone(),
            timeout: self.submission_timeout,
            hold_sweep_every: self.hold_sweep_interval,
            helo: self.mail_hostname(),
            public_url: self.public_url(),
        }
    }

    pub fn rate_limits(&self) -> RateLimits {
        RateLimits {
            loop_replies: self.loop_reply_budget,
            mark_auto_submitted: self.mark_auto_submitted,
            loop_window: self.loop_reply_window,
            send_per_minute: self.send_rate_limit,
            poll_per_minute: self.poll_rate_limit,
            agents_per_hour: self.agent_creation_rate_limit,
            daily_recipients: self.daily_recipient_quota,
        }
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

    /// `max_message_bytes` as a size in memory.
    pub fn max_message_size(&self) -> usize {
        usize::try_from(self.max_message_bytes).unwrap_or(usize::MAX)
    }

    /// The public base URL without a trailing slash (derived from the API listener if unset).
    pub fn public_url(&self) -> String {
        if self.public_url.is_empty() {
            format!("http://{}", self.api_listen)
        } else {
            self.public_url.trim_end_matches('/').to_owned()
        }
    }

    /// What the socketmap's transport map answers for agent domains: `lmtp_transport`, else
    /// [`TRANSPORT`] (the LMTP transport `postfix setup` adds) and the LMTP listener as
    /// Postfix names it.
    pub fn lmtp_transport(&self) -> String {
        if !self.lmtp_transport.is_empty() {
            return self.lmtp_transport.clone();
        }
        self.lmtp_listen
            .as_ref()
            .map(|l| format!("{TRANSPORT}:{}", l.postfix_endpoint(value::POSTFIX_QUEUE_DIR)))
            .unwrap_or_default()
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
