//! The engine's invariants as three small models, checked after every operation of any
//! sequence: one definition for the property tests (`tests/model.rs`, sequences from proptest)
//! and the fuzz target (`fuzz/fuzz_targets/backend_ops.rs`, sequences and payloads from
//! libFuzzer). Behind the `model` feature; not part of the engine.
//!
//! - [`Commands`]: every command ends exactly once; an answer before the end completes or
//!   fails it; an answer after a timeout is reported late, once; repeats are duplicates;
//!   answers to ids nobody sent are unknown (DESE-C1, DESE-C2, DESE-C3).
//! - [`Outbox`]: within its capacity (plus a retry copy per pending command) and its in-flight
//!   window; in order on each connection; an acknowledged message never published again; a
//!   timed-out command never published afterwards; in the end every config went out and every
//!   command ended (DESE-C1, DESE-D9).
//! - [`Ledger`]: acknowledgements to the broker in arrival order on each connection; a message
//!   acknowledged only once its event, or its original's for a copy, is confirmed (or it needed
//!   none); the receive window holds; once everything is confirmed, everything went out; each
//!   reading reached the application once. Any bytes on any topic may arrive in between
//!   (DESE-D9).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use dese_protocol::{Action, DeviceConfig, DeviceId, OrgId, Timestamp};

use crate::{Ack, Backend, Event, Inbound, MessageId, Outcome, SendError, Settings};

/// What fails a model: the first broken invariant.
pub type Broken = String;

fn fail<T>(why: impl Into<String>) -> Result<T, Broken> {
    Err(why.into())
}

fn ids() -> (OrgId, DeviceId) {
    match ("org".parse(), "dev".parse()) {
        (Ok(org), Ok(dev)) => (org, dev),
        _ => unreachable!("valid ids"),
    }
}

