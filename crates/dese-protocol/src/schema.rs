//! The JSON Schema of every protocol type, for schemars: the rules of each field stated where
//! the type is, so that the generated schemas say what the decoder checks. The documents under
//! `schemas/` (the six message schemas, the parameters schemas, AsyncAPI and the test vectors) are
//! built from these by the `dese-schema` crate; this module only describes, and writes nothing.
//!
//! Enabled by the `schema` feature (std only: schemars does not build for the firmware targets).

use alloc::borrow::Cow;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde_json::{Value, json};

use crate::id::{CommandId, DeviceId, OrgId, ShareGroup};
use crate::message::{
    ALERT_MESSAGE_MAX, Action, Calibration, Command, DeviceState, ERROR_MAX, FIRMWARE_VERSION_MAX,
    PumpState, Sensor, Severity,
};
use crate::time::Timestamp;
use crate::value::{
    Battery, Celsius, Finite, FlowRate, Keepalive, Num, Ph, Ppm, Range, Scale, SignalStrength,
    TelemetryInterval,
};

/// The JSON Schema of the `parameters` of the command named `name` (one of [`Action::NAMES`]),
/// with the subschemas it refers to added to `generator`; `None` for a name the protocol does
/// not have.
pub fn command_parameters(name: &str, generator: &mut SchemaGenerator) -> Option<Schema> {
    let (_, build) = PARAMETERS.iter().find(|(known, _)| *known == name)?;
    Some(build(generator))
}

type BuildParameters = fn(&mut SchemaGenerator) -> Schema;

/// The commands with their parameter schemas, in the order of [`Action::NAMES`].
const PARAMETERS: [(&str, BuildParameters); 6] = [
    ("set_pump", |g| {
        let state = g.subschema_for::<PumpState>();
        json_schema!({
            "type": "object",
            "description": "Switch a pump. duration: seconds, absent for no limit.",
            "required": ["pump_id", "state"],
            "properties": {
                "pump_id": integer(0, u32::MAX.into()),
                "state": state,
                "duration": or_null(integer(0, u32::MAX.into())),
            }
        })
    }),
    ("set_ph_target", |g| {
        let ph = g.subschema_for::<Ph>();
        json_schema!({
            "type": "object",
            "description": "The pH to regulate to.",
            "required": ["target_ph"],
            "properties": { "target_ph": ph }
        })
    }),
    ("set_chlorine_target", |g| {
        let ppm = g.subschema_for::<Ppm>();
        json_schema!({
            "type": "object",
            "description": "The free chlorine to regulate to, ppm.",
            "required": ["target_chlorine"],
            "properties": { "target_chlorine": ppm }
        })
    }),
    (
        "reboot",
        |_| json_schema!({"type": ["object", "null"], "description": "No parameters; any given are ignored."}),
    ),
    (
        "reset_config",
        |_| json_schema!({"type": ["object", "null"], "description": "No parameters; any given are ignored."}),
    ),
    ("calibrate_sensor", |g| {
        let sensor = g.subschema_for::<Sensor>();
        let finite = g.subschema_for::<Finite>();
        json_schema!({
            "type": "object",
            "description": "Calibrate one sensor against a reference value.",
            "required": ["sensor_type", "value"],
            "properties": { "sensor_type": sensor, "value": finite }
        })
    }),
];

/// The JSON number for a bound.
fn number(n: Num) -> Value {
    match n {
        Num::Int(i) => json!(i),
        Num::UInt(u) => json!(u),
        Num::Float(f) => json!(f),
    }
}

/// The schema of a number or integer in `range`.
fn ranged(ty: &str, range: Range, description: &str) -> Schema {
    let mut schema = json_schema!({ "type": ty, "description": description });
    match range {
        Range::Between(lo, hi) => {
            schema.insert("minimum".into(), number(lo));
            schema.insert("maximum".into(), number(hi));
        }
        Range::AtLeast(lo) => {
            schema.insert("minimum".into(), number(lo));
        }
        Range::Above(lo) => {
            schema.insert("exclusiveMinimum".into(), number(lo));
        }
        Range::Finite => {}
    }
    schema
}

fn integer(lo: i64, hi: i64) -> Schema {
    json_schema!({ "type": "integer", "minimum": lo, "maximum": hi })
}

/// `schema`, or `null` (which the decoder reads as absent).
fn or_null(schema: Schema) -> Schema {
    json_schema!({ "anyOf": [schema, { "type": "null" }] })
}

fn text(max: usize, description: &str) -> Schema {
    json_schema!({
        "type": "string",
        "minLength": 1,
        "maxLength": max,
        "description": format!("{description} 1 to {max} bytes of UTF-8."),
    })
}

