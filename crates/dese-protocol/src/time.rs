//! UTC timestamps in the ISO 8601 form the protocol uses: `2025-01-27T10:00:00Z`.
//!
//! The crate never reads a clock: a [`Timestamp`] comes from a payload ([`Timestamp::parse`])
//! or from the caller's own time source ([`Timestamp::from_unix_millis`]).

use core::fmt;
use core::str::FromStr;

/// A point in time, UTC, with nanosecond precision, between years 0000 and 9999.
///
/// Accepted text: `YYYY-MM-DDTHH:MM:SS`, an optional fraction of 1 to 9 digits, and a UTC
/// designator: `Z` or `+00:00` (`t` and `z` in lower case too, as RFC 3339 allows). A local
/// time without designator or with another offset is refused: the protocol says UTC. Leap
/// seconds (`:60`) are refused. `Display` writes the canonical form: `Z`, and a fraction of 3, 6
/// or 9 digits only when it is not zero, so `parse(display(t)) == t`.
///
/// # Examples
///
/// ```
/// use dese_protocol::Timestamp;
///
/// let t: Timestamp = "2025-01-27T10:00:00.250+00:00".parse()?;
/// assert_eq!(t.unix_millis(), 1_737_972_000_250);
/// assert_eq!(t.to_string(), "2025-01-27T10:00:00.250Z");
/// assert_eq!(Timestamp::from_unix_millis(1_737_972_000_250), Some(t));
///
/// let err = "2025-01-27T10:00:00+02:00".parse::<Timestamp>().unwrap_err();
/// assert_eq!(err.to_string(), "has offset +02:00, expected UTC (Z or +00:00)");
/// # Ok::<(), dese_protocol::TimestampError>(())
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp {
    secs: i64,
    nanos: u32,
}

const MIN_SECS: i64 = -62_167_219_200; // 0000-01-01T00:00:00Z
const MAX_SECS: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z

impl Timestamp {
    /// 1970-01-01T00:00:00Z.
    pub const UNIX_EPOCH: Self = Self { secs: 0, nanos: 0 };

    /// A time given as seconds and nanoseconds since the Unix epoch; `None` outside years
    /// 0000 to 9999 or when `nanos` is a second or more.
    pub const fn from_unix(secs: i64, nanos: u32) -> Option<Self> {
        if secs < MIN_SECS || secs > MAX_SECS || nanos >= 1_000_000_000 {
            None
        } else {
            Some(Self { secs, nanos })
        }
    }

    /// A time given as milliseconds since the Unix epoch; `None` outside years 0000 to 9999.
    pub const fn from_unix_millis(millis: i64) -> Option<Self> {
        Self::from_unix(
            millis.div_euclid(1000),
            (millis.rem_euclid(1000) as u32) * 1_000_000,
        )
    }

    /// Whole seconds since the Unix epoch (negative before 1970).
    pub const fn unix_seconds(self) -> i64 {
        self.secs
    }

    /// The nanoseconds past [`Timestamp::unix_seconds`].
    pub const fn subsec_nanos(self) -> u32 {
        self.nanos
    }

    /// Milliseconds since the Unix epoch, the fraction truncated.
    pub const fn unix_millis(self) -> i64 {
        self.secs * 1000 + (self.nanos / 1_000_000) as i64
    }

    /// Parses the protocol's ISO 8601 UTC form; see the type's documentation.
    pub fn parse(s: &str) -> Result<Self, TimestampError> {
        match Self::parse_common(s.as_bytes()) {
            Some(t) => Ok(t),
            None => Parser {
                b: s.as_bytes(),
                at: 0,
            }
            .timestamp(),
        }
    }

