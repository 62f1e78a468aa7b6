//! The reference backend's metrics endpoint (`--metrics`) on a real Mosquitto: the figures
//! match what happened, the output passes `promtool check metrics` (Prometheus's own linter),
//! and docs/operations.md lists every metric there is.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use dese_reference_backend::Database;
use dese_testkit::Mosquitto;

/// `GET /metrics` on `addr`: the body.
fn scrape(addr: &str) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let (head, body) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    body.to_string()
}

/// The value of the sample named exactly `series` (name and labels as Prometheus prints them).
fn value(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|line| {
        let (name, value) = line.rsplit_once(' ')?;
        (name == series).then(|| value.parse().ok()).flatten()
    })
}

/// The backend this test started, killed if the test fails before stopping it (otherwise it
/// would outlive the test, reconnecting to a broker that is gone).
struct Started(std::process::Child);

impl Drop for Started {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            support::kill(&mut self.0);
        }
    }
}

fn promtool() -> &'static str {
    ["/usr/bin/promtool", "/usr/local/bin/promtool"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .expect("promtool is not installed (apt-get install prometheus; the test command does)")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_tell_what_happened_and_promtool_accepts_them() {
    let broker = Mosquitto::start().unwrap();
    let dir = support::scratch("metrics");
    let db = Database::Sqlite(dir.join("dese.sqlite"));
    let (child, lines) = support::start_binary(
        &broker,
        &db,
        "metrics-backend",
        &["--metrics", "127.0.0.1:0"],
    );
    let mut child = Started(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let addr = loop {
        let line = lines
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
            .expect("the backend says where its metrics are");
        if let Some(rest) = line.strip_prefix("dese-backend: metrics on http://") {
            break rest.trim_end_matches("/metrics").to_string();
        }
    };
    support::connected(&broker, "metrics-backend", 1).await;

    let mut publisher = support::publish_fleet(&broker, "metrics-fleet", 40, 4, None).await;
    publisher
        .publish("devices/acme/dev-0/telemetry", "{not json", false)
        .await
        .unwrap();
    publisher
        .publish("devices/acme/dev-0/status", r#"{"status":"online"}"#, false)
        .await
        .unwrap();
    assert!(publisher.flush(Duration::from_secs(10)).await);
    support::until_stored(&db, 40, Duration::from_secs(20)).await;

    // The counters follow the engine's within milliseconds, the device gauges within a second:
    // wait for the last refusal and the devices.
    let mut metrics = String::new();
    let refused_status =
        r#"dese_backend_messages_refused_total{kind="status",reason="missing_field"}"#;
    for _ in 0..100 {
        metrics = scrape(&addr);
        if value(&metrics, refused_status).is_some()
            && value(&metrics, "dese_backend_devices_tracked") == Some(4.0)
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let of = |series: &str| value(&metrics, series);
    assert_eq!(
        of(r#"dese_backend_messages_received_total{kind="telemetry"}"#),
        Some(40.0),
        "{metrics}"
    );
    assert_eq!(
        of(r#"dese_backend_messages_refused_total{kind="telemetry",reason="syntax"}"#),
        Some(1.0),
        "{metrics}"
    );
    assert_eq!(of(refused_status), Some(1.0), "{metrics}");
    assert_eq!(of("dese_store_readings_total"), Some(40.0), "{metrics}");
    assert_eq!(of("dese_backend_connected"), Some(1.0), "{metrics}");
    assert_eq!(of("dese_backend_connections_total"), Some(1.0), "{metrics}");
    assert_eq!(of("dese_backend_devices_tracked"), Some(4.0), "{metrics}");
    assert_eq!(
        of(r#"dese_store_writes_total{outcome="failed"}"#),
        Some(0.0),
        "{metrics}"
    );
    let writes = of(r#"dese_store_writes_total{outcome="committed"}"#).unwrap();
    assert!(writes >= 1.0, "{metrics}");
    assert_eq!(
        of("dese_store_write_seconds_count"),
        Some(writes),
        "{metrics}"
    );
    assert!(
        of("dese_store_write_seconds_sum").unwrap() > 0.0,
        "{metrics}"
    );
    // No series is about one device.
    assert!(!metrics.contains("dev-0"), "{metrics}");

    let mut check = Command::new(promtool())
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    check
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let checked = check.wait_with_output().unwrap();
    assert!(
        checked.status.success(),
        "promtool check metrics: {}{}\n{metrics}",
        String::from_utf8_lossy(&checked.stdout),
        String::from_utf8_lossy(&checked.stderr)
    );
    println!(
        "promtool check metrics: passed on {} lines",
        metrics.lines().count()
    );
    publisher.disconnect().await;
    assert!(support::stop(&mut child.0));
}

#[test]
fn the_operations_guide_lists_every_metric() {
    let guide = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/operations.md"
    ))
    .unwrap();
    let all = dese_transport::metrics::CATALOG
        .iter()
        .chain(dese_reference_backend::prometheus::CATALOG);
    for metric in all {
        let kind = match metric.kind {
            dese_transport::metrics::MetricType::Counter => "counter",
            dese_transport::metrics::MetricType::Gauge => "gauge",
            dese_transport::metrics::MetricType::Histogram => "histogram",
        };
        let labels: Vec<String> = metric.labels.iter().map(|l| format!("`{l}`")).collect();
        let row = format!("| `{}` | {kind} | {} |", metric.name, labels.join(", "));
        let row = row.replace(" |  |", " | |");
        assert!(
            guide.contains(&row),
            "docs/operations.md has no row starting {row:?}"
        );
    }
}
