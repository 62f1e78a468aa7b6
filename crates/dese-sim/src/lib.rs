//! Device engines and a backend engine wired through an in-memory MQTT broker, stepped on
//! virtual time: the protocol end to end, deterministic, in milliseconds of real time.
//!
//! The broker keeps retained messages, publishes a device's last will when its link drops,
//! and, like a broker with clean sessions, does not queue messages for a disconnected device.
//! [`Network`] knobs make it hostile: duplicate deliveries (QoS 1 is at least once), reordered
//! deliveries, links that drop as a device publishes, and acknowledgements lost with the link
//! (so that the device sends again what the broker already has). Randomness comes from a seed, so a
//! failing run can be replayed.
//!
//! The same harness serves the engines' integration tests and the desktop simulator.
//!
//! [`fleet`] builds the messages of many devices for a backend's tests and benchmarks.
//!
//! [`water`] is the simulated pool that `dese simulate`, the desktop reference device and the
//! quickstart run: water whose pH and chlorine drift, pumps that move them, noisy probes.
#![forbid(unsafe_code)]
// A std crate: portability to no_std is not a goal here.
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)]

pub mod fleet;
mod sim;
pub mod water;

pub use sim::{DeviceStats, Network, Sim};