    /// The form almost every peer sends, `YYYY-MM-DDTHH:MM:SSZ`, read in one pass. `None`
    /// sends anything else, errors included, to the full parser and its precise messages.
    fn parse_common(b: &[u8]) -> Option<Self> {
        let &[
            y0,
            y1,
            y2,
            y3,
            b'-',
            m0,
            m1,
            b'-',
            d0,
            d1,
            b'T',
            h0,
            h1,
            b':',
            i0,
            i1,
            b':',
            s0,
            s1,
            b'Z',
        ] = b
        else {
            return None;
        };
        let digits = [y0, y1, y2, y3, m0, m1, d0, d1, h0, h1, i0, i1, s0, s1];
        if !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        let n = |hi: u8, lo: u8| u32::from(hi - b'0') * 10 + u32::from(lo - b'0');
        let (year, month, day) = (n(y0, y1) * 100 + n(y2, y3), n(m0, m1), n(d0, d1));
        let (hour, minute, second) = (n(h0, h1), n(i0, i1), n(s0, s1));
        let valid = (1..=12).contains(&month)
            && day >= 1
            && day <= days_in_month(year, month)
            && hour < 24
            && minute < 60
            && second < 60;
        if !valid {
            return None;
        }
        let days = days_from_civil(i64::from(year), month, day);
        let secs = days * 86_400 + i64::from(hour * 3600 + minute * 60 + second);
        Some(Self { secs, nanos: 0 })
    }
}

struct Parser<'a> {
    b: &'a [u8],
    at: usize,
}

