//! The broker-independent part of the conformance suite on an embedded rumqttd broker (the
//! quickstart's embedded default), for each transport and each mixed pair.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure

use dese_conformance::scenarios;
use dese_paho::Paho;
use dese_rumqttc::Rumqttc;
use dese_testkit::EmbeddedBroker;

macro_rules! pair {
    ($name:ident, $device:ty, $backend:ty) => {
        mod $name {
            use super::*;

            // DESE-D1, DESE-D2, DESE-D4, DESE-D5, DESE-C1, DESE-C4
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn lifecycle() {
                let broker = EmbeddedBroker::start().unwrap();
                scenarios::lifecycle::<$device, $backend>(&broker.url()).await;
            }

            // DESE-C2, DESE-C3
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn retry_runs_once() {
                let broker = EmbeddedBroker::start().unwrap();
                scenarios::retry_runs_once::<$device, $backend>(&broker.url()).await;
            }

            // DESE-D3
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn last_will() {
                let broker = EmbeddedBroker::start().unwrap();
                scenarios::last_will::<$device, $backend>(broker.addr()).await;
            }
        }
    };
}

pair!(rumqttc, Rumqttc, Rumqttc);
pair!(paho, Paho, Paho);
pair!(rumqttc_device_paho_backend, Rumqttc, Paho);
pair!(paho_device_rumqttc_backend, Paho, Rumqttc);
