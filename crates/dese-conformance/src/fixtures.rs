//! What the scenarios share: settings, waiting helpers, certificates, the command handler.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use dese_backend::{Counters, Event};
use dese_device::{CommandHandler, Instant, Readings, SensorReader, Settings};
use dese_protocol::{Action, JsonObject, MessageKind, TelemetryInterval};
pub use dese_testkit::{TestCa, certificates};
use dese_transport::BackendClient;

/// Device settings for `org`/`device` with telemetry every `interval_ms` and a short backoff.
pub fn device_settings(org: &str, device: &str, interval_ms: i64) -> Settings {
    let mut s = Settings::new(org.parse().unwrap(), device.parse().unwrap(), "1.0.0");
    s.telemetry_interval = TelemetryInterval::new(interval_ms).unwrap();
    s.backoff = dese_device::Backoff {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(1),
        ..dese_device::Backoff::DEFAULT
    };
    s
}

/// Waits (at most 15 s) until `done` holds; panics with `explain()` otherwise.
pub async fn eventually(done: impl Fn() -> bool, explain: impl Fn() -> String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while !done() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not in time: {}",
            explain()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The next backend event that `what` accepts, within 15 s.
pub async fn wait_for<T>(backend: &mut BackendClient<T>, what: impl Fn(&Event) -> bool) -> Event {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let event = tokio::time::timeout_at(deadline, backend.next_event())
            .await
            .expect("the awaited backend event did not come in 15 s")
            .expect("the backend closed");
        if what(&event) {
            return event;
        }
    }
}

/// What a scenario measured, for the test's output and the closing note.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Messages the device sent.
    pub sent: u64,
    /// Distinct messages the backend received.
    pub received: u64,
    /// Duplicates the backend flagged.
    pub duplicates: u64,
    /// Broker restarts or link cuts during the run.
    pub interruptions: u64,
    /// How long it took.
    pub elapsed: Duration,
}

impl fmt::Display for Figures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {}, received {} once each, duplicates flagged {}, interruptions {}, time {:.1?}",
            self.sent, self.received, self.duplicates, self.interruptions, self.elapsed
        )
    }
}

/// Always pH 7.2, chlorine 2.5 ppm, 25.5 °C.
pub(crate) struct Probe;

impl SensorReader for Probe {
    fn read(&mut self, _now: Instant) -> Option<Readings> {
        Some(Readings {
            ph: 7.2,
            chlorine: 2.5,
            temperature: 25.5,
            ..Readings::default()
        })
    }
}

/// The reading the streaming scenarios publish: pH 7.0, chlorine 1.0 ppm, 20 °C.
pub(crate) fn reading() -> Readings {
    Readings {
        ph: 7.0,
        chlorine: 1.0,
        temperature: 20.0,
        ..Readings::default()
    }
}

/// Telemetry messages the backend flagged as duplicates.
pub(crate) fn telemetry_duplicates(counters: &Counters) -> u64 {
    counters
        .duplicates
        .get(&MessageKind::Telemetry)
        .copied()
        .unwrap_or(0)
}

/// No periodic readings: the scenario publishes readings itself.
pub(crate) struct NoSensors;

impl SensorReader for NoSensors {
    fn read(&mut self, _now: Instant) -> Option<Readings> {
        None
    }
}

/// Runs every command of the protocol and records its name; pump 99 does not exist and
/// unknown commands are refused (error answers). With `stall`, the first command blocks the device for that long, so that the
/// backend's timeout passes and it retries.
#[derive(Clone, Default)]
pub(crate) struct Recorder {
    pub(crate) runs: Arc<Mutex<Vec<String>>>,
    pub(crate) stall: Option<Duration>,
}

impl Recorder {
    pub(crate) fn names(&self) -> Vec<String> {
        self.runs.lock().unwrap().clone()
    }
}

impl CommandHandler for Recorder {
    fn run(&mut self, action: &Action, _now: Instant) -> Result<Option<JsonObject>, String> {
        let first = {
            let mut runs = self.runs.lock().unwrap();
            runs.push(action.name().to_string());
            runs.len() == 1
        };
        if let (true, Some(stall)) = (first, self.stall) {
            // A slow command blocks the device's task, as a slow handler would; block_in_place
            // hands this worker's other tasks (the backend's among them) to another worker.
            tokio::task::block_in_place(|| std::thread::sleep(stall));
        }
        match action {
            Action::SetPump { pump_id: 99, .. } => Err("no pump 99 on this device".into()),
            Action::Unknown { name, .. } => Err(format!("unknown command {name}")),
            Action::CalibrateSensor { sensor_type, .. } => {
                let mut answer = JsonObject::new();
                answer.insert("calibrated".into(), sensor_type.as_str().into());
                Ok(Some(answer))
            }
            _ => Ok(None),
        }
    }
}
