//! What the dashboard shows, kept up to date from the backend's stored events: bounded, and
//! told to every open page as it changes.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use dese_backend::{DeviceKey, Event, Outcome};
use dese_protocol::{CommandId, DeviceState};
use serde_json::{Value, json};
use tokio::sync::broadcast;

/// Readings kept per device for its charts.
pub(crate) const HISTORY: usize = 120;
/// Alerts and commands kept for their logs.
pub(crate) const LOG: usize = 200;
/// Devices the view keeps; past it, the one heard from longest ago makes room. (The engine
/// tracks up to 100,000; a page of more than this would not help anyone at 3 a.m.)
pub(crate) const DEVICES: usize = 10_000;
/// Changes an open page may fall behind by before its stream is closed (the browser then
/// reconnects and loads the whole view again).
const UPDATES: usize = 4096;

/// The whole view at one moment, for a page that loads it.
#[derive(Debug)]
pub(crate) struct Snapshot {
    instance: String,
    connected: bool,
    devices: Vec<(DeviceKey, DeviceView)>,
    alerts: Vec<Value>,
    commands: Vec<CommandView>,
    refused: BTreeMap<&'static str, u64>,
}

impl Snapshot {
    /// The JSON of `GET /api/state`: devices by key, with their history.
    pub(crate) fn into_json(mut self) -> String {
        self.devices.sort_by(|a, b| a.0.cmp(&b.0));
        json!({
            "instance": self.instance,
            "connected": self.connected,
            "devices": self.devices.iter().map(|(key, view)| view.json(key, true)).collect::<Vec<_>>(),
            "alerts": self.alerts,
            "commands": self.commands.iter().map(CommandView::json).collect::<Vec<_>>(),
            "refused": self.refused,
        })
        .to_string()
    }
}

/// What the dashboard shows of a text a device sent (a topic, an error): its start.
const SHOWN_TEXT: usize = 300;

/// `text` cut at a character boundary to at most [`SHOWN_TEXT`] bytes, marked when cut.
fn shortened(text: &str) -> String {
    dese_protocol::shortened(text, SHOWN_TEXT)
}

/// One change, for the pages: an SSE event name and its JSON data.
#[derive(Debug, Clone)]
pub(crate) struct Update {
    pub(crate) event: &'static str,
    pub(crate) data: String,
}

/// The live view of one backend instance.
#[derive(Debug)]
pub struct LiveView {
    instance: String,
    state: Mutex<State>,
    updates: broadcast::Sender<Update>,
}

#[derive(Debug, Default)]
struct State {
    connected: bool,
    devices: HashMap<DeviceKey, DeviceView>,
    alerts: VecDeque<Value>,
    commands: VecDeque<CommandView>,
    refused: BTreeMap<&'static str, u64>,
}

#[derive(Debug, Default, Clone)]
struct DeviceView {
    state: Option<DeviceState>,
    firmware: Option<String>,
    last_heard: Option<i64>,
    /// The latest reading: its timestamp as sent, and its values.
    latest: Option<(String, Value)>,
    history: VecDeque<Point>,
}

#[derive(Debug, Clone, Copy)]
struct Point {
    t: i64,
    ph: f32,
    chlorine: f32,
    temperature: f32,
}

#[derive(Debug, Clone)]
struct CommandView {
    id: String,
    key: String,
    command: String,
    outcome: &'static str,
    detail: Option<String>,
    at: i64,
}

impl CommandView {
    fn json(&self) -> Value {
        json!({
            "id": self.id,
            "key": self.key,
            "command": self.command,
            "outcome": self.outcome,
            "detail": self.detail,
            "at": self.at,
        })
    }
}

