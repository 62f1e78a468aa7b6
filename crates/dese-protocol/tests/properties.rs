//! Property tests: round trips, and no input that panics or goes unexplained.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

mod common;

use dese_protocol::*;
use proptest::prelude::*;
use serde_json::{Value, json};

fn id() -> impl Strategy<Value = String> {
    // Letters, digits, punctuation, an inner '$' and non-ASCII: everything the rules allow.
    proptest::string::string_regex("[A-Za-z0-9._:é-][A-Za-z0-9._:$é日-]{0,30}").unwrap()
}

fn kind() -> impl Strategy<Value = MessageKind> {
    proptest::sample::select(MessageKind::ALL.to_vec())
}

fn timestamp() -> impl Strategy<Value = Timestamp> {
    (-62_167_219_200i64..=253_402_300_799, 0u32..1_000_000_000)
        .prop_map(|(s, n)| Timestamp::from_unix(s, n).unwrap())
}

/// Decimal numbers as sensors report them (up to 3 places), which JSON carries exactly.
fn decimal(lo: i64, hi: i64) -> impl Strategy<Value = f64> {
    (lo * 1000..=hi * 1000).prop_map(|n| n as f64 / 1000.0)
}

fn text(max: usize) -> impl Strategy<Value = String> {
    proptest::string::string_regex(&format!(".{{1,{max}}}"))
        .unwrap()
        .prop_filter("non-empty, within budget", move |s| {
            !s.is_empty() && s.len() <= max
        })
}

/// The six sensors the protocol knows: the only keys config takes.
fn known_sensor() -> impl Strategy<Value = Sensor> {
    prop_oneof![
        Just(Sensor::Ph),
        Just(Sensor::Chlorine),
        Just(Sensor::Temperature),
        Just(Sensor::Orp),
        Just(Sensor::Tds),
        Just(Sensor::FlowRate),
    ]
}

/// Any sensor name: alerts and `calibrate_sensor` also take others.
fn sensor() -> impl Strategy<Value = Sensor> {
    prop_oneof![
        known_sensor(),
        "[a-z][a-z0-9_-]{0,20}".prop_map(|s| Sensor::parse(&s).unwrap()),
    ]
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e6f64..1e6).prop_map(Value::from),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            proptest::collection::btree_map("[a-z_]{1,8}", inner, 0..4)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

fn telemetry(org: OrgId, device: DeviceId) -> impl Strategy<Value = Message> {
    (
        timestamp(),
        (decimal(0, 14), decimal(0, 10), decimal(-20, 60)),
        (
            any::<Option<i32>>(),
            any::<Option<u32>>(),
            proptest::option::of(decimal(0, 500)),
        ),
        (
            proptest::option::of(0i64..=100),
            proptest::option::of(-128i64..=0),
            text(32),
        ),
    )
        .prop_map(
            move |(timestamp, (ph, cl, t), (orp, tds, flow), (battery, rssi, fw))| {
                Message::Telemetry(Telemetry {
                    device_id: device.clone(),
                    timestamp,
                    organization_id: org.clone(),
                    sensors: Sensors {
                        ph: Ph::new(ph).unwrap(),
                        chlorine: Ppm::new(cl).unwrap(),
                        temperature: Celsius::new(t).unwrap(),
                        orp,
                        tds,
                        flow_rate: flow.map(|f| FlowRate::new(f).unwrap()),
                    },
                    metadata: Metadata {
                        battery: battery.map(|b| Battery::new(b).unwrap()),
                        signal_strength: rssi.map(|r| SignalStrength::new(r).unwrap()),
                        firmware_version: fw,
                    },
                })
            },
        )
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        (any::<u32>(), any::<bool>(), any::<Option<u32>>()).prop_map(|(pump_id, on, duration)| {
            Action::SetPump {
                pump_id,
                state: if on { PumpState::On } else { PumpState::Off },
                duration,
            }
        }),
        decimal(0, 14).prop_map(|v| Action::SetPhTarget {
            target_ph: Ph::new(v).unwrap()
        }),
        decimal(0, 10).prop_map(|v| Action::SetChlorineTarget {
            target_chlorine: Ppm::new(v).unwrap()
        }),
        Just(Action::Reboot),
        Just(Action::ResetConfig),
        (sensor(), decimal(-1000, 1000)).prop_map(|(sensor_type, v)| Action::CalibrateSensor {
            sensor_type,
            value: Finite::new(v).unwrap()
        }),
        ("[a-z_]{1,20}", proptest::option::of(json_value())).prop_map(|(name, p)| {
            let name = if Action::NAMES.contains(&name.as_str()) {
                format!("x_{name}")
            } else {
                name
            };
            let parameters = p.map(|v| match v {
                Value::Object(m) => m,
                other => [("value".to_string(), other)].into_iter().collect(),
            });
            Action::Unknown { name, parameters }
        }),
    ]
}

