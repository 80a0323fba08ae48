//! The figures and their Markdown report.

use crate::Opts;
use std::fmt;
use std::process::Command;

/// One message size: msg/s of each run, per configuration.
#[derive(Debug, Clone, Default)]
pub struct Row {
    pub size: u32,
    pub baseline: Vec<f64>,
    pub postagent: Vec<f64>,
    /// (c): (b) with Postfix asking postagent's socketmap for its tables.
    pub mapped: Vec<f64>,
}

impl Row {
    /// postagent's median over the baseline's median.
    pub fn ratio(&self) -> f64 {
        median(&self.postagent) / median(&self.baseline)
    }

    /// What the socketmap lookups add per message, in ms of wall time at full load (from
    /// the medians of (b) and (c)).
    pub fn added_ms(&self) -> f64 {
        1000.0 / median(&self.mapped) - 1000.0 / median(&self.postagent)
    }
}

/// One way of looking up a map, timed per lookup (ms).
#[derive(Debug, Clone)]
pub struct Lookups {
    pub what: String,
    pub latency: Latency,
}

/// DATA-to-stored latency in milliseconds.
#[derive(Debug, Clone, Default)]
pub struct Latency {
    pub samples: usize,
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
}

impl Latency {
    pub fn from_samples(mut millis: Vec<f64>) -> Latency {
        millis.sort_by(f64::total_cmp);
        let at = |q: f64| -> f64 {
            if millis.is_empty() {
                return f64::NAN;
            }
            // Nearest rank: the smallest sample with at least q of them at or below it.
            let rank = ((q * millis.len() as f64).ceil() as usize).clamp(1, millis.len());
            millis[rank - 1]
        };
        Latency { samples: millis.len(), p50: at(0.50), p99: at(0.99), max: at(1.0) }
    }
}

impl fmt::Display for Latency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms ({} probes)",
            self.p50, self.p99, self.max, self.samples
        )
    }
}

pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if !n.is_multiple_of(2) => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

pub struct Report {
    pub opts: Opts,
    pub rows: Vec<Row>,
    pub idle: Latency,
    pub paced: Latency,
    pub loaded: Latency,
    pub lookups: Vec<Lookups>,
    pub environment: String,
}

fn size_label(bytes: u32) -> String {
    if bytes >= 1024 && bytes.is_multiple_of(1024) {
        format!("{} KB", bytes / 1024)
    } else {
        format!("{bytes} B")
    }
}

fn runs(v: &[f64]) -> String {
    v.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(", ")
}

impl Report {
    pub fn markdown(&self, command: &str) -> String {
        let o = &self.opts;
        let mut out = format!(
            "# bench/inbound\n\n\
             `{command}`\n\n\
             {env}\n\n\
             {m} messages per run, {s} parallel sessions, one message per connection \
             (`smtp-source -s {s} -m {m} -l SIZE`), median of {r} runs, (a), (b) and (c) taking turns after one warm-up run each. msg/s is end to end: \
             until Postfix's queue is empty and, for (b) and (c), every message is in the database. \
             (b) has the agent domain in static tables; (c) is (b) with Postfix asking postagent's socketmap for \
             `relay_domains`, `transport_maps` and `relay_recipient_maps`, as `postagent postfix setup` configures it. \
             Every message is from `alice@sender.test`, whose SPF and DMARC records (TTL {ttl} s) \
             the milter's resolver caches, as it would for a real sender domain.\n\n\
             | size | (a) Postfix → smtp-sink, no milter | (b) Postfix + postagent milter + LMTP → SQLite | (c) (b) + socketmap tables | ratio b/a | ratio c/b | added by the maps |\n\
             |---|---|---|---|---|---|---|\n",
            env = self.environment,
            m = o.messages,
            s = o.sessions,
            r = o.runs,
            ttl = crate::DNS_TTL,
        );
        for row in &self.rows {
            out.push_str(&format!(
                "| {} | **{:.0}** msg/s ({}) | **{:.0}** msg/s ({}) | **{:.0}** msg/s ({}) | **{:.2}** | **{:.2}** | {:+.2} ms/msg |\n",
                size_label(row.size),
                median(&row.baseline),
                runs(&row.baseline),
                median(&row.postagent),
                runs(&row.postagent),
                median(&row.mapped),
                runs(&row.mapped),
                row.ratio(),
                median(&row.mapped) / median(&row.postagent),
                row.added_ms()
            ));
        }
        out.push_str(&format!(
            "\nDATA-to-stored latency of (b), 1 KB probes (client clock after the final `.` → the \
             row's `created_at`):\n\n\
             | | p50 | p99 | max | probes |\n|---|---|---|---|---|\n\
             | idle | {:.1} ms | {:.1} ms | {:.1} ms | {} |\n\
             | steady load: {rate} sessions each sending one message a second (bursts of {rate}) | {:.1} ms | {:.1} ms | {:.1} ms | {} |\n\
             | saturated: during a 1 KB `smtp-source` run (queueing in Postfix included) | {:.1} ms | {:.1} ms | {:.1} ms | {} |\n",
            self.idle.p50,
            self.idle.p99,
            self.idle.max,
            self.idle.samples,
            self.paced.p50,
            self.paced.p99,
            self.paced.max,
            self.paced.samples,
            self.loaded.p50,
            self.loaded.p99,
            self.loaded.max,
            self.loaded.samples,
            rate = o.paced_rate,
        ));
        out.push_str(
            "\nSocketmap lookups of `relay_recipient_maps` for the agent, one at a time at idle:\n\n\
             | how | p50 | p99 | max | lookups |\n|---|---|---|---|---|\n",
        );
        for l in &self.lookups {
            out.push_str(&format!(
                "| {} | {:.3} ms | {:.3} ms | {:.3} ms | {} |\n",
                l.what, l.latency.p50, l.latency.p99, l.latency.max, l.latency.samples
            ));
        }
        out
    }
}

fn first_line(cmd: &mut Command) -> String {
    cmd.output()
        .ok()
        .map(|o| String::from_utf8_lossy(&o.stdout).lines().next().unwrap_or("").trim().to_owned())
        .unwrap_or_default()
}

/// What the figures were measured on.
pub fn environment() -> String {
    let cpus = std::thread::available_parallelism().map_or(0, |n| n.get());
    let postfix = first_line(Command::new("/usr/sbin/postconf").args(["-d", "-h", "mail_version"]));
    let kernel = first_line(Command::new("uname").arg("-r"));
    let commit = first_line(Command::new("git").args(["rev-parse", "--short", "HEAD"]));
    let date = first_line(Command::new("date").args(["-u", "+%Y-%m-%d %H:%M UTC"]));
    format!(
        "Measured {date} at commit `{commit}` on {cpus} CPUs (Linux {kernel}), Postfix {postfix}. The load \
         generator, Postfix (smtpd, cleanup, qmgr, lmtp), the sink or postagent and the logging all share \
         these CPUs, so the figures are CPU-bound lower bounds; compare within one run."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let l = Latency::from_samples((1..=100).map(f64::from).collect());
        assert_eq!((l.p50, l.p99, l.max, l.samples), (50.0, 99.0, 100.0, 100));
        let l = Latency::from_samples(vec![3.0, 1.0, 2.0]);
        assert_eq!((l.p50, l.p99), (2.0, 3.0));
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
        assert_eq!(median(&[4.0, 1.0]), 2.5);
        assert!(median(&[]).is_nan());
    }
}
