//! The backend engine's behaviour, scenario by scenario, on virtual time.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

use std::time::{Duration, Instant};

use dese_backend::{
    Backend, DeviceKey, DropError, DropReason, Event, Inbound, Outcome, RateLimit, Settings,
};
use dese_protocol::{
    Action, DecodeError, DeviceId, DeviceState, MessageKind, OrgId, Problem, Reason, ShareGroup,
    Timestamp,
};

const TELEMETRY: &str = r#"{"device_id":"esp32-001","timestamp":"2025-01-27T10:00:00Z","organization_id":"org-123","sensors":{"ph":7.2,"chlorine":2.5,"temperature":25.5},"metadata":{"firmware_version":"1.0.0"}}"#;

/// The transport's name for a received message: these tests do not look at acknowledgements.
const IN: Inbound = Inbound(0);

fn topic(kind: &str) -> String {
    format!("devices/org-123/esp32-001/{kind}")
}

fn events(backend: &mut Backend) -> Vec<Event> {
    std::iter::from_fn(|| backend.poll_event())
        .map(|d| d.event)
        .collect()
}

fn utc() -> Timestamp {
    "2025-01-27T10:00:00Z".parse().unwrap()
}

fn status(state: &str, at: &str) -> String {
    format!(r#"{{"status":"{state}","firmware_version":"1.0.0","timestamp":"{at}"}}"#)
}

fn answer(id: &str, success: bool) -> String {
    let error = if success {
        String::new()
    } else {
        r#","error":"pump jammed""#.to_string()
    };
    format!(
        r#"{{"command_id":"{id}","success":{success}{error},"timestamp":"2025-01-27T10:00:01Z"}}"#
    )
}

// DESE-T5: the payload must name the topic's organization and device.
#[test]
fn dese_t5_tenant_mismatch_is_dropped() {
    let mut b = Backend::new(Settings::default());
    let t0 = Instant::now();
    b.handle_message(
        t0,
        IN,
        "devices/org-999/esp32-001/telemetry",
        TELEMETRY.as_bytes(),
    );
    b.handle_message(
        t0,
        IN,
        "devices/org-123/esp32-002/telemetry",
        TELEMETRY.as_bytes(),
    );
    let drops: Vec<_> = events(&mut b)
        .into_iter()
        .filter_map(|e| match e {
            Event::Dropped { reason, .. } => Some(reason),
            _ => None,
        })
        .collect();
    assert_eq!(drops, [DropReason::Invalid(Reason::TenantMismatch); 2]);
    assert_eq!(
        b.counters().dropped[&DropReason::Invalid(Reason::TenantMismatch)],
        2
    );
}

// An allow-list keeps other organizations out, before their payload is parsed.
#[test]
fn organizations_outside_the_allow_list_are_dropped() {
    let mut b = Backend::new(Settings {
        allowed_orgs: Some(["org-123".parse::<OrgId>().unwrap()].into()),
        ..Settings::default()
    });
    b.handle_message(
        Instant::now(),
        IN,
        "devices/org-456/esp32-001/telemetry",
        b"not even json",
    );
    assert_eq!(b.counters().dropped[&DropReason::OrgNotAllowed], 1);
    let subs: Vec<String> = b
        .subscriptions(None)
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        subs,
        [
            "devices/org-123/+/telemetry",
            "devices/org-123/+/command_response",
            "devices/org-123/+/status",
            "devices/org-123/+/alert"
        ]
    );
}

