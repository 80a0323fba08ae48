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
    let mut f = postagent_bench::Flags::new(USAGE);
    while let Some(flag) = f.next_flag() {
        match flag.as_str() {
            "--postagent" => opts.postagent = f.path()?,
            "--parts" => opts.parts = f.number()?,
            "--forward-bytes" => opts.forward_bytes = f.number()?,
            "--runs" => opts.runs = f.number()?,
            "--forward-counts" => {
                opts.forward_counts = f
                    .value()?
                    .split(',')
                    .map(|s| {
                        s.trim()
                            .parse::<u32>()
                            .map_err(|_| format!("--forward-counts: {s:?} is not a number"))
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
        "bench-hostile",
        "BENCH_HOSTILE_COMMAND",
        parse(),
        |opts| async move { run(&opts).await },
    )
}
