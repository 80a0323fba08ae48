//! Loop protection through a real private Postfix: two agents whose scripts answer every
//! message they get reply to each other over SMTP (submitter → originating listener → milter →
//! LMTP) until the reply budget stops them; an autoresponder's answer arriving from the
//! internet is never answered, and with the gate's automatic rule the agent never even sees it.

use crate::common;

use common::mail::{MailWorld, Options, WAIT};
use postagent_lab::mail_lab::{SENDER_DOMAIN, sample_message};
use postagent_lab::receiver::until;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet};

const BOT: &str = "bot@agents.test";
const PEER: &str = "peer@agents.test";

/// A script like the ones agent developers write first: every new inbound message is
/// answered, once.
#[derive(Default)]
struct AnswerEverything {
    seen: HashSet<String>,
    replies: HashMap<&'static str, u32>,
    /// (agent, what the API said) for each refused reply.
    refused: Vec<(&'static str, String)>,
}

impl AnswerEverything {
    /// The agents' unread messages the script has not seen yet, as (agent, id).
    async fn unseen(&self, w: &MailWorld, agents: &[&'static str]) -> Vec<(&'static str, String)> {
        let mut fresh = Vec::new();
        for &agent in agents {
            for m in w.inbox(agent).await {
                let id = m["id"].as_str().expect("id").to_owned();
                if !self.seen.contains(&id) {
                    fresh.push((agent, id));
                }
            }
        }
        fresh
    }

    /// Answers one message, once.
    async fn answer(&mut self, w: &MailWorld, agent: &'static str, id: String) {
        if !self.seen.insert(id.clone()) {
            return;
        }
        let path = format!("/v1/agents/{agent}/messages/{id}/reply");
        let (status, body) = w.call(Method::POST, &path, Some(json!({"text": "Thanks, noted."}))).await;
        match status {
            StatusCode::ACCEPTED => *self.replies.entry(agent).or_default() += 1,
            StatusCode::FORBIDDEN => {
                assert_eq!(body["error"]["code"], "blocked_by_policy", "{body}");
                let message = body["error"]["message"].as_str().unwrap_or_default().to_owned();
                self.refused.push((agent, message));
            }
            other => panic!("reply to {id} by {agent}: {other} {body}"),
        }
    }

    /// One pass over the agents' unread mail.
    async fn pass(&mut self, w: &MailWorld, agents: &[&'static str]) {
        for (agent, id) in self.unseen(w, agents).await {
            self.answer(w, agent, id).await;
        }
    }

    /// Answers new mail as Postfix delivers it until `done` holds; fails after [`WAIT`]
    /// without new mail.
    async fn until(&mut self, w: &MailWorld, agents: &[&'static str], done: impl Fn(&Self) -> bool) {
        while !done(self) {
            let what = format!("new mail (replies {:?}, refused {:?})", self.replies, self.refused);
            let script = &*self;
            let fresh = until(&what, WAIT, || async move {
                let fresh = script.unseen(w, agents).await;
                (!fresh.is_empty()).then_some(fresh)
            })
            .await;
            for (agent, id) in fresh {
                self.answer(w, agent, id).await;
            }
        }
    }
}

async fn world(flags: &[&'static str]) -> Option<MailWorld> {
    let mut extra_args = vec!["--submission-retry-schedule", "1s,1s"];
    extra_args.extend(flags);
    MailWorld::start(Options { agents: vec![BOT, PEER], extra_args, ..Options::default() }).await
}

/// Every inbound message of `agent`, read or not.
async fn received(w: &MailWorld, agent: &str) -> Vec<Value> {
    let list = w.get(&format!("/v1/agents/{agent}/messages?read_status=all&limit=100")).await;
    list["items"].as_array().expect("items").clone()
}

#[tokio::test]
async fn two_agents_answering_everything_settle_within_the_budget() {
    let Some(mut w) = world(&["--loop-reply-budget", "3", "--loop-reply-window", "1h"]).await else { return };
    let _server = w.serve();
    let (status, body) = w
        .call(
            Method::POST,
            &format!("/v1/agents/{BOT}/messages"),
            Some(json!({"to": [PEER], "subject": "Hello", "text": "Shall we talk?"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let mut script = AnswerEverything::default();
    script.until(&w, &[BOT, PEER], |s| !s.refused.is_empty()).await;
    // The peer answered the first message and two of the bot's replies, the bot three of the
    // peer's; the peer's fourth reply was refused, and with it the loop ended: nothing is on
    // its way (each reply answered the last message sent).
    assert_eq!(script.replies.get(PEER), Some(&3), "{:?}", script.replies);
    assert_eq!(script.replies.get(BOT), Some(&3), "{:?}", script.replies);
    assert_eq!(script.refused.len(), 1, "{:?}", script.refused);
    let (agent, message) = &script.refused[0];
    assert_eq!(*agent, PEER);
    assert!(message.contains("loop protection") && message.contains(BOT), "{message}");
    assert_eq!(received(&w, PEER).await.len(), 4, "the first message and three replies");
    assert_eq!(received(&w, BOT).await.len(), 3);
    // Every one of them went through Postfix, whose milter signed it as agent mail.
    let m = &received(&w, BOT).await[0];
    let full = w.get(&format!("/v1/agents/{BOT}/messages/{}", m["id"].as_str().expect("id"))).await;
    let raw = String::from_utf8(common::mail::raw_of(&full)).expect("utf-8");
    assert!(raw.contains("(Postfix)") && raw.contains("X-E2A-Auth-Entity-Type: agent"), "{raw}");
    assert_eq!(full["conversation_id"], received(&w, PEER).await[0]["conversation_id"], "one thread");
}

/// An out-of-office answer from the internet (`Auto-Submitted: auto-replied`): without a
/// rule the agent sees it but may not answer it; with the inbound gate's automatic rule set
/// to block, the agent never sees it, while a person's mail still arrives and is answered.
#[tokio::test]
async fn an_autoresponder_never_gets_an_answer() {
    let Some(mut w) = world(&[]).await else { return };
    let _server = w.serve();
    let sender = format!("alice@{SENDER_DOMAIN}");
    let ooo = |n: &str| {
        sample_message(BOT, "Automatic reply: away until Monday", &format!("ooo{n}"), "I am away.\r\n")
            .replacen("MIME-Version:", "Auto-Submitted: auto-replied\r\nMIME-Version:", 1)
    };
    let qid = w.send(&sender, &[BOT], &ooo("1")).await;
    w.wait_sent(&qid, BOT).await;
    let mut script = AnswerEverything::default();
    script.pass(&w, &[BOT]).await;
    assert_eq!(script.replies.get(BOT), None);
    assert_eq!(script.refused.len(), 1, "{:?}", script.refused);
    assert!(script.refused[0].1.contains("automatic mail (auto-replied)"), "{:?}", script.refused);

    let gate = json!({
        "inbound": {"gate": {"automatic": {"action": "block"}}, "scan": {}},
        "outbound": {"gate": {}, "scan": {}},
        "holds": {},
    });
    let (status, body) = w.call(Method::PUT, &format!("/v1/agents/{BOT}/protection"), Some(gate)).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let qid = w.send(&sender, &[BOT], &ooo("2")).await;
    w.wait_sent(&qid, BOT).await;
    let person = sample_message(BOT, "Lunch?", "lunch", "Are you free on Tuesday?\r\n");
    let qid = w.send(&sender, &[BOT], &person).await;
    w.wait_sent(&qid, BOT).await;
    script.until(&w, &[BOT], |s| s.replies.get(BOT) == Some(&1)).await;
    assert_eq!(script.refused.len(), 1, "nothing more to refuse: {:?}", script.refused);
    let inbox = received(&w, BOT).await;
    let subjects: Vec<&str> = inbox.iter().filter_map(|m| m["subject"].as_str()).collect();
    assert_eq!(subjects, ["Lunch?", "Automatic reply: away until Monday"], "the blocked one is not there");
    let (_, events) = w.call(Method::GET, "/v1/events?type=email.blocked", None).await;
    let blocked = &events["items"][0]["data"];
    assert_eq!(blocked["reason_source"], "automatic_mail", "{events}");
    assert_eq!(blocked["subject"], "Automatic reply: away until Monday", "{events}");
}
