//! Three reference backends in one shared-subscription group on one PostgreSQL, on a real
//! Mosquitto: 50,000 readings from 1,000 devices stored once each through a SIGKILL of one
//! instance; 300 commands from the three instances in turn, all completed; an instance that
//! joins last knows every device's presence.
//!
//!     cargo test -p dese-reference-backend --test scale -- --nocapture   # with the figures

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

mod support;

use std::time::{Duration, Instant};

use dese_backend::Outcome;
use dese_protocol::{Action, DeviceState, OrgId, PumpState, Status, TelemetryInterval, Timestamp};
use dese_reference_backend::{BackendOptions, Database, ReferenceBackend};
use dese_reference_device::{DeviceOptions, ReferenceDevice};
use dese_rumqttc::{BrokerOptions, Rumqttc};
use dese_sim::fleet;
use dese_testkit::raw::Publisher;
use dese_testkit::{Mosquitto, Postgres};

use support::{connected, count, kill, publish_fleet, start_binary, stop, until_stored};

const DEVICES: u64 = 1_000;
const READINGS: u64 = 50_000;

/// The instance's share, from its last line ("this instance received N telemetry, ...").
fn received(lines: &std::sync::mpsc::Receiver<String>) -> Option<u64> {
    lines.try_iter().find_map(|line| {
        let rest = line.strip_prefix("dese-backend: this instance received ")?;
        rest.split_whitespace().next()?.parse().ok()
    })
}

// Each reading stored once (0 lost, 0 duplicate rows) by three instances that split them, one of
// them killed with SIGKILL in the middle and started again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_store_every_reading_once_through_a_sigkill() {
    let broker = Mosquitto::start().unwrap();
    let postgres = Postgres::start().unwrap();
    let db = Database::parse(&postgres.url());
    let group = ["--group", "scale"];
    let ids = ["scale-a", "scale-b", "scale-c"];
    let mut instances: Vec<_> = ids
        .iter()
        .map(|id| start_binary(&broker, &db, id, &group))
        .collect();
    for id in ids {
        connected(&broker, id, 1).await;
    }
    let started = Instant::now();
    let stream = async {
        let publisher = publish_fleet(&broker, "fleet-scale", READINGS, DEVICES, Some(200)).await;
        assert!(publisher.flush(Duration::from_secs(120)).await);
    };
    let kill_one = async {
        let (at_kill, _) = until_stored(&db, 15_000, Duration::from_secs(120)).await;
        kill(&mut instances[1].0);
        at_kill
    };
    let ((), at_kill) = tokio::join!(stream, kill_one);
    instances[1] = start_binary(&broker, &db, ids[1], &group);
    let (stored, distinct) = until_stored(&db, READINGS, Duration::from_secs(180)).await;
    let elapsed = started.elapsed();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut split = Vec::new();
    for (child, lines) in &mut instances {
        assert!(stop(child), "a clean stop");
        split.push(received(lines).unwrap_or(0));
    }
    assert_eq!(
        (stored, distinct),
        (READINGS, READINGS),
        "every reading once"
    );
    assert_eq!(
        count(&db, "SELECT count(*) FROM telemetry"),
        READINGS,
        "nothing more came"
    );
    println!(
        "three instances on PostgreSQL: {stored} of {READINGS} readings from {DEVICES} devices stored once, 0 lost, in {elapsed:.1?}; scale-b killed with SIGKILL at {at_kill} stored; received by a {}, b after its restart {}, c {}",
        split[0], split[1], split[2]
    );
}

