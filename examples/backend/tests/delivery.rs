//! The reference backend on a real Mosquitto keeps every reading the broker handed it, exactly
//! once: a burst of 20,000 readings from 1,000 devices, the backend killed with SIGKILL in the
//! middle of one and started again, and a database that refuses writes for a while.
//!
//!     cargo test -p dese-reference-backend --test delivery -- --nocapture   # with the figures

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dese_paho::Paho;
use dese_protocol::OrgId;
use dese_reference_backend::{Activity, BackendOptions, ReferenceBackend};
use dese_rumqttc::{BrokerOptions, Rumqttc};
use dese_sim::fleet;
use dese_testkit::Mosquitto;
use dese_testkit::raw::Publisher;
use dese_transport::Transport;
use rusqlite::Connection;

const DEVICES: u64 = 1_000;
const PER_DEVICE: u64 = 20;
const READINGS: u64 = DEVICES * PER_DEVICE;
/// The receive window of the killed backend: with paho, the most a crash can lose.
const WINDOW: u64 = 256;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dese-delivery-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Publishes the burst: reading `seq` of every device in turn, as a fleet replaying its
/// outboxes after an outage does (each device 20 readings, inside the default rate limit).
async fn burst(broker: &Mosquitto, name: &str) -> Publisher {
    let org: OrgId = "acme".parse().unwrap();
    let mut publisher = Publisher::connect(broker.addr(), name).await.unwrap();
    for n in 0..READINGS {
        let device = fleet::device((n % DEVICES) as usize);
        let (topic, payload) = fleet::telemetry(&org, &device, n / DEVICES);
        publisher.publish(&topic, payload, false).await.unwrap();
    }
    publisher
}

/// (rows, distinct readings) in the database's telemetry table.
fn rows(db: &Path) -> (u64, u64) {
    let Ok(db) = Connection::open(db) else {
        return (0, 0);
    };
    let count = |sql: &str| -> u64 { db.query_row(sql, [], |row| row.get(0)).unwrap_or(0) };
    (
        count("SELECT count(*) FROM telemetry"),
        count("SELECT count(*) FROM (SELECT DISTINCT org, device, timestamp FROM telemetry)"),
    )
}

/// Waits until the database holds `count` readings, at most `within`, or until nothing new
/// has been stored for 5 s.
async fn until_stored(db: &Path, count: u64, within: Duration) -> (u64, u64) {
    let deadline = Instant::now() + within;
    let (mut last, mut since) = (rows(db), Instant::now());
    loop {
        let now = rows(db);
        if now != last {
            (last, since) = (now, Instant::now());
        }
        if now.0 >= count || Instant::now() >= deadline || since.elapsed() > Duration::from_secs(5)
        {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn burst_stored_once<T: Transport>(name: &str) {
    let broker = Mosquitto::start().unwrap();
    let dir = scratch(name);
    let db = dir.join("dese.sqlite");
    let mut options = BackendOptions::new(&db);
    options.client_id = format!("burst-{name}");
    options.config = None;
    let backend =
        ReferenceBackend::spawn::<T>(&BrokerOptions::parse(&broker.url()).unwrap(), options)
            .await
            .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await; // connected and subscribed
    let started = Instant::now();
    let publisher = burst(&broker, &format!("fleet-{name}")).await;
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

/// The reference backend binary, storing into `db` from `broker` as `client_id`.
fn start_binary(broker: &Mosquitto, db: &Path, client_id: &str, transport: &str) -> Child {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dese-backend"))
        .args(["--broker", &broker.url(), "--db", db.to_str().unwrap()])
        .args(["--client-id", client_id, "--transport", transport])
        .args(["--receive-window", &WINDOW.to_string()])
        .args(["--no-config", "--no-react"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("  backend: {line}");
        }
    });
    child
}

/// Waits until the broker's log shows `client_id` connected (its log line names it), then a
/// moment for its subscriptions.
async fn connected(broker: &Mosquitto, client_id: &str, times: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let needle = format!(" as {client_id} ");
    while broker.log().matches(&needle).count() < times {
        assert!(Instant::now() < deadline, "{client_id} never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Kills the backend with SIGKILL when 4,000 readings are stored, starts it again with its
/// client id, and counts what the database holds at the end. Returns (lost, rows).
async fn killed_mid_stream(transport: &str) -> (u64, u64) {
    let broker = Mosquitto::start().unwrap();
    let dir = scratch(&format!("kill-{transport}"));
    let db = dir.join("dese.sqlite");
    let client_id = format!("killed-{transport}");
    let mut first = start_binary(&broker, &db, &client_id, transport);
    connected(&broker, &client_id, 1).await;
    let stream = {
        let addr = broker.addr();
        let name = format!("fleet-kill-{transport}");
        tokio::spawn(async move {
            let org: OrgId = "acme".parse().unwrap();
            let mut publisher = Publisher::connect(addr, &name).await.unwrap();
            for n in 0..READINGS {
                let device = fleet::device((n % DEVICES) as usize);
                let (topic, payload) = fleet::telemetry(&org, &device, n / DEVICES);
                publisher.publish(&topic, payload, false).await.unwrap();
                if n % 100 == 0 {
                    // A stream, not one write: the kill lands in the middle of it.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }
            assert!(publisher.flush(Duration::from_secs(60)).await);
        })
    };
    let (at_kill, _) = until_stored(&db, 4_000, Duration::from_secs(60)).await;
    // SIGKILL, of the process this test started: no goodbye, no last commit.
    Command::new("kill")
        .args(["-KILL", &first.id().to_string()])
        .status()
        .unwrap();
    let _ = first.wait();
    let mut second = start_binary(&broker, &db, &client_id, transport);
    stream.await.unwrap();
    // The broker kept the session's messages while the backend was gone.
    let (stored, distinct) = until_stored(&db, READINGS, Duration::from_secs(120)).await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let (stored_after, _) = rows(&db);
    Command::new("kill")
        .args(["-INT", &second.id().to_string()])
        .status()
        .unwrap();
    assert!(second.wait().unwrap().success());
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
    let db = dir.join("dese.sqlite");
    let broker_options = BrokerOptions::parse(&broker.url()).unwrap();
    let options = || {
        let mut options = BackendOptions::new(&db);
        options.client_id = "failing-db".to_string();
        options.config = None;
        options
    };
    let mut backend = ReferenceBackend::spawn::<Rumqttc>(&broker_options, options())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let admin = Connection::open(&db).unwrap();
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
