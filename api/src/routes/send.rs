//! `POST /v1/agents/{email}/messages` (send), `…/messages/{id}/reply` and `…/{id}/forward`:
//! each builds a [`Draft`] and hands it to the outbound flow, which queues it for Postfix,
//! holds it for review, or delivers a self-send at once. `Idempotency-Key` is honoured, and
//! the stored response is committed with the message itself. `?wait=sent` waits (up to
//! [`WAIT_SENT`]) for Postfix's verdict.

use super::messages::agent_for;
use super::send_body::scheduled;
pub use super::send_body::{AttachmentIn, ForwardRequest, OneOrMany, ReplyRequest, SendRequest, attachments};
use super::templates;
use crate::auth::Principal;
use crate::body::{QueryParams, StrictJson};
use crate::error::ApiError;
use crate::{AppState, idempotency};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use postagent_core::mail::inbound;
use postagent_core::mail::outbound::send::{self as flow, Outcome, Outgoing};
use postagent_core::mail::outbound::{
    self, Draft, DraftAttachment, DraftError, forward_subject, reply_subject,
};
use postagent_core::store::{Agent, Message};
use postagent_core::time::Timestamp;
use postagent_core::vocab::{AutoClass, Direction, MessageStatus, MessageType};
use serde_json::{Value, json};
use std::time::Duration;

/// How long `?wait=sent` waits before answering with the 202 it would have sent anyway.
pub const WAIT_SENT: Duration = Duration::from_secs(15);

/// `unsubscribe: {mode: "managed"}` (contract beta, RFC 8058): the one-click URL for the one
/// recipient, minted here and kept with the draft so an approved hold carries it too.
fn managed_unsubscribe(
    state: &AppState,
    agent: &Agent,
    requested: Option<&Value>,
    recipients: (&[String], &[String], &[String]),
) -> Result<Option<String>, ApiError> {
    let Some(v) = requested else { return Ok(None) };
    if v != &json!({"mode": "managed"}) {
        return Err(ApiError::field("body.unsubscribe", "must be {\"mode\": \"managed\"}"));
    }
    let (to, cc, bcc) = recipients;
    if to.len() != 1 || !cc.is_empty() || !bcc.is_empty() {
        return Err(ApiError::bad_request(
            "invalid_request",
            "managed unsubscribe needs exactly one recipient",
        ));
    }
    let Ok(rcpt) = outbound::address::parse_mailbox(&to[0]) else {
        // The draft's own check names the bad address.
        return Ok(None);
    };
    let token = outbound::unsubscribe::mint(
        &state.secret,
        &agent.account_id,
        &agent.email,
        &rcpt.address,
        Timestamp::now(),
    );
    Ok(Some(format!("{}/u/{token}", state.settings.public_url_or_default())))
}

/// The `Auto-Submitted` value agent mail carries, when the deployment marks it.
fn auto_submitted(state: &AppState, class: AutoClass) -> Option<AutoClass> {
    state.settings.limits.mark_auto_submitted.then_some(class)
}

/// The path's agent, if it may send: live, and on a verified domain (or the shared one).
async fn sender(state: &AppState, who: &Principal, email: &str) -> Result<Agent, ApiError> {
    let agent = agent_for(state, who, email).await?;
    let shared = !state.settings.shared_domain.is_empty() && agent.domain == state.settings.shared_domain;
    if !shared && !agent.domain_verified {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "domain_not_verified",
            format!("the domain {} is not verified; verify it before sending", agent.domain),
        ));
    }
    Ok(agent)
}

/// What a send request carries besides its body: the idempotency route and raw bytes, the
/// key, and `?wait=sent`.
struct Call<'a> {
    route: String,
    raw: &'a [u8],
    key: Option<String>,
    wait: bool,
}

