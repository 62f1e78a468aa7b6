//! What the engine acknowledges to the broker and when, what it publishes and when, on virtual
//! time: the acknowledgement ledger, backpressure, the outbox, withdrawn commands, the backoff.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

use std::time::{Duration, Instant};

use dese_backend::{
    Ack, Backend, Backoff, Delivered, DropReason, Event, Inbound, Outcome, RateLimit, SendError,
    Settings,
};
use dese_protocol::{Action, DeviceConfig, MessageKind, Reason, Timestamp};

fn reading(seq: u32) -> String {
    format!(
        r#"{{"device_id":"esp32-001","timestamp":"2025-01-27T10:00:{seq:02}Z","organization_id":"org-123","sensors":{{"ph":7.2,"chlorine":2.5,"temperature":25.5}},"metadata":{{"firmware_version":"1.0.0"}}}}"#
    )
}

const TELEMETRY: &str = "devices/org-123/esp32-001/telemetry";

fn utc() -> Timestamp {
    "2025-01-27T10:00:00Z".parse().unwrap()
}

fn drain(b: &mut Backend) -> Vec<Delivered> {
    std::iter::from_fn(|| b.poll_event()).collect()
}

fn pubacks(b: &mut Backend) -> Vec<u64> {
    std::iter::from_fn(|| b.poll_ack()).map(|i| i.0).collect()
}

/// The acks of the telemetry events among `events`.
fn telemetry_acks(events: &[Delivered]) -> Vec<Ack> {
    events
        .iter()
        .filter(|d| matches!(d.event, Event::Telemetry { .. }))
        .map(|d| d.ack.expect("telemetry carries an ack"))
        .collect()
}

// DESE-D9: nothing is acknowledged to the broker before the application confirmed it, and
// acknowledgements go out in arrival order whatever order the application confirms in; a
// refused message in between waits its turn.
#[test]
fn dese_d9_acknowledged_after_confirmation_in_arrival_order() {
    let mut b = Backend::new(Settings::default());
    let t0 = Instant::now();
    b.handle_message(t0, Inbound(1), TELEMETRY, reading(1).as_bytes());
    b.handle_message(t0, Inbound(2), TELEMETRY, b"{ not json");
    b.handle_message(t0, Inbound(3), TELEMETRY, reading(3).as_bytes());
    let events = drain(&mut b);
    let acks = telemetry_acks(&events);
    assert_eq!(acks.len(), 2);
    assert!(
        events
            .iter()
            .any(|d| matches!(d.event, Event::Dropped { .. }) && d.ack.is_none()),
        "a refusal needs no confirmation"
    );
    assert_eq!(pubacks(&mut b), Vec::<u64>::new(), "nothing confirmed yet");
    assert_eq!(b.unconfirmed(), 2);
    assert!(b.ack(acks[1]));
    assert_eq!(
        pubacks(&mut b),
        Vec::<u64>::new(),
        "the oldest is still held"
    );
    assert!(b.ack(acks[0]));
    assert_eq!(pubacks(&mut b), [1, 2, 3]);
    assert!(!b.ack(acks[0]), "an ack given back twice is refused");
    assert_eq!(b.unconfirmed(), 0);
}

// DESE-V2, DESE-S4: refusals of every kind are acknowledged by the engine at once and counted by
// reason: invalid, oversized, over the rate, another tenant's.
#[test]
fn refusals_are_acknowledged_by_the_engine_and_counted() {
    let mut b = Backend::new(Settings {
        rate_limit: Some(RateLimit {
            burst: 1,
            per_second: 0.001,
        }),
        ..Settings::default()
    });
    let t0 = Instant::now();
    let big = vec![b' '; 25 * 1024];
    b.handle_message(t0, Inbound(1), "devices/org-123/big/telemetry", &big);
    b.handle_message(
        t0,
        Inbound(2),
        "devices/org-999/esp32-001/telemetry",
        reading(1).as_bytes(),
    );
    b.handle_message(t0, Inbound(3), TELEMETRY, reading(2).as_bytes());
    b.handle_message(t0, Inbound(4), TELEMETRY, reading(3).as_bytes());
    let events = drain(&mut b);
    let acks = telemetry_acks(&events);
    assert_eq!(acks.len(), 1, "one reading accepted: {events:?}");
    assert_eq!(
        pubacks(&mut b),
        [1, 2],
        "the refusals before the held reading"
    );
    b.ack(acks[0]);
    assert_eq!(pubacks(&mut b), [3, 4]);
    let dropped = &b.counters().dropped;
    assert_eq!(dropped[&DropReason::Invalid(Reason::TooLarge)], 1);
    assert_eq!(dropped[&DropReason::Invalid(Reason::TenantMismatch)], 1);
    assert_eq!(dropped[&DropReason::RateLimited], 1);
}

