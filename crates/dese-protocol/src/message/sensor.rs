//! Sensor names, shared by calibration, thresholds, alerts and `calibrate_sensor`.

use alloc::string::String;
use core::fmt;

use crate::error::{Fault, Problem};
use crate::message::check::shorten;

/// A sensor: the six the protocol's telemetry knows, or another by name, so that a device with
/// a newer sensor (turbidity, say) can still raise alerts and be sent `calibrate_sensor`.
/// Config (`sensor_calibration`, `alert_thresholds`) takes only the six
/// ([`Sensor::KNOWN_NAMES`]).
///
/// # Examples
///
/// ```
/// use dese_protocol::Sensor;
///
/// assert_eq!(Sensor::parse("ph")?, Sensor::Ph);
/// let turbidity = Sensor::parse("turbidity")?;
/// assert_eq!(turbidity.as_str(), "turbidity");
/// assert!(Sensor::parse("not a name").is_err());
/// # Ok::<(), dese_protocol::SensorNameError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Sensor {
    /// `ph`.
    Ph,
    /// `chlorine`.
    Chlorine,
    /// `temperature`.
    Temperature,
    /// `orp`.
    Orp,
    /// `tds`.
    Tds,
    /// `flow_rate`.
    FlowRate,
    /// Any other sensor: 1 to 32 ASCII letters, digits, `_` or `-`.
    Other(SensorName),
}

const KNOWN: [(&str, Sensor); 6] = [
    ("ph", Sensor::Ph),
    ("chlorine", Sensor::Chlorine),
    ("temperature", Sensor::Temperature),
    ("orp", Sensor::Orp),
    ("tds", Sensor::Tds),
    ("flow_rate", Sensor::FlowRate),
];

impl Sensor {
    /// The names of the six sensors the protocol's telemetry knows: the only keys of
    /// `sensor_calibration` and `alert_thresholds`.
    pub const KNOWN_NAMES: [&'static str; 6] =
        ["ph", "chlorine", "temperature", "orp", "tds", "flow_rate"];

    /// One of the six sensors the protocol knows, by name; `None` for any other name.
    ///
    /// ```
    /// use dese_protocol::Sensor;
    ///
    /// assert_eq!(Sensor::known("tds"), Some(Sensor::Tds));
    /// assert_eq!(Sensor::known("turbidity"), None);
    /// ```
    pub fn known(s: &str) -> Option<Self> {
        KNOWN
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, sensor)| sensor.clone())
    }

    /// Whether this is one of the six sensors the protocol knows.
    pub fn is_known(&self) -> bool {
        !matches!(self, Self::Other(_))
    }

    /// Reads a sensor name.
    pub fn parse(s: &str) -> Result<Self, SensorNameError> {
        match KNOWN.iter().find(|(name, _)| *name == s) {
            Some((_, sensor)) => Ok(sensor.clone()),
            None => SensorName::parse(s).map(Self::Other),
        }
    }

    /// The name on the wire.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Other(name) => name.as_str(),
            known => KNOWN
                .iter()
                .find(|(_, sensor)| sensor == known)
                .map_or("", |(name, _)| name),
        }
    }

    pub(crate) fn read(
        s: &str,
        path: impl FnOnce() -> crate::error::FieldPath,
    ) -> Result<Self, Fault> {
        Self::parse(s).map_err(|_| Fault {
            path: path(),
            problem: Problem::Name { got: shorten(s) },
        })
    }
}

impl fmt::Display for Sensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for Sensor {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The name of a sensor the protocol does not list: 1 to 32 ASCII letters, digits, `_` or `-`.
///
/// ```
/// use dese_protocol::{Sensor, SensorName, SensorNameError};
///
/// let name = SensorName::parse("turbidity")?;
/// assert_eq!(Sensor::Other(name.clone()).as_str(), "turbidity");
/// assert_eq!(SensorName::parse("ph sensor"), Err(SensorNameError));
/// # Ok::<(), SensorNameError>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SensorName(String);

impl SensorName {
    /// The longest name, in bytes.
    pub const MAX_LEN: usize = 32;

    /// Checks and copies a name.
    pub fn parse(s: &str) -> Result<Self, SensorNameError> {
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(String::from(s)))
        } else {
            Err(SensorNameError)
        }
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A sensor name with characters other than ASCII letters, digits, `_` and `-`, empty, or
/// longer than 32 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("expected 1 to 32 ASCII letters, digits, '_' or '-'")]
pub struct SensorNameError;
