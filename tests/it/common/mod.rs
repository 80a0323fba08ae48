//! `spawn_app`: a fresh postagent API per test, on 127.0.0.1:0, over a real SQLite file or a
//! real PostgreSQL database, with a real DNS server on loopback for verification lookups.

pub mod bin;
pub mod mail;
pub mod proxy;
pub mod python;

use postagent::serve::{Roles, Running, Shared};
use postagent_core::Config;
use postagent_core::config::WebhookSettings;
use postagent_core::dns::Resolver;
use postagent_core::secret::Secret;
use postagent_core::service;
use postagent_core::store::SqlStore;
use postagent_lab::dns::DnsServer;
use postagent_lab::pg::PgCluster;
use reqwest::{Method, StatusCode, header::HeaderMap};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

pub const SHARED_DOMAIN: &str = "agents.test";
pub const MAIL_HOST: &str = "mx.postagent.test";

#[derive(Clone, Copy, Debug)]
pub enum Db {
    Sqlite,
    Postgres,
}

pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub dns: DnsServer,
    pub store: Arc<SqlStore>,
    /// The bootstrap account's key.
    pub key: String,
    pub account_email: String,
    pub hub: postagent_api::ws::Hub,
    _dir: tempfile::TempDir,
    stop: Option<Box<dyn Fn() + Send + Sync>>,
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The error code of an envelope, after checking the envelope's shape.
    pub fn code(&self) -> &str {
        let err = &self.body["error"];
        assert!(err["message"].is_string(), "envelope without message: {}", self.body);
        assert!(err["request_id"].as_str().is_some_and(|r| !r.is_empty()), "no request_id: {}", self.body);
        assert_eq!(
            self.headers.get("x-request-id").and_then(|v| v.to_str().ok()),
            err["request_id"].as_str(),
            "X-Request-Id and error.request_id differ"
        );
        err["code"].as_str().unwrap_or_else(|| panic!("not an error envelope: {}", self.body))
    }

    /// `(status, code, message)` of an error envelope, after checking its shape: what e2a's
    /// clients branch on, pinned in one comparison.
    pub fn error(&self) -> (u16, String, String) {
        let code = self.code().to_owned();
        let message = self.body["error"]["message"].as_str().unwrap_or_default().to_owned();
        (self.status.as_u16(), code, message)
    }

    /// The `details.fields[].location` values of a 422.
    pub fn locations(&self) -> Vec<String> {
        self.body["error"]["details"]["fields"]
            .as_array()
            .map(|a| a.iter().filter_map(|f| f["location"].as_str().map(str::to_owned)).collect())
            .unwrap_or_default()
    }
}

/// Webhook settings for tests: development mode (local receivers), retries a second apart.
pub fn test_webhooks() -> WebhookSettings {
    WebhookSettings {
        mode: postagent_core::ssrf::WebhookMode::Development,
        schedule: vec![Duration::from_secs(1); 3],
        timeout: Duration::from_secs(2),
        throttle_delay: Duration::from_secs(2),
        retry_after_max: Duration::from_secs(5),
        ..WebhookSettings::default()
    }
}

/// Sets the webhook keys of `config` to `s` (tests speak in settings).
fn with_webhooks(config: &mut Config, s: &WebhookSettings) {
    config.webhook_mode = s.mode;
    config.webhook_retry_schedule = s.schedule.clone();
    config.webhook_timeout = s.timeout;
    config.webhook_concurrency = u32::try_from(s.concurrency).expect("concurrency");
    config.webhook_throttle_delay = s.throttle_delay;
    config.webhook_retry_after_max = s.retry_after_max;
    config.webhook_disable_after = s.disable_after;
    config.webhook_disable_min_failures = u32::try_from(s.disable_min_failures).expect("failures");
    config.events_retention = s.events_retention;
    config.ws_ping_interval = s.ws_ping_interval;
    assert_eq!(&config.webhooks(), s, "every webhook setting is a configuration key");
}

/// `None` when PostgreSQL is wanted but absent outside CI (the test is skipped).
pub async fn spawn_app(db: Db) -> Option<TestApp> {
    spawn_app_with(db, test_webhooks(), None).await
}

/// An app with these webhook settings, over `url` when given (another replica's database).
pub async fn spawn_app_with(db: Db, webhooks: WebhookSettings, url: Option<String>) -> Option<TestApp> {
    spawn_app_configured(db, webhooks, url, &[]).await
}

