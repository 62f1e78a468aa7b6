//! The facade's features bring what they say: `dese::transport` with `rumqttc` or `paho`, each
//! transport under its own name, `dese::schema` with `schema`, and the conversions of `chrono`
//! and `uuid` (the test command builds with every feature).
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

// `schema`, `chrono` and `uuid` bring the generated files and the conversions.
#[cfg(all(feature = "schema", feature = "chrono", feature = "uuid"))]
#[test]
fn the_schema_and_conversion_features_come_through_the_facade() {
    let files = dese::schema::files();
    assert!(files.iter().any(|f| f.path == "asyncapi.json"));
    let t = dese::protocol::Timestamp::parse("2025-01-27T10:00:00Z").unwrap();
    let chrono: chrono::DateTime<chrono::Utc> = t.into();
    assert_eq!(chrono.timestamp(), 1_737_972_000);
    let org = dese::protocol::OrgId::parse("0b6f1f1e-8d1a-4c53-9b0e-5c1f4e2a7d10").unwrap();
    assert!(uuid::Uuid::try_from(&org).is_ok());
}