impl<'a> Call<'a> {
    fn new(route: String, raw: &'a [u8], headers: &HeaderMap, q: &QueryParams) -> Result<Self, ApiError> {
        let wait = match q.get("wait") {
            None | Some("") => false,
            Some("sent") => true,
            Some(_) => return Err(ApiError::field("query.wait", "must be sent")),
        };
        Ok(Self { route, raw, key: idempotency::key_from(headers)?, wait })
    }
}

/// Sends and renders, honouring `Idempotency-Key` and `?wait=sent`.
async fn run(
    state: AppState,
    who: Principal,
    agent: Agent,
    call: Call<'_>,
    make: impl FnOnce() -> Outgoing + Send,
) -> Result<Response, ApiError> {
    let account = who.account_id.clone();
    let st = state.clone();
    let wait = call.wait;
    idempotency::once_keyed(&st, &account, call.key, &call.route, call.raw, |key| async move {
        let mut out = make();
        out.idempotency = key.map(|k| (who.account_id.clone(), k));
        let recipients = out.draft.to.len() + out.draft.cc.len() + out.draft.bcc.len();
        crate::ratelimit::spend_quota(&state, &who.account_id, recipients).await?;
        let outcome = flow::send(state.store.as_ref(), &state.secret, &agent, out, Timestamp::now()).await?;
        match outcome {
            Outcome::Accepted { id } if wait => Ok(wait_sent(&state, &id).await?),
            other => {
                let (status, body) = other.view();
                Ok((StatusCode::from_u16(status).unwrap_or(StatusCode::ACCEPTED), body))
            }
        }
    })
    .await
}

/// Waits until Postfix accepted or refused the message, or [`WAIT_SENT`] passed. The
/// submitter's verdict event wakes the wait (the bus); a slow re-check covers a verdict
/// reached on another replica whose notification was lost.
async fn wait_sent(state: &AppState, id: &str) -> Result<(StatusCode, Value), ApiError> {
    use postagent_core::bus::BusMessage;
    use postagent_core::vocab::EventKind;
    const RECHECK: Duration = Duration::from_secs(1);
    let deadline = tokio::time::Instant::now() + WAIT_SENT;
    // Subscribed before the first look, so a verdict in between is never missed.
    let mut bus = state.store.bus().subscribe();
    loop {
        if let Some(m) = state.store.find_message(id).await?
            && matches!(m.status, MessageStatus::Sent | MessageStatus::Failed | MessageStatus::Bounced)
        {
            let status = if m.status == MessageStatus::Failed { "failed" } else { "sent" };
            let mut body =
                json!({"status": status, "message_id": id, "method": "smtp", "sent_as": "own_address"});
            if let (Some(p), Some(obj)) = (m.provider_message_id, body.as_object_mut()) {
                obj.insert("provider_message_id".into(), json!(p));
            }
            return Ok((StatusCode::OK, body));
        }
        if tokio::time::Instant::now() >= deadline {
            return Ok((
                StatusCode::ACCEPTED,
                json!({"status": "accepted", "message_id": id, "method": "smtp"}),
            ));
        }
        let verdict = async {
            loop {
                match bus.recv().await {
                    Ok(m)
                        if matches!(
                            m.as_ref(),
                            BusMessage::Event {
                                kind: EventKind::EmailSent | EventKind::EmailFailed | EventKind::EmailBounced,
                                ..
                            }
                        ) =>
                    {
                        return;
                    }
                    Ok(_) => {}
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return,
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => std::future::pending().await,
                }
            }
        };
        let wake = deadline.min(tokio::time::Instant::now() + RECHECK);
        let _ = tokio::time::timeout_at(wake, verdict).await;
    }
}

