//! `dese-reference-device`: the desktop reference device. `dese-reference-device --help` lists the options.
#![forbid(unsafe_code)]
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)]

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use dese_protocol::{DeviceId, OrgId, TelemetryInterval};
use dese_reference_device::{DeviceOptions, ReferenceDevice, describe};
use dese_rumqttc::Rumqttc;
use dese_sim::water::PoolModel;
use dese_transport::cli::BrokerArgs;
use dese_transport::error_chain;
use dese_transport::logging::{self, LogFormat};

/// The DESE reference device: a simulated pool (pH, chlorine, temperature, ORP, TDS, flow, two
/// dosing pumps) on a real broker, answering all six commands.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "\
Examples:
  dese-reference-device --org acme --device pool-1
  dese-reference-device --broker mqtts://broker.example:8883 --ca ca.pem --username acme/pool-1 \\
      --org acme --device pool-1 --interval-ms 5000"
)]
struct Args {
    #[command(flatten)]
    broker: BrokerArgs,
    /// The organization
    #[arg(long)]
    org: OrgId,
    /// The device id
    #[arg(long)]
    device: DeviceId,
    /// Telemetry period in milliseconds, until a config message changes it
    #[arg(long, default_value_t = 30_000)]
    interval_ms: i64,
    /// How fast the pH rises by itself, per minute (0.05 by default; raise it to see alerts)
    #[arg(long)]
    ph_drift: Option<f64>,
    /// Seeds the probes' noise
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The SDK's log lines on standard error, as text or JSON lines; RUST_LOG filters them
    /// (default info)
    #[arg(long, env = "DESE_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Err(e) = logging::init(args.log_format, "info") {
        eprintln!("dese-device: {e}");
        return ExitCode::from(2);
    }
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(run(args)),
        Err(e) => {
            eprintln!("dese-device: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> ExitCode {
    let fail = |message: String| {
        eprintln!("dese-device: {message}");
        ExitCode::from(2)
    };
    let broker = match args.broker.options() {
        Ok(broker) => broker,
        Err(e) => return fail(error_chain(&e)),
    };
    let (org, device) = (args.org.clone(), args.device.clone());
    let mut options = DeviceOptions::new(org.clone(), device.clone());
    options.seed = args.seed;
    options.telemetry_interval = match TelemetryInterval::new(args.interval_ms) {
        Ok(i) => i,
        Err(e) => return fail(format!("--interval-ms: {e}")),
    };
    if let Some(drift) = args.ph_drift {
        options.model = PoolModel {
            ph_drift: drift,
            ..PoolModel::default()
        };
    }
    let mut device_run = match ReferenceDevice::<Rumqttc>::spawn(&broker, options) {
        Ok(d) => d,
        Err(e) => return fail(error_chain(&e)),
    };
    println!(
        "{org}/{device}: running against {} (Ctrl-C to stop)",
        args.broker.broker
    );
    let mut report = tokio::time::interval(Duration::from_secs(30));
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            event = device_run.next_event() => match event {
                Some(event) => println!("{org}/{device}: {}", describe(&event)),
                None => {
                    eprintln!("dese-device: the broker refused this device for good (credentials or TLS)");
                    return ExitCode::from(4);
                }
            },
            _ = report.tick() => {
                let s = device_run.stats();
                let w = device_run.pool().snapshot();
                println!(
                    "{org}/{device}: pH {:.2}, chlorine {:.2} ppm, acid pump {}, chlorine pump {}; \
                     {} telemetry, {} acknowledged, {} waiting, {} dropped, {} commands",
                    w.ph, w.chlorine, on(w.acid_pump), on(w.chlorine_pump),
                    s.telemetry, s.delivered, s.pending, s.telemetry_dropped + s.other_dropped, s.commands_run
                );
            }
            _ = &mut stop => break,
        }
    }
    match device_run.shutdown().await {
        Ok(s) => {
            println!(
                "{org}/{device}: said goodbye (retained offline status); {} acknowledged, \
                 {} not delivered",
                s.delivered, s.pending
            );
            ExitCode::SUCCESS
        }
        Err(e) => fail(format!("goodbye failed: {}", error_chain(&e))),
    }
}

fn on(yes: bool) -> &'static str {
    if yes { "on" } else { "off" }
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    // Flags that clash (two of one name, a `requires` naming no flag) panic only when parsed:
    // caught here rather than by the first user.
    #[test]
    fn the_command_line_is_consistent() {
        super::Args::command().debug_assert();
    }
}