// DESE-V2: invalid messages are dropped and counted by reason; nothing else happens.
#[test]
fn dese_v2_invalid_messages_counted_by_reason() {
    let mut b = Backend::new(Settings::default());
    let t0 = Instant::now();
    b.handle_message(t0, IN, &topic("telemetry"), b"{");
    b.handle_message(t0, IN, &topic("telemetry"), br#"{"device_id":"esp32-001"}"#);
    b.handle_message(
        t0,
        IN,
        &topic("alert"),
        br#"{"severity":"fatal","message":"x","timestamp":"2025-01-27T10:00:00Z"}"#,
    );
    b.handle_message(t0, IN, "devices/org-123/esp32-001/commands", b"{}");
    b.handle_message(t0, IN, "devices/#/x/status", b"{}");
    let c = b.counters();
    assert_eq!(c.dropped[&DropReason::Invalid(Reason::Syntax)], 1);
    assert_eq!(c.dropped[&DropReason::Invalid(Reason::MissingField)], 1);
    assert_eq!(c.dropped[&DropReason::Invalid(Reason::NotOneOf)], 1);
    assert_eq!(c.dropped[&DropReason::WrongDirection], 1);
    assert_eq!(c.dropped[&DropReason::Invalid(Reason::Topic)], 1);
    assert!(c.accepted.is_empty());
}

// Telemetry delivered twice (QoS 1) is reported as a duplicate, not as new data.
#[test]
fn duplicate_telemetry_is_reported_not_stored() {
    let mut b = Backend::new(Settings::default());
    let t0 = Instant::now();
    for _ in 0..3 {
        b.handle_message(t0, IN, &topic("telemetry"), TELEMETRY.as_bytes());
    }
    let e = events(&mut b);
    assert_eq!(
        e.iter()
            .filter(|e| matches!(e, Event::Telemetry { .. }))
            .count(),
        1
    );
    assert_eq!(
        e.iter()
            .filter(|e| matches!(
                e,
                Event::Duplicate {
                    kind: MessageKind::Telemetry,
                    ..
                }
            ))
            .count(),
        2
    );
    assert_eq!(b.counters().duplicates[&MessageKind::Telemetry], 2);
}

// DESE-D2, DESE-D5: presence follows the retained status and the last will, in the order they
// arrive: a copy of an earlier status delivered again does not undo the newer ones, a device whose
// clock went back (SNTP failed after a reboot: the firmware's build time) still comes online, and
// an empty retained status clears the device.
#[test]
fn presence_from_status_and_last_will() {
    let mut b = Backend::new(Settings::default());
    let t0 = Instant::now();
    let online = status("online", "2025-01-27T10:00:00Z");
    b.handle_message(t0, IN, &topic("status"), online.as_bytes());
    b.handle_message(
        t0,
        IN,
        &topic("status"),
        status("offline", "2025-01-27T11:00:00Z").as_bytes(),
    );
    // QoS 1 delivers the first status again.
    b.handle_message(t0, IN, &topic("status"), online.as_bytes());
    let org: OrgId = "org-123".parse().unwrap();
    let device = "esp32-001".parse().unwrap();
    assert_eq!(
        b.presence(&org, &device).unwrap().state,
        DeviceState::Offline
    );
    let seen = events(&mut b);
    let changes: Vec<_> = seen
        .iter()
        .filter_map(|e| match e {
            Event::PresenceChanged { from, to, .. } => Some((*from, *to)),
            _ => None,
        })
        .collect();
    assert_eq!(
        changes,
        [
            (None, DeviceState::Online),
            (Some(DeviceState::Online), DeviceState::Offline)
        ]
    );
    assert!(seen.iter().any(|e| matches!(
        e,
        Event::Duplicate {
            kind: MessageKind::Status,
            ..
        }
    )));
    // Rebooted without SNTP: its clock says June 2024, before the offline of 2025.
    b.handle_message(
        t0,
        IN,
        &topic("status"),
        status("online", "2024-06-01T00:00:00Z").as_bytes(),
    );
    assert_eq!(
        b.presence(&org, &device).unwrap().state,
        DeviceState::Online
    );
    // Back online at 12:00 (connected at 11:59:59, the will stamped then), then the will.
    b.handle_message(
        t0,
        IN,
        &topic("status"),
        status("online", "2025-01-27T12:00:00Z").as_bytes(),
    );
    b.handle_message(
        t0,
        IN,
        &topic("status"),
        status("offline", "2025-01-27T11:59:59Z").as_bytes(),
    );
    assert_eq!(
        b.presence(&org, &device).unwrap().state,
        DeviceState::Offline
    );
    let _ = events(&mut b);
    b.handle_message(t0, IN, &topic("status"), b"");
    assert!(b.presence(&org, &device).is_none());
    assert!(matches!(
        events(&mut b)[..],
        [Event::PresenceCleared { .. }]
    ));
}

fn send(b: &mut Backend, now: Instant) -> String {
    if !b.is_connected() {
        b.handle_connected(now);
    }
    let id = b
        .send_command(
            now,
            utc(),
            "org-123".parse().unwrap(),
            "esp32-001".parse().unwrap(),
            Action::Reboot,
        )
        .unwrap();
    let out = b.poll_transmit().unwrap();
    assert_eq!(out.topic, topic("commands"));
    id.to_string()
}

fn outcomes(b: &mut Backend) -> Vec<Outcome> {
    events(b)
        .into_iter()
        .filter_map(|e| match e {
            Event::Command { outcome, .. } => Some(outcome),
            _ => None,
        })
        .collect()
}

// A command resolves to completed or failed with the device's response.
#[test]
fn commands_complete_or_fail() {
    let mut b = Backend::new(Settings::default());
    let t0 = Instant::now();
    let ok = send(&mut b, t0);
    let bad = send(&mut b, t0);
    assert_ne!(ok, bad, "fresh ids");
    b.handle_message(
        t0,
        IN,
        &topic("command_response"),
        answer(&ok, true).as_bytes(),
    );
    b.handle_message(
        t0,
        IN,
        &topic("command_response"),
        answer(&bad, false).as_bytes(),
    );
    let o = outcomes(&mut b);
    assert!(matches!(&o[0], Outcome::Completed(r) if r.command_id.as_str() == ok));
    assert!(matches!(&o[1], Outcome::Failed(r) if r.error.as_deref() == Some("pump jammed")));
    assert_eq!(b.commands_pending(), 0);
    // The same response again is a duplicate.
    b.handle_message(
        t0,
        IN,
        &topic("command_response"),
        answer(&ok, true).as_bytes(),
    );
    assert!(matches!(
        events(&mut b)[..],
        [Event::Duplicate {
            kind: MessageKind::CommandResponse,
            ..
        }]
    ));
}

// DESE-C1, DESE-C2: no response within 30 s is a timeout; a response 31 s late is reported
// late, not lost.
#[test]
fn dese_c1_c2_response_31_s_late_is_reported_late() {
    let mut b = Backend::new(Settings::default());
    let t0 = Instant::now();
    let id = send(&mut b, t0);
    assert_eq!(b.poll_timeout(), Some(t0 + Duration::from_secs(30)));
    b.handle_timeout(t0 + Duration::from_secs(29));
    assert!(outcomes(&mut b).is_empty());
    b.handle_timeout(t0 + Duration::from_secs(30));
    assert_eq!(outcomes(&mut b), [Outcome::TimedOut { attempts: 1 }]);
    b.handle_message(
        t0 + Duration::from_secs(31),
        IN,
        &topic("command_response"),
        answer(&id, true).as_bytes(),
    );
    let late = events(&mut b);
    assert!(
        matches!(&late[..], [Event::LateResponse { response, .. }] if response.command_id.as_str() == id),
        "{late:?}"
    );
    assert_eq!(b.counters().late_responses, 1);
}

// DESE-C3: retries keep the command_id, wait longer each time, and a response during the
// wait completes the command.
#[test]
fn dese_c3_retries_keep_the_command_id() {
    let mut b = Backend::new(Settings {
        retries: 2,
        ..Settings::default()
    });
    let t0 = Instant::now();
    b.handle_connected(t0);
    let id = b
        .send_command(
            t0,
            utc(),
            "org-123".parse().unwrap(),
            "esp32-001".parse().unwrap(),
            Action::Reboot,
        )
        .unwrap();
    let first = b.poll_transmit().unwrap();
    let mut now = t0;
    let mut resent = Vec::new();
    while let Some(at) = b.poll_timeout() {
        now = at;
        b.handle_timeout(now);
        resent.extend(std::iter::from_fn(|| b.poll_transmit()));
        if b.commands_pending() == 0 {
            break;
        }
    }
    assert_eq!(resent.len(), 2);
    assert!(
        resent.iter().all(|r| r.payload == first.payload),
        "the same command, the same id"
    );
    // 30 s, +1 s, 30 s, +2 s, 30 s.
    assert_eq!(now - t0, Duration::from_secs(93));
    let e = events(&mut b);
    let retried: Vec<u32> = e
        .iter()
        .filter_map(|e| match e {
            Event::CommandRetried { attempt, .. } => Some(*attempt),
            _ => None,
        })
        .collect();
    assert_eq!(retried, [2, 3]);
    assert!(e.iter().any(|e| matches!(
        e,
        Event::Command {
            outcome: Outcome::TimedOut { attempts: 3 },
            ..
        }
    )));

    // A second command answered while waiting for its retry completes.
    let id2 = send(&mut b, now);
    b.handle_timeout(now + Duration::from_secs(30)); // times out, retry scheduled at +1 s
    b.handle_message(
        now + Duration::from_millis(30_500),
        IN,
        &topic("command_response"),
        answer(&id2, true).as_bytes(),
    );
    assert!(matches!(outcomes(&mut b)[..], [Outcome::Completed(_)]));
    b.handle_timeout(now + Duration::from_secs(60));
    assert!(b.poll_transmit().is_none(), "no retry after the answer");
    let _ = id;
}

// A response to an id this backend never sent is reported, and a response from the wrong
// device is refused.
#[test]
fn unknown_and_misaddressed_responses() {
    let mut b = Backend::new(Settings::default());
    let t0 = Instant::now();
    b.handle_message(
        t0,
        IN,
        &topic("command_response"),
        answer("cmd-elsewhere", true).as_bytes(),
    );
    assert!(matches!(
        events(&mut b)[..],
        [Event::UnknownResponse { .. }]
    ));
    let id = send(&mut b, t0);
    b.handle_message(
        t0,
        IN,
        "devices/org-123/esp32-002/command_response",
        answer(&id, true).as_bytes(),
    );
    assert!(matches!(
        events(&mut b)[..],
        [Event::Dropped {
            reason: DropReason::Invalid(Reason::TenantMismatch),
            ..
        }]
    ));
    assert_eq!(
        b.commands_pending(),
        1,
        "still waiting for the right device"
    );
}

// DESE-S4: a flooding device is cut off at its rate, named in the event, and recovers.
#[test]
fn dese_s4_rate_limit_per_device() {
    let mut b = Backend::new(Settings {
        rate_limit: Some(RateLimit {
            burst: 5,
            per_second: 1.0,
        }),
        ..Settings::default()
    });
    let t0 = Instant::now();
    for i in 0..8 {
        let payload = TELEMETRY.replace("10:00:00Z", &format!("10:00:0{i}Z"));
        b.handle_message(t0, IN, &topic("telemetry"), payload.as_bytes());
    }
    // Another device is not affected.
    b.handle_message(
        t0,
        IN,
        "devices/org-123/esp32-002/status",
        status("online", "2025-01-27T10:00:00Z").as_bytes(),
    );
    let e = events(&mut b);
    assert_eq!(
        e.iter()
            .filter(|e| matches!(e, Event::Telemetry { .. }))
            .count(),
        5
    );
    let limited: Vec<&DropError> = e
        .iter()
        .filter_map(|e| match e {
            Event::Dropped {
                reason: DropReason::RateLimited,
                error,
                ..
            } => Some(error),
            _ => None,
        })
        .collect();
    assert_eq!(limited.len(), 3);
    let flooder = DeviceKey {
        org: OrgId::parse("org-123").unwrap(),
        device: DeviceId::parse("esp32-001").unwrap(),
    };
    assert_eq!(limited[0], &DropError::RateLimited(flooder));
    assert_eq!(
        limited[0].to_string(),
        "device org-123/esp32-001 is over its rate"
    );
    assert!(e.iter().any(|e| matches!(e, Event::Status { .. })));
    let later = TELEMETRY.replace("10:00:00Z", "10:00:09Z");
    b.handle_message(
        t0 + Duration::from_secs(2),
        IN,
        &topic("telemetry"),
        later.as_bytes(),
    );
    assert!(matches!(events(&mut b)[..], [Event::Telemetry { .. }]));
}

// A bad instance name is an error, never a shared fallback id.
#[test]
fn invalid_instance_name_is_an_error() {
    let mut b = Backend::new(Settings {
        instance: "a/b".into(),
        ..Settings::default()
    });
    let sent = b.send_command(
        Instant::now(),
        utc(),
        "org-123".parse().unwrap(),
        "esp32-001".parse().unwrap(),
        Action::Reboot,
    );
    assert!(matches!(sent, Err(dese_backend::SendError::Id(_))));
    assert_eq!(b.commands_pending(), 0);
}

// Presence records when the backend last heard from a device, whatever the message.
#[test]
fn presence_tracks_the_last_message() {
    let mut b = Backend::new(Settings::default());
    let t0 = Instant::now();
    b.handle_message(
        t0,
        IN,
        &topic("status"),
        status("online", "2025-01-27T10:00:00Z").as_bytes(),
    );
    let later = t0 + Duration::from_secs(45);
    b.handle_message(later, IN, &topic("telemetry"), TELEMETRY.as_bytes());
    let p = b
        .presence(&"org-123".parse().unwrap(), &"esp32-001".parse().unwrap())
        .unwrap();
    assert_eq!(p.last_seen, later);
    assert_eq!(p.since, utc());
    assert_eq!(p.firmware_version, "1.0.0");
}

// Answers to the backend's own commands are not rate limited: a burst of commands to one device
// must not get its own answers dropped (found by the round-trip benchmark).
#[test]
fn answers_to_pending_commands_pass_the_rate_limit() {
    let mut b = Backend::new(Settings {
        rate_limit: Some(RateLimit {
            burst: 2,
            per_second: 0.1,
        }),
        ..Settings::default()
    });
    let t0 = Instant::now();
    let ids: Vec<String> = (0..5).map(|_| send(&mut b, t0)).collect();
    for id in &ids {
        b.handle_message(
            t0,
            IN,
            &topic("command_response"),
            answer(id, true).as_bytes(),
        );
    }
    assert_eq!(outcomes(&mut b).len(), 5);
    assert!(!b.counters().dropped.contains_key(&DropReason::RateLimited));
    // Unsolicited answers still count against the limit.
    for _ in 0..3 {
        b.handle_message(
            t0,
            IN,
            &topic("command_response"),
            answer("cmd-nobody-sent", true).as_bytes(),
        );
    }
    assert_eq!(b.counters().dropped[&DropReason::RateLimited], 1);
}

// In a group, telemetry and alerts are split between the instances; statuses and command
// responses reach every instance (presence whole, each its own answers).
#[test]
fn a_group_shares_only_what_splits_safely() {
    let b = Backend::new(Settings::default());
    let group = ShareGroup::parse("backends").unwrap();
    let subs: Vec<String> = b
        .subscriptions(Some(&group))
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        subs,
        [
            "$share/backends/devices/+/+/telemetry",
            "devices/+/+/command_response",
            "devices/+/+/status",
            "$share/backends/devices/+/+/alert",
        ]
    );
}