// DESE-D9: a redelivery after a lost connection is recognised and acknowledged by the engine,
// but only once the application has confirmed the original: a duplicate never stands in for a
// reading that is not stored yet.
#[test]
fn dese_d9_a_duplicate_waits_for_its_original() {
    let mut b = Backend::new(Settings::default());
    let t0 = Instant::now();
    b.handle_connected(t0);
    b.handle_message(t0, Inbound(1), TELEMETRY, reading(1).as_bytes());
    let original = telemetry_acks(&drain(&mut b))[0];
    // The connection drops before the commit: what it owed the broker is void.
    b.handle_disconnected(t0, 0);
    assert_eq!(pubacks(&mut b), Vec::<u64>::new());
    b.handle_connected(t0);
    b.handle_message(t0, Inbound(10), TELEMETRY, reading(1).as_bytes());
    let events = drain(&mut b);
    assert!(
        matches!(
            &events[..],
            [Delivered {
                event: Event::Duplicate {
                    kind: MessageKind::Telemetry,
                    ..
                },
                ack: None
            }]
        ),
        "{events:?}"
    );
    assert_eq!(
        pubacks(&mut b),
        Vec::<u64>::new(),
        "the original is not stored yet"
    );
    b.ack(original);
    assert_eq!(pubacks(&mut b), [10]);
    // Once stored, a further copy is acknowledged at once.
    b.handle_message(t0, Inbound(11), TELEMETRY, reading(1).as_bytes());
    assert_eq!(pubacks(&mut b), [11]);
}

// Distinct readings that share a timestamp are both kept; an exact copy is a duplicate.
#[test]
fn distinct_readings_sharing_a_timestamp_are_both_kept() {
    let mut b = Backend::new(Settings::default());
    let t0 = Instant::now();
    let other = reading(1).replace("\"ph\":7.2", "\"ph\":7.3");
    b.handle_message(t0, Inbound(1), TELEMETRY, reading(1).as_bytes());
    b.handle_message(t0, Inbound(2), TELEMETRY, other.as_bytes());
    b.handle_message(t0, Inbound(3), TELEMETRY, reading(1).as_bytes());
    let events = drain(&mut b);
    assert_eq!(telemetry_acks(&events).len(), 2);
    assert_eq!(b.counters().duplicates[&MessageKind::Telemetry], 1);
}

// The application holding a window of unconfirmed events stops the reading: the broker keeps
// the rest.
#[test]
fn backpressure_at_the_receive_window() {
    let mut b = Backend::new(Settings {
        receive_window: 3,
        rate_limit: None,
        ..Settings::default()
    });
    let t0 = Instant::now();
    for seq in 0..3 {
        assert!(b.has_room());
        b.handle_message(
            t0,
            Inbound(u64::from(seq)),
            TELEMETRY,
            reading(seq).as_bytes(),
        );
    }
    assert!(!b.has_room(), "three held: stop reading");
    let acks = telemetry_acks(&drain(&mut b));
    b.ack(acks[2]);
    assert_eq!(
        pubacks(&mut b),
        Vec::<u64>::new(),
        "in order: the oldest still held"
    );
    assert!(
        !b.has_room(),
        "three still owed to the broker: the ledger is bounded too"
    );
    b.ack(acks[0]);
    assert_eq!(pubacks(&mut b), [0]);
    assert!(b.has_room(), "room again");
    b.ack(acks[1]);
    assert_eq!(pubacks(&mut b), [1, 2]);
}

