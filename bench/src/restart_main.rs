//! `bench-restart`: runs `postagent_bench::restart::run` and writes the report. See
//! bench/restart/run.

use postagent_bench::restart::{Opts, Variant, run};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

const USAGE: &str = "usage: bench-restart [--postagent PATH] [--messages N] [--restart-after SECS] \
                     [--limit SECS] [--variants before,after] [--out FILE]";

fn parse() -> Result<(Opts, Option<PathBuf>), String> {
    let mut opts = Opts {
        postagent: PathBuf::from("target/release/postagent"),
        messages: 600,
        restart_after: Duration::from_secs(2),
        limit: Duration::from_secs(420),
        variants: vec![Variant::Before, Variant::After],
        retry: Duration::from_secs(300),
    };
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
        let number = |v: String| v.parse::<u32>().map_err(|_| format!("{flag}: {v:?} is not a number"));
        match flag.as_str() {
            "--postagent" => opts.postagent = PathBuf::from(value()?),
            "--messages" => opts.messages = number(value()?)?,
            "--restart-after" => opts.restart_after = Duration::from_secs(u64::from(number(value()?)?)),
            "--limit" => opts.limit = Duration::from_secs(u64::from(number(value()?)?)),
            "--variants" => {
                opts.variants = value()?
                    .split(',')
                    .map(|v| match v.trim() {
                        "before" => Ok(Variant::Before),
                        "after" => Ok(Variant::After),
                        other => Err(format!("--variants: {other:?} is neither before nor after")),
                    })
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
        "bench-restart",
        "BENCH_RESTART_COMMAND",
        parse(),
        |opts| async move { run(&opts).await },
    )
}
