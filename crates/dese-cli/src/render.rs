//! How messages and backend events look on a terminal and as JSON lines.

use dese_backend::{DeviceKey, Event, Outcome};
use dese_protocol::{Message, encode};
use serde_json::{Value, json};

/// The message as the protocol's JSON (re-encoded from the typed value, so it shows what was
/// understood, not what was sent).
pub(crate) fn message_json(message: &Message) -> Value {
    encode(message)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or(Value::Null)
}

/// One line that says what the message holds.
pub(crate) fn message_line(message: &Message) -> String {
    match message {
        Message::Telemetry(t) => {
            let s = &t.sensors;
            let mut line = format!(
                "pH {:.2}  chlorine {:.2} ppm  {:.1} °C",
                s.ph.get(),
                s.chlorine.get(),
                s.temperature.get()
            );
            if let Some(orp) = s.orp {
                line += &format!("  ORP {orp} mV");
            }
            if let Some(tds) = s.tds {
                line += &format!("  TDS {tds} ppm");
            }
            if let Some(flow) = s.flow_rate {
                line += &format!("  flow {:.1} L/min", flow.get());
            }
            line
        }
        Message::Status(s) => format!("{} (firmware {})", s.status, s.firmware_version),
        Message::Alert(a) => {
            let mut line = format!("{}: {}", a.severity, a.message);
            if let (Some(sensor), Some(value)) = (&a.sensor, a.value) {
                line += &format!(" [{sensor} = {}", value.get());
                if let Some(threshold) = a.threshold {
                    line += &format!(", threshold {}", threshold.get());
                }
                line += "]";
            }
            line
        }
        Message::Command(c) => format!("{} {}", c.command_id, compact(&message_json(message), c)),
        Message::CommandResponse(r) => {
            let verdict = if r.success { "success" } else { "failure" };
            let mut line = format!("{} {verdict}", r.command_id);
            if let Some(error) = &r.error {
                line += &format!(": {error}");
            }
            if let Some(data) = &r.response {
                line += &format!(" {}", Value::Object(data.clone()));
            }
            line
        }
        Message::Config(c) => format!("for {}: {}", c.device_id, message_json(message)["config"]),
    }
}

fn compact(json: &Value, command: &dese_protocol::Command) -> String {
    match json.get("parameters") {
        Some(parameters) => format!("{} {parameters}", command.action.name()),
        None => command.action.name().to_string(),
    }
}

fn device(key: &DeviceKey) -> String {
    format!("{}/{}", key.org, key.device)
}

/// The kind of an event, as `--kind` names it and as the JSON lines' `event` field says.
pub(crate) fn event_kind(event: &Event) -> &'static str {
    match event {
        Event::Telemetry { .. } => "telemetry",
        Event::Status { .. } => "status",
        Event::Alert { .. } => "alert",
        Event::Command { .. }
        | Event::LateResponse { .. }
        | Event::UnknownResponse { .. }
        | Event::ResponseToAnotherInstance { .. } => "command_response",
        Event::PresenceChanged { .. } | Event::PresenceCleared { .. } => "presence",
        Event::Duplicate { .. } => "duplicate",
        Event::Dropped { .. } => "invalid",
        Event::CommandRetried { .. } => "retry",
        _ => "other",
    }
}

/// The device an event concerns, when it names one.
pub(crate) fn event_device(event: &Event) -> Option<&DeviceKey> {
    match event {
        Event::Telemetry { device, .. }
        | Event::Status { device, .. }
        | Event::Alert { device, .. }
        | Event::Command { device, .. }
        | Event::LateResponse { device, .. }
        | Event::UnknownResponse { device, .. }
        | Event::ResponseToAnotherInstance { device, .. }
        | Event::PresenceChanged { device, .. }
        | Event::PresenceCleared { device }
        | Event::Duplicate { device, .. }
        | Event::CommandRetried { device, .. } => Some(device),
        _ => None,
    }
}

