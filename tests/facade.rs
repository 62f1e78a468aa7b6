//! The facade's transport features bring what they say: `dese::transport` with `rumqttc` or
//! `paho`, and each transport under its own name (the test command builds with every feature).
#![cfg(all(feature = "rumqttc", feature = "paho"))]
#![allow(clippy::unwrap_used)] // test code: a panic is a test failure

use dese::transport::{BrokerOptions, Transport};

fn named<T: Transport>() -> &'static str {
    core::any::type_name::<T>()
}

#[test]
fn both_transports_and_their_options_come_through_the_facade() {
    let options = BrokerOptions::parse("mqtt://[::1]:1883").unwrap();
    assert_eq!(options.address(), "[::1]:1883");
    assert!(named::<dese::rumqttc::Rumqttc>().ends_with("Rumqttc"));
    assert!(named::<dese::paho::Paho>().ends_with("Paho"));
}