fn command(device: DeviceId) -> impl Strategy<Value = Message> {
    ("[a-z0-9-]{1,40}", action(), timestamp()).prop_map(move |(cid, action, timestamp)| {
        Message::Command(Command {
            command_id: CommandId::parse(&cid).unwrap(),
            device_id: device.clone(),
            action,
            timestamp,
        })
    })
}

fn others(device: DeviceId) -> impl Strategy<Value = Message> {
    let response = (
        "[a-z0-9-]{1,40}",
        any::<bool>(),
        proptest::option::of(json_value()),
        proptest::option::of(text(100)),
        timestamp(),
    )
        .prop_map(|(cid, success, response, error, timestamp)| {
            Message::CommandResponse(CommandResponse {
                command_id: CommandId::parse(&cid).unwrap(),
                success,
                response: response.and_then(|v| v.as_object().cloned()),
                error,
                timestamp,
            })
        });
    let status = (
        0usize..4,
        proptest::option::of(0i64..=100),
        text(20),
        timestamp(),
    )
        .prop_map(|(s, b, fw, timestamp)| {
            let states = [
                DeviceState::Online,
                DeviceState::Offline,
                DeviceState::Error,
                DeviceState::Maintenance,
            ];
            Message::Status(Status {
                status: states[s],
                battery: b.map(|b| Battery::new(b).unwrap()),
                signal_strength: None,
                firmware_version: fw,
                timestamp,
            })
        });
    let config = (
        proptest::option::of(100i64..=86_400_000),
        proptest::option::of(1i64..=65_535),
        proptest::option::of(proptest::collection::btree_map(
            known_sensor(),
            (decimal(-5, 5), decimal(1, 3)),
            0..3,
        )),
        proptest::option::of(proptest::collection::btree_map(
            known_sensor(),
            (decimal(0, 7), decimal(7, 14)),
            0..3,
        )),
        timestamp(),
    )
        .prop_map(move |(interval, keepalive, cal, thr, timestamp)| {
            Message::Config(Config {
                device_id: device.clone(),
                config: DeviceConfig {
                    telemetry_interval: interval.map(|i| TelemetryInterval::new(i).unwrap()),
                    mqtt_keepalive: keepalive.map(|k| Keepalive::new(k).unwrap()),
                    sensor_calibration: cal.map(|m| {
                        m.into_iter()
                            .map(|(s, (o, k))| {
                                (
                                    s,
                                    Calibration {
                                        offset: Finite::new(o).unwrap(),
                                        scale: Scale::new(k).unwrap(),
                                    },
                                )
                            })
                            .collect()
                    }),
                    alert_thresholds: thr.map(|m| {
                        m.into_iter()
                            .map(|(s, (lo, hi))| {
                                (
                                    s,
                                    Threshold {
                                        min: Some(Finite::new(lo).unwrap()),
                                        max: Some(Finite::new(hi).unwrap()),
                                    },
                                )
                            })
                            .collect()
                    }),
                },
                timestamp,
            })
        });
    let alert = (
        0usize..3,
        text(200),
        proptest::option::of(sensor()),
        proptest::option::of(decimal(-100, 100)),
        timestamp(),
    )
        .prop_map(|(s, message, sensor, value, timestamp)| {
            let severities = [Severity::Info, Severity::Warning, Severity::Critical];
            Message::Alert(Alert {
                severity: severities[s],
                message,
                sensor,
                value: value.map(|v| Finite::new(v).unwrap()),
                threshold: value.map(|v| Finite::new(v + 1.0).unwrap()),
                timestamp,
            })
        });
    prop_oneof![response, status, config, alert]
}

fn message() -> impl Strategy<Value = (Topic, Message)> {
    (id(), id()).prop_flat_map(|(org, device)| {
        let org = OrgId::parse(&org).unwrap();
        let device = DeviceId::parse(&device).unwrap();
        let m = prop_oneof![
            telemetry(org.clone(), device.clone()),
            command(device.clone()),
            others(device.clone()),
        ];
        (Just((org, device)), m)
            .prop_map(|((org, device), m)| (Topic::new(org, device, m.kind()), m))
    })
}