pub async fn send(
    State(state): State<AppState>,
    who: Principal,
    Path(email): Path<String>,
    q: QueryParams,
    headers: HeaderMap,
    body: StrictJson<SendRequest>,
) -> Result<Response, ApiError> {
    let agent = sender(&state, &who, &email).await?;
    let mut r = body.value;
    let blank = |v: &Option<String>| v.as_deref().is_none_or(|v| v.trim().is_empty());
    let (template_id, template_alias) =
        (templates::given(&r.template_id), templates::given(&r.template_alias));
    let data = r.template_data.take().unwrap_or_default();
    let invalid = |m: &str| Err(ApiError::bad_request("invalid_request", m.to_owned()));
    if template_id.is_none() && template_alias.is_none() {
        if !data.is_empty() {
            return invalid("template_data requires template_id or template_alias");
        }
    } else if template_id.is_some() && template_alias.is_some() {
        return invalid("template_id and template_alias are mutually exclusive");
    } else if !blank(&r.subject) || !blank(&r.text) || !blank(&r.html) {
        return invalid("a template reference is mutually exclusive with subject, text and html");
    } else {
        // Rendered here, before the gate and any hold: the reviewer reads the final text.
        let reference =
            templates::Reference { id: template_id, alias: template_alias, data: Value::Object(data) };
        let out = templates::resolve(&state, &who.account_id, &reference).await?;
        (r.subject, r.text, r.html) = (Some(out.subject), Some(out.text), out.html);
    }
    // A blank mail never leaves: the handler's check (400), after the schema and the agent.
    if blank(&r.subject) || (blank(&r.text) && blank(&r.html)) {
        return Err(ApiError::bad_request("invalid_request", "subject and text are required"));
    }
    let send_at = scheduled(&r.send_at)?;
    let unsubscribe_url =
        managed_unsubscribe(&state, &agent, r.unsubscribe.as_ref(), (&r.to, &r.cc, &r.bcc))?;
    let auto_submitted = auto_submitted(&state, AutoClass::AutoGenerated);
    let route = format!("send:{}", agent.email);
    let make = move || Outgoing {
        draft: Draft {
            unsubscribe_url,
            auto_submitted,
            to: r.to,
            cc: r.cc,
            bcc: r.bcc,
            subject: r.subject.unwrap_or_default(),
            text: r.text,
            html: r.html,
            reply_to: r.reply_to.map(OneOrMany::into_vec).unwrap_or_default(),
            attachments: attachments(r.attachments),
            in_reply_to: None,
            references: Vec::new(),
        },
        message_type: MessageType::Send,
        conversation_id: r.conversation_id,
        idempotency: None,
        send_at,
    };
    let call = Call::new(route, &body.raw, &headers, &q)?;
    run(state.clone(), who, agent, call, make).await
}

/// A reply or forward says something of its own: empty `text` is e2a's 400.
fn require_text(text: &str) -> Result<(), ApiError> {
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("invalid_request", "text is required"));
    }
    Ok(())
}

/// The message being answered or forwarded: one of the agent's own, not a held draft.
async fn original(state: &AppState, who: &Principal, agent: &Agent, id: &str) -> Result<Message, ApiError> {
    let m = state
        .store
        .get_message(&who.account_id, &agent.email, id)
        .await?
        .ok_or_else(|| ApiError::not_found("message"))?;
    if m.direction == Direction::Outbound && !matches!(m.status, MessageStatus::Sent | MessageStatus::Bounced)
    {
        return Err(ApiError::conflict(
            "message_not_yet_delivered",
            "that message has not been sent yet; retry once it is",
        ));
    }
    if m.direction == Direction::Inbound && m.status != MessageStatus::Received {
        return Err(ApiError::conflict("message_held", "that message is held for review"));
    }
    Ok(m)
}

/// `References` of a reply: the parent's chain, then the parent itself.
fn references_of(m: &Message) -> Vec<String> {
    let mut refs = m.references.clone();
    if let Some(parent) = &m.rfc_message_id
        && !refs.contains(parent)
    {
        refs.push(parent.clone());
    }
    refs
}

