//! The DESE IoT transport over [rumqttc](https://docs.rs/rumqttc): runs the sans-IO engines
//! against a real MQTT 3.1.1 broker, on tokio.
//!
//! [`DeviceClient`] runs a device, [`BackendClient`] a backend, over `mqtt://` or `mqtts://`
//! (rustls with the ring provider; see [`BrokerOptions::with_ca`]). The conformance suite shared
//! with the paho transport is still to come. docs/transports.md in the repository explains the
//! design and what it guards against.
//!
//! ```text
//!  broker <-> rumqttc event loop (its own task) <-> DeviceClient task: dese_device::Device
//!                                                      <-> your SensorReader, CommandHandler
//! ```
#![forbid(unsafe_code)]
// A std crate: portability to no_std is not a goal here.
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)]

mod backend;
mod device;
mod error;
mod link;
mod options;

pub use backend::BackendClient;
pub use device::DeviceClient;
pub use error::{ConnectionFailure, Error, ErrorKind};
pub use options::BrokerOptions;
