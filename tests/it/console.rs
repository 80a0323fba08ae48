//! The console over plain HTTP, on SQLite and PostgreSQL: sign-in by key and by link, the
//! cookie's flags, CSRF and cross-site refusals, tenant isolation, sessions and their expiry,
//! every page rendering, and the sanitised message frame. The browser tests
//! (console_e2e.rs) show the same in chromium through Postfix.

use crate::common;

use common::{TestApp, enc};
use postagent_core::magic;
use postagent_core::secret::Secret;
use postagent_core::store::{ConsoleStore, NewConsoleSession};
use postagent_core::time::Timestamp;
use reqwest::{Method, StatusCode, header};
use serde_json::json;

on_both_backends!(
    key_sign_in_and_cookie,
    emailed_link_signs_in_once,
    forms_need_their_token_and_our_origin,
    another_accounts_things_are_not_found,
    sessions_listed_revoked_and_expired,
    every_page_renders_and_decides,
);

const BOT: &str = "bot@agents.test";

/// A browser without a browser: one cookie, no redirects followed.
pub struct Client {
    http: reqwest::Client,
    base: String,
    cookie: Option<String>,
}

pub struct Page {
    pub status: StatusCode,
    pub location: String,
    pub headers: header::HeaderMap,
    pub body: String,
}

impl Page {
    /// The value of the first `name="csrf"` field.
    pub fn csrf(&self) -> String {
        let at = self.body.find("name=\"csrf\" value=\"").expect("a form with a csrf field");
        let rest = &self.body[at + 19..];
        rest[..rest.find('"').expect("end")].to_owned()
    }
}

impl Client {
    pub fn new(base: &str) -> Self {
        let http =
            reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
        Self { http, base: base.trim_end_matches('/').to_owned(), cookie: None }
    }

    pub async fn send(
        &mut self,
        method: Method,
        path: &str,
        form: &[(&str, &str)],
        headers: &[(&str, &str)],
    ) -> Page {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header(header::COOKIE, c.as_str());
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if method == Method::POST {
            req = req.form(form);
        }
        let res = req.send().await.expect("request");
        if let Some(set) = res.headers().get(header::SET_COOKIE).and_then(|v| v.to_str().ok()) {
            let pair = set.split(';').next().unwrap_or("").to_owned();
            self.cookie = (!pair.ends_with('=')).then_some(pair);
        }
        Page {
            status: res.status(),
            location: res
                .headers()
                .get(header::LOCATION)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned(),
            headers: res.headers().clone(),
            body: res.text().await.expect("body"),
        }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        self.send(Method::GET, path, &[], &[]).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        self.send(Method::POST, path, form, &[]).await
    }

    /// Signs in with `key`; the answer.
    pub async fn sign_in(&mut self, key: &str) -> Page {
        self.post("/console/login/key", &[("key", key)]).await
    }

    /// A form post with the CSRF token of the page at `from`.
    pub async fn submit(&mut self, from: &str, action: &str, fields: &[(&str, &str)]) -> Page {
        let csrf = self.get(from).await.csrf();
        let mut form = vec![("csrf", csrf.as_str())];
        form.extend_from_slice(fields);
        self.post(action, &form).await
    }
}

