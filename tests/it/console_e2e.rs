//! The console in a real browser (Debian's chromium over WebDriver) against `postagent
//! serve` with a private Postfix: the owner signs in by a link mailed through Postfix, reads a
//! held message whose HTML tries to run a script and load a tracking pixel (neither happens),
//! edits and approves it (the edit reaches the internet), rejects another, releases an inbound
//! hold; a cross-site form is refused; a revoked session locks its page; an agent key cannot
//! sign in; another account's message is the same not-found page. Screenshots of the main
//! pages at desktop and phone widths are saved under `target/console-screenshots/`
//! (docs/console.md shows them).

use crate::common;

use common::mail::{MailWorld, Options, WAIT};
use postagent_lab::browser::Browser;
use postagent_lab::lmtp_sink::{Delivered, smtp_sink};
use postagent_lab::receiver::until;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc::UnboundedReceiver;

const BOT: &str = "bot@agents.test";
const PEER: &str = "peer@agents.test";
const DESKTOP: (u32, u32) = (1280, 900);
const PHONE: (u32, u32) = (390, 844);
const TAB: &str = "\u{E004}";

fn shots() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/target/console-screenshots"))
}

/// Everything the "internet" received, kept so each step can look for its own mail.
struct Internet {
    rx: UnboundedReceiver<Delivered>,
    seen: Vec<Delivered>,
}

impl Internet {
    /// The first delivered message whose data contains `needle`, waiting for it.
    async fn find(&mut self, needle: &str) -> Delivered {
        let deadline = tokio::time::Instant::now() + WAIT;
        loop {
            if let Some(d) = self.seen.iter().find(|d| d.data.contains(needle)) {
                return Delivered {
                    mail_from: d.mail_from.clone(),
                    rcpts: d.rcpts.clone(),
                    data: d.data.clone(),
                };
            }
            match tokio::time::timeout_at(deadline, self.rx.recv()).await {
                Ok(Some(d)) => self.seen.push(d),
                _ => panic!("the internet never received {needle:?}"),
            }
        }
    }

    /// Everything received so far (without waiting).
    fn drain(&mut self) -> &[Delivered] {
        while let Ok(d) = self.rx.try_recv() {
            self.seen.push(d);
        }
        &self.seen
    }
}

/// A TCP listener that counts connections: where the held message's script and pixel would
/// phone home.
async fn trap() -> (u16, Arc<AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    tokio::spawn(async move {
        while let Ok((_, _)) = l.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    (port, hits)
}

/// Another site (`localhost`, not `127.0.0.1`: another site to the browser) serving `html`.
async fn other_site(html: String) -> String {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = l.local_addr().expect("addr").port();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = l.accept().await {
            let html = html.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                let _ = s.read(&mut buf).await;
                let res = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{html}",
                    html.len()
                );
                let _ = s.write_all(res.as_bytes()).await;
            });
        }
    });
    format!("http://localhost:{port}/")
}