/// Schemas of fields whose Rust type is a plain integer or string with a narrower rule. Each is
/// used through `#[schemars(with = "...")]`, so that `Option` fields stay optional.
macro_rules! field_schema {
    ($($(#[$doc:meta])* $name:ident => $body:expr;)+) => {$(
        $(#[$doc])*
        pub(crate) struct $name;

        impl JsonSchema for $name {
            fn inline_schema() -> bool {
                true
            }

            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                $body
            }
        }
    )+};
}

field_schema! {
    /// `sensors.orp`: a 32-bit signed integer.
    Orp => {
        let mut schema = integer(i32::MIN.into(), i32::MAX.into());
        schema.insert("description".into(), json!("Oxidation-reduction potential, mV."));
        schema
    };
    /// An unsigned 32-bit integer.
    Uint32 => integer(0, u32::MAX.into());
    /// `firmware_version`.
    FirmwareVersion => text(FIRMWARE_VERSION_MAX, "Firmware version:");
    /// An alert's `message`.
    AlertMessage => text(ALERT_MESSAGE_MAX, "What happened:");
    /// A response's `error`.
    ErrorText => text(ERROR_MAX, "Why the command failed:");
}

/// A per-sensor map: sensor names to `T`.
pub(crate) struct SensorMap<T>(core::marker::PhantomData<T>);

impl<T: JsonSchema> JsonSchema for SensorMap<T> {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        Cow::Owned(format!("SensorMap_{}", T::schema_name()))
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let value = generator.subschema_for::<T>();
        json_schema!({
            "type": "object",
            "propertyNames": { "enum": Sensor::KNOWN_NAMES },
            "additionalProperties": value,
        })
    }
}

pub(crate) fn zero() -> Finite {
    Calibration::IDENTITY.offset
}

pub(crate) fn one() -> Scale {
    Calibration::IDENTITY.scale
}

/// An id: not empty, none of `/ + #`, NUL or control characters, no leading `$`.
const ID_PATTERN: &str = r"^[^/+#$\u0000-\u001f\u007f-\u009f][^/+#\u0000-\u001f\u007f-\u009f]*$";

/// ISO 8601 in UTC, as the decoder reads it; `format: date-time` adds the calendar check.
const TIMESTAMP_PATTERN: &str = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{1,9})?([Zz]|[+-]00:00)$";

macro_rules! schema_for {
    ($name:ident, $body:expr) => {
        impl JsonSchema for $name {
            fn schema_name() -> Cow<'static, str> {
                Cow::Borrowed(stringify!($name))
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                $body
            }
        }
    };
}

macro_rules! id_schema {
    ($($name:ident: $what:literal),+ $(,)?) => {$(
        schema_for!($name, json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": $name::MAX_LEN,
            "pattern": ID_PATTERN,
            "description": format!(
                "{}: 1 to {} bytes, without '/', '+', '#', NUL or control characters, not \
                 starting with '$'.",
                $what,
                $name::MAX_LEN
            ),
        }));
    )+};
}

id_schema!(
    OrgId: "Organization (tenant) id",
    DeviceId: "Device id",
    CommandId: "Command id",
    ShareGroup: "Shared-subscription group",
);

schema_for!(
    Timestamp,
    json_schema!({
        "type": "string",
        "format": "date-time",
        "pattern": TIMESTAMP_PATTERN,
        "description": "ISO 8601 time in UTC: YYYY-MM-DDTHH:MM:SS, an optional fraction of up \
                        to 9 digits, then Z or +00:00. No leap seconds.",
    })
);

macro_rules! value_schema {
    ($($name:ident: $ty:literal, $what:literal;)+) => {$(
        schema_for!($name, ranged($ty, $name::RANGE, $what));
    )+};
}

value_schema! {
    Ph: "number", "pH, 0 to 14.";
    Ppm: "number", "Concentration in ppm, never negative.";
    Celsius: "number", "Temperature in °C, not below absolute zero.";
    FlowRate: "number", "Flow in litres per minute, never negative.";
    Finite: "number", "Any finite number.";
    Scale: "number", "Calibration scale factor, greater than 0.";
    Battery: "integer", "Battery level in percent.";
    SignalStrength: "integer", "WiFi RSSI in dBm.";
    TelemetryInterval: "integer", "Telemetry period in milliseconds.";
    Keepalive: "integer", "MQTT keepalive in seconds.";
}

macro_rules! names_schema {
    ($($name:ident: $what:literal),+ $(,)?) => {$(
        schema_for!($name, {
            let names: Vec<&str> = <$name as crate::message::check::Named>::NAMES.to_vec();
            json_schema!({ "type": "string", "enum": names, "description": $what })
        });
    )+};
}

names_schema!(
    PumpState: "Pump state.",
    DeviceState: "Device status.",
    Severity: "Alert severity.",
);