async fn setup(app: &TestApp) {
    let r = app.post("/v1/agents", json!({"email": BOT, "name": "Bot"})).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

async fn hold_sends(app: &TestApp) {
    let body = json!({
        "inbound": {"gate": {"policy": "open"}, "scan": {}},
        "outbound": {"gate": {"policy": "allowlist", "allowlist": [], "action": "review"}, "scan": {}},
        "holds": {"ttl_seconds": 3600, "on_expiry": "reject"},
    });
    let r = app
        .call(Method::PUT, &format!("/v1/agents/{}/protection", enc(BOT)), Some(&app.key), Some(body))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
}

async fn held(app: &TestApp, subject: &str, html: Option<&str>) -> String {
    let mut body =
        json!({"to": ["alice@example.org"], "subject": subject, "text": format!("{subject} text")});
    if let Some(h) = html {
        body["html"] = json!(h);
    }
    let r = app.post(&format!("/v1/agents/{}/messages", enc(BOT)), body).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    r.body["message_id"].as_str().expect("id").to_owned()
}

async fn review_status(app: &TestApp, id: &str) -> String {
    let r = app.get(&format!("/v1/agents/{}/messages/{id}", enc(BOT))).await;
    r.body["review_status"].as_str().unwrap_or("").to_owned()
}

async fn key_sign_in_and_cookie(app: &TestApp) {
    setup(app).await;
    let mut c = Client::new(&app.base);
    let first = c.get("/console/reviews").await;
    assert_eq!((first.status, first.location.as_str()), (StatusCode::SEE_OTHER, "/console/login"));
    let login = c.get("/console/login").await;
    assert_eq!(login.status, StatusCode::OK);
    assert!(
        login.headers[header::CONTENT_SECURITY_POLICY].to_str().expect("csp").contains("default-src 'none'")
    );
    assert_eq!(login.headers["x-frame-options"], "DENY");

    let bad = c.sign_in("e2a_live_nonsense").await;
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert!(c.cookie.is_none());
    let agent_key = app.agent_key(BOT).await;
    let refused = c.sign_in(&agent_key).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "an agent key never signs in");
    assert!(refused.body.contains("Agent keys cannot sign in"), "{}", refused.body);
    assert!(c.cookie.is_none());

    let mut raw = Client::new(&app.base);
    let res = raw
        .http
        .post(format!("{}/console/login/key", app.base))
        .form(&[("key", app.key.as_str())])
        .send()
        .await
        .expect("post");
    assert_eq!(res.status(), StatusCode::SEE_OTHER);
    let set = res.headers()[header::SET_COOKIE].to_str().expect("cookie").to_owned();
    assert!(set.starts_with("postagent_console="), "{set}");
    for flag in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(set.contains(flag), "{flag} in {set}");
    }
    assert!(!set.contains("Secure"), "public_url is http here: {set}");
    raw.cookie = Some(set.split(';').next().expect("pair").to_owned());
    let page = raw.get("/console/reviews").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    assert!(page.body.contains("Nothing is waiting"), "{}", page.body);
    // The cookie is a bearer of the session only: it does not open /v1.
    let v1 = raw.get("/v1/account").await;
    assert_eq!(v1.status, StatusCode::UNAUTHORIZED);
}