impl Parser<'_> {
    fn timestamp(mut self) -> Result<Timestamp, TimestampError> {
        let year = self.digits(4)?;
        self.byte(b'-', "'-'")?;
        let month = self.digits(2)?;
        self.byte(b'-', "'-'")?;
        let day = self.digits(2)?;
        if !self.eat(b'T') && !self.eat(b't') {
            return Err(self.syntax("'T'"));
        }
        let hour = self.digits(2)?;
        self.byte(b':', "':'")?;
        let minute = self.digits(2)?;
        self.byte(b':', "':'")?;
        let second = self.digits(2)?;
        let mut nanos = 0;
        if self.eat(b'.') {
            let start = self.at;
            while self.at < self.b.len() && self.b[self.at].is_ascii_digit() {
                if self.at - start == 9 {
                    return Err(self.syntax("at most 9 fraction digits"));
                }
                nanos = nanos * 10 + u32::from(self.b[self.at] - b'0');
                self.at += 1;
            }
            if self.at == start {
                return Err(self.syntax("a digit"));
            }
            nanos *= 10u32.pow(9 - (self.at - start) as u32);
        }
        self.zone()?;
        if self.at != self.b.len() {
            return Err(self.syntax("the end of the timestamp"));
        }

        let field = |name, value: u32, max: u32| {
            if value > max {
                Err(TimestampError::FieldRange { field: name, value })
            } else {
                Ok(())
            }
        };
        if month == 0 || month > 12 {
            return Err(TimestampError::FieldRange {
                field: "month",
                value: month,
            });
        }
        if day == 0 || day > days_in_month(year, month) {
            return Err(TimestampError::FieldRange {
                field: "day",
                value: day,
            });
        }
        field("hour", hour, 23)?;
        field("minute", minute, 59)?;
        field("second", second, 59)?;

        let days = days_from_civil(i64::from(year), month, day);
        let secs =
            days * 86_400 + i64::from(hour) * 3600 + i64::from(minute) * 60 + i64::from(second);
        Ok(Timestamp { secs, nanos })
    }

    fn zone(&mut self) -> Result<(), TimestampError> {
        if self.eat(b'Z') || self.eat(b'z') {
            return Ok(());
        }
        let Some(&sign) = self.b.get(self.at) else {
            return Err(TimestampError::NoZone);
        };
        if sign != b'+' && sign != b'-' {
            return Err(self.syntax("'Z' or an offset"));
        }
        self.at += 1;
        let hours = self.digits(2)?;
        self.byte(b':', "':'")?;
        let minutes = self.digits(2)?;
        if hours == 0 && minutes == 0 {
            Ok(())
        } else {
            Err(TimestampError::NotUtc {
                negative: sign == b'-',
                hours: hours as u8,
                minutes: minutes as u8,
            })
        }
    }

    fn digits(&mut self, n: usize) -> Result<u32, TimestampError> {
        let mut value = 0;
        for _ in 0..n {
            match self.b.get(self.at) {
                Some(c) if c.is_ascii_digit() => value = value * 10 + u32::from(c - b'0'),
                _ => return Err(self.syntax("a digit")),
            }
            self.at += 1;
        }
        Ok(value)
    }

    fn byte(&mut self, want: u8, expected: &'static str) -> Result<(), TimestampError> {
        if self.eat(want) {
            Ok(())
        } else {
            Err(self.syntax(expected))
        }
    }

    fn eat(&mut self, want: u8) -> bool {
        if self.b.get(self.at) == Some(&want) {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn syntax(&self, expected: &'static str) -> TimestampError {
        TimestampError::Syntax {
            at: self.at,
            expected,
        }
    }
}

const fn is_leap(year: u32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

const fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
const fn days_from_civil(year: i64, month: u32, day: u32) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month as i64 + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day as i64 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The (year, month, day) of a day count since 1970-01-01.
const fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + if month <= 2 { 1 } else { 0 };
    (year, month, day)
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let days = self.secs.div_euclid(86_400);
        let rem = self.secs.rem_euclid(86_400);
        let (year, month, day) = civil_from_days(days);
        write!(
            f,
            "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}",
            rem / 3600,
            rem % 3600 / 60,
            rem % 60
        )?;
        let n = self.nanos;
        if n == 0 {
        } else if n % 1_000_000 == 0 {
            write!(f, ".{:03}", n / 1_000_000)?;
        } else if n % 1_000 == 0 {
            write!(f, ".{:06}", n / 1_000)?;
        } else {
            write!(f, ".{n:09}")?;
        }
        f.write_str("Z")
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// Why a timestamp was refused.
///
/// ```
/// use dese_protocol::{Timestamp, TimestampError};
///
/// let err = Timestamp::parse("2025-02-30T10:00:00Z").unwrap_err();
/// assert_eq!(err, TimestampError::FieldRange { field: "day", value: 30 });
/// assert_eq!(err.to_string(), "day 30 is out of range");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TimestampError {
    /// The text does not have the expected shape at byte `at`.
    #[error("expected {expected} at byte {at}")]
    Syntax {
        /// Byte offset of the problem.
        at: usize,
        /// What was expected there.
        expected: &'static str,
    },
    /// A date or time field is out of its range (month 13, February 30, hour 24, second 60).
    #[error("{field} {value} is out of range")]
    FieldRange {
        /// `month`, `day`, `hour`, `minute` or `second`.
        field: &'static str,
        /// The value found.
        value: u32,
    },
    /// The time has no zone designator: it would be a local time.
    #[error("has no time zone, expected UTC (Z or +00:00)")]
    NoZone,
    /// A time converted from another type falls outside years 0000 to 9999.
    #[error("year {year} is out of range, expected 0000 to 9999")]
    YearOutOfRange {
        /// The year.
        year: i32,
    },
    /// The time carries an offset other than UTC.
    #[error(
        "has offset {}{hours:02}:{minutes:02}, expected UTC (Z or +00:00)",
        if *negative { '-' } else { '+' }
    )]
    NotUtc {
        /// Whether the offset is west of UTC.
        negative: bool,
        /// Hours of the offset.
        hours: u8,
        /// Minutes of the offset.
        minutes: u8,
    },
}

#[cfg(feature = "alloc")]
impl serde::Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(feature = "alloc")]
impl<'de> serde::Deserialize<'de> for Timestamp {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Timestamp;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an ISO 8601 UTC timestamp")
            }
            fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Timestamp, E> {
                Timestamp::parse(s).map_err(E::custom)
            }
        }
        d.deserialize_str(Visitor)
    }
}

