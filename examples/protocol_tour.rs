//! A tour of the DESE protocol core: decode the protocol's own examples, see how bad input is
//! refused, and build a command. Run it with `cargo run --example protocol_tour`.

use dese::protocol::{
    Action, Command, CommandId, DeviceId, Message, MessageKind, OrgId, PumpState, ShareGroup,
    Timestamp, TopicFilter, decode, encode,
};

/// (topic, payload): one example of each message type, as the protocol document gives them.
const EXAMPLES: [(&str, &str); 6] = [
    (
        "devices/org-123/esp32-001/telemetry",
        r#"{"device_id":"esp32-001","timestamp":"2025-01-27T10:00:00Z","organization_id":"org-123",
            "sensors":{"ph":7.2,"chlorine":2.5,"temperature":25.5,"orp":650,"tds":1200,"flow_rate":45.5},
            "metadata":{"battery":85,"signal_strength":-65,"firmware_version":"1.0.0"}}"#,
    ),
    (
        "devices/org-123/esp32-001/commands",
        r#"{"command_id":"cmd-1234567890-abc","device_id":"esp32-001","command":"set_pump",
            "parameters":{"pump_id":1,"state":"on","duration":3600},"timestamp":"2025-01-27T10:00:00Z"}"#,
    ),
    (
        "devices/org-123/esp32-001/command_response",
        r#"{"command_id":"cmd-1234567890-abc","success":true,"response":{"pump_state":"on","pump_duration":3600},
            "error":null,"timestamp":"2025-01-27T10:00:05Z"}"#,
    ),
    (
        "devices/org-123/esp32-001/status",
        r#"{"status":"online","battery":85,"signal_strength":-65,"firmware_version":"1.0.0","timestamp":"2025-01-27T10:00:00Z"}"#,
    ),
    (
        "devices/org-123/esp32-001/config",
        r#"{"device_id":"esp32-001","config":{"telemetry_interval":30000,"mqtt_keepalive":60,
            "sensor_calibration":{"ph":{"offset":0.2,"scale":1.0}}},"timestamp":"2025-01-27T10:00:00Z"}"#,
    ),
    (
        "devices/org-123/esp32-001/alert",
        r#"{"severity":"warning","message":"pH level below threshold","sensor":"ph","value":6.8,"threshold":7.0,
            "timestamp":"2025-01-27T10:00:00Z"}"#,
    ),
];

/// Bad input of several kinds, each refused with the field and the reason.
const BAD: [(&str, &str); 6] = [
    (
        "devices/org-123/esp32-001/telemetry",
        r#"{"device_id":"esp32-001","timestamp":"2025-01-27T10:00:00Z","organization_id":"org-123",
            "sensors":{"ph":15.2,"chlorine":2.5,"temperature":25.5},"metadata":{"firmware_version":"1.0.0"}}"#,
    ),
    (
        "devices/org-999/esp32-001/telemetry",
        r#"{"device_id":"esp32-001","timestamp":"2025-01-27T10:00:00Z","organization_id":"org-123",
            "sensors":{"ph":7.2,"chlorine":2.5,"temperature":25.5},"metadata":{"firmware_version":"1.0.0"}}"#,
    ),
    (
        "devices/org-123/esp32-001/commands",
        r#"{"command_id":"cmd-9","device_id":"esp32-001","command":"set_pump","parameters":{"pump_id":1,"state":"maybe"},
            "timestamp":"2025-01-27T10:00:00Z"}"#,
    ),
    (
        "devices/org-123/esp32-001/status",
        r#"{"status":"online","firmware_version":"1.0.0","timestamp":"2025-01-27T12:00:00+02:00"}"#,
    ),
    (
        "devices/org-123/esp32-001/alert",
        r#"{"severity":"warning","message":"#,
    ),
    ("devices/+/esp32-001/status", r#"{}"#),
];

fn main() -> Result<(), Box<dyn core::error::Error>> {
    println!("The six message types, decoded and validated:");
    for (topic, payload) in EXAMPLES {
        let envelope = decode(topic, payload.as_bytes())?;
        let summary = match &envelope.message {
            Message::Telemetry(t) => format!(
                "pH {} chlorine {} ppm, {} °C",
                t.sensors.ph, t.sensors.chlorine, t.sensors.temperature
            ),
            Message::Command(c) => format!("{} ({:?})", c.action.name(), c.action),
            Message::CommandResponse(r) => {
                format!("{} success={}", r.command_id, r.success)
            }
            Message::Status(s) => format!(
                "{} (retained: {})",
                s.status,
                MessageKind::Status.retained()
            ),
            Message::Config(c) => match c.config.telemetry_interval {
                Some(interval) => format!("telemetry every {:?}", interval.as_duration()),
                None => "telemetry interval unchanged".to_string(),
            },
            Message::Alert(a) => format!("{}: {}", a.severity, a.message),
        };
        println!("  {:<16} {summary}", envelope.topic.kind());
    }

    println!("\nBad input is refused with the field and the reason:");
    for (topic, payload) in BAD {
        let err = decode(topic, payload.as_bytes())
            .err()
            .ok_or("expected a refusal")?;
        println!("  [{}] {err}", err.reason());
        if let Some(id) = err.command_id() {
            println!("      (the device still answers command {id} with an error response)");
        }
    }

    println!("\nBuilding a command (the types make an invalid one impossible):");
    let command = Command {
        command_id: CommandId::parse("cmd-42")?,
        device_id: DeviceId::parse("esp32-001")?,
        action: Action::SetPump {
            pump_id: 1,
            state: PumpState::On,
            duration: Some(600),
        },
        timestamp: Timestamp::parse("2025-01-27T10:00:00Z")?,
    };
    println!(
        "  {}",
        String::from_utf8(encode(&Message::Command(command))?)?
    );

    let org = OrgId::parse("org-123")?;
    let filter = TopicFilter::org(org)
        .kind(MessageKind::Telemetry)
        .shared(ShareGroup::parse("backend")?);
    println!("\nA backend group subscribes to one organization's telemetry with: {filter}");
    Ok(())
}