async fn emailed_link_signs_in_once(app: &TestApp) {
    let mut c = Client::new(&app.base);
    let sent = c.post("/console/login/email", &[("email", "Owner@Example.org")]).await;
    assert_eq!(sent.status, StatusCode::OK);
    let unknown = c.post("/console/login/email", &[("email", "nobody@example.org")]).await;
    assert_eq!(unknown.body, sent.body, "the answer does not tell whether the address exists");
    let not_an_address = c.post("/console/login/email", &[("email", "not an address")]).await;
    assert_eq!(not_an_address.status, StatusCode::UNPROCESSABLE_ENTITY);

    // One login was stored for the owner, with its mail queued as a job (these apps run no
    // submitter; console_e2e.rs reads the mail through Postfix).
    let account = app.account_id().await;
    // The lookup runs after the answer (so its time tells nothing): wait for its row.
    let ids = logins_at_least(app, 1).await;
    assert_eq!(ids.len(), 1, "{ids:?}");
    let login = app.store.get_console_login(&ids[0]).await.expect("get").expect("login");
    assert_eq!((login.account_id, login.email.as_str()), (account.clone(), "owner@example.org"));
    let token = magic::sign_in_token(&Secret::new(vec![42; 32]), &ids[0]);

    let forged = c.get(&format!("/console/login/link?t={}x", &token[..token.len() - 1])).await;
    assert_eq!(forged.status, StatusCode::BAD_REQUEST);
    let other_secret = magic::sign_in_token(&Secret::new(vec![7; 32]), &ids[0]);
    assert_eq!(c.get(&format!("/console/login/link?t={other_secret}")).await.status, StatusCode::BAD_REQUEST);
    // A review link's token is no sign-in token.
    let review = magic::link_token(
        &Secret::new(vec![42; 32]),
        &ids[0],
        magic::Action::Approve,
        Timestamp::now().plus_secs(60),
    );
    assert_eq!(c.get(&format!("/console/login/link?t={review}")).await.status, StatusCode::BAD_REQUEST);

    let landing = c.get(&format!("/console/login/link?t={token}")).await;
    assert_eq!(landing.status, StatusCode::OK);
    assert!(landing.body.contains("owner@example.org"), "{}", landing.body);
    assert!(c.cookie.is_none(), "a GET (a mail scanner) signs nobody in");
    let again = c.get(&format!("/console/login/link?t={token}")).await;
    assert_eq!(again.status, StatusCode::OK, "nor uses the link up");

    let done = c.post("/console/login/link", &[("t", token.as_str())]).await;
    assert_eq!((done.status, done.location.as_str()), (StatusCode::SEE_OTHER, "/console/reviews"));
    assert!(c.cookie.is_some());
    assert_eq!(c.get("/console/sessions").await.status, StatusCode::OK);
    let mut second = Client::new(&app.base);
    let used = second.post("/console/login/link", &[("t", token.as_str())]).await;
    assert_eq!(used.status, StatusCode::GONE, "a link works once");
    assert!(second.cookie.is_none());

    // Asking too often: the same answer, no more links.
    for _ in 0..8 {
        c.post("/console/login/email", &[("email", "owner@example.org")]).await;
    }
    assert_eq!(logins_at_least(app, 5).await.len(), 5, "five an hour, the first one included");

    // The account's reviewer signs in the same way, to the reviews only; when the account
    // names another reviewer, the old one's session ends.
    use postagent_core::store::AccountStore as _;
    app.store.set_reviewer_email(&account, Some("rev@example.org")).await.expect("reviewer");
    let mut rev = Client::new(&app.base);
    rev.post("/console/login/email", &[("email", "rev@example.org")]).await;
    let all = logins_at_least(app, 6).await;
    let mut new = Vec::new();
    for id in &all {
        let l = app.store.get_console_login(id).await.expect("get").expect("login");
        if l.email == "rev@example.org" {
            new.push(id.clone());
        }
    }
    assert_eq!(new.len(), 1, "{all:?}");
    let token = magic::sign_in_token(&Secret::new(vec![42; 32]), &new[0]);
    assert_eq!(rev.post("/console/login/link", &[("t", token.as_str())]).await.status, StatusCode::SEE_OTHER);
    let queue = rev.get("/console/reviews").await;
    assert_eq!(queue.status, StatusCode::OK);
    assert!(!queue.body.contains("/console/keys"), "no owner's pages in a reviewer's menu");
    for path in ["/console/keys", "/console/agents", "/console/sessions", "/console/webhooks"] {
        assert_eq!(rev.get(path).await.status, StatusCode::FORBIDDEN, "{path}");
    }
    let csrf = queue.csrf();
    let made =
        rev.post("/console/keys", &[("csrf", csrf.as_str()), ("name", "mine"), ("agent_email", "")]).await;
    assert_eq!(made.status, StatusCode::FORBIDDEN, "a reviewer mints no keys");
    app.store.set_reviewer_email(&account, Some("other-rev@example.org")).await.expect("reviewer");
    let gone = rev.get("/console/reviews").await;
    assert_eq!((gone.status, gone.location.as_str()), (StatusCode::SEE_OTHER, "/console/login"));
}

/// The stored sign-in links, once there are at least `n`.
async fn logins_at_least(app: &TestApp, n: usize) -> Vec<String> {
    postagent_lab::receiver::until(
        &format!("{n} sign-in links"),
        std::time::Duration::from_secs(10),
        || async {
            let ids = logins(app).await;
            (ids.len() >= n).then_some(ids)
        },
    )
    .await
}

async fn logins(app: &TestApp) -> Vec<String> {
    use postagent_core::store::JobQueue as _;
    use postagent_core::vocab::JobKind;
    let jobs =
        app.store.claim_jobs(JobKind::ConsoleSignIn, "test", Timestamp::now(), 1, 100).await.expect("claim");
    let mut ids: Vec<String> = jobs.iter().map(|j| j.ref_id.clone()).collect();
    app.store.release_jobs("test").await.expect("release");
    ids.sort();
    ids
}