/// The same instant as chrono's type (feature `chrono`). Every [`Timestamp`] is one.
///
/// ```
/// use chrono::{DateTime, Utc};
/// use dese_protocol::Timestamp;
///
/// let t = Timestamp::parse("2025-01-27T10:00:00.250Z")?;
/// let chrono: DateTime<Utc> = t.into();
/// assert_eq!(chrono.timestamp_millis(), 1_737_972_000_250);
/// assert_eq!(Timestamp::try_from(chrono)?, t);
/// # Ok::<(), dese_protocol::TimestampError>(())
/// ```
#[cfg(feature = "chrono")]
impl From<Timestamp> for chrono::DateTime<chrono::Utc> {
    fn from(t: Timestamp) -> Self {
        // Years 0000 to 9999 lie well inside chrono's range (about 262,000 years either way):
        // the fallback is never taken.
        Self::from_timestamp(t.secs, t.nanos).unwrap_or(Self::MIN_UTC)
    }
}

/// An instant of chrono's, as the protocol can carry it (feature `chrono`): refused outside
/// years 0000 to 9999 and on a leap second, which the protocol's timestamps cannot write.
#[cfg(feature = "chrono")]
impl TryFrom<chrono::DateTime<chrono::Utc>> for Timestamp {
    type Error = TimestampError;

