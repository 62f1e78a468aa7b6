//! The DESE IoT SDK: the typed MQTT protocol spoken between water-quality devices (pH,
//! chlorine, temperature, ORP, TDS, flow, pumps) and their multi-tenant backend.
//!
//! This facade re-exports the crate family so that one dependency line brings what you need:
//!
//! - [`protocol`] ([`dese-protocol`](dese_protocol)): ids, topics, the six messages,
//!   validation and codec; `no_std`.
//! - [`device`] ([`dese-device`](dese_device)): the sans-IO device engine (status, outbox,
//!   commands, config, alerts, reconnect backoff); `no_std`.
//! - [`backend`] ([`dese-backend`](dese_backend), with `std`): the sans-IO backend engine
//!   (ingest with tenant checks, dedup, presence, command tracking, rate limiting).
//! - `transport` (`dese-transport`, with the `rumqttc` or `paho` feature): what the clients
//!   share: `BrokerOptions`, the `DeviceClient` and `BackendClient` that drive the engines over
//!   a broker, one `Error` with its `kind()`, the metrics catalogue.
//! - `schema` (`dese-schema`, feature `schema`): the JSON Schemas, the AsyncAPI document and
//!   the test vectors, generated from the protocol's types, and the function that writes them.
//! - `rumqttc` (`dese-rumqttc`, feature `rumqttc`) and `paho` (`dese-paho`, feature `paho`):
//!   the two transports, `Rumqttc` and `Paho`, to put in those clients.
//!
//! # Crate features
//!
//! - `std` (default): everything that needs the standard library, the backend engine
//!   included.
//! - `alloc`: heap allocation without std, for firmware.
//! - `schema`: the protocol for other languages: `dese::schema` (`dese-schema`) generates
//!   the JSON Schemas, the AsyncAPI document and the test vectors under `schemas/`, and
//!   `protocol::schema` holds the JSON Schema of each type, for schemars.
//! - `chrono`: `protocol::Timestamp` to and from `chrono::DateTime<Utc>`.
//! - `uuid`: `protocol::OrgId` from a `uuid::Uuid`, and a UUID organization id back to one.
//! - `rumqttc`: the clients over rumqttc (tokio, pure Rust): `dese::rumqttc` and
//!   `dese::transport`. The one to start with.
//! - `paho`: the same clients over the Eclipse Paho C library, built from source (cmake and a
//!   C compiler): `dese::paho` and `dese::transport`. See docs/transports.md for how the two
//!   differ.
//!
//! # Examples
//!
//! ```
//! use dese::protocol::{decode, Reason};
//!
//! let payload = br#"{"status":"sleeping","firmware_version":"1.0.0","timestamp":"2025-01-27T10:00:00Z"}"#;
//! let err = decode("devices/org-123/esp32-001/status", payload).unwrap_err();
//! assert_eq!(err.reason(), Reason::NotOneOf);
//! assert_eq!(
//!     err.to_string(),
//!     r#"status: "sleeping" is not one of online, offline, error, maintenance"#
//! );
//! ```
#![no_std]
#![forbid(unsafe_code)]

#[cfg(feature = "std")]
pub use dese_backend as backend;
pub use dese_device as device;
#[cfg(feature = "paho")]
pub use dese_paho as paho;
pub use dese_protocol as protocol;
#[cfg(feature = "rumqttc")]
pub use dese_rumqttc as rumqttc;
#[cfg(feature = "schema")]
pub use dese_schema as schema;
#[cfg(any(feature = "rumqttc", feature = "paho"))]
pub use dese_transport as transport;

/// The repository README's code, compiled and run as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
