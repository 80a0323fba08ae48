//! indymilter callbacks: thin adapters that read the protocol's arguments and macros, call
//! one [`Session`] method, and turn the answer into a milter status. No rules live here.

use crate::MilterConfig;
use crate::recipients::{self, AgentDirectory, RecipientClass};
use crate::session::{Caps, Finish, Session};
use crate::verdict::Verifier;
use indymilter::{
    Actions, Callbacks, Context, ContextActions, EomContext, MacroStage, NegotiateContext, ProtoOpts,
    SetErrorReply, SocketInfo, Status,
};
use std::ffi::{CStr, CString};
use std::sync::Arc;

/// The only actions the milter uses: insert headers (`ADD_HEADER` covers `smfi_insheader`)
/// and delete them (`CHANGE_HEADER`).
pub(crate) const ACTIONS: Actions = Actions::ADD_HEADER.union(Actions::CHANGE_HEADER);

/// What every connection shares.
pub(crate) struct Shared {
    pub config: MilterConfig,
    pub directory: Arc<dyn AgentDirectory>,
    pub verifier: Verifier,
    /// Ask Postfix not to wait for replies where we never say anything but "continue"
    /// (connect, HELO, MAIL, headers, body): a unix socket only. Over TCP, Postfix's next
    /// small packet would wait in its Nagle buffer for our delayed ACK (no reply carries it),
    /// about 40 ms per message (the stall described at `on_data`).
    pub noreply: bool,
}

/// The stages answered with no reply when Postfix offers it and [`Shared::noreply`] is set.
const NOREPLY: ProtoOpts = ProtoOpts::NOREPLY_CONNECT
    .union(ProtoOpts::NOREPLY_HELO)
    .union(ProtoOpts::NOREPLY_MAIL)
    .union(ProtoOpts::NOREPLY_HEADER)
    .union(ProtoOpts::NOREPLY_BODY);

/// The answer of a stage that never refuses: none when Postfix expects none.
///
/// One protocol corner this relies on: indymilter hands a non-empty `SMFIC_BODYEOB` payload to
/// the body callback and goes on to end of message only on `Continue`. Postfix always sends
/// that packet empty (its body chunks come as `SMFIC_BODY`), so with Postfix the body callback's
/// `Noreply` never stops a message; another MTA that sends body bytes with it should not be
/// offered the no-reply options (use a TCP listener).
fn ack(session: Option<&Session>) -> Status {
    if session.is_some_and(|s| s.noreply) { Status::Noreply } else { Status::Continue }
}

/// Macros requested per stage. A requested list replaces Postfix's default for that stage,
/// so stages whose macros we never read ask for none.
const MACROS: [(MacroStage, &CStr); 7] = [
    // `{daemon_name}` tells the originating listener; `j` is our host name for SPF.
    (MacroStage::Connect, c"j {daemon_name}"),
    (MacroStage::Helo, c""),
    (MacroStage::Mail, c""),
    (MacroStage::Rcpt, c""),
    (MacroStage::Data, c""),
    (MacroStage::Eoh, c""),
    // The queue id exists from DATA on; it starts the message's log line.
    (MacroStage::Eom, c"i"),
];

pub(crate) fn build(shared: Arc<Shared>) -> Callbacks<Session> {
    let noreply = shared.noreply;
    let (s_rcpt, s_header, s_body, s_eom) = (shared.clone(), shared.clone(), shared.clone(), shared);
    Callbacks::new()
        .on_negotiate(move |cx, _actions, opts| Box::pin(async move { negotiate(cx, opts, noreply) }))
        .on_connect(|cx, _host, socket| Box::pin(async move { connect(cx, socket) }))
        .on_helo(|cx, helo| {
            Box::pin(async move {
                if let Some(s) = cx.data.as_mut() {
                    s.helo(&helo.to_string_lossy());
                }
                ack(cx.data.as_ref())
            })
        })
        .on_mail(|cx, args| {
            Box::pin(async move {
                let from = args.first().map(|a| a.to_string_lossy().into_owned()).unwrap_or_default();
                cx.data.get_or_insert_with(Session::default).start_message(&from);
                ack(cx.data.as_ref())
            })
        })
        .on_rcpt(move |cx, args| {
            let shared = s_rcpt.clone();
            Box::pin(async move { rcpt(&shared, cx, args).await })
        })
        // Nothing to decide at DATA, but the stage must be negotiated: without it Postfix
        // sends the DATA-stage macros as a lone packet that expects no reply, and its next
        // packet (the first header) then waits in Postfix's Nagle buffer for our delayed ACK,
        // ~40 ms per message over inet (measured with strace; bench/inbound). A reply to
        // SMFIC_DATA acknowledges it at once.
        .on_data(|_cx| Box::pin(async { Status::Continue }))
        .on_header(move |cx, name, value| {
            let shared = s_header.clone();
            Box::pin(async move {
                if let Some(s) = cx.data.as_mut() {
                    let caps = Caps::of(&shared.config);
                    s.header(name.to_bytes(), value.to_bytes(), caps, &shared.config.authserv_id);
                }
                ack(cx.data.as_ref())
            })
        })
        .on_body(move |cx, chunk| {
            let cap = s_body.config.max_message_bytes;
            Box::pin(async move {
                if let Some(s) = cx.data.as_mut() {
                    s.body(&chunk, cap);
                }
                ack(cx.data.as_ref())
            })
        })
        .on_eom(move |cx| {
            let shared = s_eom.clone();
            Box::pin(async move { eom(&shared, cx).await })
        })
        .on_abort(|cx| {
            Box::pin(async move {
                if let Some(s) = cx.data.as_mut() {
                    s.abort_message();
                }
                Status::Continue
            })
        })
}

