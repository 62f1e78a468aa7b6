//! The reference backend binary and the reference device on a real Mosquitto: what ends up in
//! the SQLite database.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dese_reference_device::{DeviceOptions, ReferenceDevice};
use dese_rumqttc::{BrokerOptions, Rumqttc};
use dese_sim::water::PoolModel;
use dese_testkit::Mosquitto;
use rusqlite::Connection;

fn wait_line(lines: &mpsc::Receiver<String>, what: &str, seen: &mut Vec<String>) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = lines
            .recv_timeout(left)
            .unwrap_or_else(|_| panic!("no line with {what:?} in 30 s; seen: {seen:#?}"));
        seen.push(line.clone());
        if line.contains(what) {
            return;
        }
    }
}

#[test]
fn the_database_holds_telemetry_a_completed_command_and_an_offline_status() {
    let broker = Mosquitto::start().unwrap();
    let dir = std::env::temp_dir().join(format!("dese-reference-backend-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let db = dir.join("dese.sqlite");

    let mut backend = Command::new(env!("CARGO_BIN_EXE_dese-reference-backend"))
        .args(["--broker", &broker.url(), "--db", db.to_str().unwrap()])
        .args(["--ph-range", "6.8:7.6", "--command-timeout", "5"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let (tx, lines) = mpsc::channel();
    let stdout = backend.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let mut seen = Vec::new();
    wait_line(&lines, "storing into", &mut seen);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let mut options = DeviceOptions::new("acme".parse().unwrap(), "pool-1".parse().unwrap());
        options.telemetry_interval = dese_protocol::TelemetryInterval::new(1000).unwrap();
        // The pH climbs past 7.6 within seconds: the device alerts, the backend starts the acid
        // pump.
        options.model = PoolModel {
            ph_drift: 3.0,
            ..PoolModel::default()
        };
        let device = ReferenceDevice::<Rumqttc>::spawn(
            &BrokerOptions::parse(&broker.url()).unwrap(),
            options,
        )
        .unwrap();
        wait_line(&lines, "acme/pool-1: thresholds sent", &mut seen);
        wait_line(&lines, "sending set_pump because ph", &mut seen);
        wait_line(&lines, "completed", &mut seen);
        assert!(
            device.pool().snapshot().acid_pump,
            "the command ran the device's acid pump"
        );
        device.shutdown().await.unwrap();
    });
    wait_line(&lines, "acme/pool-1: online -> offline", &mut seen);
    Command::new("kill")
        .args(["-INT", &backend.id().to_string()])
        .status()
        .unwrap();
    let status = backend.wait().unwrap();
    assert!(status.success(), "{status}");

    let db = Connection::open(&db).unwrap();
    let count = |sql: &str| -> i64 { db.query_row(sql, [], |row| row.get(0)).unwrap() };
    assert!(count("SELECT count(*) FROM telemetry WHERE org = 'acme' AND device = 'pool-1'") >= 3);
    assert!(count("SELECT count(*) FROM telemetry WHERE ph < 0 OR ph > 14") == 0);
    assert_eq!(
        count(
            "SELECT count(*) FROM commands WHERE command = 'set_pump' AND outcome = 'completed' AND response LIKE '%\"pump_id\":1%'"
        ),
        1
    );
    assert!(count("SELECT count(*) FROM alerts WHERE sensor = 'ph' AND severity = 'warning'") >= 1);
    assert_eq!(
        count("SELECT count(*) FROM status WHERE state = 'offline'"),
        1
    );
    assert_eq!(
        count("SELECT count(*) FROM presence WHERE device = 'pool-1' AND state = 'offline'"),
        1
    );
    assert_eq!(count("SELECT count(*) FROM dropped"), 0);
    let _ = std::fs::remove_dir_all(&dir);
}