async fn send(w: &MailWorld, to: &str, subject: &str, extra: Value) -> String {
    let mut body = json!({"to": [to], "subject": subject, "text": format!("{subject}: the text")});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let (status, r) = w.call(Method::POST, &format!("/v1/agents/{BOT}/messages"), Some(body)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    r["message_id"].as_str().expect("id").to_owned()
}

async fn review_status(w: &MailWorld, id: &str) -> String {
    let m = w.get(&format!("/v1/agents/{BOT}/messages/{id}")).await;
    m["review_status"].as_str().unwrap_or("").to_owned()
}

async fn shot(b: &Browser, name: &str) {
    b.eval("document.activeElement && document.activeElement.blur()", json!([])).await;
    b.screenshot_full(&shots().join(format!("{name}-desktop.png")), DESKTOP.0, DESKTOP.1).await;
    b.set_size(PHONE.0, PHONE.1).await.expect("phone size");
    let overflow = b.eval("return document.documentElement.scrollWidth - window.innerWidth", json!([])).await;
    assert!(overflow.as_i64().unwrap_or(1) <= 0, "{name}: wider than a phone by {overflow} px");
    b.screenshot_full(&shots().join(format!("{name}-phone.png")), PHONE.0, PHONE.1).await;
    b.set_size(DESKTOP.0, DESKTOP.1).await.expect("desktop size");
}

/// Every control has a name a screen reader can read.
const UNLABELLED: &str = "const bad = [];
for (const el of document.querySelectorAll('input:not([type=hidden]), select, textarea, button')) {
  const named = (el.labels && el.labels.length) || el.getAttribute('aria-label') || (el.tagName === 'BUTTON' && el.textContent.trim());
  if (!named) bad.push(el.outerHTML);
}
return bad;";

/// Text whose contrast with its background is under WCAG AA's 4.5:1.
const LOW_CONTRAST: &str = "function lum(c) {
  const [r, g, b] = c.match(/[\\d.]+/g).map(Number).slice(0, 3).map(v => { v /= 255; return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4); });
  return 0.2126 * r + 0.7152 * g + 0.0722 * b;
}
function bg(el) {
  for (; el; el = el.parentElement) {
    const m = getComputedStyle(el).backgroundColor.match(/[\\d.]+/g);
    if (m && (m.length < 4 || Number(m[3]) > 0)) return getComputedStyle(el).backgroundColor;
  }
  return 'rgb(255, 255, 255)';
}
const bad = [];
const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
for (let n; (n = walk.nextNode());) {
  const el = n.parentElement;
  if (!n.textContent.trim() || !el.getClientRects().length) continue;
  const a = lum(getComputedStyle(el).color), b = lum(bg(el));
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  if (ratio < 4.5) bad.push(el.tagName + ' ' + n.textContent.trim().slice(0, 30) + ' ' + ratio.toFixed(2));
}
return bad;";

async fn accessible(b: &Browser, page: &str) {
    assert_eq!(b.eval(UNLABELLED, json!([])).await, json!([]), "{page}: unlabelled controls");
    assert_eq!(b.eval(LOW_CONTRAST, json!([])).await, json!([]), "{page}: low contrast");
}