/// The payloads of the protocol's own examples, one per kind.
fn spec_examples() -> Vec<(MessageKind, Value)> {
    let ts = "2025-01-27T10:00:00Z";
    vec![
        (
            MessageKind::Telemetry,
            json!({"device_id":"d","timestamp":ts,"organization_id":"o",
            "sensors":{"ph":7.2,"chlorine":2.5,"temperature":25.5,"orp":650,"tds":1200,"flow_rate":45.5},
            "metadata":{"battery":85,"signal_strength":-65,"firmware_version":"1.0.0"}}),
        ),
        (
            MessageKind::Commands,
            json!({"command_id":"c","device_id":"d","command":"set_pump",
            "parameters":{"pump_id":1,"state":"on","duration":3600},"timestamp":ts}),
        ),
        (
            MessageKind::CommandResponse,
            json!({"command_id":"c","success":true,
            "response":{"pump_state":"on"},"error":null,"timestamp":ts}),
        ),
        (
            MessageKind::Status,
            json!({"status":"online","battery":85,"signal_strength":-65,"firmware_version":"1.0.0","timestamp":ts}),
        ),
        (
            MessageKind::Config,
            json!({"device_id":"d","config":{"telemetry_interval":30000,"mqtt_keepalive":60,
            "sensor_calibration":{"ph":{"offset":0.2,"scale":1.0}},"alert_thresholds":{"ph":{"min":6.8,"max":7.8}}},"timestamp":ts}),
        ),
        (
            MessageKind::Alert,
            json!({"severity":"warning","message":"pH low","sensor":"ph","value":6.8,"threshold":7.0,"timestamp":ts}),
        ),
    ]
}

proptest! {
    // DESE-T1, DESE-T3: parse(display(topic)) == topic.
    #[test]
    fn topic_round_trip(org in id(), device in id(), kind in kind()) {
        let topic = Topic::new(OrgId::parse(&org).unwrap(), DeviceId::parse(&device).unwrap(), kind);
        let text = topic.to_string();
        prop_assert_eq!(Topic::parse(&text), Ok(topic.clone()));
        prop_assert_eq!(text, format!("devices/{org}/{device}/{kind}"));
        let filter = TopicFilter::topic(&topic);
        prop_assert_eq!(TopicFilter::parse(&filter.to_string()), Ok(filter.clone()));
        prop_assert!(filter.matches(&topic));
    }

    // Any string either is refused or displays back to itself.
    #[test]
    fn any_topic_string_parses_exactly_or_fails(s in ".{0,120}", tail in "(telemetry|status|x)") {
        for candidate in [s.clone(), format!("devices/{s}/{tail}"), format!("devices/a/{s}")] {
            if let Ok(topic) = Topic::parse(&candidate) {
                prop_assert_eq!(&topic.to_string(), &candidate);
            }
            let _ = TopicFilter::parse(&candidate);
        }
    }

    // DESE-P3: timestamps round-trip through their text form.
    #[test]
    fn timestamp_round_trip(t in timestamp()) {
        prop_assert_eq!(Timestamp::parse(&t.to_string()), Ok(t));
    }

    // Every message of every kind survives encode then decode unchanged.
    #[test]
    fn message_round_trip((topic, message) in message()) {
        let bytes = encode(&message).unwrap();
        match Decoder::new().decode_message(&topic, &bytes) {
            Ok(decoded) => prop_assert_eq!(decoded, message),
            Err(e) => prop_assert!(false, "{}: {}", e, String::from_utf8_lossy(&bytes)),
        }
    }

    // DESE-V2: no byte string panics the decoder, on any topic.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600), kind in kind()) {
        let topic = format!("devices/org/dev/{kind}");
        if let Err(e) = decode(&topic, &bytes) {
            prop_assert!(!e.to_string().is_empty());
        }
    }

    // Byte-level damage to valid payloads: never a panic, and a decoded result re-encodes.
    #[test]
    fn damaged_payloads_never_panic(which in 0usize..6, edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8)) {
        let (kind, value) = &spec_examples()[which];
        let mut bytes = serde_json::to_vec(value).unwrap();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if let Ok(envelope) = decode(&format!("devices/o/d/{kind}"), &bytes) {
            prop_assert!(encode(&envelope.message).is_ok());
        }
    }

    // DESE-V1: one field replaced by any JSON value or removed: the decoder either accepts it
    // or names a reason more precise than `other`, with a field path inside the payload.
    #[test]
    fn mutated_fields_are_explained(which in 0usize..6, pick in any::<prop::sample::Index>(), new in proptest::option::of(json_value())) {
        let (kind, mut value) = spec_examples()[which].clone();
        let all = common::paths(&value);
        let path = pick.get(&all).clone();
        common::set(&mut value, &path, new);
        let bytes = serde_json::to_vec(&value).unwrap();
        match decode(&format!("devices/o/d/{kind}"), &bytes) {
            Ok(envelope) => prop_assert!(encode(&envelope.message).is_ok() || kind == MessageKind::Telemetry),
            Err(e) => {
                prop_assert_ne!(e.reason(), Reason::Other, "{}", e);
                prop_assert!(e.invalid().is_some() || e.reason() == Reason::TooDeep, "{}", e);
            }
        }
    }
}
