//! `bench-fanout`: runs `postagent_bench::fanout::run` and writes the report. See bench/fanout/run.

use postagent_bench::fanout::{Opts, run};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: bench-fanout [--postagent PATH] [--messages N] [--subscriptions N] [--runs N] [--concurrency N] \
                     [--probes N] [--paced-rate N] [--paced-seconds N] [--connections N] [--ws-messages N] \
                     [--ws-rate N] [--out FILE]";

fn parse() -> Result<(Opts, Option<PathBuf>), String> {
    let mut opts = Opts {
        postagent: PathBuf::from("target/release/postagent"),
        messages: 2000,
        subscriptions: 5,
        runs: 3,
        concurrency: 64,
        probes: 200,
        paced_rate: 200,
        paced_seconds: 10,
        connections: 10_000,
        ws_messages: 1000,
        ws_rate: 100,
    };
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
        let number = |v: String| v.parse::<u32>().map_err(|_| format!("{flag}: {v:?} is not a number"));
        match flag.as_str() {
            "--postagent" => opts.postagent = PathBuf::from(value()?),
            "--messages" => opts.messages = number(value()?)?,
            "--subscriptions" => opts.subscriptions = number(value()?)?,
            "--runs" => opts.runs = number(value()?)?,
            "--concurrency" => opts.concurrency = number(value()?)?,
            "--probes" => opts.probes = number(value()?)?,
            "--paced-rate" => opts.paced_rate = number(value()?)?,
            "--paced-seconds" => opts.paced_seconds = number(value()?)?,
            "--connections" => opts.connections = number(value()?)?,
            "--ws-messages" => opts.ws_messages = number(value()?)?,
            "--ws-rate" => opts.ws_rate = number(value()?)?,
            "--out" => out = Some(PathBuf::from(value()?)),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok((opts, out))
}

fn main() -> ExitCode {
    postagent_bench::cli(
        "bench-fanout",
        "BENCH_FANOUT_COMMAND",
        parse(),
        |opts| async move { run(&opts).await },
    )
}