fn utc() -> Timestamp {
    Timestamp::from_unix_millis(1_737_972_000_000).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn answer(id: &str, ok: bool) -> String {
    format!(r#"{{"command_id":"{id}","success":{ok},"timestamp":"2025-01-27T10:00:00Z"}}"#)
}

/// An operation of [`Commands`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommandOp {
    /// A command is sent.
    Send,
    /// The device answers the command picked (modulo the number sent), successfully or not.
    Answer(usize, bool),
    /// An answer to an id nobody sent.
    Stray,
    /// This many milliseconds pass.
    Wait(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Answered,
    TimedOut,
    LateReported,
}

/// The command tracker against a model of each command's state.
pub struct Commands {
    backend: Backend,
    retries: u32,
    now: Instant,
    sent: Vec<String>,
    model: BTreeMap<String, State>,
}

impl Commands {
    const TOPIC: &'static str = "devices/org/dev/command_response";

    /// A backend that retries a timed-out command `retries` times, starting at `now`.
    pub fn new(retries: u32, now: Instant) -> Self {
        Self {
            backend: Backend::new(Settings {
                retries,
                rate_limit: None,
                ..Settings::default()
            }),
            retries,
            now,
            sent: Vec::new(),
            model: BTreeMap::new(),
        }
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.backend.poll_event())
            .map(|d| d.event)
            .collect()
    }

    /// Applies `op` and checks the model.
    pub fn apply(&mut self, op: &CommandOp) -> Result<(), Broken> {
        match op {
            CommandOp::Send => {
                let (org, dev) = ids();
                let id = self
                    .backend
                    .send_command(self.now, utc(), org, dev, Action::Reboot)
                    .map_err(|e| e.to_string())?;
                if self.model.insert(id.to_string(), State::Pending).is_some() {
                    return fail(format!("id {id} given twice"));
                }
                self.sent.push(id.to_string());
            }
            CommandOp::Answer(pick, ok) if !self.sent.is_empty() => {
                let id = self.sent[pick % self.sent.len()].clone();
                let payload = answer(&id, *ok);
                self.backend
                    .handle_message(self.now, Inbound(0), Self::TOPIC, payload.as_bytes());
                let events = self.events();
                let state = self.model.get(&id).copied();
                match state {
                    Some(State::Pending) => {
                        let completed = matches!(
                            &events[..],
                            [Event::Command {
                                outcome: Outcome::Completed(_),
                                ..
                            }]
                        );
                        let failed = matches!(
                            &events[..],
                            [Event::Command {
                                outcome: Outcome::Failed(_),
                                ..
                            }]
                        );
                        if (completed, failed) != (*ok, !ok) {
                            return fail(format!("answer ok={ok} to a pending {id}: {events:?}"));
                        }
                        self.model.insert(id, State::Answered);
                    }
                    Some(State::TimedOut) => {
                        if !matches!(&events[..], [Event::LateResponse { .. }]) {
                            return fail(format!("a late answer to {id}: {events:?}"));
                        }
                        self.model.insert(id, State::LateReported);
                    }
                    Some(State::Answered | State::LateReported) => {
                        if !matches!(&events[..], [Event::Duplicate { .. }]) {
                            return fail(format!("a repeated answer to {id}: {events:?}"));
                        }
                    }
                    None => return fail(format!("{id} is not in the model")),
                }
            }
            CommandOp::Answer(..) => {}
            CommandOp::Stray => {
                let payload = answer("cmd-from-nowhere", true);
                self.backend
                    .handle_message(self.now, Inbound(0), Self::TOPIC, payload.as_bytes());
                let events = self.events();
                if !matches!(&events[..], [Event::UnknownResponse { .. }]) {
                    return fail(format!("an answer to an unknown id: {events:?}"));
                }
            }
            CommandOp::Wait(ms) => {
                let until = self.now + Duration::from_millis(u64::from(*ms));
                while let Some(at) = self.backend.poll_timeout().filter(|at| *at <= until) {
                    self.now = at;
                    self.backend.handle_timeout(at);
                    while self.backend.poll_transmit().is_some() {}
                    for event in self.events() {
                        if let Event::Command {
                            command_id,
                            outcome: Outcome::TimedOut { attempts },
                            ..
                        } = event
                        {
                            if attempts != self.retries + 1 {
                                return fail(format!("{command_id} timed out after {attempts}"));
                            }
                            let before = self.model.insert(command_id.to_string(), State::TimedOut);
                            if before != Some(State::Pending) {
                                return fail(format!("{command_id} ended twice ({before:?})"));
                            }
                        }
                    }
                }
                self.now = until;
            }
        }
        let pending = self
            .model
            .values()
            .filter(|s| **s == State::Pending)
            .count();
        if self.backend.commands_pending() != pending {
            return fail(format!(
                "{} pending in the engine, {pending} in the model",
                self.backend.commands_pending()
            ));
        }
        Ok(())
    }

    /// Lets every command end, then checks that each did.
    pub fn finish(&mut self) -> Result<(), Broken> {
        self.apply(&CommandOp::Wait(10_000_000))?;
        if self.model.values().any(|s| *s == State::Pending) {
            return fail("a command never ended");
        }
        Ok(())
    }
}

/// An operation of [`Outbox`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OutboxOp {
    /// A command is sent.
    Command,
    /// A config is sent.
    Config,
    /// The connection comes up (ignored while up).
    Connect,
    /// The connection drops (ignored while down).
    Disconnect,
    /// Up to this many messages are published.
    Transmit(u8),
    /// The broker acknowledges the in-flight message picked (modulo their number).
    Acked(usize),
    /// The device answers the command picked (modulo the number sent).
    Answer(usize),
    /// The broker acknowledges everything in flight.
    AckAll,
    /// This many milliseconds pass.
    Wait(u32),
}

/// The outbox, on virtual time, against a model.
pub struct Outbox {
    backend: Backend,
    capacity: usize,
    window: usize,
    now: Instant,
    connected: bool,
    in_flight: Vec<(MessageId, Option<String>)>,
    last_on_connection: Option<MessageId>,
    acked: BTreeSet<MessageId>,
    commands: Vec<String>,
    ended: BTreeSet<String>,
    timed_out: BTreeSet<String>,
    configs_sent: u64,
    configs_published: BTreeSet<MessageId>,
    inbound: u64,
}