/// A line for the terminal.
pub(crate) fn event_line(event: &Event) -> String {
    let kind = event_kind(event);
    let who = event_device(event).map_or_else(String::new, device);
    let what = match event {
        Event::Telemetry { telemetry, .. } => message_line(&Message::Telemetry(telemetry.clone())),
        Event::Status { status, .. } => message_line(&Message::Status(status.clone())),
        Event::Alert { alert, .. } => message_line(&Message::Alert(alert.clone())),
        Event::Command {
            command_id,
            outcome,
            ..
        } => match outcome {
            Outcome::Completed(r) | Outcome::Failed(r) => {
                message_line(&Message::CommandResponse(r.clone()))
            }
            Outcome::TimedOut { attempts } => {
                format!("{command_id} timed out after {attempts} attempt(s)")
            }
        },
        Event::LateResponse { response, .. } => format!(
            "late: {}",
            message_line(&Message::CommandResponse(response.clone()))
        ),
        Event::UnknownResponse { response, .. } => {
            message_line(&Message::CommandResponse(response.clone()))
        }
        Event::ResponseToAnotherInstance {
            response, instance, ..
        } => format!(
            "{} (sent by {instance})",
            message_line(&Message::CommandResponse(response.clone()))
        ),
        Event::PresenceChanged { from, to, .. } => match from {
            Some(from) => format!("{from} -> {to}"),
            None => format!("{to}"),
        },
        Event::PresenceCleared { .. } => "removed (retained status cleared)".to_string(),
        Event::Duplicate { kind, .. } => format!("{kind} delivered again (QoS 1), not new"),
        Event::Dropped {
            topic,
            reason,
            error,
        } => {
            return format!(
                "{:<16}  {kind:<16}  {topic}: {} ({error})",
                "INVALID",
                reason.as_str()
            );
        }
        Event::CommandRetried {
            command_id,
            attempt,
            ..
        } => format!("{command_id} sent again (attempt {attempt})"),
        other => format!("{other:?}"),
    };
    format!("{who:<16}  {kind:<16}  {what}")
}

/// A JSON object for `--json`: `event`, `org`, `device`, and what the event carries.
pub(crate) fn event_json(event: &Event) -> Value {
    let mut out = json!({ "event": event_kind(event) });
    if let Some(key) = event_device(event) {
        out["org"] = json!(key.org.as_str());
        out["device"] = json!(key.device.as_str());
    }
    match event {
        Event::Telemetry { telemetry, .. } => {
            out["message"] = message_json(&Message::Telemetry(telemetry.clone()));
        }
        Event::Status { status, .. } => {
            out["message"] = message_json(&Message::Status(status.clone()));
        }
        Event::Alert { alert, .. } => out["message"] = message_json(&Message::Alert(alert.clone())),
        Event::Command {
            command_id,
            outcome,
            ..
        } => {
            out["command_id"] = json!(command_id.as_str());
            match outcome {
                Outcome::Completed(r) | Outcome::Failed(r) => {
                    out["outcome"] = json!(if r.success { "completed" } else { "failed" });
                    out["message"] = message_json(&Message::CommandResponse(r.clone()));
                }
                Outcome::TimedOut { attempts } => {
                    out["outcome"] = json!("timed_out");
                    out["attempts"] = json!(attempts);
                }
            }
        }
        Event::LateResponse { response, .. } | Event::UnknownResponse { response, .. } => {
            out["late"] = json!(matches!(event, Event::LateResponse { .. }));
            out["message"] = message_json(&Message::CommandResponse(response.clone()));
        }
        Event::ResponseToAnotherInstance {
            response, instance, ..
        } => {
            out["late"] = json!(false);
            out["sent_by"] = json!(instance);
            out["message"] = message_json(&Message::CommandResponse(response.clone()));
        }
        Event::PresenceChanged { from, to, .. } => {
            out["from"] = json!(from.map(|s| s.as_str()));
            out["to"] = json!(to.as_str());
        }
        Event::PresenceCleared { .. } => out["to"] = Value::Null,
        Event::Duplicate { kind, .. } => out["kind"] = json!(kind.as_str()),
        Event::Dropped {
            topic,
            reason,
            error,
        } => {
            out["topic"] = json!(topic);
            out["reason"] = json!(reason.as_str());
            out["error"] = json!(error.to_string());
            if let Some(invalid) = error.invalid() {
                out["path"] = json!(invalid.path.as_str());
            }
        }
        Event::CommandRetried {
            command_id,
            attempt,
            ..
        } => {
            out["command_id"] = json!(command_id.as_str());
            out["attempt"] = json!(attempt);
        }
        _ => {}
    }
    out
}
