//! The reference backend on a real Mosquitto keeps every reading the broker handed it, exactly
//! once: a burst of 20,000 readings from 1,000 devices, the backend killed with SIGKILL in the
//! middle of one and started again, and a database that refuses writes for a while.
//!
//!     cargo test -p dese-reference-backend --test delivery -- --nocapture   # with the figures

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

mod support;

use std::time::{Duration, Instant};

use dese_paho::Paho;
use dese_protocol::OrgId;
use dese_reference_backend::{Activity, BackendOptions, Database, ReferenceBackend};
use dese_rumqttc::{BrokerOptions, Rumqttc};
use dese_sim::fleet;
use dese_testkit::Mosquitto;
use dese_testkit::raw::Publisher;
use dese_transport::Transport;
use rusqlite::Connection;

use support::{connected, kill, publish_fleet, rows, scratch, start_binary, stop, until_stored};

const DEVICES: u64 = 1_000;
const PER_DEVICE: u64 = 20;
const READINGS: u64 = DEVICES * PER_DEVICE;
/// The receive window of the killed backend: with paho, the most a crash can lose.
const WINDOW: u64 = 256;

async fn burst_stored_once<T: Transport>(name: &str) {
    let broker = Mosquitto::start().unwrap();
    let dir = scratch(name);
    let db = Database::Sqlite(dir.join("dese.sqlite"));
    let mut options = BackendOptions::new(db.clone());
    options.client_id = format!("burst-{name}");
    options.config = None;
    let backend =
        ReferenceBackend::spawn::<T>(&BrokerOptions::parse(&broker.url()).unwrap(), options)
            .await
            .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await; // connected and subscribed
    let started = Instant::now();
    let publisher = publish_fleet(&broker, &format!("fleet-{name}"), READINGS, DEVICES, None).await;
    assert!(publisher.flush(Duration::from_secs(60)).await);
    let (stored, distinct) = until_stored(&db, READINGS, Duration::from_secs(120)).await;
    let elapsed = started.elapsed();
    // Nothing more arrives: not a reading twice.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(
        rows(&db),
        (READINGS, READINGS),
        "every reading exactly once"
    );
    println!(
        "{name}: burst of {READINGS} readings from {DEVICES} devices: stored {stored} ({distinct} distinct) in {elapsed:.1?}"
    );
    backend.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_burst_of_20000_readings_is_stored_exactly_once() {
    burst_stored_once::<Rumqttc>("rumqttc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_burst_of_20000_readings_is_stored_exactly_once() {
    burst_stored_once::<Paho>("paho").await;
}

/// Kills the backend with SIGKILL when 4,000 readings are stored, starts it again with its
/// client id, and counts what the database holds at the end. Returns (lost, rows).
async fn killed_mid_stream(transport: &str) -> (u64, u64) {
    let broker = Mosquitto::start().unwrap();
    let dir = scratch(&format!("kill-{transport}"));
    let db = Database::Sqlite(dir.join("dese.sqlite"));
    let client_id = format!("killed-{transport}");
    let window = WINDOW.to_string();
    let args = [
        "--transport",
        transport,
        "--receive-window",
        window.as_str(),
    ];
    let (mut first, _) = start_binary(&broker, &db, &client_id, &args);
    connected(&broker, &client_id, 1).await;
    // A stream, not one write: the kill lands in the middle of it.
    let stream = {
        let name = format!("fleet-kill-{transport}");
        let broker = &broker;
        async move {
            let publisher = publish_fleet(broker, &name, READINGS, DEVICES, Some(100)).await;
            assert!(publisher.flush(Duration::from_secs(60)).await);
        }
    };
    let kill_at_4000 = async {
        let (at_kill, _) = until_stored(&db, 4_000, Duration::from_secs(60)).await;
        // SIGKILL, of the process this test started: no goodbye, no last commit.
        kill(&mut first);
        at_kill
    };
    let ((), at_kill) = tokio::join!(stream, kill_at_4000);
    let (mut second, _) = start_binary(&broker, &db, &client_id, &args);
    // The broker kept the session's messages while the backend was gone.
    let (stored, distinct) = until_stored(&db, READINGS, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (stored_after, _) = rows(&db);
    assert!(stop(&mut second));
    assert_eq!(stored, distinct, "no reading stored twice");
    assert_eq!(stored_after, stored, "nothing more came");
    println!(
        "{transport}: killed with SIGKILL at {at_kill} stored, started again: {stored} of {READINGS} stored, {} lost, 0 duplicate rows",
        READINGS - stored
    );
    let _ = std::fs::remove_dir_all(dir);
    (READINGS - stored, stored)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rumqttc_backend_killed_mid_stream_loses_nothing() {
    let (lost, _) = killed_mid_stream("rumqttc").await;
    assert_eq!(lost, 0, "every reading the broker handed over is stored");
}

// The Paho C library acknowledges a message as it arrives: a crash loses what was received
// and not yet committed, at most the receive window. Measured, and bounded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paho_backend_killed_mid_stream_loses_at_most_the_window() {
    let (lost, _) = killed_mid_stream("paho").await;
    assert!(lost <= WINDOW, "{lost} lost, more than the receive window");
}

/// A database that refuses every telemetry insert: the backend says so, confirms nothing, and
/// what it had not stored reaches the next session once the database works again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_database_confirms_nothing() {
    const SENT: u64 = 200;
    let broker = Mosquitto::start().unwrap();
    let dir = scratch("failing");
    let path = dir.join("dese.sqlite");
    let db = Database::Sqlite(path.clone());
    let broker_options = BrokerOptions::parse(&broker.url()).unwrap();
    let options = || {
        let mut options = BackendOptions::new(&path);
        options.client_id = "failing-db".to_string();
        options.config = None;
        options
    };
    let mut backend = ReferenceBackend::spawn::<Rumqttc>(&broker_options, options())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let admin = Connection::open(&path).unwrap();
    admin
        .execute_batch(
            "CREATE TRIGGER broken BEFORE INSERT ON telemetry
             BEGIN SELECT RAISE(ABORT, 'the disk is on fire'); END;",
        )
        .unwrap();
    let org: OrgId = "acme".parse().unwrap();
    let mut publisher = Publisher::connect(broker.addr(), "fleet-failing")
        .await
        .unwrap();
    for seq in 0..SENT {
        let (topic, payload) = fleet::telemetry(&org, &fleet::device((seq % 10) as usize), seq);
        publisher.publish(&topic, payload, false).await.unwrap();
    }
    assert!(publisher.flush(Duration::from_secs(10)).await);
    let deadline = Instant::now() + Duration::from_secs(10);
    let failure = loop {
        let activity = tokio::time::timeout(Duration::from_secs(10), backend.activity())
            .await
            .unwrap()
            .unwrap();
        if let Activity::StoreFailed { error, attempt, .. } = activity {
            if attempt >= 2 {
                break error;
            }
        }
        assert!(Instant::now() < deadline, "no write failure reported");
    };
    assert!(failure.contains("the disk is on fire"), "{failure}");
    assert_eq!(rows(&db).0, 0);
    // Stopped while failing: nothing was confirmed, so the broker still has every reading.
    backend.shutdown().await.unwrap();
    admin.execute_batch("DROP TRIGGER broken").unwrap();
    let backend = ReferenceBackend::spawn::<Rumqttc>(&broker_options, options())
        .await
        .unwrap();
    let stored = until_stored(&db, SENT, Duration::from_secs(20)).await;
    assert_eq!(stored, (SENT, SENT), "everything, once");
    backend.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(dir);
}
