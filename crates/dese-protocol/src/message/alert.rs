//! `alert`: a condition that needs attention, device to backend.

use alloc::borrow::Cow;
use alloc::string::String;

use serde::{Deserialize, Serialize};

use crate::error::{Fault, FieldPath};
use crate::message::check::{self, Field, Ty, number, one_of};
use crate::message::sensor::Sensor;
use crate::time::Timestamp;
use crate::value::Finite;

/// The longest alert `message`, in bytes.
pub const ALERT_MESSAGE_MAX: usize = 512;

named_enum!(
    /// How urgent an alert is.
    ///
    /// ```
    /// use dese_protocol::Severity;
    ///
    /// assert!(Severity::Critical > Severity::Warning);
    /// assert_eq!(Severity::Info.to_string(), "info");
    /// ```
    Severity {
        /// `info`: for the record.
        Info = "info",
        /// `warning`: needs attention soon.
        Warning = "warning",
        /// `critical`: needs attention now.
        Critical = "critical",
    }
);

/// A condition on the device that needs attention, such as a reading past its threshold.
///
/// # Examples
///
/// ```
/// use dese_protocol::{Alert, Finite, Sensor, Severity, Timestamp};
///
/// let alert = Alert {
///     severity: Severity::Warning,
///     message: "pH level below threshold".into(),
///     sensor: Some(Sensor::Ph),
///     value: Some(Finite::new(6.8)?),
///     threshold: Some(Finite::new(7.0)?),
///     timestamp: Timestamp::UNIX_EPOCH,
/// };
/// assert_eq!(alert.severity.as_str(), "warning");
/// # Ok::<(), dese_protocol::RangeError>(())
/// ```
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// Info, warning or critical.
    pub severity: Severity,
    /// What happened: 1 to 512 bytes of text.
    #[cfg_attr(feature = "schema", schemars(with = "crate::schema::AlertMessage"))]
    pub message: String,
    /// The sensor concerned.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sensor: Option<Sensor>,
    /// The reading that raised the alert.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Finite>,
    /// The threshold it crossed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<Finite>,
    /// When the condition was seen.
    pub timestamp: Timestamp,
}

#[derive(Deserialize)]
pub(crate) struct Wire<'a> {
    #[serde(borrow)]
    severity: Cow<'a, str>,
    message: String,
    #[serde(borrow)]
    sensor: Option<Cow<'a, str>>,
    value: Option<f64>,
    threshold: Option<f64>,
    #[serde(borrow)]
    timestamp: Cow<'a, str>,
}

pub(crate) const SHAPE: &[Field] = &[
    Field::req("severity", Ty::Str),
    Field::req("message", Ty::Str),
    Field::opt("sensor", Ty::Str),
    Field::opt("value", Ty::Num),
    Field::opt("threshold", Ty::Num),
    Field::req("timestamp", Ty::Str),
];

impl Alert {
    pub(crate) fn from_wire(w: Wire<'_>) -> Result<Self, Fault> {
        Ok(Self {
            severity: one_of(&w.severity, "severity")?,
            message: check::text(w.message, ALERT_MESSAGE_MAX, "message")?,
            sensor: w
                .sensor
                .map(|s| Sensor::read(&s, || FieldPath::of("sensor")))
                .transpose()?,
            value: w
                .value
                .map(|v| number(v, "value", Finite::new))
                .transpose()?,
            threshold: w
                .threshold
                .map(|v| number(v, "threshold", Finite::new))
                .transpose()?,
            timestamp: check::timestamp(&w.timestamp, "timestamp")?,
        })
    }

    pub(crate) fn check_text(&self) -> Result<(), Fault> {
        check::text_ref(&self.message, ALERT_MESSAGE_MAX, "message")
    }
}
