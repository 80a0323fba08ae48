//! The inbound path end to end, as an operator runs it: the real `postagent` binary (its
//! milter, LMTP and API roles on SQLite), a private Postfix wired by the shipped
//! `postfix-conf` fragments, and the loopback DNS zone of `postagent lab` — the same
//! [`postagent_lab::mail_lab`] code. Mail goes in over SMTP and is read back over `/v1`.

use super::bin::{Server, run_with_stdin};
use postagent_core::service;
use postagent_core::store::SqlStore;
use postagent_lab::mail_lab::{SampleZone, Wiring};
use postagent_lab::postfix::require_postfix;
use postagent_lab::smtp::Smtp;
use postagent_lab::{PostfixInstance, free_port};
use serde_json::Value;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

pub const AGENT_DOMAIN: &str = "agents.test";
pub const HOSTNAME: &str = "mx.postagent.test";
/// Every wait is bounded by this; only reached when a test is about to fail.
pub const WAIT: Duration = Duration::from_secs(30);

/// How the world is put together.
pub struct Options {
    /// Agents created before postagent starts (on [`AGENT_DOMAIN`]).
    pub agents: Vec<&'static str>,
    /// Postfix's `milter_default_action` (the fragment says `tempfail`).
    pub milter_default_action: &'static str,
    /// Where Postfix sends agent mail, when not straight to postagent's LMTP port (a proxy).
    pub lmtp_next_hop: Option<SocketAddr>,
    /// The database (default: SQLite in the world's directory).
    pub database_url: Option<String>,
    /// More flags for every postagent command (e.g. `--max-message-bytes`).
    pub extra_args: Vec<&'static str>,
    /// The "internet": Postfix relays mail for [`HUMAN_DOMAIN`] to this SMTP server.
    pub internet: Option<SocketAddr>,
    /// More `main.cf` settings.
    pub main_cf: Vec<(&'static str, String)>,
    /// More `master.cf` services (a content filter's re-injection listener).
    pub master_cf: Vec<String>,
}

/// Where the humans of the outbound tests live (the account owner too).
pub const HUMAN_DOMAIN: &str = "example.org";

impl Default for Options {
    fn default() -> Self {
        Options {
            agents: vec!["bot@agents.test"],
            milter_default_action: "tempfail",
            lmtp_next_hop: None,
            database_url: None,
            extra_args: Vec::new(),
            internet: None,
            main_cf: Vec::new(),
            master_cf: Vec::new(),
        }
    }
}

pub struct MailWorld {
    pub zone: SampleZone,
    pub postfix: PostfixInstance,
    pub dir: tempfile::TempDir,
    /// postagent's milter and LMTP ports: fixed, so a restarted postagent is where Postfix
    /// expects it.
    pub milter_port: u16,
    pub lmtp_port: u16,
    /// The originating listener (master.cf.fragment), where postagent's API submits.
    pub originating: SocketAddr,
    pub key: String,
    database_url: String,
    extra_args: Vec<&'static str>,
    http: reqwest::Client,
    api: Option<String>,
}

impl MailWorld {
    /// `None` (after `SKIP:`) when Postfix cannot run here outside CI.
    pub async fn start(options: Options) -> Option<MailWorld> {
        if !require_postfix() {
            return None;
        }
        let zone = SampleZone::start().await.expect("dns zone");
        let dir = tempfile::tempdir().expect("tempdir");
        let database_url = options
            .database_url
            .unwrap_or_else(|| format!("sqlite://{}", dir.path().join("postagent.db").display()));
        let key = seed(&database_url, &options.agents).await;
        let (milter_port, lmtp_port) = (free_port().expect("port"), free_port().expect("port"));
        let lmtp = options.lmtp_next_hop.unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, lmtp_port)));
        let wiring = Wiring {
            hostname: HOSTNAME.into(),
            agent_domains: vec![AGENT_DOMAIN.into()],
            milter: Some(format!("inet:127.0.0.1:{milter_port}")),
            lmtp: format!("lmtp:inet:{lmtp}"),
            smtp_port: None,
            originating_port: Some(free_port().expect("port")),
        };
        let originating =
            SocketAddr::from((Ipv4Addr::LOCALHOST, wiring.originating_port.expect("set above")));
        let mut builder =
            wiring.builder().expect("wiring").main_cf("milter_default_action", options.milter_default_action);
        if let Some(internet) = options.internet {
            builder =
                builder.transport(HUMAN_DOMAIN, &format!("smtp:[{}]:{}", internet.ip(), internet.port()));
        }
        for (key, value) in &options.main_cf {
            builder = builder.main_cf(key, value);
        }
        for service in &options.master_cf {
            builder = builder.master_cf_service(service);
        }
        let postfix =
            tokio::task::spawn_blocking(move || builder.start()).await.expect("join").expect("start postfix");
        Some(MailWorld {
            zone,
            postfix,
            dir,
            milter_port,
            lmtp_port,
            originating,
            key,
            database_url,
            extra_args: options.extra_args,
            http: reqwest::Client::new(),
            api: None,
        })
    }

    /// `postagent admin ARGS…` against this world's database: (exit code, stdout + stderr).
    pub fn admin(&self, args: &[&str]) -> (i32, String) {
        let mut all = vec!["admin"];
        all.extend(args);
        all.extend(["--database-url", self.database_url.as_str()]);
        let out = super::bin::run(self.dir.path(), &all);
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }

    /// `postagent ROLE` with this world's settings; `listeners` override the role listeners
    /// (e.g. `[("--lmtp-listen", "")]` to run serve without LMTP).
    pub fn postagent(&mut self, role: &str, listeners: &[(&str, &str)]) -> Server {
        let milter = format!("127.0.0.1:{}", self.milter_port);
        let lmtp = format!("127.0.0.1:{}", self.lmtp_port);
        let dns = self.zone.dns().addr().to_string();
        let database_url = self.database_url.clone();
        let submission = self.originating.to_string();
        let mut args: Vec<&str> = vec![
            role,
            "--database-url",
            &database_url,
            "--api-listen",
            "127.0.0.1:0",
            "--shared-domain",
            AGENT_DOMAIN,
            "--mail-hostname",
            HOSTNAME,
            "--dns-server",
            &dns,
            "--dns-timeout",
            "2s",
            "--submission-relay",
            &submission,
        ];
        for (flag, default) in [("--milter-listen", milter.as_str()), ("--lmtp-listen", lmtp.as_str())] {
            let value = listeners.iter().find(|(f, _)| *f == flag).map_or(default, |(_, v)| *v);
            args.extend([flag, value]);
        }
        args.extend(&self.extra_args);
        let server = Server::start(self.dir.path(), &args);
        if !server.addr.is_empty() {
            self.api = Some(format!("http://{}", server.addr));
        }
        server
    }

    /// `postagent serve` with every role.
    pub fn serve(&mut self) -> Server {
        self.postagent("serve", &[])
    }

    /// Sends `message` over SMTP from `mail_from` to `rcpts`; returns Postfix's queue id.
    pub async fn send(&self, mail_from: &str, rcpts: &[&str], message: &str) -> String {
        self.send_via(self.postfix.smtp_addr(), mail_from, rcpts, message).await
    }

    /// [`Self::send`] through another Postfix listener (e.g. [`Self::originating`]).
    pub async fn send_via(&self, via: SocketAddr, mail_from: &str, rcpts: &[&str], message: &str) -> String {
        let mut smtp = Smtp::connect(via, "mail.client.example").await;
        let reply = smtp.send(mail_from, rcpts, message).await;
        assert!(reply.starts_with("250"), "end of DATA: {reply}\n{}", self.postfix.read_log());
        smtp.cmd("QUIT").await;
        reply.trim_end().rsplit(' ').next().expect("queue id").to_owned()
    }

    /// Waits for Postfix's `status=sent` for `rcpt` of `queue_id`: it follows our 250, which
    /// follows the commit, so the message is readable through the API afterwards.
    pub async fn wait_sent(&self, queue_id: &str, rcpt: &str) -> String {
        self.wait_log(queue_id, rcpt, "status=sent").await
    }

    /// Waits for a Postfix log line about `queue_id` and `rcpt` containing `needle`.
    pub async fn wait_log(&self, queue_id: &str, rcpt: &str, needle: &str) -> String {
        let to = format!("to=<{rcpt}>");
        self.postfix.wait_log_line(&[queue_id, &to, needle], WAIT).await.unwrap_or_else(|e| panic!("{e:#}"))
    }

    pub async fn get(&self, path: &str) -> Value {
        let api = self.api.as_deref().expect("an API is running");
        let r = self.http.get(format!("{api}{path}")).bearer_auth(&self.key).send().await.expect("GET");
        assert!(r.status().is_success(), "GET {path}: {}", r.status());
        r.json().await.expect("json")
    }

    /// `method path` with a JSON body (or none): the status and the JSON answer.
    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> (reqwest::StatusCode, Value) {
        let api = self.api.as_deref().expect("an API is running");
        let mut req = self.http.request(method, format!("{api}{path}")).bearer_auth(&self.key);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("request");
        let status = r.status();
        let text = r.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    /// The running API's base URL.
    pub fn api(&self) -> &str {
        self.api.as_deref().expect("an API is running")
    }

    /// The agent's inbox, newest first.
    pub async fn inbox(&self, agent: &str) -> Vec<Value> {
        let list = self.get(&format!("/v1/agents/{agent}/messages")).await;
        list["items"].as_array().expect("items").clone()
    }

    /// The one message in the agent's inbox, in full (`MessageView`).
    pub async fn only_message(&self, agent: &str) -> Value {
        let inbox = self.inbox(agent).await;
        assert_eq!(inbox.len(), 1, "{agent} has exactly one message: {inbox:?}");
        let id = inbox[0]["id"].as_str().expect("id");
        self.get(&format!("/v1/agents/{agent}/messages/{id}")).await
    }

    /// The world's database, for a test that must write what the API refuses.
    pub async fn store(&self) -> SqlStore {
        SqlStore::open(&self.database_url, 2).await.expect("open the store")
    }

    pub fn secret_file(&self) -> PathBuf {
        self.dir.path().join("hmac.secret")
    }

    /// `message` as postagent's submission worker would hand it to the originating listener
    /// for `agent` of this world's account: with a fresh submission token under the running
    /// deployment's secret (the message must carry `X-E2A-Message-Id: message_id`).
    pub async fn stamped(&self, message: &str, message_id: &str, agent: &str) -> String {
        let secret =
            postagent_core::secret::load_or_create(&self.secret_file()).expect("the deployment secret");
        let account = self.get("/v1/account").await;
        let account = account["user"]["id"].as_str().expect("account id");
        let raw = postagent_core::auth::submission::stamp(
            &secret,
            message.as_bytes(),
            message_id,
            account,
            agent,
            postagent_core::time::Timestamp::now(),
        );
        String::from_utf8(raw).expect("utf-8")
    }

    /// `postagent verify --secret-file …` on `raw`: (exit code, stdout + stderr).
    pub fn verify(&self, raw: &[u8]) -> (i32, String) {
        let secret = self.secret_file();
        let args = ["verify", "--secret-file", secret.to_str().expect("utf-8 path")];
        let out = run_with_stdin(self.dir.path(), &args, raw);
        let text =
            format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code().unwrap_or(-1), text)
    }
}