// 300 commands sent in turn from three instances to 30 devices all complete where they were
// sent; an instance that joins afterwards knows the presence of every one of 1,030 devices.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_complete_on_their_instance_and_a_late_instance_knows_every_device() {
    const ANSWERING: usize = 30;
    const COMMANDS: usize = 300;
    let broker = Mosquitto::start().unwrap();
    let postgres = Postgres::start().unwrap();
    let db = Database::parse(&postgres.url());
    let options = BrokerOptions::parse(&broker.url()).unwrap();
    let backend = |id: &str| {
        let mut o = BackendOptions::new(db.clone());
        o.client_id = id.to_string();
        o.settings.instance = id.to_string();
        o.group = Some("scale".parse().unwrap());
        o.config = None;
        o.react_to_alerts = false;
        o
    };
    let mut instances = Vec::new();
    for id in ["a", "b", "c"] {
        instances.push(
            ReferenceBackend::spawn::<Rumqttc>(&options, backend(id))
                .await
                .unwrap(),
        );
    }
    for id in ["a", "b", "c"] {
        connected(&broker, id, 1).await;
    }
    // 1,000 devices that only say they are online (retained), and 30 that answer commands.
    let org: OrgId = "acme".parse().unwrap();
    let mut publisher = Publisher::connect(broker.addr(), "fleet-presence")
        .await
        .unwrap();
    for index in 0..DEVICES as usize {
        let device = fleet::device(index);
        let status = dese_protocol::Message::Status(Status {
            status: DeviceState::Online,
            battery: None,
            signal_strength: None,
            firmware_version: "fleet-1.0.0".into(),
            timestamp: Timestamp::from_unix_millis(1_737_972_000_000).unwrap(),
        });
        let topic = format!("devices/acme/{device}/status");
        publisher
            .publish(&topic, dese_protocol::encode(&status).unwrap(), true)
            .await
            .unwrap();
    }
    assert!(publisher.flush(Duration::from_secs(30)).await);
    let mut devices = Vec::new();
    for n in 0..ANSWERING {
        let mut o = DeviceOptions::new(org.clone(), format!("answers-{n:02}").parse().unwrap());
        o.telemetry_interval = TelemetryInterval::new(86_400_000).unwrap();
        devices.push(ReferenceDevice::<Rumqttc>::spawn(&options, o).unwrap());
    }
    let known = async |instance: &ReferenceBackend| {
        instance
            .devices()
            .await
            .unwrap()
            .iter()
            .filter(|(_, p)| p.state == DeviceState::Online)
            .count()
    };
    let everyone = DEVICES as usize + ANSWERING;
    let deadline = Instant::now() + Duration::from_secs(30);
    for instance in &instances {
        while known(instance).await < everyone {
            assert!(Instant::now() < deadline, "presence incomplete");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    let started = Instant::now();
    let mut sent = tokio::task::JoinSet::new();
    for n in 0..COMMANDS {
        let commander = instances[n % 3].commander();
        let device = format!("answers-{:02}", n % ANSWERING).parse().unwrap();
        let org = org.clone();
        sent.spawn(async move {
            let action = Action::SetPump {
                pump_id: 1,
                state: PumpState::On,
                duration: Some(1),
            };
            commander.send(org, device, action).await.unwrap()
        });
    }
    let mut completed = 0;
    while let Some(result) = sent.join_next().await {
        let (id, outcome) = result.unwrap();
        assert!(
            matches!(&outcome, Outcome::Completed(r) if r.command_id == id),
            "{outcome:?}"
        );
        completed += 1;
    }
    let elapsed = started.elapsed();
    assert_eq!(completed, COMMANDS);
    let deadline = Instant::now() + Duration::from_secs(10);
    while count(
        &db,
        "SELECT count(*) FROM commands WHERE outcome = 'completed'",
    ) < COMMANDS as u64
    {
        assert!(Instant::now() < deadline, "every outcome stored");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // An instance that joins last learns every device's presence from the retained statuses.
    let late = ReferenceBackend::spawn::<Rumqttc>(&options, backend("d"))
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while known(&late).await < everyone {
        assert!(
            Instant::now() < deadline,
            "the late instance's presence is incomplete"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "three instances: {completed} of {COMMANDS} commands completed where sent, in {elapsed:.1?}; an instance started last knows {everyone} of {everyone} devices"
    );
    late.shutdown().await.unwrap();
    for device in devices {
        device.shutdown().await.unwrap();
    }
    for instance in instances {
        instance.shutdown().await.unwrap();
    }
}
