//! The engine's invariants, checked after every operation of any sequence: one definition for
//! the property tests (`tests/model.rs`, sequences from proptest) and the fuzz target
//! (`fuzz/fuzz_targets/device_ops.rs`, sequences and payloads from libFuzzer). Behind the
//! `model` feature; not part of the engine.
//!
//! The invariants: nothing is handed to the transport while the link is down; first
//! transmissions of readings come in time order; no command id runs twice (DESE-C5), whether
//! the handler runs it at once or it is handed out as [`Event::Command`] and finished later
//! ([`Op::Finish`]), and commands running at once stay within their bound; every
//! message the engine accepted is delivered, dropped and counted, or still pending (DESE-D7,
//! DESE-D9); the outbox never holds more than its capacity.
//!
//! The engine runs with [`Settings::persist`] on, and the harness keeps what a firmware would
//! keep in flash from [`Device::poll_persist`]: a message is saved before it is handed to the
//! transport, a removal names a saved message, and a reboot ([`Op::Reboot`]: a new engine
//! restored from what was saved) loses no pending message, keeps the config, and runs no
//! command twice.

use alloc::collections::{BTreeMap, BTreeSet};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

use dese_protocol::{Action, JsonObject, Message, MessageKind, Timestamp, decode};

use crate::{
    CommandHandler, Device, Event, Instant, MessageId, Persist, Readings, Saved, SavedMessage,
    SensorReader, Settings, Transmit,
};

/// One thing that happens to the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// This many seconds pass.
    Wait(u16),
    /// The broker accepts a connection (ignored while connected).
    Connect,
    /// The connection is lost, with this randomness for the backoff (ignored while down).
    Disconnect(u32),
    /// The broker acknowledges this share, out of 4, of what is in flight, oldest first.
    Ack(u8),
    /// Command `c{id}` arrives, retained or not.
    Command {
        /// Which of a few ids.
        id: u8,
        /// Delivered as a retained message.
        retained: bool,
        /// Handed out as [`Event::Command`] (`handle_message`) rather than run at once by a
        /// handler (`handle_message_with`).
        deferred: bool,
    },
    /// The application finishes one of the commands handed out and still running (picked by
    /// this number), successfully when it is even.
    Finish(u8),
    /// Any bytes on the device's `commands` topic (or `config`): what a hostile or buggy
    /// backend could send.
    Raw {
        /// On `config` instead of `commands`.
        config: bool,
        /// The payload.
        payload: Vec<u8>,
        /// Delivered as a retained message.
        retained: bool,
    },
    /// Power is lost and the device boots again: a new engine, restored from what was saved.
    Reboot,
}

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

struct Accept;

impl CommandHandler for Accept {
    fn run(&mut self, _action: &Action, _now: Instant) -> Result<Option<JsonObject>, String> {
        Ok(None)
    }
}

/// What a firmware keeps in flash, from the engine's [`Persist`] changes.
#[derive(Default)]
struct Store {
    messages: BTreeMap<MessageId, SavedMessage>,
    answered: Vec<(dese_protocol::CommandId, Vec<u8>)>,
    config: Option<dese_protocol::DeviceConfig>,
}

/// A device engine, what the harness knows of its link, and what it saw come out.
pub struct Harness {
    device: Device,
    settings: Settings,
    store: Store,
    capacity: usize,
    now: Instant,
    connected: bool,
    in_flight: Vec<Transmit>,
    acked: BTreeSet<MessageId>,
    acked_replayable: u64,
    ran: BTreeMap<String, u32>,
    running: Vec<dese_protocol::CommandId>,
    finishing: BTreeSet<dese_protocol::CommandId>,
    last_reading: Option<Timestamp>,
    seen: BTreeSet<MessageId>,
}

impl Harness {
    /// A device `org`/`dev` with an outbox of `capacity`.
    pub fn new(capacity: usize) -> Self {
        let (Ok(org), Ok(dev)) = ("org".parse(), "dev".parse()) else {
            unreachable!("valid ids")
        };
        let mut settings = Settings::new(org, dev, "1");
        settings.outbox_capacity = capacity;
        settings.persist = true;
        // Few enough that a sequence meets the bound, and the busy refusal past it.
        settings.running_capacity = 3;
        Self {
            device: Device::new(settings.clone(), Instant::ZERO),
            settings,
            store: Store::default(),
            capacity: capacity.max(1),
            now: Instant::ZERO,
            connected: false,
            in_flight: Vec::new(),
            acked: BTreeSet::new(),
            acked_replayable: 0,
            ran: BTreeMap::new(),
            running: Vec::new(),
            finishing: BTreeSet::new(),
            last_reading: None,
            seen: BTreeSet::new(),
        }
    }

