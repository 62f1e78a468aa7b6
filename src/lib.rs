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
//!
//! The engines and transports join as they are built; see the repository's README.
//!
//! # Crate features
//!
//! - `std` (default): everything that needs the standard library, the backend engine
//!   included.
//! - `alloc`: heap allocation without std, for firmware.
//! - `schema`: generation of the JSON Schemas, the AsyncAPI document and the test vectors
//!   (`protocol::schema`).
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
pub use dese_protocol as protocol;

/// The repository README's code, compiled and run as a doctest so that it stays true.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;
