//! `commands`: an action for the device, backend to device.

use alloc::borrow::Cow;
use alloc::string::String;

use serde::ser::{SerializeMap, SerializeStruct};
use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Number, Value};

use crate::error::{Fault, JsonType, Problem};
use crate::id::{CommandId, DeviceId, IdKind};
use crate::message::JsonObject;
use crate::message::check::{self, Field, Ty, int_range, integer, number, one_of};
use crate::message::sensor::Sensor;
use crate::time::Timestamp;
use crate::topic::Topic;
use crate::value::{Finite, Ph, Ppm};

/// The longest name of a command this crate does not know, in bytes.
pub const UNKNOWN_COMMAND_MAX: usize = 64;

/// A command for one device.
///
/// On the wire the action is two fields, `command` (its name) and `parameters`; here it is one
/// typed [`Action`]. The payload's `device_id` must equal the topic's.
///
/// # Examples
///
/// ```
/// use dese_protocol::{Action, Command, CommandId, DeviceId, PumpState, Timestamp, encode};
///
/// let command = Command {
///     command_id: CommandId::parse("cmd-1")?,
///     device_id: DeviceId::parse("esp32-001")?,
///     action: Action::SetPump { pump_id: 1, state: PumpState::On, duration: Some(3600) },
///     timestamp: "2025-01-27T10:00:00Z".parse()?,
/// };
/// let json = encode(&command.into())?;
/// assert_eq!(
///     std::str::from_utf8(&json)?,
///     r#"{"command_id":"cmd-1","device_id":"esp32-001","command":"set_pump","parameters":{"pump_id":1,"state":"on","duration":3600},"timestamp":"2025-01-27T10:00:00Z"}"#
/// );
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Command {
    /// Correlates the command with its response; kept when the backend retries.
    pub command_id: CommandId,
    /// The target device; equals the topic's.
    pub device_id: DeviceId,
    /// What to do.
    pub action: Action,
    /// When the backend issued the command.
    pub timestamp: Timestamp,
}

/// What a command asks the device to do: the six commands of the protocol with their
/// parameters, or one this crate does not know.
///
/// ```
/// use dese_protocol::{Action, Ph};
///
/// let action = Action::SetPhTarget { target_ph: Ph::new(7.4)? };
/// assert_eq!(action.name(), "set_ph_target");
/// let unknown = Action::Unknown { name: "dance".into(), parameters: None };
/// assert_eq!(unknown.name(), "dance");
/// # Ok::<(), dese_protocol::RangeError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Action {
    /// `set_pump`: switch a pump.
    SetPump {
        /// Which pump.
        pump_id: u32,
        /// On or off.
        state: PumpState,
        /// How long, in seconds; `None` for no limit.
        duration: Option<u32>,
    },
    /// `set_ph_target`: the pH to regulate to.
    SetPhTarget {
        /// The target, 0 to 14.
        target_ph: Ph,
    },
    /// `set_chlorine_target`: the free chlorine to regulate to.
    SetChlorineTarget {
        /// The target, ppm.
        target_chlorine: Ppm,
    },
    /// `reboot`: restart the device.
    Reboot,
    /// `reset_config`: return to the default configuration.
    ResetConfig,
    /// `calibrate_sensor`: calibrate one sensor against a reference value.
    CalibrateSensor {
        /// The sensor.
        sensor_type: Sensor,
        /// The reference value.
        value: Finite,
    },
    /// A command name this crate does not know. It decodes, so that a device can answer it with
    /// an error response (DESE-C4) and a newer backend can send it.
    Unknown {
        /// The `command` field: 1 to 64 bytes.
        name: String,
        /// The `parameters` field, untouched.
        parameters: Option<JsonObject>,
    },
}

named_enum!(
    /// The `state` parameter of `set_pump`.
    ///
    /// ```
    /// use dese_protocol::PumpState;
    ///
    /// assert_eq!(PumpState::On.as_str(), "on");
    /// assert_eq!("off".parse(), Ok(PumpState::Off));
    /// ```
    PumpState {
        /// `on`.
        On = "on",
        /// `off`.
        Off = "off",
    }
);

