//! The broker-independent part of the conformance suite on an embedded rumqttd broker (the
//! quickstart's embedded default), for each transport and each mixed pair.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure

use dese_paho::Paho;
use dese_rumqttc::Rumqttc;
use dese_testkit::EmbeddedBroker;

macro_rules! pair {
    ($name:ident, $device:ty, $backend:ty) => {
        dese_conformance::pair_tests!($name, $device, $backend, EmbeddedBroker::start().unwrap());
    };
}

pair!(rumqttc, Rumqttc, Rumqttc);
pair!(paho, Paho, Paho);
pair!(rumqttc_device_paho_backend, Rumqttc, Paho);
pair!(paho_device_rumqttc_backend, Paho, Rumqttc);
