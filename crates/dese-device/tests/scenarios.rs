//! The device engine's behaviour, scenario by scenario, on virtual time.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

use core::time::Duration;

use dese_device::{
    CommandHandler, Device, Event, Instant, MessageId, Persist, Readings, Saved, SensorReader,
    Settings, Transmit,
};
use dese_protocol::{
    Action, DeviceState, JsonObject, Message, MessageKind, Reason, Severity, Timestamp, decode,
};

const START: i64 = 1_737_972_000_000; // 2025-01-27T10:00:00Z

struct Probe {
    ph: f64,
    reads: u32,
}

impl SensorReader for Probe {
    fn read(&mut self, _now: Instant) -> Option<Readings> {
        self.reads += 1;
        Some(Readings {
            ph: self.ph,
            chlorine: 2.5,
            temperature: 25.5,
            ..Readings::default()
        })
    }
}

#[derive(Default)]
struct Recorder {
    ran: Vec<String>,
}

impl CommandHandler for Recorder {
    fn run(&mut self, action: &Action, _now: Instant) -> Result<Option<JsonObject>, String> {
        self.ran.push(action.name().to_string());
        match action {
            Action::Unknown { name, .. } => Err(format!("unknown command {name:?}")),
            _ => Ok(None),
        }
    }
}

/// A device with its sensors and handler, on a virtual clock, recording what it publishes.
struct Rig {
    device: Device,
    probe: Probe,
    handler: Recorder,
    now: Instant,
    sent: Vec<Transmit>,
    events: Vec<Event>,
}

impl Rig {
    fn new(tune: impl FnOnce(&mut Settings)) -> Self {
        let mut settings = Settings::new(
            "org-123".parse().unwrap(),
            "esp32-001".parse().unwrap(),
            "1.0.0",
        );
        tune(&mut settings);
        Self {
            device: Device::new(settings, Instant::ZERO),
            probe: Probe { ph: 7.2, reads: 0 },
            handler: Recorder::default(),
            now: Instant::ZERO,
            sent: Vec::new(),
            events: Vec::new(),
        }
    }

    fn utc(&self) -> Timestamp {
        Timestamp::from_unix_millis(START + self.now.as_millis() as i64).unwrap()
    }

    /// Runs every timeout up to `to`, publishing and acknowledging what the device sends when
    /// `ack` is set.
    fn run_until(&mut self, to: Instant, ack: bool) {
        loop {
            self.drain(ack);
            match self.device.poll_timeout() {
                Some(at) if at <= to => {
                    self.now = self.now.max(at);
                    let utc = self.utc();
                    self.device.handle_timeout(self.now, utc, &mut self.probe);
                }
                _ => break,
            }
        }
        self.now = to;
        self.drain(ack);
    }

    fn drain(&mut self, ack: bool) {
        while let Some(t) = self.device.poll_transmit() {
            if ack {
                self.device.handle_acked(t.id);
            }
            self.sent.push(t);
        }
        self.events
            .extend(core::iter::from_fn(|| self.device.poll_event()));
    }

    fn connect(&mut self) {
        let utc = self.utc();
        self.device.handle_connected(self.now, utc);
    }

    fn deliver(&mut self, kind: &str, payload: &str, retained: bool) {
        let utc = self.utc();
        let topic = format!("devices/org-123/esp32-001/{kind}");
        self.device.handle_message_with(
            self.now,
            utc,
            &topic,
            payload.as_bytes(),
            retained,
            &mut self.handler,
        );
    }

    fn sent_messages(&self) -> Vec<Message> {
        self.sent
            .iter()
            .map(|t| decode(&t.topic, &t.payload).unwrap().message)
            .collect()
    }

    fn take_sent(&mut self) -> Vec<Transmit> {
        core::mem::take(&mut self.sent)
    }
}

fn secs(s: u64) -> Instant {
    Instant::from_millis(s * 1000)
}

// DESE-D4: the status goes out as soon as the link is up, before anything queued.
#[test]
fn dese_d4_status_first_on_every_connection() {
    let mut rig = Rig::new(|_| {});
    rig.run_until(secs(95), true); // three readings while never connected
    assert!(rig.sent.is_empty());
    assert!(rig.events.contains(&Event::Connect));
    rig.connect();
    rig.drain(true);
    let kinds: Vec<_> = rig.sent.iter().map(|t| (t.kind, t.retain)).collect();
    assert_eq!(kinds[0], (MessageKind::Status, true));
    assert!(
        kinds[1..]
            .iter()
            .all(|k| *k == (MessageKind::Telemetry, false))
    );
    assert_eq!(kinds.len(), 4);
    let Message::Status(status) = &rig.sent_messages()[0] else {
        panic!()
    };
    assert_eq!(status.status, DeviceState::Online);
}

// DESE-D5: the last will is a retained offline status; so is a deliberate goodbye.
#[test]
fn dese_d5_last_will_and_goodbye() {
    let mut rig = Rig::new(|_| {});
    let options = rig.device.connect_options(rig.utc());
    assert_eq!(options.will.topic, "devices/org-123/esp32-001/status");
    assert_eq!(options.client_id, "org-123:esp32-001");
    assert!(options.will.retain);
    let will = decode(&options.will.topic, &options.will.payload)
        .unwrap()
        .message;
    assert!(matches!(will, Message::Status(s) if s.status == DeviceState::Offline));
    assert_eq!(options.keepalive.get(), 60); // DESE-D3
    rig.connect();
    let goodbye = rig.device.disconnect(rig.utc());
    assert!(goodbye.retain && goodbye.kind == MessageKind::Status);
    rig.run_until(secs(600), true);
    assert!(
        !rig.events.contains(&Event::Connect),
        "no reconnection after a deliberate goodbye"
    );
}

