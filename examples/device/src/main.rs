//! `dese-reference-device`: the desktop reference device. `dese-reference-device --help` lists the options.
#![forbid(unsafe_code)]
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use dese_protocol::{DeviceId, OrgId, TelemetryInterval};
use dese_reference_device::{DeviceOptions, ReferenceDevice, describe};
use dese_rumqttc::{BrokerOptions, Rumqttc};
use dese_sim::water::PoolModel;
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
    /// The broker: mqtt://HOST:PORT or mqtts://HOST:PORT
    #[arg(long, env = "DESE_BROKER", default_value = "mqtt://127.0.0.1:1883")]
    broker: String,
    /// The username
    #[arg(long, env = "DESE_USERNAME", requires = "password")]
    username: Option<String>,
    /// The password (prefer the environment variable)
    #[arg(
        long,
        env = "DESE_PASSWORD",
        hide_env_values = true,
        requires = "username"
    )]
    password: Option<String>,
    /// The broker's CA, PEM (mqtts://)
    #[arg(long)]
    ca: Option<PathBuf>,
    /// A client certificate, PEM (with --client-key)
    #[arg(long, requires_all = ["client_key", "ca"])]
    client_cert: Option<PathBuf>,
    /// The client certificate's key, PEM
    #[arg(long, requires = "client_cert")]
    client_key: Option<PathBuf>,
    /// The organization
    #[arg(long)]
    org: String,
    /// The device id
    #[arg(long)]
    device: String,
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
    let broker = match BrokerOptions::from_parts(
        &args.broker,
        args.username.as_deref().zip(args.password.as_deref()),
        args.ca.as_deref(),
        args.client_cert.as_deref().zip(args.client_key.as_deref()),
    ) {
        Ok(broker) => broker,
        Err(e) => return fail(e.to_string()),
    };
    let (org, device) = match (OrgId::parse(&args.org), DeviceId::parse(&args.device)) {
        (Ok(org), Ok(device)) => (org, device),
        (Err(e), _) => return fail(format!("--org: {e}")),
        (_, Err(e)) => return fail(format!("--device: {e}")),
    };
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
        Err(e) => return fail(e.to_string()),
    };
    println!(
        "{org}/{device}: running against {} (Ctrl-C to stop)",
        args.broker
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
        Err(e) => fail(format!("goodbye failed: {e}")),
    }
}

fn on(yes: bool) -> &'static str {
    if yes { "on" } else { "off" }
}
