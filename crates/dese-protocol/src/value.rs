//! Numbers that carry their unit and their valid range in their type.
//!
//! A value of these types is always in range: [`Ph::new(15.2)`](Ph::new) is an error, and
//! there is no other way to build one. The ranges come from the protocol (pH 0 to 14, battery 0
//! to 100) or, where it is silent, from physics (no negative concentration, no temperature below
//! absolute zero); `docs/protocol-choices.md` lists each choice.

use core::fmt;

/// A number as it appeared in the input, for error messages.
///
/// ```
/// use dese_protocol::Num;
///
/// assert_eq!(Num::Int(-5).to_string(), "-5");
/// assert_eq!(Num::Float(14.0).to_string(), "14");
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Num {
    /// An integer.
    Int(i64),
    /// A non-negative integer too large for `i64`.
    UInt(u64),
    /// A number with a fraction or an exponent.
    Float(f64),
}

impl fmt::Display for Num {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Int(n) => write!(f, "{n}"),
            Self::UInt(n) => write!(f, "{n}"),
            Self::Float(n) => write!(f, "{n}"),
        }
    }
}

/// The values a field accepts.
///
/// ```
/// use dese_protocol::{Battery, Ppm, Scale};
///
/// assert_eq!(Battery::RANGE.to_string(), "0 to 100");
/// assert_eq!(Ppm::RANGE.to_string(), "at least 0");
/// assert_eq!(Scale::RANGE.to_string(), "greater than 0");
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Range {
    /// From the first to the second, both included.
    Between(Num, Num),
    /// This value or more.
    AtLeast(Num),
    /// More than this value.
    Above(Num),
    /// Any finite number.
    Finite,
}

impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Between(lo, hi) => write!(f, "{lo} to {hi}"),
            Self::AtLeast(lo) => write!(f, "at least {lo}"),
            Self::Above(lo) => write!(f, "greater than {lo}"),
            Self::Finite => f.write_str("a finite number"),
        }
    }
}

/// A number outside the range of its field: `15.2 is out of range, expected 0 to 14`.
///
/// ```
/// use dese_protocol::{Battery, Num, Range};
///
/// let err = Battery::new(150).unwrap_err();
/// assert_eq!(err.got, Num::Int(150));
/// assert_eq!(err.expected, Battery::RANGE);
/// assert_eq!(err.to_string(), "150 is out of range, expected 0 to 100");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, thiserror::Error)]
#[error("{got} is out of range, expected {expected}")]
pub struct RangeError {
    /// The number given.
    pub got: Num,
    /// What the field accepts.
    pub expected: Range,
}

const fn float_ok(v: f64, range: Range) -> bool {
    if !v.is_finite() {
        return false;
    }
    match range {
        Range::Between(Num::Float(lo), Num::Float(hi)) => v >= lo && v <= hi,
        Range::AtLeast(Num::Float(lo)) => v >= lo,
        Range::Above(Num::Float(lo)) => v > lo,
        _ => true,
    }
}