impl Outbox {
    /// An outbox of `capacity`, an in-flight window of `window`, `retries` per command.
    pub fn new(capacity: usize, window: usize, retries: u32, now: Instant) -> Self {
        Self {
            backend: Backend::new(Settings {
                outbox_capacity: capacity,
                in_flight_window: window,
                retries,
                command_timeout: Duration::from_secs(10),
                rate_limit: None,
                ..Settings::default()
            }),
            capacity,
            window: window.max(1),
            now,
            connected: false,
            in_flight: Vec::new(),
            last_on_connection: None,
            acked: BTreeSet::new(),
            commands: Vec::new(),
            ended: BTreeSet::new(),
            timed_out: BTreeSet::new(),
            configs_sent: 0,
            configs_published: BTreeSet::new(),
            inbound: 0,
        }
    }

    /// Notes the end of a command (its copies withdrawn, in flight too: a late acknowledgement
    /// of one is ignored) and a retry (whose new copy replaces the one in flight).
    fn record(&mut self, event: &Event) {
        if let Event::CommandRetried { command_id, .. } = event {
            let id = command_id.to_string();
            self.in_flight.retain(|(_, c)| c.as_ref() != Some(&id));
        }
        if let Event::Command {
            command_id,
            outcome,
            ..
        } = event
        {
            let id = command_id.to_string();
            self.in_flight.retain(|(_, c)| c.as_ref() != Some(&id));
            if matches!(outcome, Outcome::TimedOut { .. }) {
                self.timed_out.insert(id.clone());
            }
            self.ended.insert(id);
        }
    }

    /// The command id a published payload carries, if it is a command.
    fn command_of(payload: &[u8]) -> Option<String> {
        let value: dese_protocol::serde_json::Value =
            dese_protocol::serde_json::from_slice(payload).ok()?;
        Some(value.get("command_id")?.as_str()?.to_string())
    }

    fn refused_below_capacity(&self) -> Result<(), Broken> {
        if self.backend.outbox_len() < self.capacity {
            return fail("refused below capacity");
        }
        Ok(())
    }

    /// Applies `op` and checks the model.
    pub fn apply(&mut self, op: &OutboxOp) -> Result<(), Broken> {
        let (org, dev) = ids();
        match op {
            OutboxOp::Command => {
                match self
                    .backend
                    .send_command(self.now, utc(), org, dev, Action::Reboot)
                {
                    Ok(id) => self.commands.push(id.to_string()),
                    Err(SendError::OutboxFull { .. }) => self.refused_below_capacity()?,
                    Err(e) => return fail(e.to_string()),
                }
            }
            OutboxOp::Config => {
                match self
                    .backend
                    .send_config(utc(), org, dev, DeviceConfig::default())
                {
                    Ok(()) => self.configs_sent += 1,
                    Err(SendError::OutboxFull { .. }) => self.refused_below_capacity()?,
                    Err(e) => return fail(e.to_string()),
                }
            }
            OutboxOp::Connect if !self.connected => {
                self.connected = true;
                self.last_on_connection = None;
                self.backend.handle_connected(self.now);
            }
            OutboxOp::Disconnect if self.connected => {
                self.connected = false;
                self.in_flight.clear();
                self.backend.handle_disconnected(self.now, 0);
            }
            OutboxOp::Connect | OutboxOp::Disconnect => {}
            OutboxOp::Transmit(n) => {
                for _ in 0..*n {
                    let Some(t) = self.backend.poll_transmit() else {
                        break;
                    };
                    if !self.connected {
                        return fail("published while down");
                    }
                    if self.acked.contains(&t.id) {
                        return fail("acknowledged, published again");
                    }
                    if self.last_on_connection.is_some_and(|last| last >= t.id) {
                        return fail("published out of order");
                    }
                    self.last_on_connection = Some(t.id);
                    let command = Self::command_of(&t.payload);
                    match &command {
                        Some(id) if self.timed_out.contains(id) => {
                            return fail(format!("{id} published after it timed out"));
                        }
                        Some(_) => {}
                        None => {
                            self.configs_published.insert(t.id);
                        }
                    }
                    self.in_flight.push((t.id, command));
                    if self.in_flight.len() > self.window {
                        return fail("beyond the in-flight window");
                    }
                }
            }
            OutboxOp::Acked(pick) if !self.in_flight.is_empty() => {
                let (id, _) = self.in_flight.remove(pick % self.in_flight.len());
                self.acked.insert(id);
                self.backend.handle_acked(id);
            }
            OutboxOp::Answer(pick) if !self.commands.is_empty() => {
                let id = self.commands[pick % self.commands.len()].clone();
                self.inbound += 1;
                let payload = answer(&id, true);
                self.backend.handle_message(
                    self.now,
                    Inbound(self.inbound),
                    "devices/org/dev/command_response",
                    payload.as_bytes(),
                );
            }
            OutboxOp::AckAll => {
                for (id, _) in std::mem::take(&mut self.in_flight) {
                    self.acked.insert(id);
                    self.backend.handle_acked(id);
                }
            }
            OutboxOp::Acked(_) | OutboxOp::Answer(_) => {}
            OutboxOp::Wait(ms) => {
                let until = self.now + Duration::from_millis(u64::from(*ms));
                while let Some(at) = self.backend.poll_timeout().filter(|at| *at <= until) {
                    self.now = at;
                    self.backend.handle_timeout(at);
                    // Anything due is looked at before anything else happens.
                    while let Some(d) = self.backend.poll_event() {
                        self.record(&d.event);
                    }
                }
                self.now = until;
            }
        }
        while let Some(d) = self.backend.poll_event() {
            if let Some(ack) = d.ack {
                self.backend.ack(ack);
            }
            self.record(&d.event);
        }
        while self.backend.poll_ack().is_some() {}
        if self.backend.outbox_len() > self.capacity + self.backend.commands_pending() {
            return fail("unbounded outbox");
        }
        Ok(())
    }

