//! `dese send`: one command, its response.

use std::collections::BTreeSet;

use dese_backend::{Outcome, Settings};
use dese_protocol::{Action, DeviceId, JsonObject, Message, MessageKind, OrgId, Printable, decode};
use dese_transport::{BackendClient, Transport};
use serde_json::{Value, json};

use crate::broker::{ConnectArgs, TransportKind, client_id, connected};
use crate::exit::{Exit, Failure};
use crate::render::message_json;

/// Send a command to a device and wait for its response.
///
/// The parameters are checked against the protocol before anything is sent. A value is read as
/// JSON when it is JSON (`pump_id=1`, `on=true`) and as text otherwise (`state=on`). Retries,
/// after a timeout, reuse the command id, so the device runs the command at most once.
///
/// Exit status: 0 when the device answered success, 1 when it answered failure, 3 when it did
/// not answer in time (after every retry), 4 when the broker could not be reached.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Commands and their parameters:
  set_pump             pump_id=<integer> state=on|off [duration=<seconds>]
  set_ph_target        target_ph=<0..14>
  set_chlorine_target  target_chlorine=<ppm, 0..10>
  reboot
  reset_config
  calibrate_sensor     sensor_type=ph|chlorine|temperature|orp|tds|flow_rate value=<number>

Examples:
  dese send --org acme --device pool-1 set_pump pump_id=1 state=on duration=60
  dese send --org acme --device pool-1 set_ph_target target_ph=7.2 --timeout 10 --retries 2
  dese send --org acme --device pool-1 reboot --json")]
pub(crate) struct Args {
    #[command(flatten)]
    broker: ConnectArgs,

    /// The device's organization
    #[arg(long)]
    org: OrgId,

    /// The device
    #[arg(long)]
    device: DeviceId,

    /// The command: set_pump, set_ph_target, set_chlorine_target, reboot, reset_config,
    /// calibrate_sensor
    #[arg(value_name = "COMMAND")]
    command: String,

    /// The parameters, as key=value
    #[arg(value_name = "KEY=VALUE")]
    parameters: Vec<String>,

    /// How long to wait for the response, per attempt, in seconds
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    timeout: f64,

    /// How many times to send again, with the same id, after a timeout
    #[arg(long, value_name = "N", default_value_t = 0)]
    retries: u32,

    /// Send a command this tool does not know (the device will most likely refuse it)
    #[arg(long)]
    allow_unknown: bool,

    /// Print the outcome as one JSON object
    #[arg(long)]
    json: bool,
}

pub(crate) async fn run(args: Args) -> Result<Exit, Failure> {
    match args.broker.transport {
        TransportKind::Rumqttc => send::<dese_rumqttc::Rumqttc>(args).await,
        TransportKind::Paho => send::<dese_paho::Paho>(args).await,
    }
}

async fn send<T: Transport>(args: Args) -> Result<Exit, Failure> {
    let (org, device) = (args.org.clone(), args.device.clone());
    let action = action(&args, &org, &device)?;
    let timeout = crate::broker::seconds("--timeout", args.timeout)?;
    let broker = args.broker.options()?;
    let settings = Settings {
        allowed_orgs: Some(BTreeSet::from([org.clone()])),
        command_timeout: timeout,
        retries: args.retries,
        rate_limit: None,
        instance: "cli".to_string(),
        ..Settings::default()
    };
    let mut backend =
        BackendClient::<T>::spawn_ephemeral(&broker, &client_id("send"), settings, None)?;
    connected(&backend, &broker, args.broker.connect_timeout()?).await?;
    eprintln!(
        "dese: sending {} to {org}/{device}, waiting up to {timeout:.0?}{}",
        action.name(),
        if args.retries > 0 {
            format!(" per attempt, {} attempts", args.retries + 1)
        } else {
            String::new()
        }
    );
    let handle = backend.handle();
    let wait = handle.send_command(org.clone(), device.clone(), action);
    tokio::pin!(wait);
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    // The organization's other traffic is read and let go meanwhile: a client whose events
    // nobody reads stops reading from the broker, the answer included.
    let result = loop {
        tokio::select! {
            result = &mut wait => break result,
            _ = backend.next_event() => {}
            _ = &mut interrupted => {
                return Err(Failure::new(Exit::TimedOut, "interrupted before the device answered"));
            }
        }
    };
    let (id, outcome) = result?;
    let _ = backend.shutdown().await;
    let (exit, verdict, detail) = match &outcome {
        Outcome::Completed(response) => (
            Exit::Ok,
            "completed",
            message_json(&Message::CommandResponse(response.clone())),
        ),
        Outcome::Failed(response) => (
            Exit::Failed,
            "failed",
            message_json(&Message::CommandResponse(response.clone())),
        ),
        Outcome::TimedOut { attempts } => {
            (Exit::TimedOut, "timed_out", json!({ "attempts": attempts }))
        }
    };
    // What the device wrote is escaped: it cannot forge a line or drive the terminal.
    if args.json {
        let line = json!({ "command_id": id.as_str(), "outcome": verdict, "detail": detail });
        println!("{}", Printable::json_safe(&line.to_string()));
    } else {
        match outcome {
            Outcome::Completed(r) => {
                let data = r
                    .response
                    .map_or_else(|| "{}".to_string(), |d| Value::Object(d).to_string());
                println!("completed {id}: {}", Printable(&data));
            }
            Outcome::Failed(r) => println!(
                "failed {id}: {}",
                Printable(r.error.as_deref().unwrap_or("no reason given"))
            ),
            Outcome::TimedOut { attempts } => eprintln!(
                "dese: {org}/{device} did not answer {id} in time ({attempts} attempt(s) of {timeout:.0?})"
            ),
        }
    }
    Ok(exit)
}

/// The typed command, checked exactly as the device will check it: the parameters are put in
/// a command message and decoded.
fn action(args: &Args, org: &OrgId, device: &DeviceId) -> Result<Action, Failure> {
    if !args.allow_unknown && !Action::NAMES.contains(&args.command.as_str()) {
        return Err(Failure::usage(format!(
            "unknown command {:?}: expected one of {} (or --allow-unknown)",
            args.command,
            Action::NAMES.join(", ")
        )));
    }
    let mut parameters = JsonObject::new();
    for pair in &args.parameters {
        let Some((key, value)) = pair.split_once('=') else {
            return Err(Failure::usage(format!(
                "parameter {pair:?} is not key=value"
            )));
        };
        let value = serde_json::from_str(value).unwrap_or_else(|_| Value::String(value.into()));
        if parameters.insert(key.to_string(), value).is_some() {
            return Err(Failure::usage(format!("parameter {key:?} is given twice")));
        }
    }
    let mut command = json!({
        "command_id": "dese-cli-check",
        "device_id": device.as_str(),
        "command": args.command,
        "timestamp": "2025-01-01T00:00:00Z",
    });
    if !parameters.is_empty() {
        command["parameters"] = Value::Object(parameters);
    }
    let topic = format!("devices/{org}/{device}/{}", MessageKind::Commands);
    let payload = command.to_string();
    match decode(&topic, payload.as_bytes()) {
        Ok(envelope) => match envelope.message {
            Message::Command(command) => Ok(command.action),
            _ => Err(Failure::usage("not a command")),
        },
        Err(e) => Err(Failure::usage(format!(
            "{} would be refused by the device: {e}",
            args.command
        ))),
    }
}
