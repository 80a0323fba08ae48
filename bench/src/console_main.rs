//! `bench-console`: runs `postagent_bench::console::run` and writes the report. See
//! bench/console/run.

use postagent_bench::console::{Opts, run};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: bench-console [--postagent PATH] [--messages N] [--holds N] [--requests N] \
                     [--sqlite-only] [--out FILE]";

fn parse() -> Result<(Opts, Option<PathBuf>), String> {
    let mut opts = Opts {
        postagent: PathBuf::from("target/release/postagent"),
        messages: 10_000,
        holds: 100,
        requests: 200,
        postgres: true,
    };
    let mut f = postagent_bench::Flags::new(USAGE);
    while let Some(flag) = f.next_flag() {
        match flag.as_str() {
            "--postagent" => opts.postagent = f.path()?,
            "--messages" => opts.messages = f.number()?,
            "--holds" => opts.holds = f.number()?,
            "--requests" => opts.requests = f.number()?.max(1),
            "--sqlite-only" => opts.postgres = false,
            other => f.common(other)?,
        }
    }
    Ok((opts, f.out))
}

fn main() -> ExitCode {
    postagent_bench::cli(
        "bench-console",
        "BENCH_CONSOLE_COMMAND",
        parse(),
        |opts| async move { run(&opts).await },
    )
}