// A status's presence change comes before the status, and the status carries the ack: one ack
// per message, on its last event.
#[test]
fn a_message_with_two_events_has_one_ack_on_the_last() {
    let mut b = Backend::new(Settings::default());
    b.handle_message(
        Instant::now(),
        Inbound(1),
        "devices/org-123/esp32-001/status",
        br#"{"status":"online","firmware_version":"1.0.0","timestamp":"2025-01-27T10:00:00Z"}"#,
    );
    let events = drain(&mut b);
    assert!(matches!(
        &events[..],
        [
            Delivered {
                event: Event::PresenceChanged { .. },
                ack: None
            },
            Delivered {
                event: Event::Status { .. },
                ack: Some(_)
            }
        ]
    ));
}

fn send(b: &mut Backend, now: Instant) -> Result<String, SendError> {
    b.send_command(
        now,
        utc(),
        "org-123".parse().unwrap(),
        "esp32-001".parse().unwrap(),
        Action::Reboot,
    )
    .map(|id| id.to_string())
}

// Nothing is published while the link is down; after the connection what waited goes out in
// order, at most the in-flight window at a time, and what was in flight when the link dropped
// goes out again.
#[test]
fn the_outbox_waits_for_the_link_and_replays_in_order() {
    let mut b = Backend::new(Settings {
        in_flight_window: 2,
        ..Settings::default()
    });
    let t0 = Instant::now();
    let ids: Vec<String> = (0..3).map(|_| send(&mut b, t0).unwrap()).collect();
    assert!(b.poll_transmit().is_none(), "not connected");
    b.handle_connected(t0);
    let first: Vec<_> = std::iter::from_fn(|| b.poll_transmit()).collect();
    assert_eq!(first.len(), 2, "the in-flight window");
    assert!(String::from_utf8_lossy(&first[0].payload).contains(&ids[0]));
    b.handle_acked(first[0].id);
    let third = b.poll_transmit().unwrap();
    assert!(String::from_utf8_lossy(&third.payload).contains(&ids[2]));
    // The link drops with the second and third unacknowledged: both go out again, in order.
    b.handle_disconnected(t0, 0);
    assert!(b.poll_transmit().is_none());
    b.handle_connected(t0);
    let again: Vec<_> = std::iter::from_fn(|| b.poll_transmit()).collect();
    assert_eq!(
        again.iter().map(|t| t.id).collect::<Vec<_>>(),
        [first[1].id, third.id]
    );
    assert_eq!(b.outbox_len(), 2);
}

// DESE-C1: a command that times out while the link is down is withdrawn: it is never published
// after the application was told it timed out.
#[test]
fn dese_c1_a_timed_out_command_is_never_published() {
    let mut b = Backend::new(Settings::default());
    let t0 = Instant::now();
    send(&mut b, t0).unwrap();
    b.handle_timeout(t0 + Duration::from_secs(30));
    assert!(drain(&mut b).iter().any(|d| matches!(
        d.event,
        Event::Command {
            outcome: Outcome::TimedOut { attempts: 1 },
            ..
        }
    )));
    b.handle_connected(t0 + Duration::from_secs(31));
    assert!(b.poll_transmit().is_none(), "withdrawn");
    assert_eq!(b.counters().commands_withdrawn, 1);
    assert_eq!(b.outbox_len(), 0);
}

// The outbox is bounded: beyond its capacity a send is refused, typed, and nothing is queued.
#[test]
fn a_full_outbox_refuses_sends() {
    let mut b = Backend::new(Settings {
        outbox_capacity: 2,
        ..Settings::default()
    });
    let t0 = Instant::now();
    send(&mut b, t0).unwrap();
    b.send_config(
        utc(),
        "org-123".parse().unwrap(),
        "esp32-001".parse().unwrap(),
        DeviceConfig::default(),
    )
    .unwrap();
    let refused = send(&mut b, t0);
    assert!(
        matches!(refused, Err(SendError::OutboxFull { capacity: 2 })),
        "{refused:?}"
    );
    assert_eq!(
        b.commands_pending(),
        1,
        "the refused command is not tracked"
    );
    assert_eq!(b.outbox_len(), 2);
}

