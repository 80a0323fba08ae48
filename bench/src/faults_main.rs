//! `bench-faults`: runs `postagent_bench::faults::run` and writes the report. See
//! bench/faults/run. Exits non-zero when a count does not hold.

use postagent_bench::faults::{Opts, run};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: bench-faults [--postagent PATH] [--seconds N] [--kill-every SECS] [--sessions N] \
                     [--limit SECS] [--out FILE]";

fn parse() -> Result<(Opts, Option<PathBuf>), String> {
    let mut opts = Opts {
        postagent: PathBuf::from("target/release/postagent"),
        duration: Duration::from_secs(60),
        kill_every: Duration::from_secs(4),
        sessions: 10,
        limit: Duration::from_secs(300),
    };
    let mut f = postagent_bench::Flags::new(USAGE);
    while let Some(flag) = f.next_flag() {
        match flag.as_str() {
            "--postagent" => opts.postagent = f.path()?,
            "--seconds" => opts.duration = Duration::from_secs(u64::from(f.number()?)),
            "--kill-every" => opts.kill_every = Duration::from_secs(u64::from(f.number()?)),
            "--sessions" => opts.sessions = f.number()?,
            "--limit" => opts.limit = Duration::from_secs(u64::from(f.number()?)),
            other => f.common(other)?,
        }
    }
    Ok((opts, f.out))
}

fn main() -> ExitCode {
    postagent_bench::cli("bench-faults", "BENCH_FAULTS_COMMAND", parse(), |opts| async move {
        let report = run(&opts).await?;
        // A count that does not hold fails the command, with the counts.
        anyhow::ensure!(report.holds(), "a count does not hold:\n{}", report.markdown("bench-faults"));
        Ok(report)
    })
}
