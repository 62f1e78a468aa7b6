//! Command round trips through a real Mosquitto on loopback: the backend sends a command, the
//! device runs it and answers, the backend resolves the outcome. Measured with TCP_NODELAY on
//! and off in the same run, so the ratio holds on a noisy machine.
//!
//!     cargo bench -p dese-rumqttc --bench round_trip          # 300 round trips per setting
//!
//! Without `--bench` (as `cargo test --benches` runs it) it does 10 of each, as a smoke test.

#![allow(missing_docs)]
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)]

use std::time::{Duration, Instant as StdInstant};

use dese_backend::{Outcome, Settings as BackendSettings};
use dese_device::{CommandHandler, Instant, Readings, SensorReader, Settings};
use dese_protocol::{Action, JsonObject, TelemetryInterval};
use dese_rumqttc::{BackendClient, BrokerOptions, DeviceClient};
use dese_testkit::Mosquitto;

struct NoSensors;
impl SensorReader for NoSensors {
    fn read(&mut self, _now: Instant) -> Option<Readings> {
        None
    }
}

struct Ok;
impl CommandHandler for Ok {
    fn run(&mut self, _action: &Action, _now: Instant) -> Result<Option<JsonObject>, String> {
        Result::Ok(None)
    }
}

async fn round_trips(broker: &Mosquitto, nodelay: bool, count: usize) -> Vec<Duration> {
    let mut options = BrokerOptions::parse(&broker.url()).expect("url");
    options.tcp_nodelay = nodelay;
    let backend = BackendClient::spawn(
        &options,
        &format!("bench-backend-{nodelay}"),
        BackendSettings::default(),
        None,
    )
    .expect("backend");
    let mut settings = Settings::new(
        "org-1".parse().expect("org"),
        format!("dev-{nodelay}").parse().expect("dev"),
        "1",
    );
    settings.telemetry_interval = TelemetryInterval::new(86_400_000).expect("interval");
    let device = DeviceClient::spawn(&options, settings.clone(), NoSensors, Ok).expect("device");
    while !device.is_connected() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let mut times = Vec::with_capacity(count);
    for i in 0..count + 10 {
        let started = StdInstant::now();
        let (_, outcome) = backend
            .send_command(
                settings.org.clone(),
                settings.device.clone(),
                Action::Reboot,
            )
            .await
            .expect("sent");
        assert!(
            matches!(outcome, Outcome::Completed(_)),
            "nodelay {nodelay}, round trip {i}, after {:?}: {outcome:?}",
            started.elapsed()
        );
        if i >= 10 {
            times.push(started.elapsed()); // the first ten warm up
        }
    }
    device.shutdown().await.expect("device shutdown");
    backend.shutdown().await.expect("backend shutdown");
    times.sort();
    times
}

fn at(times: &[Duration], q: f64) -> Duration {
    times[((times.len() - 1) as f64 * q).round() as usize]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let count = if std::env::args().any(|a| a == "--bench") {
        300
    } else {
        10
    };
    let broker = Mosquitto::start().expect("mosquitto");
    let with = round_trips(&broker, true, count).await;
    let without = round_trips(&broker, false, count).await;
    for (name, t) in [("TCP_NODELAY on ", &with), ("TCP_NODELAY off", &without)] {
        println!(
            "{name}: {count} command round trips, median {:?}, p90 {:?}, p99 {:?}, max {:?}",
            at(t, 0.5),
            at(t, 0.9),
            at(t, 0.99),
            t[t.len() - 1]
        );
    }
    println!(
        "median ratio off / on: {:.1}x",
        at(&without, 0.5).as_secs_f64() / at(&with, 0.5).as_secs_f64()
    );
}
