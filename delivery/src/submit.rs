//! The submission worker (part of `postagent worker` and `serve`): hands accepted outbound
//! mail to Postfix's originating listener over SMTP, mails reviewers about new holds, and
//! sweeps expired holds.
//!
//! Postfix owns delivery: a 250 from the listener means "queued", and its queue id is
//! recorded (`sent`, `email.sent`). A 5xx fails the message with Postfix's reason
//! (`failed`, `email.failed`); a 4xx or an unreachable listener is retried on the configured
//! schedule. The envelope sender is the message's VERP bounce address, so the DSNs Postfix
//! writes later come back to our LMTP server and name the message.
//!
//! Jobs are claimed under a lease, so replicas never submit the same message at once; a
//! worker that dies mid-submission leaves its lease to expire and the message is submitted
//! again (at-least-once, like every queue here).

use crate::jobs::JobQueue;
use crate::relay::{Relay, Sent};
use lettre::address::{Address, Envelope};
use postagent_core::bus::BusMessage;
use postagent_core::config::SubmissionSettings;
use postagent_core::magic;
use postagent_core::mail::event::with_fields;
use postagent_core::mail::event::{OutboundFacts, outbound_data, outbound_event};
use postagent_core::mail::lifecycle::{self, NewStage, Reason};
use postagent_core::mail::outbound::{notify, verp};
use postagent_core::mail::{outbound::Draft, review};
use postagent_core::metrics;
use postagent_core::secret::Secret;
use postagent_core::store::{Job, MessageUpdate, Store, StoreError, Transition};
use postagent_core::time::Timestamp;
use postagent_core::vocab::{DeliveryStatus, Direction, EventKind, JobKind, MessageStatus};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;

/// Queued work wakes the submitter through the bus; this poll only catches retries coming
/// due and notifications lost across replicas (an idle poll is one SELECT).
const POLL_EVERY: Duration = Duration::from_secs(1);
/// One job per claim: a lease covers one SMTP try, so a slow submission can never outlive the
/// lease of a job still waiting behind it in the same batch (which another replica would then
/// claim and submit too).
const CLAIM_BATCH: u32 = 1;
/// Expired holds decided per sweep query.
const SWEEP_BATCH: u32 = 100;

pub struct Submitter {
    store: Arc<dyn Store>,
    secret: Secret,
    settings: SubmissionSettings,
    relay: Relay,
    id: String,
}

/// How one SMTP try ended.
enum Tried {
    Queued {
        queue_id: Option<String>,
        reply: String,
    },
    Permanent(String),
    Temporary(String),
    /// Not tried: a recipient was suppressed after the message was accepted (why, the
    /// address, the list's source).
    Suppressed(String, String, String),
}

/// `250 2.0.0 Ok: queued as 4dQ1xk0sYzz9sWL` → the queue id.
pub fn queue_id_of(reply: &str) -> Option<String> {
    let (_, after) = reply.split_once("queued as ")?;
    let id: String = after.chars().take_while(char::is_ascii_alphanumeric).collect();
    (!id.is_empty()).then_some(id)
}

impl Submitter {
    pub fn new(store: Arc<dyn Store>, secret: Secret, settings: SubmissionSettings) -> Self {
        // Plain SMTP to our own listener (loopback or a unix socket under Postfix's queue
        // directory), which the master.cf fragment runs without TLS.
        let relay =
            Relay { addr: settings.relay.clone(), helo: settings.helo.clone(), timeout: settings.timeout };
        let id = format!("submit-{}", postagent_core::ids::mint("", 6));
        Self { store, secret, settings, relay, id }
    }

    fn lease_secs(&self) -> i64 {
        i64::try_from(self.settings.timeout.as_secs()).unwrap_or(60) * 2 + 5
    }

