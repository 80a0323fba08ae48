//! Bearer API-key authentication and the scope rules of the contract: agent-scoped keys may
//! only touch their own agent (403 otherwise); another account's resources are 404.

use crate::{AppState, error::ApiError};
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use postagent_core::apikey::{self, KeyScope};
use postagent_core::ids::AccountId;
use postagent_core::time::Timestamp;

/// Who is calling.
#[derive(Debug, Clone)]
pub struct Principal {
    pub account_id: AccountId,
    /// Who acts, for decisions and logs: `api_key:<key id>` or `console:<session id>`.
    pub actor: String,
    pub scope: KeyScope,
    /// Set for agent-scoped keys: the only agent they may act on.
    pub agent_email: Option<String>,
}

impl Principal {
    /// Account-only operations refuse agent-scoped keys.
    pub fn require_account(&self) -> Result<(), ApiError> {
        match self.scope {
            KeyScope::Account => Ok(()),
            KeyScope::Agent => Err(ApiError::forbidden("this operation needs an account-scoped API key")),
        }
    }

    /// An agent-scoped key may act on its own agent only.
    pub fn require_agent(&self, email: &str) -> Result<(), ApiError> {
        match (&self.scope, &self.agent_email) {
            (KeyScope::Account, _) => Ok(()),
            (KeyScope::Agent, Some(own)) if own == email => Ok(()),
            _ => Err(ApiError::forbidden("this API key is limited to another agent")),
        }
    }
}

impl Principal {
    /// The caller named by an `Authorization: Bearer <API key>` header.
    pub async fn from_header(
        state: &AppState,
        header: Option<&axum::http::HeaderValue>,
    ) -> Result<Self, ApiError> {
        let header =
            header.ok_or_else(|| ApiError::unauthorized("missing Authorization: Bearer <API key>"))?;
        let value = header.to_str().map_err(|_| ApiError::unauthorized("malformed Authorization header"))?;
        let (scheme, token) =
            value.split_once(' ').ok_or_else(|| ApiError::unauthorized("malformed Authorization header"))?;
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::unauthorized("use the Bearer scheme"));
        }
        let token = token.trim();
        if !apikey::looks_like_key(token) {
            return Err(ApiError::unauthorized("invalid API key"));
        }
        let key = state
            .store
            .authenticate(&apikey::hash(token), Timestamp::now())
            .await?
            .ok_or_else(|| ApiError::unauthorized("invalid, revoked or expired API key"))?;
        Ok(Self {
            account_id: key.account_id,
            actor: format!("api_key:{}", key.id),
            scope: key.scope,
            agent_email: key.agent_email,
        })
    }
}

impl FromRequestParts<AppState> for Principal {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        // The rate limiter already resolved the key for this request: one lookup, not two.
        if let Some(who) = parts.extensions.get::<Principal>() {
            return Ok(who.clone());
        }
        Self::from_header(state, parts.headers.get(axum::http::header::AUTHORIZATION)).await
    }
}

/// A caller with an account-scoped key. Rejecting agent keys in the extractor (rather than in
/// the handler) answers 403 before the body is even parsed, as the contract orders it.
pub struct AccountScope(pub Principal);

impl FromRequestParts<AppState> for AccountScope {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let who = Principal::from_request_parts(parts, state).await?;
        who.require_account()?;
        Ok(Self(who))
    }
}
