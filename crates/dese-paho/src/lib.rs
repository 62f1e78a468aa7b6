//! The DESE IoT transport over [paho-mqtt](https://docs.rs/paho-mqtt), the Rust binding of the
//! Eclipse Paho C library: runs the sans-IO engines against a real MQTT 3.1.1 broker, on tokio.
//!
//! [`DeviceClient`] runs a device, [`BackendClient`] a backend, over `mqtt://` or `mqtts://`
//! (OpenSSL, trusting exactly the CA given with [`BrokerOptions::with_ca`]). The clients, the
//! options and the errors are those of [`dese_transport`], shared with the rumqttc transport,
//! so code written against one compiles against the other; the conformance suite in
//! `crates/dese-conformance` runs the same tests on both.
//!
//! What this transport does about paho's own behaviour:
//!
//! - paho's automatic reconnect does not subscribe again, and publishes made after a silent
//!   link drop are lost: automatic reconnect is off; the driver reconnects with the engine's
//!   backoff, subscribes after every connection, and keeps every message until the broker
//!   acknowledged it (each publish's delivery token), replaying the rest.
//! - paho's file persistence is off: the driver's outbox is the one source of truth.
//! - the C library sets TCP_NODELAY on every socket itself.
//! - MQTT 3.1.1 has no maximum packet size to negotiate and paho has no setting for it:
//!   [`BrokerOptions::max_packet_size`] is not used by this transport, and it takes a message of
//!   any size; the protocol's own decoder limit (16 KiB) still applies to every payload.
//! - the C library acknowledges a received message (PUBACK) when its message callback returns
//!   and cannot defer it: for a backend the callback waits while the receive window's worth of
//!   messages are not yet confirmed by the application, so at most that many are acknowledged
//!   ahead of the application, and a crash loses at most that many (rumqttc: none). Every call
//!   into the C library runs on a thread of the link's own, because a waiting callback holds
//!   the library's global lock; a paho backend that falls behind delays every paho client of
//!   the process.
//! - with a backend's persistent session the C library keeps, in memory, the publishes it had no
//!   PUBACK for when the connection dropped, and sends them again after the reconnection, beside
//!   the engine's own replay: a command may reach the device twice (it runs once), and one that
//!   timed out while in flight may still go out after its timeout.
//!
//! - Paho C 1.3.16 frees a QoS 1 message's topic and payload twice when its socket write fails
//!   (the broker went away a moment before) and aborts the process: a broker restart while
//!   telemetry streams is enough (eclipse-paho/paho.mqtt.c issues 1621 and 1622). This
//!   package's build script builds the C library itself, from the source `paho-mqtt-sys` ships,
//!   with that fixed; `paho-mqtt` is used without its `bundled` feature. Do not turn `bundled`
//!   on elsewhere in the same build: it brings the unfixed library back.
//!
//! Building needs cmake, a C compiler and the OpenSSL headers. The build script finds the Paho C
//! source next to this package, in cargo's registry, or at `DESE_PAHO_C_SOURCE`.
#![forbid(unsafe_code)]
// A std crate: portability to no_std is not a goal here.
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)]

// Keeps OpenSSL's libraries on the link line: the Paho C library that build.rs builds calls
// them, and no Rust code here does.
extern crate openssl_sys as _;

mod link;

pub use dese_transport::{
    BackendHandle, BrokerOptions, ConnectionFailure, DeviceCommand, Error, ErrorKind,
};
pub use link::{Paho, PahoLink};

/// A device over paho-mqtt.
pub type DeviceClient = dese_transport::DeviceClient<Paho>;
/// A backend over paho-mqtt.
pub type BackendClient = dese_transport::BackendClient<Paho>;
