//! The conformance suite on a real Mosquitto (started per test on a free loopback port), for
//! each transport and each mixed pair.
//!
//!     cargo test -p dese-conformance --test mosquitto -- --nocapture   # with the figures

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure

use dese_conformance::scenarios;
use dese_paho::Paho;
use dese_rumqttc::Rumqttc;
use dese_testkit::Mosquitto;

/// Scenarios between a device and a backend, for one (device transport, backend transport).
macro_rules! pair {
    ($name:ident, $device:ty, $backend:ty) => {
        dese_conformance::pair_tests!($name, $device, $backend, Mosquitto::start().unwrap());
    };
}

/// Scenarios of one transport on both sides, and of its clients alone.
macro_rules! transport {
    ($name:ident, $transport:ty) => {
        mod $name {
            use super::*;

            pair!(pair, $transport, $transport);

            // DESE-D9
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dese_d9_ten_restarts_while_streaming() {
                let figures =
                    scenarios::restarts::<$transport, $transport>(stringify!($name)).await;
                println!("{}: ten Mosquitto restarts: {figures}", stringify!($name));
            }

            // DESE-D9
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dese_d9_shutdown_delivers_outbox() {
                let figures = scenarios::shutdown_delivers_outbox::<$transport, $transport>(
                    stringify!($name),
                )
                .await;
                println!(
                    "{}: shutdown with a full outbox: {figures}",
                    stringify!($name)
                );
            }

            // DESE-D7
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dese_d7_offline_replay() {
                let figures =
                    scenarios::offline_replay::<$transport, $transport>(stringify!($name)).await;
                println!("{}: offline replay: {figures}", stringify!($name));
            }

            // DESE-D8
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn keepalive_change() {
                let broker = Mosquitto::start().unwrap();
                scenarios::keepalive_change::<$transport, $transport>(&broker).await;
            }

            // DESE-G3
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn shared_group() {
                let broker = Mosquitto::start().unwrap();
                scenarios::shared_group::<$transport, $transport>(&broker.url()).await;
            }

            // DESE-S2
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dese_s2_tls() {
                scenarios::tls::<$transport>().await;
            }

            // DESE-S1
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dese_s1_wrong_password() {
                scenarios::wrong_password::<$transport>().await;
            }

            // DESE-D6
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn dese_d6_backoff_not_a_storm() {
                scenarios::failing_broker_backoff::<$transport>().await;
            }
        }
    };
}

transport!(rumqttc, Rumqttc);
// The restart scenario aborted the paho process with a double free in the Paho C library until
// dese-paho built the library with a fix (crates/dese-paho/build.rs, docs/transports.md).
transport!(paho, Paho);
pair!(rumqttc_device_paho_backend, Rumqttc, Paho);
pair!(paho_device_rumqttc_backend, Paho, Rumqttc);