// An answer to another instance's command is that instance's: reported as such, counted apart,
// acknowledged by the engine, never called unknown.
#[test]
fn answers_to_another_instances_commands_are_counted_apart() {
    let mut b = Backend::new(Settings {
        instance: "i1".into(),
        ..Settings::default()
    });
    let t0 = Instant::now();
    b.handle_message(
        t0,
        Inbound(1),
        &topic("command_response"),
        answer("cmd-i2-1737972000000-7", true).as_bytes(),
    );
    let e: Vec<_> = std::iter::from_fn(|| b.poll_event()).collect();
    assert!(
        matches!(&e[..], [dese_backend::Delivered { event: Event::ResponseToAnotherInstance { instance, .. }, ack: None }] if instance == "i2"),
        "{e:?}"
    );
    assert_eq!(b.poll_ack(), Some(Inbound(1)), "acknowledged by the engine");
    // Its own forgotten command, and an id of no instance's form, are unknown.
    for id in ["cmd-i1-1737972000000-9", "cmd-from-nowhere"] {
        b.handle_message(
            t0,
            IN,
            &topic("command_response"),
            answer(id, true).as_bytes(),
        );
    }
    let counters = b.counters();
    assert_eq!(
        (
            counters.responses_to_other_instances,
            counters.unknown_responses
        ),
        (1, 2)
    );
}