/// Sends `subject` from alice@sender.test to `agent` through `pf`'s SMTP port and waits for
/// Postfix's `status=sent`; returns the queue id.
pub async fn deliver_through(pf: &PostfixInstance, agent: &str, subject: &str) -> String {
    use postagent_lab::mail_lab::{SENDER_DOMAIN, sample_message};
    let mut smtp = Smtp::connect(pf.smtp_addr(), "mail.sender.test").await;
    let message = sample_message(agent, subject, &subject.replace(' ', "-"), "hi\r\n");
    let reply = smtp.send(&format!("alice@{SENDER_DOMAIN}"), &[agent], &message).await;
    assert!(reply.starts_with("250"), "{reply}\n{}", pf.read_log());
    let qid = reply.trim_end().rsplit(' ').next().expect("queue id").to_owned();
    let to = format!("to=<{agent}>");
    pf.wait_log_line(&[&qid, &to, "status=sent"], WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e:#}\n{}", pf.read_log()));
    qid
}

/// `GET /v1/agents/{agent}/messages` on the API at `addr`.
pub async fn inbox_at(addr: &str, key: &str, agent: &str) -> Value {
    reqwest::Client::new()
        .get(format!("http://{addr}/v1/agents/{agent}/messages"))
        .bearer_auth(key)
        .send()
        .await
        .expect("inbox")
        .json()
        .await
        .expect("json")
}

/// The raw MIME of a `MessageView`.
pub fn raw_of(view: &Value) -> Vec<u8> {
    use base64::Engine as _;
    let b64 = view["raw_message"].as_str().expect("raw_message");
    base64::engine::general_purpose::STANDARD.decode(b64).expect("base64")
}

/// How many header fields named `name` (any case) the raw message's header block holds.
pub fn header_count(raw: &[u8], name: &str) -> usize {
    let text = String::from_utf8_lossy(raw);
    let head = text.split("\r\n\r\n").next().unwrap_or("");
    head.lines().filter(|l| l.split_once(':').is_some_and(|(n, _)| n.eq_ignore_ascii_case(name))).count()
}

/// The account and agents, written before postagent first starts; returns the API key.
pub async fn seed(database_url: &str, agents: &[&str]) -> String {
    let store = SqlStore::open(database_url, 2).await.expect("open the store");
    let (account, key) = service::bootstrap_account(&store, "owner@example.org").await.expect("account");
    for agent in agents {
        service::create_agent(&store, &account.id, agent, "Agent", AGENT_DOMAIN).await.expect("agent");
    }
    store.close().await;
    key
}
