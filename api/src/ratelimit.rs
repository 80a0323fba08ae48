//! Rate limits (contract §2.6), applied in front of the handlers they guard:
//!
//! | limiter | key | operations |
//! |---|---|---|
//! | poll | account | list and get messages and conversations, list and get webhooks and deliveries |
//! | send | agent (account for approve) | send, reply, forward, approve |
//! | agent creation | account | create agent |
//!
//! Fixed windows (a minute, an hour for agent creation) counted in the store, so every replica
//! on PostgreSQL shares one budget. The key is resolved once: the handler's extractor takes
//! the caller the limiter found. Every limited response carries `RateLimit-Limit`,
//! `RateLimit-Remaining` and `RateLimit-Reset`; past the budget the answer is 429
//! `rate_limited` with `Retry-After` and `details.retry_after_seconds`.

use crate::AppState;
use crate::auth::Principal;
use crate::error::ApiError;
use axum::RequestPartsExt;
use axum::extract::{MatchedPath, Path, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::collections::HashMap;

/// Which budget a request spends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Limiter {
    Poll,
    Send,
    AgentCreation,
}

impl Limiter {
    fn of(method: &Method, path: &str) -> Option<Self> {
        let poll = [
            "/v1/account/export",
            "/v1/agents/{email}/messages",
            "/v1/agents/{email}/messages/{id}",
            "/v1/agents/{email}/conversations",
            "/v1/agents/{email}/conversations/{id}",
            "/v1/webhooks",
            "/v1/webhooks/{id}",
            "/v1/webhooks/{id}/deliveries",
        ];
        let send = [
            "/v1/agents/{email}/messages",
            "/v1/agents/{email}/messages/{id}/reply",
            "/v1/agents/{email}/messages/{id}/forward",
            "/v1/agents/{email}/test",
            "/v1/reviews/{id}/approve",
        ];
        match *method {
            Method::GET if poll.contains(&path) => Some(Self::Poll),
            Method::POST if send.contains(&path) => Some(Self::Send),
            Method::POST if path == "/v1/agents" => Some(Self::AgentCreation),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Poll => "poll",
            Self::Send => "send",
            Self::AgentCreation => "agent_creation",
        }
    }
}

/// What is left of a budget after this request.
#[derive(Debug, Clone, Copy)]
struct Budget {
    limit: u64,
    remaining: u64,
    reset_secs: u64,
}

fn headers(res: &mut Response, b: Budget) {
    let h = res.headers_mut();
    h.insert("ratelimit-limit", HeaderValue::from(b.limit));
    h.insert("ratelimit-remaining", HeaderValue::from(b.remaining));
    h.insert("ratelimit-reset", HeaderValue::from(b.reset_secs));
}

/// Spends one unit of `limiter` for `key`; the budget left, or the 429.
async fn spend(state: &AppState, limiter: Limiter, key: &str) -> Result<Option<Budget>, ApiError> {
    let l = state.settings.limits;
    let (limit, window) = match limiter {
        Limiter::Poll => (l.poll_per_minute, 60),
        Limiter::Send => (l.send_per_minute, 60),
        Limiter::AgentCreation => (l.agents_per_hour, 3600),
    };
    if limit == 0 {
        return Ok(None);
    }
    let now = postagent_core::time::Timestamp::now().as_micros() / 1_000_000;
    let start = now - now.rem_euclid(window);
    let hits = state.store.count_hit(&format!("{}:{key}", limiter.name()), start).await?;
    let limit = u64::from(limit);
    let reset_secs = u64::try_from(start + window - now).unwrap_or(1).max(1);
    if hits > limit {
        postagent_core::metrics::RATE_LIMITED.inc(limiter.name());
        let mut e = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("{} limit of {limit} reached; retry in {reset_secs} s", limiter.name()),
        )
        .with_details(json!({"retry_after_seconds": reset_secs}));
        e.headers = vec![
            (header::RETRY_AFTER, reset_secs.to_string()),
            (header::HeaderName::from_static("ratelimit-limit"), limit.to_string()),
            (header::HeaderName::from_static("ratelimit-remaining"), "0".to_owned()),
            (header::HeaderName::from_static("ratelimit-reset"), reset_secs.to_string()),
        ];
        return Err(e);
    }
    Ok(Some(Budget { limit, remaining: limit - hits, reset_secs }))
}

