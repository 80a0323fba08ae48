//! Calling `/v1` from a console page: the request goes through the same router, handlers and
//! checks as any SDK's, with the session's caller attached as a request extension (which no
//! outside request can carry).

use super::{Console, not_found, problem};
use crate::auth::Principal;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use axum::response::Response;
use serde_json::Value;
use tower::ServiceExt;

/// Largest `/v1` answer a page reads (a message view with its raw source fits easily).
const MAX_ANSWER_BYTES: usize = 64 * 1024 * 1024;

/// A `/v1` refusal, as its error envelope said.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
    pub request_id: String,
}

impl Refusal {
    /// The page for a refusal a handler does not treat itself: not-found answers all look the
    /// same; the rest say what the API said.
    pub fn page(&self) -> Response {
        match self.status {
            StatusCode::NOT_FOUND => not_found(),
            s if s.is_server_error() => problem(
                s,
                "Something went wrong",
                &format!(
                    "The server could not do this now (request {}). Try again shortly.",
                    self.request_id
                ),
            ),
            s => problem(s, "Not done", &self.message),
        }
    }
}

/// Path segment encoding for emails and ids put into `/v1` paths.
pub fn segment(s: &str) -> String {
    crate::download::encode_segment(s)
}

impl Console {
    /// `method path` on `/v1` as `who`, with an optional JSON body.
    pub async fn call(
        &self,
        who: &Principal,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Refusal> {
        let fail = |message: String| Refusal {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "internal_error".into(),
            message,
            request_id: String::new(),
        };
        let mut req = Request::builder().method(method).uri(path);
        if body.is_some() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        let body = body.map_or_else(Body::empty, |b| Body::from(b.to_string()));
        let mut req = req.body(body).map_err(|e| fail(format!("cannot build the request: {e}")))?;
        req.extensions_mut().insert(who.clone());
        let res = self.rest.clone().oneshot(req).await.map_err(|e| fail(e.to_string()))?;
        let status = res.status();
        let request_id =
            res.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        let bytes = axum::body::to_bytes(res.into_body(), MAX_ANSWER_BYTES)
            .await
            .map_err(|e| fail(format!("cannot read the answer: {e}")))?;
        let json: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        if status.is_success() {
            return Ok(json);
        }
        let err = &json["error"];
        let refusal = Refusal {
            status,
            code: err["code"].as_str().unwrap_or("error").to_owned(),
            message: err["message"].as_str().unwrap_or("the request was refused").to_owned(),
            request_id,
        };
        if status.is_server_error() {
            tracing::warn!(path, status = status.as_u16(), request_id = %refusal.request_id, "console call failed");
        }
        Err(refusal)
    }

    pub async fn get(&self, who: &Principal, path: &str) -> Result<Value, Refusal> {
        self.call(who, Method::GET, path, None).await
    }

    /// Every item of a paged list, following cursors up to `max` items.
    pub async fn all_pages(
        &self,
        who: &Principal,
        path: &str,
        max: usize,
    ) -> Result<(Vec<Value>, bool), Refusal> {
        let mut items = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let url = match &cursor {
                Some(c) => format!("{path}{sep}limit=100&cursor={c}"),
                None => format!("{path}{sep}limit=100"),
            };
            let page = self.get(who, &url).await?;
            if let Some(list) = page["items"].as_array() {
                items.extend(list.iter().cloned());
            }
            cursor = page["next_cursor"].as_str().filter(|c| !c.is_empty()).map(str::to_owned);
            if cursor.is_none() || items.len() >= max {
                let more = cursor.is_some();
                items.truncate(max);
                return Ok((items, more));
            }
        }
    }
}