// What quiet devices no longer need is dropped on a timer that poll_timeout schedules, with no
// command pending: after `forget_after` of silence, a device that only sent telemetry is
// forgotten; one with a presence keeps it. Silence counts from the connection: nothing is
// forgotten while the link is down.
#[test]
fn quiet_devices_are_pruned_on_a_timer() {
    let settings = Settings {
        forget_after: Duration::from_secs(120),
        ..Settings::default()
    };
    let mut b = Backend::new(settings);
    let t0 = Instant::now();
    b.handle_message(t0, IN, &topic("telemetry"), TELEMETRY.as_bytes());
    let other = TELEMETRY.replace("esp32-001", "esp32-002");
    b.handle_message(
        t0,
        IN,
        "devices/org-123/esp32-002/telemetry",
        other.as_bytes(),
    );
    b.handle_message(
        t0,
        IN,
        "devices/org-123/esp32-002/status",
        status("online", "2025-01-27T10:00:00Z").as_bytes(),
    );
    assert_eq!(b.tracked_devices(), 2);
    // Down: no pruning scheduled.
    assert_eq!(b.poll_timeout(), None);
    let up = t0 + Duration::from_secs(600);
    b.handle_connected(up);
    let mut now = up;
    let mut prunes = 0;
    while now < up + Duration::from_secs(300) {
        now = now.max(b.poll_timeout().expect("a prune is scheduled"));
        b.handle_timeout(now);
        prunes += 1;
        if now == up {
            assert_eq!(b.tracked_devices(), 2, "silent since the connection only");
        }
        assert!(b.poll_timeout().unwrap() > now, "the schedule moves on");
    }
    assert!(prunes <= 6, "once a minute: {prunes}");
    assert_eq!(
        b.tracked_devices(),
        1,
        "the telemetry-only device is forgotten"
    );
    assert!(
        b.presence(&"org-123".parse().unwrap(), &"esp32-002".parse().unwrap())
            .is_some()
    );
}

