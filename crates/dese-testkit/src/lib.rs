//! Test support for the crates that talk to a real broker.
//!
//! [`Mosquitto`] runs the system's `mosquitto` (the test command installs the package) on a
//! free loopback port with a generated configuration, makes sure the port is its own (the
//! broker's log names it and the process is alive), and stops it by PID when dropped. Only
//! loopback addresses are ever used.
//!
//! [`Postgres`] runs the system's PostgreSQL the same way: a cluster made by `initdb` in a
//! temporary folder, a free loopback port, the `postgres` user when the tests run as root,
//! stopped by PID.
//!
//! [`Browser`] runs a headless Chromium through `chromedriver` on a free loopback port, stopped
//! by PID, for tests of web pages.
//!
//! [`TestCa`] makes certificates of a test's own (a CA, and the server and client certificates
//! it signs) for TLS listeners and clients.
//!
//! [`Proxy`] stands between a client and a broker and can cut the link without a goodbye, as a
//! power loss would.
//!
//! [`raw`] has plain MQTT clients with no DESE logic: a publisher that sends anything
//! (oversized, malformed, retained), and a bare subscriber to measure the SDK against.
//!
//! With the `rumqttd` feature, [`EmbeddedBroker`] runs a rumqttd broker inside the process, on a
//! free loopback port proven to be its own.

#![forbid(unsafe_code)]
// A std crate: portability to no_std is not a goal here.
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)]

mod browser;
mod certificates;
mod mosquitto;
mod postgres;
mod proxy;
pub mod raw;
#[cfg(feature = "rumqttd")]
mod rumqttd;

pub use browser::{Browser, BrowserError, Element};
pub use certificates::{TestCa, certificates};
pub use mosquitto::{Mosquitto, MosquittoConfig, StartError};
pub use postgres::{Postgres, PostgresError};
pub use proxy::{Proxy, shuffle};
#[cfg(feature = "rumqttd")]
pub use rumqttd::{EmbeddedBroker, EmbeddedError};
