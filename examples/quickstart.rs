//! The DESE IoT SDK in one minute: `cargo run --example quickstart`.
//!
//! Starts an MQTT broker inside this process (rumqttd, on a free loopback port), the reference
//! backend (storing into SQLite) and three reference devices, and tells what happens: devices
//! come online, telemetry flows and is stored, a pH drift raises an alert, the backend starts
//! the acid pump and shows the correlated response, a device loses power, a command to it
//! times out, and its last will marks it offline. It ends by itself with a summary (exit 0
//! when every step happened), or keeps running with `--keep-running`, serving the live
//! dashboard (its address is printed at the start: <http://127.0.0.1:8080/> when that port is
//! free). The SDK's own log lines go to standard error: warnings by default, more with
//! `RUST_LOG=info`, JSON lines with `DESE_LOG_FORMAT=json`.
//!
//! Everything here is public API: `dese_reference_device`, `dese_reference_backend`
//! (`examples/device`, `examples/backend`), `dese_rumqttc`, and `dese_testkit` for the broker.

#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // an example runs on std

use std::collections::BTreeSet;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use dese_backend::{Event, Outcome};
use dese_protocol::{
    Action, DeviceConfig, DeviceState, Finite, Printable, Sensor, TelemetryInterval, Threshold,
};
use dese_reference_backend::dashboard::DashboardOptions;
use dese_reference_backend::{Activity, BackendOptions, ReferenceBackend};
use dese_reference_device::{DeviceOptions, ReferenceDevice};
use dese_rumqttc::{BrokerOptions, Rumqttc};
use dese_sim::water::PoolModel;
use dese_testkit::{EmbeddedBroker, Proxy};

/// Every step must have happened within this time, or the quickstart fails.
const DEADLINE: Duration = Duration::from_secs(45);

/// Where the dashboard goes when the port is free.
const DASHBOARD: &str = "127.0.0.1:8080";

fn main() -> ExitCode {
    let keep_running = std::env::args().any(|a| a == "--keep-running");
    let format = match std::env::var("DESE_LOG_FORMAT").map(|f| f.parse()) {
        Ok(Ok(format)) => format,
        Ok(Err(e)) => {
            eprintln!("DESE_LOG_FORMAT: {e}");
            return ExitCode::from(2);
        }
        Err(_) => dese_transport::logging::LogFormat::Text,
    };
    // The embedded rumqttd logs every clean disconnection as an error: not the story's.
    if let Err(e) = dese_transport::logging::init(format, "warn,rumqttd=off") {
        eprintln!("{e}");
        return ExitCode::from(2);
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(quickstart(keep_running)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nquickstart failed: {}", dese_transport::error_chain(&*e));
            ExitCode::FAILURE
        }
    }
}

/// What the story needs to see before it ends.
#[derive(Default)]
struct Steps {
    online: BTreeSet<String>,
    telemetry: BTreeSet<String>,
    alert: bool,
    pump_completed: bool,
    timed_out: bool,
    will: bool,
}

