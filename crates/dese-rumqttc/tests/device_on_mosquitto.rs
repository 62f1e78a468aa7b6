//! The rumqttc device client against a real Mosquitto, watched by a plain MQTT client.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

mod common;

use common::Probe;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use dese_device::{CommandHandler, Instant, Settings};
use dese_protocol::{Action, DeviceState, JsonObject, Message, TelemetryInterval, decode};
use dese_rumqttc::{BrokerOptions, DeviceClient, ErrorKind};
use dese_testkit::{Mosquitto, MosquittoConfig};
use rumqttc::{AsyncClient, MqttOptions, Packet, QoS};
use tokio::sync::mpsc;

#[derive(Clone, Default)]
struct Pumps(Arc<AtomicU32>);
impl CommandHandler for Pumps {
    fn run(&mut self, _action: &Action, _now: Instant) -> Result<Option<JsonObject>, String> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(None)
    }
}

fn settings() -> Settings {
    let mut s = Settings::new("org-1".parse().unwrap(), "dev-1".parse().unwrap(), "1.0.0");
    s.telemetry_interval = TelemetryInterval::new(200).unwrap();
    s
}

/// A plain MQTT client subscribed to the device's topics; yields (topic, payload, retain).
async fn observer(
    broker: &Mosquitto,
    id: &str,
) -> (
    AsyncClient,
    mpsc::UnboundedReceiver<(String, Vec<u8>, bool)>,
) {
    let mut options = MqttOptions::new(id, "127.0.0.1", broker.port());
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    client
        .subscribe("devices/org-1/dev-1/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok(event) = eventloop.poll().await {
            if let rumqttc::Event::Incoming(Packet::Publish(p)) = event {
                if tx
                    .send((p.topic.clone(), p.payload.to_vec(), p.retain))
                    .is_err()
                {
                    return;
                }
            }
        }
    });
    (client, rx)
}

/// Waits (at most 10 s) until `done` holds; fails with `explain` otherwise.
async fn eventually(done: impl Fn() -> bool, explain: impl Fn() -> String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not in time: {}",
            explain()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn next_of(
    rx: &mut mpsc::UnboundedReceiver<(String, Vec<u8>, bool)>,
    suffix: &str,
) -> (Message, bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (topic, payload, retain) = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("in time")
            .expect("open");
        if topic.ends_with(suffix) {
            return (decode(&topic, &payload).unwrap().message, retain);
        }
    }
}

// DESE-D1, DESE-D2, DESE-D4, DESE-D5, DESE-T4 on a real broker: a retained online status first,
// telemetry, a command answered, and a retained offline status on the way out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_lifecycle_on_mosquitto() {
    let broker = Mosquitto::start().unwrap();
    let (observer_client, mut seen) = observer(&broker, "observer-1").await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let pumps = Pumps::default();
    let device = DeviceClient::spawn(
        &BrokerOptions::parse(&broker.url()).unwrap(),
        settings(),
        Probe,
        pumps.clone(),
    )
    .unwrap();

    let (status, _) = next_of(&mut seen, "/status").await;
    assert!(matches!(status, Message::Status(s) if s.status == DeviceState::Online));
    for _ in 0..3 {
        let (telemetry, retain) = next_of(&mut seen, "/telemetry").await;
        assert!(matches!(telemetry, Message::Telemetry(t) if t.sensors.ph.get() == 7.2));
        assert!(!retain);
    }
    // The status is retained: a newcomer gets it at once.
    let (_late, mut late_seen) = observer(&broker, "observer-2").await;
    let (status, retain) = next_of(&mut late_seen, "/status").await;
    assert!(retain && matches!(status, Message::Status(s) if s.status == DeviceState::Online));

    let command = br#"{"command_id":"cmd-e2e","device_id":"dev-1","command":"reboot","timestamp":"2025-01-27T10:00:00Z"}"#;
    observer_client
        .publish(
            "devices/org-1/dev-1/commands",
            QoS::AtLeastOnce,
            false,
            command.to_vec(),
        )
        .await
        .unwrap();
    let (response, _) = next_of(&mut seen, "/command_response").await;
    assert!(
        matches!(response, Message::CommandResponse(r) if r.success && r.command_id.as_str() == "cmd-e2e")
    );
    assert_eq!(pumps.0.load(Ordering::SeqCst), 1);

    // Acknowledged by the broker: the status, three readings and the response (the counters
    // trail the last PUBACK by a moment).
    eventually(
        || device.stats().delivered >= 5,
        || format!("{:?}", device.stats()),
    )
    .await;
    device.shutdown().await.unwrap();
    let (status, _) = next_of(&mut seen, "/status").await;
    assert!(matches!(status, Message::Status(s) if s.status == DeviceState::Offline));
    let (_third, mut third_seen) = observer(&broker, "observer-3").await;
    let (status, retain) = next_of(&mut third_seen, "/status").await;
    assert!(retain && matches!(status, Message::Status(s) if s.status == DeviceState::Offline));
}