pub async fn reply(
    State(state): State<AppState>,
    who: Principal,
    Path((email, id)): Path<(String, String)>,
    q: QueryParams,
    headers: HeaderMap,
    body: StrictJson<ReplyRequest>,
) -> Result<Response, ApiError> {
    let agent = sender(&state, &who, &email).await?;
    let m = original(&state, &who, &agent, &id).await?;
    let r = body.value;
    require_text(&r.text)?;
    let send_at = scheduled(&r.send_at)?;
    let me = agent.email.clone();
    // Reply to what we received: its Reply-To, else its sender (the agent itself for the
    // copy of a self-send, which makes the reply a self-send too). Reply to what we sent: its
    // recipients again. reply_all adds the other recipients as Cc, never the agent itself.
    let (to, mut cc): (Vec<String>, Vec<String>) = if m.direction == Direction::Inbound {
        let back = m.reply_to.first().cloned().or(m.header_from.clone()).or(m.envelope_from.clone());
        let to = back.into_iter().collect();
        let cc = if r.reply_all { m.to.iter().chain(&m.cc).cloned().collect() } else { Vec::new() };
        (to, cc)
    } else {
        (m.to.clone(), if r.reply_all { m.cc.clone() } else { Vec::new() })
    };
    cc.retain(|a| !a.eq_ignore_ascii_case(&me) && !to.iter().any(|t| t.eq_ignore_ascii_case(a)));
    cc.extend(r.cc);
    if to.is_empty() {
        return Err(ApiError::bad_request("invalid_recipient", "the message has no address to reply to"));
    }
    super::loops::check(&state, &agent, &m, &to).await?;
    let route = format!("reply:{}:{}", agent.email, m.id);
    let conversation = r.conversation_id.or(m.conversation_id.clone().filter(|c| !c.is_empty()));
    let unsubscribe_url = managed_unsubscribe(&state, &agent, r.unsubscribe.as_ref(), (&to, &cc, &r.bcc))?;
    let auto_submitted = auto_submitted(&state, AutoClass::AutoReplied);
    let make = move || Outgoing {
        draft: Draft {
            unsubscribe_url,
            auto_submitted,
            to,
            cc,
            bcc: r.bcc,
            subject: reply_subject(&one_line(&m.subject)),
            text: Some(r.text),
            html: r.html,
            reply_to: r.reply_to.map(OneOrMany::into_vec).unwrap_or_default(),
            attachments: attachments(r.attachments),
            in_reply_to: m.rfc_message_id.clone(),
            references: references_of(&m),
        },
        message_type: MessageType::Reply,
        conversation_id: conversation,
        idempotency: None,
        send_at,
    };
    let call = Call::new(route, &body.raw, &headers, &q)?;
    run(state.clone(), who, agent, call, make).await
}