async fn quickstart(keep_running: bool) -> Result<(), Box<dyn std::error::Error>> {
    let started = Instant::now();
    // What devices wrote (alert messages, errors) is escaped: it cannot drive the terminal.
    let say = |text: String| {
        let elapsed = started.elapsed().as_secs_f64();
        println!("[{elapsed:>5.1}s] {}", Printable(&text));
    };

    let broker = EmbeddedBroker::start()?;
    say(format!(
        "broker: rumqttd running in this process on {}",
        broker.addr()
    ));
    let options = BrokerOptions::parse(&broker.url())?;

    let dir = std::env::temp_dir().join(format!("dese-quickstart-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut backend_options = BackendOptions::new(dir.join("dese.sqlite"));
    backend_options.client_id = "quickstart-backend".to_string();
    // Shortened from the protocol's 30 s, so that the timeout shows within the minute.
    backend_options.settings.command_timeout = Duration::from_secs(2);
    backend_options.pump_seconds = 30;
    // The dashboard: on 8080 when it is free, any free port otherwise (another process could
    // take 8080 between this probe and the backend's bind: then the quickstart says so).
    let addr = if std::net::TcpListener::bind(DASHBOARD).is_ok() {
        DASHBOARD
    } else {
        "127.0.0.1:0"
    };
    backend_options.dashboard = Some(DashboardOptions {
        addr: addr.parse()?,
        token: None,
    });
    backend_options.config = Some(DeviceConfig {
        alert_thresholds: Some(
            [(
                Sensor::Ph,
                Threshold {
                    min: Some(Finite::new(6.8)?),
                    max: Some(Finite::new(7.6)?),
                },
            )]
            .into(),
        ),
        ..DeviceConfig::default()
    });
    let mut backend = ReferenceBackend::spawn::<Rumqttc>(&options, backend_options)
        .await
        .map_err(|e| e.to_string())?;
    say(format!(
        "backend: storing into {}",
        dir.join("dese.sqlite").display()
    ));
    if let Some(addr) = backend.dashboard_addr() {
        say(format!(
            "dashboard: http://{addr}/ (live; add --keep-running to keep it up after the story)"
        ));
    }

    // pool-1's pH climbs fast, so that it crosses 7.6 within seconds. pool-3 connects through
    // a cable we can cut.
    let cable = Proxy::start(broker.addr())?;
    let mut devices = Vec::new();
    for (name, drift, url) in [
        ("pool-1", 3.0, broker.url()),
        ("pool-2", 0.05, broker.url()),
        ("pool-3", 0.05, cable.url()),
    ] {
        let mut device = DeviceOptions::new("acme".parse()?, name.parse()?);
        device.telemetry_interval = TelemetryInterval::new(1000)?;
        device.model = PoolModel {
            ph_drift: drift,
            ..PoolModel::default()
        };
        device.seed = devices.len() as u64 + 1;
        devices.push(ReferenceDevice::<Rumqttc>::spawn(
            &BrokerOptions::parse(&url)?,
            device,
        )?);
    }
    say("devices: acme/pool-1, acme/pool-2, acme/pool-3 started (telemetry every second)".into());

    let commander = backend.commander();
    let mut steps = Steps::default();
    let mut switched_off = false;
    let (timeout_tx, mut timeout_rx) = tokio::sync::mpsc::channel(1);
    while !(steps.pump_completed && steps.timed_out && steps.will) {
        if started.elapsed() > DEADLINE {
            return Err(format!("not every step happened within {DEADLINE:?}").into());
        }
        let activity = tokio::select! {
            activity = backend.activity() => activity.ok_or("the backend stopped")?,
            Some(line) = timeout_rx.recv() => {
                say(line);
                steps.timed_out = true;
                continue;
            }
            () = tokio::time::sleep(Duration::from_millis(200)) => continue,
        };
        match activity {
            Activity::Event(Event::PresenceChanged { device, to, .. }) => {
                let name = format!("{}/{}", device.org, device.device);
                if to == DeviceState::Online {
                    steps.online.insert(name.clone());
                    say(format!(
                        "{name} is online (its retained status reached the backend)"
                    ));
                } else {
                    say(format!(
                        "{name} is {to}: the broker published its last will"
                    ));
                    steps.will |= to == DeviceState::Offline;
                }
            }
            Activity::ConfigSent(device) => {
                say(format!(
                    "{}/{}: backend sent its thresholds: alert when pH leaves 6.8 to 7.6",
                    device.org, device.device
                ));
            }
            Activity::Event(Event::Telemetry { device, telemetry }) => {
                let name = format!("{}/{}", device.org, device.device);
                if steps.telemetry.insert(name.clone()) {
                    let stored = backend.store().summary().await?.telemetry;
                    say(format!(
                        "{name}: first telemetry, pH {:.2}, chlorine {:.2} ppm ({stored} readings stored so far)",
                        telemetry.sensors.ph.get(),
                        telemetry.sensors.chlorine.get()
                    ));
                }
            }
            Activity::Event(Event::Alert { device, alert }) if !steps.alert => {
                steps.alert = true;
                say(format!(
                    "{}/{}: ALERT {}: {}",
                    device.org, device.device, alert.severity, alert.message
                ));
            }
            Activity::Reaction { device, action, .. } => {
                say(format!(
                    "backend reacts, to {}/{}: {action}",
                    device.org, device.device
                ));
            }
            Activity::Event(Event::Command {
                device,
                command_id,
                outcome: Outcome::Completed(response),
            }) if !steps.pump_completed => {
                steps.pump_completed = true;
                let data = response
                    .response
                    .map(|d| dese_protocol::serde_json::Value::Object(d).to_string());
                say(format!(
                    "{}/{}: answered {command_id} (same id: correlated): success, {}",
                    device.org,
                    device.device,
                    data.unwrap_or_default()
                ));
            }
            _ => {}
        }
        if steps.pump_completed && !switched_off {
            switched_off = true;
            cable.cut();
            say("acme/pool-3 loses power: its connection dies without a goodbye".into());
            let commander = commander.clone();
            let tx = timeout_tx.clone();
            tokio::spawn(async move {
                let sent = commander
                    .send("acme".parse().ok()?, "pool-3".parse().ok()?, Action::Reboot)
                    .await;
                let line = match sent {
                    Ok((id, Outcome::TimedOut { attempts })) => format!(
                        "backend: reboot {id} to acme/pool-3 timed out after {attempts} attempt(s) of 2 s (shortened from 30 s)"
                    ),
                    Ok((id, other)) => {
                        format!("backend: reboot {id} ended unexpectedly: {other:?}")
                    }
                    Err(e) => format!("backend: reboot could not be sent: {e}"),
                };
                tx.send(line).await.ok()
            });
        }
    }

    if keep_running {
        let addr = backend
            .dashboard_addr()
            .map_or(String::new(), |a| format!(" at http://{a}/"));
        say(format!(
            "every step done; running on, dashboard{addr} (Ctrl-C to stop)"
        ));
        tokio::signal::ctrl_c().await?;
    }
    let pool_1 = devices[0].pool().snapshot();
    for device in devices {
        // pool-3's goodbye cannot get through the cut cable: it stays offline by its will.
        let _ = tokio::time::timeout(Duration::from_secs(2), device.shutdown()).await;
    }
    let summary = backend.store().summary().await?;
    backend.shutdown().await?;
    println!("\nSummary after {:.1} s", started.elapsed().as_secs_f64());
    println!("  devices online at some point: {}", steps.online.len());
    println!("  telemetry rows stored:        {}", summary.telemetry);
    println!(
        "  statuses stored:              {} (last wills included)",
        summary.statuses
    );
    println!("  alerts stored:                {}", summary.alerts);
    println!("  commands by outcome:          {:?}", summary.commands);
    println!(
        "  pool-1 acid pump:             {}",
        if pool_1.acid_pump { "on" } else { "off" }
    );
    println!("  messages refused:             {:?}", summary.dropped);
    println!(
        "  database:                     {}",
        dir.join("dese.sqlite").display()
    );
    println!(
        "\nNext: docs/cli.md (the dese tool), examples/device and examples/backend (run them on your broker)."
    );
    Ok(())
}