    fn try_from(t: chrono::DateTime<chrono::Utc>) -> Result<Self, TimestampError> {
        use chrono::{Datelike, Timelike};
        let nanos = t.timestamp_subsec_nanos();
        if nanos >= 1_000_000_000 {
            return Err(TimestampError::FieldRange {
                field: "second",
                value: t.second() + 1,
            });
        }
        Self::from_unix(t.timestamp(), nanos)
            .ok_or(TimestampError::YearOutOfRange { year: t.year() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    // DESE-P3: the spec's timestamps parse, UTC only.
    #[test]
    fn dese_p3_spec_examples() {
        let t = Timestamp::parse("2025-01-27T10:00:00Z").unwrap();
        assert_eq!(t.unix_seconds(), 1_737_972_000);
        assert_eq!(t.to_string(), "2025-01-27T10:00:00Z");
        let t = Timestamp::parse("2025-01-27T10:00:05Z").unwrap();
        assert_eq!(t.unix_seconds(), 1_737_972_005);
    }

    #[test]
    fn dese_p3_utc_forms() {
        let z = Timestamp::parse("2024-02-29T23:59:59Z").unwrap();
        for same in [
            "2024-02-29T23:59:59+00:00",
            "2024-02-29T23:59:59-00:00",
            "2024-02-29t23:59:59z",
            "2024-02-29T23:59:59.000Z",
        ] {
            assert_eq!(Timestamp::parse(same), Ok(z), "{same}");
        }
    }

    #[test]
    fn dese_p3_refusals() {
        use TimestampError::*;
        let cases: &[(&str, TimestampError)] = &[
            (
                "",
                Syntax {
                    at: 0,
                    expected: "a digit",
                },
            ),
            (
                "2025-01-27 10:00:00Z",
                Syntax {
                    at: 10,
                    expected: "'T'",
                },
            ),
            ("2025-01-27T10:00:00", NoZone),
            (
                "2025-01-27T10:00:00+01:00",
                NotUtc {
                    negative: false,
                    hours: 1,
                    minutes: 0,
                },
            ),
            (
                "2025-13-01T00:00:00Z",
                FieldRange {
                    field: "month",
                    value: 13,
                },
            ),
            (
                "2025-02-29T00:00:00Z",
                FieldRange {
                    field: "day",
                    value: 29,
                },
            ),
            (
                "2025-01-27T24:00:00Z",
                FieldRange {
                    field: "hour",
                    value: 24,
                },
            ),
            (
                "2025-01-27T10:00:60Z",
                FieldRange {
                    field: "second",
                    value: 60,
                },
            ),
            (
                "2025-01-27T10:00:00.Z",
                Syntax {
                    at: 20,
                    expected: "a digit",
                },
            ),
            (
                "2025-01-27T10:00:00.1234567891Z",
                Syntax {
                    at: 29,
                    expected: "at most 9 fraction digits",
                },
            ),
            (
                "2025-01-27T10:00:00Zjunk",
                Syntax {
                    at: 20,
                    expected: "the end of the timestamp",
                },
            ),
            (
                "1737972000",
                Syntax {
                    at: 4,
                    expected: "'-'",
                },
            ),
        ];
        for (input, want) in cases {
            assert_eq!(Timestamp::parse(input), Err(*want), "{input:?}");
        }
    }

    #[test]
    fn fractions_and_display() {
        let t = Timestamp::parse("1999-12-31T23:59:59.5Z").unwrap();
        assert_eq!(t.subsec_nanos(), 500_000_000);
        assert_eq!(t.to_string(), "1999-12-31T23:59:59.500Z");
        let t = Timestamp::parse("1969-07-20T20:17:40.000001Z").unwrap();
        assert!(t.unix_seconds() < 0);
        assert_eq!(t.to_string(), "1969-07-20T20:17:40.000001Z");
        let t = Timestamp::from_unix(0, 1).unwrap();
        assert_eq!(t.to_string(), "1970-01-01T00:00:00.000000001Z");
    }

    #[test]
    fn bounds() {
        let min = Timestamp::parse("0000-01-01T00:00:00Z").unwrap();
        let max = Timestamp::parse("9999-12-31T23:59:59.999999999Z").unwrap();
        assert_eq!(min.unix_seconds(), MIN_SECS);
        assert_eq!(max.unix_seconds(), MAX_SECS);
        assert_eq!(Timestamp::from_unix(MAX_SECS + 1, 0), None);
        assert_eq!(Timestamp::from_unix(MIN_SECS - 1, 0), None);
        assert_eq!(Timestamp::from_unix(0, 1_000_000_000), None);
        assert_eq!(
            Timestamp::from_unix_millis(-1).unwrap().to_string(),
            "1969-12-31T23:59:59.999Z"
        );
    }

    proptest::proptest! {
        // The one-pass reader of the common form agrees with the full parser on every input of
        // that shape, invalid dates and times included.
        #[test]
        fn common_form_agrees_with_full_parser(
            y in 0u32..10_000, m in 0u32..14, d in 0u32..33, h in 0u32..26, i in 0u32..62, s in 0u32..62,
        ) {
            let text = alloc::format!("{y:04}-{m:02}-{d:02}T{h:02}:{i:02}:{s:02}Z");
            let full = Parser { b: text.as_bytes(), at: 0 }.timestamp();
            let fast = Timestamp::parse_common(text.as_bytes());
            proptest::prop_assert_eq!(fast, full.ok());
            proptest::prop_assert_eq!(Timestamp::parse(&text), full);
        }
    }

    #[test]
    fn every_day_round_trips() {
        // Every day of four centuries (covers the 400-year leap cycle).
        let start = days_from_civil(1900, 1, 1);
        for days in start..start + 146_097 {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
            assert!(d >= 1 && d <= days_in_month(y as u32, m));
        }
    }

    #[cfg(feature = "chrono")]
    #[test]
    fn chrono_conversions_keep_the_instant_and_refuse_what_the_protocol_cannot_write() {
        use chrono::{DateTime, NaiveDate, Utc};
        for text in [
            "0000-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999999999Z",
            "2025-01-27T10:00:00.250Z",
            "9999-12-31T23:59:59.999999999Z",
        ] {
            let t = Timestamp::parse(text).unwrap();
            let chrono: DateTime<Utc> = t.into();
            assert_eq!(chrono.timestamp(), t.unix_seconds(), "{text}");
            assert_eq!(chrono.timestamp_subsec_nanos(), t.subsec_nanos(), "{text}");
            assert_eq!(Timestamp::try_from(chrono), Ok(t), "{text}");
        }
        let far = NaiveDate::from_ymd_opt(10_000, 1, 1)
            .and_then(|d| d.and_hms_opt(0, 0, 0))
            .unwrap()
            .and_utc();
        assert_eq!(
            Timestamp::try_from(far),
            Err(TimestampError::YearOutOfRange { year: 10_000 })
        );
        let leap = NaiveDate::from_ymd_opt(2016, 12, 31)
            .and_then(|d| d.and_hms_nano_opt(23, 59, 59, 1_500_000_000))
            .unwrap()
            .and_utc();
        let refused = Timestamp::try_from(leap).unwrap_err();
        assert_eq!(refused.to_string(), "second 60 is out of range");
    }
}
