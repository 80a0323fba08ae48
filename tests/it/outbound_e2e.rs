//! Outbound mail end to end, as an operator runs it: `postagent serve` submits to the
//! originating listener of a private Postfix (wired by the shipped fragments), Postfix relays
//! to a local SMTP server standing for the internet ([`HUMAN_DOMAIN`]), and everything that
//! comes back (the human's answer, DSNs, agent-to-agent mail) re-enters through Postfix, the
//! milter and LMTP.

use crate::common;

use base64::Engine as _;
use common::mail::{HUMAN_DOMAIN, MailWorld, Options, WAIT};
use postagent_lab::lmtp_sink::{Delivered, smtp_sink};
use postagent_lab::receiver::until;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use tokio::sync::mpsc::UnboundedReceiver;

const BOT: &str = "bot@agents.test";
const PEER: &str = "peer@agents.test";

pub(crate) async fn next(rx: &mut UnboundedReceiver<Delivered>, what: &str) -> Delivered {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("the internet never received {what}"))
        .expect("sink open")
}

fn rcpts(d: &Delivered) -> Vec<String> {
    let mut r: Vec<String> =
        d.rcpts.iter().map(|l| l.split(['<', '>']).nth(1).unwrap_or("").to_ascii_lowercase()).collect();
    r.sort();
    r
}

fn header<'a>(data: &'a str, name: &str) -> Option<&'a str> {
    let head = data.split("\r\n\r\n").next().unwrap_or("");
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

