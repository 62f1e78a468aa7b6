//! `config`: settings for the device, backend to device.

use alloc::borrow::Cow;
use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::String;

use serde::{Deserialize, Serialize};
use serde_json::Number;

use crate::error::{Fault, FieldPath, Problem};
use crate::id::DeviceId;
use crate::message::check::{self, Field, Object, Ty, integer, number, shorten};
use crate::message::sensor::Sensor;
use crate::time::Timestamp;
use crate::topic::Topic;
use crate::value::{Finite, Keepalive, Scale, TelemetryInterval};

/// New settings for one device. The payload's `device_id` must equal the topic's.
///
/// # Examples
///
/// ```
/// use dese_protocol::{Message, Sensor, decode};
///
/// let payload = br#"{"device_id":"esp32-001","timestamp":"2025-01-27T10:00:00Z",
///   "config":{"telemetry_interval":30000,"sensor_calibration":{"ph":{"offset":0.2,"scale":1.0}},
///             "alert_thresholds":{"ph":{"min":6.8,"max":7.8}}}}"#;
/// let Message::Config(c) = decode("devices/org-123/esp32-001/config", payload)?.message else {
///     unreachable!()
/// };
/// assert_eq!(c.config.telemetry_interval.map(|i| i.get()), Some(30_000));
/// let ph = &c.config.sensor_calibration.as_ref().unwrap()[&Sensor::Ph];
/// assert!((ph.apply(7.0) - 7.2).abs() < 1e-9);
/// # Ok::<(), dese_protocol::DecodeError>(())
/// ```
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// The target device; equals the topic's.
    pub device_id: DeviceId,
    /// The settings; absent ones stay as they are.
    pub config: DeviceConfig,
    /// When the backend issued them.
    pub timestamp: Timestamp,
}

/// The settings a config message carries. Every field is optional: a device changes only what
/// is given.
///
/// ```
/// use dese_protocol::{DeviceConfig, TelemetryInterval};
///
/// let config = DeviceConfig {
///     telemetry_interval: Some(TelemetryInterval::new(10_000)?),
///     ..DeviceConfig::default()
/// };
/// assert!(config.mqtt_keepalive.is_none());
/// # Ok::<(), dese_protocol::RangeError>(())
/// ```
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct DeviceConfig {
    /// Telemetry period, milliseconds (100 ms to 24 h).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub telemetry_interval: Option<TelemetryInterval>,
    /// MQTT keepalive, seconds (1 to 65535).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mqtt_keepalive: Option<Keepalive>,
    /// Per-sensor calibration.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<crate::schema::SensorMap<Calibration>>")
    )]
    pub sensor_calibration: Option<BTreeMap<Sensor, Calibration>>,
    /// Per-sensor alert thresholds.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<crate::schema::SensorMap<Threshold>>")
    )]
    pub alert_thresholds: Option<BTreeMap<Sensor, Threshold>>,
}

/// A linear correction applied to a sensor's raw reading: `raw * scale + offset`.
///
/// On the wire both fields are optional, defaulting to offset 0 and scale 1.
///
/// ```
/// use dese_protocol::{Calibration, Finite, Scale};
///
/// let c = Calibration { offset: Finite::new(0.5)?, scale: Scale::new(2.0)? };
/// assert_eq!(c.apply(3.0), 6.5);
/// assert_eq!(Calibration::IDENTITY.apply(3.0), 3.0);
/// # Ok::<(), dese_protocol::RangeError>(())
/// ```
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Calibration {
    /// Added after scaling.
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<Finite>", default = "crate::schema::zero")
    )]
    pub offset: Finite,
    /// Multiplies the raw reading; greater than zero.
    #[cfg_attr(
        feature = "schema",
        schemars(with = "Option<Scale>", default = "crate::schema::one")
    )]
    pub scale: Scale,
}

impl Calibration {
    /// No correction: offset 0, scale 1.
    pub const IDENTITY: Self = Self {
        offset: match Finite::new(0.0) {
            Ok(v) => v,
            Err(_) => panic!(),
        },
        scale: match Scale::new(1.0) {
            Ok(v) => v,
            Err(_) => panic!(),
        },
    };

    /// The corrected value of a raw reading.
    pub fn apply(&self, raw: f64) -> f64 {
        raw * self.scale.get() + self.offset.get()
    }
}

/// The band a sensor's reading should stay in; a reading outside raises an alert. Either
/// bound may be absent; when both are given, `min` is at most `max`.
///
/// ```
/// use dese_protocol::{Finite, Threshold};
///
/// let chlorine = Threshold { min: None, max: Some(Finite::new(3.0)?) };
/// assert!(chlorine.min.is_none());
/// # Ok::<(), dese_protocol::RangeError>(())
/// ```
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Threshold {
    /// Alert below this value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<Finite>,
    /// Alert above this value.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<Finite>,
}

#[derive(Deserialize)]
pub(crate) struct Wire<'a> {
    device_id: String,
    config: Object<ConfigWire>,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
}

#[derive(Deserialize)]
struct ConfigWire {
    telemetry_interval: Option<Number>,
    mqtt_keepalive: Option<Number>,
    sensor_calibration: Option<BTreeMap<String, Object<CalibrationWire>>>,
    alert_thresholds: Option<BTreeMap<String, Object<ThresholdWire>>>,
}

