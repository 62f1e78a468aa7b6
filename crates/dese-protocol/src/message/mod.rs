//! The six messages of the protocol, as typed values.

use alloc::string::String;

use crate::kind::MessageKind;
use crate::topic::Topic;

/// Defines an enumeration carried on the wire as one of a fixed set of strings.
macro_rules! named_enum {
    ($(#[$doc:meta])* $name:ident { $($(#[$vdoc:meta])* $variant:ident = $wire:literal,)+ }) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub enum $name {
            $($(#[$vdoc])* $variant,)+
        }

        impl $name {
            /// The name on the wire.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $wire,)+
                }
            }
        }

        impl crate::message::check::Named for $name {
            const NAMES: &'static [&'static str] = &[$($wire),+];
            const ALL: &'static [Self] = &[$(Self::$variant),+];
        }

        impl core::fmt::Display for $name {
            fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
                f.pad(self.as_str())
            }
        }

        impl core::str::FromStr for $name {
            type Err = crate::error::Problem;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                crate::message::check::one_of(s, "").map_err(|fault| fault.problem)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
    };
}

pub(crate) mod check;

mod alert;
mod command;
mod config;
mod response;
mod sensor;
mod status;
mod telemetry;

pub use alert::{ALERT_MESSAGE_MAX, Alert, Severity};
pub use command::{Action, Command, PumpState, UNKNOWN_COMMAND_MAX};
pub use config::{Calibration, Config, DeviceConfig, Threshold};
pub use response::{CommandResponse, ERROR_MAX};
pub use sensor::{Sensor, SensorName, SensorNameError};
pub use status::{DeviceState, Status};
pub use telemetry::{FIRMWARE_VERSION_MAX, Metadata, Sensors, Telemetry};

pub(crate) use alert::{SHAPE as ALERT_SHAPE, Wire as AlertWire};
pub(crate) use command::{SHAPE as COMMAND_SHAPE, Wire as CommandWire};
pub(crate) use config::{SHAPE as CONFIG_SHAPE, Wire as ConfigWire};
pub(crate) use response::{SHAPE as RESPONSE_SHAPE, Wire as ResponseWire};
pub(crate) use status::{SHAPE as STATUS_SHAPE, Wire as StatusWire};
pub(crate) use telemetry::{SHAPE as TELEMETRY_SHAPE, Wire as TelemetryWire};

/// A JSON object, as carried by `command_response.response` and unknown commands' parameters.
pub type JsonObject = serde_json::Map<String, serde_json::Value>;

/// Any of the six messages.
///
/// ```
/// use dese_protocol::{Message, MessageKind, decode};
///
/// let payload = br#"{"severity":"info","message":"filter cleaned","timestamp":"2025-01-27T10:00:00Z"}"#;
/// let message = decode("devices/org/dev/alert", payload)?.message;
/// assert_eq!(message.kind(), MessageKind::Alert);
/// match message {
///     Message::Alert(alert) => assert_eq!(alert.message, "filter cleaned"),
///     other => panic!("unexpected {other:?}"),
/// }
/// # Ok::<(), dese_protocol::DecodeError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum Message {
    /// Sensor readings.
    Telemetry(Telemetry),
    /// An action for the device.
    Command(Command),
    /// The outcome of a command.
    CommandResponse(CommandResponse),
    /// The device's state (retained).
    Status(Status),
    /// Settings for the device.
    Config(Config),
    /// A condition that needs attention.
    Alert(Alert),
}

impl Message {
    /// The kind of this message, which is the last level of its topic.
    pub const fn kind(&self) -> MessageKind {
        match self {
            Self::Telemetry(_) => MessageKind::Telemetry,
            Self::Command(_) => MessageKind::Commands,
            Self::CommandResponse(_) => MessageKind::CommandResponse,
            Self::Status(_) => MessageKind::Status,
            Self::Config(_) => MessageKind::Config,
            Self::Alert(_) => MessageKind::Alert,
        }
    }
}

macro_rules! from_message {
    ($($variant:ident),+) => {$(
        impl From<$variant> for Message {
            fn from(m: $variant) -> Self {
                Self::$variant(m)
            }
        }
    )+};
}
from_message!(Telemetry, Command, CommandResponse, Status, Config, Alert);

/// A decoded message with the topic it arrived on.
///
/// ```
/// use dese_protocol::decode;
///
/// let payload = br#"{"status":"offline","firmware_version":"1.0.0","timestamp":"2025-01-27T10:00:00Z"}"#;
/// let envelope = decode("devices/org-123/esp32-001/status", payload)?;
/// assert_eq!(envelope.topic.device(), "esp32-001");
/// # Ok::<(), dese_protocol::DecodeError>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// The topic: organization, device and kind.
    pub topic: Topic,
    /// The payload, typed.
    pub message: Message,
}