    /// Runs until `stop` resolves; the submission in flight finishes first.
    pub async fn run(self, stop: impl std::future::Future<Output = ()>) {
        tracing::info!(
            worker = %self.id,
            relay = %self.relay.describe(),
            "submission worker started"
        );
        tokio::pin!(stop);
        let mut queue =
            JobQueue::new(self.store.clone(), self.id.clone(), self.lease_secs(), POLL_EVERY, |m| {
                matches!(
                    m,
                    BusMessage::Jobs {
                        kind: JobKind::Submit | JobKind::ReviewNotify | JobKind::ConsoleSignIn
                    }
                )
            });
        let mut next_sweep = tokio::time::Instant::now();
        loop {
            let mut busy = false;
            for kind in [JobKind::Submit, JobKind::ReviewNotify, JobKind::ConsoleSignIn] {
                let jobs = queue.claim(kind, CLAIM_BATCH).await;
                busy |= !jobs.is_empty();
                for job in jobs {
                    self.run_job(&job).await;
                }
            }
            if tokio::time::Instant::now() >= next_sweep {
                next_sweep = tokio::time::Instant::now() + self.settings.hold_sweep_every;
                match review::sweep(self.store.as_ref(), &self.secret, Timestamp::now(), SWEEP_BATCH).await {
                    Ok(0) => {}
                    Ok(n) => tracing::info!(decided = n, "expired review holds decided"),
                    Err(e) => tracing::warn!(error = %e, "review hold sweep failed; will retry"),
                }
            }
            if busy {
                // Between jobs, a stop request wins over the backlog.
                tokio::select! {
                    biased;
                    () = &mut stop => break,
                    () = std::future::ready(()) => continue,
                }
            }
            tokio::select! {
                () = &mut stop => break,
                () = queue.announced() => {}
                () = tokio::time::sleep_until(next_sweep) => {}
            }
        }
        queue.release().await;
        tracing::info!(worker = %self.id, "submission worker stopped");
    }

    async fn run_job(&self, job: &Job) {
        let result = match job.kind {
            JobKind::Submit => self.submit(job).await,
            JobKind::ReviewNotify => self.notify(job).await,
            JobKind::ConsoleSignIn => self.sign_in(job).await,
            // Never claimed here: the webhook worker owns these.
            JobKind::Webhook => Ok(()),
        };
        if let Err(e) = result {
            // The lease expires and the job is tried again.
            tracing::warn!("NOQUEUE: {} msg={}: store failed: {e}; will retry", job.kind, job.ref_id);
        }
    }

    /// Sends `raw` through the originating listener.
    async fn smtp_try(&self, from: Option<&str>, to: &[String], raw: &[u8]) -> Tried {
        let parse = |a: &str| a.parse::<Address>().map_err(|e| format!("{a:?}: {e}"));
        let envelope = (|| -> Result<Envelope, String> {
            let from = from.map(parse).transpose()?;
            let to = to.iter().map(|a| parse(a)).collect::<Result<Vec<_>, _>>()?;
            Envelope::new(from, to).map_err(|e| e.to_string())
        })();
        let envelope = match envelope {
            Ok(e) => e,
            Err(e) => return Tried::Permanent(format!("invalid envelope: {e}")),
        };
        match self.relay.send(&envelope, raw).await {
            Sent::Accepted(reply) => Tried::Queued { queue_id: queue_id_of(&reply), reply },
            Sent::Permanent(e) => Tried::Permanent(e),
            Sent::Temporary(e) => Tried::Temporary(e),
        }
    }

    /// The delay before the next try, or `None` when the tries are used up.
    fn next_try(&self, job: &Job) -> Option<Duration> {
        usize::try_from(job.attempts - 1).ok().and_then(|n| self.settings.retry.get(n).copied())
    }

