//! The flash store under power cuts: the engine's real stream of changes written to a
//! simulated NOR flash, the power cut during every single write and erase in turn, then a boot.
//! Whatever was saved before the cut is read back whole, the change being written either
//! happened or did not, and the store goes on working.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

mod support;

use dese_device::{
    CommandHandler, Device, Instant, MessageId, Persist, Readings, Saved, SavedMessage,
    SensorReader, Settings,
};
use dese_esp32c3::store::{FlashStore, Store};
use dese_protocol::{Action, JsonObject, MessageKind, Timestamp};
use embassy_futures::block_on;
use support::flash::{PAGE, SimulatedFlash};

const PAGES: usize = 6;

fn settings() -> Settings {
    let mut s = Settings::new("org-1".parse().unwrap(), "pool-1".parse().unwrap(), "1.0.0");
    s.persist = true;
    s.answered_capacity = 4;
    s.telemetry_interval = dese_protocol::TelemetryInterval::new(1000).unwrap();
    s
}

struct Pool;
impl SensorReader for Pool {
    fn read(&mut self, now: Instant) -> Option<Readings> {
        Some(Readings {
            ph: 7.0 + (now.as_millis() % 1000) as f64 / 10_000.0,
            chlorine: 1.5,
            temperature: 26.0,
            ..Readings::default()
        })
    }
}
struct Pumps;
impl CommandHandler for Pumps {
    fn run(&mut self, _action: &Action, _now: Instant) -> Result<Option<JsonObject>, String> {
        Ok(None)
    }
}

fn utc(at: Instant) -> Timestamp {
    Timestamp::from_unix_millis(1_780_000_000_000 + at.as_millis() as i64).unwrap()
}

/// The changes a device reports over 300 s: a reading a second, acknowledged in bursts, a
/// command every 3 s, three configs, and a lost connection (its in-flight messages queued
/// again), drained after every input as the firmware drains them.
fn stream() -> Vec<Persist> {
    let mut device = Device::new(settings(), Instant::ZERO);
    let mut changes = Vec::new();
    let mut in_flight = Vec::new();
    let drain = |device: &mut Device, changes: &mut Vec<Persist>| {
        changes.extend(std::iter::from_fn(|| device.poll_persist()));
    };
    device.handle_connected(Instant::ZERO, utc(Instant::ZERO));
    for second in 1..=300u64 {
        let now = Instant::from_millis(second * 1000);
        device.handle_timeout(now, utc(now), &mut Pool);
        if second % 3 == 0 {
            let command = format!(
                r#"{{"command_id":"cmd-{second}","device_id":"pool-1","command":"set_pump","parameters":{{"pump_id":1,"state":"on"}},"timestamp":"2026-06-01T00:00:00Z"}}"#
            );
            device.handle_message_with(
                now,
                utc(now),
                "devices/org-1/pool-1/commands",
                command.as_bytes(),
                false,
                &mut Pumps,
            );
        }
        if second % 30 == 15 {
            let config = format!(
                r#"{{"device_id":"pool-1","timestamp":"2026-06-01T00:00:00Z","config":{{"mqtt_keepalive":{},"alert_thresholds":{{"ph":{{"max":7.05}}}}}}}}"#,
                30 + second
            );
            device.handle_message_with(
                now,
                utc(now),
                "devices/org-1/pool-1/config",
                config.as_bytes(),
                false,
                &mut Pumps,
            );
        }
        drain(&mut device, &mut changes);
        if second == 50 {
            device.handle_disconnected(now, 7);
            in_flight.clear();
        }
        if second == 55 {
            device.handle_connected(now, utc(now));
        }
        in_flight.extend(std::iter::from_fn(|| device.poll_transmit()));
        if second % 4 == 0 || second > 290 {
            for transmit in in_flight.drain(..) {
                device.handle_acked(transmit.id);
            }
        }
        drain(&mut device, &mut changes);
    }
    changes
}

/// What a store holding the first `n` changes gives back.
fn expected(changes: &[Persist]) -> Saved {
    let mut saved = Saved::default();
    for change in changes {
        match change {
            Persist::Queued { id, kind, payload } => saved.messages.push(SavedMessage {
                id: *id,
                kind: *kind,
                payload: payload.clone(),
            }),
            Persist::Removed { id } => saved.messages.retain(|m| m.id != *id),
            Persist::Answered {
                command_id,
                response,
            } => {
                saved.answered.push((command_id.clone(), response.clone()));
                let over = saved.answered.len().saturating_sub(4);
                saved.answered.drain(..over);
            }
            Persist::Config(config) => saved.config = Some(config.clone()),
            other => panic!("unexpected {other:?}"),
        }
    }
    saved
}

fn open(flash: SimulatedFlash) -> FlashStore<SimulatedFlash> {
    FlashStore::new(flash, 0..(PAGES * PAGE) as u32, &settings()).unwrap()
}

/// Saves `changes` until the power goes; the index of the change it went during.
fn save_until_cut(store: &mut FlashStore<SimulatedFlash>, changes: &[Persist]) -> Option<usize> {
    for (at, change) in changes.iter().enumerate() {
        if let Err(error) = block_on(store.save(change)) {
            assert!(
                format!("{error}").contains("PowerLost"),
                "change {at} failed for another reason: {error}"
            );
            return Some(at);
        }
    }
    None
}