    /// Connects, publishes and acknowledges until nothing is left, then checks that every
    /// config went out and every command ended.
    pub fn finish(&mut self) -> Result<(), Broken> {
        self.apply(&OutboxOp::Connect)?;
        for _ in 0..(self.capacity * 4 + 10) {
            self.apply(&OutboxOp::Transmit(10))?;
            self.apply(&OutboxOp::AckAll)?;
            self.apply(&OutboxOp::Wait(100_000))?;
        }
        if self.backend.outbox_len() != 0 {
            return fail("not everything was delivered or withdrawn");
        }
        if (self.configs_published.len() as u64) < self.configs_sent {
            return fail("a config never went out");
        }
        if let Some(id) = self.commands.iter().find(|id| !self.ended.contains(*id)) {
            return fail(format!("{id} never ended"));
        }
        Ok(())
    }
}

/// An operation of [`Ledger`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LedgerOp {
    /// Reading `n` (of six, so that copies come again) arrives.
    Reading(u8),
    /// A message the engine refuses arrives.
    Invalid,
    /// Any bytes on the device topic of kind `kind` (modulo six) arrive.
    Raw {
        /// Which kind's topic.
        kind: u8,
        /// The payload.
        payload: Vec<u8>,
    },
    /// The application confirms the held event picked (modulo their number).
    Confirm(usize),
    /// The connection drops and comes back.
    Reconnect,
}

/// The acknowledgements to the broker against a model.
pub struct Ledger {
    backend: Backend,
    window: usize,
    now: Instant,
    next: u64,
    /// This connection's messages in arrival order, with the reading they carry.
    arrived: Vec<(u64, Option<u8>)>,
    acked_out: Vec<u64>,
    /// The reading each held ack stands for (none for other events).
    held: Vec<(Ack, Option<u8>)>,
    confirmed: BTreeSet<u8>,
    delivered: BTreeMap<u8, u32>,
    /// Raw bytes arrived: a reading among them may share a second with one of the six
    /// without being a copy, so the count of deliveries per reading is not checked.
    raw: bool,
}

impl Ledger {
    const TOPIC: &'static str = "devices/org-1/dev-1/telemetry";

    /// A connected backend with a receive window of `window`.
    pub fn new(window: usize, now: Instant) -> Self {
        let mut backend = Backend::new(Settings {
            receive_window: window,
            rate_limit: None,
            ..Settings::default()
        });
        backend.handle_connected(now);
        Self {
            backend,
            window: window.max(1),
            now,
            next: 0,
            arrived: Vec::new(),
            acked_out: Vec::new(),
            held: Vec::new(),
            confirmed: BTreeSet::new(),
            delivered: BTreeMap::new(),
            raw: false,
        }
    }