#[tokio::test]
async fn reviewer_in_a_real_browser_through_postfix() {
    let Some(b) = Browser::start(DESKTOP.0, DESKTOP.1).await else { return };
    let (internet, rx) = smtp_sink(&[]).await;
    let options = Options {
        agents: vec![BOT, PEER],
        internet: Some(internet),
        extra_args: vec!["--submission-retry-schedule", "1s,1s"],
        ..Options::default()
    };
    let Some(mut w) = MailWorld::start(options).await else { return };
    let mut net = Internet { rx, seen: Vec::new() };
    let _server = w.serve();
    let api = w.api().to_owned();

    // Every send held; inbound mail from anyone not allowlisted held too.
    let protection = json!({
        "inbound": {"gate": {"policy": "allowlist", "allowlist": [], "action": "review"}, "scan": {}},
        "outbound": {"gate": {"policy": "allowlist", "allowlist": [], "action": "review"}, "scan": {}},
        "holds": {"ttl_seconds": 3600, "on_expiry": "reject"},
    });
    let (status, r) = w.call(Method::PUT, &format!("/v1/agents/{BOT}/protection"), Some(protection)).await;
    assert_eq!(status, StatusCode::OK, "{r}");
    let (trap_port, trap_hits) = trap().await;
    let html = format!(
        "<p id=\"hello\">Hello <b>world</b></p>\
         <script>document.title = 'pwned'; fetch('http://127.0.0.1:{trap_port}/script');</script>\
         <img src=\"http://127.0.0.1:{trap_port}/pixel.gif\" onerror=\"document.title = 'pwned'\">"
    );
    let offer = send(&w, "alice@example.org", "Offer", json!({"html": html})).await;
    let spam = send(&w, "bob@example.org", "Spam", json!({})).await;
    let keep = send(&w, "carol@example.org", "Keep", json!({})).await;
    // Agent to agent: out through Postfix, back in through the milter and LMTP, held there.
    let (status, r) = w
        .call(
            Method::POST,
            &format!("/v1/agents/{PEER}/messages"),
            Some(json!({"to": [BOT], "subject": "From peer", "text": "hi"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    let inbound = until("the inbound hold", WAIT, || async {
        let list = w.get("/v1/reviews").await;
        list["items"]
            .as_array()?
            .iter()
            .find(|h| h["direction"] == "inbound")
            .map(|h| h["id"].as_str().unwrap_or("").to_owned())
    })
    .await;

    // Sign in by a link mailed through Postfix.
    b.goto(&format!("{api}/console")).await;
    assert!(b.url().await.ends_with("/console/login"), "{}", b.url().await);
    accessible(&b, "login").await;
    shot(&b, "login").await;
    b.fill(&b.get("#email").await, "owner@example.org").await;
    b.follow(&b.get("form[action='/console/login/email'] button").await).await;
    assert!(b.text().await.contains("Check your email"), "{}", b.text().await);
    let mail = net.find("Your postagent console sign-in link").await;
    assert!(mail.rcpts.iter().any(|r| r.contains("owner@example.org")), "{:?}", mail.rcpts);
    assert!(mail.mail_from.contains("<>"), "a null sender: {}", mail.mail_from);
    let (text, _) = postagent_core::mail::inbound::bodies(mail.data.as_bytes());
    let text = text.expect("text");
    let link = text.split_whitespace().find(|t| t.contains("/console/login/link?t=")).expect("the link");
    let token = link.split_once("?t=").expect("token").1;
    b.goto(&format!("{api}/console/login/link?t={token}")).await;
    assert!(b.text().await.contains("Signing in as owner@example.org"));
    b.follow(&b.get("main form button").await).await;
    assert!(b.url().await.ends_with("/console/reviews"), "{}", b.url().await);
    assert_eq!(b.eval("return document.cookie", json!([])).await, json!(""), "the cookie is HttpOnly");
    let queue = b.text().await;
    for s in ["Offer", "Spam", "Keep", "From peer", "4 messages waiting"] {
        assert!(queue.contains(s), "{s} in {queue}");
    }
    // Keyboard first: the first Tab reaches the skip link.
    b.press(TAB).await;
    assert_eq!(
        b.eval("return document.activeElement.textContent", json!([])).await,
        json!("Skip to content")
    );
    accessible(&b, "reviews").await;
    shot(&b, "reviews").await;

    // The held HTML is shown, and nothing in it runs or loads.
    b.goto(&format!("{api}/console/reviews/{offer}")).await;
    let page = b.text().await;
    let words = page.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(words.contains("1 remote image blocked") && words.contains("From bot@agents.test"), "{page}");
    let frame = b.get("iframe.body").await;
    b.enter_frame(&frame).await;
    let inside = b.text().await;
    assert!(inside.contains("Hello world"), "{inside}");
    assert_eq!(b.count("script").await, 0);
    b.leave_frame().await;
    assert!(!b.title().await.contains("pwned"));
    accessible(&b, "review").await;
    shot(&b, "review").await;
    assert_eq!(trap_hits.load(Ordering::SeqCst), 0, "the held message reached out");

    // Edit, approve: the edited message reaches the internet.
    b.fill(&b.get("#subject").await, "Offer (edited)").await;
    b.fill(&b.get("#text").await, "The edited text").await;
    b.follow(&b.get("#approve-edited").await).await;
    assert!(b.text().await.contains("Approved"), "{}", b.text().await);
    let out = net.find("Subject: Offer (edited)").await;
    assert!(out.rcpts.iter().any(|r| r.contains("alice@example.org")), "{:?}", out.rcpts);
    let (text, _) = postagent_core::mail::inbound::bodies(out.data.as_bytes());
    assert_eq!(text.as_deref().map(str::trim), Some("The edited text"));

    // Reject another with a reason; release the inbound hold.
    b.goto(&format!("{api}/console/reviews/{spam}")).await;
    b.fill(&b.get("#reason").await, "Not today").await;
    b.follow(&b.get("form[action$='/reject'] button").await).await;
    assert!(b.text().await.contains("Rejected"), "{}", b.text().await);
    assert_eq!(review_status(&w, &spam).await, "review_rejected");
    b.goto(&format!("{api}/console/reviews/{inbound}")).await;
    assert!(b.text().await.contains("cannot be edited"));
    b.follow(&b.get("#approve-as-is").await).await;
    assert!(b.text().await.contains("delivered to the agent"), "{}", b.text().await);
    let released = w.get(&format!("/v1/agents/{BOT}/messages/{inbound}")).await;
    assert_ne!(released["review_status"], "pending_review", "{released}");

    // A form on another site cannot decide anything, even in a signed-in browser.
    let attack = other_site(format!(
        "<form id=\"f\" method=\"post\" action=\"{api}/console/reviews/{keep}/reject\">\
         <input name=\"reason\" value=\"pwned\"></form><script>document.getElementById('f').submit()</script>"
    ))
    .await;
    b.goto(&attack).await;
    until("the cross-site post to land", WAIT, || async { b.url().await.contains("/reject").then_some(()) })
        .await;
    b.settled().await;
    assert!(b.text().await.contains("Refused"), "{}", b.text().await);
    assert_eq!(review_status(&w, &keep).await, "pending_review", "nothing was decided");

    // The other pages, at both widths.
    b.goto(&format!("{api}/console/agents/{}", BOT.replace('@', "%40"))).await;
    assert!(b.text().await.contains("Save protection"));
    accessible(&b, "inbox").await;
    shot(&b, "inbox").await;
    b.goto(&format!("{api}/console/agents/{}/messages/{inbound}", BOT.replace('@', "%40"))).await;
    assert!(b.text().await.contains("Authentication"), "{}", b.text().await);
    accessible(&b, "message").await;
    shot(&b, "message").await;
    for (page, name) in [
        ("domains", "domains"),
        ("domains/agents.test", "domain"),
        ("keys", "keys"),
        ("webhooks", "webhooks"),
    ] {
        b.goto(&format!("{api}/console/{page}")).await;
        assert_eq!(b.count("main h1").await, 1, "{page}: {}", b.text().await);
        accessible(&b, page).await;
        shot(&b, name).await;
    }

    // A second browser signs in with the account key; the first revokes it; its page locks.
    let Some(other) = Browser::start(PHONE.0, PHONE.1).await else { return };
    other.goto(&format!("{api}/console/login")).await;
    other.fill(&other.get("#key").await, &w.key).await;
    other.follow(&other.get("form[action='/console/login/key'] button").await).await;
    assert!(other.url().await.ends_with("/console/reviews"), "{}", other.text().await);
    b.goto(&format!("{api}/console/sessions")).await;
    assert_eq!(b.count("main tbody tr").await, 2, "{}", b.text().await);
    accessible(&b, "sessions").await;
    shot(&b, "sessions").await;
    b.follow(&b.get("main tbody tr:not(:has(.tag)) button").await).await;
    assert_eq!(b.count("main tbody tr").await, 1, "{}", b.text().await);
    other.goto(&format!("{api}/console/reviews")).await;
    assert!(
        other.url().await.ends_with("/console/login"),
        "the revoked session is locked out: {}",
        other.url().await
    );

    // An agent's key cannot sign in.
    let (status, k) = w
        .call(
            Method::POST,
            "/v1/account/api-keys",
            Some(json!({"scope": "agent", "agent_email": BOT, "name": "bot"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{k}");
    other.fill(&other.get("#key").await, k["key"].as_str().expect("key")).await;
    other.follow(&other.get("form[action='/console/login/key'] button").await).await;
    assert!(other.text().await.contains("Agent keys cannot sign in"), "{}", other.text().await);
    assert!(other.url().await.contains("/console/login"));

    // Another account: this account's message is the same not-found page as no message.
    let (code, out) = w.admin(&["bootstrap", "--email", "other@example.net"]);
    assert_eq!(code, 0, "{out}");
    let other_key = out.lines().find_map(|l| l.strip_prefix("API key: ")).expect("key").trim().to_owned();
    let field = other.get("#key").await;
    other.fill(&field, &other_key).await;
    assert_eq!(other.property(&field, "value").await, json!(other_key), "typed: {out}");
    other.follow(&other.get("form[action='/console/login/key'] button").await).await;
    assert!(other.text().await.contains("Nothing is waiting"), "{}", other.text().await);
    other.goto(&format!("{api}/console/reviews/{keep}")).await;
    let theirs = other.text().await;
    other.goto(&format!("{api}/console/reviews/msg_00000000000000000000000000000000")).await;
    assert_eq!(other.text().await, theirs);
    assert!(theirs.contains("Not found"), "{theirs}");

    // Nothing that was rejected or left pending went anywhere, and nothing phoned home.
    for d in net.drain() {
        let to = d.rcpts.join(" ");
        assert!(!to.contains("bob@") && !to.contains("carol@"), "{to}: {}", d.data);
    }
    assert_eq!(trap_hits.load(Ordering::SeqCst), 0);
}