macro_rules! float_value {
    ($(#[$doc:meta])* $name:ident, $range:expr) => {
        $(#[$doc])*
        ///
        /// Every type of this kind refuses NaN and the infinities:
        ///
        /// ```
        #[doc = concat!("use dese_protocol::", stringify!($name), ";")]
        ///
        #[doc = concat!("assert!(", stringify!($name), "::new(f64::NAN).is_err());")]
        #[doc = concat!("assert!(", stringify!($name), "::new(f64::INFINITY).is_err());")]
        #[doc = concat!("println!(\"accepts {}\", ", stringify!($name), "::RANGE);")]
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
        pub struct $name(f64);

        impl $name {
            /// The values this type accepts.
            pub const RANGE: Range = $range;

            /// Checks `value` against [`Self::RANGE`]; NaN and infinities are refused.
            pub const fn new(value: f64) -> Result<Self, RangeError> {
                if float_ok(value, Self::RANGE) {
                    Ok(Self(value))
                } else {
                    Err(RangeError { got: Num::Float(value), expected: Self::RANGE })
                }
            }

            /// The number.
            pub const fn get(self) -> f64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        #[cfg(feature = "alloc")]
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_f64(self.0)
            }
        }
    };
}

macro_rules! int_value {
    ($(#[$doc:meta])* $name:ident, $int:ty, $lo:expr, $hi:expr) => {
        $(#[$doc])*
        ///
        /// # Examples
        ///
        /// ```
        #[doc = concat!("use dese_protocol::", stringify!($name), ";")]
        ///
        #[doc = concat!("assert_eq!(", stringify!($name), "::new(", stringify!($lo), ")?.get(), ", stringify!($lo), ");")]
        #[doc = concat!("assert!(", stringify!($name), "::new(", stringify!($hi), " + 1).is_err());")]
        /// # Ok::<(), dese_protocol::RangeError>(())
        /// ```
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name($int);

        impl $name {
            /// The values this type accepts.
            pub const RANGE: Range = Range::Between(Num::Int($lo), Num::Int($hi));

            /// Checks `value` against [`Self::RANGE`].
            pub const fn new(value: i64) -> Result<Self, RangeError> {
                if value >= $lo && value <= $hi {
                    Ok(Self(value as $int))
                } else {
                    Err(RangeError { got: Num::Int(value), expected: Self::RANGE })
                }
            }

            /// The number.
            pub const fn get(self) -> $int {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        #[cfg(feature = "alloc")]
        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                serde::Serialize::serialize(&self.0, s)
            }
        }
    };
}

float_value!(
    /// A pH value, 0 to 14.
    ///
    /// ```
    /// use dese_protocol::Ph;
    ///
    /// assert_eq!(Ph::new(7.2)?.get(), 7.2);
    /// let err = Ph::new(15.2).unwrap_err();
    /// assert_eq!(err.to_string(), "15.2 is out of range, expected 0 to 14");
    /// # Ok::<(), dese_protocol::RangeError>(())
    /// ```
    Ph,
    Range::Between(Num::Float(0.0), Num::Float(14.0))
);
float_value!(
    /// A concentration in parts per million (chlorine), never negative.
    Ppm,
    Range::AtLeast(Num::Float(0.0))
);
float_value!(
    /// A temperature in degrees Celsius, not below absolute zero (-273.15).
    Celsius,
    Range::AtLeast(Num::Float(-273.15))
);
float_value!(
    /// A flow rate in litres per minute, never negative.
    FlowRate,
    Range::AtLeast(Num::Float(0.0))
);
float_value!(
    /// Any finite number: alert values and thresholds, calibration values and offsets.
    Finite,
    Range::Finite
);
float_value!(
    /// A calibration scale factor, greater than zero (a zero or negative scale would erase
    /// or invert the readings).
    Scale,
    Range::Above(Num::Float(0.0))
);

int_value!(
    /// A battery level in percent, 0 to 100.
    Battery, u8, 0, 100
);
int_value!(
    /// A WiFi signal strength (RSSI) in dBm, -128 to 0, the range of ESP32 radios.
    SignalStrength, i8, -128, 0
);
int_value!(
    /// The telemetry period in milliseconds: 100 ms to 24 hours.
    TelemetryInterval, u32, 100, 86_400_000
);
int_value!(
    /// The MQTT keepalive in seconds: 1 to 65535 (0 would turn off the broker's detection of
    /// a dead device, and with it the last will).
    Keepalive, u16, 1, 65_535
);

impl TelemetryInterval {
    /// The protocol's default: 30 seconds.
    pub const DEFAULT: Self = Self(30_000);

    /// The interval as a [`core::time::Duration`].
    pub const fn as_duration(self) -> core::time::Duration {
        core::time::Duration::from_millis(self.0 as u64)
    }
}

impl Keepalive {
    /// The protocol's default: 60 seconds.
    pub const DEFAULT: Self = Self(60);
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    // DESE-P2: pH 0..=14, battery 0..=100, nothing negative that cannot be.
    #[test]
    fn dese_p2_ranges() {
        assert!(Ph::new(0.0).is_ok() && Ph::new(14.0).is_ok());
        assert!(Ph::new(-0.01).is_err() && Ph::new(14.01).is_err());
        assert!(Ph::new(f64::NAN).is_err() && Ph::new(f64::INFINITY).is_err());
        assert!(Battery::new(100).is_ok() && Battery::new(101).is_err());
        assert!(Battery::new(-1).is_err());
        assert!(Ppm::new(0.0).is_ok() && Ppm::new(-0.1).is_err());
        assert!(FlowRate::new(-1.0).is_err());
        assert!(Celsius::new(-273.15).is_ok() && Celsius::new(-274.0).is_err());
        assert!(Scale::new(0.0).is_err() && Scale::new(0.5).is_ok());
        assert!(TelemetryInterval::new(99).is_err() && TelemetryInterval::new(100).is_ok());
        assert!(Keepalive::new(0).is_err() && Keepalive::new(65_536).is_err());
        assert!(SignalStrength::new(-65).is_ok() && SignalStrength::new(1).is_err());
    }

    #[test]
    fn messages() {
        assert_eq!(
            Battery::new(150).unwrap_err().to_string(),
            "150 is out of range, expected 0 to 100"
        );
        assert_eq!(
            Ppm::new(-2.5).unwrap_err().to_string(),
            "-2.5 is out of range, expected at least 0"
        );
        assert_eq!(
            Scale::new(0.0).unwrap_err().to_string(),
            "0 is out of range, expected greater than 0"
        );
        assert_eq!(
            Finite::new(f64::NAN).unwrap_err().to_string(),
            "NaN is out of range, expected a finite number"
        );
        assert_eq!(TelemetryInterval::DEFAULT.as_duration().as_secs(), 30);
    }
}
