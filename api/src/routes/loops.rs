//! Loop protection on the reply path (docs/sending-safety.md): an agent never answers
//! automatic mail, and a reply budget per correspondent stops two agents (or an agent and an
//! autoresponder) from answering each other forever. Refusals are 403 `blocked_by_policy`,
//! which SDKs treat as final: retrying cannot help.

use crate::AppState;
use crate::error::ApiError;
use axum::http::StatusCode;
use postagent_core::mail::loops;
use postagent_core::store::{Agent, Message};
use postagent_core::time::Timestamp;
use postagent_core::vocab::{AutoClass, Direction};

fn refused(message: String) -> ApiError {
    ApiError::new(StatusCode::FORBIDDEN, "blocked_by_policy", message)
}

/// Whether `agent` may reply to `original`, to `to`.
pub async fn check(
    state: &AppState,
    agent: &Agent,
    original: &Message,
    to: &[String],
) -> Result<(), ApiError> {
    // Mailing-list mail may be answered on purpose; auto-replies, generated mail and
    // autoresponders never (RFC 3834 §2), and the null sender cannot be answered at all.
    if original.direction == Direction::Inbound
        && let Some(class) = loops::class_of(&original.labels).filter(|c| *c != AutoClass::Bulk)
    {
        postagent_core::metrics::LOOPS_STOPPED.inc("automatic");
        tracing::info!(agent = %agent.email, message = %original.id, %class, "reply refused: automatic mail");
        return Err(refused(format!(
            "{} is automatic mail ({class}): agents do not answer it, so no loop can start",
            original.id
        )));
    }
    let limits = state.settings.limits;
    if limits.loop_replies == 0 {
        return Ok(());
    }
    let window = i64::try_from(limits.loop_window.as_micros()).unwrap_or(i64::MAX);
    let since = Timestamp::from_micros(Timestamp::now().as_micros().saturating_sub(window));
    for rcpt in to {
        let address = rcpt.trim().trim_matches(['<', '>']).to_ascii_lowercase();
        let sent = state.store.count_recent_replies(&agent.email, &address, since).await?;
        if sent >= u64::from(limits.loop_replies) {
            postagent_core::metrics::LOOPS_STOPPED.inc("budget");
            tracing::warn!(agent = %agent.email, correspondent = %address, sent, "reply refused: loop budget spent");
            return Err(refused(format!(
                "loop protection: {sent} replies to {address} in the last {}; the next waits until the window passes",
                postagent_core::config::value::format_duration(limits.loop_window)
            )));
        }
    }
    Ok(())
}
