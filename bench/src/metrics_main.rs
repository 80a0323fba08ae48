//! `bench-metrics`: runs `postagent_bench::metrics::run` and writes the report. See
//! bench/metrics/run.

use postagent_bench::metrics::{Opts, run};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: bench-metrics [--postagent PATH] [--messages N] [--agents N] [--requests N] [--sqlite-only] [--out FILE]";

fn parse() -> Result<(Opts, Option<PathBuf>), String> {
    let mut opts = Opts {
        postagent: PathBuf::from("target/release/postagent"),
        messages: 100_000,
        agents: 20,
        requests: 20,
        postgres: true,
    };
    let mut f = postagent_bench::Flags::new(USAGE);
    while let Some(flag) = f.next_flag() {
        match flag.as_str() {
            "--postagent" => opts.postagent = f.path()?,
            "--messages" => opts.messages = f.number()?.max(1),
            "--agents" => opts.agents = f.number()?.max(1),
            "--requests" => opts.requests = f.number()?.max(1),
            "--sqlite-only" => opts.postgres = false,
            other => f.common(other)?,
        }
    }
    Ok((opts, f.out))
}

fn main() -> ExitCode {
    postagent_bench::cli(
        "bench-metrics",
        "BENCH_METRICS_COMMAND",
        parse(),
        |opts| async move { run(&opts).await },
    )
}
