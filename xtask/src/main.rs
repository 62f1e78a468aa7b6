//! Repository chores. `cargo xtask schema` writes the JSON Schemas, the AsyncAPI document and
//! the test vectors under `schemas/`, generated from the dese-protocol types; `--check` only
//! reports the files that differ (the drift test in dese-protocol does the same in CI).

use std::path::PathBuf;
use std::process::ExitCode;

use dese_protocol::schema::FileState;

const USAGE: &str = "usage: cargo xtask schema [--check] [--out DIR]";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("schema") => schema(&args[1..]),
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
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
    let written = match dese_protocol::schema::write(&out, check) {
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
