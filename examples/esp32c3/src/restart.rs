//! Why the chip started, told to the backend: the first alert after every boot.
//!
//! The firmware reads the chip's reset reason at boot, sorts it into a [`Restart`], and raises
//! [`Restart::alert`] through the engine, so that it goes out behind the `online` status and what
//! the outbox kept from before (and waits in the outbox, and in flash, while the broker is
//! away). A hang or a panic both end
//! in the watchdog's reset (the panic handler spins until the watchdog fires), so
//! [`Restart::Watchdog`] covers the two, and the serial console has the backtrace.

use alloc::string::String;

use dese_protocol::{Alert, Severity, Timestamp};

/// Why the chip started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Restart {
    /// The power came on: the first start, or the power was lost.
    PowerOn,
    /// The firmware restarted itself: a `reboot` command.
    Asked,
    /// A watchdog reset the chip: the firmware hung, or panicked.
    Watchdog,
    /// The supply voltage dropped too low.
    Brownout,
    /// Another reset (a deep-sleep wake, a reset from the USB debugger, a clock glitch), with
    /// the chip's own name for it.
    Other(&'static str),
}

impl Restart {
    /// The alert that reports it: a warning for a watchdog or a brownout, which an operator
    /// should look into; information otherwise.
    pub fn alert(self, utc: Timestamp) -> Alert {
        let (severity, message) = match self {
            Self::PowerOn => (
                Severity::Info,
                String::from("started after the power came on"),
            ),
            Self::Asked => (
                Severity::Info,
                String::from("restarted as asked (a reboot command)"),
            ),
            Self::Watchdog => (
                Severity::Warning,
                String::from(
                    "restarted by the watchdog: the firmware hung or panicked \
                     (its serial console has the backtrace)",
                ),
            ),
            Self::Brownout => (
                Severity::Warning,
                String::from("restarted after a brownout: the supply voltage dropped too low"),
            ),
            Self::Other(reason) => (
                Severity::Info,
                alloc::format!("restarted: the chip reports the reset reason {reason}"),
            ),
        };
        Alert {
            severity,
            message,
            sensor: None,
            value: None,
            threshold: None,
            timestamp: utc,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dese_protocol::{Message, encode};

    #[test]
    fn every_restart_is_an_alert_a_peer_accepts() {
        let restarts = [
            Restart::PowerOn,
            Restart::Asked,
            Restart::Watchdog,
            Restart::Brownout,
            Restart::Other("CoreUsbJtag"),
        ];
        for restart in restarts {
            let alert = restart.alert(Timestamp::UNIX_EPOCH);
            assert!(encode(&Message::Alert(alert.clone())).is_ok(), "{alert:?}");
        }
        assert_eq!(
            Restart::Watchdog.alert(Timestamp::UNIX_EPOCH).severity,
            Severity::Warning
        );
        assert!(
            Restart::Other("CoreUsbJtag")
                .alert(Timestamp::UNIX_EPOCH)
                .message
                .contains("CoreUsbJtag")
        );
    }
}
