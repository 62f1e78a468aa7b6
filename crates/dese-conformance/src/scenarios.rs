//! The scenarios. Each names the statements of CONFORMANCE.md it proves.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant as StdInstant};

use dese_backend::{Event, Outcome, Settings as BackendSettings};
use dese_device::Event as DeviceEvent;
use dese_protocol::{
    Action, Alert, Command, DeviceConfig, DeviceId, DeviceState, Finite, JsonObject, Keepalive,
    Message, OrgId, Ph, Ppm, PumpState, Sensor, Severity, ShareGroup, Threshold, Timestamp, encode,
};
use dese_testkit::raw::{Publisher, Subscriber};
use dese_testkit::{Mosquitto, MosquittoConfig, Proxy};
use dese_transport::{BackendClient, BrokerOptions, DeviceClient, ErrorKind, Transport};

use crate::fixtures::{
    Figures, NoSensors, Probe, Recorder, TestCa, certificates, device_settings, eventually,
    reading, telemetry_duplicates, wait_for,
};

fn ids(org: &str, device: &str) -> (OrgId, DeviceId) {
    (org.parse().unwrap(), device.parse().unwrap())
}

fn online(e: &Event) -> bool {
    matches!(
        e,
        Event::PresenceChanged {
            to: DeviceState::Online,
            ..
        }
    )
}

fn offline(e: &Event) -> bool {
    matches!(
        e,
        Event::PresenceChanged {
            to: DeviceState::Offline,
            ..
        }
    )
}

/// DESE-D1, DESE-D2, DESE-D4, DESE-D5, DESE-C1, DESE-C4: the whole life of a device
/// seen by a backend. A retained online status (a backend that starts later still learns it),
/// telemetry, an alert of the application, a config whose thresholds make the device raise an
/// alert of its own, every command of the protocol answered and correlated, an error answer,
/// an unknown command refused, a timeout for a device that does not exist, and an offline
/// status on the way out. No message is dropped by the backend.
pub async fn lifecycle<D: Transport, B: Transport>(url: &str) {
    let options = BrokerOptions::parse(url).unwrap();
    let settings = BackendSettings {
        command_timeout: Duration::from_millis(800),
        retries: 0,
        ..BackendSettings::default()
    };
    let mut backend =
        BackendClient::<B>::spawn(&options, "conformance-backend", settings.clone(), None).unwrap();
    eventually(|| backend.is_connected(), || "backend connected".into()).await;
    tokio::time::sleep(Duration::from_millis(200)).await; // its subscriptions are in place

    let handler = Recorder::default();
    let mut device = DeviceClient::<D>::spawn(
        &options,
        device_settings("org-1", "dev-1", 200),
        Probe,
        handler.clone(),
    )
    .unwrap();
    let (org, dev) = ids("org-1", "dev-1");

    wait_for(&mut backend, online).await;
    for _ in 0..3 {
        let event = wait_for(&mut backend, |e| matches!(e, Event::Telemetry { .. })).await;
        let Event::Telemetry { telemetry, device } = event else {
            unreachable!()
        };
        assert_eq!(
            (device.org.as_str(), device.device.as_str()),
            ("org-1", "dev-1")
        );
        assert_eq!(telemetry.sensors.ph.get(), 7.2);
    }
    // Retained: a backend that starts now learns that the device is online.
    let mut late = BackendClient::<B>::spawn(&options, "conformance-late", settings, None).unwrap();
    wait_for(&mut late, online).await;
    late.shutdown().await.unwrap();

    // An alert of the application's own.
    device
        .raise_alert(Alert {
            severity: Severity::Critical,
            message: "flow sensor disconnected".into(),
            sensor: Some(Sensor::FlowRate),
            value: None,
            threshold: None,
            timestamp: Timestamp::UNIX_EPOCH,
        })
        .unwrap();
    let event = wait_for(&mut backend, |e| matches!(e, Event::Alert { .. })).await;
    assert!(
        matches!(&event, Event::Alert { alert, .. } if alert.message == "flow sensor disconnected" && alert.severity == Severity::Critical),
        "{event:?}"
    );

    // A config: pH must stay at or above 7.5; the device reads 7.2 and says so.
    let config = DeviceConfig {
        alert_thresholds: Some(BTreeMap::from([(
            Sensor::Ph,
            Threshold {
                min: Some(Finite::new(7.5).unwrap()),
                max: None,
            },
        )])),
        ..DeviceConfig::default()
    };
    backend
        .send_config(org.clone(), dev.clone(), config)
        .await
        .unwrap();
    let event = wait_for(
        &mut backend,
        |e| matches!(e, Event::Alert { alert, .. } if alert.sensor == Some(Sensor::Ph)),
    )
    .await;
    let Event::Alert { alert, .. } = event else {
        unreachable!()
    };
    assert_eq!(alert.value.map(Finite::get), Some(7.2));
    assert_eq!(alert.threshold.map(Finite::get), Some(7.5));
    let mut applied = false;
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(100), device.next_event()).await
    {
        applied |= matches!(event, DeviceEvent::ConfigApplied(_));
    }
    assert!(applied, "the device reported the config applied");

    // Every command of the protocol, each answered with its own id.
    let actions = [
        Action::SetPump {
            pump_id: 1,
            state: PumpState::On,
            duration: Some(30),
        },
        Action::SetPhTarget {
            target_ph: Ph::new(7.4).unwrap(),
        },
        Action::SetChlorineTarget {
            target_chlorine: Ppm::new(1.5).unwrap(),
        },
        Action::CalibrateSensor {
            sensor_type: Sensor::Ph,
            value: Finite::new(7.0).unwrap(),
        },
        Action::ResetConfig,
        Action::Reboot,
    ];
    for action in actions {
        let name = action.name().to_string();
        let (id, outcome) = backend
            .send_command(org.clone(), dev.clone(), action)
            .await
            .unwrap();
        let Outcome::Completed(response) = outcome else {
            panic!("{name}: {outcome:?}")
        };
        assert_eq!(response.command_id, id, "{name}: correlated");
        if name == "calibrate_sensor" {
            let answer = response.response.unwrap();
            assert_eq!(answer["calibrated"], "ph");
        }
    }
    assert_eq!(
        handler.names(),
        [
            "set_pump",
            "set_ph_target",
            "set_chlorine_target",
            "calibrate_sensor",
            "reset_config",
            "reboot"
        ]
    );

    // An error answer, and a command the device does not know.
    let (_, outcome) = backend
        .send_command(
            org.clone(),
            dev.clone(),
            Action::SetPump {
                pump_id: 99,
                state: PumpState::Off,
                duration: None,
            },
        )
        .await
        .unwrap();
    assert!(
        matches!(&outcome, Outcome::Failed(r) if r.error.as_deref() == Some("no pump 99 on this device")),
        "{outcome:?}"
    );
    let (_, outcome) = backend
        .send_command(
            org.clone(),
            dev.clone(),
            Action::Unknown {
                name: "dance".into(),
                parameters: None,
            },
        )
        .await
        .unwrap();
    assert!(
        matches!(&outcome, Outcome::Failed(r) if r.error.as_deref() == Some("unknown command dance")),
        "{outcome:?}"
    );

    // Nobody there: a timeout.
    let (_, outcome) = backend
        .send_command(org.clone(), "dev-404".parse().unwrap(), Action::Reboot)
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::TimedOut { attempts: 1 });

    device.shutdown().await.unwrap();
    wait_for(&mut backend, offline).await;
    let presence = backend.presence(org, dev).await.unwrap().unwrap();
    assert_eq!(presence.state, DeviceState::Offline);
    let counters = backend.counters();
    assert!(counters.dropped.is_empty(), "{counters:?}");
    backend.shutdown().await.unwrap();
}

