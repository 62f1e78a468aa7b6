//! The live dashboard in a real browser: headless Chromium (through chromedriver) on the page of
//! a running reference backend, with reference devices on a real Mosquitto. The page lists the
//! devices, a new reading appears without a reload, its chart draws, an alert and a refused
//! message show in their logs, and `set_pump` submitted from its form shows `completed`.
//!
//! Writes the screenshot to `target/.../tmp/dashboard.png`; with `DESE_UPDATE_SCREENSHOT=1`,
//! to `docs/images/dashboard.png` too (how the one in the docs was made).

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

mod support;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use dese_protocol::{DeviceConfig, DeviceId, Finite, OrgId, Sensor, TelemetryInterval, Threshold};
use dese_reference_backend::dashboard::DashboardOptions;
use dese_reference_backend::{BackendOptions, ReferenceBackend};
use dese_reference_device::{DeviceOptions, ReferenceDevice};
use dese_rumqttc::{BrokerOptions, Rumqttc};
use dese_sim::water::PoolModel;
use dese_testkit::raw::Publisher;
use dese_testkit::{Browser, Mosquitto};

const WAIT: Duration = Duration::from_secs(20);

async fn backend(broker: &Mosquitto, name: &str, token: Option<&str>) -> ReferenceBackend {
    let dir = support::scratch(name);
    let mut options = BackendOptions::new(dir.join("dese.sqlite"));
    options.client_id = format!("dashboard-{name}");
    options.react_to_alerts = false;
    // Thresholds for every device that comes online: pool-2's pH is past 7.8.
    options.config = Some(DeviceConfig {
        alert_thresholds: Some(BTreeMap::from([(
            Sensor::Ph,
            Threshold {
                min: Some(Finite::new(6.8).unwrap()),
                max: Some(Finite::new(7.8).unwrap()),
            },
        )])),
        ..DeviceConfig::default()
    });
    options.dashboard = Some(DashboardOptions {
        addr: "127.0.0.1:0".parse().unwrap(),
        token: token.map(str::to_string),
    });
    let broker = BrokerOptions::parse(&broker.url()).unwrap();
    ReferenceBackend::spawn::<Rumqttc>(&broker, options)
        .await
        .unwrap()
}

