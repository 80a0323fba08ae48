//! The client side of `/v1`: one HTTP client holding the key, the error envelope turned into
//! a [`CliError`] with its exit class, and transient failures retried where a retry is safe
//! (reads, and writes carrying an `Idempotency-Key`), like e2a's SDKs.

use super::{ApiRefusal, CliError, Exit};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use std::time::Duration;

/// Largest answer read from the API (a message view carries its raw MIME, up to 40 MiB, in
/// base64).
const MAX_ANSWER_BYTES: usize = 96 * 1024 * 1024;
/// Attempts for a call that may be retried.
const ATTEMPTS: u32 = 3;
/// The longest `Retry-After` honoured before giving up with the error.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

pub struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

/// One `/v1` call.
pub struct Call<'a> {
    pub method: Method,
    pub path: String,
    pub query: Vec<(&'a str, String)>,
    pub body: Option<Value>,
    pub idempotency_key: Option<String>,
}

impl<'a> Call<'a> {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Call { method, path: path.into(), query: Vec::new(), body: None, idempotency_key: None }
    }

    pub fn query(mut self, name: &'a str, value: impl Into<String>) -> Self {
        self.query.push((name, value.into()));
        self
    }

    pub fn query_opt(self, name: &'a str, value: Option<impl Into<String>>) -> Self {
        match value {
            Some(v) => self.query(name, v),
            None => self,
        }
    }

    pub fn body(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    pub fn idempotent(mut self, key: String) -> Self {
        self.idempotency_key = Some(key);
        self
    }

    /// Reads and keyed writes are safe to repeat.
    fn retryable(&self) -> bool {
        self.method == Method::GET || self.idempotency_key.is_some()
    }
}

/// A successful answer.
pub struct Answer {
    pub status: StatusCode,
    pub body: Value,
}

impl Api {
    pub fn new(base: &str, key: &str) -> Result<Api, CliError> {
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(CliError::usage(format!(
                "the URL must start with http:// or https:// (got {base:?})"
            )));
        }
        // rustls needs one process-wide provider for https (and wss): ring, as everywhere.
        let _ = rustls::crypto::ring::default_provider().install_default();
        // No redirects: a 301/302 would turn a send into a GET, and a move to another origin
        // would drop (or worse, carry) the key. A redirect is reported with its target instead.
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(60))
            .user_agent(concat!("postagent-cli/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| CliError::new(Exit::Error, format!("cannot build the HTTP client: {e}")))?;
        Ok(Api { http, base: base.trim_end_matches('/').to_owned(), key: key.to_owned() })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn key(&self) -> &str {
        &self.key
    }

    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// `GET path` → the JSON answer.
    pub async fn get(&self, path: impl Into<String>) -> Result<Value, CliError> {
        Ok(self.call(Call::new(Method::GET, path)).await?.body)
    }

    /// Makes the call, retrying transient failures when that is safe.
    pub async fn call(&self, call: Call<'_>) -> Result<Answer, CliError> {
        if let Some(bad) = call.path.split('/').find(|s| is_dot_segment(s)) {
            // A URL parser would resolve it and call another operation.
            return Err(CliError::usage(format!("{bad:?} is not a valid id or address")));
        }
        let tries = if call.retryable() { ATTEMPTS } else { 1 };
        retrying(tries, Duration::from_millis(500), |_| {}, || self.once(&call)).await
    }

    /// One attempt; on failure, the error and the server's `Retry-After`.
    async fn once(&self, call: &Call<'_>) -> Result<Answer, (CliError, Option<Duration>)> {
        let url = format!("{}{}", self.base, call.path);
        let mut req = self.http.request(call.method.clone(), &url).bearer_auth(&self.key);
        if !call.query.is_empty() {
            req = req.query(&call.query);
        }
        if let Some(b) = &call.body {
            req = req.json(b);
        }
        if let Some(k) = &call.idempotency_key {
            req = req.header("idempotency-key", k);
        }
        let res = req.send().await.map_err(|e| (unreachable(&self.base, &e), None))?;
        let status = res.status();
        if status.is_redirection() {
            let to = res.headers().get("location").and_then(|v| v.to_str().ok()).unwrap_or("elsewhere");
            let e = CliError::usage(format!(
                "{url} redirects (HTTP {}) to {to}: point E2A_URL (or --url) at the API itself",
                status.as_u16()
            ));
            return Err((e, None));
        }
        let retry_after = res
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let bytes = read_capped(res, MAX_ANSWER_BYTES).await.map_err(|e| (e, None))?;
        let body: Value = if bytes.is_empty() {
            Value::Null
        } else {
            match serde_json::from_slice(&bytes) {
                Ok(v) => v,
                Err(_) => {
                    let e = CliError::new(
                        if status.is_server_error() { Exit::Error } else { Exit::Request },
                        format!(
                            "{url} answered HTTP {} without JSON: is this a postagent or e2a API?",
                            status.as_u16()
                        ),
                    );
                    return Err((e, retry_after));
                }
            }
        };
        if status.is_success() {
            return Ok(Answer { status, body });
        }
        Err((refusal(status, &body), retry_after))
    }

    /// Every item of a paged list (following `next_cursor`), up to `limit`.
    pub async fn list(&self, call: Call<'_>, limit: usize) -> Result<Vec<Value>, CliError> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        while items.len() < limit {
            let page = (limit - items.len()).min(100);
            let mut c = Call::new(Method::GET, call.path.clone()).query("limit", page.to_string());
            c.query.extend(call.query.iter().cloned());
            let c = c.query_opt("cursor", cursor.take());
            let body = self.call(c).await?.body;
            let got = body["items"].as_array().cloned().unwrap_or_default();
            let n = got.len();
            items.extend(got.into_iter().take(limit - items.len()));
            match body["next_cursor"].as_str() {
                Some(next) if n > 0 && !next.is_empty() => cursor = Some(next.to_owned()),
                _ => break,
            }
        }
        Ok(items)
    }

    /// The bytes at `url` (an attachment's signed download URL); the key is sent only to the
    /// API's own origin.
    pub async fn download(&self, url: &str, max: usize) -> Result<Vec<u8>, CliError> {
        let mut req = self.http.get(url);
        if same_origin(url, &self.base) {
            req = req.bearer_auth(&self.key);
        }
        // The URL carries a capability token: errors name it without its query.
        let shown = url.split('?').next().unwrap_or_default();
        let res = req.send().await.map_err(|e| unreachable(shown, &e.without_url()))?;
        let status = res.status();
        if !status.is_success() {
            let bytes = read_capped(res, 64 * 1024).await?;
            let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Err(refusal(status, &body));
        }
        read_capped(res, max).await
    }
}

