//! Exit statuses, the same for every command (`dese --help` lists them).

use std::process::ExitCode;

use dese_transport::{Error, ErrorKind};

/// How `dese` ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Exit {
    /// Done; the message is valid; the device answered success.
    Ok = 0,
    /// The message is invalid; the device answered failure.
    Failed = 1,
    /// A usage error (clap uses 2 for its own).
    Usage = 2,
    /// The command timed out.
    TimedOut = 3,
    /// The broker could not be reached or refused the connection.
    Broker = 4,
    /// A file could not be read or written.
    Io = 5,
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        Self::from(exit as u8)
    }
}

/// Why a command ended early: the status to exit with and what to tell the user.
#[derive(Debug)]
pub(crate) struct Failure {
    pub(crate) exit: Exit,
    pub(crate) message: String,
}

impl Failure {
    pub(crate) fn new(exit: Exit, message: impl Into<String>) -> Self {
        Self {
            exit,
            message: message.into(),
        }
    }

    pub(crate) fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, message)
    }
}

impl From<Error> for Failure {
    fn from(error: Error) -> Self {
        let exit = match error.kind() {
            ErrorKind::Config => Exit::Usage,
            _ => Exit::Broker,
        };
        Self::new(exit, chain(&error))
    }
}

/// An error and its causes, `: `-separated: the SDK's one rule for telling them.
pub(crate) use dese_transport::error_chain as chain;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_tells_the_whole_chain_of_causes() {
        let engine = dese_backend::SendError::OutboxFull { capacity: 3 };
        let failure = Failure::from(Error::Send(engine));
        assert_eq!(
            failure.message,
            "the message could not be built: the outbox is full: 3 messages already wait for the broker"
        );
        assert_eq!(failure.exit, Exit::Usage);
    }
}
