//! The one error type of every DESE transport, and its [`ErrorKind`].

use std::fmt;

/// The category of a transport error. Code that reacts to failures matches on this, and so
/// reacts alike whichever MQTT client is underneath.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The options cannot work (a malformed broker URL, an unsupported scheme, a message that
    /// cannot be built).
    Config,
    /// The broker refused the credentials or the client: retrying will not help.
    Auth,
    /// The TLS setup is wrong or the handshake was refused (an unknown CA, a bad certificate):
    /// retrying will not help.
    Tls,
    /// The network or the broker failed. The clients retry these with backoff themselves, so
    /// this kind reaches the caller only through
    /// [`DeviceClient::last_failure`](crate::DeviceClient::last_failure) and
    /// [`BackendClient::last_failure`](crate::BackendClient::last_failure).
    Io,
    /// The client was shut down.
    Closed,
}

impl ErrorKind {
    /// Whether a connection failure of this kind ends the client instead of being retried:
    /// reconnecting with wrong credentials or an untrusted certificate would only be a
    /// reconnect storm.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Auth | Self::Tls | Self::Config)
    }
}

/// Why a connection attempt failed (or a connection was lost), as the transport saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionFailure {
    /// The shared category.
    pub kind: ErrorKind,
    /// The MQTT client's own description.
    pub message: String,
}

impl ConnectionFailure {
    /// A failure of `kind`, described by `message`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

impl ConnectionFailure {
    /// Logs this failure of an attempt (or loss of a connection, `was_up`) and when the next
    /// attempt comes: an error when it is final, a warning otherwise.
    pub(crate) fn log(&self, was_up: bool, retry_in: Option<std::time::Duration>) {
        let reason = crate::metrics::failure_label(self.kind);
        let error = &self.message;
        let what = if was_up {
            "connection lost"
        } else {
            "connection attempt failed"
        };
        if self.kind.is_final() {
            tracing::error!(
                target: "dese_transport::connection",
                reason,
                %error,
                "{what}: the broker refused the client, which stops (retrying cannot help)"
            );
        } else if let Some(delay) = retry_in {
            let retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX);
            tracing::warn!(
                target: "dese_transport::connection",
                reason,
                %error,
                retry_in_ms,
                "{what}; reconnecting in {:.1} s",
                delay.as_secs_f64()
            );
        } else {
            tracing::warn!(target: "dese_transport::connection", reason, %error, "{what}");
        }
    }
}

impl fmt::Display for ConnectionFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            ErrorKind::Config => "configuration",
            ErrorKind::Auth => "refused credentials",
            ErrorKind::Tls => "TLS",
            ErrorKind::Io => "network",
            ErrorKind::Closed => "closed",
        };
        write!(f, "{kind}: {}", self.message)
    }
}

/// An error of a DESE transport.
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The broker URL could not be used.
    BrokerUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A setting of the engine cannot work (a zero window, a timeout of centuries, an empty
    /// firmware version); nothing was started.
    Settings(dese_device::SettingsError),
    /// The TLS files could not be used.
    Tls {
        /// Why.
        reason: String,
    },
    /// Connecting failed for a reason that retrying will not fix (refused credentials, an
    /// untrusted certificate); the client stopped.
    Connection(ConnectionFailure),
    /// A command or config could not be built.
    Send(dese_backend::SendError),
    /// The client has ended.
    Closed,
}

impl Error {
    /// A TLS setup error.
    pub fn tls(reason: impl Into<String>) -> Self {
        Self::Tls {
            reason: reason.into(),
        }
    }

    /// The shared category.
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::BrokerUrl { .. } | Self::Settings(_) | Self::Send(_) => ErrorKind::Config,
            Self::Tls { .. } => ErrorKind::Tls,
            Self::Connection(failure) => failure.kind,
            Self::Closed => ErrorKind::Closed,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BrokerUrl { url, reason } => write!(f, "cannot use broker URL {url:?}: {reason}"),
            Self::Settings(error) => write!(f, "{error}"),
            Self::Tls { reason } => write!(f, "TLS: {reason}"),
            Self::Connection(failure) => write!(f, "cannot connect to the broker: {failure}"),
            Self::Send(_) => f.write_str("the message could not be built"),
            Self::Closed => f.write_str("the client has shut down"),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Send(e) => Some(e),
            _ => None,
        }
    }
}