// Settings that cannot work are refused by `check`, naming the setting; an engine built with
// them anyway does not panic: durations are cut to a day, a rate of zero refuses the excess.
#[test]
fn absurd_settings_are_refused_and_never_panic() {
    let absurd = Settings {
        command_timeout: Duration::from_secs(10_000_000_000_000_000_000),
        retry_backoff: Duration::MAX,
        rate_limit: Some(RateLimit {
            burst: 1,
            per_second: 0.0,
        }),
        in_flight_window: 0,
        receive_window: 0,
        ..Settings::default()
    };
    assert_eq!(absurd.check().unwrap_err().setting(), "command_timeout");
    for (settings, named) in [
        (
            Settings {
                rate_limit: Some(RateLimit {
                    burst: 0,
                    per_second: 1.0,
                }),
                ..Settings::default()
            },
            "rate_limit.burst",
        ),
        (
            Settings {
                rate_limit: Some(RateLimit {
                    burst: 5,
                    per_second: f64::NAN,
                }),
                ..Settings::default()
            },
            "rate_limit.per_second",
        ),
        (
            Settings {
                max_devices: 0,
                ..Settings::default()
            },
            "max_devices",
        ),
        (
            Settings {
                instance: "a/b".into(),
                ..Settings::default()
            },
            "instance",
        ),
        (
            Settings {
                instance: String::new(),
                ..Settings::default()
            },
            "instance",
        ),
    ] {
        assert_eq!(settings.check().unwrap_err().setting(), named);
    }
    let mut b = Backend::new(absurd);
    let t0 = Instant::now();
    b.handle_connected(t0);
    send(&mut b, t0);
    for n in 0..3 {
        b.handle_message(
            t0,
            IN,
            &topic("telemetry"),
            TELEMETRY
                .replace("10:00:00", &format!("10:00:0{n}"))
                .as_bytes(),
        );
    }
    let later = t0 + Duration::from_secs(3_600);
    b.handle_timeout(later);
    assert_eq!(b.counters().dropped[&DropReason::RateLimited], 2);
    assert!(
        b.poll_timeout()
            .is_some_and(|at| at <= t0 + Duration::from_secs(86_400))
    );
}

