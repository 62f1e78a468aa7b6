//! The reference backend's storage, the same tests on SQLite and on a real PostgreSQL: a batch
//! in one transaction, idempotent inserts (a copy stored once, distinct readings that share a
//! timestamp both kept), which events were new, the summary; on PostgreSQL also instances
//! writing the same messages at once, migrations run by instances starting together, and a
//! schema newer than the backend refused (on SQLite, any version it does not write).

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

use std::sync::Arc;

use dese_backend::{DeviceKey, DropError, DropReason, Event, Outcome};
use dese_protocol::{
    Alert, CommandId, CommandResponse, DeviceState, Finite, MessageKind, Reason, Sensor, Severity,
    Status, Telemetry, Timestamp,
};
use dese_reference_backend::{Database, Store, StoreError};
use dese_sim::fleet;
use dese_testkit::Postgres;

fn key() -> DeviceKey {
    DeviceKey {
        org: "acme".parse().unwrap(),
        device: fleet::device(1),
    }
}

fn reading(seq: u64, ph: f64) -> Telemetry {
    let (topic, payload) = fleet::telemetry(&key().org, &key().device, seq);
    let dese_protocol::Message::Telemetry(mut t) =
        dese_protocol::decode(&topic, &payload).unwrap().message
    else {
        unreachable!()
    };
    t.sensors.ph = dese_protocol::Ph::new(ph).unwrap();
    t
}

fn at(text: &str) -> Timestamp {
    text.parse().unwrap()
}

/// One batch of every kind of event, with a reading twice and two distinct readings that share
/// a timestamp.
fn batch() -> Vec<Event> {
    let device = key();
    let answer = |id: &str| CommandResponse {
        command_id: CommandId::parse(id).unwrap(),
        success: true,
        response: None,
        error: None,
        timestamp: at("2025-01-27T10:00:05Z"),
    };
    vec![
        Event::Telemetry {
            device: device.clone(),
            telemetry: reading(0, 7.1),
        },
        Event::Telemetry {
            device: device.clone(),
            telemetry: reading(0, 7.3),
        },
        Event::Telemetry {
            device: device.clone(),
            telemetry: reading(0, 7.1),
        },
        Event::PresenceChanged {
            device: device.clone(),
            from: None,
            to: DeviceState::Online,
        },
        Event::Status {
            device: device.clone(),
            status: Status {
                status: DeviceState::Online,
                battery: None,
                signal_strength: None,
                firmware_version: "1.0.0".into(),
                timestamp: at("2025-01-27T10:00:00.5Z"),
            },
        },
        Event::Alert {
            device: device.clone(),
            alert: Alert {
                severity: Severity::Warning,
                message: "pH high".into(),
                sensor: Some(Sensor::Ph),
                value: Some(Finite::new(7.9).unwrap()),
                threshold: Some(Finite::new(7.6).unwrap()),
                timestamp: at("2025-01-27T10:00:01Z"),
            },
        },
        Event::Command {
            device: device.clone(),
            command_id: CommandId::parse("cmd-a-1-1").unwrap(),
            outcome: Outcome::Completed(answer("cmd-a-1-1")),
        },
        Event::LateResponse {
            device: device.clone(),
            response: answer("cmd-a-1-2"),
        },
        Event::Dropped {
            topic: "devices/acme/dev-00001/telemetry".into(),
            reason: DropReason::Invalid(Reason::WrongType),
            error: DropError::Decode(
                dese_protocol::decode(
                    "devices/acme/dev-00001/telemetry",
                    br#"{"device_id":"dev-00001","timestamp":"2025-01-27T10:00:00Z","organization_id":"acme","sensors":{"ph":"7","chlorine":1,"temperature":20},"metadata":{"firmware_version":"1"}}"#,
                )
                .unwrap_err(),
            ),
        },
        Event::Duplicate {
            device,
            kind: MessageKind::Telemetry,
        },
    ]
}

