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
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
        let number = |v: String| v.parse::<u32>().map_err(|_| format!("{flag}: {v:?} is not a number"));
        match flag.as_str() {
            "--postagent" => opts.postagent = PathBuf::from(value()?),
            "--messages" => opts.messages = number(value()?)?,
            "--holds" => opts.holds = number(value()?)?,
            "--requests" => opts.requests = number(value()?)?.max(1),
            "--sqlite-only" => opts.postgres = false,
            "--out" => out = Some(PathBuf::from(value()?)),
            "-h" | "--help" => return Err(USAGE.into()),
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        }
    }
    Ok((opts, out))
}

fn main() -> ExitCode {
    postagent_bench::cli(
        "bench-console",
        "BENCH_CONSOLE_COMMAND",
        parse(),
        |opts| async move { run(&opts).await },
    )
}
