//! Mosquitto restarted gracefully ten times while a device streams 5,000 QoS 1 readings: the
//! backend receives every one (duplicates allowed and flagged, none lost).

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

use std::collections::BTreeSet;
mod common;

use std::time::Duration;

use common::{NoCommands, NoSensors};
use dese_backend::{Event, Settings as BackendSettings};
use dese_device::{Backoff, Readings, Settings};
use dese_protocol::{DeviceState, MessageKind, TelemetryInterval};
use dese_rumqttc::{BackendClient, BrokerOptions, DeviceClient};
use dese_testkit::{Mosquitto, MosquittoConfig};

const READINGS: usize = 5_000;
const RESTARTS: usize = 10;

// DESE-D1, DESE-D6, DESE-D9 on a real broker.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dese_d9_mosquitto_restarted_ten_times_while_streaming() {
    let started = std::time::Instant::now();
    let mut broker = Mosquitto::start_with(MosquittoConfig {
        persistence: true,
        ..MosquittoConfig::default()
    })
    .unwrap();
    let options = BrokerOptions::parse(&broker.url()).unwrap();

    let settings = BackendSettings {
        rate_limit: None,
        telemetry_window: READINGS,
        ..BackendSettings::default()
    };
    let mut backend = BackendClient::spawn(&options, "backend-restarts", settings, None).unwrap();
    // The backend reads its events in a task of its own until every reading has arrived.
    let (online_tx, online) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(async move {
        let mut online_tx = Some(online_tx);
        let mut readings = BTreeSet::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
        while readings.len() < READINGS {
            match tokio::time::timeout_at(deadline, backend.next_event()).await {
                Ok(Some(Event::Telemetry { telemetry, .. })) => {
                    readings.insert(telemetry.timestamp);
                }
                Ok(Some(Event::PresenceChanged {
                    to: DeviceState::Online,
                    ..
                })) => {
                    if let Some(tx) = online_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let counters = backend.counters();
        let lost_events = backend.events_lost();
        backend.shutdown().await.unwrap();
        (readings.len(), counters, lost_events)
    });

    let mut device_settings =
        Settings::new("org-1".parse().unwrap(), "dev-1".parse().unwrap(), "1.0.0");
    device_settings.telemetry_interval = TelemetryInterval::new(86_400_000).unwrap();
    device_settings.outbox_capacity = READINGS * 2;
    device_settings.in_flight_window = 64;
    device_settings.backoff = Backoff {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(1),
        ..Backoff::DEFAULT
    };
    let device = DeviceClient::spawn(&options, device_settings, NoSensors, NoCommands).unwrap();
    tokio::time::timeout(Duration::from_secs(10), online)
        .await
        .unwrap()
        .unwrap();

    let every = READINGS / RESTARTS;
    for i in 0..READINGS {
        device
            .publish_readings(Readings {
                ph: 7.0,
                chlorine: 1.0,
                temperature: 20.0,
                ..Readings::default()
            })
            .unwrap();
        if i % 25 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if i % every == every / 2 {
            // Wait for the device to be connected, so that every restart cuts a live link.
            let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
            while !device.is_connected() {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "the device did not reconnect"
                );
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::task::block_in_place(|| broker.restart()).unwrap();
        }
    }

    let (received, counters, lost_events) = reader.await.unwrap();
    let stats = device.stats();
    let duplicates = counters
        .duplicates
        .get(&MessageKind::Telemetry)
        .copied()
        .unwrap_or(0);
    println!(
        "restarts: {RESTARTS}; readings sent {}, received {received} once each, duplicates flagged {duplicates}, \
         device reconnections {}, dropped by the device {}, events lost {lost_events}, time {:?}",
        stats.telemetry,
        stats.disconnects,
        stats.telemetry_dropped,
        started.elapsed()
    );
    assert_eq!(stats.telemetry, READINGS as u64);
    assert_eq!(received, READINGS, "every reading reached the backend");
    assert_eq!(stats.telemetry_dropped, 0);
    assert!(
        stats.disconnects >= RESTARTS as u64,
        "the restarts did cut the device off"
    );
    assert_eq!(lost_events, 0);
    device.shutdown().await.unwrap();
}
