//! The conformance suite of the DESE transports, written once.
//!
//! Every scenario is a function generic over the transport of the device (`D`) and of the
//! backend (`B`), so one body runs for rumqttc, for paho, and for the mixed pairs (a rumqttc
//! device with a paho backend and the other way round). `tests/mosquitto.rs` runs them on a real
//! Mosquitto started by [`dese_testkit`] for each test, on a free loopback port, and
//! `tests/rumqttd.rs` runs the broker-independent ones on an embedded rumqttd broker.
//!
//! A scenario panics (fails its test) with a message that says what was expected; the ones
//! that measure something return a [`Figures`] that the test prints.
#![forbid(unsafe_code)]
// Test support: a panic is a test failure, and this crate only runs on std.
#![allow(
    clippy::unwrap_used,
    clippy::std_instead_of_alloc,
    clippy::std_instead_of_core
)]

pub mod chaos;
pub mod delivery;
mod fixtures;
pub mod scenarios;

pub use fixtures::{Figures, TestCa, certificates, device_settings, eventually, wait_for};

/// The scenarios between a device and a backend that need nothing of the broker beyond MQTT,
/// as a module `$name` of tests for the device transport `$device` and the backend transport
/// `$backend`; `$broker` starts the broker of each test (anything with `url()` and `addr()`).
#[macro_export]
macro_rules! pair_tests {
    ($name:ident, $device:ty, $backend:ty, $broker:expr) => {
        mod $name {
            use super::*;

            // DESE-D1, DESE-D2, DESE-D4, DESE-D5, DESE-C1, DESE-C4
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lifecycle() {
                let broker = $broker;
                $crate::scenarios::lifecycle::<$device, $backend>(&broker.url()).await;
            }

            // DESE-C2, DESE-C3
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn retry_runs_once() {
                let broker = $broker;
                $crate::scenarios::retry_runs_once::<$device, $backend>(&broker.url()).await;
            }

            // DESE-D5
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn last_will() {
                let broker = $broker;
                $crate::scenarios::last_will::<$device, $backend>(broker.addr()).await;
            }
        }
    };
}
