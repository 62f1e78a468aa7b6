//! A device cut off from the broker for a while queues its readings, and replays them in order
//! once the broker is back.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

mod common;

use std::time::Duration;

use common::{NoCommands, NoSensors};
use dese_backend::{Event, Settings as BackendSettings};
use dese_device::{Backoff, Readings, Settings};
use dese_protocol::{DeviceState, TelemetryInterval, Timestamp};
use dese_rumqttc::{BackendClient, BrokerOptions, DeviceClient};
use dese_testkit::{Mosquitto, MosquittoConfig};

// DESE-D7: readings taken while the broker is down are queued in the bounded outbox (the
// oldest dropped and counted when it is full) and replayed in order once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dese_d7_offline_device_replays_its_outbox_in_order() {
    const OFFLINE: usize = 300;
    const CAPACITY: usize = 100;
    let mut broker = Mosquitto::start_with(MosquittoConfig {
        persistence: true,
        ..MosquittoConfig::default()
    })
    .unwrap();
    let options = BrokerOptions::parse(&broker.url()).unwrap();
    let settings = BackendSettings {
        rate_limit: None,
        ..BackendSettings::default()
    };
    let mut backend = BackendClient::spawn(&options, "backend-replay", settings, None).unwrap();

    let mut device_settings =
        Settings::new("org-1".parse().unwrap(), "dev-1".parse().unwrap(), "1.0.0");
    device_settings.telemetry_interval = TelemetryInterval::new(86_400_000).unwrap();
    device_settings.outbox_capacity = CAPACITY;
    device_settings.backoff = Backoff {
        base: Duration::from_millis(100),
        cap: Duration::from_millis(500),
        ..Backoff::DEFAULT
    };
    let device = DeviceClient::spawn(&options, device_settings, NoSensors, NoCommands).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !device.is_connected() {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }

    // The broker goes away; the device keeps taking readings.
    tokio::task::block_in_place(|| broker.stop());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while device.is_connected() {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for _ in 0..OFFLINE {
        device
            .publish_readings(Readings {
                ph: 7.0,
                chlorine: 1.0,
                temperature: 20.0,
                ..Readings::default()
            })
            .unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let stats = device.stats();
    assert_eq!(stats.pending, CAPACITY as u64, "the newest readings wait");
    assert_eq!(
        stats.telemetry_dropped,
        (OFFLINE - CAPACITY) as u64,
        "the oldest are dropped and counted"
    );
    tokio::task::block_in_place(|| broker.start_again()).unwrap();

    // Everything arrives, in the order the readings were taken.
    let mut received: Vec<Timestamp> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while received.len() < CAPACITY {
        match tokio::time::timeout_at(deadline, backend.next_event())
            .await
            .expect("in time")
        {
            Some(Event::Telemetry { telemetry, .. }) => received.push(telemetry.timestamp),
            Some(Event::PresenceChanged {
                to: DeviceState::Offline,
                ..
            }) => {}
            Some(_) => {}
            None => panic!("backend closed"),
        }
    }
    assert!(received.windows(2).all(|w| w[0] < w[1]), "in order");
    // Nothing else arrives: the dropped readings are gone, and were counted as such.
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(500), backend.next_event()).await
    {
        assert!(!matches!(event, Event::Telemetry { .. }), "{event:?}");
    }
    let stats = device.stats();
    assert_eq!((stats.telemetry, stats.pending), (OFFLINE as u64, 0));
    device.shutdown().await.unwrap();
    backend.shutdown().await.unwrap();
}
