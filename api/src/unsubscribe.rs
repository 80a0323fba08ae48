//! `GET|POST /u/{token}`: managed unsubscribe (RFC 8058). The link in a `List-Unsubscribe`
//! header and in the footer of a managed send. `GET` shows a page with one button (a link
//! prefetcher or a virus scanner must not unsubscribe anybody); `POST`, from that button or
//! from a mail client's one-click (`List-Unsubscribe=One-Click`), puts the recipient on the
//! sending agent's suppression list (`source: unsubscribe`, `agent.suppression_added`).

use crate::AppState;
use crate::magic::{page, problem};
use crate::routes::send::html_escape;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use postagent_core::mail::event::suppression_event;
use postagent_core::mail::outbound::unsubscribe::{self, Grant, TokenError};
use postagent_core::store::Suppression;
use postagent_core::time::Timestamp;
use postagent_core::vocab::SuppressionSource;

fn grant(state: &AppState, token: &str) -> Result<Grant, TokenError> {
    unsubscribe::open(&state.secret, token, Timestamp::now())
}

/// The page a bad token gets.
fn refusal(e: TokenError) -> Response {
    match e {
        TokenError::Forged => {
            problem(StatusCode::BAD_REQUEST, "Invalid link", "This unsubscribe link is not valid.")
        }
        TokenError::Expired => problem(
            StatusCode::GONE,
            "Link expired",
            "This unsubscribe link has expired. Reply to the message and ask to be removed.",
        ),
    }
}

pub async fn show(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    match grant(&state, &token) {
        Ok(g) => page(
            StatusCode::OK,
            "Unsubscribe",
            &format!(
                "<p>Stop mail from <b>{}</b> to <b>{}</b>?</p>\
                 <form method=\"post\"><button type=\"submit\">Unsubscribe</button></form>",
                html_escape(&g.agent_email),
                html_escape(&g.recipient)
            ),
        ),
        Err(e) => refusal(e),
    }
}

pub async fn confirm(State(state): State<AppState>, Path(token): Path<String>) -> Response {
    let g = match grant(&state, &token) {
        Ok(g) => g,
        Err(e) => return refusal(e),
    };
    let s = Suppression {
        account_id: g.account_id.clone(),
        agent_email: Some(g.agent_email.clone()),
        address: g.recipient.clone(),
        source: SuppressionSource::Unsubscribe,
        reason: Some("one-click unsubscribe".into()),
        source_message_id: None,
        created_at: Timestamp::now(),
    };
    match state.store.add_suppression(&s, Some(suppression_event(&s, &[])), Vec::new()).await {
        Ok(added) => {
            if added {
                postagent_core::metrics::SUPPRESSIONS_ADDED.inc("unsubscribe");
                tracing::info!(agent = %g.agent_email, recipient = %g.recipient, "unsubscribed");
            }
            page(
                StatusCode::OK,
                "Unsubscribed",
                &format!(
                    "<p>{} will not be mailed by {} again.</p>",
                    html_escape(&g.recipient),
                    html_escape(&g.agent_email)
                ),
            )
        }
        Err(e) => {
            tracing::warn!(error = %e, "unsubscribe: store failed");
            problem(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "The unsubscribe could not be saved. Please try again.",
            )
        }
    }
}