// DESE-T4: subscriptions are the device's own commands and config, nothing else.
#[test]
fn dese_t4_subscribes_to_its_own_topics_only() {
    let rig = Rig::new(|_| {});
    let subs: Vec<String> = rig
        .device
        .subscriptions()
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        subs,
        [
            "devices/org-123/esp32-001/commands",
            "devices/org-123/esp32-001/config"
        ]
    );
}

// DESE-D8: telemetry every 30 s, status every 60 s while connected.
#[test]
fn dese_d8_periods() {
    let mut rig = Rig::new(|_| {});
    rig.connect();
    rig.run_until(secs(300), true);
    let count = |kind| rig.sent.iter().filter(|t| t.kind == kind).count();
    assert_eq!(count(MessageKind::Telemetry), 10);
    assert_eq!(count(MessageKind::Status), 1 + 5);
}

// DESE-D7: an outbox of 100 with 250 readings offline replays the newest 100 in order and
// reports 150 dropped.
#[test]
fn dese_d7_outbox_of_100_with_250_readings_offline() {
    let mut rig = Rig::new(|s| s.outbox_capacity = 100);
    rig.run_until(secs(250 * 30), true);
    assert_eq!(rig.probe.reads, 250);
    assert_eq!(rig.device.stats().telemetry_dropped, 150);
    rig.connect();
    rig.run_until(rig.now, true);
    let telemetry: Vec<i64> = rig
        .sent_messages()
        .iter()
        .filter_map(|m| match m {
            Message::Telemetry(t) => Some(t.timestamp.unix_seconds()),
            _ => None,
        })
        .collect();
    assert_eq!(telemetry.len(), 100);
    let first = START / 1000 + 151 * 30;
    let expected: Vec<i64> = (0..100).map(|i| first + i * 30).collect();
    assert_eq!(telemetry, expected, "the newest 100, oldest first");
    let stats = rig.device.stats();
    assert_eq!((stats.telemetry, stats.pending), (250, 0));
}

// DESE-D9: what the broker did not acknowledge is sent again after a reconnection, in order,
// and only acknowledged messages count as delivered.
#[test]
fn dese_d9_unacknowledged_messages_are_replayed() {
    let mut rig = Rig::new(|_| {});
    rig.connect();
    rig.run_until(secs(95), false); // two statuses and three readings handed out, none acknowledged
    let first = rig.take_sent();
    let readings: Vec<&Transmit> = first
        .iter()
        .filter(|t| t.kind == MessageKind::Telemetry)
        .collect();
    assert_eq!((first.len(), readings.len()), (5, 3));
    rig.device.handle_acked(readings[0].id); // only the first reading arrived
    assert_eq!(rig.device.stats().delivered, 1);
    rig.device.handle_disconnected(rig.now, 0);
    rig.run_until(secs(96), true);
    rig.connect();
    rig.drain(true);
    let again: Vec<_> = rig
        .sent
        .iter()
        .map(|t| (t.kind, t.payload.clone()))
        .collect();
    assert_eq!(
        again[0].0,
        MessageKind::Status,
        "a fresh status first; the old ones are not replayed"
    );
    let replayed = [
        (MessageKind::Telemetry, readings[1].payload.clone()),
        (MessageKind::Telemetry, readings[2].payload.clone()),
    ];
    assert_eq!(
        again[1..],
        replayed,
        "the unacknowledged readings, in order"
    );
    assert_eq!(rig.device.stats().delivered, 1 + 3);
}

const SET_PUMP: &str = r#"{"command_id":"cmd-1","device_id":"esp32-001","command":"set_pump","parameters":{"pump_id":1,"state":"on","duration":60},"timestamp":"2025-01-27T10:00:00Z"}"#;

fn responses(rig: &Rig) -> Vec<dese_protocol::CommandResponse> {
    rig.sent_messages()
        .into_iter()
        .filter_map(|m| match m {
            Message::CommandResponse(r) => Some(r),
            _ => None,
        })
        .collect()
}

// DESE-C5: a command delivered five times runs once, and every delivery gets the same answer.
#[test]
fn dese_c5_command_delivered_five_times_runs_once() {
    let mut rig = Rig::new(|_| {});
    rig.connect();
    for _ in 0..5 {
        rig.now = rig.now + Duration::from_secs(1);
        rig.deliver("commands", SET_PUMP, false);
    }
    rig.drain(true);
    assert_eq!(rig.handler.ran, ["set_pump"]);
    let answers: Vec<_> = rig
        .sent
        .iter()
        .filter(|t| t.kind == MessageKind::CommandResponse)
        .map(|t| &t.payload)
        .collect();
    assert_eq!(answers.len(), 5);
    assert!(
        answers.iter().all(|a| *a == answers[0]),
        "the same response each time"
    );
    assert!(responses(&rig)[0].success);
    assert_eq!(rig.device.stats().commands_duplicate, 4);
}