/// As [`spawn_app_with`], with more configuration keys (`("send_rate_limit", "3")`).
pub async fn spawn_app_configured(
    db: Db,
    webhooks: WebhookSettings,
    url: Option<String>,
    extra: &[(&str, &str)],
) -> Option<TestApp> {
    let dir = tempfile::tempdir().expect("tempdir");
    let url = match (url, db) {
        (Some(u), _) => u,
        (None, Db::Sqlite) => format!("sqlite://{}/postagent.db", dir.path().display()),
        (None, Db::Postgres) => PgCluster::shared()?.create_database().expect("create database"),
    };
    let store = Arc::new(SqlStore::open(&url, 5).await.expect("open store"));
    let dns = DnsServer::start().await.expect("dns server");
    let resolver = Resolver::new(Some(dns.addr()), Duration::from_millis(500)).expect("resolver");
    let account_email = "owner@example.org".to_owned();
    let key = match service::bootstrap_account(store.as_ref(), &account_email).await {
        Ok((_, key)) => key,
        // A second replica on the same database: a fresh key for the same account.
        Err(_) => {
            use postagent_core::store::AccountStore;
            let account = store.find_account_by_email(&account_email).await.expect("query").expect("account");
            let (_, key) = service::create_api_key(
                store.as_ref(),
                &account.id,
                "replica",
                postagent_core::apikey::KeyScope::Account,
                None,
                None,
            )
            .await
            .expect("key");
            key
        }
    };
    // What `postagent serve` starts, through the real configuration path, in the spellings
    // an operator might use: the API (with its janitor and hub) and the webhook worker, no
    // milter, socketmap or LMTP listener, and no submitter: these tests look at mail as it is queued
    // (the Postfix tests run the whole `serve`).
    let port = postagent_lab::free_port().expect("port");
    let base = format!("http://127.0.0.1:{port}");
    let flags: Vec<(String, String)> = [
        ("api_listen", format!("127.0.0.1:{port}")),
        ("milter_listen", String::new()),
        ("lmtp_listen", String::new()),
        ("socketmap_listen", String::new()),
        ("shared_domain", format!("{}.", SHARED_DOMAIN.to_uppercase())),
        ("mail_hostname", MAIL_HOST.to_owned()),
        ("public_url", format!("{base}/")),
        ("shutdown_timeout", "5s".to_owned()),
    ]
    .map(|(k, v)| (k.to_owned(), v))
    .into();
    let flags: Vec<(String, String)> =
        flags.into_iter().chain(extra.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))).collect();
    let (mut config, _) = Config::load(None, Vec::new(), &flags).expect("config");
    with_webhooks(&mut config, &webhooks);
    let shared = Shared { store: store.clone(), secret: Secret::new(vec![42; 32]), resolver };
    let running = Running::start(&config, &shared, Roles { submitter: false, ..Roles::all() })
        .await
        .expect("start the roles");
    let hub = running.hub.clone().expect("the API role runs the hub");
    let stop = running.stopper();
    tokio::spawn(running.wait());
    Some(TestApp {
        base,
        http: reqwest::Client::new(),
        dns,
        store,
        key,
        account_email,
        hub,
        _dir: dir,
        stop: Some(Box::new(stop)),
    })
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            stop();
        }
    }
}