schema_for!(
    Sensor,
    json_schema!({
        "type": "string",
        "pattern": "^[A-Za-z0-9_-]{1,32}$",
        "description": "A sensor: ph, chlorine, temperature, orp, tds, flow_rate, or another \
                        name of 1 to 32 ASCII letters, digits, '_' or '-'.",
    })
);

impl JsonSchema for Command {
    fn schema_name() -> Cow<'static, str> {
        Cow::Borrowed("Command")
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        let command_id = generator.subschema_for::<CommandId>();
        let device_id = generator.subschema_for::<DeviceId>();
        let timestamp = generator.subschema_for::<Timestamp>();
        // One alternative per command, told apart by the name's `const`: exactly one can
        // match, and code generators give each command its own typed parameters.
        let mut alternatives = Vec::new();
        for (name, build) in PARAMETERS {
            let parameters = build(generator);
            // Commands whose parameters have required fields need the parameters object itself.
            let required = parameters
                .get("required")
                .is_some_and(|r| r.as_array().is_some_and(|r| !r.is_empty()));
            let mut alternative = json!({
                "title": title(name),
                "properties": {
                    "command": { "const": name },
                    "parameters": parameters,
                },
            });
            // `command` required here too (it is at the top already): generated types then
            // tell the alternatives apart by it, so that narrowing on the name types the
            // parameters.
            alternative["required"] = if required {
                json!(["command", "parameters"])
            } else {
                json!(["command"])
            };
            alternatives.push(alternative);
        }
        json_schema!({
            "type": "object",
            "description": "A command for one device. `command` is one of the protocol's six; \
                            the parameters are those of that command.",
            "required": ["command_id", "device_id", "command", "timestamp"],
            "properties": {
                "command_id": command_id,
                "device_id": device_id,
                "command": {
                    "type": "string",
                    "enum": Action::NAMES,
                    "description": "The action: one of the protocol's commands.",
                },
                "parameters": { "type": ["object", "null"] },
                "timestamp": timestamp,
            },
            "oneOf": alternatives,
        })
    }
}

