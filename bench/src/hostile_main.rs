//! `bench-hostile`: runs `postagent_bench::hostile::run` and writes the report. See bench/hostile/run.

use postagent_bench::hostile::{Opts, run};
use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: bench-hostile [--postagent PATH] [--parts N] [--forward-counts N,N] [--forward-bytes N] [--runs N] [--out FILE]";

fn parse() -> Result<(Opts, Option<PathBuf>), String> {
    let mut opts = Opts {
        postagent: PathBuf::from("target/release/postagent"),
        parts: 400_000,
        forward_counts: vec![1, 2, 4, 6, 8, 10],
        forward_bytes: 100_000,
        runs: 5,
    };
    let mut out = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value\n{USAGE}"));
        let number = |v: String| v.parse::<u32>().map_err(|_| format!("{flag}: {v:?} is not a number"));
        match flag.as_str() {
            "--postagent" => opts.postagent = PathBuf::from(value()?),
            "--parts" => opts.parts = number(value()?)?,
            "--forward-bytes" => opts.forward_bytes = number(value()?)?,
            "--runs" => opts.runs = number(value()?)?,
            "--forward-counts" => {
                opts.forward_counts = value()?
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse::<u32>()
                            .map_err(|_| format!("--forward-counts: {s:?} is not a number"))
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
        "bench-hostile",
        "BENCH_HOSTILE_COMMAND",
        parse(),
        |opts| async move { run(&opts).await },
    )
}