fn negotiate(cx: &mut NegotiateContext<Session>, offered: ProtoOpts, noreply: bool) -> Status {
    // indymilter starts from everything the MTA offers; ask for exactly what we use.
    cx.requested_actions = ACTIONS;
    // Exact header values let DKIM's `simple` header canonicalisation verify.
    let leading_space = offered.contains(ProtoOpts::LEADING_SPACE);
    if leading_space {
        cx.requested_opts |= ProtoOpts::LEADING_SPACE;
    }
    let noreply = noreply && offered.contains(NOREPLY);
    if noreply {
        cx.requested_opts |= NOREPLY;
    }
    for (stage, macros) in MACROS {
        cx.requested_macros.insert(stage, macros.to_owned());
    }
    cx.data = Some(Session::new(leading_space, noreply));
    Status::Continue
}

fn connect(cx: &mut Context<Session>, socket: SocketInfo) -> Status {
    let ip = match socket {
        SocketInfo::Inet(addr) => Some(addr.ip()),
        _ => None,
    };
    let daemon = macro_text(cx, c"{daemon_name}");
    let host = macro_text(cx, c"j");
    cx.data.get_or_insert_with(Session::default).connect(ip, &daemon, &host);
    ack(cx.data.as_ref())
}

async fn rcpt(shared: &Shared, cx: &mut Context<Session>, args: Vec<CString>) -> Status {
    let Some(arg) = args.first() else { return Status::Continue };
    let rcpt = arg.to_string_lossy();
    let address = recipients::strip_brackets(&rcpt);
    let rules = recipients::Rules {
        shared_domain: &shared.config.shared_domain,
        secret: &shared.config.secret,
        delimiter: &shared.config.recipient_delimiter,
    };
    let class = recipients::classify(&*shared.directory, &rules, &rcpt).await;
    postagent_core::metrics::MILTER_RCPT.inc(match &class {
        RecipientClass::Foreign => "foreign",
        RecipientClass::Agent => "agent",
        RecipientClass::UnknownAgent => "unknown_agent",
        RecipientClass::Unavailable(_) => "unavailable",
    });
    match class {
        RecipientClass::Foreign => Status::Continue,
        RecipientClass::Agent => {
            // The signed set names it: LMTP trusts the set only for recipients it names.
            if let Some(s) = cx.data.as_mut() {
                s.add_recipient(address);
            }
            Status::Continue
        }
        RecipientClass::UnknownAgent => {
            // Before DATA Postfix has no queue id for us: the log says NOQUEUE like Postfix's.
            tracing::info!("NOQUEUE: reject RCPT <{}>: unknown agent", printable(address));
            let text = format!("<{}>: no such agent here", printable(address));
            if cx.reply.set_error_reply("550", Some("5.1.1"), [text]).is_err() {
                tracing::warn!("cannot set the 550 reply text; Postfix will use its generic one");
            }
            Status::Reject
        }
        RecipientClass::Unavailable(reason) => {
            tracing::warn!("NOQUEUE: tempfail RCPT <{}>: agent lookup failed: {reason}", printable(address));
            let text = "agent directory unavailable, try again later";
            if cx.reply.set_error_reply("451", Some("4.3.0"), [text]).is_err() {
                tracing::warn!("cannot set the 451 reply text; Postfix will use its generic one");
            }
            Status::Tempfail
        }
    }
}

async fn eom(shared: &Shared, cx: &mut EomContext<Session>) -> Status {
    let started = std::time::Instant::now();
    let status = eom_inner(shared, cx).await;
    postagent_core::metrics::MILTER_EOM.observe(started.elapsed());
    status
}

async fn eom_inner(shared: &Shared, cx: &mut EomContext<Session>) -> Status {
    let queue_id = cx.macros.get(c"i").map(|q| q.to_string_lossy().into_owned()).unwrap_or_default();
    let queue_id = if queue_id.is_empty() { "NOQUEUE".to_owned() } else { queue_id };
    let Some(session) = cx.data.as_mut() else {
        tracing::warn!("{queue_id}: end of message without a session; tempfailing");
        return Status::Tempfail;
    };
    let outcome = match session.finish_message(&shared.verifier, &shared.config, &queue_id).await {
        Some(Finish::Sign(outcome)) => outcome,
        Some(Finish::Reject(text)) => {
            if cx.reply.set_error_reply("550", Some("5.7.1"), [text]).is_err() {
                tracing::warn!("cannot set the 550 reply text; Postfix will use its generic one");
            }
            return Status::Reject;
        }
        None => {
            tracing::warn!("{queue_id}: end of message without MAIL FROM; tempfailing");
            return Status::Tempfail;
        }
    };
    let result = async {
        for d in &outcome.deletions {
            cx.actions.change_header(d.name.as_str(), d.index, None::<CString>).await?;
        }
        // Each insert at index 0 goes on top, so the last inserted is first in the message.
        for (name, value) in outcome.insertions.iter().rev() {
            cx.actions.insert_header(0, *name, value.as_str()).await?;
        }
        Ok::<_, indymilter::ActionError>(())
    };
    match result.await {
        Ok(()) => Status::Continue,
        Err(e) => {
            tracing::warn!("{queue_id}: cannot change headers: {}", recipients::flatten(&e));
            Status::Tempfail
        }
    }
}

fn macro_text(cx: &Context<Session>, name: &CStr) -> String {
    cx.macros.get(name).map(|v| v.to_string_lossy().into_owned()).unwrap_or_default()
}

fn printable(s: &str) -> String {
    s.chars().take(320).map(|c| if c.is_control() { '?' } else { c }).collect()
}
