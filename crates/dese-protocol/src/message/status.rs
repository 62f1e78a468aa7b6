//! `status`: the device's state, retained, device to backend.

use alloc::borrow::Cow;
use alloc::string::String;

use serde::{Deserialize, Serialize};
use serde_json::Number;

use crate::error::Fault;
use crate::message::check::{self, Field, Ty, integer, one_of};
use crate::message::telemetry::FIRMWARE_VERSION_MAX;
use crate::time::Timestamp;
use crate::value::{Battery, SignalStrength};

named_enum!(
    /// The `status` field.
    ///
    /// ```
    /// use dese_protocol::DeviceState;
    ///
    /// assert_eq!("maintenance".parse(), Ok(DeviceState::Maintenance));
    /// assert!("sleeping".parse::<DeviceState>().is_err());
    /// ```
    DeviceState {
        /// `online`: running normally.
        Online = "online",
        /// `offline`: gone; also the device's last will.
        Offline = "offline",
        /// `error`: running with a fault.
        Error = "error",
        /// `maintenance`: deliberately out of service.
        Maintenance = "maintenance",
    }
);

/// A device's state. Published retained, so the broker hands the last one to every new
/// subscriber; the device's last will is an `offline` status.
///
/// # Examples
///
/// ```
/// use dese_protocol::{DeviceState, Message, decode};
///
/// let payload = br#"{"status":"online","firmware_version":"1.0.0","timestamp":"2025-01-27T10:00:00Z"}"#;
/// let envelope = decode("devices/org-123/esp32-001/status", payload)?;
/// let Message::Status(status) = envelope.message else { unreachable!() };
/// assert_eq!(status.status, DeviceState::Online);
/// # Ok::<(), dese_protocol::DecodeError>(())
/// ```
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Status {
    /// Online, offline, error or maintenance.
    pub status: DeviceState,
    /// Battery level, percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub battery: Option<Battery>,
    /// WiFi RSSI, dBm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal_strength: Option<SignalStrength>,
    /// Firmware version: 1 to 64 bytes of text.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::FirmwareVersion"))]
    pub firmware_version: String,
    /// When the state was reported.
    pub timestamp: Timestamp,
}

#[derive(Deserialize)]
pub(crate) struct Wire<'a> {
    #[serde(borrow)]
    status: Cow<'a, str>,
    battery: Option<Number>,
    signal_strength: Option<Number>,
    firmware_version: String,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
}

pub(crate) const SHAPE: &[Field] = &[
    Field::req("status", Ty::Str),
    Field::opt("battery", Ty::Num),
    Field::opt("signal_strength", Ty::Num),
    Field::req("firmware_version", Ty::Str),
    Field::req("timestamp", Ty::Str),
];

impl Status {
    pub(crate) fn from_wire(w: Wire<'_>) -> Result<Self, Fault> {
        Ok(Self {
            status: one_of(&w.status, "status")?,
            battery: w
                .battery
                .map(|n| integer(&n, "battery", Battery::RANGE, Battery::new))
                .transpose()?,
            signal_strength: w
                .signal_strength
                .map(|n| {
                    integer(
                        &n,
                        "signal_strength",
                        SignalStrength::RANGE,
                        SignalStrength::new,
                    )
                })
                .transpose()?,
            firmware_version: check::text(
                w.firmware_version,
                FIRMWARE_VERSION_MAX,
                "firmware_version",
            )?,
            timestamp: check::timestamp(&w.timestamp, "timestamp")?,
        })
    }

    pub(crate) fn check_text(&self) -> Result<(), Fault> {
        check::text_ref(
            &self.firmware_version,
            FIRMWARE_VERSION_MAX,
            "firmware_version",
        )
    }
}
