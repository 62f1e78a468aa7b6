#![doc = include_str!("../README.md")]
#![no_std]
#![forbid(unsafe_code)]
#![cfg_attr(docsrs, feature(doc_auto_cfg))]

#[cfg(feature = "alloc")]
extern crate alloc;
#[cfg(any(feature = "std", test))]
extern crate std;

pub mod id;
mod kind;
mod printable;
mod text;
mod time;
mod value;

pub use id::{IdError, IdKind, IdProblem};
pub use kind::{Direction, MessageKind, QoS, UnknownKind};
pub use printable::Printable;
pub use text::head;
#[cfg(feature = "alloc")]
pub use text::shortened;
pub use time::{Timestamp, TimestampError};
pub use value::{
    Battery, Celsius, Finite, FlowRate, Keepalive, Num, Ph, Ppm, Range, RangeError, Scale,
    SignalStrength, TelemetryInterval,
};

#[cfg(feature = "alloc")]
mod codec;
#[cfg(feature = "alloc")]
mod error;
#[cfg(feature = "alloc")]
mod message;
#[cfg(feature = "schema")]
pub mod schema;
#[cfg(feature = "alloc")]
pub mod topic;

#[cfg(feature = "alloc")]
pub use codec::{Decoder, Limits, TELEMETRY_BUDGET, decode, encode, validate};
#[cfg(feature = "alloc")]
pub use error::{
    DecodeError, EncodeError, FieldPath, Invalid, JsonSyntax, JsonType, Problem, Reason,
};
#[cfg(feature = "alloc")]
pub use id::{CommandId, DeviceId, OrgId, ShareGroup};
#[cfg(feature = "alloc")]
pub use message::{
    ALERT_MESSAGE_MAX, Action, Alert, Calibration, Command, CommandResponse, Config, DeviceConfig,
    DeviceState, ERROR_MAX, Envelope, FIRMWARE_VERSION_MAX, JsonObject, Message, Metadata,
    PumpState, Sensor, SensorName, SensorNameError, Sensors, Severity, Status, Telemetry,
    Threshold, UNKNOWN_COMMAND_MAX,
};
/// The JSON library this crate decodes with, re-exported so that [`JsonObject`] values can be
/// built with the same version.
#[cfg(feature = "alloc")]
pub use serde_json;
#[cfg(feature = "alloc")]
pub use topic::{Topic, TopicError, TopicFilter};