impl TestApp {
    pub async fn call(&self, method: Method, path: &str, key: Option<&str>, body: Option<Value>) -> Reply {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(k) = key {
            req = req.bearer_auth(k);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request");
        let status = res.status();
        let headers = res.headers().clone();
        let text = res.text().await.expect("body");
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Reply { status, headers, body }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.call(Method::GET, path, Some(&self.key), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Reply {
        self.call(Method::POST, path, Some(&self.key), Some(body)).await
    }

    pub async fn delete(&self, path: &str) -> Reply {
        self.call(Method::DELETE, path, Some(&self.key), None).await
    }

    /// Delivers `raw` to `recipient` as the LMTP server would (signed by the app's secret
    /// for this recipient and a fresh queue entry when `verified`), returning the stored id.
    pub async fn deliver(&self, recipient: &str, raw: &[u8], verified: bool) -> String {
        use postagent_core::mail::inbound::{self, Delivered};
        use postagent_core::time::Timestamp;
        let raw = if verified {
            signed_for(
                recipient,
                "alice@example.org",
                postagent_core::auth::headers::EntityType::Human,
                "",
                raw,
            )
        } else {
            raw.to_vec()
        };
        let p = inbound::prepare(
            &Secret::new(vec![42; 32]),
            raw,
            "bounce@example.org",
            &[recipient.to_owned()],
            Timestamp::now(),
        );
        match inbound::store_for(self.store.as_ref(), &p, recipient, Timestamp::now()).await.expect("deliver")
        {
            Delivered::Stored { id } | Delivered::Duplicate { id } => id,
        }
    }

    /// The directory holding the SQLite files (empty for PostgreSQL).
    /// The event types recorded for message `id`, sorted (the events of one transaction
    /// share a time, so their order is not theirs to keep).
    pub async fn event_kinds(&self, id: &str) -> Vec<String> {
        let r = self.get(&format!("/v1/events?message_id={id}")).await;
        let mut kinds: Vec<String> = r.body["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|e| e["type"].as_str().unwrap_or("").to_owned())
            .collect();
        kinds.sort();
        kinds
    }

    /// Marks queued message `id` `sent`, as the submitter does once Postfix took it (these
    /// apps run no submitter).
    pub async fn mark_sent(&self, id: &str) {
        use postagent_core::store::{MessageUpdate, OutboundStore, Transition};
        use postagent_core::vocab::{DeliveryStatus, MessageStatus};
        let sent = Transition {
            message_id: id.to_owned(),
            from: vec![MessageStatus::Accepted],
            set: MessageUpdate {
                status: Some(MessageStatus::Sent),
                delivery_status: Some(DeliveryStatus::Sent),
                ..Default::default()
            },
            at: postagent_core::time::Timestamp::now(),
            ..Transition::default()
        };
        assert!(self.store.transition(sent).await.expect("transition"), "{id} was queued");
    }

    pub fn store_dir(&self) -> std::path::PathBuf {
        self._dir.path().to_path_buf()
    }

    pub async fn account_id(&self) -> postagent_core::ids::AccountId {
        use postagent_core::store::AccountStore;
        self.store.find_account_by_email(&self.account_email).await.expect("query").expect("account").id
    }

    /// A second, unrelated account and its key.
    pub async fn other_account(&self) -> String {
        let (_, key) =
            service::bootstrap_account(self.store.as_ref(), "intruder@example.net").await.expect("bootstrap");
        key
    }

    /// Registers `domain`, publishes its TXT and MX in the test DNS server and verifies it.
    pub async fn verified_domain(&self, domain: &str) {
        let reg = self.post("/v1/domains", serde_json::json!({"domain": domain})).await;
        assert_eq!(reg.status, StatusCode::CREATED, "{}", reg.body);
        let token = reg.body["verification_token"].as_str().expect("token").to_owned();
        self.dns.add_txt(domain, &token);
        self.dns.add_mx(domain, 10, MAIL_HOST);
        let v = self.post(&format!("/v1/domains/{domain}/verify"), Value::Null).await;
        assert_eq!(v.body["verified"], true, "{}", v.body);
    }

    /// Mints an agent-scoped key through the API.
    pub async fn agent_key(&self, email: &str) -> String {
        let r = self
            .post("/v1/account/api-keys", serde_json::json!({"scope": "agent", "agent_email": email}))
            .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["key"].as_str().expect("key").to_owned()
    }
}

/// Percent-encodes a path segment the way the SDK does (`quote(value, safe='')`).
pub fn enc(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Generates one `#[tokio::test]` per backend for each named scenario.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test]
            async fn $name() {
                let app = $crate::common::spawn_app($crate::common::Db::Sqlite).await.expect("sqlite app");
                super::$name(&app).await;
            })*
        }
        mod postgres {
            $(#[tokio::test]
            async fn $name() {
                let Some(app) = $crate::common::spawn_app($crate::common::Db::Postgres).await else { return };
                super::$name(&app).await;
            })*
        }
    };
}

/// `raw` as the milter leaves it for one delivery: a trace header with a fresh queue id on
/// top, then the set (signed with the test apps' secret) naming `recipient`.
pub fn signed_for(
    recipient: &str,
    sender: &str,
    entity_type: postagent_core::auth::headers::EntityType,
    delegation: &str,
    raw: &[u8],
) -> Vec<u8> {
    use postagent_core::auth::headers::{self, Claims};
    let secret = Secret::new(vec![42; 32]);
    let message_id = postagent_core::ids::MessageId::mint().to_string();
    let queue_id = format!("4T{}", &postagent_core::ids::mint("", 6)[..10].to_ascii_uppercase());
    let claims = Claims {
        authentication: passing_authentication(),
        sender: sender.into(),
        entity_type,
        delegation: delegation.into(),
        timestamp: postagent_core::time::Timestamp::now(),
        recipients: vec![headers::recipient_tag(&secret, &message_id, recipient)],
        message_id,
        queue_id: queue_id.clone(),
        header_hash: String::new(),
        body_hash: String::new(),
    };
    let mut traced = format!(
        "Received: from client.example.org (client.example.org [192.0.2.10])\r\n\tby mx.postagent.test (Postfix) with ESMTP id {queue_id}\r\n\tfor <{recipient}>; Mon,  7 Dec 2026 10:00:00 +0000 (UTC)\r\n"
    )
    .into_bytes();
    traced.extend_from_slice(raw);
    headers::prepend(&secret, &claims, &traced)
}

/// What the milter records for mail from example.org that passes DMARC.
pub fn passing_authentication() -> postagent_core::auth::Authentication {
    postagent_core::auth::Authentication::aligned_pass("example.org", "s1")
}
