//! A real headless browser for tests: Debian's `chromium`, driven over W3C WebDriver by
//! `chromedriver` (package `chromium-driver`), one private driver, browser and profile per
//! [`Browser`]. The client is the protocol's JSON over HTTP, as any WebDriver binding speaks
//! it; only the commands the tests use are wrapped.
//!
//! [`Browser::start`] returns `None` (after a `SKIP:` line) when the browser is not installed,
//! and panics in CI, like every other outside tool of the lab.

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The W3C name of an element reference in JSON.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

pub struct Browser {
    driver: Child,
    base: String,
    http: reqwest::Client,
    _profile: tempfile::TempDir,
}

/// An element found on the current page.
#[derive(Debug, Clone)]
pub struct Element(String);

impl Browser {
    /// Starts chromedriver and a headless chromium with a fresh profile at `width`×`height`.
    pub async fn start(width: u32, height: u32) -> Option<Self> {
        let installed = Path::new(CHROMIUM).exists() && Path::new(CHROMEDRIVER).exists();
        if !crate::require_that(
            installed,
            "chromium or chromedriver is not installed",
            "install the chromium and chromium-driver packages",
        ) {
            return None;
        }
        Some(Self::launch(width, height).await.expect("start chromium under chromedriver"))
    }

    async fn launch(width: u32, height: u32) -> Result<Self> {
        let port = crate::free_port()?;
        let driver = Command::new(CHROMEDRIVER)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("spawn chromedriver")?;
        let profile = tempfile::tempdir()?;
        let mut b = Self {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            http: reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?,
            _profile: profile,
        };
        crate::receiver::until("chromedriver ready", Duration::from_secs(30), || async {
            let r = b.http.get(format!("{}/status", b.base)).send().await.ok()?;
            let v: Value = r.json().await.ok()?;
            (v["value"]["ready"] == true).then_some(())
        })
        .await;
        // The flags a closed network and a root user need (see the machine notes): no
        // sandbox as root, nothing phoning home, a throwaway profile.
        let args = [
            "--headless=new".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--hide-scrollbars".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", b._profile.path().display()),
        ];
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        }}});
        let v = b.raw("POST", "/session", Some(caps)).await?;
        let id = v["sessionId"].as_str().context("no session id")?.to_owned();
        b.base = format!("{}/session/{id}", b.base);
        b.set_size(width, height).await?;
        Ok(b)
    }

    async fn raw(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value> {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self.http.post(&url).json(&body.unwrap_or_else(|| json!({}))),
        };
        let res = req.send().await.with_context(|| format!("{method} {path}"))?;
        let v: Value = res.json().await.with_context(|| format!("{method} {path}: not JSON"))?;
        if let Some(err) = v["value"]["error"].as_str() {
            bail!("{method} {path}: {err}: {}", v["value"]["message"].as_str().unwrap_or(""));
        }
        Ok(v["value"].clone())
    }

    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.raw(method, path, body).await.unwrap_or_else(|e| panic!("webdriver: {e:#}"))
    }

    pub async fn set_size(&self, width: u32, height: u32) -> Result<()> {
        self.raw("POST", "/window/rect", Some(json!({"width": width, "height": height}))).await.map(|_| ())
    }

    /// Opens `url` and waits for the page to load.
    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", Some(json!({"url": url}))).await;
    }

    pub async fn url(&self) -> String {
        self.cmd("GET", "/url", None).await.as_str().unwrap_or("").to_owned()
    }

    pub async fn title(&self) -> String {
        self.cmd("GET", "/title", None).await.as_str().unwrap_or("").to_owned()
    }

    /// The page's visible text.
    pub async fn text(&self) -> String {
        self.eval("return document.body ? document.body.innerText : ''", json!([]))
            .await
            .as_str()
            .unwrap_or("")
            .to_owned()
    }

    /// The first element matching `css`, or `None`.
    pub async fn find(&self, css: &str) -> Option<Element> {
        let v =
            self.raw("POST", "/element", Some(json!({"using": "css selector", "value": css}))).await.ok()?;
        v[ELEMENT].as_str().map(|id| Element(id.to_owned()))
    }

    /// The first element matching `css`; panics when there is none.
    pub async fn get(&self, css: &str) -> Element {
        match self.find(css).await {
            Some(e) => e,
            None => panic!("no element {css:?} on {}:\n{}", self.url().await, self.text().await),
        }
    }

    pub async fn count(&self, css: &str) -> usize {
        let v = self.cmd("POST", "/elements", Some(json!({"using": "css selector", "value": css}))).await;
        v.as_array().map_or(0, Vec::len)
    }

    /// Clicks it (a submit button's click waits for the next page to load).
    pub async fn click(&self, e: &Element) {
        self.cmd("POST", &format!("/element/{}/click", e.0), None).await;
    }

    /// Clicks something that loads another page (a submit button, a link) and waits until the
    /// new page has loaded: WebDriver's click returns once the click is dispatched, which can
    /// be before the form's navigation even starts.
    pub async fn follow(&self, e: &Element) {
        self.eval("document.documentElement.setAttribute('data-lab-left', '1')", json!([])).await;
        self.click(e).await;
        self.settled().await;
    }

    /// Waits until the current document is a fresh one (not the page [`Browser::follow`]
    /// left) and has loaded.
    pub async fn settled(&self) {
        let probe = json!({"script": "return document.readyState === 'complete' && !document.documentElement.hasAttribute('data-lab-left')", "args": []});
        crate::receiver::until("the next page to load", Duration::from_secs(30), || async {
            // Mid-navigation the script may fail (no document yet): not loaded.
            let v = self.raw("POST", "/execute/sync", Some(probe.clone())).await.ok()?;
            (v == Value::Bool(true)).then_some(())
        })
        .await;
    }

    /// Replaces the field's value with `text`, typed as keys.
    pub async fn fill(&self, e: &Element, text: &str) {
        self.cmd("POST", &format!("/element/{}/clear", e.0), None).await;
        self.cmd("POST", &format!("/element/{}/value", e.0), Some(json!({"text": text}))).await;
    }

    pub async fn property(&self, e: &Element, name: &str) -> Value {
        self.cmd("GET", &format!("/element/{}/property/{name}", e.0), None).await
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page and returns its value.
    pub async fn eval(&self, script: &str, args: Value) -> Value {
        self.cmd("POST", "/execute/sync", Some(json!({"script": script, "args": args}))).await
    }

    /// Presses one key (a WebDriver key code such as `"\u{E004}"` for Tab) on the focused element.
    pub async fn press(&self, key: &str) {
        let actions = json!({"actions": [{"type": "key", "id": "keyboard", "actions": [
            {"type": "keyDown", "value": key}, {"type": "keyUp", "value": key}]}]});
        self.cmd("POST", "/actions", Some(actions)).await;
    }

    /// Switches into the iframe `e` (until [`Browser::leave_frame`]).
    pub async fn enter_frame(&self, e: &Element) {
        self.cmd("POST", "/frame", Some(json!({"id": {ELEMENT: e.0}}))).await;
    }

    pub async fn leave_frame(&self) {
        self.cmd("POST", "/frame/parent", None).await;
    }

    /// A PNG of the viewport, written to `path`.
    pub async fn screenshot(&self, path: &Path) {
        use base64::Engine as _;
        let v = self.cmd("GET", "/screenshot", None).await;
        let png =
            base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or("")).expect("base64 PNG");
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("screenshot directory");
        }
        std::fs::write(path, png).expect("write screenshot");
    }

    /// A PNG of the whole page (the window stretched to the page's height, then restored).
    pub async fn screenshot_full(&self, path: &Path, width: u32, height: u32) {
        let h = self
            .eval("return document.documentElement.scrollHeight", json!([]))
            .await
            .as_u64()
            .unwrap_or(800);
        let _ = self.set_size(width, u32::try_from(h).unwrap_or(height).clamp(height, 4000)).await;
        self.screenshot(path).await;
        let _ = self.set_size(width, height).await;
    }
}

/// `DELETE` on the session, in plain blocking HTTP (Drop cannot await): closing the session
/// ends chromium; killing the driver alone would orphan it.
fn delete_session(session_url: &str) -> std::io::Result<()> {
    use std::io::{Read, Write};
    let rest = session_url.strip_prefix("http://").unwrap_or(session_url);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let mut conn = std::net::TcpStream::connect(host)?;
    conn.set_read_timeout(Some(Duration::from_secs(10)))?;
    write!(
        conn,
        "DELETE /{path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut answer = Vec::new();
    conn.read_to_end(&mut answer)?;
    Ok(())
}

impl Drop for Browser {
    fn drop(&mut self) {
        if self.base.contains("/session/") {
            let _ = delete_session(&self.base);
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
