//! `dese monitor`: every device message on the broker, decoded.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::time::Duration;

use dese_backend::{Event, Settings};
use dese_protocol::{Decoder, DeviceId, OrgId, Printable, ShareGroup};
use dese_transport::{BackendClient, Transport};

use crate::broker::{ConnectArgs, TransportKind, client_id, connected};
use crate::exit::{Exit, Failure};
use crate::render::{event_device, event_json, event_kind, event_line};

/// What `--kind` can select.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, clap::ValueEnum)]
enum Kind {
    /// Sensor readings
    Telemetry,
    /// Status messages, last wills included
    Status,
    /// Alerts
    Alert,
    /// Responses to commands
    #[value(name = "command_response")]
    CommandResponse,
    /// A device coming online or going offline (derived from statuses)
    Presence,
    /// Messages refused: malformed, out of range, wrong tenant, unknown topic
    Invalid,
    /// Messages delivered again (QoS 1 is at least once)
    Duplicate,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Self::Telemetry => "telemetry",
            Self::Status => "status",
            Self::Alert => "alert",
            Self::CommandResponse => "command_response",
            Self::Presence => "presence",
            Self::Invalid => "invalid",
            Self::Duplicate => "duplicate",
        }
    }
}

/// Watch a broker: print every message devices send, decoded and checked as the backend
/// would (invalid ones flagged with their error), and every presence change.
///
/// One line per event, or one JSON object per line with --json. Reads what devices publish
/// (telemetry, status, alert, command_response); commands and config, which the backend
/// publishes, are not shown. The session is clean: nothing is queued for the monitor once it
/// exits. Ends after --count messages, or on Ctrl-C, with a summary on standard error.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  dese monitor                                       # everything, local broker
  dese monitor --org acme --kind alert --kind invalid
  dese monitor --org acme --device pool-1 --json | jq .message.sensors.ph
  dese monitor --count 10 --broker mqtts://broker.example:8883 --ca ca.pem")]
pub(crate) struct Args {
    #[command(flatten)]
    broker: ConnectArgs,

    /// Only this organization (repeatable; default: every organization)
    #[arg(long = "org", value_name = "ORG")]
    orgs: Vec<OrgId>,

    /// Only this device (repeatable)
    #[arg(long = "device", value_name = "DEV")]
    devices: Vec<DeviceId>,

    /// Only these kinds of event (repeatable)
    #[arg(long = "kind", value_name = "KIND", value_enum)]
    kinds: Vec<Kind>,

    /// Exit after this many messages (telemetry, status, alert, command_response, invalid,
    /// duplicate; presence changes are not messages)
    #[arg(long, value_name = "N")]
    count: Option<u64>,

    /// One JSON object per line
    #[arg(long)]
    json: bool,

    /// Join this shared-subscription group, splitting the messages with its other members
    #[arg(long, value_name = "GROUP")]
    group: Option<ShareGroup>,

    /// Require organization ids to be UUIDs (others are shown as invalid)
    #[arg(long)]
    uuid_orgs: bool,
}

pub(crate) async fn run(args: Args) -> Result<Exit, Failure> {
    match args.broker.transport {
        TransportKind::Rumqttc => watch::<dese_rumqttc::Rumqttc>(args).await,
        TransportKind::Paho => watch::<dese_paho::Paho>(args).await,
    }
}

async fn watch<T: Transport>(args: Args) -> Result<Exit, Failure> {
    let broker = args.broker.options()?;
    let orgs: BTreeSet<OrgId> = args.orgs.iter().cloned().collect();
    let devices: BTreeSet<DeviceId> = args.devices.iter().cloned().collect();
    let group = args.group.clone();
    let kinds: BTreeSet<&str> = args.kinds.iter().map(|k| k.name()).collect();
    let settings = Settings {
        allowed_orgs: (!orgs.is_empty()).then(|| orgs.clone()),
        decoder: Decoder::new().require_uuid_orgs(args.uuid_orgs),
        // A monitor shows what arrives; it does not police rates.
        rate_limit: None,
        ..Settings::default()
    };
    let mut backend =
        BackendClient::<T>::spawn_ephemeral(&broker, &client_id("monitor"), settings, group)?;
    connected(&backend, &broker, args.broker.connect_timeout()?).await?;
    let scope = if orgs.is_empty() {
        "every organization".to_string()
    } else {
        orgs.iter()
            .map(|o| o.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    eprintln!(
        "dese: watching {scope} on {} (Ctrl-C to stop)",
        args.broker.url()
    );

    let mut seen: BTreeMap<&'static str, u64> = BTreeMap::new();
    let mut messages = 0u64;
    let mut was_connected = true;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut stdout = std::io::stdout().lock();
    loop {
        if args.count.is_some_and(|n| messages >= n) {
            break;
        }
        let event = tokio::select! {
            event = backend.next_event() => match event {
                Some(event) => event,
                None => break,
            },
            _ = tick.tick() => {
                let now = backend.is_connected();
                if now != was_connected {
                    match (now, backend.last_failure()) {
                        (true, _) => eprintln!("dese: connected again"),
                        (false, Some(why)) => eprintln!(
                            "dese: connection lost ({}); reconnecting",
                            crate::exit::chain(&why)
                        ),
                        (false, None) => eprintln!("dese: connection lost; reconnecting"),
                    }
                    was_connected = now;
                }
                continue;
            }
            _ = &mut interrupted => break,
        };
        if !selected(&event, &devices, &kinds) {
            continue;
        }
        let kind = event_kind(&event);
        *seen.entry(kind).or_default() += 1;
        if is_message(&event) {
            messages += 1;
        }
        // What devices wrote is escaped: they cannot forge a line or drive the terminal.
        let line = if args.json {
            Printable::json_safe(&event_json(&event).to_string())
        } else {
            Printable(&event_line(&event)).to_string()
        };
        // A closed pipe (`dese monitor | head`) ends the monitor quietly.
        if writeln!(stdout, "{line}").is_err() {
            break;
        }
    }
    let counters = backend.counters();
    let _ = backend.shutdown().await;
    let summary: Vec<String> = seen.iter().map(|(k, n)| format!("{k} {n}")).collect();
    eprintln!(
        "dese: {messages} message(s) shown [{}]; dropped by the decoder: {}",
        summary.join(", "),
        counters.dropped.values().sum::<u64>()
    );
    Ok(Exit::Ok)
}

fn is_message(event: &Event) -> bool {
    !matches!(
        event,
        Event::PresenceChanged { .. }
            | Event::PresenceCleared { .. }
            | Event::CommandRetried { .. }
    )
}

fn selected(event: &Event, devices: &BTreeSet<DeviceId>, kinds: &BTreeSet<&str>) -> bool {
    if !kinds.is_empty() && !kinds.contains(event_kind(event)) {
        return false;
    }
    if devices.is_empty() {
        return true;
    }
    match (event_device(event), event) {
        (Some(key), _) => devices.contains(&key.device),
        // An invalid message names its device only in its topic, when it has one.
        (None, Event::Dropped { topic, .. }) => topic
            .split('/')
            .nth(2)
            .and_then(|d| DeviceId::parse(d).ok())
            .is_some_and(|d| devices.contains(&d)),
        (None, _) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dese_protocol::MessageKind;

    #[test]
    fn kind_names_on_the_command_line_are_the_events_names() {
        use clap::ValueEnum;
        for kind in Kind::value_variants() {
            let possible = kind.to_possible_value().unwrap();
            assert_eq!(possible.get_name(), kind.name());
        }
        assert_eq!(
            MessageKind::CommandResponse.as_str(),
            Kind::CommandResponse.name()
        );
    }
}