async fn forms_need_their_token_and_our_origin(app: &TestApp) {
    setup(app).await;
    hold_sends(app).await;
    let id = held(app, "Keep", None).await;
    let mut c = Client::new(&app.base);
    c.sign_in(&app.key).await;
    let path = format!("/console/reviews/{id}/reject");
    let csrf = c.get(&format!("/console/reviews/{id}")).await.csrf();

    let missing = c.post(&path, &[("reason", "x")]).await;
    assert_eq!(missing.status, StatusCode::FORBIDDEN);
    let wrong = c.post(&path, &[("csrf", "00"), ("reason", "x")]).await;
    assert_eq!(wrong.status, StatusCode::FORBIDDEN);
    let form = [("csrf", csrf.as_str()), ("reason", "x")];
    let cross = c.send(Method::POST, &path, &form, &[("sec-fetch-site", "cross-site")]).await;
    assert_eq!(cross.status, StatusCode::FORBIDDEN, "a cross-site form is refused even with a token");
    let other_origin = c.send(Method::POST, &path, &form, &[("origin", "http://evil.example")]).await;
    assert_eq!(other_origin.status, StatusCode::FORBIDDEN);
    let login_elsewhere = c
        .send(
            Method::POST,
            "/console/login/key",
            &[("key", app.key.as_str())],
            &[("sec-fetch-site", "cross-site")],
        )
        .await;
    assert_eq!(login_elsewhere.status, StatusCode::FORBIDDEN, "no sign-in from another site either");
    assert_eq!(review_status(app, &id).await, "pending_review", "nothing was decided");

    // Another session's token is not this one's.
    let mut other = Client::new(&app.base);
    other.sign_in(&app.key).await;
    let theirs = other.get(&format!("/console/reviews/{id}")).await.csrf();
    assert_ne!(theirs, csrf);
    assert_eq!(c.post(&path, &[("csrf", theirs.as_str())]).await.status, StatusCode::FORBIDDEN);

    let same = c.send(Method::POST, &path, &form, &[("sec-fetch-site", "same-origin")]).await;
    assert_eq!(
        (same.status, same.location.as_str()),
        (StatusCode::SEE_OTHER, "/console/reviews?done=rejected")
    );
    assert_eq!(review_status(app, &id).await, "review_rejected");

    // Behind a proxy that rewrites Host, an Origin that is public_url's is ours.
    let other = held(app, "Proxied", None).await;
    let csrf = c.get(&format!("/console/reviews/{other}")).await.csrf();
    let form = [("csrf", csrf.as_str()), ("reason", "y")];
    let proxied = c
        .send(
            Method::POST,
            &format!("/console/reviews/{other}/reject"),
            &form,
            &[("host", "10.1.2.3:8080"), ("origin", app.base.trim_end_matches('/'))],
        )
        .await;
    assert_eq!(proxied.status, StatusCode::SEE_OTHER, "{}", proxied.body);
    assert_eq!(review_status(app, &other).await, "review_rejected");
}

