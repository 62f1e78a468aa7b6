//! The DESE reference firmware for the ESP32-C3, in the parts that do not touch the chip.
//!
//! The binary (`src/main.rs`) wires esp-hal, esp-radio (WiFi) and embassy-net to these parts;
//! everything here is `no_std` + `alloc` and also builds for the host, where the tests run the
//! same MQTT loop against a real Mosquitto.
//!
//! - [`mqtt`]: the MQTT 3.1.1 packets a device sends and receives, without panics.
//! - [`client`]: the loop that drives the dese-device engine over one TCP connection, and
//!   feeds the watchdog.
//! - [`restart`]: why the chip started, as the first alert after every boot.
//! - [`station`]: pumps, targets and calibration behind the engine's sensor and command traits.
//! - [`sensors`]: the probes: ADC probe boards, or a simulated pool.
//! - [`sntp`]: the wall clock, set by one SNTP exchange.
//! - [`tls`]: MQTT over TLS 1.3, the broker's certificate checked against a CA fixed at build
//!   time.
//! - [`x509`]: whether a certificate of the broker's chain may sign others, which embedded-tls
//!   does not check.
//! - [`store`]: the engine's outbox, answered commands and config, kept in flash across reboots.
#![no_std]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

pub mod client;
pub mod mqtt;
pub mod restart;
pub mod sensors;
pub mod sntp;
pub mod station;
pub mod store;
pub mod tls;
pub mod x509;
