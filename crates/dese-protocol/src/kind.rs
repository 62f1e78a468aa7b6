//! The six message types, their direction and their delivery rules.

use core::fmt;
use core::str::FromStr;

/// The last level of a topic: which of the six messages it carries.
///
/// Each kind knows who sends it ([`MessageKind::direction`]) and how it is published
/// ([`MessageKind::qos`], [`MessageKind::retained`]).
///
/// # Examples
///
/// ```
/// use dese_protocol::{Direction, MessageKind, QoS};
///
/// let kind: MessageKind = "status".parse()?;
/// assert_eq!(kind, MessageKind::Status);
/// assert_eq!(kind.direction(), Direction::DeviceToBackend);
/// assert_eq!(kind.qos(), QoS::AtLeastOnce);
/// assert!(kind.retained());
/// assert_eq!(kind.to_string(), "status");
/// # Ok::<(), dese_protocol::UnknownKind>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MessageKind {
    /// `telemetry`: sensor readings, device to backend.
    Telemetry,
    /// `commands`: an action for the device, backend to device.
    Commands,
    /// `command_response`: the outcome of a command, device to backend.
    CommandResponse,
    /// `status`: online, offline, error or maintenance; retained, device to backend.
    Status,
    /// `config`: settings for the device, backend to device.
    Config,
    /// `alert`: a condition that needs attention, device to backend.
    Alert,
}

impl MessageKind {
    /// All six kinds, in the order the protocol lists them.
    pub const ALL: [Self; 6] = [
        Self::Telemetry,
        Self::Commands,
        Self::CommandResponse,
        Self::Status,
        Self::Config,
        Self::Alert,
    ];

    /// The topic level that names this kind, such as `command_response`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Telemetry => "telemetry",
            Self::Commands => "commands",
            Self::CommandResponse => "command_response",
            Self::Status => "status",
            Self::Config => "config",
            Self::Alert => "alert",
        }
    }

    /// Who publishes this kind.
    pub const fn direction(self) -> Direction {
        match self {
            Self::Commands | Self::Config => Direction::BackendToDevice,
            Self::Telemetry | Self::CommandResponse | Self::Status | Self::Alert => {
                Direction::DeviceToBackend
            }
        }
    }

    /// The MQTT quality of service: every kind is published at least once (QoS 1).
    pub const fn qos(self) -> QoS {
        QoS::AtLeastOnce
    }

    /// Whether the broker keeps the last message of this kind: only `status` is retained, so
    /// that a backend that (re)subscribes learns every device's last known state at once.
    pub const fn retained(self) -> bool {
        matches!(self, Self::Status)
    }
}

impl fmt::Display for MessageKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

impl FromStr for MessageKind {
    type Err = UnknownKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.as_str() == s)
            .ok_or(UnknownKind)
    }
}

/// A topic level that names none of the six message kinds.
///
/// ```
/// use dese_protocol::{MessageKind, UnknownKind};
///
/// assert_eq!("alerts".parse::<MessageKind>(), Err(UnknownKind));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownKind;

impl fmt::Display for UnknownKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("expected one of telemetry, commands, command_response, status, config, alert")
    }
}

impl core::error::Error for UnknownKind {}

/// Who publishes a message kind.
///
/// ```
/// use dese_protocol::{Direction, MessageKind};
///
/// assert_eq!(MessageKind::Commands.direction(), Direction::BackendToDevice);
/// assert_eq!(MessageKind::Alert.direction(), Direction::DeviceToBackend);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Telemetry, command responses, status and alerts.
    DeviceToBackend,
    /// Commands and config.
    BackendToDevice,
}

/// MQTT quality of service levels. The protocol uses only [`QoS::AtLeastOnce`]; the others
/// exist so that transports can map their own enums without a fallible conversion.
///
/// ```
/// use dese_protocol::{MessageKind, QoS};
///
/// assert!(MessageKind::ALL.iter().all(|k| k.qos() == QoS::AtLeastOnce));
/// assert_eq!(QoS::AtLeastOnce as u8, 1);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum QoS {
    /// QoS 0: fire and forget.
    AtMostOnce = 0,
    /// QoS 1: acknowledged, may be delivered more than once. Every DESE message uses it.
    AtLeastOnce = 1,
    /// QoS 2: exactly once, by a four-step handshake.
    ExactlyOnce = 2,
}

#[cfg(test)]
mod tests {
    use super::*;

    // DESE-T2: the six kinds, and nothing else, parse; Display round-trips.
    #[test]
    fn dese_t2_six_kinds_round_trip() {
        for kind in MessageKind::ALL {
            assert_eq!(kind.as_str().parse::<MessageKind>(), Ok(kind));
        }
        for bad in ["", "Telemetry", "command", "alerts", "telemetry ", "+", "#"] {
            assert_eq!(bad.parse::<MessageKind>(), Err(UnknownKind), "{bad:?}");
        }
    }

    // DESE-D1, DESE-D2: QoS 1 everywhere; only status is retained.
    #[test]
    fn dese_d1_d2_qos_and_retain() {
        for kind in MessageKind::ALL {
            assert_eq!(kind.qos(), QoS::AtLeastOnce);
            assert_eq!(kind.retained(), kind == MessageKind::Status);
        }
    }

    // DESE-T4: devices publish four kinds and receive two.
    #[test]
    fn dese_t4_directions() {
        let from_device: usize = MessageKind::ALL
            .iter()
            .filter(|k| k.direction() == Direction::DeviceToBackend)
            .count();
        assert_eq!(from_device, 4);
        assert_eq!(
            MessageKind::Commands.direction(),
            Direction::BackendToDevice
        );
        assert_eq!(MessageKind::Config.direction(), Direction::BackendToDevice);
    }
}
