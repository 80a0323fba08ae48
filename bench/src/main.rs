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
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
        let number = |v: String| v.parse::<u32>().map_err(|_| format!("{flag}: {v:?} is not a number"));
        match flag.as_str() {
            "--postagent" => opts.postagent = PathBuf::from(value()?),
            "--messages" => opts.messages = number(value()?)?,
            "--sessions" => opts.sessions = number(value()?)?,
            "--runs" => opts.runs = number(value()?)?,
            "--probes" => opts.probes = number(value()?)?,
            "--paced-rate" => opts.paced_rate = number(value()?)?,
            "--paced-seconds" => opts.paced_seconds = number(value()?)?,
            "--sizes" => {
                opts.sizes = value()?
                    .split(',')
                    .map(|s| s.trim().parse::<u32>().map_err(|_| format!("--sizes: {s:?} is not a number")))
                    .collect::<Result<_, _>>()?
            }
            "--out" => out = Some(PathBuf::from(value()?)),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok((opts, out))
}

fn main() -> ExitCode {
    postagent_bench::cli(
        "bench-inbound",
        "BENCH_INBOUND_COMMAND",
        parse(),
        |opts| async move { run(&opts).await },
    )
}
