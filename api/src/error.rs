//! The API's one error type and the e2a error envelope.
//!
//! Handlers return [`ApiError`]; it travels to the envelope middleware inside the response's
//! extensions, where the request id is known, and is rendered there exactly once as
//! `{"error":{"code","message","request_id","details?"}}`. Responses that never went through a
//! handler (unknown route, wrong method, body too large) are given the same envelope.

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use postagent_core::StoreError;
use serde_json::{Value, json};

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub details: Option<Value>,
    /// Headers the answer carries (`Retry-After` and `RateLimit-*` on a 429).
    pub headers: Vec<(header::HeaderName, String)>,
}

/// One entry of `details.fields` for `invalid_request`.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldError {
    pub location: String,
    pub message: String,
}

impl FieldError {
    pub fn new(location: impl Into<String>, message: impl Into<String>) -> Self {
        Self { location: location.into(), message: message.into() }
    }
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), details: None, headers: Vec::new() }
    }

    pub fn with_details(mut self, details: Value) -> Self {
        self.details = Some(details);
        self
    }

    /// 422 `invalid_request` listing every offending field.
    pub fn validation(fields: Vec<FieldError>) -> Self {
        let list: Vec<Value> =
            fields.iter().map(|f| json!({"location": f.location, "message": f.message})).collect();
        let message = match fields.first() {
            Some(f) if fields.len() == 1 => format!("validation failed: {} {}", f.location, f.message),
            _ => "validation failed".to_owned(),
        };
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid_request", message)
            .with_details(json!({"fields": list}))
    }

    pub fn field(location: &str, message: &str) -> Self {
        Self::validation(vec![FieldError::new(location, message)])
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    pub fn not_found(what: &str) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", format!("{what} not found"))
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, code, message)
    }

    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "internal error")
    }

    /// 503 with `Retry-After`; the code is the contract's generic retryable server error.
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "internal_error", message)
            .with_details(json!({"retry_after_seconds": RETRY_AFTER_SECS}))
    }

    fn body(&self, request_id: &str) -> Value {
        let mut err = json!({"code": self.code, "message": self.message, "request_id": request_id});
        if let (Some(details), Some(obj)) = (&self.details, err.as_object_mut()) {
            obj.insert("details".into(), details.clone());
        }
        json!({ "error": err })
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        // The cause is logged here, server-side; the client gets a generic message.
        if e.is_unavailable() {
            tracing::warn!(error = %e, "store unavailable");
            return Self::unavailable("the database is busy or unreachable; retry shortly");
        }
        tracing::error!(error = %e, "store error");
        Self::internal()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut res = self.status.into_response();
        for (name, value) in &self.headers {
            if let Ok(v) = HeaderValue::from_str(value) {
                res.headers_mut().insert(name.clone(), v);
            }
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            res.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            res.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"e2a\""));
        }
        res.extensions_mut().insert(self);
        res
    }
}

/// What a 503 asks the client to wait (the SDK honours `Retry-After`).
const RETRY_AFTER_SECS: u64 = 1;

/// The request id of the request being served (echoed `X-Request-Id` or minted).
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

const MAX_REQUEST_ID: usize = 200;

/// Assigns the request id, renders error envelopes, and sets the headers every response
/// carries.
pub async fn envelope(mut req: Request, next: Next) -> Response {
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_REQUEST_ID && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| postagent_core::ids::mint("req_", 12));
    req.extensions_mut().insert(RequestId(request_id.clone()));
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let started = std::time::Instant::now();
    let mut res = next.run(req).await;
    let status = res.status();
    let ms = started.elapsed().as_millis();
    // The access log: successes at debug (agents poll), failures at info, our faults at warn.
    // The query string is left out: it may carry cursors.
    if status.is_server_error() {
        tracing::warn!(%method, %path, status = status.as_u16(), ms, %request_id, "request failed");
    } else if status.is_client_error() {
        tracing::info!(%method, %path, status = status.as_u16(), ms, %request_id, "request refused");
    } else {
        tracing::debug!(%method, %path, status = status.as_u16(), ms, %request_id, "request served");
    }

    if let Some(err) = res.extensions_mut().remove::<ApiError>() {
        let (mut parts, _) = res.into_parts();
        parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
        res = Response::from_parts(parts, axum::body::Body::from(err.body(&request_id).to_string()));
    } else if status.is_client_error() || status.is_server_error() {
        // JSON bodies are ours already; HTML ones are the magic-link pages, meant for people.
        let is_ours = res.headers().get(header::CONTENT_TYPE).is_some_and(|v| {
            v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/html")
        });
        if !is_ours {
            let err = fallback_error(status);
            let (mut parts, _) = res.into_parts();
            parts.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            parts.headers.remove(header::CONTENT_LENGTH);
            res = Response::from_parts(parts, axum::body::Body::from(err.body(&request_id).to_string()));
        }
    }
    let headers = res.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        headers.insert("x-request-id", v);
    }
    headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
    res
}

fn fallback_error(status: StatusCode) -> ApiError {
    match status {
        StatusCode::NOT_FOUND => ApiError::not_found("route"),
        StatusCode::METHOD_NOT_ALLOWED => {
            ApiError::new(status, "method_not_allowed", "method not allowed on this route")
        }
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(status, "payload_too_large", "request body too large")
            .with_details(
                json!({"scope": "request_body", "actual_bytes": 0, "max_bytes": crate::MAX_BODY_BYTES}),
            ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ApiError::new(status, "unsupported_media_type", "send application/json")
        }
        StatusCode::REQUEST_TIMEOUT | StatusCode::GATEWAY_TIMEOUT => {
            ApiError::new(status, "timeout", "the request took too long")
        }
        s if s.is_server_error() => ApiError::new(s, "internal_error", "internal error"),
        s => ApiError::new(s, "error", s.canonical_reason().unwrap_or("error")),
    }
}