    async fn submit(&self, job: &Job) -> Result<(), StoreError> {
        let Some(m) = self.store.find_message(&job.ref_id).await? else {
            self.store.complete_job(job.id, &self.id).await?;
            return Ok(());
        };
        if m.deleted_at.is_some() {
            // Trashed before it left: not sent. A restore re-arms it (or cancels it when
            // its time has passed); one that lands meanwhile keeps this job for a later try.
            if self.store.drop_job_of_trashed(job.id, &self.id, &m.id).await? {
                tracing::info!(
                    "NOQUEUE: submission skipped msg={} agent={}: in the trash",
                    m.id,
                    m.agent_email
                );
            }
            return Ok(());
        }
        let now = Timestamp::now();
        let to_sending = Transition {
            message_id: m.id.clone(),
            from: vec![MessageStatus::Accepted, MessageStatus::Sending],
            set: MessageUpdate {
                status: Some(MessageStatus::Sending),
                delivery_status: Some(DeliveryStatus::Sending),
                ..Default::default()
            },
            unless_trashed: true,
            at: now,
            ..Transition::default()
        };
        let (Some(agent), Some(raw), true) = (
            self.store.get_agent(&m.account_id, &m.agent_email).await?,
            self.store.get_raw(&m.id).await?,
            self.store.transition(to_sending).await?,
        ) else {
            // Already sent, failed or gone: nothing to do.
            self.store.complete_job(job.id, &self.id).await?;
            return Ok(());
        };
        let rcpts: Vec<String> = m.to.iter().chain(&m.cc).chain(&m.bcc).cloned().collect();
        let from = verp::bounce_address(&self.secret, &m.id, &agent.domain, Timestamp::now());
        // A fresh token per try, so a retried submission is never refused as stale. Only the
        // agent's own mail is stamped: the deployment's test message to an agent (From its
        // noreply identity) must arrive as mail from outside does.
        let raw = if m.header_from.as_deref().is_some_and(|f| f.eq_ignore_ascii_case(&agent.email)) {
            postagent_core::auth::submission::stamp(
                &self.secret,
                &raw,
                &m.id,
                m.account_id.as_str(),
                &agent.email,
                Timestamp::now(),
            )
        } else {
            raw
        };
        // Suppressed recipients never reach Postfix, even when the list changed after accept.
        let lower: Vec<String> = rcpts.iter().map(|r| r.to_ascii_lowercase()).collect();
        let tried = match self.store.suppressed(&m.account_id, &agent.email, &lower).await?.into_iter().next()
        {
            Some(s) => {
                metrics::SUPPRESSED_SENDS.inc("submission");
                let why = format!("recipient {} is suppressed ({})", s.address, s.source);
                Tried::Suppressed(why, s.address.clone(), s.source.to_string())
            }
            None => self.smtp_try(Some(&from), &rcpts, &raw).await,
        };
        let conversation = m.conversation_id.clone().unwrap_or_default();
        let facts = OutboundFacts::of(&m, &conversation);
        let data = outbound_data(&agent, &m.id, &facts);
        let now = Timestamp::now();
        let stage = |reason| NewStage::new(&m.id, Direction::Outbound, reason, now);
        let fail = |reason: String, code: &str, ledger: Vec<NewStage>| {
            let ledger = lifecycle::in_order(ledger);
            Transition {
                message_id: m.id.clone(),
                from: vec![MessageStatus::Sending],
                set: MessageUpdate {
                    status: Some(MessageStatus::Failed),
                    delivery_status: Some(DeliveryStatus::Failed),
                    delivery_detail: Some(reason.clone()),
                    ..Default::default()
                },
                events: vec![outbound_event(
                    &agent,
                    &m.id,
                    &conversation,
                    EventKind::EmailFailed,
                    with_fields(
                        data.clone(),
                        json!({"method": "smtp", "reason": reason, "reason_code": code, "retryable": false,
                            "lifecycle_transitions": lifecycle::views(&ledger)}),
                    ),
                    now,
                )],
                lifecycle: ledger,
                at: now,
                ..Transition::default()
            }
        };
        metrics::SUBMISSIONS.inc(match (&tried, self.next_try(job)) {
            (Tried::Queued { .. }, _) => "sent",
            (Tried::Temporary(_), Some(_)) => "deferred",
            _ => "failed",
        });
        match tried {
            Tried::Queued { queue_id, reply } => {
                let qid = queue_id.clone().unwrap_or_else(|| "NOQUEUE".into());
                let accepted = stage(Reason::UpstreamAccepted)
                    .evidence("smtp_detail", reply.as_str())
                    .correlate("provider_message_id", queue_id.as_deref())
                    .correlate("postfix_queue_id", queue_id.as_deref())
                    .correlate("job_id", Some(&job.id.to_string()));
                let mut sent = with_fields(
                    data.clone(),
                    json!({"method": "smtp", "lifecycle_transitions": [accepted.view()]}),
                );
                if let (Some(q), Some(obj)) = (&queue_id, sent.as_object_mut()) {
                    obj.insert("provider_message_id".into(), json!(q));
                }
                let t = Transition {
                    message_id: m.id.clone(),
                    from: vec![MessageStatus::Sending],
                    set: MessageUpdate {
                        status: Some(MessageStatus::Sent),
                        delivery_status: Some(DeliveryStatus::Sent),
                        delivery_detail: Some(reply.clone()),
                        postfix_queue_id: queue_id.clone(),
                        provider_message_id: queue_id.clone(),
                        ..Default::default()
                    },
                    events: vec![outbound_event(
                        &agent,
                        &m.id,
                        &conversation,
                        EventKind::EmailSent,
                        sent,
                        now,
                    )],
                    lifecycle: vec![accepted],
                    at: now,
                    ..Transition::default()
                };
                if !self.store.transition(t.clone()).await? {
                    // A DSN can beat this commit (an immediate local bounce): the message is
                    // already bounced; still record what Postfix said and that it was sent.
                    let mut late = t;
                    late.from = vec![MessageStatus::Bounced];
                    late.set.status = None;
                    late.set.delivery_status = None;
                    late.set.delivery_detail = None;
                    self.store.transition(late).await?;
                }
                self.store.complete_job(job.id, &self.id).await?;
                tracing::info!(
                    "{qid}: submitted msg={} agent={} from=<{from}> rcpts={} size={} reply={reply:?}",
                    m.id,
                    agent.email,
                    rcpts.len(),
                    raw.len()
                );
            }
            Tried::Suppressed(reason, blocked, by) => {
                let ledger = vec![
                    stage(Reason::RecipientBlocked).recipient(&blocked).evidence("suppression_source", by),
                    stage(Reason::Cancelled).evidence("failure_reason", reason.as_str()),
                ];
                self.store
                    .transition(fail(reason.clone(), "suppression.recipient_suppressed", ledger))
                    .await?;
                self.store.complete_job(job.id, &self.id).await?;
                tracing::warn!("NOQUEUE: submission stopped msg={} agent={}: {reason}", m.id, agent.email);
            }
            Tried::Permanent(reason) => {
                let ledger = vec![stage(Reason::ProviderRejected).evidence("smtp_detail", reason.as_str())];
                self.store.transition(fail(reason.clone(), "submission.provider_rejected", ledger)).await?;
                self.store.complete_job(job.id, &self.id).await?;
                tracing::warn!("NOQUEUE: submission refused msg={} agent={}: {reason}", m.id, agent.email);
            }
            Tried::Temporary(reason) => match self.next_try(job) {
                Some(delay) => {
                    let back = Transition {
                        message_id: m.id.clone(),
                        from: vec![MessageStatus::Sending],
                        set: MessageUpdate {
                            status: Some(MessageStatus::Accepted),
                            delivery_status: Some(DeliveryStatus::Deferred),
                            delivery_detail: Some(reason.clone()),
                            ..Default::default()
                        },
                        lifecycle: vec![
                            stage(Reason::TemporaryFailure)
                                .evidence("smtp_detail", reason.as_str())
                                .correlate("job_id", Some(&job.id.to_string())),
                        ],
                        at: now,
                        ..Transition::default()
                    };
                    self.store.transition(back).await?;
                    let micros = i64::try_from(delay.as_micros()).unwrap_or(i64::MAX);
                    self.store.retry_job(job.id, &self.id, now.plus_micros(micros), &reason).await?;
                    tracing::warn!(
                        "NOQUEUE: submission deferred msg={} agent={} try={} retry_in={delay:?}: {reason}",
                        m.id,
                        agent.email,
                        job.attempts
                    );
                }
                None => {
                    let reason = format!("gave up after {} tries: {reason}", job.attempts);
                    let ledger =
                        vec![stage(Reason::RetriesExhausted).evidence("failure_reason", reason.as_str())];
                    self.store
                        .transition(fail(reason.clone(), "submission.local_retries_exhausted", ledger))
                        .await?;
                    self.store.complete_job(job.id, &self.id).await?;
                    tracing::warn!("NOQUEUE: submission failed msg={} agent={}: {reason}", m.id, agent.email);
                }
            },
        }
        Ok(())
    }

