//! `dese`: the DESE IoT protocol on the command line, the way `mosquitto_pub` and
//! `mosquitto_sub` speak MQTT. Built on the SDK's public API only.
//!
//! Run `dese --help`, or `dese <command> --help` for each command's options and examples.
//! The exit statuses are listed in [`exit::Exit`] and in the help text.
#![forbid(unsafe_code)]
// A std binary: portability to no_std is not a goal here.
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)]

mod acl;
mod broker;
mod exit;
mod monitor;
mod render;
mod schema;
mod send;
mod simulate;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use dese_transport::logging::{self, LogFormat};

use crate::exit::{Exit, Failure};

const ABOUT: &str = "Speak the DESE IoT protocol: validate messages, watch a broker, command devices, \
simulate a fleet, lock a Mosquitto down";

const AFTER_HELP: &str = "\
Examples:
  dese validate --topic devices/acme/pool-1/telemetry reading.json
  dese monitor --broker mqtt://127.0.0.1:1883 --org acme
  dese send --org acme --device pool-1 set_pump pump_id=1 state=on duration=60
  dese simulate --org acme --devices 20 --interval-ms 1000 --duration 60
  dese acl --devices registry.toml --out /etc/mosquitto/dese
  dese schema --out schemas

Exit status:
  0  done; the message is valid; the device answered success
  1  the message is invalid; the device answered failure
  2  usage error (unknown option, bad argument)
  3  the command timed out: the device did not answer
  4  the broker could not be reached or refused the connection (credentials, TLS)
  5  a file could not be read or written

The broker options of the network commands also come from the environment: DESE_BROKER,
DESE_USERNAME, DESE_PASSWORD (better than --password, which other users can see in the process
list). Docs: docs/cli.md in the repository.";

#[derive(Debug, Parser)]
#[command(name = "dese", version, about = ABOUT, after_help = AFTER_HELP)]
#[command(propagate_version = true, arg_required_else_help = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// The SDK's log lines on standard error, as text or JSON lines; RUST_LOG filters them
    /// (default: warnings and errors only)
    #[arg(long, global = true, env = "DESE_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check one message as the backend would: topic, payload, tenant
    Validate(validate::Args),
    /// Write the JSON Schemas, the AsyncAPI document and the test vectors
    Schema(schema::Args),
    /// Watch a broker: every device message decoded, invalid ones flagged, presence changes
    Monitor(monitor::Args),
    /// Send a command to a device and wait for its response
    Send(send::Args),
    /// Run simulated devices (water model, pumps, every command answered) against a broker
    Simulate(simulate::Args),
    /// Write a Mosquitto password file and ACL that confine every device to its own topics
    Acl(acl::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(e) = logging::init(cli.log_format, "warn") {
        eprintln!("dese: {e}");
        return Exit::Usage.into();
    }
    let result = match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Schema(args) => schema::run(&args),
        Command::Acl(args) => acl::run(&args),
        Command::Monitor(args) => network(|| monitor::run(args)),
        Command::Send(args) => network(|| send::run(args)),
        Command::Simulate(args) => network(|| simulate::run(args)),
    };
    match result {
        Ok(exit) => exit.into(),
        Err(failure) => {
            eprintln!("dese: {}", failure.message);
            failure.exit.into()
        }
    }
}

/// Runs a network command on a multi-threaded tokio runtime.
fn network<F>(command: impl FnOnce() -> F) -> Result<Exit, Failure>
where
    F: Future<Output = Result<Exit, Failure>>,
{
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|e| Failure::new(Exit::Io, format!("cannot start the runtime: {e}")))?;
    runtime.block_on(command())
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    // Flags that clash (two of one name or group, a `requires` naming no flag) panic only when
    // that subcommand is parsed: caught here for all of them.
    #[test]
    fn the_command_line_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
