//! `telemetry`: sensor readings, device to backend.

use alloc::string::String;

use serde::{Deserialize, Serialize};
use serde_json::Number;

use crate::error::Fault;
use crate::id::{DeviceId, IdKind, OrgId};
use crate::message::check::{self, Field, Object, Ty, int_range, integer, number};
use crate::time::Timestamp;
use crate::topic::Topic;
use crate::value::{Battery, Celsius, FlowRate, Ph, Ppm, SignalStrength};

/// The longest `firmware_version`, in bytes.
pub const FIRMWARE_VERSION_MAX: usize = 64;

/// Sensor readings of one device at one time.
///
/// The payload's `device_id` and `organization_id` must equal the topic's.
///
/// # Examples
///
/// ```
/// use dese_protocol::{Message, decode};
///
/// let payload = br#"{
///   "device_id": "esp32-001", "timestamp": "2025-01-27T10:00:00Z", "organization_id": "org-123",
///   "sensors": {"ph": 7.2, "chlorine": 2.5, "temperature": 25.5},
///   "metadata": {"firmware_version": "1.0.0"}
/// }"#;
/// let envelope = decode("devices/org-123/esp32-001/telemetry", payload)?;
/// let Message::Telemetry(t) = envelope.message else { unreachable!() };
/// assert_eq!(t.sensors.ph.get(), 7.2);
/// assert_eq!(t.sensors.orp, None);
/// # Ok::<(), dese_protocol::DecodeError>(())
/// ```
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Telemetry {
    /// The sending device; equals the topic's.
    pub device_id: DeviceId,
    /// When the readings were taken.
    pub timestamp: Timestamp,
    /// The device's organization; equals the topic's.
    pub organization_id: OrgId,
    /// The readings.
    pub sensors: Sensors,
    /// Battery, signal and firmware.
    pub metadata: Metadata,
}

/// The readings of a telemetry message.
///
/// ```
/// use dese_protocol::{Celsius, Ph, Ppm, Sensors};
///
/// let sensors = Sensors {
///     ph: Ph::new(7.2)?,
///     chlorine: Ppm::new(2.5)?,
///     temperature: Celsius::new(25.5)?,
///     orp: Some(650),
///     tds: None,
///     flow_rate: None,
/// };
/// assert_eq!(sensors.ph.get(), 7.2);
/// # Ok::<(), dese_protocol::RangeError>(())
/// ```
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Sensors {
    /// pH, 0 to 14.
    pub ph: Ph,
    /// Free chlorine, ppm.
    pub chlorine: Ppm,
    /// Water temperature, °C.
    pub temperature: Celsius,
    /// Oxidation-reduction potential, mV (may be negative).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<crate::schema::Orp>"))]
    pub orp: Option<i32>,
    /// Total dissolved solids, ppm.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "schema", schemars(with = "Option<crate::schema::Uint32>"))]
    pub tds: Option<u32>,
    /// Flow, litres per minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flow_rate: Option<FlowRate>,
}

/// Device metadata sent with telemetry.
///
/// ```
/// use dese_protocol::{Battery, Metadata};
///
/// let metadata = Metadata {
///     battery: Some(Battery::new(85)?),
///     signal_strength: None,
///     firmware_version: "1.0.0".into(),
/// };
/// assert_eq!(metadata.battery.map(Battery::get), Some(85));
/// # Ok::<(), dese_protocol::RangeError>(())
/// ```
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metadata {
    /// Battery level, percent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub battery: Option<Battery>,
    /// WiFi RSSI, dBm.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal_strength: Option<SignalStrength>,
    /// Firmware version: 1 to 64 bytes of text.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::FirmwareVersion"))]
    pub firmware_version: String,
}

#[derive(Deserialize)]
pub(crate) struct Wire<'a> {
    device_id: String,
    #[serde(borrow)]
    timestamp: alloc::borrow::Cow<'a, str>,
    organization_id: String,
    sensors: Object<SensorsWire>,
    metadata: Object<MetadataWire>,
}

#[derive(Deserialize)]
struct SensorsWire {
    ph: f64,
    chlorine: f64,
    temperature: f64,
    orp: Option<Number>,
    tds: Option<Number>,
    flow_rate: Option<f64>,
}

#[derive(Deserialize)]
struct MetadataWire {
    battery: Option<Number>,
    signal_strength: Option<Number>,
    firmware_version: String,
}

const SENSORS: &[Field] = &[
    Field::req("ph", Ty::Num),
    Field::req("chlorine", Ty::Num),
    Field::req("temperature", Ty::Num),
    Field::opt("orp", Ty::Num),
    Field::opt("tds", Ty::Num),
    Field::opt("flow_rate", Ty::Num),
];

const METADATA: &[Field] = &[
    Field::opt("battery", Ty::Num),
    Field::opt("signal_strength", Ty::Num),
    Field::req("firmware_version", Ty::Str),
];

pub(crate) const SHAPE: &[Field] = &[
    Field::req("device_id", Ty::Str),
    Field::req("timestamp", Ty::Str),
    Field::req("organization_id", Ty::Str),
    Field::req("sensors", Ty::Obj(SENSORS)),
    Field::req("metadata", Ty::Obj(METADATA)),
];

impl Telemetry {
    pub(crate) fn from_wire(w: Wire<'_>, topic: &Topic) -> Result<Self, Fault> {
        let device_id = check::device_of(w.device_id, topic)?;
        let timestamp = check::timestamp(&w.timestamp, "timestamp")?;
        let organization_id = check::id(
            w.organization_id,
            "organization_id",
            IdKind::Organization,
            OrgId::from_checked,
        )?;
        check::same_as_topic(&organization_id, topic.org(), "organization_id")?;
        let s = w.sensors.0;
        let sensors = Sensors {
            ph: number(s.ph, "sensors.ph", Ph::new)?,
            chlorine: number(s.chlorine, "sensors.chlorine", Ppm::new)?,
            temperature: number(s.temperature, "sensors.temperature", Celsius::new)?,
            orp: match s.orp {
                Some(n) => {
                    let (range, new) = int_range::<i32>(i32::MIN.into(), i32::MAX.into());
                    Some(integer(&n, "sensors.orp", range, new)?)
                }
                None => None,
            },
            tds: match s.tds {
                Some(n) => {
                    let (range, new) = int_range::<u32>(0, u32::MAX.into());
                    Some(integer(&n, "sensors.tds", range, new)?)
                }
                None => None,
            },
            flow_rate: s
                .flow_rate
                .map(|v| number(v, "sensors.flow_rate", FlowRate::new))
                .transpose()?,
        };
        let m = w.metadata.0;
        let metadata = Metadata {
            battery: m
                .battery
                .map(|n| integer(&n, "metadata.battery", Battery::RANGE, Battery::new))
                .transpose()?,
            signal_strength: m
                .signal_strength
                .map(|n| {
                    integer(
                        &n,
                        "metadata.signal_strength",
                        SignalStrength::RANGE,
                        SignalStrength::new,
                    )
                })
                .transpose()?,
            firmware_version: check::text(
                m.firmware_version,
                FIRMWARE_VERSION_MAX,
                "metadata.firmware_version",
            )?,
        };
        Ok(Self {
            device_id,
            timestamp,
            organization_id,
            sensors,
            metadata,
        })
    }

    pub(crate) fn check_text(&self) -> Result<(), Fault> {
        check::text_ref(
            &self.metadata.firmware_version,
            FIRMWARE_VERSION_MAX,
            "metadata.firmware_version",
        )
    }
}