/// `set_pump` as `SetPump`: the name a code generator gives an alternative.
fn title(name: &str) -> String {
    name.split('_')
        .map(|word| {
            let mut chars = word.chars();
            chars.next().map_or_else(String::new, |first| {
                first.to_ascii_uppercase().to_string() + chars.as_str()
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    //! The decoder describes each message twice more than its types do: the wire structs serde
    //! reads, and the tables of fields with which it explains a refusal (`check::explain`). These
    //! tests hold the tables to the JSON Schemas generated from the types, so that a field added,
    //! renamed or made optional in one place and not the other fails here.

    use schemars::generate::SchemaSettings;

    use super::*;
    use crate::message::check::{Field, Ty};
    use crate::message::{
        ALERT_SHAPE, Alert, COMMAND_SHAPE, CONFIG_SHAPE, CommandResponse, Config, RESPONSE_SHAPE,
        STATUS_SHAPE, Status, TELEMETRY_SHAPE, Telemetry,
    };

    /// `schema` with a `$ref` into the root's `$defs` followed.
    fn resolve<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(target) => {
                let name = target.strip_prefix("#/$defs/").expect("a local reference");
                resolve(root, &root["$defs"][name])
            }
            None => schema,
        }
    }

    /// The JSON types `schema` allows besides `null` (which the decoder reads as absent),
    /// through references and `anyOf`.
    fn types(root: &Value, schema: &Value) -> Vec<String> {
        let schema = resolve(root, schema);
        let mut out = Vec::new();
        match schema.get("type") {
            Some(Value::String(ty)) => out.push(ty.clone()),
            Some(Value::Array(tys)) => {
                out.extend(tys.iter().filter_map(Value::as_str).map(String::from))
            }
            _ => {}
        }
        for alternative in schema
            .get("anyOf")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            out.extend(types(root, alternative));
        }
        out.retain(|ty| ty != "null");
        out.sort();
        out.dedup();
        out
    }

    /// The object schema among `schema`'s alternatives (an optional object is `anyOf` it and
    /// `null`).
    fn object<'a>(root: &'a Value, schema: &'a Value) -> &'a Value {
        let schema = resolve(root, schema);
        match schema.get("anyOf").and_then(Value::as_array) {
            Some(alternatives) => alternatives
                .iter()
                .map(|a| resolve(root, a))
                .find(|a| a.get("type").is_some_and(|t| t != "null"))
                .expect("an object alternative"),
            None => schema,
        }
    }

    fn agree(root: &Value, schema: &Value, ty: Ty, path: &str) -> Result<(), String> {
        let found = types(root, schema);
        let expected: &[&str] = match ty {
            Ty::Str => &["string"],
            Ty::Num => &["integer", "number"],
            Ty::Bool => &["boolean"],
            Ty::Obj(_) | Ty::MapOf(_) | Ty::AnyObj => &["object"],
        };
        if found.is_empty() || !found.iter().all(|t| expected.contains(&t.as_str())) {
            return Err(format!(
                "{path}: the table says {expected:?}, the schema {found:?}"
            ));
        }
        match ty {
            Ty::Obj(fields) => fields_agree(root, object(root, schema), fields, path),
            Ty::MapOf(fields) => {
                let values = &object(root, schema)["additionalProperties"];
                fields_agree(root, object(root, values), fields, &format!("{path}.*"))
            }
            Ty::AnyObj => match object(root, schema).get("properties") {
                Some(properties) => Err(format!(
                    "{path}: any object in the table, fields {properties} in the schema"
                )),
                None => Ok(()),
            },
            Ty::Str | Ty::Num | Ty::Bool => Ok(()),
        }
    }

    fn fields_agree(
        root: &Value,
        schema: &Value,
        fields: &[Field],
        path: &str,
    ) -> Result<(), String> {
        let empty = serde_json::Map::new();
        let properties = schema["properties"].as_object().unwrap_or(&empty);
        let required: Vec<&str> = schema["required"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let join = |name: &str| {
            if path.is_empty() {
                String::from(name)
            } else {
                format!("{path}.{name}")
            }
        };
        for field in fields {
            let here = join(field.name);
            let Some(property) = properties.get(field.name) else {
                return Err(format!("{here}: in the table, not in the schema"));
            };
            if field.required != required.contains(&field.name) {
                return Err(format!(
                    "{here}: required {} in the table, {} in the schema",
                    field.required,
                    required.contains(&field.name)
                ));
            }
            agree(root, property, field.ty, &here)?;
        }
        for name in properties.keys() {
            if !fields.iter().any(|f| f.name == name) {
                return Err(format!("{}: in the schema, not in the table", join(name)));
            }
        }
        Ok(())
    }

    fn root<T: JsonSchema>() -> Value {
        SchemaSettings::draft2020_12()
            .into_generator()
            .into_root_schema_for::<T>()
            .to_value()
    }

    #[test]
    fn the_walker_tables_agree_with_the_schemas() {
        let messages: [(&str, Value, &[Field]); 6] = [
            ("telemetry", root::<Telemetry>(), TELEMETRY_SHAPE),
            ("commands", root::<Command>(), COMMAND_SHAPE),
            (
                "command_response",
                root::<CommandResponse>(),
                RESPONSE_SHAPE,
            ),
            ("status", root::<Status>(), STATUS_SHAPE),
            ("config", root::<Config>(), CONFIG_SHAPE),
            ("alert", root::<Alert>(), ALERT_SHAPE),
        ];
        for (kind, root, table) in messages {
            if let Err(drift) = agree(&root, &root, Ty::Obj(table), "") {
                panic!("{kind}: {drift}");
            }
        }
    }

    // The comparison itself finds each kind of drift.
    #[test]
    fn a_drifted_table_is_caught() {
        const OPTIONAL: &[Field] = &[Field::opt("status", Ty::Str)];
        const NUMBER: &[Field] = &[Field::req("status", Ty::Num)];
        const UNKNOWN: &[Field] = &[Field::req("mood", Ty::Str)];
        const FLAT: &[Field] = &[
            Field::req("device_id", Ty::Str),
            Field::req("config", Ty::AnyObj),
        ];
        let status = root::<Status>();
        let cases: [(&[Field], &str); 4] = [
            (
                &STATUS_SHAPE[1..],
                "status: in the schema, not in the table",
            ),
            (
                OPTIONAL,
                "status: required false in the table, true in the schema",
            ),
            (
                NUMBER,
                r#"status: the table says ["integer", "number"], the schema ["string"]"#,
            ),
            (UNKNOWN, "mood: in the table, not in the schema"),
        ];
        for (table, drift) in cases {
            assert_eq!(
                agree(&status, &status, Ty::Obj(table), ""),
                Err(String::from(drift))
            );
        }
        let config = root::<Config>();
        assert!(
            agree(&config, &config, Ty::Obj(FLAT), "")
                .is_err_and(|e| e.starts_with("config: any object in the table, fields"))
        );
    }

    // The parameters of every command are described, in the order of the protocol's names.
    #[test]
    fn every_command_has_its_parameters() {
        let names: Vec<&str> = PARAMETERS.iter().map(|(name, _)| *name).collect();
        assert_eq!(names, Action::NAMES);
        let mut generator = SchemaSettings::draft2020_12().into_generator();
        assert!(command_parameters("dance", &mut generator).is_none());
    }
}
