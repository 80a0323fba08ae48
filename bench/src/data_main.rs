//! `bench-data`: runs `postagent_bench::data::run` and writes the report. See bench/data/run.

use postagent_bench::data::{Opts, run};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: bench-data [--postagent PATH] [--messages N] [--sqlite-only] [--out FILE]";

fn parse() -> Result<(Opts, Option<PathBuf>), String> {
    let mut opts =
        Opts { postagent: PathBuf::from("target/release/postagent"), messages: 10_000, postgres: true };
    let mut f = postagent_bench::Flags::new(USAGE);
    while let Some(flag) = f.next_flag() {
        match flag.as_str() {
            "--postagent" => opts.postagent = f.path()?,
            "--messages" => opts.messages = f.number()?.max(1),
            "--sqlite-only" => opts.postgres = false,
            other => f.common(other)?,
        }
    }
    Ok((opts, f.out))
}

fn main() -> ExitCode {
    postagent_bench::cli("bench-data", "BENCH_DATA_COMMAND", parse(), |opts| async move { run(&opts).await })
}
