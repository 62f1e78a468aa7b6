//! `dese-reference-backend`: the reference backend. `dese-reference-backend --help` lists the options.
#![forbid(unsafe_code)]
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)]

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use dese_backend::{Event, Outcome};
use dese_paho::Paho;
use dese_protocol::{
    DeviceConfig, Finite, MessageKind, OrgId, Printable, Sensor, ShareGroup, Threshold,
};
use dese_reference_backend::dashboard::DashboardOptions;
use dese_reference_backend::{Activity, BackendOptions, Database, ReferenceBackend, prometheus};
use dese_rumqttc::Rumqttc;
use dese_transport::cli::BrokerArgs;
use dese_transport::error_chain;
use dese_transport::logging::{self, LogFormat};

/// The DESE reference backend: every device message into SQLite, presence, thresholds sent to
/// devices as they come online, pumps started in reaction to alerts.
#[derive(Debug, Parser)]
#[command(
    version,
    after_help = "\
Examples:
  dese-reference-backend --db dese.sqlite
  sqlite3 dese.sqlite 'SELECT device, ph, chlorine FROM telemetry ORDER BY timestamp DESC LIMIT 5'

  # The live dashboard on http://127.0.0.1:8080/ and Prometheus metrics on :9464/metrics.
  dese-reference-backend --ui --metrics
  RUST_LOG=dese_transport=debug,info dese-reference-backend --log-format json

  # Three instances in one group, on one PostgreSQL database: telemetry and alerts split
  # between them, presence and command answers on each, every reading stored once.
  export DESE_DB=postgres://dese@db.internal/dese
  dese-reference-backend --group backends --client-id backend-a
  dese-reference-backend --group backends --client-id backend-b --no-config
  dese-reference-backend --group backends --client-id backend-c --no-config"
)]
struct Args {
    #[command(flatten)]
    broker: BrokerArgs,
    /// The database: a SQLite file (created when missing), or a PostgreSQL server,
    /// postgres://USER[:PASSWORD]@HOST[:PORT]/DATABASE (the schema is made on first use)
    #[arg(long, env = "DESE_DB", default_value = "dese.sqlite")]
    db: String,
    /// The MQTT client id; keep it across restarts so that the broker keeps the session
    #[arg(long, default_value = "dese-reference-backend")]
    client_id: String,
    /// The name this instance gives itself in its command ids, so that the instances of a
    /// group tell their answers apart (default: the client id)
    #[arg(long)]
    instance: Option<String>,
    /// Join this shared-subscription group, to split the load with other instances
    #[arg(long)]
    group: Option<ShareGroup>,
    /// Serve only this organization (repeatable; default: every organization)
    #[arg(long = "org")]
    orgs: Vec<OrgId>,
    /// How long a command waits for its response, seconds
    #[arg(long, default_value_t = 30.0)]
    command_timeout: f64,
    /// The pH range sent to devices as alert thresholds, MIN:MAX
    #[arg(long, default_value = "6.8:7.8")]
    ph_range: String,
    /// Send no thresholds to devices (in a group, every instance sees each device come online:
    /// let one of them send)
    #[arg(long)]
    no_config: bool,
    /// Do not start pumps in reaction to alerts
    #[arg(long)]
    no_react: bool,
    /// The most events one database transaction stores
    #[arg(long, default_value_t = 2048)]
    batch_max: usize,
    /// How long a batch waits for more events once none is waiting, milliseconds
    #[arg(long, default_value_t = 0)]
    batch_linger_ms: u64,
    /// How many events may wait for their database commit; reading from the broker stops
    /// there, and the broker keeps the rest. With --transport paho, also the most a crash can
    /// lose
    #[arg(long, default_value_t = 4096)]
    receive_window: usize,
    /// The MQTT client library
    #[arg(long, value_enum, default_value_t = TransportKind::Rumqttc)]
    transport: TransportKind,
    /// Serve the live dashboard on this address (given alone: 127.0.0.1:8080). Any address
    /// but loopback needs --ui-token
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:8080")]
    ui: Option<SocketAddr>,
    /// The token the dashboard asks for (?token=... in its address), at least 16 characters
    #[arg(long, env = "DESE_UI_TOKEN", hide_env_values = true, requires = "ui")]
    ui_token: Option<String>,
    /// Serve Prometheus metrics on http://ADDR/metrics (given alone: 127.0.0.1:9464)
    #[arg(long, value_name = "ADDR", num_args = 0..=1, default_missing_value = "127.0.0.1:9464")]
    metrics: Option<SocketAddr>,
    /// Log lines on standard error as text or as JSON lines; RUST_LOG filters them (default
    /// info)
    #[arg(long, env = "DESE_LOG_FORMAT", default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

/// Which MQTT client library carries the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TransportKind {
    /// rumqttc: pure Rust; acknowledges a message to the broker after its database commit
    Rumqttc,
    /// paho-mqtt: the Eclipse Paho C library, which acknowledges on receipt: a crash may lose
    /// up to --receive-window messages
    Paho,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime.block_on(run(args)),
        Err(e) => {
            eprintln!("dese-backend: cannot start the runtime: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: Args) -> ExitCode {
    if let Err(e) = logging::init(args.log_format, "info") {
        eprintln!("dese-backend: {e}");
        return ExitCode::from(2);
    }
    let options = match options(&args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("dese-backend: {e}");
            return ExitCode::from(2);
        }
    };
    let broker = match args.broker.options() {
        Ok(b) => b,
        Err(e) => {
            eprintln!("dese-backend: {e}");
            return ExitCode::from(2);
        }
    };
    let db = options.db.to_string();
    // Before the clients start: they take their metric handles then.
    let metrics = match args
        .metrics
        .map(|addr| prometheus::install().map(|h| (addr, h)))
    {
        Some(Ok((addr, handle))) => match prometheus::serve(addr, handle).await {
            Ok((bound, task)) => {
                println!("dese-backend: metrics on http://{bound}/metrics");
                Some(task)
            }
            Err(e) => {
                eprintln!("dese-backend: the metrics endpoint cannot listen on {addr}: {e}");
                return ExitCode::from(4);
            }
        },
        Some(Err(e)) => {
            eprintln!("dese-backend: {e}");
            return ExitCode::from(4);
        }
        None => None,
    };
    let spawned = match args.transport {
        TransportKind::Rumqttc => ReferenceBackend::spawn::<Rumqttc>(&broker, options).await,
        TransportKind::Paho => ReferenceBackend::spawn::<Paho>(&broker, options).await,
    };
    let mut backend = match spawned {
        Ok(b) => b,
        Err(e) => {
            eprintln!("dese-backend: {}", error_chain(&*e));
            return ExitCode::from(4);
        }
    };
    if let Some(addr) = backend.dashboard_addr() {
        let token = args
            .ui_token
            .as_ref()
            .map_or(String::new(), |_| "?token=<your token>".to_string());
        println!("dese-backend: dashboard on http://{addr}/{token}");
    }
    println!(
        "dese-backend: storing into {db} from {} (Ctrl-C to stop)",
        args.broker.broker
    );
    let stop = tokio::signal::ctrl_c();
    tokio::pin!(stop);
    loop {
        tokio::select! {
            activity = backend.activity() => match activity {
                Some(activity) => log(&activity),
                None => break,
            },
            _ = &mut stop => break,
        }
    }
    let summary = backend.store().summary().await;
    // What this instance took: in a group, its share.
    if let Ok(counters) = backend.counters().await {
        let of = |kind| counters.accepted.get(&kind).copied().unwrap_or(0);
        println!(
            "dese-backend: this instance received {} telemetry, {} statuses, {} alerts, {} command responses; {} duplicates, {} answers to other instances",
            of(MessageKind::Telemetry),
            of(MessageKind::Status),
            of(MessageKind::Alert),
            of(MessageKind::CommandResponse),
            counters.duplicates.values().sum::<u64>(),
            counters.responses_to_other_instances
        );
    }
    let ended = backend.shutdown().await;
    if let Some(metrics) = metrics {
        metrics.abort();
    }
    match summary {
        Ok(s) => println!(
            "dese-backend: stored {} telemetry, {} statuses, {} alerts; commands {:?}; presence {:?}; refused {:?}",
            s.telemetry, s.statuses, s.alerts, s.commands, s.presence, s.dropped
        ),
        Err(e) => eprintln!("dese-backend: cannot read the database: {e}"),
    }
    match ended {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dese-backend: {}", error_chain(&e));
            ExitCode::from(4)
        }
    }
}