/// The command as the protocol writes it: its name, then its parameters as JSON when it has
/// any.
///
/// ```
/// use dese_protocol::{Action, PumpState};
///
/// let pump = Action::SetPump { pump_id: 1, state: PumpState::On, duration: Some(30) };
/// assert_eq!(pump.to_string(), r#"set_pump {"pump_id":1,"state":"on","duration":30}"#);
/// assert_eq!(Action::Reboot.to_string(), "reboot");
/// ```
impl core::fmt::Display for Action {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())?;
        if self.has_parameters() {
            let json = serde_json::to_string(&Parameters(self)).map_err(|_| core::fmt::Error)?;
            if json != "{}" {
                write!(f, " {json}")?;
            }
        }
        Ok(())
    }
}

impl Action {
    /// The names of the protocol's six commands, in the order the protocol lists them.
    ///
    /// ```
    /// use dese_protocol::Action;
    ///
    /// assert_eq!(Action::NAMES[3], Action::Reboot.name());
    /// assert!(!Action::NAMES.contains(&"dance"));
    /// ```
    pub const NAMES: [&'static str; 6] = [
        "set_pump",
        "set_ph_target",
        "set_chlorine_target",
        "reboot",
        "reset_config",
        "calibrate_sensor",
    ];

    /// The `command` field: `set_pump`, `reboot`, or the unknown name.
    pub fn name(&self) -> &str {
        match self {
            Self::SetPump { .. } => "set_pump",
            Self::SetPhTarget { .. } => "set_ph_target",
            Self::SetChlorineTarget { .. } => "set_chlorine_target",
            Self::Reboot => "reboot",
            Self::ResetConfig => "reset_config",
            Self::CalibrateSensor { .. } => "calibrate_sensor",
            Self::Unknown { name, .. } => name,
        }
    }

    fn has_parameters(&self) -> bool {
        match self {
            Self::Reboot | Self::ResetConfig => false,
            Self::Unknown { parameters, .. } => parameters.is_some(),
            _ => true,
        }
    }

    fn read(name: String, parameters: Option<JsonObject>) -> Result<Self, Fault> {
        let empty = JsonObject::new();
        let p = parameters.as_ref().unwrap_or(&empty);
        let action = match name.as_str() {
            "set_pump" => {
                let (range, new) = int_range::<u32>(0, u32::MAX.into());
                let pump_id = integer(
                    int(p, "pump_id", "parameters.pump_id")?,
                    "parameters.pump_id",
                    range,
                    &new,
                )?;
                let state = one_of(string(p, "state", "parameters.state")?, "parameters.state")?;
                let duration = match optional(p, "duration") {
                    Some(v) => Some(integer(
                        as_int(v, "parameters.duration")?,
                        "parameters.duration",
                        range,
                        &new,
                    )?),
                    None => None,
                };
                Self::SetPump {
                    pump_id,
                    state,
                    duration,
                }
            }
            "set_ph_target" => Self::SetPhTarget {
                target_ph: number(
                    float(p, "target_ph", "parameters.target_ph")?,
                    "parameters.target_ph",
                    Ph::new,
                )?,
            },
            "set_chlorine_target" => Self::SetChlorineTarget {
                target_chlorine: number(
                    float(p, "target_chlorine", "parameters.target_chlorine")?,
                    "parameters.target_chlorine",
                    Ppm::new,
                )?,
            },
            "reboot" => Self::Reboot,
            "reset_config" => Self::ResetConfig,
            "calibrate_sensor" => {
                let sensor = string(p, "sensor_type", "parameters.sensor_type")?;
                Self::CalibrateSensor {
                    sensor_type: Sensor::read(sensor, || {
                        crate::error::FieldPath::of("parameters.sensor_type")
                    })?,
                    value: number(
                        float(p, "value", "parameters.value")?,
                        "parameters.value",
                        Finite::new,
                    )?,
                }
            }
            _ => Self::Unknown {
                name: check::text(name, UNKNOWN_COMMAND_MAX, "command")?,
                parameters,
            },
        };
        Ok(action)
    }
}

fn optional<'p>(p: &'p JsonObject, key: &str) -> Option<&'p Value> {
    p.get(key).filter(|v| !v.is_null())
}

fn required<'p>(p: &'p JsonObject, key: &str, path: &'static str) -> Result<&'p Value, Fault> {
    p.get(key).ok_or(Fault::at(path, Problem::Missing))
}

