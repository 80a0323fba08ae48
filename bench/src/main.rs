//! `bench-inbound`: runs `postagent_bench::run` and writes the report. See bench/inbound/run.

use postagent_bench::{Opts, run};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: bench-inbound [--postagent PATH] [--messages N] [--sessions N] [--runs N] \
                     [--sizes B,B] [--ed25519-sizes B,B] [--no-postgres] [--nullmilter PATH] [--probes N] [--paced-rate N] [--paced-seconds N] [--out FILE]";

/// A comma-separated list of sizes in bytes (empty for none).
fn sizes(v: &str) -> Result<Vec<u32>, String> {
    v.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse::<u32>().map_err(|_| format!("{s:?} is not a size in bytes")))
        .collect()
}

fn parse() -> Result<(Opts, Option<PathBuf>), String> {
    let mut opts = Opts {
        postagent: PathBuf::from("target/release/postagent"),
        messages: 2000,
        sessions: 20,
        runs: 3,
        nullmilter: PathBuf::from("target/release/bench-nullmilter"),
        sizes: vec![1024, 102_400],
        ed25519_sizes: vec![1024],
        postgres: true,
        probes: 200,
        paced_rate: 50,
        paced_seconds: 10,
    };
    let mut f = postagent_bench::Flags::new(USAGE);
    while let Some(flag) = f.next_flag() {
        match flag.as_str() {
            "--postagent" => opts.postagent = f.path()?,
            "--nullmilter" => opts.nullmilter = f.path()?,
            "--no-postgres" => opts.postgres = false,
            "--ed25519-sizes" => opts.ed25519_sizes = sizes(&f.value()?)?,
            "--messages" => opts.messages = f.number()?,
            "--sessions" => opts.sessions = f.number()?,
            "--runs" => opts.runs = f.number()?,
            "--probes" => opts.probes = f.number()?,
            "--paced-rate" => opts.paced_rate = f.number()?,
            "--paced-seconds" => opts.paced_seconds = f.number()?,
            "--sizes" => opts.sizes = sizes(&f.value()?)?,
            other => f.common(other)?,
        }
    }
    Ok((opts, f.out))
}

fn main() -> ExitCode {
    postagent_bench::cli(
        "bench-inbound",
        "BENCH_INBOUND_COMMAND",
        parse(),
        |opts| async move { run(&opts).await },
    )
}
