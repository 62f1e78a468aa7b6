//! The broker options of a command line, defined once for every binary of the SDK (`dese`, the
//! reference device and backend) and for applications that want the same flags.
//!
//! ```
//! use clap::Parser;
//! use dese_transport::cli::BrokerArgs;
//!
//! #[derive(Parser)]
//! struct Args {
//!     #[command(flatten)]
//!     broker: BrokerArgs,
//! }
//!
//! let args = Args::parse_from(["app", "--broker", "mqtt://[::1]:1884", "--username", "acme/pool-1", "--password", "s3cret"]);
//! let options = args.broker.options()?;
//! assert_eq!(options.address(), "[::1]:1884");
//!
//! // A TLS broker without its CA is refused before any connection.
//! let args = Args::parse_from(["app", "--broker", "mqtts://broker.example"]);
//! assert!(args.broker.options().is_err());
//! # Ok::<(), dese_transport::Error>(())
//! ```

use std::path::PathBuf;

use crate::{BrokerOptions, Error};

/// How to reach the broker: its URL, credentials and TLS files. Flatten it into a
/// `clap::Parser` (`#[command(flatten)]`); [`BrokerArgs::options`] turns it into the
/// [`BrokerOptions`] a client takes. The URL and credentials may come from the environment
/// (`DESE_BROKER`, `DESE_USERNAME`, `DESE_PASSWORD`).
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Broker")]
pub struct BrokerArgs {
    /// The broker: mqtt://HOST:PORT (the port is 1883 when left out), or mqtts://HOST:PORT for TLS
    /// (port 8883, needs --ca); an IPv6 address goes in square brackets
    #[arg(
        long,
        value_name = "URL",
        env = "DESE_BROKER",
        default_value = "mqtt://127.0.0.1:1883"
    )]
    pub broker: String,

    /// The username to connect with
    #[arg(long, env = "DESE_USERNAME", requires = "password")]
    pub username: Option<String>,

    /// The password; prefer the DESE_PASSWORD environment variable, as other users of the
    /// machine can read a command line
    #[arg(
        long,
        env = "DESE_PASSWORD",
        hide_env_values = true,
        requires = "username"
    )]
    pub password: Option<String>,

    /// Trust only the CA certificates in this PEM file (mqtts://)
    #[arg(long, value_name = "PEM")]
    pub ca: Option<PathBuf>,

    /// Authenticate with this client certificate, PEM (mqtts://, with --client-key)
    #[arg(long, value_name = "PEM", requires_all = ["client_key", "ca"])]
    pub client_cert: Option<PathBuf>,

    /// The private key of --client-cert, PEM
    #[arg(long, value_name = "PEM", requires = "client_cert")]
    pub client_key: Option<PathBuf>,
}

impl BrokerArgs {
    /// The client's broker options: the URL parsed, the credentials, and the TLS files read
    /// and checked now ([`BrokerOptions::from_parts`]), so that a bad file or an `mqtts://`
    /// URL without a CA is a usage error before any connection.
    pub fn options(&self) -> Result<BrokerOptions, Error> {
        BrokerOptions::from_parts(
            &self.broker,
            self.username.as_deref().zip(self.password.as_deref()),
            self.ca.as_deref(),
            self.client_cert.as_deref().zip(self.client_key.as_deref()),
        )
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)] // test code: a panic is a test failure

    use clap::{CommandFactory, FromArgMatches, Parser};

    use super::*;

    #[derive(Debug, Parser)]
    struct Args {
        #[command(flatten)]
        broker: BrokerArgs,
    }

    /// Parses `flags` as the flags alone say, whatever `DESE_BROKER`, `DESE_USERNAME` or
    /// `DESE_PASSWORD` the machine running the tests has exported.
    fn parse(flags: &[&str]) -> Result<Args, clap::Error> {
        let command = ["broker", "username", "password"]
            .into_iter()
            .fold(Args::command(), |command, flag| {
                command.mut_arg(flag, |arg| arg.env(None::<&str>))
            });
        let matches =
            command.try_get_matches_from(std::iter::once("app").chain(flags.iter().copied()))?;
        Args::from_arg_matches(&matches)
    }

    #[test]
    fn the_flags_check_each_other() {
        Args::command().debug_assert();
        // A username without its password (and the reverse) is a usage error, as is a client
        // certificate without its key or without a CA.
        for flags in [
            &["--username", "u"][..],
            &["--password", "p"],
            &["--client-cert", "c.pem", "--ca", "ca.pem"],
            &["--client-cert", "c.pem", "--client-key", "k.pem"],
        ] {
            let error = parse(flags).unwrap_err();
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::MissingRequiredArgument,
                "{flags:?}"
            );
        }
    }

    #[test]
    fn options_come_from_the_flags() {
        let options = parse(&[]).unwrap().broker.options().unwrap();
        assert_eq!(options.address(), "127.0.0.1:1883");
        assert!(!options.is_secure());
        let args = parse(&["--broker", "mqtts://h", "--ca", "/nonexistent.pem"]).unwrap();
        let error = args.broker.options().unwrap_err();
        assert_eq!(error.kind(), crate::ErrorKind::Tls);
        assert!(error.to_string().contains("/nonexistent.pem"), "{error}");
    }
}
