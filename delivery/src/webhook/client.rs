//! The one HTTP client every webhook POST goes through: redirects never followed, no proxy
//! from the environment, a whole-request timeout, HTTPS only in production, and a resolver
//! that applies the SSRF guard to the addresses it is about to connect to, so DNS rebinding
//! (a public answer at registration, a private one at delivery) is refused at connect time.

use super::retry::{Answer, parse_retry_after};
use postagent_core::config::WebhookSettings;
use postagent_core::dns::Resolver;
use postagent_core::ssrf::{self, WebhookMode};
use postagent_core::webhook_sig::SignatureHeaders;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Kept of a receiver's answer, for the attempt row.
pub const RESPONSE_KEEP_BYTES: usize = 1024;

/// `User-Agent` of every POST: e2a's, so receivers that expect it keep working, and ours.
pub const USER_AGENT: &str = concat!("e2a-webhooks/1 postagent/", env!("CARGO_PKG_VERSION"));

struct GuardedResolver {
    dns: Resolver,
    mode: WebhookMode,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let dns = self.dns.clone();
        let mode = self.mode;
        let host = name.as_str().trim_end_matches('.').to_ascii_lowercase();
        Box::pin(async move {
            let ips = dns
                .webhook_addresses(&host, mode)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { Box::new(e) })?;
            let addrs: reqwest::dns::Addrs = Box::new(ips.into_iter().map(|ip| SocketAddr::new(ip, 0)));
            Ok(addrs)
        })
    }
}

/// How one POST went.
#[derive(Debug, Clone)]
pub struct Posted {
    pub answer: Answer,
    pub status_code: Option<u16>,
    pub response: Option<String>,
    pub error: Option<String>,
    pub duration: Duration,
}

#[derive(Clone)]
pub struct WebhookClient {
    http: reqwest::Client,
    mode: WebhookMode,
}

impl WebhookClient {
    pub fn new(settings: &WebhookSettings, dns: Resolver) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .timeout(settings.timeout)
            .connect_timeout(settings.timeout.min(Duration::from_secs(10)))
            .https_only(settings.mode == WebhookMode::Production)
            .user_agent(USER_AGENT)
            .pool_idle_timeout(Duration::from_secs(60))
            .tcp_nodelay(true)
            .dns_resolver(Arc::new(GuardedResolver { dns, mode: settings.mode }))
            .build()?;
        Ok(Self { http, mode: settings.mode })
    }

    /// POSTs `body` to `url` with the signature headers; never fails, every outcome is a
    /// [`Posted`].
    pub async fn post(&self, url: &str, kind: &str, sig: &SignatureHeaders, body: &str) -> Posted {
        let started = Instant::now();
        let failed = |error: String, started: Instant| Posted {
            answer: Answer::Failed,
            status_code: None,
            response: None,
            error: Some(error),
            duration: started.elapsed(),
        };
        // Literal addresses never reach the resolver: the URL rules cover them.
        if let Err(e) = ssrf::check_url(url, self.mode) {
            return failed(format!("refused: {e}"), started);
        }
        let sent = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("x-e2a-signature", &sig.e2a_signature)
            .header("x-e2a-event-type", kind)
            .header("x-e2a-schema-version", "1")
            .header("webhook-id", &sig.webhook_id)
            .header("webhook-timestamp", &sig.webhook_timestamp)
            .header("webhook-signature", &sig.webhook_signature)
            .body(body.to_owned())
            .send()
            .await;
        let mut res = match sent {
            Ok(r) => r,
            Err(e) if e.is_timeout() => {
                return Posted {
                    answer: Answer::Timeout,
                    status_code: None,
                    response: None,
                    error: Some(format!("no answer within {:?}", started.elapsed())),
                    duration: started.elapsed(),
                };
            }
            Err(e) => return failed(error_chain(&e), started),
        };
        let code = res.status().as_u16();
        let retry_after = res
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, time::OffsetDateTime::now_utc().unix_timestamp()));
        let location =
            res.headers().get(reqwest::header::LOCATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
        // Only the start of the answer is kept; the rest is not read.
        let mut kept = Vec::new();
        while kept.len() < RESPONSE_KEEP_BYTES {
            match res.chunk().await {
                Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
                Ok(None) | Err(_) => break,
            }
        }
        kept.truncate(RESPONSE_KEEP_BYTES);
        let response = (!kept.is_empty()).then(|| String::from_utf8_lossy(&kept).into_owned());
        let error = match code {
            200..=299 => None,
            300..=399 => Some(format!(
                "HTTP {code}: redirects are not followed{}",
                location.map(|l| format!(" (Location: {l})")).unwrap_or_default()
            )),
            _ => Some(format!("HTTP {code}")),
        };
        Posted {
            answer: Answer::Status { code, retry_after },
            status_code: Some(code),
            response,
            error,
            duration: started.elapsed(),
        }
    }
}

/// An error with its causes, e.g. "error sending request: … : 10.0.0.5 is a private address".
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
