//! `reviews`: the account's queue of held messages (an account key): list, show, approve
//! (as it is, or with edits) and reject.

use super::account::idempotency_key;
use super::http::{Call, seg};
use super::mail::Body;
use super::output::{Col, list, s, when};
use super::read::show_message;
use super::{Exit, Outcome, Session};
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

#[derive(Subcommand, Debug)]
pub enum ReviewsCmd {
    /// List the messages waiting for a decision, across the account's agents.
    List {
        #[arg(long, default_value_t = 100)]
        limit: usize,
    },
    /// Show a held message.
    Get { id: String },
    /// Approve a held message: as it is, or with the edits given (outbound drafts).
    Approve {
        id: String,
        /// Replace the recipients (repeatable).
        #[arg(long, value_name = "ADDRESS")]
        to: Vec<String>,
        /// Replace the Cc recipients (repeatable).
        #[arg(long, value_name = "ADDRESS")]
        cc: Vec<String>,
        /// Replace the Bcc recipients (repeatable).
        #[arg(long, value_name = "ADDRESS")]
        bcc: Vec<String>,
        /// Replace the subject.
        #[arg(long)]
        subject: Option<String>,
        #[command(flatten)]
        body: Body,
        /// Makes a retried approval happen once (default: a fresh key per run).
        #[arg(long, value_name = "KEY")]
        idempotency_key: Option<String>,
    },
    /// Reject a held message; it is never delivered.
    Reject {
        id: String,
        /// Why (kept with the message and sent in the event).
        #[arg(long)]
        reason: Option<String>,
    },
}

const REVIEW_COLS: &[Col] = &[
    Col { head: "ID", get: |v| s(&v["id"]) },
    Col { head: "AGENT", get: |v| s(&v["agent_email"]) },
    Col { head: "DIR", get: |v| if v["direction"] == "outbound" { "out".into() } else { "in".into() } },
    Col { head: "FROM", get: |v| s(&v["header_from"]) },
    Col { head: "TO", get: |v| list(&v["to"]) },
    Col { head: "SUBJECT", get: |v| s(&v["subject"]) },
    Col { head: "REASON", get: |v| s(&v["hold_reason"]["code"]) },
    Col { head: "HELD", get: |v| when(&v["created_at"]) },
];

pub async fn run(session: &Session, cmd: ReviewsCmd) -> Outcome {
    let api = &session.api;
    match cmd {
        ReviewsCmd::List { limit } => {
            session.out.table(&api.list(Call::new(Method::GET, "/v1/reviews"), limit).await?, REVIEW_COLS);
        }
        ReviewsCmd::Get { id } => show_message(session, &api.get(format!("/v1/reviews/{}", seg(&id))).await?),
        ReviewsCmd::Approve { id, to, cc, bcc, subject, body, idempotency_key: key } => {
            let mut edits = json!({});
            for (name, v) in [("to", to), ("cc", cc), ("bcc", bcc)] {
                if !v.is_empty() {
                    edits[name] = v.into();
                }
            }
            if let Some(sub) = subject {
                edits["subject"] = sub.into();
            }
            super::mail::fill_body(&mut edits, &body)?;
            let call = Call::new(Method::POST, format!("/v1/reviews/{}/approve", seg(&id)))
                .body(edits)
                .idempotent(key.unwrap_or_else(idempotency_key));
            let r = api.call(call).await?.body;
            let edited = if r["edited"] == true { " with edits" } else { "" };
            decided(session, &r, &format!("approved{edited}"));
        }
        ReviewsCmd::Reject { id, reason } => {
            let body = reason.map_or_else(|| json!({}), |r| json!({"reason": r}));
            let r = api
                .call(Call::new(Method::POST, format!("/v1/reviews/{}/reject", seg(&id))).body(body))
                .await?
                .body;
            decided(session, &r, "rejected");
        }
    }
    Ok(Exit::Ok)
}

fn decided(session: &Session, r: &Value, what: &str) {
    if session.out.json {
        return session.out.json_line(r);
    }
    let state = s(&r["status"]);
    super::output::line(&format!("{} {} ({state})", session.out.green(what), s(&r["message_id"])));
}
