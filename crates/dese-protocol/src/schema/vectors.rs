//! The test vectors: valid and invalid messages with the verdict this crate gives them.
//!
//! Each vector is written here once, as data built from a few base payloads (the protocol's own
//! examples) and one change each. The expected verdict, reason and field path are stated by
//! hand, not computed: the vector test then checks the decoder against them, and the generator
//! writes them to `schemas/vectors/` for other languages.

use alloc::borrow::ToOwned;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use serde::Serialize;
use serde_json::{Value, json};

use crate::kind::MessageKind;

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
    /// For invalid ones, the [`Reason`](crate::Reason) label.
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
    let tel = json!({
        "device_id": "esp32-001", "timestamp": TS, "organization_id": "org-123",
        "sensors": {"ph": 7.2, "chlorine": 2.5, "temperature": 25.5, "orp": 650, "tds": 1200, "flow_rate": 45.5},
        "metadata": {"battery": 85, "signal_strength": -65, "firmware_version": "1.0.0"}
    });
    let minimal = json!({
        "device_id": "esp32-001", "timestamp": TS, "organization_id": "org-123",
        "sensors": {"ph": 7.2, "chlorine": 2.5, "temperature": 25.5},
        "metadata": {"firmware_version": "1.0.0"}
    });
    let cmd = json!({
        "command_id": "cmd-1234567890-abc", "device_id": "esp32-001", "command": "set_pump",
        "parameters": {"pump_id": 1, "state": "on", "duration": 3600}, "timestamp": TS
    });
    let resp = json!({
        "command_id": "cmd-1234567890-abc", "success": true,
        "response": {"pump_state": "on", "pump_duration": 3600}, "error": null,
        "timestamp": "2025-01-27T10:00:05Z"
    });
    let st = json!({"status": "online", "battery": 85, "signal_strength": -65, "firmware_version": "1.0.0", "timestamp": TS});
    let cfg = json!({
        "device_id": "esp32-001",
        "config": {"telemetry_interval": 30000, "mqtt_keepalive": 60, "sensor_calibration": {"ph": {"offset": 0.2, "scale": 1.0}}},
        "timestamp": TS
    });
    let al = json!({"severity": "warning", "message": "pH level below threshold", "sensor": "ph", "value": 6.8, "threshold": 7.0, "timestamp": TS});
    let (t, c, r, s, g, a) = (
        topic("telemetry", "org-123"),
        topic("commands", "org-123"),
        topic("command_response", "org-123"),
        topic("status", "org-123"),
        topic("config", "org-123"),
        topic("alert", "org-123"),
    );
    let telemetry = [
        ok("spec example", &t, tel.clone(), &["DESE-P1"]),
        ok("required fields only", &t, minimal.clone(), &["DESE-P1"]),
        ok(
            "unknown fields are ignored",
            &t,
            set(
                &set(&tel, "humidity", json!(40)),
                "sensors.turbidity",
                json!({"ntu": [1, 2]}),
            ),
            &["DESE-P11"],
        ),
        ok(
            "optional fields may be null",
            &t,
            set(
                &set(&tel, "sensors.orp", json!(null)),
                "metadata.battery",
                json!(null),
            ),
            &["DESE-P1"],
        ),
        ok(
            "integer written with a zero fraction",
            &t,
            set(&tel, "sensors.orp", json!(650.0)),
            &["DESE-P1"],
        ),
        ok(
            "negative orp is a valid potential",
            &t,
            set(&tel, "sensors.orp", json!(-120)),
            &["DESE-P1"],
        ),
        ok(
            "ph at its bounds",
            &t,
            set(
                &set(&tel, "sensors.ph", json!(0)),
                "sensors.chlorine",
                json!(0),
            ),
            &["DESE-P2"],
        ),
        ok(
            "ph at 14",
            &t,
            set(&tel, "sensors.ph", json!(14)),
            &["DESE-P2"],
        ),
        ok(
            "timestamp with +00:00 and a fraction",
            &t,
            set(&tel, "timestamp", json!("2025-01-27T10:00:00.123+00:00")),
            &["DESE-P3"],
        ),
        ok(
            "uuid organization",
            topic("telemetry", "0b6f1f1e-8d1a-4c53-9b0e-5c1f4e2a7d10"),
            set(
                &tel,
                "organization_id",
                json!("0b6f1f1e-8d1a-4c53-9b0e-5c1f4e2a7d10"),
            ),
            &["DESE-T3"],
        ),
        bad(
            "ph above 14",
            &t,
            set(&tel, "sensors.ph", json!(15.2)),
            "out_of_range",
            "sensors.ph",
            &["DESE-P2"],
        ),
        bad(
            "ph below 0",
            &t,
            set(&tel, "sensors.ph", json!(-0.1)),
            "out_of_range",
            "sensors.ph",
            &["DESE-P2"],
        ),
        bad(
            "ph missing",
            &t,
            del(&tel, "sensors.ph"),
            "missing_field",
            "sensors.ph",
            &["DESE-P1", "DESE-V1"],
        ),
        bad(
            "ph as a string",
            &t,
            set(&tel, "sensors.ph", json!("7.2")),
            "wrong_type",
            "sensors.ph",
            &["DESE-P1"],
        ),
        bad(
            "ph null",
            &t,
            set(&tel, "sensors.ph", json!(null)),
            "wrong_type",
            "sensors.ph",
            &["DESE-P1"],
        ),
        bad(
            "negative chlorine",
            &t,
            set(&tel, "sensors.chlorine", json!(-2.5)),
            "out_of_range",
            "sensors.chlorine",
            &["DESE-P2"],
        ),
        bad(
            "temperature below absolute zero",
            &t,
            set(&tel, "sensors.temperature", json!(-300)),
            "out_of_range",
            "sensors.temperature",
            &["DESE-P2"],
        ),
        bad(
            "temperature missing",
            &t,
            del(&tel, "sensors.temperature"),
            "missing_field",
            "sensors.temperature",
            &["DESE-P1"],
        ),
        bad(
            "orp with a fraction",
            &t,
            set(&tel, "sensors.orp", json!(650.5)),
            "wrong_type",
            "sensors.orp",
            &["DESE-P1"],
        ),
        bad(
            "negative tds",
            &t,
            set(&tel, "sensors.tds", json!(-5)),
            "out_of_range",
            "sensors.tds",
            &["DESE-P2"],
        ),
        bad(
            "tds beyond 32 bits",
            &t,
            set(&tel, "sensors.tds", json!(4_294_967_296_i64)),
            "out_of_range",
            "sensors.tds",
            &["DESE-P1"],
        ),
        bad(
            "negative flow",
            &t,
            set(&tel, "sensors.flow_rate", json!(-1)),
            "out_of_range",
            "sensors.flow_rate",
            &["DESE-P2"],
        ),
        bad(
            "battery over 100",
            &t,
            set(&tel, "metadata.battery", json!(150)),
            "out_of_range",
            "metadata.battery",
            &["DESE-P2"],
        ),
        bad(
            "battery as a string",
            &t,
            set(&tel, "metadata.battery", json!("85")),
            "wrong_type",
            "metadata.battery",
            &["DESE-P1"],
        ),
        bad(
            "positive signal strength",
            &t,
            set(&tel, "metadata.signal_strength", json!(10)),
            "out_of_range",
            "metadata.signal_strength",
            &["DESE-P1"],
        ),
        bad(
            "empty firmware version",
            &t,
            set(&tel, "metadata.firmware_version", json!("")),
            "bad_text",
            "metadata.firmware_version",
            &["DESE-P1"],
        ),
        bad(
            "firmware version missing",
            &t,
            del(&tel, "metadata.firmware_version"),
            "missing_field",
            "metadata.firmware_version",
            &["DESE-P1"],
        ),
        bad(
            "metadata missing",
            &t,
            del(&tel, "metadata"),
            "missing_field",
            "metadata",
            &["DESE-P1"],
        ),
        bad(
            "sensors as an array",
            &t,
            set(&tel, "sensors", json!([7.2])),
            "wrong_type",
            "sensors",
            &["DESE-P1"],
        ),
        bad(
            "regression: sensors as a positional array",
            &t,
            set(&tel, "sensors", json!([7.2, 2.5, 25.5])),
            "wrong_type",
            "sensors",
            &["DESE-P1", "DESE-V1"],
        ),
        bad(
            "regression: payload as a positional array",
            &t,
            json!([
                tel["device_id"],
                TS,
                tel["organization_id"],
                tel["sensors"],
                tel["metadata"]
            ]),
            "wrong_type",
            "",
            &["DESE-V1"],
        ),
        bad(
            "device id of another device",
            &t,
            set(&tel, "device_id", json!("esp32-002")),
            "tenant_mismatch",
            "device_id",
            &["DESE-T5"],
        ),
        bad(
            "organization of another tenant",
            &t,
            set(&tel, "organization_id", json!("org-999")),
            "tenant_mismatch",
            "organization_id",
            &["DESE-T5"],
        ),
        bad(
            "device id with a slash",
            &t,
            set(&tel, "device_id", json!("esp32/001")),
            "bad_id",
            "device_id",
            &["DESE-T3"],
        ),
        bad(
            "organization id with a wildcard",
            &t,
            set(&tel, "organization_id", json!("org-#")),
            "bad_id",
            "organization_id",
            &["DESE-T3"],
        ),
        bad(
            "timestamp with a non-UTC offset",
            &t,
            set(&tel, "timestamp", json!("2025-01-27T12:00:00+02:00")),
            "bad_timestamp",
            "timestamp",
            &["DESE-P3"],
        ),
        bad(
            "timestamp without zone",
            &t,
            set(&tel, "timestamp", json!("2025-01-27T10:00:00")),
            "bad_timestamp",
            "timestamp",
            &["DESE-P3"],
        ),
        bad(
            "timestamp as epoch seconds",
            &t,
            set(&tel, "timestamp", json!(1737972000)),
            "wrong_type",
            "timestamp",
            &["DESE-P3"],
        ),
        bad(
            "impossible date",
            &t,
            set(&tel, "timestamp", json!("2025-02-30T10:00:00Z")),
            "bad_timestamp",
            "timestamp",
            &["DESE-P3"],
        ),
        bad(
            "payload is an array",
            &t,
            json!([tel.clone()]),
            "wrong_type",
            "",
            &["DESE-V1"],
        ),
        text(
            "payload is not JSON",
            &t,
            "ph=7.2".into(),
            "syntax",
            &["DESE-V1", "DESE-V2"],
        ),
        text(
            "payload is cut short",
            &t,
            tel.to_string()[..60].into(),
            "syntax",
            &["DESE-V1"],
        ),
        text(
            "trailing garbage",
            &t,
            format!("{minimal}x"),
            "syntax",
            &["DESE-V1"],
        ),
        text(
            "a field given twice",
            &t,
            twice(&minimal),
            "other",
            &["DESE-V1"],
        )
        .path(""),
        text("empty payload", &t, String::new(), "empty", &["DESE-V2"]),
        text(
            "nested deeper than the limit",
            &t,
            format!("{{\"x\":{}{}}}", "[".repeat(40), "]".repeat(40)),
            "too_deep",
            &["DESE-V3"],
        ),
        bad_topic(
            "unknown message type",
            topic("telemetri", "org-123"),
            tel.clone(),
            "topic",
            &["DESE-T2"],
        ),
        bad_topic(
            "wildcard in the topic",
            "devices/+/esp32-001/telemetry",
            tel.clone(),
            "topic",
            &["DESE-T3"],
        ),
        bad_topic(
            "five topic levels",
            "devices/org-123/esp32-001/telemetry/x",
            tel.clone(),
            "topic",
            &["DESE-T1"],
        ),
        bad_topic(
            "wrong prefix",
            "device/org-123/esp32-001/telemetry",
            tel.clone(),
            "topic",
            &["DESE-T1"],
        ),
        bad_topic(
            "empty device level",
            "devices/org-123//telemetry",
            tel.clone(),
            "topic",
            &["DESE-T1", "DESE-T3"],
        ),
        bad_topic(
            "broker-reserved organization",
            "devices/$SYS/esp32-001/telemetry",
            tel.clone(),
            "topic",
            &["DESE-T3"],
        ),
    ];
    let commands = [
        ok("spec example", &c, cmd.clone(), &["DESE-P4", "DESE-P5"]),
        ok(
            "set_pump off without duration",
            &c,
            cmd_with("set_pump", json!({"pump_id":2,"state":"off"})),
            &["DESE-P5"],
        ),
        ok(
            "set_ph_target",
            &c,
            cmd_with("set_ph_target", json!({"target_ph":7.4})),
            &["DESE-P5"],
        ),
        ok(
            "set_chlorine_target",
            &c,
            cmd_with("set_chlorine_target", json!({"target_chlorine":1.5})),
            &["DESE-P5"],
        ),
        ok(
            "reboot without parameters",
            &c,
            cmd_bare("reboot"),
            &["DESE-P4", "DESE-P5"],
        ),
        ok(
            "reset_config with empty parameters",
            &c,
            cmd_with("reset_config", json!({})),
            &["DESE-P5"],
        ),
        ok(
            "calibrate_sensor",
            &c,
            cmd_with("calibrate_sensor", json!({"sensor_type":"ph","value":7.0})),
            &["DESE-P5"],
        ),
        ok(
            "calibrate a sensor the protocol does not list",
            &c,
            cmd_with(
                "calibrate_sensor",
                json!({"sensor_type":"turbidity","value":1.0}),
            ),
            &["DESE-P5"],
        ),
        bad(
            "a command the protocol does not list",
            &c,
            cmd_with("dance", json!({"style":"tango"})),
            "unknown_command",
            "command",
            &["DESE-P4", "DESE-C4"],
        )
        .command_id("cmd-1"),
        ok(
            "extra parameters are ignored",
            &c,
            cmd_with("reboot", json!({"delay":5})),
            &["DESE-P11"],
        ),
        bad(
            "command id missing",
            &c,
            del(&cmd, "command_id"),
            "missing_field",
            "command_id",
            &["DESE-P4"],
        ),
        bad(
            "command name missing",
            &c,
            del(&cmd_bare("reboot"), "command"),
            "missing_field",
            "command",
            &["DESE-P4"],
        )
        .command_id("cmd-1"),
        bad(
            "command name is a number",
            &c,
            set(&cmd_bare("reboot"), "command", json!(5)),
            "wrong_type",
            "command",
            &["DESE-P4"],
        )
        .command_id("cmd-1"),
        bad(
            "empty command name",
            &c,
            cmd_bare(""),
            "bad_text",
            "command",
            &["DESE-C4"],
        )
        .command_id("cmd-1"),
        bad(
            "pump state is neither on nor off",
            &c,
            cmd_with("set_pump", json!({"pump_id":1,"state":"maybe"})),
            "not_one_of",
            "parameters.state",
            &["DESE-P5", "DESE-C4"],
        )
        .command_id("cmd-1"),
        bad(
            "pump id missing",
            &c,
            cmd_with("set_pump", json!({"state":"on"})),
            "missing_field",
            "parameters.pump_id",
            &["DESE-P5", "DESE-C4"],
        )
        .command_id("cmd-1"),
        bad(
            "set_pump without parameters",
            &c,
            cmd_bare("set_pump"),
            "missing_field",
            "parameters.pump_id",
            &["DESE-P5", "DESE-C4"],
        )
        .command_id("cmd-1"),
        bad(
            "negative pump id",
            &c,
            cmd_with("set_pump", json!({"pump_id":-1,"state":"on"})),
            "out_of_range",
            "parameters.pump_id",
            &["DESE-P5"],
        )
        .command_id("cmd-1"),
        bad(
            "negative duration",
            &c,
            cmd_with("set_pump", json!({"pump_id":1,"state":"on","duration":-5})),
            "out_of_range",
            "parameters.duration",
            &["DESE-P2", "DESE-P5"],
        )
        .command_id("cmd-1"),
        bad(
            "duration as text",
            &c,
            cmd_with(
                "set_pump",
                json!({"pump_id":1,"state":"on","duration":"1h"}),
            ),
            "wrong_type",
            "parameters.duration",
            &["DESE-P5"],
        )
        .command_id("cmd-1"),
        bad(
            "pH target above 14",
            &c,
            cmd_with("set_ph_target", json!({"target_ph":15})),
            "out_of_range",
            "parameters.target_ph",
            &["DESE-P2", "DESE-P5"],
        )
        .command_id("cmd-1"),
        bad(
            "negative chlorine target",
            &c,
            cmd_with("set_chlorine_target", json!({"target_chlorine":-1})),
            "out_of_range",
            "parameters.target_chlorine",
            &["DESE-P2", "DESE-P5"],
        )
        .command_id("cmd-1"),
        bad(
            "sensor name with spaces",
            &c,
            cmd_with("calibrate_sensor", json!({"sensor_type":"p h","value":7})),
            "bad_text",
            "parameters.sensor_type",
            &["DESE-P5"],
        )
        .command_id("cmd-1"),
        bad(
            "calibration value missing",
            &c,
            cmd_with("calibrate_sensor", json!({"sensor_type":"ph"})),
            "missing_field",
            "parameters.value",
            &["DESE-P5"],
        )
        .command_id("cmd-1"),
        bad(
            "parameters as an array",
            &c,
            cmd_with("set_pump", json!([1, "on"])),
            "wrong_type",
            "parameters",
            &["DESE-P4"],
        )
        .command_id("cmd-1"),
        bad(
            "command for another device",
            &c,
            set(&cmd_bare("reboot"), "device_id", json!("esp32-002")),
            "tenant_mismatch",
            "device_id",
            &["DESE-T5"],
        )
        .command_id("cmd-1"),
        bad(
            "command id with a wildcard",
            &c,
            set(&cmd_bare("reboot"), "command_id", json!("cmd+1")),
            "bad_id",
            "command_id",
            &["DESE-T3"],
        ),
        bad(
            "timestamp not ISO 8601",
            &c,
            set(&cmd_bare("reboot"), "timestamp", json!("yesterday")),
            "bad_timestamp",
            "timestamp",
            &["DESE-P3"],
        )
        .command_id("cmd-1"),
    ];
    let responses = [
        ok("spec example", &r, resp.clone(), &["DESE-P6"]),
        ok(
            "failure with an error",
            &r,
            json!({"command_id":"cmd-1","success":false,"error":"unknown command \"dance\"","timestamp":TS}),
            &["DESE-P6", "DESE-C4"],
        ),
        ok(
            "required fields only",
            &r,
            json!({"command_id":"cmd-1","success":true,"timestamp":TS}),
            &["DESE-P6"],
        ),
        ok(
            "unknown fields are ignored",
            &r,
            set(&resp, "duration_ms", json!(12)),
            &["DESE-P11"],
        ),
        bad(
            "success as a string",
            &r,
            set(&resp, "success", json!("true")),
            "wrong_type",
            "success",
            &["DESE-P6"],
        ),
        bad(
            "success missing",
            &r,
            del(&resp, "success"),
            "missing_field",
            "success",
            &["DESE-P6"],
        ),
        bad(
            "command id missing",
            &r,
            del(&resp, "command_id"),
            "missing_field",
            "command_id",
            &["DESE-P6"],
        ),
        bad(
            "error is a number",
            &r,
            set(&resp, "error", json!(5)),
            "wrong_type",
            "error",
            &["DESE-P6"],
        ),
        bad(
            "error is empty",
            &r,
            set(&resp, "error", json!("")),
            "bad_text",
            "error",
            &["DESE-P6"],
        ),
        bad(
            "response is an array",
            &r,
            set(&resp, "response", json!(["on"])),
            "wrong_type",
            "response",
            &["DESE-P6"],
        ),
        bad(
            "timestamp missing",
            &r,
            del(&resp, "timestamp"),
            "missing_field",
            "timestamp",
            &["DESE-P6"],
        ),
    ];
    let statuses = [
        ok("spec example", &s, st.clone(), &["DESE-P7"]),
        ok(
            "offline, required fields only",
            &s,
            json!({"status":"offline","firmware_version":"1.0.0","timestamp":TS}),
            &["DESE-P7", "DESE-D5"],
        ),
        ok(
            "maintenance",
            &s,
            set(&st, "status", json!("maintenance")),
            &["DESE-P7"],
        ),
        ok(
            "error",
            &s,
            set(&st, "status", json!("error")),
            &["DESE-P7"],
        ),
        bad(
            "status value not in the list",
            &s,
            set(&st, "status", json!("sleeping")),
            "not_one_of",
            "status",
            &["DESE-P7"],
        ),
        bad(
            "status in upper case",
            &s,
            set(&st, "status", json!("ONLINE")),
            "not_one_of",
            "status",
            &["DESE-P7"],
        ),
        bad(
            "status null",
            &s,
            set(&st, "status", json!(null)),
            "wrong_type",
            "status",
            &["DESE-P7"],
        ),
        bad(
            "battery over 100",
            &s,
            set(&st, "battery", json!(101)),
            "out_of_range",
            "battery",
            &["DESE-P2", "DESE-P7"],
        ),
        bad(
            "signal strength as text",
            &s,
            set(&st, "signal_strength", json!("-65")),
            "wrong_type",
            "signal_strength",
            &["DESE-P7"],
        ),
        bad(
            "firmware version missing",
            &s,
            del(&st, "firmware_version"),
            "missing_field",
            "firmware_version",
            &["DESE-P7"],
        ),
    ];
    let configs = [
        ok("spec example", &g, cfg.clone(), &["DESE-P8"]),
        ok(
            "empty config changes nothing",
            &g,
            json!({"device_id":"esp32-001","config":{},"timestamp":TS}),
            &["DESE-P8"],
        ),
        ok(
            "alert thresholds",
            &g,
            set(
                &cfg,
                "config.alert_thresholds",
                json!({"ph":{"min":6.8,"max":7.8},"chlorine":{"max":3}}),
            ),
            &["DESE-P8"],
        ),
        ok(
            "calibration with offset only",
            &g,
            set(
                &cfg,
                "config.sensor_calibration",
                json!({"orp":{"offset":-0.5}}),
            ),
            &["DESE-P8"],
        ),
        bad(
            "calibration of a sensor the protocol does not list",
            &g,
            set(
                &cfg,
                "config.sensor_calibration",
                json!({"turbidity":{"offset":-0.5}}),
            ),
            "not_one_of",
            "config.sensor_calibration",
            &["DESE-P8"],
        ),
        bad(
            "threshold of an invented sensor",
            &g,
            set(
                &cfg,
                "config.alert_thresholds",
                json!({"ph":{"min":6.8},"x-1":{"max":1}}),
            ),
            "not_one_of",
            "config.alert_thresholds",
            &["DESE-P8"],
        ),
        bad(
            "negative interval",
            &g,
            set(&cfg, "config.telemetry_interval", json!(-1)),
            "out_of_range",
            "config.telemetry_interval",
            &["DESE-P2", "DESE-P8"],
        ),
        bad(
            "zero interval",
            &g,
            set(&cfg, "config.telemetry_interval", json!(0)),
            "out_of_range",
            "config.telemetry_interval",
            &["DESE-P8"],
        ),
        bad(
            "interval with a fraction",
            &g,
            set(&cfg, "config.telemetry_interval", json!(1500.5)),
            "wrong_type",
            "config.telemetry_interval",
            &["DESE-P8"],
        ),
        bad(
            "keepalive zero",
            &g,
            set(&cfg, "config.mqtt_keepalive", json!(0)),
            "out_of_range",
            "config.mqtt_keepalive",
            &["DESE-P8"],
        ),
        bad(
            "calibration scale zero",
            &g,
            set(&cfg, "config.sensor_calibration.ph.scale", json!(0)),
            "out_of_range",
            "config.sensor_calibration.ph.scale",
            &["DESE-P8"],
        ),
        bad(
            "regression: calibration as a positional array",
            &g,
            set(&cfg, "config.sensor_calibration.ph", json!([0.2, 1.0])),
            "wrong_type",
            "config.sensor_calibration.ph",
            &["DESE-P8", "DESE-V1"],
        ),
        bad(
            "calibration offset as text",
            &g,
            set(&cfg, "config.sensor_calibration.ph.offset", json!("0.2")),
            "wrong_type",
            "config.sensor_calibration.ph.offset",
            &["DESE-P8"],
        ),
        bad(
            "threshold min above max",
            &g,
            set(
                &cfg,
                "config.alert_thresholds",
                json!({"ph":{"min":8,"max":7}}),
            ),
            "inconsistent",
            "config.alert_thresholds.ph",
            &["DESE-P8"],
        ),
        bad(
            "sensor name with spaces",
            &g,
            set(
                &cfg,
                "config.sensor_calibration",
                json!({"p h":{"offset":0}}),
            ),
            "not_one_of",
            "config.sensor_calibration",
            &["DESE-P8"],
        ),
        bad(
            "config missing",
            &g,
            del(&cfg, "config"),
            "missing_field",
            "config",
            &["DESE-P8"],
        ),
        bad(
            "config as an array",
            &g,
            set(&cfg, "config", json!([])),
            "wrong_type",
            "config",
            &["DESE-P8"],
        ),
        bad(
            "config for another device",
            &g,
            set(&cfg, "device_id", json!("esp32-002")),
            "tenant_mismatch",
            "device_id",
            &["DESE-T5"],
        ),
    ];
    let alerts = [
        ok("spec example", &a, al.clone(), &["DESE-P9"]),
        ok(
            "required fields only",
            &a,
            json!({"severity":"critical","message":"pump stalled","timestamp":TS}),
            &["DESE-P9"],
        ),
        ok(
            "info about a sensor the protocol does not list",
            &a,
            set(
                &set(&al, "severity", json!("info")),
                "sensor",
                json!("turbidity"),
            ),
            &["DESE-P9"],
        ),
        bad(
            "severity not in the list",
            &a,
            set(&al, "severity", json!("fatal")),
            "not_one_of",
            "severity",
            &["DESE-P9"],
        ),
        bad(
            "empty message",
            &a,
            set(&al, "message", json!("")),
            "bad_text",
            "message",
            &["DESE-P9"],
        ),
        bad(
            "message too long",
            &a,
            set(&al, "message", json!("x".repeat(513))),
            "bad_text",
            "message",
            &["DESE-P9"],
        ),
        bad(
            "message missing",
            &a,
            del(&al, "message"),
            "missing_field",
            "message",
            &["DESE-P9"],
        ),
        bad(
            "value as text",
            &a,
            set(&al, "value", json!("6.8")),
            "wrong_type",
            "value",
            &["DESE-P9"],
        ),
        bad(
            "empty sensor name",
            &a,
            set(&al, "sensor", json!("")),
            "bad_text",
            "sensor",
            &["DESE-P9"],
        ),
        bad(
            "timestamp missing",
            &a,
            del(&al, "timestamp"),
            "missing_field",
            "timestamp",
            &["DESE-P9"],
        ),
    ];
    Vec::from([
        (MessageKind::Telemetry, telemetry.to_vec()),
        (MessageKind::Commands, commands.to_vec()),
        (MessageKind::CommandResponse, responses.to_vec()),
        (MessageKind::Status, statuses.to_vec()),
        (MessageKind::Config, configs.to_vec()),
        (MessageKind::Alert, alerts.to_vec()),
    ])
}
