//! A backend client and a device client through a real Mosquitto.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

mod common;

use common::Probe;
use std::time::Duration;

use dese_backend::{Event, Outcome, Settings as BackendSettings};
use dese_device::{CommandHandler, Instant, Settings};
use dese_protocol::{Action, DeviceState, JsonObject, PumpState, TelemetryInterval};
use dese_rumqttc::{BackendClient, BrokerOptions, DeviceClient};
use dese_testkit::Mosquitto;

struct Pumps;
impl CommandHandler for Pumps {
    fn run(&mut self, action: &Action, _now: Instant) -> Result<Option<JsonObject>, String> {
        match action {
            Action::SetPump { .. } => Ok(None),
            other => Err(format!("{} is not supported here", other.name())),
        }
    }
}

async fn wait_for(backend: &mut BackendClient, what: impl Fn(&Event) -> bool) -> Event {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let event = tokio::time::timeout_at(deadline, backend.next_event())
            .await
            .expect("in time")
            .expect("open");
        if what(&event) {
            return event;
        }
    }
}

// DESE-D4, DESE-C1, DESE-C4 over a real broker: telemetry and presence reach the backend,
// commands resolve to completed, failed and timed out, and a goodbye marks the device offline.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_and_device_through_mosquitto() {
    let broker = Mosquitto::start().unwrap();
    let options = BrokerOptions::parse(&broker.url()).unwrap();
    let settings = BackendSettings {
        command_timeout: Duration::from_millis(700),
        ..BackendSettings::default()
    };
    let mut backend = BackendClient::spawn(&options, "backend-1", settings, None).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    let mut device_settings =
        Settings::new("org-1".parse().unwrap(), "dev-1".parse().unwrap(), "1.0.0");
    device_settings.telemetry_interval = TelemetryInterval::new(200).unwrap();
    let device = DeviceClient::spawn(&options, device_settings, Probe, Pumps).unwrap();

    wait_for(&mut backend, |e| {
        matches!(
            e,
            Event::PresenceChanged {
                to: DeviceState::Online,
                ..
            }
        )
    })
    .await;
    for _ in 0..3 {
        wait_for(&mut backend, |e| matches!(e, Event::Telemetry { .. })).await;
    }
    let presence = backend
        .presence("org-1".parse().unwrap(), "dev-1".parse().unwrap())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(presence.state, DeviceState::Online);

    let (_, outcome) = backend
        .send_command(
            "org-1".parse().unwrap(),
            "dev-1".parse().unwrap(),
            Action::SetPump {
                pump_id: 1,
                state: PumpState::On,
                duration: None,
            },
        )
        .await
        .unwrap();
    assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
    let (_, outcome) = backend
        .send_command(
            "org-1".parse().unwrap(),
            "dev-1".parse().unwrap(),
            Action::Reboot,
        )
        .await
        .unwrap();
    assert!(
        matches!(&outcome, Outcome::Failed(r) if r.error.as_deref() == Some("reboot is not supported here")),
        "{outcome:?}"
    );
    let (_, outcome) = backend
        .send_command(
            "org-1".parse().unwrap(),
            "dev-404".parse().unwrap(),
            Action::Reboot,
        )
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::TimedOut { attempts: 1 });

    device.shutdown().await.unwrap();
    wait_for(&mut backend, |e| {
        matches!(
            e,
            Event::PresenceChanged {
                to: DeviceState::Offline,
                ..
            }
        )
    })
    .await;
    assert!(
        backend.counters().dropped.is_empty(),
        "{:?}",
        backend.counters()
    );
    backend.shutdown().await.unwrap();
}