// DESE-C6: a retained command is refused, and the same id delivered properly still runs.
#[test]
fn dese_c6_retained_command_refused() {
    let mut rig = Rig::new(|_| {});
    rig.connect();
    rig.deliver("commands", SET_PUMP, true);
    rig.drain(true);
    assert!(rig.handler.ran.is_empty());
    let r = responses(&rig);
    assert!(!r[0].success && r[0].error.as_deref().unwrap().contains("retained"));
    rig.deliver("commands", SET_PUMP, false);
    rig.drain(true);
    assert_eq!(rig.handler.ran, ["set_pump"]);
    // The retained copy again (the broker delivers it at each subscription): the id is
    // answered, so it gets that answer, never "refused" after "done".
    rig.deliver("commands", SET_PUMP, true);
    rig.drain(true);
    assert_eq!(rig.handler.ran, ["set_pump"]);
    let r = responses(&rig);
    assert_eq!(r.len(), 3, "{r:?}");
    assert!(r[1].success && r[2].success, "{r:?}");
    assert_eq!(rig.device.stats().commands_duplicate, 1);
}

// DESE-C4: an unknown command, bad parameters, or another device's command get an error
// response naming the problem; the handler never sees the invalid ones.
#[test]
fn dese_c4_invalid_and_unknown_commands_get_error_responses() {
    let mut rig = Rig::new(|_| {});
    rig.connect();
    let ts = "\"timestamp\":\"2025-01-27T10:00:00Z\"";
    rig.deliver(
        "commands",
        &format!(r#"{{"command_id":"a","device_id":"esp32-001","command":"dance",{ts}}}"#),
        false,
    );
    rig.deliver("commands", &format!(r#"{{"command_id":"b","device_id":"esp32-001","command":"set_pump","parameters":{{"pump_id":1,"state":"maybe"}},{ts}}}"#), false);
    rig.deliver(
        "commands",
        &format!(r#"{{"command_id":"c","device_id":"esp32-999","command":"reboot",{ts}}}"#),
        false,
    );
    rig.drain(true);
    assert_eq!(
        rig.handler.ran,
        ["dance"],
        "only the well-formed unknown command reaches the handler"
    );
    let r = responses(&rig);
    let answers: Vec<_> = r
        .iter()
        .map(|r| (r.command_id.as_str(), r.success, r.error.clone().unwrap()))
        .collect();
    assert_eq!(
        answers[0],
        ("a", false, "unknown command \"dance\"".to_string())
    );
    assert_eq!((answers[1].0, answers[1].1), ("b", false));
    assert!(
        answers[1].2.starts_with("parameters.state"),
        "{}",
        answers[1].2
    );
    assert_eq!((answers[2].0, answers[2].1), ("c", false));
    assert!(answers[2].2.contains("does not match"), "{}", answers[2].2);
}

// DESE-V2: messages that are not commands at all are dropped, counted by reason, never run.
#[test]
fn dese_v2_garbage_is_counted_and_dropped() {
    let mut rig = Rig::new(|_| {});
    rig.connect();
    rig.deliver("commands", "not json", false);
    rig.device.handle_message_with(
        rig.now,
        rig.utc(),
        "devices/org-123/esp32-002/commands",
        SET_PUMP.as_bytes(),
        false,
        &mut rig.handler,
    );
    rig.drain(true);
    assert!(rig.handler.ran.is_empty());
    assert_eq!(rig.device.stats().dropped_incoming, 2);
    let reasons: Vec<Reason> = rig
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Dropped { reason, .. } => Some(*reason),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, [Reason::Syntax, Reason::Topic]);
}

// DESE-P8: config changes the telemetry period and calibrates readings.
#[test]
fn dese_p8_config_interval_and_calibration() {
    let mut rig = Rig::new(|_| {});
    rig.probe.ph = 7.0;
    rig.connect();
    rig.deliver("config", r#"{"device_id":"esp32-001","config":{"telemetry_interval":10000,"sensor_calibration":{"ph":{"offset":0.2}}},"timestamp":"2025-01-27T10:00:00Z"}"#, false);
    rig.run_until(secs(60), true);
    let readings: Vec<f64> = rig
        .sent_messages()
        .iter()
        .filter_map(|m| match m {
            Message::Telemetry(t) => Some(t.sensors.ph.get()),
            _ => None,
        })
        .collect();
    assert_eq!(readings.len(), 6, "every 10 s");
    assert!(
        readings.iter().all(|ph| (ph - 7.2).abs() < 1e-9),
        "{readings:?}"
    );
    assert!(
        rig.events
            .iter()
            .any(|e| matches!(e, Event::ConfigApplied(_)))
    );
}

// reset_config resets what the protocol's config set (interval, keepalive,
// calibration, thresholds) to the device's own settings, not only the application's targets.
#[test]
fn reset_config_resets_the_protocols_config() {
    let mut rig = Rig::new(|_| {});
    rig.probe.ph = 7.0;
    rig.connect();
    rig.deliver("config", r#"{"device_id":"esp32-001","config":{"telemetry_interval":10000,"mqtt_keepalive":120,"sensor_calibration":{"ph":{"offset":0.2}},"alert_thresholds":{"ph":{"min":6.8,"max":7.1}}},"timestamp":"2025-01-27T10:00:00Z"}"#, false);
    rig.drain(true);
    let changed = rig.device.config();
    assert_eq!(changed.telemetry_interval.unwrap().get(), 10_000);
    assert_eq!(changed.mqtt_keepalive.unwrap().get(), 120);
    assert_eq!(changed.alert_thresholds.as_ref().unwrap().len(), 1);
    rig.events.clear();
    rig.deliver("commands", r#"{"command_id":"cmd-reset-1","device_id":"esp32-001","command":"reset_config","timestamp":"2025-01-27T10:00:01Z"}"#, false);
    rig.drain(true);
    assert_eq!(rig.handler.ran, ["reset_config"]);
    assert!(rig.events.iter().any(|e| matches!(e, Event::ConfigReset)));
    assert!(
        rig.events
            .iter()
            .any(|e| matches!(e, Event::KeepaliveChanged(k) if k.get() == 60)),
        "{:?}",
        rig.events
    );
    let reset = rig.device.config();
    assert_eq!(reset.telemetry_interval.unwrap().get(), 30_000);
    assert_eq!(reset.mqtt_keepalive.unwrap().get(), 60);
    assert!(reset.sensor_calibration.unwrap().is_empty());
    assert!(reset.alert_thresholds.unwrap().is_empty());
    // Readings are no longer calibrated, and pH 7.2 raises no alert any more.
    rig.probe.ph = 7.2;
    rig.run_until(secs(120), true);
    let sent = rig.sent_messages();
    let readings: Vec<f64> = sent
        .iter()
        .filter_map(|m| match m {
            Message::Telemetry(t) => Some(t.sensors.ph.get()),
            _ => None,
        })
        .collect();
    assert!(!readings.is_empty());
    assert!(
        readings.iter().all(|ph| (ph - 7.2).abs() < 1e-9),
        "{readings:?}"
    );
    assert!(
        !sent.iter().any(|m| matches!(m, Message::Alert(_))),
        "{sent:?}"
    );
}

// A config saved before a reboot comes back without being reported as a config message.
#[test]
fn a_saved_config_is_restored_silently() {
    let mut rig = Rig::new(|_| {});
    rig.deliver("config", r#"{"device_id":"esp32-001","config":{"telemetry_interval":10000,"sensor_calibration":{"ph":{"offset":0.2}}},"timestamp":"2025-01-27T10:00:00Z"}"#, false);
    let saved = rig.device.config();
    let mut fresh = Rig::new(|_| {});
    fresh.device.restore_config(secs(0), &saved);
    assert_eq!(fresh.device.config(), saved);
    assert_eq!(fresh.device.stats().configs_applied, 0);
    fresh.drain(false);
    assert!(
        !fresh
            .events
            .iter()
            .any(|e| matches!(e, Event::ConfigApplied(_)))
    );
}

// DESE-P8, DESE-V2: an invalid config changes nothing and is reported.
#[test]
fn dese_p8_invalid_config_refused_and_reported() {
    let mut rig = Rig::new(|_| {});
    rig.connect();
    rig.deliver("config", r#"{"device_id":"esp32-001","config":{"telemetry_interval":0},"timestamp":"2025-01-27T10:00:00Z"}"#, false);
    rig.run_until(secs(60), true);
    assert_eq!(rig.device.telemetry_interval().get(), 30_000);
    assert_eq!(rig.device.stats().configs_rejected, 1);
    let alert = rig.sent_messages().into_iter().find_map(|m| match m {
        Message::Alert(a) => Some(a),
        _ => None,
    });
    let alert = alert.unwrap();
    assert_eq!(alert.severity, Severity::Warning);
    assert!(
        alert.message.contains("config.telemetry_interval"),
        "{}",
        alert.message
    );
}

// DESE-P9: a threshold alert is raised once per crossing, and once on return.
#[test]
fn dese_p9_threshold_alert_once_per_crossing() {
    let mut rig = Rig::new(|_| {});
    rig.connect();
    rig.deliver("config", r#"{"device_id":"esp32-001","config":{"alert_thresholds":{"ph":{"min":6.8,"max":7.8}}},"timestamp":"2025-01-27T10:00:00Z"}"#, false);
    rig.probe.ph = 6.5;
    rig.run_until(secs(150), true); // five low readings
    rig.probe.ph = 7.2;
    rig.run_until(secs(210), true); // two normal readings
    let alerts: Vec<(Severity, String)> = rig
        .sent_messages()
        .into_iter()
        .filter_map(|m| match m {
            Message::Alert(a) => Some((a.severity, a.message)),
            _ => None,
        })
        .collect();
    assert_eq!(alerts.len(), 2, "{alerts:?}");
    assert_eq!(alerts[0].0, Severity::Warning);
    assert_eq!(alerts[0].1, "ph 6.5 is below its minimum 6.8");
    assert_eq!(alerts[1].0, Severity::Info);
}

// DESE-D6: reconnection waits grow exponentially, and reset only after a stable connection.
#[test]
fn dese_d6_backoff_grows_and_resets_after_stable_link() {
    let mut rig = Rig::new(|s| {
        s.telemetry_interval = dese_protocol::TelemetryInterval::new(86_400_000).unwrap()
    });
    let mut waits = Vec::new();
    rig.run_until(secs(0), true);
    for _ in 0..5 {
        rig.device.handle_disconnected(rig.now, u32::MAX); // the attempt failed
        let at = rig.device.poll_timeout().unwrap();
        waits.push((at - rig.now).as_secs());
        rig.run_until(at, true);
    }
    assert_eq!(waits, [2, 4, 8, 16, 32]);
    rig.connect();
    rig.run_until(rig.now + Duration::from_secs(5), true);
    rig.device.handle_disconnected(rig.now, u32::MAX); // dropped after 5 s: not stable
    assert_eq!((rig.device.poll_timeout().unwrap() - rig.now).as_secs(), 60);
    rig.run_until(rig.device.poll_timeout().unwrap(), true);
    rig.connect();
    rig.run_until(rig.now + Duration::from_secs(31), true);
    rig.device.handle_disconnected(rig.now, u32::MAX); // dropped after 31 s: stable
    assert_eq!((rig.device.poll_timeout().unwrap() - rig.now).as_secs(), 1);
}

// A reading outside the protocol's ranges after calibration is not sent, and is counted.
#[test]
fn out_of_range_reading_is_rejected() {
    let mut rig = Rig::new(|_| {});
    rig.probe.ph = 15.0;
    rig.connect();
    rig.run_until(secs(30), true);
    assert_eq!(rig.device.stats().telemetry, 0);
    assert_eq!(rig.device.stats().readings_missed, 1);
    assert!(
        rig.events
            .iter()
            .any(|e| matches!(e, Event::ReadingRejected { error } if error.starts_with("ph: 15")))
    );
}

// DESE-D3: a config message changes the keepalive; the application hears of it, and the next
// connection uses it.
#[test]
fn dese_d3_keepalive_changed_by_config() {
    let mut rig = Rig::new(|_| {});
    rig.connect();
    rig.deliver("config", r#"{"device_id":"esp32-001","config":{"mqtt_keepalive":120},"timestamp":"2025-01-27T10:00:00Z"}"#, false);
    rig.drain(true);
    assert!(
        rig.events
            .iter()
            .any(|e| matches!(e, Event::KeepaliveChanged(k) if k.get() == 120))
    );
    assert_eq!(rig.device.connect_options(rig.utc()).keepalive.get(), 120);
    // The same value again is no change.
    rig.events.clear();
    rig.deliver("config", r#"{"device_id":"esp32-001","config":{"mqtt_keepalive":120},"timestamp":"2025-01-27T10:00:01Z"}"#, false);
    rig.drain(true);
    assert!(
        !rig.events
            .iter()
            .any(|e| matches!(e, Event::KeepaliveChanged(_)))
    );
}

// Readings the application takes itself go out at once, and the schedule goes on.
#[test]
fn readings_on_demand() {
    let mut rig = Rig::new(|_| {});
    rig.connect();
    let utc = rig.utc();
    let extra = Readings {
        ph: 6.9,
        chlorine: 1.0,
        temperature: 20.0,
        ..Readings::default()
    };
    rig.device.handle_readings(extra, utc);
    rig.run_until(secs(30), true);
    let ph: Vec<f64> = rig
        .sent_messages()
        .iter()
        .filter_map(|m| match m {
            Message::Telemetry(t) => Some(t.sensors.ph.get()),
            _ => None,
        })
        .collect();
    assert_eq!(
        ph,
        [6.9, 7.2],
        "the reading on demand, then the periodic one at 30 s"
    );
}

// Settings that cannot work are refused when built, naming the setting: an empty or over-long
// firmware version would make the retained status and the last will empty (the broker's
// "clear"), and the device would silently disappear; a window of 0 would publish nothing.
#[test]
fn settings_that_cannot_work_are_refused() {
    let base = || {
        Settings::new(
            "org-123".parse().unwrap(),
            "esp32-001".parse().unwrap(),
            "1.0.0",
        )
    };
    assert!(base().check().is_ok());
    type Spoil = fn(&mut Settings);
    let cases: [(Spoil, &str); 6] = [
        (|s| s.firmware_version = String::new(), "firmware_version"),
        (|s| s.firmware_version = "v".repeat(65), "firmware_version"),
        (|s| s.firmware_version = "1.0\n".into(), "firmware_version"),
        (|s| s.in_flight_window = 0, "in_flight_window"),
        (|s| s.outbox_capacity = 0, "outbox_capacity"),
        (
            |s| s.status_interval = Duration::from_secs(10_000_000),
            "status_interval",
        ),
    ];
    for (spoil, named) in cases {
        let mut settings = base();
        spoil(&mut settings);
        assert_eq!(settings.check().unwrap_err().setting(), named);
    }
    // Built anyway, a window of 0 still publishes: the engine clamps it.
    let mut rig = Rig::new(|s| s.in_flight_window = 0);
    rig.connect();
    rig.drain(true);
    assert!(!rig.take_sent().is_empty(), "the online status went out");
}

/// What a firmware keeps in flash, applied from the engine's changes, read back at boot.
#[derive(Default)]
struct Flash {
    messages: Vec<dese_device::SavedMessage>,
    answered: Vec<(dese_protocol::CommandId, Vec<u8>)>,
    config: Option<dese_protocol::DeviceConfig>,
}

impl Flash {
    fn save(&mut self, device: &mut Device) {
        while let Some(change) = device.poll_persist() {
            match change {
                Persist::Queued { id, kind, payload } => {
                    self.messages
                        .push(dese_device::SavedMessage { id, kind, payload });
                }
                Persist::Removed { id } => self.messages.retain(|m| m.id != id),
                Persist::Answered {
                    command_id,
                    response,
                } => self.answered.push((command_id, response)),
                Persist::Config(config) => self.config = Some(config),
                other => panic!("unexpected {other:?}"),
            }
        }
    }

    fn boot(&self) -> Saved {
        Saved {
            messages: self.messages.clone(),
            answered: self.answered.clone(),
            config: self.config.clone(),
        }
    }
}

// Power lost in the middle of a stream: the readings not yet acknowledged replay in order after
// the boot, a command delivered again is answered from the saved response without running, and
// the config a config message set is still in force.
#[test]
fn dese_d9_the_saved_state_survives_a_reboot() {
    let mut rig = Rig::new(|s| s.persist = true);
    let mut flash = Flash::default();
    rig.connect();
    rig.deliver(
        "config",
        r#"{"device_id":"esp32-001","timestamp":"2025-01-27T10:00:00Z","config":{"telemetry_interval":10000}}"#,
        false,
    );
    rig.deliver("commands", SET_PUMP, false);
    rig.run_until(secs(45), false); // the response and four readings handed out, none acknowledged
    flash.save(&mut rig.device);
    let before = rig.take_sent();
    let unacked: Vec<Vec<u8>> = before
        .iter()
        .filter(|t| t.kind != MessageKind::Status)
        .map(|t| t.payload.clone())
        .collect();
    assert_eq!(unacked.len(), 5, "{before:?}");
    rig.device.handle_acked(before[1].id); // only the response arrived
    flash.save(&mut rig.device);
    assert_eq!(flash.messages.len(), 4);

    // The boot: a new engine, an hour later on the monotonic clock it starts again at zero.
    let mut rebooted = Rig::new(|s| s.persist = true);
    rebooted.device.restore(Instant::ZERO, flash.boot());
    assert_eq!(
        rebooted.device.poll_event(),
        Some(Event::Restored {
            messages: 4,
            answered: 1,
            refused: 0
        })
    );
    assert_eq!(rebooted.device.telemetry_interval().get(), 10_000);
    rebooted.connect();
    rebooted.deliver("commands", SET_PUMP, false);
    rebooted.drain(true);
    let after: Vec<Vec<u8>> = rebooted
        .sent
        .iter()
        .filter(|t| t.kind != MessageKind::Status)
        .map(|t| t.payload.clone())
        .collect();
    assert_eq!(after[..4], unacked[1..], "the readings, in order");
    assert_eq!(after[4], unacked[0], "the first response, sent again");
    assert!(
        rebooted.handler.ran.is_empty(),
        "the pump did not run again"
    );
    assert_eq!(rebooted.device.stats().commands_duplicate, 1);
}

// What storage gives back is checked as a peer would: another device's reading, a status and
// an answer that does not match its id are refused, counted, and reported removed.
#[test]
fn restore_refuses_what_is_not_this_devices() {
    let mut rig = Rig::new(|s| s.persist = true);
    let other = br#"{"device_id":"esp32-002","timestamp":"2025-01-27T10:00:00Z","organization_id":"org-123","sensors":{"ph":7.2,"chlorine":2.5,"temperature":25.5},"metadata":{"firmware_version":"1.0.0"}}"#;
    let status =
        br#"{"status":"online","firmware_version":"1.0.0","timestamp":"2025-01-27T10:00:00Z"}"#;
    let answer = br#"{"command_id":"cmd-9","success":true,"timestamp":"2025-01-27T10:00:00Z"}"#;
    let saved = Saved {
        messages: vec![
            dese_device::SavedMessage {
                id: MessageId(7),
                kind: MessageKind::Telemetry,
                payload: other.to_vec(),
            },
            dese_device::SavedMessage {
                id: MessageId(3),
                kind: MessageKind::Status,
                payload: status.to_vec(),
            },
        ],
        answered: vec![("cmd-1".parse().unwrap(), answer.to_vec())],
        config: None,
    };
    rig.device.restore(Instant::ZERO, saved);
    assert_eq!(
        rig.device.poll_event(),
        Some(Event::Restored {
            messages: 0,
            answered: 0,
            refused: 3
        })
    );
    assert_eq!(rig.device.stats().restore_refused, 3);
    let removed: Vec<Persist> = core::iter::from_fn(|| rig.device.poll_persist()).collect();
    assert_eq!(
        removed,
        [
            Persist::Removed { id: MessageId(3) },
            Persist::Removed { id: MessageId(7) }
        ]
    );
    // New messages are numbered after the saved ones.
    rig.connect();
    rig.drain(true);
    assert!(rig.sent[0].id > MessageId(7));
}

/// Delivers a command through `handle_message`, which hands it out as an event.
fn deliver_deferred(rig: &mut Rig, payload: &str) {
    let utc = rig.utc();
    rig.device.handle_message(
        rig.now,
        utc,
        "devices/org-123/esp32-001/commands",
        payload.as_bytes(),
        false,
    );
    rig.drain(true);
}

fn handed_out(rig: &mut Rig) -> Vec<(dese_protocol::CommandId, Action)> {
    core::mem::take(&mut rig.events)
        .into_iter()
        .filter_map(|event| match event {
            Event::Command { command_id, action } => Some((command_id, action)),
            _ => None,
        })
        .collect()
}

// DESE-C5, for a command that takes time: handed out once, answered when its result comes,
// a copy delivered while it runs is neither handed out again nor answered early, and a copy
// delivered after gets the same answer.
#[test]
fn dese_c5_a_command_that_takes_time_runs_once_and_answers_when_done() {
    let mut rig = Rig::new(|_| {});
    rig.connect();
    rig.drain(true);
    rig.take_sent();
    deliver_deferred(&mut rig, SET_PUMP);
    let [(command_id, action)] = &handed_out(&mut rig)[..] else {
        panic!("{:?}", rig.events);
    };
    assert_eq!(action.name(), "set_pump");
    assert_eq!(rig.device.commands_running().count(), 1);
    // Delivered again while the pump runs: nothing is handed out, nothing is answered yet.
    rig.now = rig.now + Duration::from_secs(1);
    deliver_deferred(&mut rig, SET_PUMP);
    assert!(handed_out(&mut rig).is_empty());
    assert!(responses(&rig).is_empty());
    assert_eq!(rig.device.stats().commands_duplicate_running, 1);
    // Two seconds on, the pump has run.
    rig.now = rig.now + Duration::from_secs(1);
    let utc = rig.utc();
    let mut data = JsonObject::new();
    data.insert("pump_state".into(), "on".into());
    rig.device
        .handle_command_result(rig.now, utc, command_id, Ok(Some(data)))
        .unwrap();
    rig.drain(true);
    let answered = responses(&rig);
    assert_eq!(answered.len(), 1);
    assert!(answered[0].success);
    assert_eq!(
        answered[0].timestamp, utc,
        "stamped when the command finished"
    );
    assert_eq!(rig.device.commands_running().count(), 0);
    // A late copy gets the same bytes; a second result for the same id is refused by name.
    deliver_deferred(&mut rig, SET_PUMP);
    let payloads: Vec<&Vec<u8>> = rig
        .sent
        .iter()
        .filter(|t| t.kind == MessageKind::CommandResponse)
        .map(|t| &t.payload)
        .collect();
    assert_eq!(payloads.len(), 2);
    assert_eq!(payloads[0], payloads[1]);
    let again = rig
        .device
        .handle_command_result(rig.now, utc, command_id, Ok(None))
        .unwrap_err();
    assert_eq!(&again.command_id, command_id);
    assert!(again.to_string().contains("not running"), "{again}");
    assert_eq!(rig.device.stats().commands_run, 1);
}

// Commands that never finish cannot pile up: past `running_capacity` a command is refused as
// busy, and the refusal is remembered like any answer (a copy of that id later gets it again,
// never a run); a new id runs once a slot is free.
#[test]
fn commands_running_at_once_are_bounded() {
    let mut rig = Rig::new(|s| s.running_capacity = 2);
    rig.connect();
    for n in 1..=3 {
        let payload = SET_PUMP.replace("cmd-1", &format!("cmd-{n}"));
        deliver_deferred(&mut rig, &payload);
    }
    assert_eq!(handed_out(&mut rig).len(), 2);
    let refused = responses(&rig);
    assert_eq!(refused.len(), 1);
    assert_eq!(refused[0].command_id.as_str(), "cmd-3");
    assert!(
        refused[0]
            .error
            .as_deref()
            .unwrap()
            .contains("busy with 2 commands"),
        "{refused:?}"
    );
    let utc = rig.utc();
    let first = "cmd-1".parse().unwrap();
    rig.device
        .handle_command_result(rig.now, utc, &first, Err("pump 1 is jammed".into()))
        .unwrap();
    deliver_deferred(&mut rig, &SET_PUMP.replace("cmd-1", "cmd-3"));
    assert!(handed_out(&mut rig).is_empty(), "cmd-3 was answered: busy");
    deliver_deferred(&mut rig, &SET_PUMP.replace("cmd-1", "cmd-4"));
    let [(id, _)] = &handed_out(&mut rig)[..] else {
        panic!("cmd-4 runs")
    };
    assert_eq!(id.as_str(), "cmd-4");
    let answers = responses(&rig);
    let busy: Vec<_> = answers
        .iter()
        .filter(|r| r.command_id.as_str() == "cmd-3")
        .collect();
    assert_eq!(busy.len(), 2);
    assert_eq!(busy[0], busy[1], "the same refusal, both times");
    assert!(answers.iter().any(
        |r| r.command_id.as_str() == "cmd-1" && r.error.as_deref() == Some("pump 1 is jammed")
    ));
    // A running capacity that would let a running command's saved answer age out is refused.
    let mut settings = dese_device::Settings::new(
        "org-123".parse().unwrap(),
        "esp32-001".parse().unwrap(),
        "1.0.0",
    );
    settings.answered_capacity = 4;
    settings.running_capacity = 4;
    assert_eq!(settings.check().unwrap_err().setting(), "running_capacity");
}

// A copy of a running command that is retained, or not valid at all, is not answered early:
// the only answer is the result's.
#[test]
fn a_running_command_is_answered_once_whatever_copies_arrive() {
    let mut rig = Rig::new(|_| {});
    rig.connect();
    deliver_deferred(&mut rig, SET_PUMP);
    let [(id, _)] = &handed_out(&mut rig)[..] else {
        panic!()
    };
    let utc = rig.utc();
    let topic = "devices/org-123/esp32-001/commands";
    rig.device
        .handle_message(rig.now, utc, topic, SET_PUMP.as_bytes(), true);
    let broken = SET_PUMP.replace(r#""pump_id":1"#, r#""pump_id":"one""#);
    rig.device
        .handle_message(rig.now, utc, topic, broken.as_bytes(), false);
    rig.drain(true);
    assert!(responses(&rig).is_empty(), "{:?}", responses(&rig));
    assert_eq!(rig.device.stats().commands_duplicate_running, 2);
    let still = rig
        .events
        .iter()
        .filter(|e| matches!(e, Event::CommandStillRunning { .. }))
        .count();
    assert_eq!(still, 2);
    rig.device
        .handle_command_result(rig.now, utc, id, Ok(None))
        .unwrap();
    rig.drain(true);
    let answered = responses(&rig);
    assert_eq!(answered.len(), 1);
    assert!(answered[0].success);
}

// A `reset_config` handed out as an event resets the config when its result is a success,
// not before.
#[test]
fn a_deferred_reset_config_applies_on_success() {
    let mut rig = Rig::new(|_| {});
    rig.connect();
    rig.deliver(
        "config",
        r#"{"device_id":"esp32-001","timestamp":"2025-01-27T10:00:00Z","config":{"telemetry_interval":10000}}"#,
        false,
    );
    let reset = r#"{"command_id":"cmd-r","device_id":"esp32-001","command":"reset_config","timestamp":"2025-01-27T10:00:00Z"}"#;
    deliver_deferred(&mut rig, reset);
    let [(id, Action::ResetConfig)] = &handed_out(&mut rig)[..] else {
        panic!("{:?}", rig.events)
    };
    assert_eq!(rig.device.telemetry_interval().get(), 10_000, "not yet");
    let utc = rig.utc();
    rig.device
        .handle_command_result(rig.now, utc, id, Ok(None))
        .unwrap();
    assert_eq!(rig.device.telemetry_interval().get(), 30_000);
}

// A reboot while a command runs: the command was saved as interrupted, so the copy delivered
// after the boot is answered with that failure and never runs a second time.
#[test]
fn a_command_running_at_a_reboot_is_answered_as_interrupted_never_run_twice() {
    let mut rig = Rig::new(|s| s.persist = true);
    let mut flash = Flash::default();
    rig.connect();
    deliver_deferred(&mut rig, SET_PUMP);
    assert_eq!(handed_out(&mut rig).len(), 1);
    flash.save(&mut rig.device);

    let mut rebooted = Rig::new(|s| s.persist = true);
    rebooted.device.restore(Instant::ZERO, flash.boot());
    rebooted.connect();
    deliver_deferred(&mut rebooted, SET_PUMP);
    assert!(handed_out(&mut rebooted).is_empty(), "not handed out again");
    let answer = responses(&rebooted);
    assert_eq!(answer.len(), 1);
    assert!(!answer[0].success);
    assert!(
        answer[0]
            .error
            .as_deref()
            .unwrap()
            .starts_with("interrupted"),
        "{answer:?}"
    );

    // Had it finished before the power went, its real answer replaces the interrupted one.
    let mut rig = Rig::new(|s| s.persist = true);
    let mut flash = Flash::default();
    rig.connect();
    deliver_deferred(&mut rig, SET_PUMP);
    let [(id, _)] = &handed_out(&mut rig)[..] else {
        panic!()
    };
    flash.save(&mut rig.device);
    let utc = rig.utc();
    rig.device
        .handle_command_result(rig.now, utc, id, Ok(None))
        .unwrap();
    flash.save(&mut rig.device);
    let mut rebooted = Rig::new(|s| s.persist = true);
    rebooted.device.restore(Instant::ZERO, flash.boot());
    rebooted.connect();
    deliver_deferred(&mut rebooted, SET_PUMP);
    assert!(responses(&rebooted)[0].success);
}

// A long command's saved "interrupted" is written again behind every other answer, so that a
// store keeping only the most recent answers still has it after many more commands.
#[test]
fn a_long_command_stays_saved_as_interrupted_while_others_are_answered() {
    let mut rig = Rig::new(|s| {
        s.persist = true;
        s.answered_capacity = 4;
        s.running_capacity = 2;
    });
    let mut flash = Flash::default();
    rig.connect();
    deliver_deferred(&mut rig, SET_PUMP);
    assert_eq!(handed_out(&mut rig).len(), 1);
    for n in 2..=12 {
        rig.deliver(
            "commands",
            &SET_PUMP.replace("cmd-1", &format!("cmd-{n}")),
            false,
        );
    }
    rig.drain(true);
    flash.save(&mut rig.device);
    // What a store keeping the last four answers (by id) holds.
    let mut kept: Vec<(dese_protocol::CommandId, Vec<u8>)> = Vec::new();
    for (id, response) in &flash.answered {
        kept.retain(|(seen, _)| seen != id);
        kept.push((id.clone(), response.clone()));
    }
    let kept = kept.split_off(kept.len().saturating_sub(4));
    assert!(
        kept.iter().any(|(id, _)| id.as_str() == "cmd-1"),
        "{:?}",
        kept.iter().map(|(id, _)| id.as_str()).collect::<Vec<_>>()
    );
    let mut rebooted = Rig::new(|s| {
        s.persist = true;
        s.answered_capacity = 4;
        s.running_capacity = 2;
    });
    rebooted.device.restore(
        Instant::ZERO,
        Saved {
            answered: kept,
            ..Saved::default()
        },
    );
    rebooted.connect();
    deliver_deferred(&mut rebooted, SET_PUMP);
    assert!(handed_out(&mut rebooted).is_empty(), "never run twice");
    assert!(
        responses(&rebooted)[0]
            .error
            .as_deref()
            .unwrap()
            .starts_with("interrupted")
    );
}

// Nothing is scheduled once the device said goodbye, until the link comes up again.
#[test]
fn nothing_is_scheduled_after_a_deliberate_disconnection() {
    let mut rig = Rig::new(|_| {});
    rig.connect();
    rig.run_until(secs(40), true);
    assert!(rig.device.poll_timeout().is_some());
    let utc = rig.utc();
    let _goodbye = rig.device.disconnect(utc);
    assert_eq!(rig.device.poll_timeout(), None);
    let telemetry = rig.device.stats().telemetry;
    rig.device.handle_timeout(secs(400), utc, &mut rig.probe);
    assert_eq!(
        rig.device.stats().telemetry,
        telemetry,
        "no reading while closed"
    );
    rig.now = secs(400);
    rig.connect();
    assert!(rig.device.poll_timeout().is_some());
}