/// DESE-C2, DESE-C3, DESE-D5: the backend retries a command that was not answered in time with
/// the same id; the device runs it once and answers the retry from memory. A command to a
/// device that never answers times out after every attempt.
pub async fn retry_runs_once<D: Transport, B: Transport>(url: &str) {
    let options = BrokerOptions::parse(url).unwrap();
    let settings = BackendSettings {
        command_timeout: Duration::from_millis(300),
        retries: 1,
        retry_backoff: Duration::from_millis(50),
        ..BackendSettings::default()
    };
    let mut backend =
        BackendClient::<B>::spawn(&options, "conformance-retry", settings, None).unwrap();
    let handler = Recorder {
        // Far beyond the timeout, so that the retry is sent while the device is busy even on a
        // loaded machine; the answer still comes before the retry's own timeout (300 ms after
        // it) only if the device is quick afterwards, which the outcome check allows for.
        stall: Some(Duration::from_millis(1500)),
        ..Recorder::default()
    };
    let mut device = DeviceClient::<D>::spawn(
        &options,
        device_settings("org-1", "dev-slow", 60_000),
        NoSensors,
        handler.clone(),
    )
    .unwrap();
    wait_for(&mut backend, online).await;
    let (org, dev) = ids("org-1", "dev-slow");

    let (id, outcome) = backend
        .send_command(org.clone(), dev, Action::Reboot)
        .await
        .unwrap();
    // Answered in time for the retry, or late (the device answers even after the timeout).
    let late = outcome == Outcome::TimedOut { attempts: 2 };
    assert!(
        late || matches!(&outcome, Outcome::Completed(r) if r.command_id == id),
        "{outcome:?}"
    );
    assert_eq!(backend.counters().retries, 1, "{:?}", backend.counters());
    // The retry reaches the device after the first run: answered again, not run again.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let (mut runs, mut duplicates) = (0, 0);
    while duplicates == 0 {
        match tokio::time::timeout_at(deadline, device.next_event()).await {
            Ok(Some(DeviceEvent::CommandRun { command_id, .. })) if command_id == id => runs += 1,
            Ok(Some(DeviceEvent::CommandDuplicate { command_id })) if command_id == id => {
                duplicates += 1;
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => panic!("no duplicate delivery seen (runs {runs})"),
        }
    }
    assert_eq!((runs, handler.names().len()), (1, 1), "ran exactly once");
    if late {
        wait_for(&mut backend, |e| matches!(e, Event::LateResponse { .. })).await;
    }

    let (_, outcome) = backend
        .send_command(org, "dev-absent".parse().unwrap(), Action::Reboot)
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::TimedOut { attempts: 2 });
    device.shutdown().await.unwrap();
    backend.shutdown().await.unwrap();
}

/// DESE-D5: a device whose connection dies without a goodbye (the link cut, as a power loss
/// would) is marked offline by its last will, which the broker retains.
pub async fn last_will<D: Transport, B: Transport>(broker_addr: std::net::SocketAddr) {
    let direct = BrokerOptions::parse(&format!("mqtt://{broker_addr}")).unwrap();
    let proxy = Proxy::start(broker_addr).unwrap();
    let through_proxy = BrokerOptions::parse(&proxy.url()).unwrap();
    let mut backend = BackendClient::<B>::spawn(
        &direct,
        "conformance-will",
        BackendSettings::default(),
        None,
    )
    .unwrap();
    eventually(|| backend.is_connected(), || "backend connected".into()).await;
    let mut settings = device_settings("org-1", "dev-will", 60_000);
    settings.backoff.base = Duration::from_secs(30); // stay away once cut
    let device =
        DeviceClient::<D>::spawn(&through_proxy, settings, NoSensors, Recorder::default()).unwrap();
    wait_for(&mut backend, online).await;

    proxy.cut();
    let event = wait_for(&mut backend, offline).await;
    let Event::PresenceChanged { device: key, .. } = event else {
        unreachable!()
    };
    assert_eq!(key.device.as_str(), "dev-will");
    // Retained: a backend that starts now learns that the device is offline.
    let mut late = BackendClient::<B>::spawn(
        &direct,
        "conformance-will-late",
        BackendSettings::default(),
        None,
    )
    .unwrap();
    let event = wait_for(&mut late, |e| matches!(e, Event::PresenceChanged { .. })).await;
    assert!(offline(&event), "{event:?}");
    late.shutdown().await.unwrap();
    eventually(|| !device.is_connected(), || "device saw the cut".into()).await;
    device.shutdown().await.unwrap();
    backend.shutdown().await.unwrap();
}