// A config to each of 10,000 devices goes out through the in-flight window, each once, as the
// broker acknowledges them: no reconnection needed.
#[test]
fn a_bulk_send_flows_through_the_window() {
    let mut b = Backend::new(Settings::default());
    let t0 = Instant::now();
    b.handle_connected(t0);
    for n in 0..10_000 {
        b.send_config(
            utc(),
            "org-123".parse().unwrap(),
            format!("dev-{n}").parse().unwrap(),
            DeviceConfig::default(),
        )
        .unwrap();
    }
    let mut published = std::collections::BTreeSet::new();
    loop {
        // As much as the window lets out, then the broker acknowledges it all.
        let out: Vec<_> = std::iter::from_fn(|| b.poll_transmit()).collect();
        if out.is_empty() {
            break;
        }
        assert!(out.len() <= 64, "the in-flight window: {}", out.len());
        for t in out {
            assert!(published.insert(t.topic.clone()), "published once");
            b.handle_acked(t.id);
        }
    }
    assert_eq!(published.len(), 10_000);
    assert_eq!(b.outbox_len(), 0);
}

// DESE-D6: the backend reconnects by the devices' rule: exponential with jitter, the attempt
// count reset only after a connection stayed up.
#[test]
fn dese_d6_reconnect_backoff_resets_only_after_a_stable_connection() {
    let backoff = Backoff {
        base: Duration::from_secs(1),
        cap: Duration::from_secs(60),
        stable_after: Duration::from_secs(30),
    };
    let mut b = Backend::new(Settings {
        backoff,
        ..Settings::default()
    });
    let t0 = Instant::now();
    let connect_after = |b: &mut Backend, lost: Instant| {
        let at = b.poll_timeout().expect("a reconnection is scheduled");
        b.handle_timeout(at);
        assert!(
            drain(b).iter().any(|d| d.event == Event::Connect),
            "asks to connect"
        );
        at - lost
    };
    // The longest draws: the waits are the ceilings.
    b.handle_connected(t0);
    b.handle_disconnected(t0 + Duration::from_secs(5), u32::MAX);
    assert_eq!(
        connect_after(&mut b, t0 + Duration::from_secs(5)),
        Duration::from_secs(2)
    );
    let t1 = t0 + Duration::from_secs(10);
    b.handle_connected(t1);
    b.handle_disconnected(t1 + Duration::from_secs(5), u32::MAX);
    assert_eq!(
        connect_after(&mut b, t1 + Duration::from_secs(5)),
        Duration::from_secs(4),
        "up for 5 s only: the count goes on"
    );
    let t2 = t1 + Duration::from_secs(20);
    b.handle_connected(t2);
    b.handle_disconnected(t2 + Duration::from_secs(31), u32::MAX);
    assert_eq!(
        connect_after(&mut b, t2 + Duration::from_secs(31)),
        Duration::from_secs(1),
        "up for 31 s: the count starts over"
    );
    assert_eq!(b.counters().connections, 3);
    assert_eq!(b.counters().disconnects, 3);
}

// DESE-S4, DESE-D9: after an outage of the backend, the broker releases each device's queued
// messages at once. Half an hour of a device's traffic at the protocol's rates (a reading every
// 30 s, a status every 60 s: 90 messages) passes the default rate limit whole; a flood does not.
#[test]
fn a_backlog_after_an_outage_passes_the_default_rate_limit() {
    let mut b = Backend::new(Settings::default());
    let t0 = Instant::now();
    for n in 0..90u32 {
        let (topic, payload) = if n % 3 == 2 {
            (
                "devices/org-123/esp32-001/status".to_string(),
                format!(
                    r#"{{"status":"online","firmware_version":"1.0.0","timestamp":"2025-01-27T10:{:02}:00Z"}}"#,
                    n / 3
                ),
            )
        } else {
            (
                TELEMETRY.to_string(),
                reading(n % 60).replace("10:00:", &format!("10:{:02}:", n / 60)),
            )
        };
        b.handle_message(t0, Inbound(u64::from(n)), &topic, payload.as_bytes());
    }
    assert!(
        !b.counters().dropped.contains_key(&DropReason::RateLimited),
        "{:?}",
        b.counters()
    );
    for n in 0..2_000u32 {
        b.handle_message(t0, Inbound(1_000 + u64::from(n)), TELEMETRY, b"{}");
    }
    assert!(
        b.counters().dropped[&DropReason::RateLimited] >= 1_000,
        "a flood is cut off"
    );
}