/// Runs `attempt` up to `tries` times while it fails for a transient reason (exit 1),
/// waiting the `Retry-After` it was given (giving up when that is over
/// [`MAX_RETRY_AFTER`]), else `first`, doubled at each try; `note` hears of each retry. The
/// one retry loop of the client: API calls, model calls and forwards.
pub async fn retrying<T, Fut>(
    tries: u32,
    first: Duration,
    note: impl Fn(&CliError),
    mut attempt: impl FnMut() -> Fut,
) -> Result<T, CliError>
where
    Fut: Future<Output = Result<T, (CliError, Option<Duration>)>>,
{
    let mut n = 1;
    loop {
        match attempt().await {
            Ok(v) => return Ok(v),
            Err((e, wait)) if e.exit == Exit::Error && n < tries => {
                let wait = wait.unwrap_or(first * (1 << (n - 1)));
                if wait > MAX_RETRY_AFTER {
                    return Err(e);
                }
                note(&e);
                tokio::time::sleep(wait).await;
                n += 1;
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// `/v1/…` path segment: every byte but the unreserved ones percent-encoded (`@`, `+`, `/`),
/// as the API encodes its own URLs.
pub fn seg(s: &str) -> String {
    postagent_api::download::encode_segment(s.trim())
}

/// `.` and `..`, spelled out or percent-encoded: path segments a URL parser resolves.
fn is_dot_segment(s: &str) -> bool {
    matches!(s.to_ascii_lowercase().replace("%2e", ".").as_str(), "." | "..")
}

fn same_origin(url: &str, base: &str) -> bool {
    let origin = |u: &str| -> Option<(String, String, Option<u16>)> {
        let p = reqwest::Url::parse(u).ok()?;
        Some((p.scheme().to_owned(), p.host_str()?.to_owned(), p.port_or_known_default()))
    };
    origin(url).is_some() && origin(url) == origin(base)
}

fn unreachable(base: &str, e: &reqwest::Error) -> CliError {
    let why = if e.is_timeout() { "timed out".to_owned() } else { error_chain(e) };
    CliError::new(Exit::Error, format!("cannot reach {base}: {why}"))
}

/// The error and its causes, as one line (reqwest hides the useful part in `source()`).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

pub async fn read_capped(mut res: reqwest::Response, max: usize) -> Result<Vec<u8>, CliError> {
    let mut out = Vec::new();
    loop {
        match res.chunk().await {
            Ok(Some(c)) => {
                if out.len() + c.len() > max {
                    // Not transient: asking again would fetch it all again.
                    return Err(CliError::new(
                        Exit::Request,
                        format!("the answer is larger than {max} bytes"),
                    ));
                }
                out.extend_from_slice(&c);
            }
            Ok(None) => return Ok(out),
            Err(e) => {
                return Err(CliError::new(
                    Exit::Error,
                    format!("the answer was cut off: {}", error_chain(&e)),
                ));
            }
        }
    }
}

/// The API's error envelope as a [`CliError`], classed for the exit code.
pub fn refusal(status: StatusCode, body: &Value) -> CliError {
    let e = &body["error"];
    let code = e["code"].as_str().unwrap_or("error").to_owned();
    let message = e["message"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| status.canonical_reason().unwrap_or("error").to_ascii_lowercase());
    let request_id = e["request_id"].as_str().unwrap_or_default().to_owned();
    let exit = class(status.as_u16(), &code);
    CliError {
        exit,
        message,
        api: Some(ApiRefusal { status: status.as_u16(), code, request_id, details: e["details"].clone() }),
    }
}

/// The exit class of an API error: e2a's scheme.
pub fn class(status: u16, code: &str) -> Exit {
    match (status, code) {
        (401, _) | (403, "forbidden") => Exit::Auth,
        (409, "idempotency_in_flight" | "message_not_yet_delivered" | "send_in_progress") => Exit::Error,
        (501, _) | (_, "not_implemented" | "events_log_disabled") => Exit::Request,
        (408 | 429, _) | (500..=599, _) => Exit::Error,
        _ => Exit::Request,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_classes() {
        assert_eq!(class(401, "unauthorized"), Exit::Auth);
        assert_eq!(class(403, "forbidden"), Exit::Auth);
        assert_eq!(class(403, "blocked_by_policy"), Exit::Request);
        assert_eq!(class(404, "not_found"), Exit::Request);
        assert_eq!(class(422, "recipient_suppressed"), Exit::Request);
        assert_eq!(class(409, "idempotency_in_flight"), Exit::Error);
        assert_eq!(class(409, "message_not_pending"), Exit::Request);
        assert_eq!(class(429, "rate_limited"), Exit::Error);
        assert_eq!(class(503, "limits_unavailable"), Exit::Error);
        assert_eq!(class(501, "not_implemented"), Exit::Request);
    }

    #[test]
    fn refusals_keep_the_envelope() {
        let body = serde_json::json!({"error": {"code": "not_found", "message": "no such message", "request_id": "req_1"}});
        let e = refusal(StatusCode::NOT_FOUND, &body);
        assert_eq!(e.exit, Exit::Request);
        assert_eq!(e.to_string(), "no such message (not_found, HTTP 404, request req_1)");
        let e = refusal(StatusCode::BAD_GATEWAY, &Value::Null);
        assert_eq!((e.exit, e.message.as_str()), (Exit::Error, "bad gateway"));
    }

    #[test]
    fn segments_and_origins() {
        assert_eq!(seg("a+b@x.test"), "a%2Bb%40x.test");
        assert_eq!(seg("../x"), "..%2Fx");
        assert!(is_dot_segment(&seg("..")) && is_dot_segment("%2E%2e") && is_dot_segment("."));
        assert!(!is_dot_segment("...") && !is_dot_segment("msg_1"));
        assert!(same_origin("http://127.0.0.1:8080/v1/x?token=1", "http://127.0.0.1:8080"));
        assert!(!same_origin("http://127.0.0.1:8081/v1/x", "http://127.0.0.1:8080"));
        assert!(!same_origin("https://evil.example/v1/x", "https://api.example"));
        assert!(same_origin("https://api.example/x", "https://api.example:443"));
    }
}