    fn utc(at: Instant) -> Timestamp {
        let millis = 1_700_000_000_000 + i64::try_from(at.as_millis()).unwrap_or(i64::MAX / 2);
        Timestamp::from_unix_millis(millis).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// Applies `op`, drains what the engine wants done, and checks every invariant: the first
    /// broken one is the error.
    pub fn apply(&mut self, op: &Op) -> Result<(), String> {
        let utc = Self::utc(self.now);
        match op {
            Op::Wait(secs) => {
                self.now = self.now + Duration::from_secs(u64::from(*secs));
                while let Some(at) = self.device.poll_timeout().filter(|at| *at <= self.now) {
                    self.device.handle_timeout(at, Self::utc(at), &mut Probe);
                }
                self.device
                    .handle_timeout(self.now, Self::utc(self.now), &mut Probe);
            }
            Op::Connect if !self.connected => {
                self.device.handle_connected(self.now, utc);
                self.connected = true;
            }
            Op::Disconnect(random) if self.connected => {
                self.device.handle_disconnected(self.now, *random);
                self.in_flight.clear();
                self.connected = false;
            }
            Op::Ack(share) => {
                let n = self.in_flight.len() * usize::from(*share).min(4) / 4;
                for t in self.in_flight.drain(..n) {
                    self.device.handle_acked(t.id);
                    if self.acked.insert(t.id) && t.kind != MessageKind::Status {
                        self.acked_replayable += 1;
                    }
                }
            }
            Op::Command {
                id,
                retained,
                deferred,
            } => {
                let payload = format!(
                    r#"{{"command_id":"c{id}","device_id":"dev","command":"reboot","timestamp":"2025-01-27T10:00:00Z"}}"#
                );
                let topic = "devices/org/dev/commands";
                if *deferred {
                    self.device
                        .handle_message(self.now, utc, topic, payload.as_bytes(), *retained);
                } else {
                    self.device.handle_message_with(
                        self.now,
                        utc,
                        topic,
                        payload.as_bytes(),
                        *retained,
                        &mut Accept,
                    );
                }
            }
            Op::Finish(pick) => {
                if !self.running.is_empty() {
                    let id = self.running.remove(usize::from(*pick) % self.running.len());
                    self.finishing.insert(id.clone());
                    let result = if pick % 2 == 0 {
                        Ok(None)
                    } else {
                        Err(String::from("the pump jammed"))
                    };
                    self.device
                        .handle_command_result(self.now, utc, &id, result)
                        .map_err(|e| format!("a command handed out was not running: {e}"))?;
                }
            }
            Op::Raw {
                config,
                payload,
                retained,
            } => {
                let topic = if *config {
                    "devices/org/dev/config"
                } else {
                    "devices/org/dev/commands"
                };
                self.device.handle_message_with(
                    self.now,
                    utc,
                    topic,
                    payload,
                    *retained,
                    &mut Accept,
                );
            }
            Op::Reboot => self.reboot()?,
            Op::Connect | Op::Disconnect(_) => {}
        }
        self.drain()?;
        self.check()
    }

    /// A new engine from what the store holds; what was in flight is gone with the link.
    fn reboot(&mut self) -> Result<(), String> {
        let pending = self.device.stats().pending;
        let config = self.device.config();
        let saved = Saved {
            messages: self.store.messages.values().cloned().collect(),
            answered: self.store.answered.clone(),
            config: self.store.config.clone(),
        };
        self.device = Device::new(self.settings.clone(), self.now);
        self.device.restore(self.now, saved);
        self.connected = false;
        self.in_flight.clear();
        // The application's work in progress is gone with the power.
        self.running.clear();
        let stats = self.device.stats();
        if stats.restored != pending || stats.restore_refused != 0 {
            return Err(format!(
                "{pending} pending before the reboot, {} restored and {} refused after it",
                stats.restored, stats.restore_refused
            ));
        }
        if self.store.config.is_some() && self.device.config() != config {
            return Err(format!(
                "the config {config:?} became {:?} across the reboot",
                self.device.config()
            ));
        }
        // The new engine's counters start at zero, and it numbers its messages after the saved
        // ones: the ids of messages delivered before the reboot come round again.
        self.acked_replayable = 0;
        self.acked.clear();
        let saved = &self.store.messages;
        self.seen.retain(|id| saved.contains_key(id));
        Ok(())
    }

    /// Applies the engine's changes to the store, checking each.
    fn save(&mut self) -> Result<(), String> {
        while let Some(change) = self.device.poll_persist() {
            match change {
                Persist::Queued { id, kind, payload } => {
                    if kind == MessageKind::Status {
                        return Err("a status was saved".into());
                    }
                    let message = SavedMessage { id, kind, payload };
                    if self.store.messages.insert(id, message).is_some() {
                        return Err(format!("message {id:?} was saved twice"));
                    }
                }
                Persist::Removed { id } => {
                    if self.store.messages.remove(&id).is_none() {
                        return Err(format!("message {id:?} was removed but never saved"));
                    }
                }
                Persist::Answered {
                    command_id,
                    response,
                } => {
                    // A store keyed by command: a later answer replaces an earlier one.
                    self.store.answered.retain(|(id, _)| *id != command_id);
                    self.store.answered.push((command_id, response));
                    let over = self
                        .store
                        .answered
                        .len()
                        .saturating_sub(self.settings.answered_capacity);
                    self.store.answered.drain(..over);
                }
                Persist::Config(config) => self.store.config = Some(config),
            }
        }
        Ok(())
    }

    fn drain(&mut self) -> Result<(), String> {
        self.save()?;
        while let Some(t) = self.device.poll_transmit() {
            if !self.connected {
                return Err("a message was handed out while the link is down".into());
            }
            if t.kind != MessageKind::Status && !self.store.messages.contains_key(&t.id) {
                return Err(format!(
                    "{} {:?} was sent before it was saved",
                    t.kind, t.id
                ));
            }
            let decoded = decode(&t.topic, &t.payload)
                .map_err(|e| format!("the engine published what it cannot decode: {e}"))?;
            if let Message::Telemetry(telemetry) = decoded.message {
                // First transmissions of readings come in time order; replays repeat an id.
                if self.seen.insert(t.id) {
                    if self
                        .last_reading
                        .is_some_and(|last| telemetry.timestamp <= last)
                    {
                        return Err(format!("reading {:?} out of order", telemetry.timestamp));
                    }
                    self.last_reading = Some(telemetry.timestamp);
                }
            }
            self.in_flight.push(t);
        }
        while let Some(event) = self.device.poll_event() {
            match event {
                // A command starts when it is handed out, or when the handler runs it.
                Event::Command { command_id, .. } => {
                    *self.ran.entry(command_id.to_string()).or_default() += 1;
                    self.running.push(command_id);
                }
                // Counted when it was handed out, if it was; otherwise the handler ran it.
                Event::CommandRun { command_id, .. } if !self.finishing.remove(&command_id) => {
                    *self.ran.entry(command_id.to_string()).or_default() += 1;
                }
                _ => {}
            }
        }
        let running = self.device.commands_running().count();
        if running != self.running.len() || running > self.settings.running_capacity {
            return Err(format!(
                "{running} commands running in the engine, {} handed out and not finished",
                self.running.len()
            ));
        }
        Ok(())
    }

    fn check(&self) -> Result<(), String> {
        let stats = self.device.stats();
        if let Some((id, n)) = self.ran.iter().find(|(_, n)| **n > 1) {
            return Err(format!("command {id} ran {n} times"));
        }
        let built = stats.restored
            + stats.telemetry
            + stats.alerts
            + stats.commands_run
            + stats.commands_refused
            + stats.commands_duplicate;
        let accounted =
            self.acked_replayable + stats.telemetry_dropped + stats.other_dropped + stats.pending;
        if built != accounted {
            return Err(format!(
                "{built} messages built, {accounted} delivered, dropped or pending: {stats:?}"
            ));
        }
        if self.store.messages.len() as u64 != stats.pending {
            return Err(format!(
                "{} messages saved, {} pending",
                self.store.messages.len(),
                stats.pending
            ));
        }
        if stats.pending > self.capacity as u64 {
            return Err(format!(
                "{} pending in an outbox of {}",
                stats.pending, self.capacity
            ));
        }
        Ok(())
    }
}
