//! A real HTTP webhook receiver on 127.0.0.1:0: records every request (path, headers, raw
//! body, arrival time) and answers from a script (status codes, headers, redirects, hangs),
//! then 204 once the script runs out.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::Notify;

#[derive(Debug, Clone)]
pub struct Hit {
    pub path: String,
    /// Lowercase header names.
    pub headers: HashMap<String, String>,
    pub body: String,
    pub at: Instant,
}

impl Hit {
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or(serde_json::Value::Null)
    }
}

/// One scripted answer.
#[derive(Debug, Clone)]
pub enum Answer {
    Status(u16),
    /// A status with extra headers (e.g. `Retry-After`, `Location`).
    With(u16, Vec<(String, String)>),
    /// Read the request, never answer (until the client gives up).
    Hang,
    /// Answer with this status after a pause.
    Slow(Duration, u16),
    /// A status with a JSON body (a fake API, e.g. a model's Responses endpoint).
    Json(u16, serde_json::Value),
}

#[derive(Default)]
struct State {
    hits: Vec<Hit>,
    script: VecDeque<Answer>,
}

#[derive(Clone)]
pub struct Receiver {
    /// `http://127.0.0.1:PORT`
    pub base: String,
    state: Arc<Mutex<State>>,
    arrived: Arc<Notify>,
}

impl Receiver {
    pub async fn start() -> anyhow::Result<Receiver> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let r = Receiver { base, state: Arc::default(), arrived: Arc::new(Notify::new()) };
        let server = r.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let me = server.clone();
                tokio::spawn(async move { me.connection(stream).await });
            }
        });
        Ok(r)
    }

    /// `base` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Answers the next requests in this order (any path), then 204.
    pub fn script(&self, answers: Vec<Answer>) {
        self.lock().script.extend(answers);
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.lock().hits.clone()
    }

    /// Waits until at least `n` requests arrived (up to `limit`), returning them all.
    pub async fn wait_hits(&self, n: usize, limit: Duration) -> Vec<Hit> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let notified = self.arrived.notified();
            // Counted under the lock, copied once at the end: a benchmark waits for thousands.
            if self.lock().hits.len() >= n {
                return self.hits();
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                let hits = self.hits();
                panic!("expected {n} webhook requests within {limit:?}, got {}: {:#?}", hits.len(), hits);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A minimal HTTP/1.1 server: enough for a webhook client (Content-Length bodies,
    /// keep-alive), and able to misbehave on purpose.
    async fn connection(&self, mut stream: tokio::net::TcpStream) {
        let mut buf = Vec::new();
        loop {
            let Some(head_end) = read_until_head(&mut stream, &mut buf).await else { return };
            let head = String::from_utf8_lossy(&buf[..head_end]).into_owned();
            let mut lines = head.split("\r\n");
            let path = lines.next().and_then(|l| l.split(' ').nth(1)).unwrap_or("/").to_owned();
            let headers: HashMap<String, String> = lines
                .filter_map(|l| l.split_once(':'))
                .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
                .collect();
            let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
            let body_start = head_end + 4;
            while buf.len() < body_start + len {
                let mut chunk = [0u8; 8192];
                match stream.read(&mut chunk).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf.extend_from_slice(&chunk[..n]),
                }
            }
            let body = String::from_utf8_lossy(&buf[body_start..body_start + len]).into_owned();
            buf.drain(..body_start + len);
            let answer = {
                let mut s = self.lock();
                s.hits.push(Hit { path, headers, body, at: Instant::now() });
                s.script.pop_front().unwrap_or(Answer::Status(204))
            };
            self.arrived.notify_waiters();
            let mut body = None;
            let (code, extra) = match answer {
                Answer::Status(c) => (c, Vec::new()),
                Answer::With(c, h) => (c, h),
                Answer::Json(c, v) => {
                    body = Some(v.to_string());
                    (c, vec![("content-type".to_owned(), "application/json".to_owned())])
                }
                Answer::Slow(pause, c) => {
                    tokio::time::sleep(pause).await;
                    (c, Vec::new())
                }
                Answer::Hang => {
                    // Hold the connection open, silent, until the client hangs up.
                    let mut sink = [0u8; 1024];
                    while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
                    return;
                }
            };
            // 204 and 304 have no body (RFC 9110); a body there would desynchronise the
            // next request on a keep-alive connection.
            let body = match &body {
                Some(b) => b.as_str(),
                None if matches!(code, 204 | 304) => "",
                None => "ok",
            };
            let mut res = format!("HTTP/1.1 {code} X\r\ncontent-length: {}\r\n", body.len());
            for (k, v) in extra {
                res.push_str(&format!("{k}: {v}\r\n"));
            }
            res.push_str("\r\n");
            res.push_str(body);
            if stream.write_all(res.as_bytes()).await.is_err() {
                return;
            }
        }
    }
}

async fn read_until_head(stream: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> Option<usize> {
    loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some(i);
        }
        let mut chunk = [0u8; 8192];
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

/// Polls `check` every 50 ms until it returns `Some`, for up to `limit`.
pub async fn until<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        if Instant::now() > deadline {
            panic!("timed out after {limit:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
