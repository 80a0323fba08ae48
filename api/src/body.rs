//! Strict request parsing: JSON bodies reject unknown fields and wrong types with 422
//! `invalid_request` naming each field (`body.name`), query parameters likewise (`query.limit`).

use crate::error::{ApiError, FieldError};
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A request body type: its accepted field names and its semantic checks.
pub trait RequestBody: DeserializeOwned {
    const FIELDS: &'static [&'static str];

    /// Adds a [`FieldError`] for each value with the right type but a bad shape.
    fn validate(&self, _errors: &mut Vec<FieldError>) {}
}

/// A parsed, validated body plus its raw bytes (for idempotency fingerprints).
pub struct StrictJson<T> {
    pub value: T,
    pub raw: Bytes,
}

impl<T: RequestBody, S: Send + Sync> FromRequest<S> for StrictJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        if let Some(ct) = req.headers().get(header::CONTENT_TYPE) {
            let ok = ct.to_str().is_ok_and(|v| {
                let mime = v.split(';').next().unwrap_or("").trim();
                mime.eq_ignore_ascii_case("application/json") || mime.ends_with("+json")
            });
            if !ok {
                return Err(ApiError::new(
                    StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    "unsupported_media_type",
                    "request bodies are JSON: send Content-Type: application/json",
                ));
            }
        }
        let raw = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "request body too large")
                    .with_details(serde_json::json!({
                        "scope": "request_body", "actual_bytes": 0, "max_bytes": crate::MAX_BODY_BYTES
                    }))
            } else {
                ApiError::bad_request("invalid_request", format!("cannot read the request body: {e}"))
            }
        })?;
        let value = parse_body::<T>(&raw)?;
        Ok(Self { value, raw })
    }
}

/// Parses and validates `raw` as `T`, collecting every field problem.
pub fn parse_body<T: RequestBody>(raw: &[u8]) -> Result<T, ApiError> {
    if raw.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::field("body", "a JSON object is required"));
    }
    let json: Value = serde_json::from_slice(raw).map_err(|e| {
        ApiError::bad_request("invalid_request", format!("the body is not valid JSON: {e}"))
            .with_details(serde_json::json!({"fields": [{"location": "body", "message": "not valid JSON"}]}))
    })?;
    let Some(object) = json.as_object() else {
        return Err(ApiError::field("body", "must be a JSON object"));
    };
    let unknown: Vec<FieldError> = object
        .keys()
        .filter(|k| !T::FIELDS.contains(&k.as_str()))
        .map(|k| FieldError::new(format!("body.{k}"), "unknown field"))
        .collect();
    if !unknown.is_empty() {
        return Err(ApiError::validation(unknown));
    }
    let value: T = serde_path_to_error::deserialize(&json).map_err(|e| {
        let path = e.path().to_string();
        let location = if path == "." { "body".to_owned() } else { format!("body.{path}") };
        let inner = e.into_inner().to_string();
        // serde says "missing field `x`" at the parent; point at the field itself.
        let (location, message) = match inner.strip_prefix("missing field `") {
            Some(rest) => (format!("body.{}", rest.trim_end_matches('`')), "required".to_owned()),
            None => (location, inner),
        };
        ApiError::field(&location, &message)
    })?;
    let mut errors = Vec::new();
    value.validate(&mut errors);
    if errors.is_empty() { Ok(value) } else { Err(ApiError::validation(errors)) }
}

/// `max` characters (Unicode scalar values, as the contract counts code points).
pub fn check_len(errors: &mut Vec<FieldError>, location: &str, value: &str, max: usize) {
    if value.chars().count() > max {
        errors.push(FieldError::new(location, format!("must be at most {max} characters")));
    }
}

/// The query string as name/value pairs, with typed accessors that fail as 422.
pub struct QueryParams(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, ApiError> {
        let query = parts.uri.query().unwrap_or("");
        let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query)
            .map_err(|_| ApiError::field("query", "malformed query string"))?;
        Ok(Self(pairs))
    }
}

impl QueryParams {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    pub fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        match self.get(name) {
            None => Ok(None),
            Some("true" | "1") => Ok(Some(true)),
            Some("false" | "0") => Ok(Some(false)),
            Some(_) => Err(ApiError::field(&format!("query.{name}"), "must be true or false")),
        }
    }

    /// `since` and `until` of a listing: RFC 3339, `since` before `until`. Failures are 400
    /// `invalid_filter` (e2a's handler checks them; its schema takes any string).
    pub fn time_range(
        &self,
    ) -> Result<(Option<postagent_core::time::Timestamp>, Option<postagent_core::time::Timestamp>), ApiError>
    {
        let one = |name: &str| match self.get(name) {
            None | Some("") => Ok(None),
            Some(v) => postagent_core::time::Timestamp::parse_rfc3339(v).map(Some).ok_or_else(|| {
                ApiError::bad_request(
                    "invalid_filter",
                    format!("{name} must be RFC3339 (e.g. 2026-05-25T00:00:00Z)"),
                )
            }),
        };
        let (since, until) = (one("since")?, one("until")?);
        if let (Some(s), Some(u)) = (since, until)
            && s >= u
        {
            return Err(ApiError::bad_request("invalid_filter", "since must be earlier than until"));
        }
        Ok((since, until))
    }

    /// A free-text filter value: at most 200 characters, one line; 400 `invalid_filter`
    /// naming it as `label` otherwise. Empty counts as absent.
    pub fn text_filter(&self, name: &str, label: &str) -> Result<Option<String>, ApiError> {
        let Some(v) = self.get(name).filter(|v| !v.is_empty()) else { return Ok(None) };
        if v.chars().count() > 200 {
            return Err(ApiError::bad_request("invalid_filter", format!("{label} too long (max 200 chars)")));
        }
        if v.contains(['\r', '\n']) {
            return Err(ApiError::bad_request("invalid_filter", format!("{name} must not contain CR or LF")));
        }
        Ok(Some(v.to_owned()))
    }

    /// `limit`: 1–100, default 100.
    pub fn limit(&self) -> Result<u32, ApiError> {
        self.limit_or(100)
    }

    /// A date-time parameter as the SDKs send it (RFC 3339, a colon-less offset, or none for
    /// UTC); `None` when absent, 422 on the field when it is not one.
    pub fn instant(&self, name: &str) -> Result<Option<postagent_core::time::Timestamp>, ApiError> {
        self.get(name)
            .map(|v| {
                postagent_core::time::Timestamp::parse_lenient(v, true)
                    .ok_or_else(|| ApiError::field(&format!("query.{name}"), "must be an RFC 3339 date-time"))
            })
            .transpose()
    }

    /// `?limit=` (1–100), `default` when absent.
    pub fn limit_or(&self, default: u32) -> Result<u32, ApiError> {
        match self.get("limit") {
            None => Ok(default),
            Some(v) => v
                .parse::<u32>()
                .ok()
                .filter(|n| (1..=100).contains(n))
                .ok_or_else(|| ApiError::field("query.limit", "must be an integer from 1 to 100")),
        }
    }

    /// Deletes are confirmed with `?confirm=DELETE`.
    pub fn require_confirm(&self) -> Result<(), ApiError> {
        match self.get("confirm") {
            Some("DELETE") => Ok(()),
            Some(_) => Err(ApiError::field("query.confirm", "must be DELETE")),
            None => Err(ApiError::field("query.confirm", "required: add ?confirm=DELETE")),
        }
    }
}