    /// Mails a console sign-in link. The login row names the address; the link is derived
    /// from its id, so it was never stored.
    async fn sign_in(&self, job: &Job) -> Result<(), StoreError> {
        let now = Timestamp::now();
        let Some(login) = self
            .store
            .get_console_login(&job.ref_id)
            .await?
            .filter(|l| l.used_at.is_none() && l.expires_at > now)
        else {
            self.store.complete_job(job.id, &self.id).await?;
            return Ok(());
        };
        // The address became an agent's since it asked: that agent's key could read the link.
        if self.store.find_live_agent(&login.email).await?.is_some() {
            tracing::warn!(
                "NOQUEUE: console sign-in link not sent to=<{}>: the address is an agent's",
                login.email
            );
            self.store.complete_job(job.id, &self.id).await?;
            return Ok(());
        }
        let link = format!(
            "{}/console/login/link?t={}",
            self.settings.public_url,
            magic::sign_in_token(&self.secret, &login.id)
        );
        let raw = match notify::compose_sign_in(&login.email, &link, &self.settings.helo, login.expires_at) {
            Ok(raw) => raw,
            Err(e) => {
                tracing::error!(
                    "NOQUEUE: console sign-in mail for account {}: cannot compose: {e}",
                    login.account_id
                );
                self.store.complete_job(job.id, &self.id).await?;
                return Ok(());
            }
        };
        let to = login.email.clone();
        match self.smtp_try(None, std::slice::from_ref(&to), &raw).await {
            Tried::Queued { queue_id, .. } => {
                self.store.complete_job(job.id, &self.id).await?;
                tracing::info!(
                    "{}: console sign-in link account={} to=<{to}>",
                    queue_id.as_deref().unwrap_or("NOQUEUE"),
                    login.account_id
                );
            }
            Tried::Permanent(reason) | Tried::Suppressed(reason, ..) => {
                self.store.complete_job(job.id, &self.id).await?;
                tracing::warn!("NOQUEUE: console sign-in link refused to=<{to}>: {reason}");
            }
            Tried::Temporary(reason) => {
                // A link is worth sending only while it works.
                match self.next_try(job).filter(|d| {
                    now.plus_micros(i64::try_from(d.as_micros()).unwrap_or(i64::MAX)) < login.expires_at
                }) {
                    Some(delay) => {
                        let micros = i64::try_from(delay.as_micros()).unwrap_or(i64::MAX);
                        self.store.retry_job(job.id, &self.id, now.plus_micros(micros), &reason).await?;
                        tracing::warn!(
                            "NOQUEUE: console sign-in link deferred to=<{to}> retry_in={delay:?}: {reason}"
                        );
                    }
                    None => {
                        self.store.complete_job(job.id, &self.id).await?;
                        tracing::warn!("NOQUEUE: console sign-in link not sent to=<{to}>: {reason}");
                    }
                }
            }
        }
        Ok(())
    }

