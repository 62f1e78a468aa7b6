//! The one error type of every DESE transport, and its [`ErrorKind`].

use std::fmt;
use std::sync::Arc;

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
///
/// When the MQTT client reported an error, the failure keeps it as its
/// [`source`](std::error::Error::source), for code that wants the client's own type
/// (`rumqttc::ConnectionError`, `paho_mqtt::Error`); its text is in [`message`](Self::message)
/// too. `Display` then writes the category alone and leaves the cause to `source()`, so an
/// error chain prints each part once; without a cause it writes the category and the message.
///
/// ```
/// use dese_transport::{ConnectionFailure, ErrorKind};
///
/// let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
/// let failure = ConnectionFailure::caused_by(ErrorKind::Io, io);
/// assert_eq!(failure.message, "connection refused");
/// assert_eq!(failure.to_string(), "network");
/// let cause = std::error::Error::source(&failure).unwrap();
/// assert_eq!(cause.downcast_ref::<std::io::Error>().unwrap().kind(), std::io::ErrorKind::ConnectionRefused);
///
/// let lost = ConnectionFailure::new(ErrorKind::Io, "keepalive: the broker went silent");
/// assert_eq!(lost.to_string(), "network: keepalive: the broker went silent");
/// ```
#[derive(Debug, Clone)]
pub struct ConnectionFailure {
    /// The shared category.
    pub kind: ErrorKind,
    /// What happened: the MQTT client's own description when it gave one.
    pub message: String,
    /// The MQTT client's error, shared so that the failure stays `Clone`.
    cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl ConnectionFailure {
    /// A failure of `kind`, described by `message`, with no error of the client behind it.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            cause: None,
        }
    }

    /// A failure of `kind` that the MQTT client reported as `error`, kept as the source.
    pub fn caused_by(
        kind: ErrorKind,
        error: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Self {
            kind,
            message: error.to_string(),
            cause: Some(Arc::new(error)),
        }
    }
}

/// Two failures are equal when their category and description are; the client's error is
/// not compared (its types rarely can be).
impl PartialEq for ConnectionFailure {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.message == other.message
    }
}

impl Eq for ConnectionFailure {}

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
        match self.cause {
            Some(_) => f.write_str(kind),
            None => write!(f, "{kind}: {}", self.message),
        }
    }
}

impl std::error::Error for ConnectionFailure {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|cause| cause as &(dyn std::error::Error + 'static))
    }
}

/// An error of a DESE transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The broker URL could not be used.
    #[error("cannot use broker URL {url:?}: {reason}")]
    BrokerUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A setting of the engine cannot work (a zero window, a timeout of centuries, an empty
    /// firmware version); nothing was started.
    #[error(transparent)]
    Settings(dese_device::SettingsError),
    /// The TLS files could not be used.
    #[error("TLS: {reason}")]
    Tls {
        /// Why.
        reason: String,
    },
    /// Connecting failed for a reason that retrying will not fix (refused credentials, an
    /// untrusted certificate); the client stopped.
    #[error("cannot connect to the broker")]
    Connection(#[source] ConnectionFailure),
    /// A command or config could not be built.
    #[error("the message could not be built")]
    Send(#[source] dese_backend::SendError),
    /// The client has ended.
    #[error("the client has shut down")]
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

/// An error and its causes, `: `-separated. Every error of the SDK writes its own text and
/// leaves its cause to `source()`, so printing the chain tells the whole story once:
///
/// ```
/// use dese_transport::{ConnectionFailure, Error, ErrorKind, error_chain};
///
/// let io = std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connection refused");
/// let error = Error::Connection(ConnectionFailure::caused_by(ErrorKind::Auth, io));
/// assert_eq!(error.to_string(), "cannot connect to the broker");
/// assert_eq!(
///     error_chain(&error),
///     "cannot connect to the broker: refused credentials: connection refused"
/// );
/// ```
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        text.push_str(": ");
        text.push_str(&inner.to_string());
        cause = inner.source();
    }
    text
}
