//! Process metrics in the Prometheus text format: counters by one label, and latency
//! histograms. A fixed set, declared here, so every name and its help text is in one place
//! (docs/operator-guide.md lists them). Recording is a lock-free atomic add for histograms
//! and a short mutex for labelled counters; nothing on the mail path waits on a scrape.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// A counter split by one label.
pub struct CounterVec {
    name: &'static str,
    help: &'static str,
    label: &'static str,
    values: Mutex<BTreeMap<&'static str, u64>>,
}

impl CounterVec {
    const fn new(name: &'static str, help: &'static str, label: &'static str) -> Self {
        Self { name, help, label, values: Mutex::new(BTreeMap::new()) }
    }

    pub fn inc(&self, value: &'static str) {
        if let Ok(mut v) = self.values.lock() {
            *v.entry(value).or_insert(0) += 1;
        }
    }

    pub fn get(&self, value: &str) -> u64 {
        self.values.lock().ok().and_then(|v| v.get(value).copied()).unwrap_or(0)
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} counter", self.name, self.help, self.name);
        if let Ok(v) = self.values.lock() {
            for (value, n) in v.iter() {
                let _ = writeln!(out, "{}{{{}=\"{}\"}} {n}", self.name, self.label, value);
            }
        }
    }
}

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

pub struct Histogram {
    name: &'static str,
    help: &'static str,
    counts: [AtomicU64; BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    const fn new(name: &'static str, help: &'static str) -> Self {
        Self {
            name,
            help,
            counts: [const { AtomicU64::new(0) }; BUCKETS.len()],
            count: AtomicU64::new(0),
            sum_micros: AtomicU64::new(0),
        }
    }

    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, c) in BUCKETS.iter().zip(&self.counts) {
            if secs <= *bound {
                c.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(u64::try_from(d.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    fn render(&self, out: &mut String) {
        let _ = writeln!(out, "# HELP {} {}\n# TYPE {} histogram", self.name, self.help, self.name);
        for (bound, c) in BUCKETS.iter().zip(&self.counts) {
            let _ = writeln!(out, "{}_bucket{{le=\"{bound}\"}} {}", self.name, c.load(Ordering::Relaxed));
        }
        let count = self.count();
        let _ = writeln!(out, "{}_bucket{{le=\"+Inf\"}} {count}", self.name);
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{}_sum {sum}\n{}_count {count}", self.name, self.name);
    }
}

pub static MILTER_VERDICTS: CounterVec = CounterVec::new(
    "postagent_milter_verdicts_total",
    "Messages the milter signed, by verdict (verified: DMARC-aligned pass; agent: proven by a submission token; carried: a valid set re-bound after a content filter).",
    "result",
);
pub static MILTER_RCPT: CounterVec = CounterVec::new(
    "postagent_milter_rcpt_total",
    "RCPT commands the milter answered, by class (agent, unknown_agent rejected 550, foreign, unavailable 451).",
    "class",
);
pub static MILTER_EOM: Histogram = Histogram::new(
    "postagent_milter_eom_seconds",
    "Milter end-of-message: verdict, signing and header changes.",
);
pub static LMTP_RECIPIENTS: CounterVec = CounterVec::new(
    "postagent_lmtp_recipients_total",
    "LMTP recipients by outcome (stored, duplicate, unknown, deferred, bounce).",
    "outcome",
);
pub static LMTP_COMMIT: Histogram = Histogram::new(
    "postagent_lmtp_commit_seconds",
    "LMTP: from end of DATA to the commit of one recipient's copy.",
);
pub static WEBHOOK_ATTEMPTS: CounterVec = CounterVec::new(
    "postagent_webhook_attempts_total",
    "Webhook delivery tries by outcome (delivered, retry, failed, gone).",
    "outcome",
);
pub static WEBHOOK_DELIVERY: Histogram =
    Histogram::new("postagent_webhook_delivery_seconds", "One webhook POST, connect to answer.");
pub static SUBMISSIONS: CounterVec = CounterVec::new(
    "postagent_submissions_total",
    "Outbound SMTP submissions to Postfix by outcome (sent, deferred, failed).",
    "outcome",
);

pub static PEERS_REFUSED: CounterVec = CounterVec::new(
    "postagent_peers_refused_total",
    "Connections refused before a word was said, by listener (milter or lmtp: a peer outside milter_peers / lmtp_peers; lmtp_busy: lmtp_max_sessions reached).",
    "listener",
);
pub static LMTP_UNSIGNED: CounterVec = CounterVec::new(
    "postagent_lmtp_unsigned_total",
    "Recipient copies stored without authentication, by the check that failed (missing, signature, body, headers, queue_id, recipient, sender, version, age, malformed).",
    "binding",
);

pub static SUPPRESSIONS_ADDED: CounterVec = CounterVec::new(
    "postagent_suppressions_added_total",
    "Addresses added to a suppression list, by source (bounce, complaint, manual, unsubscribe).",
    "source",
);
pub static SUPPRESSED_SENDS: CounterVec = CounterVec::new(
    "postagent_suppressed_sends_total",
    "Sends refused or stopped because a recipient is suppressed, by where (api: 422 at send or approve; submission: suppressed after it was accepted).",
    "stage",
);

pub static RATE_LIMITED: CounterVec = CounterVec::new(
    "postagent_rate_limited_total",
    "API requests refused by a limit, by limiter (poll, send, agent_creation: 429 rate_limited; daily_recipients: 402 limit_exceeded).",
    "limiter",
);

pub static SOCKETMAP_LOOKUPS: CounterVec = CounterVec::new(
    "postagent_socketmap_lookups_total",
    "Postfix table lookups answered by the socketmap server, by answer (ok, notfound, temp: the store could not answer, perm: a malformed or unknown request).",
    "answer",
);

pub static LOOPS_STOPPED: CounterVec = CounterVec::new(
    "postagent_loops_stopped_total",
    "Replies refused by loop protection, by rule (automatic: the message was automatic mail; budget: the reply budget per correspondent was spent).",
    "rule",
);

/// Every counter and histogram, rendered.
pub fn render(out: &mut String) {
    for c in [
        &MILTER_VERDICTS,
        &MILTER_RCPT,
        &LMTP_RECIPIENTS,
        &LMTP_UNSIGNED,
        &PEERS_REFUSED,
        &WEBHOOK_ATTEMPTS,
        &SUBMISSIONS,
        &SUPPRESSIONS_ADDED,
        &SUPPRESSED_SENDS,
        &RATE_LIMITED,
        &LOOPS_STOPPED,
        &SOCKETMAP_LOOKUPS,
    ] {
        c.render(out);
    }
    for h in [&MILTER_EOM, &LMTP_COMMIT, &WEBHOOK_DELIVERY] {
        h.render(out);
    }
}

/// A gauge family read at scrape time (queue depths, holds by state, open WebSockets).
pub fn render_gauge(out: &mut String, name: &str, help: &str, label: &str, values: &[(String, i64)]) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
    for (value, n) in values {
        if label.is_empty() {
            let _ = writeln!(out, "{name} {n}");
        } else {
            let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {n}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        static C: CounterVec = CounterVec::new("t_total", "help", "k");
        C.inc("a");
        C.inc("a");
        C.inc("b");
        let mut out = String::new();
        C.render(&mut out);
        assert_eq!(
            out,
            "# HELP t_total help\n# TYPE t_total counter\nt_total{k=\"a\"} 2\nt_total{k=\"b\"} 1\n"
        );
        static H: Histogram = Histogram::new("t_seconds", "h");
        H.observe(Duration::from_millis(3));
        H.observe(Duration::from_secs(20));
        let mut out = String::new();
        H.render(&mut out);
        assert!(out.contains("t_seconds_bucket{le=\"0.0025\"} 0\n"), "{out}");
        assert!(out.contains("t_seconds_bucket{le=\"0.005\"} 1\n"), "{out}");
        assert!(out.contains("t_seconds_bucket{le=\"+Inf\"} 2\n"), "{out}");
        assert!(out.contains("t_seconds_count 2\n") && out.contains("t_seconds_sum 20.003"), "{out}");
    }
}
