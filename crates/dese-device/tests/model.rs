//! Random operation sequences against the device engine, with invariants checked after every
//! step: nothing the engine accepted is lost silently, no command runs twice, and readings are
//! never reordered.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

use std::collections::{BTreeMap, BTreeSet};

use core::time::Duration;

use dese_device::{
    CommandHandler, Device, Instant, MessageId, Readings, SensorReader, Settings, Transmit,
};
use dese_protocol::{Action, JsonObject, Message, MessageKind, Timestamp, decode};
use proptest::prelude::*;

struct Probe;
impl SensorReader for Probe {
    fn read(&mut self, _now: Instant) -> Option<Readings> {
        Some(Readings {
            ph: 7.0,
            chlorine: 1.0,
            temperature: 20.0,
            ..Readings::default()
        })
    }
}

#[derive(Default)]
struct Counter;
impl CommandHandler for Counter {
    fn run(&mut self, _action: &Action, _now: Instant) -> Result<Option<JsonObject>, String> {
        Ok(None)
    }
}

#[derive(Debug, Clone)]
enum Op {
    /// Time passes.
    Wait(u16),
    Connect,
    Disconnect(u32),
    /// The broker acknowledges this share of what is in flight (out of 4).
    Ack(u8),
    /// Command `id` (of five) arrives, retained or not.
    Command {
        id: u8,
        retained: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (1u16..200).prop_map(Op::Wait),
        1 => Just(Op::Connect),
        1 => any::<u32>().prop_map(Op::Disconnect),
        2 => (0u8..=4).prop_map(Op::Ack),
        2 => (0u8..5, proptest::bool::weighted(0.2)).prop_map(|(id, retained)| Op::Command { id, retained }),
    ]
}

proptest! {
    #[test]
    fn invariants_hold_under_any_sequence(ops in proptest::collection::vec(op(), 1..120), capacity in 1usize..20) {
        let mut settings = Settings::new("org".parse().unwrap(), "dev".parse().unwrap(), "1");
        settings.outbox_capacity = capacity;
        let mut device = Device::new(settings, Instant::ZERO);
        let mut handler = Counter;
        let mut now = Instant::ZERO;
        let mut connected = false;
        let mut in_flight: Vec<Transmit> = Vec::new();
        let mut acked: BTreeSet<MessageId> = BTreeSet::new();
        let mut acked_replayable = 0u64;
        let mut ran: BTreeMap<String, u32> = BTreeMap::new();
        let mut last_reading: Option<Timestamp> = None;
        let mut seen: BTreeSet<MessageId> = BTreeSet::new();

        let utc_at = |at: Instant| Timestamp::from_unix_millis(1_700_000_000_000 + at.as_millis() as i64).unwrap();
        for op in ops {
            let utc = utc_at(now);
            match op {
                Op::Wait(secs) => {
                    now = now + Duration::from_secs(u64::from(secs));
                    while let Some(at) = device.poll_timeout().filter(|at| *at <= now) {
                        device.handle_timeout(at, utc_at(at), &mut Probe);
                    }
                    device.handle_timeout(now, utc_at(now), &mut Probe);
                }
                Op::Connect if !connected => {
                    device.handle_connected(now, utc);
                    connected = true;
                }
                Op::Disconnect(random) if connected => {
                    device.handle_disconnected(now, random);
                    in_flight.clear();
                    connected = false;
                }
                Op::Ack(share) => {
                    let n = in_flight.len() * usize::from(share) / 4;
                    for t in in_flight.drain(..n) {
                        device.handle_acked(t.id);
                        if acked.insert(t.id) && t.kind != MessageKind::Status {
                            acked_replayable += 1;
                        }
                    }
                }
                Op::Command { id, retained } => {
                    let payload = format!(r#"{{"command_id":"c{id}","device_id":"dev","command":"reboot","timestamp":"2025-01-27T10:00:00Z"}}"#);
                    device.handle_message(now, utc, "devices/org/dev/commands", payload.as_bytes(), retained, &mut handler);
                }
                _ => {}
            }
            while let Some(t) = device.poll_transmit() {
                prop_assert!(connected, "nothing is handed out while the link is down");
                if let Message::Telemetry(telemetry) = decode(&t.topic, &t.payload).unwrap().message {
                    // First transmissions of readings come in time order; replays repeat an id.
                    if seen.insert(t.id) {
                        prop_assert!(last_reading.is_none_or(|last| telemetry.timestamp > last));
                        last_reading = Some(telemetry.timestamp);
                    }
                }
                in_flight.push(t);
            }
            while let Some(event) = device.poll_event() {
                if let dese_device::Event::CommandRun { command_id, .. } = event {
                    *ran.entry(command_id.to_string()).or_default() += 1;
                }
            }
            let stats = device.stats();
            // No command id runs twice (DESE-C5).
            prop_assert!(ran.values().all(|n| *n == 1), "{ran:?}");
            // Every message accepted is delivered, dropped or pending (DESE-D7, DESE-D9).
            let built = stats.telemetry + stats.alerts + stats.commands_run + stats.commands_refused + stats.commands_duplicate;
            prop_assert_eq!(built, acked_replayable + stats.telemetry_dropped + stats.other_dropped + stats.pending);
            prop_assert!(stats.pending <= capacity as u64);
        }
    }
}
