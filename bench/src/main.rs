//! `bench-inbound`: runs `postagent_bench::run` and writes the report. See bench/inbound/run.

use postagent_bench::{Opts, run};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: bench-inbound [--postagent PATH] [--messages N] [--sessions N] [--runs N] \
                     [--sizes B,B] [--probes N] [--paced-rate N] [--paced-seconds N] [--out FILE]";

fn parse() -> Result<(Opts, Option<PathBuf>), String> {
    let mut opts = Opts {
        postagent: PathBuf::from("target/release/postagent"),
        messages: 2000,
        sessions: 20,
        runs: 3,
        sizes: vec![1024, 102_400],
        probes: 200,
        paced_rate: 50,
        paced_seconds: 10,
    };
    let mut f = postagent_bench::Flags::new(USAGE);
    while let Some(flag) = f.next_flag() {
        match flag.as_str() {
            "--postagent" => opts.postagent = f.path()?,
            "--messages" => opts.messages = f.number()?,
            "--sessions" => opts.sessions = f.number()?,
            "--runs" => opts.runs = f.number()?,
            "--probes" => opts.probes = f.number()?,
            "--paced-rate" => opts.paced_rate = f.number()?,
            "--paced-seconds" => opts.paced_seconds = f.number()?,
            "--sizes" => {
                opts.sizes = f
                    .value()?
                    .split(',')
                    .map(|s| s.trim().parse::<u32>().map_err(|_| format!("--sizes: {s:?} is not a number")))
                    .collect::<Result<_, _>>()?
            }
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
