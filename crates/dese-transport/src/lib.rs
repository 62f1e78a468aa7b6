//! What every DESE IoT transport shares: [`BrokerOptions`], the [`Error`] type with its
//! [`ErrorKind`], and the [`DeviceClient`] and [`BackendClient`] that run the sans-IO engines
//! over any MQTT client that implements [`Transport`].
//!
//! Applications use a transport crate: `dese-rumqttc` (pure Rust) or `dese-paho` (the Eclipse
//! C library). Both name their clients `DeviceClient` and `BackendClient` (aliases of the
//! generic clients here), so code written against one compiles against the other, and both
//! pass one conformance suite (`crates/dese-conformance` in the repository).
//!
//! ```text
//!  broker <-> MQTT client (rumqttc | paho) <-> Link <-> driver task <-> engine <-> your code
//!             one Transport implementation          (this crate: dese_device / dese_backend)
//! ```
//!
//! A transport only moves bytes: it opens a [`Link`] that connects when told, publishes with
//! QoS 1, reports each broker acknowledgement, acknowledges a received message when told, and
//! reports incoming messages and lost connections as [`LinkEvent`]s. Everything the protocol
//! decides (status on connect, outbox, replay, backoff, deduplication, command tracking, what
//! may be acknowledged to the broker and when) happens once, in the engines; the driver tasks
//! here move bytes and time between a link and an engine.
//!
//! The backend's promise: a message the broker handed over is acknowledged only once the
//! application has confirmed it ([`BackendClient::next_delivery`], [`BackendClient::ack`]), and
//! an application that falls behind makes the client stop reading instead of dropping events
//! (docs/backend.md in the repository).
//!
//! # What an operator sees
//!
//! The clients log through [`tracing`](https://docs.rs/tracing) (connecting, connected, a lost
//! connection with its reason and the delay before the next attempt, a subscription the broker
//! refused, refused messages, command outcomes), each client inside a span that names its
//! client id and broker, and count through the [`metrics`](https://docs.rs/metrics) facade
//! ([`metrics::CATALOG`] lists every metric). Neither installs anything: the application
//! chooses its subscriber and its recorder (docs/operations.md in the repository).
//!
//! # Crate features
//!
//! - `log-subscriber` (off by default): [`logging::init`], the subscriber the SDK's binaries
//!   install (standard error, `RUST_LOG` filtering, text or JSON lines), for applications that
//!   want the same.
//! - `cli` (off by default): [`cli::BrokerArgs`], the broker flags of a command line for clap
//!   (URL, credentials, TLS files), as the SDK's binaries define them.
#![forbid(unsafe_code)]
// A std crate: portability to no_std is not a goal here.
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)]

mod backend;
#[cfg(feature = "cli")]
pub mod cli;
mod clock;
mod device;
mod error;
mod link;
#[cfg(feature = "log-subscriber")]
pub mod logging;
pub mod metrics;
mod options;

pub use backend::{BackendClient, BackendHandle, Backlog, PendingCommand};
pub use device::{DeviceClient, DeviceCommand};
pub use error::{ConnectionFailure, Error, ErrorKind, error_chain};
pub use link::{Acknowledgement, Link, LinkEvent, Session, Transport, Will};
pub use options::{BROKER_MESSAGE_SIZE_LIMIT, BrokerOptions, TlsFiles};