/// DESE-D3: a config message that changes the MQTT keepalive takes effect without restarting
/// the device: it reconnects with the new keepalive at once, and the broker's log shows it.
pub async fn keepalive_change<D: Transport, B: Transport>(broker: &Mosquitto) {
    let options = BrokerOptions::parse(&broker.url()).unwrap();
    let backend = BackendClient::<B>::spawn(
        &options,
        "conformance-keepalive",
        BackendSettings::default(),
        None,
    )
    .unwrap();
    let mut device = DeviceClient::<D>::spawn(
        &options,
        device_settings("org-1", "dev-ka", 60_000),
        NoSensors,
        Recorder::default(),
    )
    .unwrap();
    eventually(|| device.is_connected(), || "device connected".into()).await;
    eventually(
        || broker.log().contains("as org-1:dev-ka (p2, c1, k60)"),
        || broker.log(),
    )
    .await;
    let (org, dev) = ids("org-1", "dev-ka");
    let config = DeviceConfig {
        mqtt_keepalive: Some(Keepalive::new(17).unwrap()),
        ..DeviceConfig::default()
    };
    backend.send_config(org, dev, config).await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        match tokio::time::timeout_at(deadline, device.next_event()).await {
            Ok(Some(DeviceEvent::KeepaliveChanged(k))) => {
                assert_eq!(k.get(), 17);
                break;
            }
            Ok(Some(_)) => {}
            other => panic!("no keepalive change: {other:?}"),
        }
    }
    eventually(
        || broker.log().contains("as org-1:dev-ka (p2, c1, k17)"),
        || broker.log(),
    )
    .await;
    eventually(|| device.is_connected(), || "device reconnected".into()).await;
    device.shutdown().await.unwrap();
    backend.shutdown().await.unwrap();
}