pub async fn forward(
    State(state): State<AppState>,
    who: Principal,
    Path((email, id)): Path<(String, String)>,
    q: QueryParams,
    headers: HeaderMap,
    body: StrictJson<ForwardRequest>,
) -> Result<Response, ApiError> {
    let agent = sender(&state, &who, &email).await?;
    let m = original(&state, &who, &agent, &id).await?;
    let r = body.value;
    require_text(&r.text)?;
    let send_at = scheduled(&r.send_at)?;
    // The original's attachments travel on, followed by any new ones. Counted from the rows
    // before anything is parsed, so a message with more than a send may carry is refused at
    // once; then one parse (off the async runtime) yields every attachment and the bodies.
    let rows = state.store.list_attachments(&m.id).await?;
    let total = rows.len() + r.attachments.as_ref().map_or(0, Vec::len);
    if total > outbound::MAX_ATTACHMENTS {
        return Err(DraftError::TooManyAttachments(total).into());
    }
    let raw = state.store.get_raw(&m.id).await?.unwrap_or_default();
    let (mut bytes, view) =
        tokio::task::spawn_blocking(move || inbound::forwarded_parts(&raw)).await.map_err(|e| {
            tracing::error!(message = %m.id, error = %e, "parsing the original for a forward failed");
            ApiError::internal()
        })?;
    let mut carried = Vec::new();
    for a in rows {
        let data = usize::try_from(a.index)
            .ok()
            .and_then(|i| bytes.get_mut(i))
            .map(std::mem::take)
            .unwrap_or_default();
        // Names and types come from received mail: made fit for a header, never refused.
        let filename = a.filename.map(|f| one_line(&f)).filter(|f| !f.trim().is_empty());
        let content_type = a.content_type.filter(|ct| {
            ct.split_once('/').is_some_and(|(t, s)| {
                let token = |x: &str| {
                    !x.is_empty() && x.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
                };
                token(t) && token(s)
            })
        });
        carried.push(DraftAttachment {
            filename: filename.unwrap_or_else(|| format!("attachment-{}", a.index + 1)),
            content_type: content_type.unwrap_or_else(|| "application/octet-stream".into()),
            data: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, data),
        });
    }
    carried.extend(attachments(r.attachments));
    let (orig_text, orig_html) = (view.text, view.html);
    let from = m.header_from.clone().or(m.envelope_from.clone()).unwrap_or_else(|| agent.email.clone());
    let header = format!(
        "---------- Forwarded message ---------\nFrom: {from}\nDate: {}\nSubject: {}\nTo: {}\n",
        m.created_at,
        m.subject,
        m.to.join(", ")
    );
    let text = format!("{}\n\n{header}\n{}", r.text, orig_text.unwrap_or_default());
    let html = r.html.map(|h| match &orig_html {
        Some(o) => format!("{h}<br><br><pre>{}</pre><blockquote>{o}</blockquote>", html_escape(&header)),
        None => h,
    });
    let route = format!("forward:{}:{}", agent.email, m.id);
    let unsubscribe_url =
        managed_unsubscribe(&state, &agent, r.unsubscribe.as_ref(), (&r.to, &r.cc, &r.bcc))?;
    let auto_submitted = auto_submitted(&state, AutoClass::AutoGenerated);
    let make = move || Outgoing {
        draft: Draft {
            unsubscribe_url,
            auto_submitted,
            to: r.to,
            cc: r.cc,
            bcc: r.bcc,
            subject: forward_subject(&one_line(&m.subject)),
            text: Some(text),
            html,
            reply_to: r.reply_to.map(OneOrMany::into_vec).unwrap_or_default(),
            attachments: carried,
            in_reply_to: None,
            references: Vec::new(),
        },
        message_type: MessageType::Forward,
        conversation_id: r.conversation_id,
        idempotency: None,
        send_at,
    };
    let call = Call::new(route, &body.raw, &headers, &q)?;
    run(state.clone(), who, agent, call, make).await
}

/// A value taken from received mail, as one header-safe line: control characters (tabs,
/// stray line breaks, escapes) become spaces, and the result is at most 2000 characters.
fn one_line(s: &str) -> String {
    let mapped: String = s.chars().map(|c| if c.is_control() { ' ' } else { c }).take(2000).collect();
    mapped.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Text for an HTML page or part.
pub fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// `POST /v1/agents/{email}/test`: a test message from the deployment's noreply identity to
/// the agent, over the real route (Postfix, the milter, LMTP); 202 `accepted` with the id of
/// the stored outbound message, whose `delivery_status` and `email.sent`/`email.failed`
/// events tell how the hand-over to Postfix went. The mail itself lands in the inbox.
pub async fn test(
    State(state): State<AppState>,
    who: Principal,
    Path(email): Path<String>,
) -> Result<Response, ApiError> {
    use axum::response::IntoResponse;
    // As for a send: the agent's domain must be verified (or the shared domain), so the test
    // is routed back here and never relayed to whoever holds an unverified name.
    let agent = sender(&state, &who, &email).await?;
    // One recipient, counted like any other against the account's daily quota.
    crate::ratelimit::spend_quota(&state, &who.account_id, 1).await?;
    let outcome = postagent_core::mail::outbound::agent_test::send_test(
        state.store.as_ref(),
        &agent,
        &state.settings.mail_hostname,
        Timestamp::now(),
    )
    .await?;
    let (status, body) = outcome.view();
    Ok((StatusCode::from_u16(status).unwrap_or(StatusCode::ACCEPTED), axum::Json(body)).into_response())
}
