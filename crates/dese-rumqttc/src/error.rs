//! Errors, each with a [`ErrorKind`] that every DESE transport shares.

use std::fmt;

/// The category of a transport error, the same for every DESE transport, so that code above
/// reacts alike to rumqttc and paho failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The options cannot work (a malformed broker URL, an unsupported scheme).
    Config,
    /// The broker refused the credentials or the client: retrying will not help.
    Auth,
    /// The TLS setup is wrong or the handshake was refused (an unknown CA, a bad certificate):
    /// retrying will not help.
    Tls,
    /// The network or the broker failed. The clients retry these with backoff themselves;
    /// this kind reaches the caller only for a refusal that may pass (server unavailable).
    Io,
    /// The client was shut down.
    Closed,
}

/// Why the last connection attempt failed, kept by the clients while they retry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectionFailure {
    /// The shared category.
    pub kind: ErrorKind,
    /// rumqttc's description.
    pub message: String,
}

impl ConnectionFailure {
    pub(crate) fn of(error: &rumqttc::ConnectionError) -> Self {
        use rumqttc::ConnectReturnCode as Code;
        let kind = match error {
            rumqttc::ConnectionError::ConnectionRefused(
                Code::BadUserNamePassword | Code::NotAuthorized | Code::BadClientId,
            ) => ErrorKind::Auth,
            rumqttc::ConnectionError::Tls(_) => ErrorKind::Tls,
            _ => ErrorKind::Io,
        };
        Self {
            kind,
            message: error.to_string(),
        }
    }
}

impl fmt::Display for ConnectionFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

/// An error of the rumqttc transport.
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
    /// The broker refused the connection with this MQTT return code.
    Refused(rumqttc::ConnectReturnCode),
    /// The client task has ended.
    Closed,
    /// A command or config could not be built.
    Send(dese_backend::SendError),
    /// TLS could not be set up, or the broker's certificate was refused.
    Tls {
        /// Why.
        reason: String,
    },
}

impl Error {
    pub(crate) fn tls(reason: String) -> Self {
        Self::Tls { reason }
    }

    /// The shared category.
    pub fn kind(&self) -> ErrorKind {
        use rumqttc::ConnectReturnCode as Code;
        match self {
            Self::BrokerUrl { .. } => ErrorKind::Config,
            Self::Refused(Code::BadUserNamePassword | Code::NotAuthorized | Code::BadClientId) => {
                ErrorKind::Auth
            }
            Self::Refused(_) => ErrorKind::Io,
            Self::Closed => ErrorKind::Closed,
            Self::Send(_) => ErrorKind::Config,
            Self::Tls { .. } => ErrorKind::Tls,
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BrokerUrl { url, reason } => write!(f, "cannot use broker URL {url:?}: {reason}"),
            Self::Refused(code) => write!(f, "the broker refused the connection: {code:?}"),
            Self::Closed => f.write_str("the client has shut down"),
            Self::Send(_) => f.write_str("the message could not be built"),
            Self::Tls { reason } => write!(f, "TLS: {reason}"),
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