async fn another_accounts_things_are_not_found(app: &TestApp) {
    setup(app).await;
    hold_sends(app).await;
    let id = held(app, "Mine", None).await;
    let intruder = app.other_account().await;
    let mut c = Client::new(&app.base);
    c.sign_in(&intruder).await;
    let nothing = c.get("/console/reviews/msg_00000000000000000000000000000000").await;
    assert_eq!(nothing.status, StatusCode::NOT_FOUND);
    for path in [
        format!("/console/reviews/{id}"),
        format!("/console/reviews/{id}/body"),
        format!("/console/agents/{}", enc(BOT)),
        format!("/console/agents/{}/messages/{id}", enc(BOT)),
        "/console/domains/agents.test".to_owned(),
        "/console/no-such-page".to_owned(),
    ] {
        let page = c.get(&path).await;
        assert_eq!(page.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(page.body, nothing.body, "{path}: the same page as for nothing at all");
    }
    let tried = c.submit("/console/reviews", &format!("/console/reviews/{id}/approve"), &[]).await;
    assert_eq!(tried.status, StatusCode::NOT_FOUND);
    let bulk =
        c.submit("/console/reviews", "/console/reviews/bulk", &[("id", &id), ("action", "approve")]).await;
    assert_eq!(bulk.location, "/console/reviews?done=bulk&n=0&failed=1");
    assert_eq!(review_status(app, &id).await, "pending_review");
}

async fn sessions_listed_revoked_and_expired(app: &TestApp) {
    let mut a = Client::new(&app.base);
    let mut b = Client::new(&app.base);
    a.sign_in(&app.key).await;
    b.sign_in(&app.key).await;
    let list = a.get("/console/sessions").await;
    assert_eq!(list.body.matches("/revoke\"").count(), 2, "{}", list.body);
    assert!(list.body.contains("this browser"));
    let account = app.account_id().await;
    let now = Timestamp::now();
    let sessions = app.store.list_console_sessions(&account, now, now.plus_secs(-3600)).await.expect("list");
    assert_eq!(sessions.len(), 2);
    // Revoke b's from a (b's is the newer: listed first).
    let b_id = sessions[0].id.clone();
    let revoked = a.submit("/console/sessions", &format!("/console/sessions/{b_id}/revoke"), &[]).await;
    assert_eq!(revoked.location, "/console/sessions");
    let locked = b.get("/console/reviews").await;
    assert_eq!((locked.status, locked.location.as_str()), (StatusCode::SEE_OTHER, "/console/login"));
    // Signing out ends a's.
    let out = a.submit("/console/reviews", "/console/logout", &[]).await;
    assert_eq!(out.location, "/console/login");
    assert!(a.cookie.is_none(), "the cookie is cleared");

    // Idle and absolute expiry, with the clock in the test's hands.
    let t0 = Timestamp::now();
    let s = NewConsoleSession {
        id: "cs_test",
        token_hash: "h",
        account_id: &account,
        signed_in_as: "owner@example.org",
        user_agent: "test",
        now: t0,
        expires_at: t0.plus_secs(100),
    };
    app.store.create_console_session(s).await.expect("create");
    let live = |at: i64, idle: i64| {
        let store = app.store.clone();
        async move {
            store
                .console_session("h", t0.plus_secs(at), t0.plus_secs(at - idle))
                .await
                .expect("get")
                .is_some()
        }
    };
    assert!(live(10, 30).await);
    assert!(!live(45, 30).await, "idle past the limit since it was last stamped");
    assert!(!live(65, 30).await, "still idle");
    assert!(live(99, 200).await, "within the absolute lifetime");
    assert!(!live(100, 200).await, "the absolute expiry");
    assert!(app.store.revoke_console_session(&account, "cs_test", t0).await.expect("revoke"));
    assert!(!live(10, 30).await, "revoked");
    assert!(app.store.expire_console(t0.plus_secs(1000)).await.expect("expire") >= 1);
}

async fn every_page_renders_and_decides(app: &TestApp) {
    setup(app).await;
    hold_sends(app).await;
    let html = "<p>Hi <b>there</b><script>alert(1)</script><img src=\"https://tracker.example/p.gif\" onerror=\"x()\"></p>";
    let a = held(app, "With HTML", Some(html)).await;
    let b = held(app, "Second", None).await;
    let c_id = held(app, "Third", None).await;
    let with_file = app
        .post(
            &format!("/v1/agents/{}/messages", enc(BOT)),
            json!({"to": ["alice@example.org"], "bcc": ["audit@example.org"], "subject": "Files", "text": "see attached",
                "attachments": [{"filename": "page.html", "content_type": "text/html", "data": "PHNjcmlwdD54PC9zY3JpcHQ+"}]}),
        )
        .await;
    assert_eq!(with_file.status, StatusCode::ACCEPTED, "{}", with_file.body);
    let files = with_file.body["message_id"].as_str().expect("id").to_owned();
    let hook = app
        .post("/v1/webhooks", json!({"url": "http://127.0.0.1:9/hook", "events": ["email.received"]}))
        .await;
    assert_eq!(hook.status, StatusCode::CREATED, "{}", hook.body);
    let hook_id = hook.body["id"].as_str().expect("id").to_owned();
    let inbound = app
        .deliver(
            BOT,
            b"From: alice@example.org\r\nTo: bot@agents.test\r\nSubject: Hello\r\nMIME-Version: 1.0\r\n\
              Content-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nHi bot\r\n\
              --b\r\nContent-Type: text/html; name=page.html\r\nContent-Disposition: attachment; filename=page.html\r\n\r\n\
              <script>alert(1)</script>\r\n--b--\r\n",
            true,
        )
        .await;

    let mut c = Client::new(&app.base);
    c.sign_in(&app.key).await;
    let queue = c.get("/console/reviews").await;
    for s in ["With HTML", "Second", "Third", "4 messages waiting"] {
        assert!(queue.body.contains(s), "{s}: {}", queue.body);
    }
    let detail = c.get(&format!("/console/reviews/{a}")).await;
    assert_eq!(detail.status, StatusCode::OK, "{}", detail.body);
    assert!(detail.body.contains("1 remote image blocked"), "{}", detail.body);
    assert!(
        detail.body.contains("<iframe class=\"body\" title=\"The held message\" sandbox"),
        "{}",
        detail.body
    );
    assert!(!detail.body.contains("<script"), "the page itself carries none");
    let frame = c.get(&format!("/console/reviews/{a}/body")).await;
    let csp = frame.headers[header::CONTENT_SECURITY_POLICY].to_str().expect("csp").to_owned();
    assert!(csp.starts_with("sandbox;") && csp.contains("default-src 'none'"), "{csp}");
    assert!(frame.body.contains("<b>there</b>"), "{}", frame.body);
    for gone in ["<script", "onerror", "tracker.example"] {
        assert!(!frame.body.contains(gone), "{gone} in {}", frame.body);
    }

    // A held send's Bcc and attachments are shown (the review view has neither), the file as
    // a download that never renders.
    let page = c.get(&format!("/console/reviews/{files}")).await;
    assert!(page.body.contains("audit@example.org") && page.body.contains("page.html"), "{}", page.body);
    let file = c.get(&format!("/console/reviews/{files}/attachments/0")).await;
    assert_eq!(file.status, StatusCode::OK);
    assert_eq!(file.body, "<script>x</script>");
    assert_eq!(file.headers[header::CONTENT_TYPE], "application/octet-stream");
    assert_eq!(file.headers[header::CONTENT_DISPOSITION], "attachment; filename=\"page.html\"");
    assert_eq!(c.get(&format!("/console/reviews/{files}/attachments/1")).await.status, StatusCode::NOT_FOUND);
    let mut outsider = Client::new(&app.base);
    outsider.sign_in(&app.other_account().await).await;
    assert_eq!(
        outsider.get(&format!("/console/reviews/{files}/attachments/0")).await.status,
        StatusCode::NOT_FOUND
    );

    // The emailed approve link lands on the same page (no session), its one form the link's.
    let hold = postagent_core::store::OutboundStore::get_hold(app.store.as_ref(), &a)
        .await
        .expect("get")
        .expect("hold");
    let (approve, _) = magic::links("", &Secret::new(vec![42; 32]), &a, hold.expires_at);
    let mut stranger = Client::new(&app.base);
    let landing = stranger.get(&approve).await;
    assert_eq!(landing.status, StatusCode::OK, "{}", landing.body);
    for s in [
        "The held message",
        "1 remote image blocked",
        "<form method=\"post\" action=\"approve\">",
        "open it in the console",
    ] {
        assert!(landing.body.contains(s), "{s} in {}", landing.body);
    }
    // A link's page shows every recipient and the attachments' names too.
    let files_hold = postagent_core::store::OutboundStore::get_hold(app.store.as_ref(), &files)
        .await
        .expect("get")
        .expect("hold");
    let (files_link, _) = magic::links("", &Secret::new(vec![42; 32]), &files, files_hold.expires_at);
    let files_page = stranger.get(&files_link).await;
    assert!(
        files_page.body.contains("audit@example.org") && files_page.body.contains("page.html"),
        "{}",
        files_page.body
    );
    let token = approve.split_once("?t=").expect("token").1;
    let frame = stranger.get(&format!("/console/link/body?t={token}")).await;
    assert!(frame.body.contains("<b>there</b>") && !frame.body.contains("<script"), "{}", frame.body);
    assert_eq!(stranger.get("/console/link/body?t=forged").await.status, StatusCode::NOT_FOUND);

    // Approve with an edit: the edit reaches the queued message.
    let edited = c
        .submit(
            &format!("/console/reviews/{b}"),
            &format!("/console/reviews/{b}/approve"),
            &[
                ("to", "alice@example.org"),
                ("cc", ""),
                ("subject", "Second (edited)"),
                ("text", "Edited text\r\n"),
            ],
        )
        .await;
    assert_eq!(edited.location, "/console/reviews?done=approved", "{}", edited.body);
    let m = app.get(&format!("/v1/agents/{}/messages/{b}", enc(BOT))).await;
    assert_eq!(
        (m.body["subject"].as_str(), m.body["review_status"].as_str()),
        (Some("Second (edited)"), Some("sent")),
        "{}",
        m.body
    );
    let again =
        c.submit(&format!("/console/reviews/{a}"), &format!("/console/reviews/{b}/approve"), &[]).await;
    assert_eq!(again.status, StatusCode::CONFLICT, "decided already: {}", again.body);
    let bulk = c
        .submit(
            "/console/reviews",
            "/console/reviews/bulk",
            &[("id", &a), ("id", &c_id), ("action", "reject"), ("reason", "no")],
        )
        .await;
    assert_eq!(bulk.location, "/console/reviews?done=bulk&n=2&failed=0");
    assert_eq!(review_status(app, &a).await, "review_rejected");
    assert!(c.get("/console/reviews?done=bulk&n=2&failed=0").await.body.contains("Decided 2 messages."));

    // The other pages, each with something on it.
    let agent = c.get(&format!("/console/agents/{}", enc(BOT))).await;
    assert_eq!(agent.status, StatusCode::OK, "{}", agent.body);
    assert!(agent.body.contains("Hello") && agent.body.contains("Save protection"), "{}", agent.body);
    let mail = c.get(&format!("/console/agents/{}/messages/{inbound}", enc(BOT))).await;
    assert_eq!(mail.status, StatusCode::OK, "{}", mail.body);
    assert!(
        mail.body.contains("The sender&#x27;s domain example.org is verified")
            || mail.body.contains("is verified"),
        "{}",
        mail.body
    );
    assert!(mail.body.contains("DMARC"), "{}", mail.body);
    // An attachment goes out as a download (never rendered), through its short-lived link.
    let att = c.get(&format!("/console/agents/{}/messages/{inbound}/attachments/0", enc(BOT))).await;
    assert_eq!(att.status, StatusCode::SEE_OTHER, "{}", att.body);
    assert!(
        att.location.starts_with("/v1/agents/") && att.location.contains("/download?token="),
        "{}",
        att.location
    );
    let mut anyone = Client::new(&app.base);
    let file = anyone.get(&att.location).await;
    assert_eq!(file.status, StatusCode::OK);
    assert!(
        file.headers[header::CONTENT_DISPOSITION].to_str().expect("cd").starts_with("attachment"),
        "{:?}",
        file.headers
    );
    assert!(file.body.contains("<script>alert(1)</script>"));
    let theirs =
        outsider.get(&format!("/console/agents/{}/messages/{inbound}/attachments/0", enc(BOT))).await;
    assert_eq!(theirs.status, StatusCode::NOT_FOUND);
    for (path, needle) in [
        ("/console/agents".to_owned(), BOT.to_owned()),
        ("/console/domains".to_owned(), "Domains".to_owned()),
        ("/console/webhooks".to_owned(), "127.0.0.1:9".to_owned()),
        (format!("/console/webhooks/{hook_id}"), "Recent deliveries".to_owned()),
        ("/console/keys".to_owned(), "Create a key".to_owned()),
        ("/console/sessions".to_owned(), "this browser".to_owned()),
        (format!("/console/agents/{}/conversations", enc(BOT)), "Second (edited)".to_owned()),
    ] {
        let p = c.get(&path).await;
        assert_eq!(p.status, StatusCode::OK, "{path}: {}", p.body);
        assert!(p.body.contains(&needle), "{path}: {needle} in {}", p.body);
    }

    // The inbound message's event has a delivery to the webhook (to a closed port); the
    // webhook's page redelivers it.
    let deliveries = || async {
        let d = app.get(&format!("/v1/webhooks/{hook_id}/deliveries")).await;
        d.body["items"].as_array().expect("items").clone()
    };
    let first =
        postagent_lab::receiver::until("the delivery row", std::time::Duration::from_secs(10), || async {
            deliveries().await.first().cloned()
        })
        .await;
    let event = first["event_id"].as_str().expect("event").to_owned();
    let page = c.get(&format!("/console/webhooks/{hook_id}")).await;
    assert!(page.body.contains(&format!("/console/events/{event}/redeliver")), "{}", page.body);
    let again = c
        .submit(
            &format!("/console/webhooks/{hook_id}"),
            &format!("/console/events/{event}/redeliver"),
            &[("webhook", &hook_id)],
        )
        .await;
    assert_eq!(again.location, format!("/console/webhooks/{hook_id}?done=redelivered"), "{}", again.body);
    assert_eq!(deliveries().await.len(), 2, "a second delivery of the same event");

    // Protection saved from the form; what the form does not show is kept.
    let saved = c
        .submit(
            &format!("/console/agents/{}", enc(BOT)),
            &format!("/console/agents/{}/protection", enc(BOT)),
            &[
                ("outbound_policy", "open"),
                ("outbound_action", "review"),
                ("outbound_allowlist", ""),
                ("outbound_sensitivity", "off"),
                ("inbound_policy", "allowlist"),
                ("inbound_action", "flag"),
                ("inbound_allowlist", "alice@example.org\nexample.net"),
                ("inbound_sensitivity", "off"),
                ("ttl_seconds", "600"),
                ("on_expiry", "approve"),
            ],
        )
        .await;
    assert_eq!(saved.status, StatusCode::SEE_OTHER, "{}", saved.body);
    let p = app.get(&format!("/v1/agents/{}/protection", enc(BOT))).await;
    assert_eq!(
        p.body["inbound"]["gate"]["allowlist"],
        json!(["alice@example.org", "example.net"]),
        "{}",
        p.body
    );
    assert_eq!(p.body["holds"]["ttl_seconds"], 600);
    let bad = c
        .submit(
            &format!("/console/agents/{}", enc(BOT)),
            &format!("/console/agents/{}/protection", enc(BOT)),
            &[("outbound_policy", "everyone"), ("ttl_seconds", "0")],
        )
        .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", bad.body);
    assert_eq!(
        app.get(&format!("/v1/agents/{}/protection", enc(BOT))).await.body["holds"]["ttl_seconds"],
        600
    );

    // A key: created once, shown once, then revoked.
    let created = c.submit("/console/keys", "/console/keys", &[("name", "ci"), ("agent_email", "")]).await;
    assert_eq!(created.status, StatusCode::OK);
    let at = created.body.find("readonly value=\"").expect("the new key") + 16;
    let key = &created.body[at..at + created.body[at..].find('"').expect("end")];
    assert_eq!(app.call(Method::GET, "/v1/account", Some(key), None).await.status, StatusCode::OK);
    assert!(!c.get("/console/keys").await.body.contains(key), "shown once");
    let keys = app.get("/v1/account/api-keys").await;
    let id =
        keys.body["items"].as_array().expect("items").iter().find(|k| k["name"] == "ci").expect("ci")["id"]
            .as_str()
            .expect("id")
            .to_owned();
    let mut with_key = Client::new(&app.base);
    with_key.sign_in(key).await;
    assert_eq!(with_key.get("/console/keys").await.status, StatusCode::OK);
    let revoked = c.submit("/console/keys", &format!("/console/keys/{id}/revoke"), &[]).await;
    assert_eq!(revoked.location, "/console/keys?done=revoked");
    assert_eq!(app.call(Method::GET, "/v1/account", Some(key), None).await.status, StatusCode::UNAUTHORIZED);
    assert_eq!(
        with_key.get("/console/keys").await.status,
        StatusCode::SEE_OTHER,
        "its sessions end with the key"
    );
    assert_eq!(c.get("/console/keys").await.status, StatusCode::OK, "others go on");
}

/// A decision in the console spends the account's send budget as the API's approve does.
#[tokio::test]
async fn console_decisions_spend_the_api_budget() {
    let app = common::spawn_app_configured(
        common::Db::Sqlite,
        common::test_webhooks(),
        None,
        &[("send_rate_limit", "1")],
    )
    .await
    .expect("app");
    // One held send per agent (sends are budgeted per agent, approvals per account).
    let mut ids = Vec::new();
    for agent in [BOT, "bot2@agents.test"] {
        let r = app.post("/v1/agents", json!({"email": agent})).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        let body = json!({
            "inbound": {"gate": {}, "scan": {}},
            "outbound": {"gate": {"policy": "allowlist", "allowlist": [], "action": "review"}, "scan": {}},
            "holds": {"ttl_seconds": 3600},
        });
        let r = app
            .call(Method::PUT, &format!("/v1/agents/{}/protection", enc(agent)), Some(&app.key), Some(body))
            .await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let r = app
            .post(
                &format!("/v1/agents/{}/messages", enc(agent)),
                json!({"to": ["alice@example.org"], "subject": "Hi", "text": "x"}),
            )
            .await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
        ids.push(r.body["message_id"].as_str().expect("id").to_owned());
    }
    let mut c = Client::new(&app.base);
    c.sign_in(&app.key).await;
    let ok = c
        .submit(&format!("/console/reviews/{}", ids[0]), &format!("/console/reviews/{}/approve", ids[0]), &[])
        .await;
    assert_eq!(ok.location, "/console/reviews?done=approved", "{}", ok.body);
    let limited = c
        .submit(&format!("/console/reviews/{}", ids[1]), &format!("/console/reviews/{}/approve", ids[1]), &[])
        .await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS, "{}", limited.body);
    assert!(limited.body.contains("send limit of 1 reached"), "{}", limited.body);
    let m = app.get(&format!("/v1/agents/{}/messages/{}", enc("bot2@agents.test"), ids[1])).await;
    assert_eq!(m.body["review_status"], "pending_review");
}