/// The scenario, on either database.
async fn idempotent_batches(db: &Database) {
    let store = Store::open(db).await.unwrap();
    store
        .command_sent("cmd-a-1-1", &key(), "set_pump")
        .await
        .unwrap();
    let first = store.write(Arc::new(batch())).await.unwrap();
    assert_eq!(
        first.new,
        [true, true, false, true, true, true, true, true, true, false],
        "the copy of the first reading and the duplicate store nothing"
    );
    let summary = store.summary().await.unwrap();
    assert_eq!(
        (summary.telemetry, summary.statuses, summary.alerts),
        (2, 1, 1),
        "{summary:?}"
    );
    assert_eq!(
        summary.commands,
        [("completed".to_string(), 1), ("late".to_string(), 1)]
    );
    assert_eq!(summary.presence, [("online".to_string(), 1)]);
    assert_eq!(summary.dropped, [("wrong_type".to_string(), 1)]);
    assert_eq!(
        store.outcome_of("cmd-a-1-1").await.unwrap().as_deref(),
        Some("completed")
    );

    // The whole batch again, as after a crash before the acknowledgements: nothing new that
    // is data; presence and outcomes are rewritten to the same; refusals are counted again.
    let again = store.write(Arc::new(batch())).await.unwrap();
    assert_eq!(
        again.new,
        [
            false, false, false, true, false, false, true, true, true, false
        ]
    );
    let summary = store.summary().await.unwrap();
    assert_eq!(
        (summary.telemetry, summary.statuses, summary.alerts),
        (2, 1, 1)
    );
    assert_eq!(summary.dropped, [("wrong_type".to_string(), 2)]);
}

#[tokio::test]
async fn sqlite_batches_are_idempotent() {
    let dir = std::env::temp_dir().join(format!("dese-store-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    idempotent_batches(&Database::Sqlite(dir.join("dese.sqlite"))).await;
    let _ = std::fs::remove_dir_all(dir);
}

// A file whose schema version this backend does not write is refused, naming both versions
// and the file, and left as it was.
#[tokio::test]
async fn sqlite_refuses_another_schema_version() {
    let dir = std::env::temp_dir().join(format!("dese-store-version-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("other.sqlite");
    drop(Store::open(&Database::Sqlite(path.clone())).await.unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .pragma_update(None, "user_version", 9)
        .unwrap();
    let error = Store::open(&Database::Sqlite(path.clone()))
        .await
        .unwrap_err();
    assert!(
        matches!(&error, StoreError::Schema(text)
            if text.contains("version 9") && text.contains("version 1") && text.contains("other.sqlite")),
        "{error}"
    );
    let version: i64 = rusqlite::Connection::open(&path)
        .unwrap()
        .query_row("PRAGMA user_version", [], |row| row.get(0))
        .unwrap();
    assert_eq!(version, 9, "the file is left as it was");
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn postgres_batches_are_idempotent() {
    let server = Postgres::start().unwrap();
    idempotent_batches(&Database::parse(&server.url())).await;
}

// Three instances start at once on one database (the migrations run once, in turn) and write
// the same readings at once (as after a redelivery to another instance of the group): each
// reading is stored once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_instances_at_once_store_each_reading_once() {
    let server = Postgres::start().unwrap();
    let db = Database::parse(&server.url());
    let opened = futures_join(Store::open(&db), Store::open(&db), Store::open(&db)).await;
    let stores: Vec<Store> = opened.into_iter().map(Result::unwrap).collect();
    let events: Arc<Vec<Event>> = Arc::new(
        (0..500)
            .map(|seq| Event::Telemetry {
                device: key(),
                telemetry: reading(seq, 7.0),
            })
            .collect(),
    );
    let writes = futures_join(
        stores[0].write(Arc::clone(&events)),
        stores[1].write(Arc::clone(&events)),
        stores[2].write(Arc::clone(&events)),
    )
    .await;
    let new: usize = writes
        .into_iter()
        .map(|w| w.unwrap().new.into_iter().filter(|n| *n).count())
        .sum();
    assert_eq!(new, 500, "each reading new to exactly one instance");
    assert_eq!(stores[0].summary().await.unwrap().telemetry, 500);
}

// A database whose schema is newer than this backend knows is refused, naming both versions.
#[tokio::test]
async fn postgres_refuses_a_newer_schema() {
    let server = Postgres::start().unwrap();
    let db = Database::parse(&server.url());
    drop(Store::open(&db).await.unwrap());
    let out = std::process::Command::new("psql")
        .args([
            &server.url(),
            "-c",
            "INSERT INTO dese_migrations (version) VALUES (99)",
        ])
        .output()
        .unwrap();
    assert!(out.status.success());
    let error = Store::open(&db).await.unwrap_err();
    assert!(
        matches!(&error, StoreError::Schema(text) if text.contains("version 99") && text.contains("up to 1")),
        "{error}"
    );
}

/// Three futures at once, their results in order.
async fn futures_join<T>(
    a: impl Future<Output = T>,
    b: impl Future<Output = T>,
    c: impl Future<Output = T>,
) -> Vec<T> {
    let (a, b, c) = tokio::join!(a, b, c);
    vec![a, b, c]
}
