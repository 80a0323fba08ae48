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
    let mut f = postagent_bench::Flags::new(USAGE);
    while let Some(flag) = f.next_flag() {
        match flag.as_str() {
            "--postagent" => opts.postagent = f.path()?,
            "--messages" => opts.messages = f.number()?,
            "--restart-after" => opts.restart_after = Duration::from_secs(u64::from(f.number()?)),
            "--limit" => opts.limit = Duration::from_secs(u64::from(f.number()?)),
            "--variants" => {
                opts.variants = f
                    .value()?
                    .split(',')
                    .map(|v| match v.trim() {
                        "before" => Ok(Variant::Before),
                        "after" => Ok(Variant::After),
                        other => Err(format!("--variants: {other:?} is neither before nor after")),
                    })
                    .collect::<Result<_, _>>()?
            }
            other => f.common(other)?,
        }
    }
    Ok((opts, f.out))
}

fn main() -> ExitCode {
    postagent_bench::cli(
        "bench-restart",
        "BENCH_RESTART_COMMAND",
        parse(),
        |opts| async move { run(&opts).await },
    )
}