/// A value kept as `f32` (half the memory of a long history), shown to four decimals rather
/// than with the digits the conversion back to `f64` invents.
fn shown(value: f32) -> f64 {
    (f64::from(value) * 1e4).round() / 1e4
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl DeviceView {
    fn json(&self, key: &DeviceKey, with_history: bool) -> Value {
        let mut value = json!({
            "key": key.to_string(),
            "org": key.org.as_str(),
            "device": key.device.as_str(),
            "state": self.state.map(DeviceState::as_str),
            "firmware": self.firmware,
            "last_heard": self.last_heard,
            "latest": self.latest.as_ref().map(|(timestamp, readings)| json!({
                "timestamp": timestamp,
                "readings": readings,
            })),
        });
        if with_history {
            value["history"] = self
                .history
                .iter()
                .map(|p| {
                    json!({
                        "t": p.t,
                        "ph": shown(p.ph),
                        "chlorine": shown(p.chlorine),
                        "temperature": shown(p.temperature),
                    })
                })
                .collect();
        }
        value
    }
}

impl LiveView {
    /// An empty view of the instance named `instance`.
    pub fn new(instance: impl Into<String>) -> Self {
        Self {
            instance: instance.into(),
            state: Mutex::new(State::default()),
            updates: broadcast::channel(UPDATES).0,
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn tell(&self, event: &'static str, data: &Value) {
        // Nobody watching is fine.
        let _ = self.updates.send(Update {
            event,
            data: data.to_string(),
        });
    }

    pub(crate) fn subscribe(&self) -> broadcast::Receiver<Update> {
        self.updates.subscribe()
    }

    /// Everything, for a page that opens (or reopens) its stream.
    /// A copy of everything, taken under the lock and turned into JSON after it
    /// ([`Snapshot::into_json`]).
    pub(crate) fn snapshot(&self) -> Snapshot {
        let state = self.state();
        Snapshot {
            instance: self.instance.clone(),
            connected: state.connected,
            devices: state
                .devices
                .iter()
                .map(|(key, view)| (key.clone(), view.clone()))
                .collect(),
            alerts: state.alerts.iter().cloned().collect(),
            commands: state.commands.iter().cloned().collect(),
            refused: state.refused.clone(),
        }
    }

    /// Whether the backend is connected to the broker.
    pub(crate) fn set_connected(&self, connected: bool) {
        let mut state = self.state();
        if state.connected != connected {
            state.connected = connected;
            drop(state);
            self.tell("connection", &json!({ "connected": connected }));
        }
    }

    /// A command this instance sent: the dashboard's, or a reaction to an alert.
    pub(crate) fn command_sent(&self, id: &CommandId, device: &DeviceKey, command: &str) {
        let view = CommandView {
            id: id.as_str().to_string(),
            key: device.to_string(),
            command: command.to_string(),
            outcome: "sent",
            detail: None,
            at: now_ms(),
        };
        let mut state = self.state();
        // The outcome may have come first (an answer faster than this call).
        if state.commands.iter().any(|c| c.id == view.id) {
            return;
        }
        if state.commands.len() == LOG {
            state.commands.pop_front();
        }
        state.commands.push_back(view.clone());
        drop(state);
        self.tell("command", &view.json());
    }

    /// A stored event of the engine (`new`: not a copy stored before).
    pub(crate) fn record(&self, event: &Event, new: bool) {
        match event {
            Event::Telemetry { device, telemetry } if new => {
                let t = now_ms();
                let readings = serde_json::to_value(&telemetry.sensors).unwrap_or(Value::Null);
                let timestamp = telemetry.timestamp.to_string();
                let point = Point {
                    t,
                    ph: telemetry.sensors.ph.get() as f32,
                    chlorine: telemetry.sensors.chlorine.get() as f32,
                    temperature: telemetry.sensors.temperature.get() as f32,
                };
                self.with_device(device, |view| {
                    view.last_heard = Some(t);
                    if view.firmware.is_none() {
                        view.firmware = Some(telemetry.metadata.firmware_version.clone());
                    }
                    view.latest = Some((timestamp.clone(), readings.clone()));
                    if view.history.len() == HISTORY {
                        view.history.pop_front();
                    }
                    view.history.push_back(point);
                });
                self.tell(
                    "reading",
                    &json!({
                        "key": device.to_string(),
                        "t": t,
                        "timestamp": timestamp,
                        "readings": readings,
                    }),
                );
            }
            Event::Status { device, status } => {
                let data = self.with_device(device, |view| {
                    view.last_heard = Some(now_ms());
                    view.firmware = Some(status.firmware_version.clone());
                });
                self.tell("device", &data);
            }
            Event::PresenceChanged { device, to, .. } => {
                let data = self.with_device(device, |view| {
                    view.state = Some(*to);
                    view.last_heard = Some(now_ms());
                });
                self.tell("device", &data);
            }
            Event::PresenceCleared { device } => {
                let data = self.with_device(device, |view| view.state = None);
                self.tell("device", &data);
            }
            Event::Alert { device, alert } if new => {
                let data = json!({
                    "at": now_ms(),
                    "key": device.to_string(),
                    "severity": alert.severity.as_str(),
                    "message": shortened(&alert.message),
                    "sensor": alert.sensor.as_ref().map(|s| s.as_str()),
                    "value": alert.value.map(|v| v.get()),
                });
                self.with_device(device, |view| view.last_heard = Some(now_ms()));
                {
                    let mut state = self.state();
                    if state.alerts.len() == LOG {
                        state.alerts.pop_front();
                    }
                    state.alerts.push_back(data.clone());
                }
                self.tell("alert", &data);
            }
            Event::Command {
                device,
                command_id,
                outcome,
            } => {
                let (outcome, detail) = match outcome {
                    Outcome::Completed(_) => ("completed", None),
                    Outcome::Failed(response) => (
                        "failed",
                        Some(
                            response
                                .error
                                .clone()
                                .unwrap_or_else(|| "no reason given".into()),
                        ),
                    ),
                    Outcome::TimedOut { attempts } => {
                        ("timed_out", Some(format!("after {attempts} attempt(s)")))
                    }
                };
                self.finish(device, command_id.as_str(), outcome, detail);
            }
            Event::LateResponse { device, response } => {
                let detail = if response.success {
                    "answered after the timeout: the device ran it".to_string()
                } else {
                    format!(
                        "answered after the timeout: {}",
                        response.error.as_deref().unwrap_or("failed")
                    )
                };
                self.finish(device, response.command_id.as_str(), "late", Some(detail));
            }
            Event::Dropped {
                topic,
                reason,
                error,
            } => {
                let reason = reason.as_str();
                let count = {
                    let mut state = self.state();
                    let count = state.refused.entry(reason).or_default();
                    *count += 1;
                    *count
                };
                self.tell(
                    "refused",
                    &json!({
                        "reason": reason,
                        "count": count,
                        "topic": shortened(topic),
                        "error": shortened(&error.to_string()),
                    }),
                );
            }
            _ => {}
        }
    }

    /// A command's end (or its late answer).
    fn finish(&self, device: &DeviceKey, id: &str, outcome: &'static str, detail: Option<String>) {
        let view = {
            let mut state = self.state();
            match state.commands.iter_mut().find(|c| c.id == id) {
                Some(known) => {
                    known.outcome = outcome;
                    known.detail = detail;
                    known.clone()
                }
                None => {
                    // Sent before this view existed (a previous run), or by another path.
                    let view = CommandView {
                        id: id.to_string(),
                        key: device.to_string(),
                        command: "command".to_string(),
                        outcome,
                        detail,
                        at: now_ms(),
                    };
                    if state.commands.len() == LOG {
                        state.commands.pop_front();
                    }
                    state.commands.push_back(view.clone());
                    view
                }
            }
        };
        self.tell("command", &view.json());
    }

    /// Changes a device's view (made when new; the longest silent one makes room when full),
    /// and returns it without its history, for a `device` update.
    fn with_device(&self, device: &DeviceKey, change: impl FnOnce(&mut DeviceView)) -> Value {
        let mut state = self.state();
        if !state.devices.contains_key(device) && state.devices.len() >= DEVICES {
            let silent = state
                .devices
                .iter()
                .min_by_key(|(_, view)| view.last_heard.unwrap_or(i64::MIN))
                .map(|(key, _)| key.clone());
            if let Some(silent) = silent {
                state.devices.remove(&silent);
            }
        }
        let view = state.devices.entry(device.clone()).or_default();
        change(view);
        view.json(device, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dese_protocol::{DeviceId, OrgId};

    fn key(n: usize) -> DeviceKey {
        DeviceKey {
            org: OrgId::parse("acme").unwrap(),
            device: DeviceId::parse(&format!("pool-{n}")).unwrap(),
        }
    }

    #[test]
    fn the_view_stays_bounded_and_a_command_keeps_its_final_outcome() {
        let view = LiveView::new("test");
        let mut updates = view.subscribe();
        for n in 0..DEVICES + 5 {
            view.record(
                &Event::PresenceChanged {
                    device: key(n),
                    from: None,
                    to: DeviceState::Online,
                },
                true,
            );
        }
        assert_eq!(view.state().devices.len(), DEVICES);
        // A page that did not keep up is told so (its stream then ends, and it reloads).
        assert!(matches!(
            updates.try_recv(),
            Err(broadcast::error::TryRecvError::Lagged(_))
        ));
        assert_eq!(updates.try_recv().unwrap().event, "device");

        let id = CommandId::parse("cmd-test-1-1").unwrap();
        view.record(
            &Event::Command {
                device: key(1),
                command_id: id.clone(),
                outcome: Outcome::TimedOut { attempts: 2 },
            },
            true,
        );
        // The sending reported after its outcome does not take it back to "sent".
        view.command_sent(&id, &key(1), "reboot");
        let snapshot: Value = serde_json::from_str(&view.snapshot().into_json()).unwrap();
        let commands = snapshot["commands"].as_array().unwrap();
        assert_eq!(commands.len(), 1);
        assert_eq!(commands[0]["outcome"], "timed_out");
        assert_eq!(commands[0]["detail"], "after 2 attempt(s)");
    }
}
