//! `dese schema`: the JSON Schemas, the AsyncAPI document and the test vectors.

use std::path::PathBuf;

use dese_schema::{FileState, write};

use crate::exit::{Exit, Failure};

/// Write the JSON Schemas (one per message, one per command's parameters), the AsyncAPI 3.0
/// document and the test vectors, generated from the SDK's types, for other languages.
///
/// Files already current are left untouched. With --check nothing is written: the exit status
/// is 1 when a file differs.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  dese schema --out schemas
  dese schema --out schemas --check   # in CI: fail when the committed files are stale")]
pub(crate) struct Args {
    /// Where to write (created when missing)
    #[arg(long, value_name = "DIR", default_value = "schemas")]
    out: PathBuf,

    /// Write nothing; list the files that differ and exit 1 if any does
    #[arg(long)]
    check: bool,
}

pub(crate) fn run(args: &Args) -> Result<Exit, Failure> {
    let files = write(&args.out, args.check).map_err(|e| {
        Failure::new(
            Exit::Io,
            format!("cannot write under {}: {e}", args.out.display()),
        )
    })?;
    let (mut written, mut current, mut differ) = (0, 0, 0);
    for (path, state) in &files {
        match state {
            FileState::Current => current += 1,
            FileState::Written => {
                written += 1;
                println!("wrote   {}", path.display());
            }
            FileState::Differs => {
                differ += 1;
                println!("differs {}", path.display());
            }
        }
    }
    println!(
        "{} files under {}: {written} written, {current} already current, {differ} differ",
        files.len(),
        args.out.display()
    );
    Ok(if differ > 0 { Exit::Failed } else { Exit::Ok })
}
