//! The wall clock: one SNTP exchange (RFC 4330) sets it, the monotonic clock carries it on.
//!
//! Messages carry UTC timestamps, and the chip has no battery-backed clock. Until the first
//! answer arrives the clock counts from the firmware's build time, so timestamps are late
//! rather than decades off; [`WallClock::is_synchronized`] tells which.

use core::fmt;

use dese_device::Instant;
use dese_protocol::Timestamp;

/// The size of an SNTP message without authentication.
pub const PACKET_LEN: usize = 48;

/// Seconds from 1900-01-01 (NTP's era 0) to 1970-01-01.
const NTP_TO_UNIX: i64 = 2_208_988_800;

/// An SNTP version 4 client request.
pub fn request() -> [u8; PACKET_LEN] {
    let mut packet = [0u8; PACKET_LEN];
    packet[0] = (4 << 3) | 3; // no leap warning, version 4, mode 3 (client)
    packet
}

/// Why a server's answer was not used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SntpError {
    /// Fewer than 48 bytes.
    Short(usize),
    /// Not a server answer (mode 4).
    NotAServer(u8),
    /// The server is not synchronized itself (leap indicator 3, or stratum 0 "kiss of death"
    /// or above 15).
    Unsynchronized {
        /// Its stratum.
        stratum: u8,
    },
    /// A transmit timestamp outside years 1970 to 2105.
    BadTime,
}

impl fmt::Display for SntpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Short(len) => write!(f, "SNTP answer of {len} bytes, expected 48"),
            Self::NotAServer(mode) => write!(f, "SNTP answer in mode {mode}, expected 4"),
            Self::Unsynchronized { stratum } => {
                write!(f, "the time server is not synchronized (stratum {stratum})")
            }
            Self::BadTime => f.write_str("the time server sent an impossible time"),
        }
    }
}

/// The server's transmit time from its answer.
pub fn parse(answer: &[u8]) -> Result<Timestamp, SntpError> {
    let Some(packet) = answer.get(..PACKET_LEN) else {
        return Err(SntpError::Short(answer.len()));
    };
    let mode = packet[0] & 0b111;
    if mode != 4 {
        return Err(SntpError::NotAServer(mode));
    }
    let stratum = packet[1];
    if packet[0] >> 6 == 3 || stratum == 0 || stratum > 15 {
        return Err(SntpError::Unsynchronized { stratum });
    }
    let secs = u32::from_be_bytes([packet[40], packet[41], packet[42], packet[43]]);
    let fraction = u32::from_be_bytes([packet[44], packet[45], packet[46], packet[47]]);
    // Era 0 ends in 2036; a seconds field below 1970 is read as era 1 (RFC 4330, section 3).
    let mut unix = i64::from(secs) - NTP_TO_UNIX;
    if unix < 0 {
        unix += 1 << 32;
    }
    let nanos = ((u64::from(fraction) * 1_000_000_000) >> 32) as u32;
    Timestamp::from_unix(unix, nanos)
        .filter(|t| t.unix_seconds() > 0)
        .ok_or(SntpError::BadTime)
}

/// UTC from the monotonic clock and the last synchronization.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    /// At `instant` on the monotonic clock, UTC was `utc` (in milliseconds since 1970).
    instant: Instant,
    utc_millis: i64,
    synchronized: bool,
}

impl WallClock {
    /// A clock that reads `fallback` at `now` until it is synchronized.
    pub fn unsynchronized(now: Instant, fallback: Timestamp) -> Self {
        Self {
            instant: now,
            utc_millis: fallback.unix_millis(),
            synchronized: false,
        }
    }

    /// Sets the clock: at `now` it is `utc`.
    pub fn synchronize(&mut self, now: Instant, utc: Timestamp) {
        *self = Self {
            instant: now,
            utc_millis: utc.unix_millis(),
            synchronized: true,
        };
    }

    /// Whether an SNTP answer has set the clock.
    pub fn is_synchronized(&self) -> bool {
        self.synchronized
    }

    /// UTC at `now`.
    pub fn utc(&self, now: Instant) -> Timestamp {
        let elapsed = i64::try_from(now.saturating_since(self.instant).as_millis()).unwrap_or(0);
        Timestamp::from_unix_millis(self.utc_millis.saturating_add(elapsed))
            .unwrap_or(Timestamp::UNIX_EPOCH)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(secs: u32, fraction: u32) -> [u8; PACKET_LEN] {
        let mut p = [0u8; PACKET_LEN];
        p[0] = (4 << 3) | 4;
        p[1] = 2;
        p[40..44].copy_from_slice(&secs.to_be_bytes());
        p[44..48].copy_from_slice(&fraction.to_be_bytes());
        p
    }

    #[test]
    fn a_server_answer_gives_its_transmit_time() {
        // 2025-01-27T10:00:00.5Z
        let unix = 1_737_972_000i64;
        let t = parse(&answer((unix + NTP_TO_UNIX) as u32, 1 << 31)).unwrap();
        assert_eq!(t.unix_seconds(), unix);
        assert_eq!(t.subsec_nanos(), 500_000_000);
    }

    #[test]
    fn era_one_is_read_after_2036() {
        // 2040-01-01T00:00:00Z wraps NTP's 32-bit seconds.
        let unix = 2_208_988_800i64;
        let secs = ((unix + NTP_TO_UNIX) % (1 << 32)) as u32;
        assert_eq!(parse(&answer(secs, 0)).unwrap().unix_seconds(), unix);
    }

    #[test]
    fn unusable_answers_are_named() {
        assert_eq!(parse(&[0; 10]), Err(SntpError::Short(10)));
        let mut client = answer(1, 0);
        client[0] = request()[0];
        assert_eq!(parse(&client), Err(SntpError::NotAServer(3)));
        let mut kiss = answer(3_900_000_000, 0);
        kiss[1] = 0;
        assert_eq!(parse(&kiss), Err(SntpError::Unsynchronized { stratum: 0 }));
    }

    #[test]
    fn the_wall_clock_runs_on_the_monotonic_clock() {
        let start = Timestamp::from_unix_millis(1_000_000).unwrap();
        let mut clock = WallClock::unsynchronized(Instant::from_millis(5), start);
        assert!(!clock.is_synchronized());
        assert_eq!(
            clock.utc(Instant::from_millis(1_005)).unix_millis(),
            1_001_000
        );
        let synced = Timestamp::from_unix_millis(1_737_972_000_000).unwrap();
        clock.synchronize(Instant::from_millis(2_000), synced);
        assert_eq!(
            clock.utc(Instant::from_millis(2_250)).unix_millis(),
            1_737_972_000_250
        );
    }
}