/// One line of the log per activity. Device text (ids, alert messages, errors) is escaped: a
/// device cannot forge a line or drive the terminal.
fn log(activity: &Activity) {
    let say = |line: String| println!("{}", Printable(&line));
    match activity {
        Activity::Event(Event::PresenceChanged { device, from, to }) => {
            say(format!(
                "{}/{}: {} -> {to}",
                device.org,
                device.device,
                from.map_or("unknown".to_string(), |f| f.to_string())
            ));
        }
        Activity::Event(Event::Alert { device, alert }) => {
            say(format!(
                "{}/{}: alert {}: {}",
                device.org, device.device, alert.severity, alert.message
            ));
        }
        Activity::Event(Event::Command {
            device,
            command_id,
            outcome,
        }) => {
            let what = match outcome {
                Outcome::Completed(_) => "completed".to_string(),
                Outcome::Failed(r) => {
                    format!("failed: {}", r.error.as_deref().unwrap_or("no reason"))
                }
                Outcome::TimedOut { attempts } => format!("timed out after {attempts} attempt(s)"),
            };
            say(format!(
                "{}/{}: command {command_id} {what}",
                device.org, device.device
            ));
        }
        Activity::Event(Event::LateResponse { device, response }) => {
            say(format!(
                "{}/{}: late response to {}",
                device.org, device.device, response.command_id
            ));
        }
        Activity::Reaction {
            device,
            action,
            because,
        } => {
            say(format!(
                "{}/{}: sending {} because {because}",
                device.org,
                device.device,
                action.name()
            ));
        }
        Activity::ConfigSent(device) => {
            say(format!("{}/{}: thresholds sent", device.org, device.device))
        }
        // Said loudly by the backend itself, with each retry.
        Activity::StoreFailed { .. } => {}
        _ => {}
    }
}