/// Counts `recipients` against the account's daily recipient quota: 402 `limit_exceeded`
/// (a quota, which waiting within the day does not fix: distinct from the 429 of a rate).
/// Counted when a send is attempted; a replayed idempotent send is not counted again.
pub async fn spend_quota(
    state: &AppState,
    account: &postagent_core::ids::AccountId,
    recipients: usize,
) -> Result<(), ApiError> {
    let limit = u64::from(state.settings.limits.daily_recipients);
    if limit == 0 {
        return Ok(());
    }
    let now = postagent_core::time::Timestamp::now().as_micros() / 1_000_000;
    let day = now - now.rem_euclid(86_400);
    let n = recipients as u64;
    let used = state.store.add_hits(&format!("recipients:{account}"), day, n).await?;
    if used > limit {
        postagent_core::metrics::RATE_LIMITED.inc("daily_recipients");
        return Err(ApiError::new(
            StatusCode::PAYMENT_REQUIRED,
            "limit_exceeded",
            format!("the daily recipient quota of {limit} is used up; it starts again at 00:00 UTC"),
        )
        .with_details(json!({"limit": limit, "used": used.saturating_sub(n).min(limit), "resets_in_seconds": day + 86_400 - now})));
    }
    Ok(())
}

/// The middleware: classify, identify, spend, then serve with the headers.
pub async fn limit(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let matched = req.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let Some(limiter) = matched.as_deref().and_then(|p| Limiter::of(req.method(), p)) else {
        return next.run(req).await;
    };
    // The console's calls carry their caller already (and spend the same budgets); an
    // unauthenticated request is the handler's to refuse (401), before any budget.
    let who = match req.extensions().get::<Principal>() {
        Some(who) => who.clone(),
        None => match Principal::from_header(&state, req.headers().get(header::AUTHORIZATION)).await {
            Ok(who) => who,
            Err(_) => return next.run(req).await,
        },
    };
    // The path's agent, decoded and normalized exactly as the handler will see it.
    let (mut parts, body) = req.into_parts();
    let params: Option<Path<HashMap<String, String>>> = parts.extract().await.ok();
    let mut req = Request::from_parts(parts, body);
    let agent = params.and_then(|Path(p)| p.get("email").map(|e| crate::routes::normalize(e)));
    let key = match (limiter, agent) {
        (Limiter::Send, Some(agent)) => format!("{}:{agent}", who.account_id),
        _ => who.account_id.to_string(),
    };
    // The handler's extractor takes the caller from here instead of looking the key up again.
    req.extensions_mut().insert(who);
    match spend(&state, limiter, &key).await {
        Ok(budget) => {
            let mut res = next.run(req).await;
            if let Some(b) = budget {
                headers(&mut res, b);
            }
            res
        }
        Err(e) => e.into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_map_to_their_limiter() {
        assert_eq!(Limiter::of(&Method::GET, "/v1/agents/{email}/messages"), Some(Limiter::Poll));
        assert_eq!(Limiter::of(&Method::POST, "/v1/agents/{email}/messages"), Some(Limiter::Send));
        assert_eq!(Limiter::of(&Method::POST, "/v1/reviews/{id}/approve"), Some(Limiter::Send));
        assert_eq!(Limiter::of(&Method::POST, "/v1/agents"), Some(Limiter::AgentCreation));
        assert_eq!(Limiter::of(&Method::GET, "/v1/agents"), None);
    }
}