#[test]
fn the_whole_stream_is_read_back() {
    let changes = stream();
    let kinds = |kind| {
        changes
            .iter()
            .filter(|c| matches!(c, Persist::Queued { kind: k, .. } if *k == kind))
            .count()
    };
    assert!(kinds(MessageKind::Telemetry) >= 300, "{changes:?}");
    assert!(kinds(MessageKind::CommandResponse) >= 100);
    let mut store = open(SimulatedFlash::new(PAGES));
    assert_eq!(save_until_cut(&mut store, &changes), None);
    let mut flash = store.into_flash();
    let erased = flash.erases;
    flash.boot();
    let loaded = block_on(open(flash).load()).unwrap();
    assert_eq!(loaded, expected(&changes));
    assert_eq!(loaded.answered.len(), 4, "the four most recent answers");
    assert!(loaded.config.is_some());
    // The stream went round the pages more than once: the outbox's, and the map's as it moved
    // its live answers to a fresh page.
    assert!(erased > 2 * PAGES, "{erased} pages erased");
}

// Power lost during every write and every erase of the stream, one run each, from a copy of
// the flash as it was before the change: after the boot the store reads back exactly what was
// saved before the cut, plus the change being written or not, and takes the next change.
#[test]
fn a_power_cut_at_any_write_loses_nothing_saved_before_it() {
    let changes = stream();
    let mut whole = open(SimulatedFlash::new(PAGES));
    let (mut cuts, mut before, mut after) = (0, 0, 0);
    for (at, change) in changes.iter().enumerate() {
        let snapshot = whole.clone();
        block_on(whole.save(change)).unwrap();
        for cut in 0..whole.flash().steps - snapshot.flash().steps {
            let mut store = snapshot.clone();
            store.flash_mut().cut_after(cut);
            let error = block_on(store.save(change)).unwrap_err();
            assert!(format!("{error}").contains("PowerLost"), "{error}");
            let mut flash = store.into_flash();
            flash.boot();
            let mut store = open(flash);
            let loaded = block_on(store.load()).unwrap_or_else(|e| {
                panic!("cut {cut} of change {at} ({change:?}): the boot failed: {e}")
            });
            if loaded == expected(&changes[..at]) {
                before += 1;
            } else if loaded == expected(&changes[..=at]) {
                after += 1;
            } else {
                panic!(
                    "cut {cut} of change {at} ({change:?}): read back {} messages, {} answers; \
                     expected {} or {}",
                    loaded.messages.len(),
                    loaded.answered.len(),
                    expected(&changes[..at]).messages.len(),
                    expected(&changes[..=at]).messages.len(),
                );
            }
            // The store goes on: a new message is saved and read back behind the others.
            let next = Persist::Queued {
                id: MessageId(1_000_000),
                kind: MessageKind::Alert,
                payload: b"{}".to_vec(),
            };
            block_on(store.save(&next))
                .unwrap_or_else(|e| panic!("cut {cut} of change {at}: the next save failed: {e}"));
            let again = block_on(store.load()).unwrap();
            assert_eq!(
                again.messages.last().map(|m| m.id),
                Some(MessageId(1_000_000))
            );
            assert_eq!(again.messages.len(), loaded.messages.len() + 1);
            cuts += 1;
        }
    }
    println!("{cuts} cuts: {before} lost the change being written, {after} kept it");
    assert_eq!(cuts, whole.flash().steps);
    assert!(before > 0 && after > 0);
}

// The store's answers and config feed the engine's restore: a command answered before the
// reboot is answered again with the saved response, not run.
#[test]
fn a_boot_from_flash_restores_the_engine() {
    let changes = stream();
    let mut store = open(SimulatedFlash::new(PAGES));
    assert_eq!(save_until_cut(&mut store, &changes), None);
    let mut flash = store.into_flash();
    flash.boot();
    let saved = block_on(open(flash).load()).unwrap();
    let pending = saved.messages.len();
    let (answered_id, answer) = saved.answered.last().cloned().unwrap();
    let mut device = Device::new(settings(), Instant::ZERO);
    device.restore(Instant::ZERO, saved);
    assert_eq!(device.stats().restored, pending as u64);
    assert_eq!(device.stats().restore_refused, 0);
    assert_eq!(device.config().mqtt_keepalive.unwrap().get(), 30 + 285);

    device.handle_connected(Instant::ZERO, utc(Instant::ZERO));
    let command = format!(
        r#"{{"command_id":"{answered_id}","device_id":"pool-1","command":"set_pump","parameters":{{"pump_id":1,"state":"on"}},"timestamp":"2026-06-01T00:00:00Z"}}"#
    );
    let mut counting = Counting(0);
    device.handle_message_with(
        Instant::ZERO,
        utc(Instant::ZERO),
        "devices/org-1/pool-1/commands",
        command.as_bytes(),
        false,
        &mut counting,
    );
    assert_eq!(counting.0, 0, "not run again");
    let sent: Vec<_> = std::iter::from_fn(|| device.poll_transmit()).collect();
    assert_eq!(
        sent.last().map(|t| &t.payload),
        Some(&answer),
        "the saved response"
    );
}

struct Counting(u32);
impl CommandHandler for Counting {
    fn run(&mut self, _action: &Action, _now: Instant) -> Result<Option<JsonObject>, String> {
        self.0 += 1;
        Ok(None)
    }
}
