//! The DESE IoT transport over [rumqttc](https://docs.rs/rumqttc): runs the sans-IO engines
//! against a real MQTT 3.1.1 broker, on tokio, in pure Rust.
//!
//! [`DeviceClient`] runs a device, [`BackendClient`] a backend, over `mqtt://` or `mqtts://`
//! (rustls with the ring provider; see [`BrokerOptions::with_ca`]). The clients, the options
//! and the errors are those of [`dese_transport`], shared with the paho transport, so code
//! written against one compiles against the other; the conformance suite in
//! `crates/dese-conformance` runs the same tests on both. docs/transports.md in the repository
//! explains the design and what it guards against.
//!
//! ```text
//!  broker <-> rumqttc event loop (its own task) <-> driver task: dese_device::Device
//!                                                      <-> your SensorReader, CommandHandler
//! ```
//!
//! What this transport does about rumqttc's own behaviour:
//!
//! - `publish` only means queued, and rumqttc clears its queue when it reconnects without a
//!   stored session: the engines keep every message until its PUBACK and replay the rest.
//! - rumqttc has no reconnect backoff: the poll task reconnects only when the engine's backoff
//!   says so.
//! - publishing from the polling task can deadlock on a full request channel: the poll task
//!   never sends requests (it only polls, and writes the PUBACKs waiting in the link), and the
//!   driver only uses `try_publish` and `try_ack`.
//! - the event loop takes one request for every ten packets it reads: under a burst, PUBACKs
//!   sent through its channel fell behind and were refused; now they go through it only when
//!   none waits, and the poll task writes the others itself, in order (docs/transports.md).
//! - rumqttc acknowledges a message on receipt by default: a backend's session uses manual
//!   acknowledgement, and the link sends a PUBACK only when the backend engine releases it (in
//!   arrival order, after the application confirmed), only on the connection the message came
//!   on.
//! - a packet over rumqttc's maximum would fail every connection, as the broker sends it again:
//!   the maximum incoming packet is [`BrokerOptions::max_incoming_packet_size`] (320 KiB), far
//!   above the decoder's 16 KiB, and a larger packet makes the next connections accept its
//!   size; the outgoing maximum is [`BrokerOptions::max_packet_size`] (20 KiB), not rumqttc's
//!   10 KiB. TCP_NODELAY is on.
#![forbid(unsafe_code)]
// A std crate: portability to no_std is not a goal here.
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)]

mod link;
mod tls;

pub use dese_transport::{
    BackendHandle, BrokerOptions, ConnectionFailure, DeviceCommand, Error, ErrorKind,
};
pub use link::{Rumqttc, RumqttcLink};

/// A device over rumqttc.
pub type DeviceClient = dese_transport::DeviceClient<Rumqttc>;
/// A backend over rumqttc.
pub type BackendClient = dese_transport::BackendClient<Rumqttc>;
