//! The broker options every network command shares (the SDK's broker flags, the client library,
//! the connect timeout), and waiting for the first connection.

use std::time::Duration;

use dese_transport::{BackendClient, BrokerOptions};

use crate::exit::{Exit, Failure, chain};

/// Which MQTT client library carries the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub(crate) enum TransportKind {
    /// rumqttc: pure Rust, rustls for TLS
    Rumqttc,
    /// paho-mqtt: the Eclipse Paho C library, OpenSSL for TLS
    Paho,
}

/// How to reach the broker: the SDK's shared broker flags, the client library, and how long to
/// wait for the first connection.
#[derive(Debug, Clone, clap::Args)]
#[command(next_help_heading = "Broker")]
pub(crate) struct ConnectArgs {
    #[command(flatten)]
    broker: dese_transport::cli::BrokerArgs,

    /// The MQTT client library to use
    #[arg(long, value_enum, default_value_t = TransportKind::Rumqttc)]
    pub(crate) transport: TransportKind,

    /// How long to wait for the broker to accept the first connection, in seconds
    #[arg(long, value_name = "SECS", default_value_t = 10.0)]
    pub(crate) connect_timeout: f64,
}

impl ConnectArgs {
    /// The transport's broker options: URL, credentials, TLS files (read and checked now).
    pub(crate) fn options(&self) -> Result<BrokerOptions, Failure> {
        self.broker
            .options()
            .map_err(|e| Failure::usage(e.to_string()))
    }

    /// The broker's URL as given.
    pub(crate) fn url(&self) -> &str {
        &self.broker.broker
    }

    pub(crate) fn connect_timeout(&self) -> Result<Duration, Failure> {
        seconds("--connect-timeout", self.connect_timeout)
    }
}

/// A duration given in seconds on the command line: more than zero and at most a day (the
/// longest any setting takes; `1e19` would overflow a clock).
pub(crate) fn seconds(flag: &str, value: f64) -> Result<Duration, Failure> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero() && *d <= dese_device::LONGEST)
        .ok_or_else(|| {
            Failure::usage(format!(
                "{flag} {value}: expected a number of seconds above 0 and at most 86400 (a day)"
            ))
        })
}

/// A client id for one run of a tool: `dese-{role}-{pid}-{nanoseconds}`, so that two runs
/// never take over each other's connection.
pub(crate) fn client_id(role: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("dese-{role}-{}-{nanos}", std::process::id())
}

/// Waits until the backend is connected. A refusal (credentials, TLS) fails at once; a broker
/// that cannot be reached fails after `within`, with the last reason.
pub(crate) async fn connected<T>(
    backend: &BackendClient<T>,
    broker: &BrokerOptions,
    within: Duration,
) -> Result<(), Failure> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if backend.is_connected() {
            return Ok(());
        }
        let failure = backend.last_failure();
        if let Some(failure) = failure.as_ref().filter(|f| f.kind.is_final()) {
            return Err(Failure::new(
                Exit::Broker,
                format!(
                    "the broker at {} refused us: {}",
                    broker.address(),
                    chain(failure)
                ),
            ));
        }
        if tokio::time::Instant::now() >= deadline {
            let why = failure.map_or_else(|| "no answer".to_string(), |f| chain(&f));
            return Err(Failure::new(
                Exit::Broker,
                format!(
                    "cannot connect to the broker at {} within {:.0?}: {why}",
                    broker.address(),
                    within
                ),
            ));
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