fn device(broker: &Mosquitto, name: &str, seed: u64, ph: f64) -> ReferenceDevice<Rumqttc> {
    let mut options = DeviceOptions::new(
        OrgId::parse("acme").unwrap(),
        DeviceId::parse(name).unwrap(),
    );
    options.telemetry_interval = TelemetryInterval::new(1000).unwrap();
    options.seed = seed;
    options.model = PoolModel {
        ph,
        ..PoolModel::default()
    };
    ReferenceDevice::spawn(&BrokerOptions::parse(&broker.url()).unwrap(), options).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_the_fleet_live_and_runs_a_command() {
    let broker = Mosquitto::start().unwrap();
    // With a token (loopback does not need one): the page must pass it on to every request of
    // its own, the event stream included.
    let token = "a-token-for-the-browser-test";
    let backend = backend(&broker, "browser", Some(token)).await;
    let url = format!(
        "http://{}/?token={token}",
        backend.dashboard_addr().unwrap()
    );
    // pool-2's water is already past its threshold: it raises an alert.
    let devices = [
        device(&broker, "pool-1", 1, 7.4),
        device(&broker, "pool-2", 2, 8.2),
    ];
    let screenshot = std::env::var_os("DESE_UPDATE_SCREENSHOT").is_some();

    // A malformed reading: it shows under its reason.
    let mut publisher = Publisher::connect(broker.addr(), "dashboard-garbage")
        .await
        .unwrap();
    publisher
        .publish("devices/acme/pool-9/telemetry", "{not json", false)
        .await
        .unwrap();
    assert!(publisher.flush(WAIT).await);

    // The browser is driven from a thread of its own: its calls block.
    let checked = tokio::task::spawn_blocking(move || -> Vec<u8> {
        let browser = Browser::start().unwrap();
        browser.goto(&url).unwrap();
        for key in ["acme/pool-1", "acme/pool-2"] {
            let state = format!("#devices tr[data-key=\"{key}\"] td.state");
            browser
                .wait_for_text(&state, WAIT, |text| text == "online")
                .unwrap();
        }
        browser
            .wait_for_text("#connection", WAIT, |text| text == "connected")
            .unwrap();

        // A new reading arrives without a reload.
        let time = "#devices tr[data-key=\"acme/pool-1\"] td.reading-time";
        let first = browser
            .wait_for_text(time, WAIT, |text| text.ends_with('Z'))
            .unwrap();
        let marker = browser
            .execute("window.__notReloaded = true; return true;", vec![])
            .unwrap();
        assert_eq!(marker, true);
        let next = browser
            .wait_for_text(time, WAIT, |text| text.ends_with('Z') && text != first)
            .unwrap();
        assert_ne!(first, next);
        let same_page = browser
            .execute("return window.__notReloaded === true;", vec![])
            .unwrap();
        assert_eq!(same_page, true, "the reading came without a reload");
        let ph = browser
            .text(
                &browser
                    .wait_for("#devices tr[data-key=\"acme/pool-1\"] td.ph", WAIT)
                    .unwrap(),
            )
            .unwrap();
        let value: f64 = ph.parse().unwrap_or_else(|_| panic!("pH cell {ph:?}"));
        assert!((6.0..=9.0).contains(&value), "{value}");

        // The chart of the selected device has a line with points.
        browser
            .click(
                &browser
                    .wait_for("#devices tr[data-key=\"acme/pool-1\"]", WAIT)
                    .unwrap(),
            )
            .unwrap();
        browser
            .wait_for_text("#chart-device", WAIT, |text| text.contains("acme/pool-1"))
            .unwrap();
        let points = browser
            .execute(
                "const line = document.querySelector('svg#chart-ph polyline, svg#chart-ph path');\
                 return line ? (line.getAttribute('points') || line.getAttribute('d') || '').length : 0;",
                vec![],
            )
            .unwrap();
        assert!(points.as_u64().unwrap() > 0, "the pH chart has a line");

        // set_pump from its form, on the selected device: completed.
        browser
            .click(
                &browser
                    .wait_for(
                        "form[data-command=\"set_pump\"] button[type=\"submit\"]",
                        WAIT,
                    )
                    .unwrap(),
            )
            .unwrap();
        let outcome = browser
            .wait_for_text("#command-log li span.outcome", WAIT, |text| {
                text == "completed"
            })
            .unwrap();
        assert_eq!(outcome, "completed");
        let command = browser
            .text(
                &browser
                    .wait_for("#command-log li span.command", WAIT)
                    .unwrap(),
            )
            .unwrap();
        assert_eq!(command, "set_pump");
        let error = browser
            .text(&browser.wait_for("#command-error", WAIT).unwrap())
            .unwrap();
        assert!(error.is_empty(), "{error}");

        // The malformed reading, counted under its reason.
        browser
            .wait_for_text("#refused tr[data-reason=\"syntax\"] td.count", WAIT, |n| {
                n == "1"
            })
            .unwrap();
        // pool-2's alert, in the alert log.
        browser
            .wait_for_text("#alerts li", WAIT, |text| text.contains("acme/pool-2"))
            .unwrap();
        if screenshot {
            // For the docs: a longer history, and the whole page.
            std::thread::sleep(Duration::from_secs(20));
            browser.set_window_size(1400, 1250).unwrap();
        }
        browser.screenshot().unwrap()
    });

    let png = checked.await.unwrap();
    assert_eq!(&png[1..4], b"PNG");

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard.png");
    std::fs::write(&shot, &png).unwrap();
    println!("screenshot: {}", shot.display());
    if screenshot {
        let docs = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/images");
        std::fs::create_dir_all(&docs).unwrap();
        std::fs::write(docs.join("dashboard.png"), &png).unwrap();
    }
    for device in devices {
        device.shutdown().await.unwrap();
    }
    publisher.disconnect().await;
    backend.shutdown().await.unwrap();
}

/// One HTTP/1.1 request, the whole response as text.
fn request(addr: SocketAddr, method: &str, path: &str, headers: &str, body: &str) -> String {
    request_to(addr, &addr.to_string(), method, path, headers, body)
}

/// One HTTP/1.1 request to `addr` naming `host` as its `Host`.
fn request_to(
    addr: SocketAddr,
    host: &str,
    method: &str,
    path: &str,
    headers: &str,
    body: &str,
) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n{headers}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

fn get(addr: SocketAddr, path: &str, bearer: Option<&str>) -> String {
    let headers = bearer.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    request(addr, "GET", path, &headers, "")
}

fn post_command(addr: SocketAddr, token: &str, body: &str) -> String {
    request(
        addr,
        "POST",
        &format!("/api/commands?token={token}"),
        "Content-Type: application/json\r\n",
        body,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_asks_for_its_token_and_names_what_is_wrong_with_a_command() {
    let broker = Mosquitto::start().unwrap();
    let token = "a-token-for-this-test-only";
    let backend = backend(&broker, "token", Some(token)).await;
    let addr = backend.dashboard_addr().unwrap();
    let replies = tokio::task::spawn_blocking(move || {
        let refused = get(addr, "/api/state", None);
        assert!(refused.starts_with("HTTP/1.1 401"), "{refused}");
        let wrong = get(addr, "/api/state?token=a-token-for-this-test-onlx", None);
        assert!(wrong.starts_with("HTTP/1.1 401"), "{wrong}");
        assert!(get(addr, "/", None).starts_with("HTTP/1.1 401"));
        let by_query = get(addr, &format!("/api/state?token={token}"), None);
        assert!(by_query.starts_with("HTTP/1.1 200"), "{by_query}");
        let by_header = get(addr, "/api/state", Some(token));
        assert!(by_header.starts_with("HTTP/1.1 200"), "{by_header}");
        let page = get(addr, &format!("/?token={token}"), None);
        assert!(page.contains("Content-Security-Policy") || page.contains("content-security-policy"));
        // Nothing fetched from elsewhere: the only absolute URL is the SVG namespace's name.
        let elsewhere = page.replace("http://www.w3.org/2000/svg", "");
        assert!(!elsewhere.contains("http://") && !elsewhere.contains("https://") && !elsewhere.contains("//cdn"));
        [
            post_command(addr, token, r#"{"org":"acme","device":"pool-1","command":"set_pump","parameters":{"pump_id":1,"state":"sideways"}}"#),
            post_command(addr, token, r#"{"org":"acme","device":"pool/1","command":"reboot"}"#),
            post_command(addr, token, r#"{"org":"acme","device":"pool-1","command":"dance"}"#),
            post_command(addr, token, r#"{"org":"acme""#),
            post_command(addr, token, r#"{"org":"acme","device":"pool-1","command":"reboot"}"#),
            request(
                addr,
                "POST",
                &format!("/api/commands?token={token}"),
                "Content-Type: application/json\r\nOrigin: http://evil.example\r\n",
                r#"{"org":"acme","device":"pool-1","command":"reboot"}"#,
            ),
        ]
    })
    .await
    .unwrap();
    let [state, device, unknown, broken, accepted, foreign] = replies;
    assert!(foreign.starts_with("HTTP/1.1 403"), "{foreign}");
    assert!(
        state.starts_with("HTTP/1.1 400") && state.contains("state"),
        "{state}"
    );
    assert!(
        device.starts_with("HTTP/1.1 400") && device.contains("device"),
        "{device}"
    );
    assert!(
        unknown.starts_with("HTTP/1.1 400") && unknown.contains("dance"),
        "{unknown}"
    );
    assert!(broken.starts_with("HTTP/1.1 400"), "{broken}");
    assert!(
        accepted.starts_with("HTTP/1.1 202") && accepted.contains("\"id\":\"cmd-"),
        "{accepted}"
    );
    backend.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_token_the_dashboard_answers_only_to_loopback_names() {
    let broker = Mosquitto::start().unwrap();
    let backend = backend(&broker, "rebinding", None).await;
    let addr = backend.dashboard_addr().unwrap();
    let replies = tokio::task::spawn_blocking(move || {
        [
            request_to(addr, "evil.example:8080", "GET", "/api/state", "", ""),
            request_to(addr, "127.0.0.1.evil.example", "GET", "/", "", ""),
            request_to(
                addr,
                &format!("localhost:{}", addr.port()),
                "GET",
                "/api/state",
                "",
                "",
            ),
            request(addr, "GET", "/", "", ""),
        ]
    })
    .await
    .unwrap();
    let [rebound, lookalike, localhost, page] = replies;
    assert!(rebound.starts_with("HTTP/1.1 421"), "{rebound}");
    assert!(lookalike.starts_with("HTTP/1.1 421"), "{lookalike}");
    assert!(localhost.starts_with("HTTP/1.1 200"), "{localhost}");
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let lower = page.to_ascii_lowercase();
    assert!(lower.contains("x-frame-options: deny"), "{page}");
    assert!(lower.contains("frame-ancestors 'none'"), "{page}");
    assert!(lower.contains("referrer-policy: no-referrer"), "{page}");
    backend.shutdown().await.unwrap();
}
