//! Repository chores. `cargo xtask schema` writes the JSON Schemas, the AsyncAPI document and
//! the test vectors under `schemas/`, generated from the dese-protocol types; `--check` only
//! reports the files that differ (the drift test in dese-protocol does the same in CI).
//! `cargo xtask near-valid [--count N] [--seed S]` prints payloads a change or two away from a
//! valid vector with the Rust decoder's verdict, for the validators in other languages.

mod near_valid;

use std::path::PathBuf;
use std::process::ExitCode;

use dese_schema::FileState;

const USAGE: &str = "usage: cargo xtask schema [--check] [--out DIR] | cargo xtask near-valid [--count N] [--seed S]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("schema") => schema(&args[1..]),
        Some("near-valid") => near_valid(&args[1..]),
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn near_valid(args: &[String]) -> ExitCode {
    let (mut count, mut seed) = (2000usize, 1u64);
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let value = args.next().and_then(|v| v.parse::<u64>().ok());
        match (arg.as_str(), value) {
            ("--count", Some(n)) => count = usize::try_from(n).unwrap_or(usize::MAX),
            ("--seed", Some(n)) => seed = n,
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    match near_valid::print(count, seed) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cannot print the cases: {e}");
            ExitCode::FAILURE
        }
    }
}

fn schema(args: &[String]) -> ExitCode {
    // `cargo run` sets it when the tool runs; the compile-time value is only a fallback, as a
    // target directory shared between clones reuses this binary from another clone.
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), Into::into);
    let manifest = manifest.as_path();
    let root = manifest.parent().unwrap_or(manifest);
    let mut out = root.join("schemas");
    let mut check = false;
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--check" => check = true,
            "--out" => match args.next() {
                Some(dir) => out = PathBuf::from(dir),
                None => {
                    eprintln!("{USAGE}");
                    return ExitCode::from(2);
                }
            },
            _ => {
                eprintln!("{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let written = match dese_schema::write(&out, check) {
        Ok(written) => written,
        Err(e) => {
            eprintln!("cannot write under {}: {e}", out.display());
            return ExitCode::FAILURE;
        }
    };
    let mut stale = 0;
    for (path, state) in written {
        match state {
            FileState::Current => {}
            FileState::Written => println!("wrote {}", path.display()),
            FileState::Differs => {
                stale += 1;
                println!("differs: {}", path.display());
            }
        }
    }
    if check && stale > 0 {
        println!("{stale} file(s) differ from the code: run `cargo xtask schema`");
        return ExitCode::FAILURE;
    }
    ExitCode::SUCCESS
}