// DESE-S1: a wrong password is an Auth error, and the client stops instead of retrying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dese_s1_wrong_password_is_an_auth_error() {
    let dir = std::env::temp_dir().join(format!("dese-auth-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let passwords = dir.join("passwd");
    let made = std::process::Command::new(
        if std::path::Path::new("/usr/bin/mosquitto_passwd").exists() {
            "/usr/bin/mosquitto_passwd"
        } else {
            "mosquitto_passwd"
        },
    )
    .args(["-b", "-c"])
    .arg(&passwords)
    .args(["dev-1", "right"])
    .status()
    .unwrap();
    assert!(made.success());
    let broker = Mosquitto::start_with(MosquittoConfig {
        allow_anonymous: false,
        password_file: Some(passwords),
        ..MosquittoConfig::default()
    })
    .unwrap();
    let options = BrokerOptions::parse(&broker.url())
        .unwrap()
        .with_credentials("dev-1", "wrong");
    let device = DeviceClient::spawn(&options, settings(), Probe, Pumps::default()).unwrap();
    let result = tokio::time::timeout(Duration::from_secs(10), device.closed())
        .await
        .expect("stops by itself");
    let error = result.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Auth, "{error}");
    // The broker saw exactly one refused attempt, not a storm (its log may lag a moment).
    eventually(|| broker.log().contains("not authorised"), || broker.log()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        broker.log().matches("not authorised").count(),
        1,
        "{}",
        broker.log()
    );

    let options = BrokerOptions::parse(&broker.url())
        .unwrap()
        .with_credentials("dev-1", "right");
    let device = DeviceClient::spawn(&options, settings(), Probe, Pumps::default()).unwrap();
    eventually(
        || device.stats().delivered >= 2,
        || format!("{:?}", device.stats()),
    )
    .await;
    device.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

// DESE-D6: a broker that accepts and drops every connection gets a paced retry, not a storm,
// and the client says why (an I/O failure) while it keeps trying.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dese_d6_failing_broker_is_retried_with_backoff_not_a_storm() {
    use std::sync::atomic::AtomicUsize;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream); // close at once, before any CONNACK
        }
    });
    let options = BrokerOptions::parse(&format!("mqtt://127.0.0.1:{port}")).unwrap();
    let device = DeviceClient::spawn(&options, settings(), Probe, Pumps::default()).unwrap();
    eventually(
        || device.last_failure().is_some(),
        || "no failure reported".into(),
    )
    .await;
    assert_eq!(device.last_failure().unwrap().kind, ErrorKind::Io);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    // Full jitter under ceilings of 1, 2, 4, 8, 16 s... allows a few attempts in 3.5 s; eight
    // would need seven short draws in a row (odds about one in a million). A storm would be
    // hundreds.
    let attempts = accepted.load(Ordering::SeqCst);
    assert!((2..=8).contains(&attempts), "{attempts} attempts in 3.5 s");
    assert!(!device.is_connected());
    device.shutdown().await.unwrap();
}