fn wrong(path: &'static str, expected: JsonType, got: &Value) -> Fault {
    Fault::at(
        path,
        Problem::WrongType {
            expected,
            got: JsonType::of(got),
        },
    )
}

fn as_int<'p>(v: &'p Value, path: &'static str) -> Result<&'p Number, Fault> {
    match v {
        Value::Number(n) => Ok(n),
        other => Err(wrong(path, JsonType::Integer, other)),
    }
}

fn int<'p>(p: &'p JsonObject, key: &str, path: &'static str) -> Result<&'p Number, Fault> {
    as_int(required(p, key, path)?, path)
}

fn float(p: &JsonObject, key: &str, path: &'static str) -> Result<f64, Fault> {
    match required(p, key, path)? {
        Value::Number(n) => Ok(n.as_f64().unwrap_or(f64::NAN)),
        other => Err(wrong(path, JsonType::Number, other)),
    }
}

fn string<'p>(p: &'p JsonObject, key: &str, path: &'static str) -> Result<&'p str, Fault> {
    match required(p, key, path)? {
        Value::String(s) => Ok(s),
        other => Err(wrong(path, JsonType::String, other)),
    }
}

#[derive(Deserialize)]
pub(crate) struct Wire<'a> {
    command_id: String,
    device_id: String,
    command: String,
    parameters: Option<JsonObject>,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
}

pub(crate) const SHAPE: &[Field] = &[
    Field::req("command_id", Ty::Str),
    Field::req("device_id", Ty::Str),
    Field::req("command", Ty::Str),
    Field::opt("parameters", Ty::AnyObj),
    Field::req("timestamp", Ty::Str),
];

impl Command {
    pub(crate) fn from_wire(w: Wire<'_>, topic: &Topic) -> Result<Self, Fault> {
        let command_id = check::id(
            w.command_id,
            "command_id",
            IdKind::Command,
            CommandId::from_checked,
        )?;
        let device_id = check::device_of(w.device_id, topic)?;
        let action = Action::read(w.command, w.parameters)?;
        let timestamp = check::timestamp(&w.timestamp, "timestamp")?;
        Ok(Self {
            command_id,
            device_id,
            action,
            timestamp,
        })
    }

    pub(crate) fn check_text(&self) -> Result<(), Fault> {
        match &self.action {
            Action::Unknown { name, .. } => check::text_ref(name, UNKNOWN_COMMAND_MAX, "command"),
            _ => Ok(()),
        }
    }
}

impl Serialize for Command {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let has_parameters = self.action.has_parameters();
        let mut st = s.serialize_struct("Command", 4 + usize::from(has_parameters))?;
        st.serialize_field("command_id", &self.command_id)?;
        st.serialize_field("device_id", &self.device_id)?;
        st.serialize_field("command", self.action.name())?;
        if has_parameters {
            st.serialize_field("parameters", &Parameters(&self.action))?;
        }
        st.serialize_field("timestamp", &self.timestamp)?;
        st.end()
    }
}

struct Parameters<'a>(&'a Action);

impl Serialize for Parameters<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Action::Unknown {
                parameters: Some(p),
                ..
            } => return p.serialize(s),
            Action::Unknown {
                parameters: None, ..
            }
            | Action::Reboot
            | Action::ResetConfig => {
                return s.serialize_map(Some(0))?.end();
            }
            _ => {}
        }
        let mut m = s.serialize_map(None)?;
        match self.0 {
            Action::SetPump {
                pump_id,
                state,
                duration,
            } => {
                m.serialize_entry("pump_id", pump_id)?;
                m.serialize_entry("state", state)?;
                if let Some(duration) = duration {
                    m.serialize_entry("duration", duration)?;
                }
            }
            Action::SetPhTarget { target_ph } => m.serialize_entry("target_ph", target_ph)?,
            Action::SetChlorineTarget { target_chlorine } => {
                m.serialize_entry("target_chlorine", target_chlorine)?;
            }
            Action::CalibrateSensor { sensor_type, value } => {
                m.serialize_entry("sensor_type", sensor_type)?;
                m.serialize_entry("value", value)?;
            }
            Action::Reboot | Action::ResetConfig | Action::Unknown { .. } => {}
        }
        m.end()
    }
}