fn options(args: &Args) -> Result<BackendOptions, String> {
    let mut options = BackendOptions::new(Database::parse(&args.db));
    options.client_id = args.client_id.clone();
    let instance = args
        .instance
        .clone()
        .unwrap_or_else(|| args.client_id.clone());
    // Every command id carries it: refused now rather than at the first command.
    dese_protocol::CommandId::parse(&format!("cmd-{instance}-1737972000000-1")).map_err(|e| {
        format!("--instance {instance:?} (or the client id) cannot go into a command id: {e}")
    })?;
    options.settings.instance = instance;
    options.group = args.group.clone();
    if !args.orgs.is_empty() {
        options.settings.allowed_orgs = Some(args.orgs.iter().cloned().collect());
    }
    options.settings.command_timeout = Duration::try_from_secs_f64(args.command_timeout)
        .map_err(|_| "--command-timeout must be a number of seconds".to_string())?;
    options.react_to_alerts = !args.no_react;
    if args.batch_max == 0 {
        return Err("--batch-max must be at least 1".to_string());
    }
    if args.receive_window == 0 {
        return Err("--receive-window must be at least 1".to_string());
    }
    options.batch_max = args.batch_max;
    if let Some(addr) = args.ui {
        let dashboard = DashboardOptions {
            addr,
            token: args.ui_token.clone(),
        };
        dashboard.check().map_err(|e| format!("--ui: {e}"))?;
        options.dashboard = Some(dashboard);
    }
    options.batch_linger = Duration::from_millis(args.batch_linger_ms);
    options.settings.receive_window = args.receive_window;
    // Named by the flag that set it: `setting command_timeout: ...` says which number was absurd.
    options
        .settings
        .check()
        .map_err(|e| format!("{e} (from the command line)"))?;
    if !args.no_config {
        let (min, max) = args
            .ph_range
            .split_once(':')
            .and_then(|(a, b)| Some((a.parse().ok()?, b.parse().ok()?)))
            .ok_or("--ph-range must be MIN:MAX, such as 6.8:7.8")?;
        let bound = |v: f64| Finite::new(v).map_err(|e| format!("--ph-range: {e}"));
        let threshold = Threshold {
            min: Some(bound(min)?),
            max: Some(bound(max)?),
        };
        options.config = Some(DeviceConfig {
            alert_thresholds: Some(BTreeMap::from([(Sensor::Ph, threshold)])),
            ..DeviceConfig::default()
        });
    }
    Ok(options)
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