async fn world(
    refuse: &[(&str, &str)],
    main_cf: Vec<(&'static str, String)>,
) -> Option<(MailWorld, UnboundedReceiver<Delivered>)> {
    world_with(refuse, main_cf, &[]).await
}

/// [`world`] with more flags for `postagent`.
pub(crate) async fn world_with(
    refuse: &[(&str, &str)],
    main_cf: Vec<(&'static str, String)>,
    flags: &[&'static str],
) -> Option<(MailWorld, UnboundedReceiver<Delivered>)> {
    let (internet, rx) = smtp_sink(refuse).await;
    let mut extra_args = vec!["--submission-retry-schedule", "1s,1s", "--hold-sweep-interval", "1s"];
    extra_args.extend(flags);
    let options = Options {
        agents: vec![BOT, PEER],
        internet: Some(internet),
        main_cf,
        extra_args,
        ..Options::default()
    };
    Some((MailWorld::start(options).await?, rx))
}

pub(crate) async fn send(w: &MailWorld, path: &str, body: Value) -> String {
    let (status, r) = w.call(Method::POST, path, Some(body)).await;
    assert!(status.is_success(), "{path}: {status} {r}");
    r["message_id"].as_str().expect("message_id").to_owned()
}

async fn message(w: &MailWorld, agent: &str, id: &str) -> Value {
    w.get(&format!("/v1/agents/{agent}/messages/{id}")).await
}

/// Waits until the message's status is `status`.
pub(crate) async fn wait_status(w: &MailWorld, agent: &str, id: &str, status: &str) -> Value {
    until(&format!("{id} {status}"), WAIT, || async {
        let m = message(w, agent, id).await;
        (m["delivery_status"] == status).then_some(m)
    })
    .await
}

/// The account's suppression list once it holds an entry (an entry follows its report).
async fn suppressed(w: &MailWorld, what: &str) -> Value {
    until(what, WAIT, || async {
        let l = w.get("/v1/account/suppressions").await;
        (l["items"].as_array().is_some_and(|i| !i.is_empty())).then_some(l)
    })
    .await
}

fn inbound_ids(list: &[Value]) -> Vec<String> {
    list.iter().filter_map(|m| m["id"].as_str().map(str::to_owned)).collect()
}

#[tokio::test]
async fn conversation_round_trip_through_postfix() {
    let Some((mut w, mut internet)) = world(&[], Vec::new()).await else { return };
    let server = w.serve();
    let msgs = format!("/v1/agents/{BOT}/messages");

    // 1. The agent writes to a human; Postfix queues it (its queue id is recorded) and
    //    relays it. The envelope sender is the VERP bounce address.
    let id = send(
        &w,
        &msgs,
        json!({"to": ["Alice <alice@example.org>"], "subject": "Your order", "text": "It shipped."}),
    )
    .await;
    let out = next(&mut internet, "the first send").await;
    assert_eq!(rcpts(&out), vec!["alice@example.org"]);
    assert!(out.mail_from.to_ascii_lowercase().contains(&format!("<bounce+{id}.")), "{}", out.mail_from);
    assert_eq!(header(&out.data, "Message-ID"), Some(format!("<{id}@agents.test>").as_str()));
    assert_eq!(header(&out.data, "From"), Some("\"Agent\" <bot@agents.test>"));
    let sent = wait_status(&w, BOT, &id, "sent").await;
    let conv = sent["conversation_id"].as_str().expect("conversation").to_owned();
    assert_eq!(header(&out.data, "X-E2A-Conversation-Id"), Some(conv.as_str()));
    let log = server.log();
    let submitted =
        log.lines().find(|l| l.contains("submitted msg=") && l.contains(&id)).expect("submission logged");
    let queue_id = submitted.split_whitespace().find_map(|w| w.strip_suffix(':')).expect("queue id first");
    assert!(queue_id.len() >= 5 && queue_id.chars().all(|c| c.is_ascii_alphanumeric()), "{submitted}");
    w.wait_log(queue_id, "alice@example.org", "status=sent").await;

    // A retried request with the same Idempotency-Key sends nothing more.
    let keyed = |body: Value| {
        let client = reqwest::Client::new();
        let url = format!("{}{msgs}", w.api());
        let key = w.key.clone();
        async move {
            let r = client
                .post(url)
                .bearer_auth(key)
                .header("Idempotency-Key", "order-42")
                .json(&body)
                .send()
                .await
                .expect("post");
            (r.status(), r.json::<Value>().await.expect("json"))
        }
    };
    let body = json!({"to": ["alice@example.org"], "subject": "Once", "text": "exactly once"});
    let (s1, b1) = keyed(body.clone()).await;
    let (s2, b2) = keyed(body).await;
    assert_eq!((s1, s2), (StatusCode::ACCEPTED, StatusCode::ACCEPTED));
    assert_eq!(b1, b2);
    let once = next(&mut internet, "the keyed send").await;
    assert_eq!(header(&once.data, "Subject"), Some("Once"));

    // ?wait=sent answers once Postfix has queued it, with Postfix's queue id.
    let (status, waited) = w
        .call(
            Method::POST,
            &format!("{msgs}?wait=sent"),
            Some(json!({"to": ["alice@example.org"], "subject": "Waited", "text": "w"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{waited}");
    assert_eq!(waited["status"], "sent");
    let provider = waited["provider_message_id"].as_str().expect("provider_message_id");
    let got = next(&mut internet, "the waited send").await;
    assert_eq!(header(&got.data, "Subject"), Some("Waited"));
    w.wait_log(provider, "alice@example.org", "status=sent").await;

    // 2. The human answers through Postfix: threaded into the same conversation.
    let answer = format!(
        "From: Alice <alice@example.org>\r\nTo: bot@agents.test\r\nCc: carol@example.org\r\n\
         Subject: Re: Your order\r\nMessage-ID: <answer1@example.org>\r\nIn-Reply-To: <{id}@agents.test>\r\n\
         References: <{id}@agents.test>\r\n\r\nThanks! Can you send the invoice?\r\n"
    );
    let qid = w.send("alice@example.org", &[BOT, "carol@example.org"], &answer).await;
    w.wait_sent(&qid, BOT).await;
    next(&mut internet, "carol's copy of alice's mail").await;
    let inbox = w.inbox(BOT).await;
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert_eq!(inbox[0]["conversation_id"], conv.as_str(), "the answer joins the agent's conversation");
    let answer_id = inbound_ids(&inbox)[0].clone();

    // 3. Reply-all with an attachment: alice and carol, threaded, with the file.
    let pdf = base64::engine::general_purpose::STANDARD.encode(b"%PDF-1.4 invoice");
    let reply = send(
        &w,
        &format!("{msgs}/{answer_id}/reply"),
        json!({"text": "Here it is.", "reply_all": true,
               "attachments": [{"filename": "invoice.pdf", "content_type": "application/pdf", "data": pdf}]}),
    )
    .await;
    let got = next(&mut internet, "the reply-all").await;
    assert_eq!(rcpts(&got), vec!["alice@example.org", "carol@example.org"]);
    assert_eq!(header(&got.data, "In-Reply-To"), Some("<answer1@example.org>"));
    assert_eq!(header(&got.data, "Subject"), Some("Re: Your order"));
    assert_eq!(header(&got.data, "X-E2A-Conversation-Id"), Some(conv.as_str()));
    let parsed = postagent_core::mail::inbound::parse(got.data.as_bytes());
    assert_eq!(parsed.attachments.len(), 1);
    assert_eq!(parsed.attachments[0].filename.as_deref(), Some("invoice.pdf"));
    assert_eq!(wait_status(&w, BOT, &reply, "sent").await["conversation_id"], conv.as_str());

    // 4. Forward it (with its attachment, plus a new one) to someone else.
    let fwd = send(
        &w,
        &format!("{msgs}/{reply}/forward"),
        json!({"to": ["dave@example.org"], "text": "FYI",
               "attachments": [{"filename": "note.txt", "content_type": "text/plain", "data": "bm90ZQ=="}]}),
    )
    .await;
    let got = next(&mut internet, "the forward").await;
    assert_eq!(rcpts(&got), vec!["dave@example.org"]);
    let parsed = postagent_core::mail::inbound::parse(got.data.as_bytes());
    let names: Vec<_> = parsed.attachments.iter().filter_map(|a| a.filename.clone()).collect();
    assert_eq!(names, vec!["invoice.pdf", "note.txt"]);
    wait_status(&w, BOT, &fwd, "sent").await;

    // 5. Agent to agent: through Postfix and the milter, signed as agent mail, and the
    //    conversation id travels with it (trusted because it came from our listener).
    let a2a = send(
        &w,
        &msgs,
        json!({"to": [PEER], "subject": "Handover", "text": "Yours now", "conversation_id": "conv-handover"}),
    )
    .await;
    wait_status(&w, BOT, &a2a, "sent").await;
    let peer_msg = until("the peer's copy", WAIT, || async {
        let inbox = w.inbox(PEER).await;
        inbox.first().cloned()
    })
    .await;
    assert_eq!(peer_msg["conversation_id"], "conv-handover");
    let full = message(&w, PEER, peer_msg["id"].as_str().expect("id")).await;
    let raw = String::from_utf8_lossy(&common::mail::raw_of(&full)).into_owned();
    assert!(raw.contains("X-E2A-Auth-Entity-Type: agent"), "signed as agent mail:\n{raw}");
    let (code, report) = w.verify(&common::mail::raw_of(&full));
    assert_eq!(code, 0, "{report}");
    assert!(internet.try_recv().is_err(), "agent-to-agent mail never left the host");
}

#[tokio::test]
async fn bounces_refusals_and_retries() {
    // Postfix itself answers 554 / 450 for two addresses at the originating listener; the
    // internet refuses a third at RCPT, so Postfix writes a DSN to our VERP address.
    let restrictions = "check_recipient_access inline:{ { refused@example.org = 554 5.7.1 not for you }, \
        { busy@example.org = 450 4.2.1 mailbox busy } }, permit_mynetworks, reject_unauth_destination";
    let refuse = [("nobody@example.org", "550 5.1.1 <nobody@example.org>: no such user")];
    let Some((mut w, mut internet)) =
        world(&refuse, vec![("smtpd_relay_restrictions", restrictions.into())]).await
    else {
        return;
    };
    let server = w.serve();
    let msgs = format!("/v1/agents/{BOT}/messages");

    let bounced =
        send(&w, &msgs, json!({"to": ["nobody@example.org"], "subject": "Hello?", "text": "anyone?"})).await;
    let m = wait_status(&w, BOT, &bounced, "bounced").await;
    assert!(m["delivery_detail"].as_str().is_some_and(|d| d.contains("5.1.1")), "{m}");
    let (_, events) = w.call(Method::GET, &format!("/v1/events?message_id={bounced}"), None).await;
    let kinds: Vec<&str> =
        events["items"].as_array().expect("items").iter().filter_map(|e| e["type"].as_str()).collect();
    assert!(kinds.contains(&"email.sent") && kinds.contains(&"email.bounced"), "{kinds:?}");
    let bounce = events["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|e| e["type"] == "email.bounced")
        .expect("bounced");
    assert_eq!(bounce["data"]["bounce_type"], "permanent");
    assert_eq!(bounce["data"]["delivered_to"], "nobody@example.org");
    assert!(w.inbox(BOT).await.is_empty(), "a DSN is not inbox mail");

    // The permanent bounce suppressed the address: the next send is refused before Postfix.
    let list = suppressed(&w, "the bounce's suppression").await;
    assert_eq!(list["items"][0]["address"], "nobody@example.org", "{list}");
    assert_eq!(list["items"][0]["source"], "bounce");
    assert_eq!(list["items"][0]["source_message_id"], bounced.as_str());
    let (_, events) = w.call(Method::GET, "/v1/events?type=domain.suppression_added", None).await;
    assert_eq!(events["items"][0]["data"]["address"], "nobody@example.org", "{events}");
    assert_eq!(events["items"][0]["data"]["source"], "bounce");
    let again = json!({"to": ["Nobody <Nobody@example.org>"], "subject": "again", "text": "?"});
    let (status, body) = w.call(Method::POST, &msgs, Some(again.clone())).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"]["code"], "recipient_suppressed");
    assert_eq!(body["error"]["details"]["address"], "nobody@example.org");
    assert!(internet.try_recv().is_err(), "nothing reached Postfix");
    // Lifting it lets the next send through (and the internet refuses it once more).
    let (status, _) =
        w.call(Method::DELETE, "/v1/account/suppressions/nobody@example.org?confirm=DELETE", None).await;
    assert_eq!(status, StatusCode::OK);
    let retried = send(&w, &msgs, again).await;
    wait_status(&w, BOT, &retried, "bounced").await;

    let refused = send(&w, &msgs, json!({"to": ["refused@example.org"], "subject": "s", "text": "t"})).await;
    let m = wait_status(&w, BOT, &refused, "failed").await;
    assert!(
        m["delivery_detail"].as_str().is_some_and(|d| d.contains("not for you")),
        "Postfix's reason: {m}"
    );

    let busy = send(&w, &msgs, json!({"to": ["busy@example.org"], "subject": "s", "text": "t"})).await;
    let m = wait_status(&w, BOT, &busy, "failed").await;
    let detail = m["delivery_detail"].as_str().expect("detail");
    assert!(detail.contains("gave up after 3 tries") && detail.contains("mailbox busy"), "{detail}");
    assert_eq!(
        server.log().matches(&format!("submission deferred msg={busy}")).count(),
        2,
        "{}",
        server.log()
    );
    let (_, events) = w.call(Method::GET, &format!("/v1/events?message_id={busy}"), None).await;
    assert_eq!(events["items"][0]["type"], "email.failed");
    assert_eq!(events["items"][0]["data"]["reason_code"], "submission.local_retries_exhausted");
    if let Ok(d) = internet.try_recv() {
        panic!("nothing refused ever reaches the internet, but it got {:?}:\n{}", d.rcpts, d.data);
    }
    // Temporary failures never suppress: only the permanent bounce's address is listed.
    let list = w.get("/v1/account/suppressions").await;
    let listed: Vec<&str> =
        list["items"].as_array().expect("items").iter().filter_map(|s| s["address"].as_str()).collect();
    assert_eq!(listed, ["nobody@example.org"], "{list}");
}

/// The approve link of a review notice, pointed at the running API.
fn approve_link(w: &MailWorld, notice: &Delivered) -> String {
    let (text, _) = postagent_core::mail::inbound::bodies(notice.data.as_bytes());
    let text = text.expect("a text body");
    let link = text
        .split_whitespace()
        .find(|t| t.contains("/v1/approve?t="))
        .unwrap_or_else(|| panic!("no approve link in:\n{text}"));
    let token = link.split_once("?t=").expect("t").1;
    format!("{}/v1/approve?t={token}", w.api())
}

#[tokio::test]
async fn review_by_emailed_link_then_postfix_delivers() {
    let Some((mut w, mut internet)) = world(&[], Vec::new()).await else { return };
    let (code, out) = w.admin(&["reviewer", "reviewer@example.org"]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("now go to reviewer@example.org"), "{out}");
    let server = w.serve();
    let msgs = format!("/v1/agents/{BOT}/messages");
    let hitl = |ttl: i64, on_expiry: &str| {
        json!({
            "inbound": {"gate": {}, "scan": {}},
            "outbound": {"gate": {"policy": "allowlist", "allowlist": [], "action": "review"}, "scan": {}},
            "holds": {"ttl_seconds": ttl, "on_expiry": on_expiry},
        })
    };
    let (status, _) =
        w.call(Method::PUT, &format!("/v1/agents/{BOT}/protection"), Some(hitl(3600, "reject"))).await;
    assert_eq!(status, StatusCode::OK);

    let (status, held) = w
        .call(
            Method::POST,
            &msgs,
            Some(json!({"to": ["alice@example.org"], "subject": "Offer", "text": "20% off"})),
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{held}");
    assert_eq!(held["status"], "pending_review");
    let id = held["message_id"].as_str().expect("id").to_owned();

    // The account's reviewer (set with `postagent admin reviewer`) is mailed through Postfix.
    let notice = next(&mut internet, "the review notice").await;
    assert_eq!(rcpts(&notice), vec![format!("reviewer@{HUMAN_DOMAIN}")]);
    assert_eq!(header(&notice.data, "Message-ID"), Some(format!("<hitl-approve-{id}@agents.test>").as_str()));
    assert!(notice.mail_from.contains("<>"), "a null sender: {}", notice.mail_from);
    let link = approve_link(&w, &notice);

    // The link opens a confirmation page; only its form's POST sends the message.
    let http = reqwest::Client::new();
    let page = http.get(&link).send().await.expect("GET");
    assert_eq!(page.status(), StatusCode::OK);
    assert!(internet.try_recv().is_err(), "nothing leaves on a GET");
    let token = link.split_once("?t=").expect("t").1.to_owned();
    let done = http
        .post(format!("{}/v1/approve", w.api()))
        .form(&[("t", token.as_str())])
        .send()
        .await
        .expect("POST");
    assert_eq!(done.status(), StatusCode::OK);
    let out = next(&mut internet, "the approved message").await;
    assert_eq!(rcpts(&out), vec!["alice@example.org"]);
    assert_eq!(header(&out.data, "Subject"), Some("Offer"));
    wait_status(&w, BOT, &id, "sent").await;
    let again = http
        .post(format!("{}/v1/approve", w.api()))
        .form(&[("t", token.as_str())])
        .send()
        .await
        .expect("POST");
    assert_eq!(again.status(), StatusCode::CONFLICT, "a used link changes nothing");

    // A hold whose time runs out with on_expiry=approve leaves by itself (the worker's sweep).
    let (status, _) =
        w.call(Method::PUT, &format!("/v1/agents/{BOT}/protection"), Some(hitl(1, "approve"))).await;
    assert_eq!(status, StatusCode::OK);
    let expiring =
        send(&w, &msgs, json!({"to": ["bob@example.org"], "subject": "Auto", "text": "no reviewer"})).await;
    next(&mut internet, "the second review notice").await;
    let out = next(&mut internet, "the auto-approved message").await;
    assert_eq!(rcpts(&out), vec!["bob@example.org"]);
    let m = wait_status(&w, BOT, &expiring, "sent").await;
    assert_eq!(m["review_status"], "review_expired_approved");

    // With on_expiry=reject it never leaves.
    let (status, _) =
        w.call(Method::PUT, &format!("/v1/agents/{BOT}/protection"), Some(hitl(1, "reject"))).await;
    assert_eq!(status, StatusCode::OK);
    let dropped =
        send(&w, &msgs, json!({"to": ["carol@example.org"], "subject": "Never", "text": "x"})).await;
    next(&mut internet, "the third review notice").await;
    until("the expiry rejection", WAIT, || async {
        (message(&w, BOT, &dropped).await["review_status"] == "review_expired_rejected").then_some(())
    })
    .await;
    assert!(internet.try_recv().is_err(), "a rejected hold is never sent");

    // A reviewer address that is an agent (written before the rule, here straight into the
    // database): its key could approve the hold from the notice, so no notice is sent.
    let account = w.get("/v1/account").await["user"]["id"].as_str().expect("id").to_owned();
    let store = w.store().await;
    use postagent_core::store::AccountStore as _;
    store
        .set_reviewer_email(&postagent_core::ids::AccountId::from_stored(account), Some(BOT))
        .await
        .expect("reviewer");
    store.close().await;
    let (status, _) =
        w.call(Method::PUT, &format!("/v1/agents/{BOT}/protection"), Some(hitl(3600, "reject"))).await;
    assert_eq!(status, StatusCode::OK);
    let quiet = send(&w, &msgs, json!({"to": ["dave@example.org"], "subject": "Quiet", "text": "x"})).await;
    until("the refused notice", WAIT, || async {
        server
            .log()
            .contains(&format!("review notice msg={quiet} not sent: the reviewer <{BOT}> is an agent"))
            .then_some(())
    })
    .await;
    assert!(internet.try_recv().is_err(), "nothing was mailed");
}

/// A complaint report (ARF, RFC 5965) from a mailbox provider, mailed through Postfix to the
/// message's VERP address: the complainant is suppressed and the complaint reported.
#[tokio::test]
async fn complaint_report_suppresses_the_complainant() {
    let Some((mut w, mut internet)) = world(&[], Vec::new()).await else { return };
    let _server = w.serve();
    let msgs = format!("/v1/agents/{BOT}/messages");
    let deal = json!({"to": ["carol@example.org"], "subject": "Deal", "text": "Buy now",
        "unsubscribe": {"mode": "managed"}});
    let id = send(&w, &msgs, deal).await;
    let out = next(&mut internet, "the send").await;
    // Managed unsubscribe: the RFC 8058 headers reach the internet through Postfix.
    assert_eq!(header(&out.data, "List-Unsubscribe-Post"), Some("List-Unsubscribe=One-Click"));
    let link = header(&out.data, "List-Unsubscribe").unwrap_or_default();
    assert!(link.starts_with('<') && link.contains("/u/"), "{}", out.data);
    wait_status(&w, BOT, &id, "sent").await;
    let verp = out.mail_from.split(['<', '>']).nth(1).expect("the VERP address").to_owned();
    let arf = format!(
        "From: fbl@example.org\r\nTo: {verp}\r\nSubject: complaint\r\nMessage-ID: <fbl1@example.org>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=feedback-report; boundary=\"F\"\r\n\r\n\
         --F\r\nContent-Type: text/plain\r\n\r\nThis is an abuse report.\r\n\
         --F\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nUser-Agent: FBL/1.0\r\n\
         Version: 1\r\nOriginal-Rcpt-To: <carol@example.org>\r\n\r\n\
         --F\r\nContent-Type: message/rfc822\r\n\r\n{}\r\n--F--\r\n",
        out.data.split("\r\n.\r\n").next().unwrap_or(&out.data)
    );
    let qid = w.send("fbl@example.org", &[&verp], &arf).await;
    w.wait_sent(&qid, &verp).await;
    let list = suppressed(&w, "the complaint's suppression").await;
    assert_eq!(list["items"][0]["address"], "carol@example.org", "{list}");
    assert_eq!(list["items"][0]["source"], "complaint");
    assert_eq!(list["items"][0]["source_message_id"], id.as_str());
    let (_, events) = w.call(Method::GET, "/v1/events?type=email.complained", None).await;
    assert_eq!(events["items"][0]["data"]["delivered_to"], "carol@example.org", "{events}");
    assert_eq!(events["items"][0]["data"]["complaint_type"], "abuse");
    let (status, body) = w
        .call(
            Method::POST,
            &msgs,
            Some(json!({"to": ["carol@example.org"], "subject": "Again", "text": "?"})),
        )
        .await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("recipient_suppressed"))
    );
    assert!(w.inbox(BOT).await.is_empty(), "a complaint report is not inbox mail");
}

/// Soft bounces through Postfix: the internet answers 452 for a full mailbox, and Postfix,
/// told to try once (`maximal_queue_lifetime = 0`), gives up and writes a 4.x.x DSN to our
/// VERP address. One does not suppress; with `suppress_after_soft_bounces = 2` the second in a
/// row does, and the next send never reaches Postfix.
#[tokio::test]
async fn a_run_of_soft_bounces_through_postfix() {
    let refuse = [("full@example.org", "452 4.2.2 <full@example.org>: mailbox full")];
    let main_cf = vec![("maximal_queue_lifetime", "0".to_owned()), ("bounce_queue_lifetime", "0".into())];
    let Some((mut w, mut internet)) =
        world_with(&refuse, main_cf, &["--suppress-after-soft-bounces", "2"]).await
    else {
        return;
    };
    let _server = w.serve();
    let msgs = format!("/v1/agents/{BOT}/messages");
    let mail = json!({"to": ["full@example.org"], "subject": "Still there?", "text": "?"});
    let first = send(&w, &msgs, mail.clone()).await;
    let m = wait_status(&w, BOT, &first, "bounced").await;
    assert!(m["delivery_detail"].as_str().is_some_and(|d| d.contains("4.2.2")), "{m}");
    let (_, events) =
        w.call(Method::GET, &format!("/v1/events?message_id={first}&type=email.bounced"), None).await;
    assert_eq!(events["items"][0]["data"]["bounce_type"], "transient", "{events}");
    // One soft bounce suppresses nothing: the next send goes out (and bounces softly too).
    let second = send(&w, &msgs, mail.clone()).await;
    wait_status(&w, BOT, &second, "bounced").await;
    let list = suppressed(&w, "the run's suppression").await;
    assert_eq!(list["items"][0]["address"], "full@example.org", "{list}");
    assert_eq!(list["items"][0]["source"], "bounce");
    assert_eq!(list["items"][0]["source_message_id"], second.as_str());
    assert!(
        list["items"][0]["reason"].as_str().is_some_and(|r| r.starts_with("2 consecutive soft bounces")),
        "{list}"
    );
    let (status, body) = w.call(Method::POST, &msgs, Some(mail)).await;
    assert_eq!(
        (status, body["error"]["code"].as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, Some("recipient_suppressed")),
        "{body}"
    );
    if let Ok(d) = internet.try_recv() {
        panic!("the internet refused every message, yet got {:?}:\n{}", d.rcpts, d.data);
    }
}

#[tokio::test]
async fn the_agent_test_goes_the_whole_way_round() {
    let Some((mut w, _internet)) = world_with(&[], Vec::new(), &["--poll-rate-limit", "0"]).await else {
        return;
    };
    let _server = w.serve();
    let (status, r) = w.call(Method::POST, &format!("/v1/agents/{BOT}/test"), None).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{r}");
    assert_eq!((r["status"].as_str(), r["method"].as_str()), (Some("accepted"), Some("smtp")), "{r}");
    let id = r["message_id"].as_str().expect("id").to_owned();
    // The stored message follows the hand-over to Postfix…
    let sent = wait_status(&w, BOT, &id, "sent").await;
    assert_eq!(sent["header_from"], "postagent-noreply@mx.postagent.test", "{sent}");
    // …and the mail comes back in through Postfix, the milter and LMTP, into the inbox,
    // marked automatic so no agent answers it.
    let arrived = until("the test message in the inbox", WAIT, || async {
        let inbox = w.get(&format!("/v1/agents/{BOT}/messages?read_status=all")).await;
        inbox["items"].as_array().and_then(|i| i.iter().find(|m| m["subject"] == sent["subject"]).cloned())
    })
    .await;
    assert_eq!(arrived["direction"], "inbound");
    assert_eq!(arrived["header_from"], "postagent-noreply@mx.postagent.test");
    assert_eq!(arrived["subject"], format!("postagent test message for {BOT}"), "the subject as sent");
    assert!(
        arrived["labels"].as_array().is_some_and(|l| l.contains(&json!("e2a:auto-generated"))),
        "{arrived}"
    );
    let log = w.postfix.read_log();
    assert!(log.contains(&format!("to=<{BOT}>")), "Postfix delivered it: {log}");
    // Its ledger starts at the Postfix queue entry that delivered it over LMTP, so the
    // operator can follow it from the maillog.
    let id = arrived["id"].as_str().expect("id");
    let lifecycle = w.get(&format!("/v1/agents/{BOT}/messages/{id}/lifecycle")).await;
    let first = &lifecycle["items"][0];
    assert_eq!(first["reason_code"], "acceptance.inbound_smtp", "{lifecycle}");
    let qid = first["correlation_ids"]["postfix_queue_id"].as_str().expect("queue id");
    assert!(
        log.lines().any(|l| l.contains(&format!("{qid}: to=<{BOT}>"))),
        "{qid} delivered to {BOT} in the maillog: {log}"
    );
    // Another account's agent, or none, is a 404.
    let (status, _) = w.call(Method::POST, "/v1/agents/nobody@agents.test/test", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}