    fn reading(n: u8) -> String {
        format!(
            r#"{{"device_id":"dev-1","timestamp":"2025-01-27T10:00:0{n}Z","organization_id":"org-1","sensors":{{"ph":7.2,"chlorine":2.5,"temperature":25.5}},"metadata":{{"firmware_version":"1"}}}}"#
        )
    }

    fn arrive(&mut self, topic: &str, payload: &[u8], reading: Option<u8>) {
        self.next += 1;
        self.backend
            .handle_message(self.now, Inbound(self.next), topic, payload);
        self.arrived.push((self.next, reading));
    }

    /// Applies `op` and checks the model.
    pub fn apply(&mut self, op: &LedgerOp) -> Result<(), Broken> {
        match op {
            // The transport reads only while there is room.
            LedgerOp::Reading(_) | LedgerOp::Invalid | LedgerOp::Raw { .. }
                if !self.backend.has_room() => {}
            LedgerOp::Reading(n) => {
                let n = n % 6;
                self.arrive(Self::TOPIC, Self::reading(n).as_bytes(), Some(n));
            }
            LedgerOp::Invalid => self.arrive(Self::TOPIC, b"[1, 2", None),
            LedgerOp::Raw { kind, payload } => {
                let kinds = [
                    "telemetry",
                    "commands",
                    "command_response",
                    "status",
                    "config",
                    "alert",
                ];
                let topic = format!("devices/org-1/dev-1/{}", kinds[usize::from(*kind) % 6]);
                self.raw = true;
                self.arrive(&topic, payload, None);
            }
            LedgerOp::Confirm(pick) if !self.held.is_empty() => {
                let (ack, n) = self.held.remove(pick % self.held.len());
                if !self.backend.ack(ack) {
                    return fail("a held ack was refused");
                }
                if let Some(n) = n {
                    self.confirmed.insert(n);
                }
            }
            LedgerOp::Confirm(_) => {}
            LedgerOp::Reconnect => {
                self.backend.handle_disconnected(self.now, 0);
                self.backend.handle_connected(self.now);
                self.arrived.clear();
                self.acked_out.clear();
            }
        }
        while let Some(d) = self.backend.poll_event() {
            let Some(ack) = d.ack else { continue };
            let reading = match &d.event {
                Event::Telemetry { device, telemetry } if device.device.as_str() == "dev-1" => {
                    let n = (telemetry.timestamp.unix_seconds() % 60) as u8;
                    *self.delivered.entry(n).or_default() += 1;
                    Some(n)
                }
                _ => None,
            };
            self.held.push((ack, reading));
        }
        while let Some(out) = self.backend.poll_ack() {
            self.acked_out.push(out.0);
            // In arrival order: exactly the next of this connection's messages.
            let expected = self.arrived.get(self.acked_out.len() - 1).map(|m| m.0);
            if expected != Some(out.0) {
                return fail(format!(
                    "acknowledged {} where {expected:?} was next",
                    out.0
                ));
            }
            // A reading goes out only once the application has it.
            if let Some((_, Some(n))) = self.arrived.iter().find(|m| m.0 == out.0) {
                if !self.confirmed.contains(n) {
                    return fail(format!("reading {n} acknowledged unconfirmed"));
                }
            }
        }
        if self.backend.unconfirmed() > self.window {
            return fail(format!(
                "{} unconfirmed, window {}",
                self.backend.unconfirmed(),
                self.window
            ));
        }
        Ok(())
    }

    /// Confirms everything held, then checks that everything of the connection went out, and
    /// that each reading reached the application once (the telemetry window holds all six).
    pub fn finish(&mut self) -> Result<(), Broken> {
        for (ack, n) in std::mem::take(&mut self.held) {
            self.backend.ack(ack);
            if let Some(n) = n {
                self.confirmed.insert(n);
            }
        }
        while let Some(out) = self.backend.poll_ack() {
            self.acked_out.push(out.0);
        }
        let arrived: Vec<u64> = self.arrived.iter().map(|m| m.0).collect();
        if self.acked_out != arrived {
            return fail(format!(
                "acknowledged {:?}, arrived {arrived:?}",
                self.acked_out
            ));
        }
        if let Some((n, count)) = self
            .delivered
            .iter()
            .find(|(_, c)| **c != 1)
            .filter(|_| !self.raw)
        {
            return fail(format!("reading {n} reached the application {count} times"));
        }
        Ok(())
    }
}
