//! The AsyncAPI 3.0 document: the protocol's channels, operations and messages, with the
//! message payloads taken from the message schemas of this crate.

use dese_protocol::{Direction, MessageKind};
use serde_json::{Map, Value, json};

use crate::{PROTOCOL_VERSION, message_schema};

/// The Rust type (and schema name) of each kind's payload.
fn type_name(kind: MessageKind) -> &'static str {
    match kind {
        MessageKind::Telemetry => "Telemetry",
        MessageKind::Commands => "Command",
        MessageKind::CommandResponse => "CommandResponse",
        MessageKind::Status => "Status",
        MessageKind::Config => "Config",
        MessageKind::Alert => "Alert",
    }
}

/// `commands` to `Commands`, `command_response` to `CommandResponse`.
fn camel(kind: MessageKind) -> String {
    kind.as_str()
        .split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                format!("{}{}", first.to_ascii_uppercase(), chars.as_str())
            })
        })
        .collect()
}

/// Rewrites `#/$defs/X` references to `#/components/schemas/X`.
fn rewrite_refs(value: &mut Value) {
    match value {
        Value::Object(map) => {
            if let Some(Value::String(target)) = map.get_mut("$ref") {
                if let Some(name) = target.strip_prefix("#/$defs/") {
                    *target = format!("#/components/schemas/{name}");
                }
            }
            map.values_mut().for_each(rewrite_refs);
        }
        Value::Array(items) => items.iter_mut().for_each(rewrite_refs),
        _ => {}
    }
}

pub(super) fn document() -> Value {
    let mut schemas = Map::new();
    let mut messages = Map::new();
    let mut channels = Map::new();
    let mut operations = Map::new();
    for kind in MessageKind::ALL {
        let mut schema = message_schema(kind);
        if let Value::Object(map) = &mut schema {
            if let Some(Value::Object(defs)) = map.remove("$defs") {
                schemas.extend(defs);
            }
            map.remove("$schema");
            map.remove("$id");
        }
        schemas.insert(type_name(kind).into(), schema);

        let sends = kind.direction() == Direction::DeviceToBackend;
        messages.insert(
            kind.as_str().into(),
            json!({
                "name": kind.as_str(),
                "title": format!("DESE {kind}"),
                "summary": match kind {
                    MessageKind::Telemetry => "Sensor readings.",
                    MessageKind::Commands => "An action for the device.",
                    MessageKind::CommandResponse => "The outcome of a command, correlated by command_id.",
                    MessageKind::Status => "The device's state: online, offline, error or maintenance.",
                    MessageKind::Config => "Settings for the device.",
                    MessageKind::Alert => "A condition that needs attention.",
                },
                "contentType": "application/json",
                "payload": { "$ref": format!("#/components/schemas/{}", type_name(kind)) },
            }),
        );
        channels.insert(
            kind.as_str().into(),
            json!({
                "address": format!("devices/{{organization_id}}/{{device_id}}/{kind}"),
                "description": format!(
                    "{} of one device. Published with QoS 1{}.",
                    camel(kind),
                    if kind.retained() { " and retained, so a new subscriber gets the last one" } else { ", not retained" },
                ),
                "parameters": {
                    "organization_id": { "$ref": "#/components/parameters/organization_id" },
                    "device_id": { "$ref": "#/components/parameters/device_id" },
                },
                "messages": {
                    kind.as_str(): { "$ref": format!("#/components/messages/{kind}") },
                },
            }),
        );
        let action = if sends { "send" } else { "receive" };
        operations.insert(
            format!("{action}{}", camel(kind)),
            json!({
                "action": action,
                "summary": format!(
                    "The device {} its own {kind} topic.",
                    if sends { "publishes on" } else { "subscribes to" }
                ),
                "channel": { "$ref": format!("#/channels/{kind}") },
                "messages": [ { "$ref": format!("#/channels/{kind}/messages/{kind}") } ],
                "bindings": {
                    "mqtt": { "qos": 1, "retain": kind.retained(), "bindingVersion": "0.2.0" },
                },
            }),
        );
    }
    let mut doc = json!({
        "asyncapi": "3.0.0",
        "info": {
            "title": "DESE IoT MQTT protocol",
            "version": PROTOCOL_VERSION,
            "description": "Water-quality devices (pH, chlorine, temperature, ORP, TDS, flow, \
                            pumps) and their multi-tenant backend, over MQTT 3.1.1. Written from \
                            the device's point of view: it sends telemetry, status, command \
                            responses and alerts, and receives commands and config, each on its \
                            own topics only. Generated from the Rust types of dese-protocol; the \
                            rules JSON Schema cannot express are in each schema's description.",
            "license": { "name": "MIT OR Apache-2.0" },
        },
        "defaultContentType": "application/json",
        "servers": {
            "development": {
                "host": "localhost:1883",
                "protocol": "mqtt",
                "protocolVersion": "3.1.1",
                "description": "A local broker without TLS.",
                "bindings": { "mqtt": { "keepAlive": 60, "bindingVersion": "0.2.0" } },
            },
            "production": {
                "host": "{host}",
                "protocol": "mqtts",
                "protocolVersion": "3.1.1",
                "description": "TLS with a CA and an optional client certificate; username and \
                                password authentication; broker ACLs confine each device to \
                                its own topics.",
                "variables": { "host": { "default": "broker.example.com:8883" } },
                "bindings": { "mqtt": { "keepAlive": 60, "bindingVersion": "0.2.0" } },
            },
        },
        "channels": channels,
        "operations": operations,
        "components": {
            "parameters": {
                "organization_id": {
                    "description": "The organization (tenant) id: 1 to 64 bytes, without '/', \
                                    '+', '#', NUL or control characters, not starting with '$'.",
                },
                "device_id": {
                    "description": "The device id, with the same rules as organization_id.",
                },
            },
            "messages": messages,
            "schemas": schemas,
        },
    });
    rewrite_refs(&mut doc);
    doc
}