    /// Mails the account's reviewer about a new hold.
    async fn notify(&self, job: &Job) -> Result<(), StoreError> {
        let Some(hold) = self
            .store
            .get_hold(&job.ref_id)
            .await?
            .filter(|h| h.state == postagent_core::vocab::HoldState::Pending)
        else {
            self.store.complete_job(job.id, &self.id).await?;
            return Ok(());
        };
        let (Some(m), Some(account), Some(agent)) = (
            self.store.find_message(&hold.message_id).await?,
            self.store.get_account(&hold.account_id).await?,
            self.store.get_agent(&hold.account_id, &hold.agent_email).await?,
        ) else {
            self.store.complete_job(job.id, &self.id).await?;
            return Ok(());
        };
        let reviewer = account.reviewer_email.clone().unwrap_or(account.email.clone());
        // A reviewer address that became an agent would let that agent's key approve the
        // hold: no notice (the hold waits for the API or its expiry).
        if self.store.find_live_agent(&reviewer.to_ascii_lowercase()).await?.is_some() {
            tracing::warn!(
                "NOQUEUE: review notice msg={} not sent: the reviewer <{reviewer}> is an agent; \
                 set a person's address with postagent admin reviewer",
                m.id
            );
            self.store.complete_job(job.id, &self.id).await?;
            return Ok(());
        }
        let draft: Draft = self
            .store
            .get_draft(&m.id)
            .await?
            .and_then(|d| serde_json::from_str(&d).ok())
            .unwrap_or_default();
        let (approve_url, reject_url) =
            magic::links(&self.settings.public_url, &self.secret, &m.id, hold.expires_at);
        let console_url = format!("{}/console/reviews/{}", self.settings.public_url, m.id);
        let raw = notify::compose(&notify::Notice {
            agent: &agent,
            message: &m,
            text: draft.text.as_deref(),
            reviewer: &reviewer,
            approve_url: &approve_url,
            reject_url: &reject_url,
            console_url: &console_url,
            expires_at: hold.expires_at,
        });
        let raw = match raw {
            Ok(r) => r,
            Err(e) => {
                tracing::error!("NOQUEUE: review notice msg={}: cannot compose: {e}", m.id);
                self.store.complete_job(job.id, &self.id).await?;
                return Ok(());
            }
        };
        // A null sender: nothing bounces back at an automatic notice.
        match self.smtp_try(None, std::slice::from_ref(&reviewer), &raw).await {
            Tried::Queued { queue_id, .. } => {
                self.store.complete_job(job.id, &self.id).await?;
                tracing::info!(
                    "{}: review notice msg={} agent={} reviewer=<{reviewer}>",
                    queue_id.as_deref().unwrap_or("NOQUEUE"),
                    m.id,
                    agent.email
                );
            }
            Tried::Permanent(reason) | Tried::Suppressed(reason, ..) => {
                self.store.complete_job(job.id, &self.id).await?;
                tracing::warn!("NOQUEUE: review notice refused msg={} reviewer=<{reviewer}>: {reason}", m.id);
            }
            Tried::Temporary(reason) => {
                let delay = self.next_try(job).unwrap_or(Duration::from_secs(3600));
                let micros = i64::try_from(delay.as_micros()).unwrap_or(i64::MAX);
                self.store.retry_job(job.id, &self.id, Timestamp::now().plus_micros(micros), &reason).await?;
                tracing::warn!("NOQUEUE: review notice deferred msg={} retry_in={delay:?}: {reason}", m.id);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_ids_from_replies() {
        assert_eq!(
            queue_id_of("250 2.0.0 Ok: queued as 4dQ1xk0sYzz9sWL").as_deref(),
            Some("4dQ1xk0sYzz9sWL")
        );
        assert_eq!(queue_id_of("250 2.0.0 Ok: queued as 3A2B1C4D5E").as_deref(), Some("3A2B1C4D5E"));
        assert_eq!(queue_id_of("250 ok"), None);
    }
}