#[derive(Deserialize)]
struct CalibrationWire {
    offset: Option<f64>,
    scale: Option<f64>,
}

#[derive(Deserialize)]
struct ThresholdWire {
    min: Option<f64>,
    max: Option<f64>,
}

const CALIBRATION: &[Field] = &[Field::opt("offset", Ty::Num), Field::opt("scale", Ty::Num)];
const THRESHOLD: &[Field] = &[Field::opt("min", Ty::Num), Field::opt("max", Ty::Num)];
const DEVICE_CONFIG: &[Field] = &[
    Field::opt("telemetry_interval", Ty::Num),
    Field::opt("mqtt_keepalive", Ty::Num),
    Field::opt("sensor_calibration", Ty::MapOf(CALIBRATION)),
    Field::opt("alert_thresholds", Ty::MapOf(THRESHOLD)),
];

pub(crate) const SHAPE: &[Field] = &[
    Field::req("device_id", Ty::Str),
    Field::req("config", Ty::Obj(DEVICE_CONFIG)),
    Field::req("timestamp", Ty::Str),
];

impl Config {
    pub(crate) fn from_wire(w: Wire<'_>, topic: &Topic) -> Result<Self, Fault> {
        let device_id = check::device_of(w.device_id, topic)?;
        let c = w.config.0;
        let config = DeviceConfig {
            telemetry_interval: c
                .telemetry_interval
                .map(|n| {
                    integer(
                        &n,
                        "config.telemetry_interval",
                        TelemetryInterval::RANGE,
                        TelemetryInterval::new,
                    )
                })
                .transpose()?,
            mqtt_keepalive: c
                .mqtt_keepalive
                .map(|n| {
                    integer(
                        &n,
                        "config.mqtt_keepalive",
                        Keepalive::RANGE,
                        Keepalive::new,
                    )
                })
                .transpose()?,
            sensor_calibration: c
                .sensor_calibration
                .map(|map| per_sensor(map, "config.sensor_calibration", calibration))
                .transpose()?,
            alert_thresholds: c
                .alert_thresholds
                .map(|map| per_sensor(map, "config.alert_thresholds", threshold))
                .transpose()?,
        };
        Ok(Self {
            device_id,
            config,
            timestamp: check::timestamp(&w.timestamp, "timestamp")?,
        })
    }
}

impl Config {
    /// What the decoder would refuse and the types cannot rule out: a calibration or
    /// threshold for a sensor the protocol does not list.
    pub(crate) fn check_text(&self) -> Result<(), Fault> {
        let c = &self.config;
        let calibrated = c.sensor_calibration.iter().flat_map(|m| m.keys());
        let bounded = c.alert_thresholds.iter().flat_map(|m| m.keys());
        let named = calibrated
            .map(|s| ("config.sensor_calibration", s))
            .chain(bounded.map(|s| ("config.alert_thresholds", s)));
        for (path, sensor) in named {
            if !sensor.is_known() {
                return Err(Fault {
                    path: FieldPath::of(path),
                    problem: Problem::NotOneOf {
                        got: shorten(sensor.as_str()),
                        expected: &Sensor::KNOWN_NAMES,
                    },
                });
            }
        }
        Ok(())
    }
}

fn per_sensor<W, T>(
    map: BTreeMap<String, W>,
    path: &'static str,
    read: fn(W, &str) -> Result<T, Fault>,
) -> Result<BTreeMap<Sensor, T>, Fault> {
    map.into_iter()
        .map(|(key, value)| {
            // Only the protocol's sensors: a device keeps one entry per sensor, and names it
            // has never heard of must not grow its memory.
            let sensor = Sensor::known(&key).ok_or_else(|| Fault {
                path: FieldPath::of(path),
                problem: Problem::NotOneOf {
                    got: shorten(&key),
                    expected: &Sensor::KNOWN_NAMES,
                },
            })?;
            let here = format!("{path}.{key}");
            Ok((sensor, read(value, &here)?))
        })
        .collect()
}

fn calibration(Object(w): Object<CalibrationWire>, path: &str) -> Result<Calibration, Fault> {
    let mut out = Calibration::IDENTITY;
    if let Some(offset) = w.offset {
        out.offset = number(offset, format!("{path}.offset"), Finite::new)?;
    }
    if let Some(scale) = w.scale {
        out.scale = number(scale, format!("{path}.scale"), Scale::new)?;
    }
    Ok(out)
}

fn threshold(Object(w): Object<ThresholdWire>, path: &str) -> Result<Threshold, Fault> {
    let min = w
        .min
        .map(|v| number(v, format!("{path}.min"), Finite::new))
        .transpose()?;
    let max = w
        .max
        .map(|v| number(v, format!("{path}.max"), Finite::new))
        .transpose()?;
    if let (Some(lo), Some(hi)) = (min, max) {
        if lo.get() > hi.get() {
            return Err(Fault {
                path: FieldPath::owned(String::from(path)),
                problem: Problem::MinAboveMax {
                    min: lo.get(),
                    max: hi.get(),
                },
            });
        }
    }
    Ok(Threshold { min, max })
}