/// DESE-D9: Mosquitto restarted gracefully 10 times while a device streams 5,000 QoS
/// 1 readings: the backend receives every one (duplicates allowed and flagged, none lost).
pub async fn restarts<D: Transport, B: Transport>(tag: &str) -> Figures {
    const READINGS: usize = 5_000;
    const RESTARTS: usize = 10;
    let started = StdInstant::now();
    let mut broker = Mosquitto::start_with(MosquittoConfig {
        persistence: true,
        ..MosquittoConfig::default()
    })
    .unwrap();
    let options = BrokerOptions::parse(&broker.url()).unwrap();
    let settings = BackendSettings {
        rate_limit: None,
        telemetry_window: READINGS,
        // The devices' short backoff (at most 1 s): ten restarts in a few seconds would take
        // the default's ceiling to 60 s, and a wait of up to a minute after each restart
        // (full jitter) could outlast the test's deadline. What is tested is the delivery.
        backoff: dese_device::Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_secs(1),
            ..dese_device::Backoff::DEFAULT
        },
        ..BackendSettings::default()
    };
    let mut backend =
        BackendClient::<B>::spawn(&options, &format!("backend-restarts-{tag}"), settings, None)
            .unwrap();
    let (online_tx, online_rx) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(async move {
        let mut online_tx = Some(online_tx);
        let mut readings = BTreeSet::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(150);
        while readings.len() < READINGS {
            match tokio::time::timeout_at(deadline, backend.next_event()).await {
                Ok(Some(Event::Telemetry { telemetry, .. })) => {
                    readings.insert(telemetry.timestamp);
                }
                Ok(Some(e)) if online(&e) => {
                    if let Some(tx) = online_tx.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        let counters = backend.counters();
        backend.shutdown().await.unwrap();
        (readings.len(), counters)
    });

    let mut device_settings = device_settings("org-1", "dev-1", 86_400_000);
    device_settings.outbox_capacity = READINGS * 2;
    device_settings.in_flight_window = 64;
    let device =
        DeviceClient::<D>::spawn(&options, device_settings, NoSensors, Recorder::default())
            .unwrap();
    tokio::time::timeout(Duration::from_secs(15), online_rx)
        .await
        .unwrap()
        .unwrap();

    let every = READINGS / RESTARTS;
    for i in 0..READINGS {
        device.publish_readings(reading()).unwrap();
        if i % 25 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if i % every == every / 2 {
            eventually(
                || device.is_connected(),
                || "the device did not reconnect".into(),
            )
            .await;
            tokio::task::block_in_place(|| broker.restart()).unwrap();
        }
    }

    let (received, counters) = reader.await.unwrap();
    let stats = device.stats();
    let duplicates = telemetry_duplicates(&counters);
    assert_eq!(stats.telemetry, READINGS as u64);
    assert_eq!(received, READINGS, "every reading reached the backend");
    assert_eq!(stats.telemetry_dropped, 0);
    assert!(
        stats.disconnects >= RESTARTS as u64,
        "the restarts did cut the device off"
    );
    device.shutdown().await.unwrap();
    Figures {
        sent: stats.telemetry,
        received: received as u64,
        duplicates,
        interruptions: RESTARTS as u64,
        elapsed: started.elapsed(),
    }
}

/// DESE-D9: a device that shuts down right after queuing many readings delivers them all
/// before its `offline` status, although most are still in its outbox (beyond the in-flight
/// window) when the shutdown starts.
pub async fn shutdown_delivers_outbox<D: Transport, B: Transport>(tag: &str) -> Figures {
    const READINGS: usize = 400;
    let started = StdInstant::now();
    let broker = Mosquitto::start().unwrap();
    let options = BrokerOptions::parse(&broker.url()).unwrap();
    let settings = BackendSettings {
        rate_limit: None,
        telemetry_window: READINGS,
        ..BackendSettings::default()
    };
    let mut backend =
        BackendClient::<B>::spawn(&options, &format!("backend-goodbye-{tag}"), settings, None)
            .unwrap();
    let mut device_settings = device_settings("org-1", "dev-1", 86_400_000);
    device_settings.outbox_capacity = READINGS;
    device_settings.in_flight_window = 8;
    let device =
        DeviceClient::<D>::spawn(&options, device_settings, NoSensors, Recorder::default())
            .unwrap();
    wait_for(&mut backend, online).await;
    // The backend reads as the device delivers: a backend that stopped reading would stop
    // acknowledging, and with paho (one receive thread for the process) hold up the device too.
    let reader = tokio::spawn(async move {
        let mut readings = BTreeSet::new();
        let mut after_offline = 0;
        let mut went_offline = false;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !(went_offline && readings.len() == READINGS) {
            match tokio::time::timeout_at(deadline, backend.next_event()).await {
                Ok(Some(Event::Telemetry { telemetry, .. })) => {
                    readings.insert(telemetry.timestamp);
                    if went_offline {
                        after_offline += 1;
                    }
                }
                Ok(Some(e)) if offline(&e) => went_offline = true,
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        (readings, after_offline, went_offline, backend)
    });

    for _ in 0..READINGS {
        device.publish_readings(reading()).unwrap();
    }
    let last = device.shutdown().await.unwrap();
    assert_eq!(last.pending, 0, "nothing left undelivered: {last:?}");
    assert!(last.delivered >= READINGS as u64, "{last:?}");

    let (readings, after_offline, went_offline, backend) = reader.await.unwrap();
    assert!(went_offline, "the device said goodbye");
    assert_eq!(
        readings.len(),
        READINGS,
        "every queued reading was delivered"
    );
    assert_eq!(after_offline, 0, "all of them before the offline status");
    let duplicates = telemetry_duplicates(&backend.counters());
    backend.shutdown().await.unwrap();
    Figures {
        sent: READINGS as u64,
        received: readings.len() as u64,
        duplicates,
        interruptions: 0,
        elapsed: started.elapsed(),
    }
}

/// DESE-D7: a device offline for a while keeps its newest readings (the oldest beyond its
/// capacity dropped and counted) and replays them in order after reconnecting.
pub async fn offline_replay<D: Transport, B: Transport>(tag: &str) -> Figures {
    const OFFLINE: usize = 300;
    const CAPACITY: usize = 100;
    let started = StdInstant::now();
    let broker = Mosquitto::start().unwrap();
    let proxy = Proxy::start(broker.addr()).unwrap();
    let direct = BrokerOptions::parse(&broker.url()).unwrap();
    let settings = BackendSettings {
        rate_limit: None,
        ..BackendSettings::default()
    };
    let mut backend =
        BackendClient::<B>::spawn(&direct, &format!("backend-replay-{tag}"), settings, None)
            .unwrap();
    let mut device_settings = device_settings("org-1", "dev-1", 86_400_000);
    device_settings.outbox_capacity = CAPACITY;
    let device = DeviceClient::<D>::spawn(
        &BrokerOptions::parse(&proxy.url()).unwrap(),
        device_settings,
        NoSensors,
        Recorder::default(),
    )
    .unwrap();
    wait_for(&mut backend, online).await;

    proxy.cut();
    eventually(
        || !device.is_connected(),
        || "the device saw the cut".into(),
    )
    .await;
    for _ in 0..OFFLINE {
        device.publish_readings(reading()).unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    eventually(
        || device.stats().telemetry == OFFLINE as u64,
        || format!("{:?}", device.stats()),
    )
    .await;
    let stats = device.stats();
    assert_eq!(stats.pending, CAPACITY as u64, "the newest readings wait");
    assert_eq!(
        stats.telemetry_dropped,
        (OFFLINE - CAPACITY) as u64,
        "the oldest are dropped and counted"
    );
    proxy.restore();

    let mut received: Vec<Timestamp> = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while received.len() < CAPACITY {
        match tokio::time::timeout_at(deadline, backend.next_event())
            .await
            .expect("the replay arrived in time")
        {
            Some(Event::Telemetry { telemetry, .. }) => received.push(telemetry.timestamp),
            Some(_) => {}
            None => panic!("backend closed"),
        }
    }
    assert!(received.windows(2).all(|w| w[0] < w[1]), "in order");
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(500), backend.next_event()).await
    {
        assert!(
            !matches!(event, Event::Telemetry { .. }),
            "more than kept: {event:?}"
        );
    }
    eventually(
        || device.stats().pending == 0,
        || format!("{:?}", device.stats()),
    )
    .await;
    let duplicates = telemetry_duplicates(&backend.counters());
    device.shutdown().await.unwrap();
    backend.shutdown().await.unwrap();
    Figures {
        sent: OFFLINE as u64,
        received: received.len() as u64,
        duplicates,
        interruptions: 1,
        elapsed: started.elapsed(),
    }
}

/// Several backend instances in one shared-subscription group split a device's telemetry (each
/// reading reaches exactly one of them) and keep every rule: each has the device's presence,
/// each command completes on the instance that sent it (the other reports the answer as
/// another instance's), and an instance that joins later learns the presence from the retained
/// status, which a shared subscription would never deliver.
pub async fn shared_group<D: Transport, B: Transport>(url: &str) {
    const READINGS: usize = 200;
    let options = BrokerOptions::parse(url).unwrap();
    let group: ShareGroup = "ingest".parse().unwrap();
    let settings = |instance: &str| BackendSettings {
        rate_limit: None,
        instance: instance.to_string(),
        ..BackendSettings::default()
    };
    let mut first =
        BackendClient::<B>::spawn(&options, "shared-1", settings("i1"), Some(group.clone()))
            .unwrap();
    let mut second =
        BackendClient::<B>::spawn(&options, "shared-2", settings("i2"), Some(group.clone()))
            .unwrap();
    eventually(
        || first.is_connected() && second.is_connected(),
        || "both connected".into(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Room for every reading: the test is about the split, not about how fast the broker
    // acknowledges a burst (a full outbox drops the oldest, and a busy machine fills one of 100).
    let mut settings_of_device = device_settings("org-1", "dev-shared", 86_400_000);
    settings_of_device.outbox_capacity = READINGS;
    let device =
        DeviceClient::<D>::spawn(&options, settings_of_device, NoSensors, Recorder::default())
            .unwrap();
    // Every instance has the presence.
    wait_for(&mut first, online).await;
    wait_for(&mut second, online).await;
    for _ in 0..READINGS {
        device.publish_readings(reading()).unwrap();
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut seen = [BTreeSet::new(), BTreeSet::new()];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while seen[0].len() + seen[1].len() < READINGS {
        assert!(
            tokio::time::Instant::now() < deadline,
            "only {} + {}: first {:?}, second {:?}, device {:?}",
            seen[0].len(),
            seen[1].len(),
            first.counters(),
            second.counters(),
            device.stats()
        );
        tokio::select! {
            Some(Event::Telemetry { telemetry, .. }) = first.next_event() => { seen[0].insert(telemetry.timestamp); }
            Some(Event::Telemetry { telemetry, .. }) = second.next_event() => { seen[1].insert(telemetry.timestamp); }
            () = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
    }
    assert!(
        seen[0].is_disjoint(&seen[1]),
        "a reading reached both instances"
    );
    assert!(
        !seen[0].is_empty() && !seen[1].is_empty(),
        "both instances took a share"
    );

    // Commands from both instances: each completes where it was sent. The events are read
    // meanwhile, as an application does.
    let (org, dev) = ids("org-1", "dev-shared");
    let (one, two) = (first.handle(), second.handle());
    let commands = async {
        for _ in 0..5 {
            for handle in [&one, &two] {
                let (id, outcome) = handle
                    .send_command(org.clone(), dev.clone(), Action::Reboot)
                    .await
                    .unwrap();
                assert!(
                    matches!(&outcome, Outcome::Completed(r) if r.command_id == id),
                    "{outcome:?}"
                );
            }
        }
    };
    let reading = async {
        loop {
            tokio::select! {
                _ = first.next_event() => {}
                _ = second.next_event() => {}
            }
        }
    };
    tokio::select! {
        () = commands => {}
        () = reading => unreachable!(),
    }
    eventually(
        || {
            first.counters().responses_to_other_instances == 5
                && second.counters().responses_to_other_instances == 5
        },
        || format!("{:?} / {:?}", first.counters(), second.counters()),
    )
    .await;
    assert_eq!(first.counters().unknown_responses, 0);
    assert_eq!(second.counters().unknown_responses, 0);

    // An instance that joins the group now learns the presence from the retained status.
    let mut third =
        BackendClient::<B>::spawn(&options, "shared-3", settings("i3"), Some(group)).unwrap();
    wait_for(&mut third, online).await;
    device.shutdown().await.unwrap();
    first.shutdown().await.unwrap();
    second.shutdown().await.unwrap();
    third.shutdown().await.unwrap();
}

/// DESE-S2: TLS on a Mosquitto listener with a CA made by the test: the right CA connects; a
/// CA that did not sign the broker's certificate is a final TLS error; plaintext to the TLS
/// port is an I/O failure, retried; `mqtts://` without a CA is refused before connecting.
pub async fn tls<D: Transport>() {
    let dir = std::env::temp_dir().join(format!(
        "dese-tls-{}-{}",
        std::process::id(),
        std::any::type_name::<D>().replace("::", "-")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let (ca, cert, key) = certificates(&dir, "good");
    let (other_ca, _, _) = certificates(&dir, "other");
    let broker = Mosquitto::start_with(MosquittoConfig {
        extra: vec![
            format!("cafile {}", ca.display()),
            format!("certfile {}", cert.display()),
            format!("keyfile {}", key.display()),
        ],
        ..MosquittoConfig::default()
    })
    .unwrap();
    let url = format!("mqtts://127.0.0.1:{}", broker.port());
    let settings = || device_settings("org-1", "dev-tls", 200);

    let options = BrokerOptions::parse(&url).unwrap().with_ca(&ca).unwrap();
    let device =
        DeviceClient::<D>::spawn(&options, settings(), Probe, Recorder::default()).unwrap();
    eventually(
        || device.stats().delivered >= 3,
        || format!("{:?}", device.last_failure()),
    )
    .await;
    device.shutdown().await.unwrap();

    let options = BrokerOptions::parse(&url)
        .unwrap()
        .with_ca(&other_ca)
        .unwrap();
    let device =
        DeviceClient::<D>::spawn(&options, settings(), Probe, Recorder::default()).unwrap();
    eventually(
        || device.last_failure().is_some(),
        || "a failure reported".into(),
    )
    .await;
    // rumqttc knows at once; paho's C library says only "TCP/TLS connect failure", which
    // counts as a refusal after three in a row to a broker that answers TCP (docs/transports.md).
    let error = tokio::time::timeout(Duration::from_secs(15), device.closed())
        .await
        .expect("a refused certificate ends the client")
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Tls, "{error}");
    // Under the SDK's category, the MQTT client's own error is kept as the cause.
    let failure = std::error::Error::source(&error).expect("the connection failure");
    assert!(
        failure.source().is_some(),
        "no cause kept: {}",
        dese_transport::error_chain(&error)
    );

    let plain = BrokerOptions::parse(&format!("mqtt://127.0.0.1:{}", broker.port())).unwrap();
    let device = DeviceClient::<D>::spawn(&plain, settings(), Probe, Recorder::default()).unwrap();
    eventually(
        || device.last_failure().is_some(),
        || "a failure reported".into(),
    )
    .await;
    assert_eq!(device.last_failure().unwrap().kind, ErrorKind::Io);
    assert!(!device.is_connected());
    device.shutdown().await.unwrap();

    let refused = DeviceClient::<D>::spawn(
        &BrokerOptions::parse(&url).unwrap(),
        settings(),
        Probe,
        Recorder::default(),
    );
    assert_eq!(refused.err().map(|e| e.kind()), Some(ErrorKind::Tls));
    let _ = std::fs::remove_dir_all(dir);
}

/// DESE-S2: what a TLS client must refuse, and mutual TLS. A broker whose certificate names
/// another host, and one whose certificate expired, are final TLS errors, though a CA the
/// client trusts signed both. A broker that requires client certificates accepts a device with
/// one its CA signed and refuses one without.
pub async fn tls_certificates<D: Transport>() {
    let dir = std::env::temp_dir().join(format!(
        "dese-tls-certs-{}-{}",
        std::process::id(),
        std::any::type_name::<D>().replace("::", "-")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = TestCa::new(&dir, "ca");
    let listener = |cert: &Path, key: &Path, extra: &[&str]| {
        let mut lines = vec![
            format!("cafile {}", ca.path.display()),
            format!("certfile {}", cert.display()),
            format!("keyfile {}", key.display()),
        ];
        lines.extend(extra.iter().map(|l| (*l).to_string()));
        Mosquitto::start_with(MosquittoConfig {
            extra: lines,
            ..MosquittoConfig::default()
        })
        .unwrap()
    };
    let settings = || device_settings("org-1", "dev-tls", 200);
    let refused = |broker: &Mosquitto, client: Option<(PathBuf, PathBuf)>, what: &'static str| {
        let mut options = BrokerOptions::parse(&format!("mqtts://127.0.0.1:{}", broker.port()))
            .unwrap()
            .with_ca(&ca.path)
            .unwrap();
        if let Some((cert, key)) = client {
            options = options.with_client_cert(cert, key).unwrap();
        }
        async move {
            let device =
                DeviceClient::<D>::spawn(&options, settings(), Probe, Recorder::default()).unwrap();
            eventually(
                || device.last_failure().is_some(),
                || format!("{what}: a failure reported"),
            )
            .await;
            assert_eq!(device.stats().delivered, 0, "{what}");
            let failure = device.last_failure();
            let error = tokio::time::timeout(Duration::from_secs(15), device.closed())
                .await
                .unwrap_or_else(|_| panic!("{what}: the client did not give up: {failure:?}"))
                .unwrap_err();
            assert_eq!(error.kind(), ErrorKind::Tls, "{what}: {error}");
        }
    };

    let (cert, key) = ca.server("elsewhere", &["broker.elsewhere.example"], false, false);
    let elsewhere = listener(&cert, &key, &[]);
    refused(&elsewhere, None, "a certificate for another host").await;

    let (cert, key) = ca.server("expired", &["localhost"], true, true);
    let expired = listener(&cert, &key, &[]);
    refused(&expired, None, "an expired certificate").await;

    let (cert, key) = ca.server("mutual", &["localhost"], true, false);
    let mutual = listener(&cert, &key, &["require_certificate true"]);
    refused(&mutual, None, "no client certificate where one is required").await;
    let (client_cert, client_key) = ca.client("dev-tls", "org-1/dev-tls");
    let options = BrokerOptions::parse(&format!("mqtts://127.0.0.1:{}", mutual.port()))
        .unwrap()
        .with_ca(&ca.path)
        .unwrap()
        .with_client_cert(&client_cert, &client_key)
        .unwrap();
    let device =
        DeviceClient::<D>::spawn(&options, settings(), Probe, Recorder::default()).unwrap();
    eventually(
        || device.stats().delivered >= 3,
        || format!("mutual TLS: {:?}", device.last_failure()),
    )
    .await;
    device.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// DESE-S3: a subscription the broker denies is reported, not silent. Mosquitto's dynamic
/// security plugin refuses the filters a client may not subscribe to (SUBACK 0x80; its plain
/// ACL file grants every subscription and filters on delivery). The device client and the
/// backend client each name the refused filters ([`DeviceClient::refused_subscriptions`]),
/// and go on working with the ones granted.
pub async fn refused_subscriptions<T: Transport>() {
    let dir = std::env::temp_dir().join(format!(
        "dese-refused-{}-{}",
        std::process::id(),
        std::any::type_name::<T>().replace("::", "-")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let plugin = ["x86_64-linux-gnu", "aarch64-linux-gnu", "mosquitto", ""]
        .iter()
        .map(|lib| {
            Path::new("/usr/lib")
                .join(lib)
                .join("mosquitto_dynamic_security.so")
        })
        .find(|path| path.exists())
        .expect("Mosquitto's dynamic security plugin (Debian's mosquitto package has it)");
    // Anonymous clients may subscribe to any device's telemetry and to every topic of dev-1.
    let security = dir.join("dynamic-security.json");
    std::fs::write(
        &security,
        serde_json::json!({
            "defaultACLAccess": {
                "publishClientSend": true,
                "publishClientReceive": true,
                "subscribe": false,
                "unsubscribe": true
            },
            "clients": [],
            "groups": [{"groupname": "anonymous", "roles": [{"rolename": "reader"}]}],
            "roles": [{"rolename": "reader", "acls": [
                {"acltype": "subscribePattern", "topic": "devices/+/+/telemetry", "priority": 0, "allow": true},
                {"acltype": "subscribePattern", "topic": "devices/org-1/dev-1/#", "priority": 0, "allow": true}
            ]}],
            "anonymousGroup": "anonymous"
        })
        .to_string(),
    )
    .unwrap();
    let broker = Mosquitto::start_with(MosquittoConfig {
        extra: vec![
            format!("plugin {}", plugin.display()),
            format!("plugin_opt_config_file {}", security.display()),
        ],
        ..MosquittoConfig::default()
    })
    .unwrap();
    let options = BrokerOptions::parse(&broker.url()).unwrap();
    let mut backend =
        BackendClient::<T>::spawn(&options, "backend-acl", BackendSettings::default(), None)
            .unwrap();
    eventually(
        || backend.refused_subscriptions().len() == 3,
        || {
            format!(
                "three of four filters refused: {:?}; broker log:\n{}",
                backend.refused_subscriptions(),
                broker.log()
            )
        },
    )
    .await;
    let refused: BTreeSet<String> = backend.refused_subscriptions().into_iter().collect();
    let expected: BTreeSet<String> = ["status", "alert", "command_response"]
        .iter()
        .map(|kind| format!("devices/+/+/{kind}"))
        .collect();
    assert_eq!(refused, expected);
    // The granted one works.
    let device = DeviceClient::<T>::spawn(
        &options,
        device_settings("org-1", "dev-1", 100),
        Probe,
        Recorder::default(),
    )
    .unwrap();
    wait_for(&mut backend, |e| matches!(e, Event::Telemetry { .. })).await;
    assert!(device.refused_subscriptions().is_empty());
    device.shutdown().await.unwrap();
    backend.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// DESE-S1: a wrong password is an `Auth` error that ends the client after one attempt (no
/// reconnect storm); the right one connects. Backends alike.
pub async fn wrong_password<D: Transport>() {
    let dir = std::env::temp_dir().join(format!(
        "dese-auth-{}-{}",
        std::process::id(),
        std::any::type_name::<D>().replace("::", "-")
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let passwords = dir.join("passwd");
    let tool = if std::path::Path::new("/usr/bin/mosquitto_passwd").exists() {
        "/usr/bin/mosquitto_passwd"
    } else {
        "mosquitto_passwd"
    };
    let made = std::process::Command::new(tool)
        .args(["-b", "-c"])
        .arg(&passwords)
        .args(["dev-1", "right"])
        .status()
        .unwrap();
    assert!(made.success());
    let broker = Mosquitto::start_with(MosquittoConfig {
        allow_anonymous: false,
        password_file: Some(passwords),
        ..MosquittoConfig::default()
    })
    .unwrap();
    let wrong = BrokerOptions::parse(&broker.url())
        .unwrap()
        .with_credentials("dev-1", "wrong");
    let device = DeviceClient::<D>::spawn(
        &wrong,
        device_settings("org-1", "dev-1", 200),
        Probe,
        Recorder::default(),
    )
    .unwrap();
    let error = tokio::time::timeout(Duration::from_secs(15), device.closed())
        .await
        .expect("refused credentials end the client")
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Auth, "{error}");
    let backend =
        BackendClient::<D>::spawn(&wrong, "backend-auth", BackendSettings::default(), None)
            .unwrap();
    let error = tokio::time::timeout(Duration::from_secs(15), backend.closed())
        .await
        .expect("refused credentials end the backend")
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Auth, "{error}");
    // Two refused attempts in all (the device's and the backend's), not a storm.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        broker.log().matches("not authorised").count(),
        2,
        "{}",
        broker.log()
    );

    let right = BrokerOptions::parse(&broker.url())
        .unwrap()
        .with_credentials("dev-1", "right");
    let device = DeviceClient::<D>::spawn(
        &right,
        device_settings("org-1", "dev-1", 200),
        Probe,
        Recorder::default(),
    )
    .unwrap();
    eventually(
        || device.stats().delivered >= 2,
        || format!("{:?}", device.stats()),
    )
    .await;
    device.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

/// DESE-D6: a broker that accepts and drops every connection gets a paced retry, not a storm,
/// and the client says why (an I/O failure) while it keeps trying.
pub async fn failing_broker_backoff<D: Transport>() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            counter.fetch_add(1, Ordering::SeqCst);
            drop(stream); // closed at once, before any CONNACK
        }
    });
    let options = BrokerOptions::parse(&format!("mqtt://127.0.0.1:{port}")).unwrap();
    let mut settings = device_settings("org-1", "dev-1", 200);
    settings.backoff = dese_device::Backoff::DEFAULT;
    let device = DeviceClient::<D>::spawn(&options, settings, Probe, Recorder::default()).unwrap();
    eventually(
        || device.last_failure().is_some(),
        || "no failure reported".into(),
    )
    .await;
    assert_eq!(device.last_failure().unwrap().kind, ErrorKind::Io);
    tokio::time::sleep(Duration::from_millis(3500)).await;
    // Full jitter under ceilings of 1, 2, 4, 8 s... allows a few attempts in 3.5 s; eight would
    // need seven short draws in a row (odds about one in a million). A storm would be hundreds.
    let attempts = accepted.load(Ordering::SeqCst);
    assert!((2..=8).contains(&attempts), "{attempts} attempts in 3.5 s");
    assert!(!device.is_connected());
    device.shutdown().await.unwrap();
}

/// DESE-C5 for commands that take time: a device started with
/// [`DeviceClient::spawn_deferred`] carries out a `set_pump` that takes two seconds while it
/// answers another command at once and goes on publishing readings; a copy of the slow command
/// delivered while it runs is neither handed out again nor answered early; the slow command
/// then completes on the backend, correlated, answered once. A command the application drops
/// unanswered is answered as failed; one finished just before the client shuts down is
/// answered by its goodbye.
pub async fn deferred_commands<T: Transport>() {
    let broker = Mosquitto::start().unwrap();
    let options = BrokerOptions::parse(&broker.url()).unwrap();
    let settings = BackendSettings {
        command_timeout: Duration::from_secs(10),
        retries: 0,
        ..BackendSettings::default()
    };
    let mut backend =
        BackendClient::<T>::spawn(&options, "conformance-deferred", settings, None).unwrap();
    let mut device = DeviceClient::<T>::spawn_deferred(
        &options,
        device_settings("org-1", "dev-deferred", 60_000),
        NoSensors,
    )
    .unwrap();
    wait_for(&mut backend, online).await;
    let (org, dev) = ids("org-1", "dev-deferred");
    let handle = backend.handle();
    // A command sent from its own task: its outcome comes when the device answers.
    let send = |action: Action| {
        let (handle, org, dev) = (handle.clone(), org.clone(), dev.clone());
        tokio::spawn(async move { handle.send_command(org, dev, action).await.unwrap() })
    };
    let pump = Action::SetPump {
        pump_id: 1,
        state: PumpState::On,
        duration: Some(2),
    };
    let slow = send(pump);
    let running = tokio::time::timeout(Duration::from_secs(10), device.next_command())
        .await
        .expect("the command handed out")
        .unwrap();
    assert_eq!(running.action().name(), "set_pump");
    let started = StdInstant::now();
    let answers = Subscriber::connect(
        broker.addr(),
        "conformance-deferred-answers",
        "devices/org-1/dev-deferred/command_response",
    )
    .await
    .unwrap();

    // A copy of the running command, as a broker delivers one again: not handed out.
    let copy = Command {
        command_id: running.command_id().clone(),
        device_id: dev.clone(),
        action: running.action().clone(),
        timestamp: Timestamp::from_unix_millis(1_737_972_000_000).unwrap(),
    };
    let mut publisher = Publisher::connect(broker.addr(), "conformance-deferred-copy")
        .await
        .unwrap();
    publisher
        .publish(
            "devices/org-1/dev-deferred/commands",
            encode(&Message::Command(copy)).unwrap(),
            false,
        )
        .await
        .unwrap();
    assert!(publisher.flush(Duration::from_secs(5)).await);
    eventually(
        || device.stats().commands_duplicate_running == 1,
        || format!("{:?}", device.stats()),
    )
    .await;

    // While the pump runs: another command is answered, and readings go out.
    let quick = send(Action::Reboot);
    let reboot = tokio::time::timeout(Duration::from_secs(10), device.next_command())
        .await
        .expect("the second command handed out")
        .unwrap();
    assert_eq!(reboot.action().name(), "reboot");
    reboot.finish(Ok(None));
    let (_, outcome) = quick.await.unwrap();
    assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
    device.publish_readings(reading()).unwrap();
    wait_for(&mut backend, |e| matches!(e, Event::Telemetry { .. })).await;

    // The pump's two seconds.
    tokio::time::sleep(Duration::from_secs(2).saturating_sub(started.elapsed())).await;
    let mut data = JsonObject::new();
    data.insert("pump_state".into(), "on".into());
    assert!(
        !slow.is_finished(),
        "the backend had no answer before the application finished the command"
    );
    running.finish(Ok(Some(data)));
    let (id, outcome) = slow.await.unwrap();
    let Outcome::Completed(response) = outcome else {
        panic!("{outcome:?}")
    };
    assert_eq!(response.command_id, id);
    assert_eq!(response.response.unwrap()["pump_state"], "on");
    // Answered once: the reboot's answer and the pump's, nothing for the copy.
    eventually(|| answers.received() >= 2, || "two answers".into()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(answers.received(), 2, "one answer per command");

    // Dropped without an answer: answered as failed, so the backend does not wait for ever.
    let dropped = send(Action::ResetConfig);
    let command = tokio::time::timeout(Duration::from_secs(10), device.next_command())
        .await
        .expect("the third command handed out")
        .unwrap();
    drop(command);
    let (_, outcome) = dropped.await.unwrap();
    assert!(
        matches!(&outcome, Outcome::Failed(r) if r.error.as_deref().is_some_and(|e| e.contains("dropped"))),
        "{outcome:?}"
    );
    // Finished just before the shutdown: the goodbye sends its answer.
    let last = send(Action::Reboot);
    let command = tokio::time::timeout(Duration::from_secs(10), device.next_command())
        .await
        .expect("the fourth command handed out")
        .unwrap();
    command.finish(Ok(None));
    // The counters as the client ended: none of its steps still to report.
    let stats = device.shutdown().await.unwrap();
    let (_, outcome) = last.await.unwrap();
    assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
    assert_eq!(
        (stats.commands_run, stats.commands_duplicate_running),
        (4, 1),
        "{stats:?}"
    );
    answers.disconnect().await;
    backend.shutdown().await.unwrap();
}
