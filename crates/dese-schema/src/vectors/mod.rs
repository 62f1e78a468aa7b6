//! The test vectors: valid and invalid messages with the verdict `dese-protocol` gives them, one
//! module per kind of message.
//!
//! Each vector is written here once, as data built from a few base payloads (the protocol's own
//! examples) and one change each. The expected verdict, reason and field path are stated by
//! hand, not computed: the vector test then checks the decoder against them, and the generator
//! writes them to `schemas/vectors/` for other languages.

use dese_protocol::MessageKind;
use serde::Serialize;
use serde_json::{Value, json};

mod alert;
mod command;
mod config;
mod response;
mod status;
mod telemetry;

/// One test vector.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Vector {
    /// What it shows; unique among the vectors of its kind.
    pub name: String,
    /// The topic it arrives on.
    pub topic: String,
    /// The payload, when it is JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    /// The payload as raw text, when it is not JSON (or is empty).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_text: Option<String>,
    /// Whether the decoder accepts it.
    pub valid: bool,
    /// For invalid ones, the [`Reason`](dese_protocol::Reason) label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// For invalid payloads with a field at fault, its dotted path (`""`: the whole payload).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// For invalid commands, the `command_id` the device can still answer.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_id: Option<String>,
    /// The conformance statements it proves.
    pub conformance: Vec<String>,
}

impl Vector {
    /// The payload's bytes, as a peer would send them.
    pub fn bytes(&self) -> Vec<u8> {
        match (&self.payload, &self.payload_text) {
            (Some(value), _) => value.to_string().into_bytes(),
            (None, Some(text)) => text.clone().into_bytes(),
            (None, None) => Vec::new(),
        }
    }

    fn path(mut self, path: &str) -> Self {
        self.path = Some(path.to_owned());
        self
    }

    fn command_id(mut self, id: &str) -> Self {
        self.command_id = Some(id.to_owned());
        self
    }
}

fn vector(name: &str, topic: impl Into<String>, ids: &[&str]) -> Vector {
    Vector {
        name: name.to_owned(),
        topic: topic.into(),
        payload: None,
        payload_text: None,
        valid: true,
        reason: None,
        path: None,
        command_id: None,
        conformance: ids.iter().map(|id| (*id).to_owned()).collect(),
    }
}

fn ok(name: &str, topic: impl Into<String>, payload: Value, ids: &[&str]) -> Vector {
    Vector {
        payload: Some(payload),
        ..vector(name, topic, ids)
    }
}

fn bad(
    name: &str,
    topic: impl Into<String>,
    payload: Value,
    reason: &str,
    path: &str,
    ids: &[&str],
) -> Vector {
    Vector {
        payload: Some(payload),
        valid: false,
        reason: Some(reason.to_owned()),
        path: Some(path.to_owned()),
        ..vector(name, topic, ids)
    }
}

/// Refused before the payload is looked at (a bad topic): no field path.
fn bad_topic(
    name: &str,
    topic: impl Into<String>,
    payload: Value,
    reason: &str,
    ids: &[&str],
) -> Vector {
    Vector {
        payload: Some(payload),
        valid: false,
        reason: Some(reason.to_owned()),
        ..vector(name, topic, ids)
    }
}

/// Bytes that are not a JSON document.
fn text(name: &str, topic: impl Into<String>, text: String, reason: &str, ids: &[&str]) -> Vector {
    Vector {
        payload_text: Some(text),
        valid: false,
        reason: Some(reason.to_owned()),
        ..vector(name, topic, ids)
    }
}

fn topic(kind: &str, org: &str) -> String {
    format!("devices/{org}/esp32-001/{kind}")
}

/// `base` with the field at the dotted `path` set to `value`.
fn set(base: &Value, path: &str, value: Value) -> Value {
    let mut out = base.clone();
    let (parents, last) = path.rsplit_once('.').map_or(("", path), |(p, l)| (p, l));
    let mut target = &mut out;
    for key in parents.split('.').filter(|k| !k.is_empty()) {
        target = &mut target[key];
    }
    target[last] = value;
    out
}

/// `base` without the field at the dotted `path`.
fn del(base: &Value, path: &str) -> Value {
    let mut out = base.clone();
    let (parents, last) = path.rsplit_once('.').map_or(("", path), |(p, l)| (p, l));
    let mut target = &mut out;
    for key in parents.split('.').filter(|k| !k.is_empty()) {
        target = &mut target[key];
    }
    if let Value::Object(map) = target {
        map.remove(last);
    }
    out
}

/// `payload` with its `sensors` object given a second time.
fn twice(payload: &Value) -> String {
    let text = payload.to_string();
    let open = &text[..text.len() - 1];
    format!(r#"{open},"sensors":{{"ph":1,"chlorine":1,"temperature":1}}}}"#)
}

fn cmd_bare(command: &str) -> Value {
    json!({"command_id": "cmd-1", "device_id": "esp32-001", "command": command, "timestamp": TS})
}

fn cmd_with(command: &str, parameters: Value) -> Value {
    set(&cmd_bare(command), "parameters", parameters)
}

const TS: &str = "2025-01-27T10:00:00Z";

/// Every vector, grouped by the kind of message its topic names (a topic that names none is
/// grouped with telemetry).
pub fn vectors() -> Vec<Vector> {
    by_kind().into_iter().flat_map(|(_, v)| v).collect()
}

pub(super) fn by_kind() -> Vec<(MessageKind, Vec<Vector>)> {
    Vec::from([
        (MessageKind::Telemetry, telemetry::vectors()),
        (MessageKind::Commands, command::vectors()),
        (MessageKind::CommandResponse, response::vectors()),
        (MessageKind::Status, status::vectors()),
        (MessageKind::Config, config::vectors()),
        (MessageKind::Alert, alert::vectors()),
    ])
}
