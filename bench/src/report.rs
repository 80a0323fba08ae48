//! The figures and their Markdown report.

use crate::Opts;
use crate::inbound::{Row, Setup};
use std::fmt;
use std::process::Command;

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

fn ratio(row: &Row, num: Setup, den: Setup) -> String {
    match (row.median(num), row.median(den)) {
        (Some(n), Some(d)) => format!("**{:.2}**", n / d),
        _ => "—".into(),
    }
}

impl Report {
    pub fn markdown(&self, command: &str) -> String {
        let o = &self.opts;
        let setups: Vec<Setup> =
            self.rows.first().map(|r| r.by.iter().map(|(s, _)| *s).collect()).unwrap_or_default();
        let mut out = format!(
            "# bench/inbound\n\n\
             `{command}`\n\n\
             {env}\n\n\
             Real DKIM-signed mail: every message is signed by dkimpy (an independent signer) for `sender.example`, \
             whose SPF (`ip4:127.0.0.0/8 -all`), DKIM keys and DMARC `p=reject` records a loopback DNS server on \
             127.0.0.1:53 serves with TTL {ttl} s and SOA records on its negative answers, as real DNS does. \
             {m} messages per run, {s} parallel sessions, one message per connection (`smtp-source -s {s} -m {m} -F FILE`), \
             median of {r} runs, the set-ups taking turns after one warm-up run each (all run side by side, idle when not measured). \
             msg/s is end to end: until Postfix's queue is empty and, for postagent, every message is in the database. \
             Every message postagent stored was checked for `dkim=pass` and `dmarc=pass` in its stored verdict; \
             before timing, 40 messages through (c) (RSA-2048 and Ed25519) were kept by a sink and each carried \
             OpenDKIM's `dkim=pass` and OpenDMARC's `dmarc=pass`.\n\n",
            env = self.environment,
            m = o.messages,
            s = o.sessions,
            r = o.runs,
            ttl = crate::DNS_TTL,
        );
        for setup in &setups {
            out.push_str(&format!("- **({})** {}\n", setup.key(), setup.title()));
        }
        out.push_str("\n| message |");
        for setup in &setups {
            out.push_str(&format!(" ({}) msg/s |", setup.key()));
        }
        out.push_str(" b/a | c/a | d/a | **b/d** (≥ 0.95) | **b/c** (≥ 1.15) | b-pg/b | b-2/b-pg |\n|---|");
        out.push_str(&"---|".repeat(setups.len() + 7));
        out.push('\n');
        for row in &self.rows {
            out.push_str(&format!("| {} {} |", size_label(row.size), row.key.label()));
            for (_, m) in &row.by {
                out.push_str(&format!(" **{:.0}** ({}) |", median(&m.rates), runs(&m.rates)));
            }
            let (a, b, c, d) = (Setup::Bare, Setup::Postagent, Setup::Peer, Setup::Null);
            out.push_str(&format!(
                " {} | {} | {} | {} | {} | {} | {} |\n",
                ratio(row, b, a),
                ratio(row, c, a),
                ratio(row, d, a),
                ratio(row, b, d),
                ratio(row, b, c),
                ratio(row, Setup::PostagentPg, b),
                ratio(row, Setup::Replicas, Setup::PostagentPg),
            ));
        }
        out.push_str(
            "\nCPU per message (ms, all timed runs of a row; /proc utime+stime; the Postfix instance counts its \
             master and every child, reaped ones included):\n\n| message | set-up | per process | total |\n|---|---|---|---|\n",
        );
        for row in &self.rows {
            for (setup, m) in &row.by {
                let parts: Vec<String> = m.cpu.iter().map(|(n, ms)| format!("{n} {ms:.2}")).collect();
                let total: f64 = m.cpu.iter().map(|(_, ms)| ms).sum();
                out.push_str(&format!(
                    "| {} {} | ({}) | {} | {total:.2} |\n",
                    size_label(row.size),
                    row.key.label(),
                    setup.key(),
                    parts.join(", ")
                ));
            }
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