// A refusal reaches the application whole: the decoder's error with its field path and
// problem, the category it is counted under, and the text the logs show.
#[test]
fn a_dropped_event_carries_the_decoders_error() {
    let mut b = Backend::new(Settings::default());
    let t0 = Instant::now();
    let bad = TELEMETRY.replace(r#""ph":7.2"#, r#""ph":"7.2""#);
    b.handle_message(t0, IN, &topic("telemetry"), bad.as_bytes());
    b.handle_message(t0, IN, &topic("telemetry"), b"{\"device_id\":");
    b.handle_message(t0, IN, &topic("commands"), b"{}");
    let errors: Vec<(DropReason, DropError)> = events(&mut b)
        .into_iter()
        .filter_map(|e| match e {
            Event::Dropped { reason, error, .. } => Some((reason, error)),
            _ => None,
        })
        .collect();
    let [
        (wrong_type, typed),
        (syntax, not_json),
        (direction, to_devices),
    ] = &errors[..]
    else {
        panic!("{errors:?}");
    };
    assert_eq!(*wrong_type, DropReason::Invalid(Reason::WrongType));
    assert_eq!(typed.reason(), *wrong_type);
    let invalid = typed.invalid().unwrap();
    assert_eq!(invalid.path.as_str(), "sensors.ph");
    assert!(matches!(invalid.problem, Problem::WrongType { .. }));
    assert_eq!(
        typed.to_string(),
        "sensors.ph: expected a number, got a string"
    );
    assert_eq!(*syntax, DropReason::Invalid(Reason::Syntax));
    let DropError::Decode(DecodeError::Syntax(json)) = not_json else {
        panic!("{not_json:?}");
    };
    assert!(json.ends_early(), "{json:?}");
    assert_eq!(*direction, DropReason::WrongDirection);
    assert_eq!(
        to_devices,
        &DropError::WrongDirection(MessageKind::Commands)
    );
    assert_eq!(b.counters().dropped.values().sum::<u64>(), 3);
}
