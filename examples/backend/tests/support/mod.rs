//! What the reference backend's integration tests share: scratch folders, the binary, the
//! database's counts on SQLite and PostgreSQL alike, a fleet's readings.

#![allow(dead_code)] // each test file uses its part

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dese_protocol::OrgId;
use dese_reference_backend::Database;
use dese_sim::fleet;
use dese_testkit::Mosquitto;
use dese_testkit::raw::Publisher;

/// A fresh folder for one test.
pub(crate) fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dese-backend-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// One number the database answers to `sql`, 0 when it cannot (not created yet).
pub(crate) fn count(db: &Database, sql: &str) -> u64 {
    match db {
        Database::Sqlite(path) => rusqlite::Connection::open(path)
            .and_then(|db| db.query_row(sql, [], |row| row.get(0)))
            .unwrap_or(0),
        Database::Postgres(url) => Command::new("psql")
            .args([url.as_str(), "-At", "-c", sql])
            .output()
            .ok()
            .filter(|out| out.status.success())
            .and_then(|out| String::from_utf8(out.stdout).ok()?.trim().parse().ok())
            .unwrap_or(0),
    }
}

/// (rows, distinct readings) in the telemetry table.
pub(crate) fn rows(db: &Database) -> (u64, u64) {
    (
        count(db, "SELECT count(*) FROM telemetry"),
        count(
            db,
            "SELECT count(*) FROM (SELECT DISTINCT org, device, timestamp FROM telemetry) AS d",
        ),
    )
}

/// Waits until the database holds `readings` readings, at most `within`, or until nothing new
/// has been stored for 5 s.
pub(crate) async fn until_stored(db: &Database, readings: u64, within: Duration) -> (u64, u64) {
    let deadline = Instant::now() + within;
    let (mut last, mut since) = (rows(db), Instant::now());
    loop {
        let now = rows(db);
        if now != last {
            (last, since) = (now, Instant::now());
        }
        if now.0 >= readings
            || Instant::now() >= deadline
            || since.elapsed() > Duration::from_secs(5)
        {
            return now;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The reference backend binary on `broker`, storing into `db` as `client_id`, with `args`;
/// its output goes to the test's, each line marked with the client id, and is kept in the
/// returned lines.
pub(crate) fn start_binary(
    broker: &Mosquitto,
    db: &Database,
    client_id: &str,
    args: &[&str],
) -> (Child, std::sync::mpsc::Receiver<String>) {
    let db = match db {
        Database::Sqlite(path) => path.display().to_string(),
        Database::Postgres(url) => url.clone(),
    };
    let mut child = Command::new(env!("CARGO_BIN_EXE_dese-reference-backend"))
        .args([
            "--broker",
            &broker.url(),
            "--db",
            &db,
            "--client-id",
            client_id,
        ])
        .args(["--no-config", "--no-react"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    let id = client_id.to_string();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            println!("  {id}: {line}");
            let _ = tx.send(line);
        }
    });
    (child, lines)
}

/// Sends SIGKILL to a process this test started.
pub(crate) fn kill(child: &mut Child) {
    Command::new("kill")
        .args(["-KILL", &child.id().to_string()])
        .status()
        .unwrap();
    let _ = child.wait();
}

/// Sends SIGINT (a clean stop) to a process this test started and waits for it.
pub(crate) fn stop(child: &mut Child) -> bool {
    Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    child.wait().is_ok_and(|status| status.success())
}

/// Waits until the broker's log shows `client_id` connected `times` times, then a moment for
/// its subscriptions.
pub(crate) async fn connected(broker: &Mosquitto, client_id: &str, times: usize) {
    let deadline = Instant::now() + Duration::from_secs(20);
    let needle = format!(" as {client_id} ");
    while broker.log().matches(&needle).count() < times {
        assert!(Instant::now() < deadline, "{client_id} never connected");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// Publishes `readings` readings of `devices` devices of `acme`, reading `n / devices` of each
/// in turn (a fleet replaying its outboxes), pausing 5 ms every `pace` messages when given.
pub(crate) async fn publish_fleet(
    broker: &Mosquitto,
    name: &str,
    readings: u64,
    devices: u64,
    pace: Option<u64>,
) -> Publisher {
    let org: OrgId = "acme".parse().unwrap();
    let mut publisher = Publisher::connect(broker.addr(), name).await.unwrap();
    for n in 0..readings {
        let device = fleet::device((n % devices) as usize);
        let (topic, payload) = fleet::telemetry(&org, &device, n / devices);
        publisher.publish(&topic, payload, false).await.unwrap();
        if pace.is_some_and(|every| n % every == 0) {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    publisher
}
