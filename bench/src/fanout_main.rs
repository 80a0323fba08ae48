//! `bench-fanout`: runs `postagent_bench::fanout::run` and writes the report. See bench/fanout/run.

use postagent_bench::fanout::{Opts, run};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: bench-fanout [--postagent PATH] [--messages N] [--subscriptions N] [--runs N] [--concurrency N] \
                     [--probes N] [--paced-rate N] [--paced-seconds N] [--connections N] [--ws-messages N] \
                     [--ws-rate N] [--no-postgres] [--out FILE]";

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
        postgres: true,
        ws_messages: 1000,
        ws_rate: 100,
    };
    let mut f = postagent_bench::Flags::new(USAGE);
    while let Some(flag) = f.next_flag() {
        match flag.as_str() {
            "--postagent" => opts.postagent = f.path()?,
            "--messages" => opts.messages = f.number()?,
            "--subscriptions" => opts.subscriptions = f.number()?,
            "--runs" => opts.runs = f.number()?,
            "--concurrency" => opts.concurrency = f.number()?,
            "--probes" => opts.probes = f.number()?,
            "--paced-rate" => opts.paced_rate = f.number()?,
            "--paced-seconds" => opts.paced_seconds = f.number()?,
            "--connections" => opts.connections = f.number()?,
            "--ws-messages" => opts.ws_messages = f.number()?,
            "--ws-rate" => opts.ws_rate = f.number()?,
            "--no-postgres" => opts.postgres = false,
            other => f.common(other)?,
        }
    }
    Ok((opts, f.out))
}

fn main() -> ExitCode {
    postagent_bench::cli(
        "bench-fanout",
        "BENCH_FANOUT_COMMAND",
        parse(),
        |opts| async move { run(&opts).await },
    )
}
