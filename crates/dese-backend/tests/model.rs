//! Random sequences of commands, answers (on time, late, repeated, from nowhere) and waits
//! against the backend's command tracker, compared with a small model after every step.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use dese_backend::{Backend, Event, Inbound, Outcome, Settings};
use dese_protocol::{Action, Timestamp};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum Op {
    Send,
    /// The device answers the command picked by the index, successfully or not.
    Answer(prop::sample::Index, bool),
    /// An answer to an id nobody sent.
    Stray,
    Wait(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Send),
        3 => (any::<prop::sample::Index>(), any::<bool>()).prop_map(|(i, ok)| Op::Answer(i, ok)),
        1 => Just(Op::Stray),
        3 => (0u32..40_000).prop_map(Op::Wait),
    ]
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Pending,
    Answered,
    TimedOut,
    LateReported,
}

proptest! {
    // DESE-C1, DESE-C2, DESE-C3: every command ends exactly once; an answer before the end
    // completes or fails it; an answer after a timeout is reported late once; repeats are
    // duplicates; answers to unknown ids are reported as such.
    #[test]
    fn every_command_ends_exactly_once(ops in proptest::collection::vec(op(), 1..80), retries in 0u32..3) {
        let mut b = Backend::new(Settings { retries, rate_limit: None, ..Settings::default() });
        let t0 = Instant::now();
        let mut now = t0;
        let utc = Timestamp::from_unix_millis(1_737_972_000_000).unwrap();
        let mut sent: Vec<String> = Vec::new();
        let mut model: BTreeMap<String, State> = BTreeMap::new();
        let topic = "devices/org/dev/command_response";
        let answer = |id: &str, ok: bool| format!(r#"{{"command_id":"{id}","success":{ok},"timestamp":"2025-01-27T10:00:00Z"}}"#);

        for op in ops.into_iter().chain([Op::Wait(10_000_000)]) {
            match op {
                Op::Send => {
                    let id = b.send_command(now, utc, "org".parse().unwrap(), "dev".parse().unwrap(), Action::Reboot).unwrap();
                    prop_assert!(model.insert(id.to_string(), State::Pending).is_none(), "ids are fresh");
                    sent.push(id.to_string());
                }
                Op::Answer(pick, ok) if !sent.is_empty() => {
                    let id = pick.get(&sent).clone();
                    b.handle_message(now, Inbound(0), topic, answer(&id, ok).as_bytes());
                    let state = model[&id];
                    let events: Vec<Event> = std::iter::from_fn(|| b.poll_event()).map(|d| d.event).collect();
                    match state {
                        State::Pending => {
                            let completed = matches!(&events[..], [Event::Command { outcome: Outcome::Completed(_), .. }]);
                            let failed = matches!(&events[..], [Event::Command { outcome: Outcome::Failed(_), .. }]);
                            prop_assert_eq!((completed, failed), (ok, !ok), "{:?}", events);
                            model.insert(id, State::Answered);
                        }
                        State::TimedOut => {
                            prop_assert!(matches!(&events[..], [Event::LateResponse { .. }]), "{events:?}");
                            model.insert(id, State::LateReported);
                        }
                        State::Answered | State::LateReported => {
                            prop_assert!(matches!(&events[..], [Event::Duplicate { .. }]), "{events:?}");
                        }
                    }
                }
                Op::Stray => {
                    b.handle_message(now, Inbound(0), topic, answer("cmd-from-nowhere", true).as_bytes());
                    let events: Vec<Event> = std::iter::from_fn(|| b.poll_event()).map(|d| d.event).collect();
                    prop_assert!(matches!(&events[..], [Event::UnknownResponse { .. }]), "{events:?}");
                }
                Op::Wait(ms) => {
                    let until = now + Duration::from_millis(u64::from(ms));
                    while let Some(at) = b.poll_timeout().filter(|at| *at <= until) {
                        now = at;
                        b.handle_timeout(now);
                        while b.poll_transmit().is_some() {}
                        for event in std::iter::from_fn(|| b.poll_event()).map(|d| d.event) {
                            if let Event::Command { command_id, outcome: Outcome::TimedOut { attempts }, .. } = event {
                                prop_assert_eq!(attempts, retries + 1);
                                let state = model.insert(command_id.to_string(), State::TimedOut);
                                prop_assert_eq!(state, Some(State::Pending), "a command ends once");
                            }
                        }
                    }
                    now = until;
                }
                Op::Answer(..) => {}
            }
            let pending = model.values().filter(|s| **s == State::Pending).count();
            prop_assert_eq!(b.commands_pending(), pending);
        }
        prop_assert!(model.values().all(|s| *s != State::Pending), "everything ended");
    }
}

/// What the outbox model does.
#[derive(Debug, Clone)]
enum OutboxOp {
    Command,
    Config,
    Connect,
    Disconnect,
    /// Publishes up to this many.
    Transmit(u8),
    /// The broker acknowledges the in-flight message picked by the index.
    Acked(prop::sample::Index),
    /// The device answers the command picked by the index.
    Answer(prop::sample::Index),
    /// The broker acknowledges everything in flight.
    AckAll,
    Wait(u32),
}

fn outbox_op() -> impl Strategy<Value = OutboxOp> {
    prop_oneof![
        3 => Just(OutboxOp::Command),
        2 => Just(OutboxOp::Config),
        1 => Just(OutboxOp::Connect),
        1 => Just(OutboxOp::Disconnect),
        3 => (1u8..6).prop_map(OutboxOp::Transmit),
        3 => any::<prop::sample::Index>().prop_map(OutboxOp::Acked),
        1 => any::<prop::sample::Index>().prop_map(OutboxOp::Answer),
        1 => Just(OutboxOp::AckAll),
        2 => (0u32..20_000).prop_map(OutboxOp::Wait),
    ]
}

/// The command id a transmitted payload carries, if it is a command.
fn command_of(payload: &[u8]) -> Option<String> {
    let value: serde_json::Value = serde_json::from_slice(payload).ok()?;
    Some(value.get("command_id")?.as_str()?.to_string())
}

proptest! {
    // DESE-C1, DESE-D9: the backend's outbox on virtual time, against a model. It stays within
    // its capacity (plus one retry copy per pending command) and its in-flight window; on each
    // connection it hands messages out in order; an acknowledged message is never published
    // again; a command that timed out is never published afterwards; in the end every config
    // went out and every command ended.
    #[test]
    fn the_outbox_is_bounded_ordered_and_never_publishes_a_withdrawn_command(
        ops in proptest::collection::vec(outbox_op(), 1..120),
        capacity in 1usize..12,
        window in 1usize..4,
        retries in 0u32..3,
    ) {
        use dese_backend::MessageId;
        use std::collections::BTreeSet;

        let mut b = Backend::new(Settings {
            outbox_capacity: capacity,
            in_flight_window: window,
            retries,
            command_timeout: Duration::from_secs(10),
            rate_limit: None,
            ..Settings::default()
        });
        let t0 = Instant::now();
        let mut now = t0;
        let utc = Timestamp::from_unix_millis(1_737_972_000_000).unwrap();
        let org: dese_protocol::OrgId = "org".parse().unwrap();
        let dev: dese_protocol::DeviceId = "dev".parse().unwrap();
        let mut connected = false;
        let mut in_flight: Vec<(MessageId, Option<String>)> = Vec::new();
        let mut last_on_connection: Option<MessageId> = None;
        let mut acked: BTreeSet<MessageId> = BTreeSet::new();
        let mut commands: Vec<String> = Vec::new();
        let mut ended: BTreeSet<String> = BTreeSet::new();
        let mut timed_out: BTreeSet<String> = BTreeSet::new();
        let mut configs_sent = 0u64;
        let mut configs_published: BTreeSet<MessageId> = BTreeSet::new();
        let mut inbound = 0u64;

        let mut step = |op: OutboxOp, b: &mut Backend, now: &mut Instant| -> Result<(), TestCaseError> {
            match op {
                OutboxOp::Command => match b.send_command(*now, utc, org.clone(), dev.clone(), Action::Reboot) {
                    Ok(id) => commands.push(id.to_string()),
                    Err(dese_backend::SendError::OutboxFull { .. }) => {
                        prop_assert!(b.outbox_len() >= capacity, "refused below capacity");
                    }
                    Err(e) => prop_assert!(false, "{e}"),
                },
                OutboxOp::Config => match b.send_config(utc, org.clone(), dev.clone(), dese_protocol::DeviceConfig::default()) {
                    Ok(()) => configs_sent += 1,
                    Err(dese_backend::SendError::OutboxFull { .. }) => {
                        prop_assert!(b.outbox_len() >= capacity, "refused below capacity");
                    }
                    Err(e) => prop_assert!(false, "{e}"),
                },
                OutboxOp::Connect if !connected => {
                    connected = true;
                    last_on_connection = None;
                    b.handle_connected(*now);
                }
                OutboxOp::Disconnect if connected => {
                    connected = false;
                    in_flight.clear();
                    b.handle_disconnected(*now, 0);
                }
                OutboxOp::Connect | OutboxOp::Disconnect => {}
                OutboxOp::Transmit(n) => {
                    for _ in 0..n {
                        let Some(t) = b.poll_transmit() else { break };
                        prop_assert!(connected, "published while down");
                        prop_assert!(!acked.contains(&t.id), "acknowledged, published again");
                        prop_assert!(last_on_connection.is_none_or(|last| last < t.id), "out of order");
                        last_on_connection = Some(t.id);
                        let command = command_of(&t.payload);
                        match &command {
                            Some(id) => prop_assert!(!timed_out.contains(id), "a timed-out command published"),
                            None => { configs_published.insert(t.id); }
                        }
                        in_flight.push((t.id, command));
                        prop_assert!(in_flight.len() <= window, "beyond the in-flight window");
                    }
                }
                OutboxOp::Acked(pick) if !in_flight.is_empty() => {
                    let at = pick.index(in_flight.len());
                    let (id, _) = in_flight.remove(at);
                    acked.insert(id);
                    b.handle_acked(id);
                }
                OutboxOp::Answer(pick) if !commands.is_empty() => {
                    let id = pick.get(&commands).clone();
                    let answer = format!(r#"{{"command_id":"{id}","success":true,"timestamp":"2025-01-27T10:00:00Z"}}"#);
                    inbound += 1;
                    b.handle_message(*now, Inbound(inbound), "devices/org/dev/command_response", answer.as_bytes());
                }
                OutboxOp::AckAll => {
                    for (id, _) in in_flight.drain(..) {
                        acked.insert(id);
                        b.handle_acked(id);
                    }
                }
                OutboxOp::Acked(_) | OutboxOp::Answer(_) => {}
                OutboxOp::Wait(ms) => {
                    let until = *now + Duration::from_millis(u64::from(ms));
                    while let Some(at) = b.poll_timeout().filter(|at| *at <= until) {
                        *now = at;
                        b.handle_timeout(at);
                        // Anything due is looked at before anything else happens.
                        for d in std::iter::from_fn(|| b.poll_event()) {
                            record(&d.event, &mut ended, &mut timed_out, &mut in_flight);
                        }
                    }
                    *now = until;
                }
            }
            while let Some(d) = b.poll_event() {
                if let Some(ack) = d.ack {
                    b.ack(ack);
                }
                record(&d.event, &mut ended, &mut timed_out, &mut in_flight);
            }
            while b.poll_ack().is_some() {}
            prop_assert!(b.outbox_len() <= capacity + b.commands_pending(), "unbounded outbox");
            Ok(())
        };

        for op in ops {
            step(op, &mut b, &mut now)?;
        }
        // The end: connected, everything published and acknowledged, every command over.
        step(OutboxOp::Connect, &mut b, &mut now)?;
        for _ in 0..(capacity * 4 + 10) {
            step(OutboxOp::Transmit(10), &mut b, &mut now)?;
            step(OutboxOp::AckAll, &mut b, &mut now)?;
            step(OutboxOp::Wait(100_000), &mut b, &mut now)?;
        }
        prop_assert_eq!(b.outbox_len(), 0, "everything delivered or withdrawn");
        prop_assert!(configs_published.len() as u64 >= configs_sent, "every config went out");
        prop_assert!(commands.iter().all(|id| ended.contains(id)), "every command ended");
    }
}

/// Notes the end of a command, answered or timed out: the engine withdrew its copies, in
/// flight too (a late acknowledgement of one is ignored); and a retry, whose new copy replaces
/// the one in flight.
fn record(
    event: &Event,
    ended: &mut std::collections::BTreeSet<String>,
    timed_out: &mut std::collections::BTreeSet<String>,
    in_flight: &mut Vec<(dese_backend::MessageId, Option<String>)>,
) {
    // A retry replaces the copy in flight (a command has one copy in the outbox at most).
    if let Event::CommandRetried { command_id, .. } = event {
        let id = command_id.to_string();
        in_flight.retain(|(_, command)| command.as_ref() != Some(&id));
    }
    if let Event::Command {
        command_id,
        outcome,
        ..
    } = event
    {
        let id = command_id.to_string();
        in_flight.retain(|(_, command)| command.as_ref() != Some(&id));
        if matches!(outcome, Outcome::TimedOut { .. }) {
            timed_out.insert(id.clone());
        }
        ended.insert(id);
    }
}

/// What the acknowledgement model does.
#[derive(Debug, Clone)]
enum AckOp {
    /// A reading (of a few, so that copies come again) arrives.
    Reading(u8),
    /// A message the engine refuses arrives.
    Invalid,
    /// The application confirms the held event picked by the index.
    Confirm(prop::sample::Index),
    /// The connection drops and comes back.
    Reconnect,
}

fn ack_op() -> impl Strategy<Value = AckOp> {
    prop_oneof![
        4 => (0u8..6).prop_map(AckOp::Reading),
        1 => Just(AckOp::Invalid),
        3 => any::<prop::sample::Index>().prop_map(AckOp::Confirm),
        1 => Just(AckOp::Reconnect),
    ]
}

proptest! {
    // DESE-D9: the acknowledgements to the broker, against a model. On each connection they go
    // out in arrival order; a message goes out only once its own event, or for a copy its
    // original's, is confirmed (or it needed none); the receive window holds; and once the
    // application has confirmed everything, everything of the connection has gone out.
    #[test]
    fn acknowledgements_follow_arrival_order_and_confirmation(
        ops in proptest::collection::vec(ack_op(), 1..150),
        window in 1usize..8,
    ) {
        use std::collections::{BTreeMap, BTreeSet};
        let mut b = Backend::new(Settings { receive_window: window, rate_limit: None, ..Settings::default() });
        let t0 = Instant::now();
        b.handle_connected(t0);
        let topic = "devices/org-1/dev-1/telemetry";
        let reading = |n: u8| format!(
            r#"{{"device_id":"dev-1","timestamp":"2025-01-27T10:00:0{n}Z","organization_id":"org-1","sensors":{{"ph":7.2,"chlorine":2.5,"temperature":25.5}},"metadata":{{"firmware_version":"1"}}}}"#
        );
        let mut next = 0u64;
        // This connection's messages in arrival order, with the reading they carry.
        let mut arrived: Vec<(u64, Option<u8>)> = Vec::new();
        let mut acked_out: Vec<u64> = Vec::new();
        // The reading each held ack stands for, and the readings the application confirmed.
        let mut held: Vec<(dese_backend::Ack, u8)> = Vec::new();
        let mut confirmed: BTreeSet<u8> = BTreeSet::new();
        let mut delivered: BTreeMap<u8, u32> = BTreeMap::new();
        for op in ops {
            match op {
                AckOp::Reading(n) => {
                    if !b.has_room() { continue; }
                    next += 1;
                    b.handle_message(t0, Inbound(next), topic, reading(n).as_bytes());
                    arrived.push((next, Some(n)));
                }
                AckOp::Invalid => {
                    if !b.has_room() { continue; }
                    next += 1;
                    b.handle_message(t0, Inbound(next), topic, b"[1, 2");
                    arrived.push((next, None));
                }
                AckOp::Confirm(pick) if !held.is_empty() => {
                    let (ack, n) = held.remove(pick.index(held.len()));
                    prop_assert!(b.ack(ack));
                    confirmed.insert(n);
                }
                AckOp::Confirm(_) => {}
                AckOp::Reconnect => {
                    b.handle_disconnected(t0, 0);
                    b.handle_connected(t0);
                    arrived.clear();
                    acked_out.clear();
                }
            }
            while let Some(d) = b.poll_event() {
                if let (Event::Telemetry { telemetry, .. }, Some(ack)) = (&d.event, d.ack) {
                    let n = (telemetry.timestamp.unix_seconds() % 60) as u8;
                    *delivered.entry(n).or_default() += 1;
                    held.push((ack, n));
                }
            }
            while let Some(out) = b.poll_ack() {
                acked_out.push(out.0);
                // In arrival order: exactly the next of this connection's messages.
                prop_assert_eq!(arrived.get(acked_out.len() - 1).map(|m| m.0), Some(out.0));
                // Confirmed, or a refusal: a reading goes out only once the application has it.
                if let Some((_, Some(n))) = arrived.iter().find(|m| m.0 == out.0) {
                    prop_assert!(confirmed.contains(n), "reading {} acknowledged unconfirmed", n);
                }
            }
            prop_assert!(b.unconfirmed() <= window);
        }
        for (ack, n) in held.drain(..) {
            b.ack(ack);
            confirmed.insert(n);
        }
        while let Some(out) = b.poll_ack() {
            acked_out.push(out.0);
        }
        prop_assert_eq!(acked_out, arrived.iter().map(|m| m.0).collect::<Vec<_>>());
        // Each reading reached the application as new data once, copies aside: the telemetry
        // window remembers all six.
        prop_assert!(delivered.values().all(|count| *count == 1), "{:?}", delivered);
    }
}
