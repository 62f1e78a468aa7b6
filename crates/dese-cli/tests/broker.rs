//! The `dese` binary's network commands against a real Mosquitto: simulate, monitor and send
//! together, the failures a user meets (no broker, wrong password), and the ACL that
//! `dese acl` writes, proven by what the broker delivers.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

use std::io::{BufRead, BufReader};
use std::net::{Ipv4Addr, TcpListener};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use dese_testkit::{Mosquitto, MosquittoConfig};
use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use serde_json::Value;

fn dese() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dese"))
}

fn run(args: &[&str]) -> Output {
    dese().args(args).stdin(Stdio::null()).output().unwrap()
}

/// `dese send --broker URL --org acme --device DEVICE ARGS...`
fn send(url: &str, device: &str, args: &[&str]) -> Output {
    let mut all = vec!["send", "--broker", url, "--org", "acme", "--device", device];
    all.extend_from_slice(args);
    run(&all)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A running `dese` whose standard output and error lines arrive on channels.
struct Running {
    child: Child,
    stdout: mpsc::Receiver<String>,
    stderr: mpsc::Receiver<String>,
}

impl Running {
    fn start(args: &[&str]) -> Self {
        let mut child = dese()
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = |pipe: Box<dyn std::io::Read + Send>| {
            let (tx, rx) = mpsc::channel();
            std::thread::spawn(move || {
                for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                    if tx.send(line).is_err() {
                        break;
                    }
                }
            });
            rx
        };
        let stdout = lines(Box::new(child.stdout.take().unwrap()));
        let stderr = lines(Box::new(child.stderr.take().unwrap()));
        Self {
            child,
            stdout,
            stderr,
        }
    }

    /// The next line of `pipe` that `what` accepts, within 20 s; the lines passed over are
    /// returned too.
    fn wait_line(
        pipe: &mpsc::Receiver<String>,
        what: impl Fn(&str) -> bool,
        seen: &mut Vec<String>,
    ) -> String {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = pipe
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("no such line in 20 s; seen: {seen:#?}"));
            seen.push(line.clone());
            if what(&line) {
                return line;
            }
        }
    }

    /// Ctrl-C, then the exit status, within 10 s.
    fn interrupt(mut self) -> (Option<i32>, Vec<String>) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-INT", &pid]).status().unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return (status.code(), self.stderr.try_iter().collect());
            }
            assert!(Instant::now() < deadline, "dese did not stop on Ctrl-C");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait(mut self, within: Duration) -> (Option<i32>, Vec<String>, Vec<String>) {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // The reader threads finish with the pipes.
                std::thread::sleep(Duration::from_millis(100));
                return (
                    status.code(),
                    self.stdout.try_iter().collect(),
                    self.stderr.try_iter().collect(),
                );
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("dese did not end in {within:?}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn json(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

/// A fleet of simulated devices, watched by `dese monitor` and commanded with `dese send`
/// (both transports), on one Mosquitto.
#[test]
fn simulate_monitor_and_send_work_together() {
    let broker = Mosquitto::start().unwrap();
    let url = broker.url();
    let mut seen = Vec::new();
    let monitor = Running::start(&["monitor", "--broker", &url, "--org", "acme", "--json"]);
    Running::wait_line(&monitor.stderr, |l| l.contains("watching acme"), &mut seen);
    let counted = Running::start(&[
        "monitor",
        "--broker",
        &url,
        "--kind",
        "telemetry",
        "--device",
        "sim-002",
        "--count",
        "3",
    ]);
    Running::wait_line(&counted.stderr, |l| l.contains("watching"), &mut seen);

    let simulate = Running::start(&[
        "simulate",
        "--broker",
        &url,
        "--org",
        "acme",
        "--devices",
        "3",
        "--interval-ms",
        "1000",
        "--duration",
        "8",
        "--json",
    ]);
    // Each device comes online (the monitor sees its status) before it is commanded.
    wait_presence(&monitor, "online", &mut seen);

    let ok = send(
        &url,
        "sim-001",
        &[
            "set_pump",
            "pump_id=1",
            "state=on",
            "duration=60",
            "--timeout",
            "10",
            "--json",
        ],
    );
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    let outcome = json(&text(&ok.stdout));
    assert_eq!(outcome["outcome"], "completed", "{outcome}");
    assert_eq!(outcome["detail"]["response"]["pump_id"], 1, "{outcome}");
    assert_eq!(outcome["detail"]["response"]["state"], "on", "{outcome}");

    let failed = send(
        &url,
        "sim-002",
        &["set_pump", "pump_id=9", "state=on", "--timeout", "10"],
    );
    assert_eq!(failed.status.code(), Some(1), "{}", text(&failed.stderr));
    assert!(
        text(&failed.stdout).contains("pump 9 does not exist"),
        "{}",
        text(&failed.stdout)
    );

    let paho = send(
        &url,
        "sim-003",
        &[
            "--transport",
            "paho",
            "calibrate_sensor",
            "sensor_type=ph",
            "value=7.2",
            "--timeout",
            "10",
            "--json",
        ],
    );
    assert_eq!(paho.status.code(), Some(0), "{}", text(&paho.stderr));
    assert_eq!(
        json(&text(&paho.stdout))["detail"]["response"]["sensor_type"],
        "ph"
    );

    let started = Instant::now();
    let ghost = send(
        &url,
        "ghost",
        &["reboot", "--timeout", "0.5", "--retries", "1"],
    );
    assert_eq!(ghost.status.code(), Some(3), "{}", text(&ghost.stderr));
    assert!(
        text(&ghost.stderr).contains("2 attempt(s)"),
        "{}",
        text(&ghost.stderr)
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    // An invalid message is flagged by the monitor with its reason.
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let raw = Raw::connect(&broker, "intruder", None).await;
        raw.client
            .publish(
                "devices/acme/sim-002/telemetry",
                QoS::AtLeastOnce,
                false,
                "{\"sensors\":1}",
            )
            .await
            .unwrap();
        raw.acked(1).await;
    });
    let invalid = Running::wait_line(
        &monitor.stdout,
        |l| json(l)["event"] == "invalid",
        &mut seen,
    );
    assert_eq!(json(&invalid)["reason"], "missing_field", "{invalid}");
    assert_eq!(json(&invalid)["path"], "device_id", "{invalid}");
    assert!(
        json(&invalid)["error"]
            .as_str()
            .unwrap()
            .contains("device_id"),
        "{invalid}"
    );

    let (code, lines, _) = counted.wait(Duration::from_secs(20));
    assert_eq!(code, Some(0));
    let telemetry: Vec<&String> = lines.iter().filter(|l| l.contains("telemetry")).collect();
    assert_eq!(telemetry.len(), 3, "{lines:#?}");
    assert!(
        telemetry
            .iter()
            .all(|l| l.starts_with("acme/sim-002") && l.contains("pH "))
    );

    let (code, out, err) = simulate.wait(Duration::from_secs(30));
    assert_eq!(code, Some(0), "{err:#?}");
    let summary = json(out.last().unwrap());
    assert_eq!(summary["devices"], 3);
    assert!(summary["telemetry"].as_u64().unwrap() >= 3 * 6, "{summary}");
    // Acknowledged: the telemetry, three statuses and three responses, except what was still
    // in flight when the run ended (pending, reported as such).
    let n = |k: &str| summary[k].as_u64().unwrap();
    assert!(
        n("acknowledged") + n("pending") >= n("telemetry") + 6,
        "{summary}"
    );
    assert!(n("pending") <= 3 * 8, "{summary}");
    assert_eq!(summary["commands_answered"], 3, "{summary}");
    assert_eq!(summary["dropped"], 0, "{summary}");
    assert_eq!(summary["reconnects"], 0, "{summary}");

    // Every device said goodbye: the monitor saw each go offline.
    wait_presence(&monitor, "offline", &mut seen);
    let (code, err) = monitor.interrupt();
    assert_eq!(code, Some(0), "{err:#?}");
    assert!(
        err.iter().any(|l| l.contains("message(s) shown")),
        "{err:#?}"
    );
}

/// Waits until the monitor has seen sim-001 to sim-003 change to `state`, in any order.
fn wait_presence(monitor: &Running, state: &str, seen: &mut Vec<String>) {
    let mut devices = std::collections::BTreeSet::from(["sim-001", "sim-002", "sim-003"]);
    while !devices.is_empty() {
        let line = Running::wait_line(
            &monitor.stdout,
            |l| {
                let v = json(l);
                v["event"] == "presence" && v["to"] == state
            },
            seen,
        );
        let device = json(&line)["device"].as_str().unwrap().to_string();
        devices.remove(device.as_str());
    }
}

/// No broker on the port: exit 4 with the reason, after the connect timeout, not a hang.
#[test]
fn an_unreachable_broker_is_exit_4() {
    let port = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("mqtt://127.0.0.1:{port}");
    for args in [
        vec!["send", "--org", "acme", "--device", "d", "reboot"],
        vec!["monitor"],
        vec!["simulate", "--org", "acme", "--devices", "2"],
    ] {
        let mut args = args.clone();
        args.extend(["--broker", &url, "--connect-timeout", "1"]);
        let started = Instant::now();
        let out = run(&args);
        assert_eq!(
            out.status.code(),
            Some(4),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(&format!("127.0.0.1:{port}")),
            "{}",
            text(&out.stderr)
        );
        assert!(started.elapsed() < Duration::from_secs(8), "{args:?}");
    }
}

/// What a hostile device writes (an alert message with a newline that forges a line, terminal
/// escape sequences in C0 and C1 form, a bidirectional override; an escape sequence in its
/// firmware version, an override in a topic) reaches the terminal escaped, in `dese monitor`'s lines and in its
/// JSON, which stays the same JSON.
#[test]
fn monitor_escapes_what_devices_write() {
    let broker = Mosquitto::start().unwrap();
    let url = broker.url();
    let mut seen = Vec::new();
    let plain = Running::start(&["monitor", "--broker", &url, "--org", "acme"]);
    let as_json = Running::start(&["monitor", "--broker", &url, "--org", "acme", "--json"]);
    Running::wait_line(&plain.stderr, |l| l.contains("watching acme"), &mut seen);
    Running::wait_line(&as_json.stderr, |l| l.contains("watching acme"), &mut seen);
    // JSON escapes: the decoded message holds the characters themselves.
    let hostile = r"low\n[ok] acme/p: all good\u001b[2J\u009b31m\u202egnp";
    let alert = format!(
        r#"{{"severity":"warning","message":"{hostile}","timestamp":"2025-01-27T10:00:00Z"}}"#
    );
    let status = r#"{"status":"online","firmware_version":"1.0\u001b]0;owned\u0007","timestamp":"2025-01-27T10:00:00Z"}"#;
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let raw = Raw::connect(&broker, "hostile", None).await;
        for (topic, payload) in [
            ("devices/acme/p/alert", alert.as_str()),
            ("devices/acme/p/status", status),
            // Mosquitto refuses control characters in topics; a bidirectional override passes.
            ("devices/acme/p\u{202e}/telemetry", "{"),
        ] {
            raw.client
                .publish(topic, QoS::AtLeastOnce, false, payload)
                .await
                .unwrap();
        }
        raw.acked(3).await;
    });
    for monitor in [&plain, &as_json] {
        let mut lines = Vec::new();
        Running::wait_line(&monitor.stdout, |l| l.contains("firmware"), &mut lines);
        Running::wait_line(&monitor.stdout, |l| l.contains("telemetry"), &mut lines);
        let alert_line = lines.iter().find(|l| l.contains("low")).unwrap();
        for line in &lines {
            assert!(!line.chars().any(char::is_control), "{line:?}");
            assert!(!line.contains('\u{202e}'), "{line:?}");
        }
        assert!(!lines.iter().any(|l| l.starts_with("[ok]")), "{lines:#?}");
        if std::ptr::eq(monitor, &as_json) {
            // The same JSON value, with the escapes JSON has.
            assert_eq!(
                json(alert_line)["message"]["message"],
                "low\n[ok] acme/p: all good\u{1b}[2J\u{9b}31m\u{202e}gnp"
            );
        } else {
            assert!(
                alert_line.contains(r"low\n[ok]")
                    && alert_line.contains(r"\u{1b}[2J\u{9b}31m\u{202e}gnp"),
                "{alert_line}"
            );
        }
    }
}

/// A bare MQTT client: publishes and subscribes wherever the test says, and records what the
/// broker delivers and acknowledges.
struct Raw {
    client: AsyncClient,
    events: tokio::sync::mpsc::UnboundedReceiver<Packet>,
}

impl Raw {
    async fn connect(broker: &Mosquitto, id: &str, credentials: Option<(&str, &str)>) -> Self {
        let mut options = MqttOptions::new(id, "127.0.0.1", broker.port());
        if let Some((user, password)) = credentials {
            options.set_credentials(user, password);
        }
        let (client, mut eventloop) = AsyncClient::new(options, 64);
        let (tx, events) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(event) = eventloop.poll().await {
                if let Event::Incoming(packet) = event {
                    if tx.send(packet).is_err() {
                        break;
                    }
                }
            }
        });
        let mut raw = Self { client, events };
        match raw.next().await {
            Packet::ConnAck(ack) => {
                assert_eq!(ack.code, rumqttc::ConnectReturnCode::Success, "{id}")
            }
            other => panic!("{id}: {other:?}"),
        }
        raw
    }

    async fn next(&mut self) -> Packet {
        tokio::time::timeout(Duration::from_secs(10), self.events.recv())
            .await
            .expect("the broker said nothing in 10 s")
            .expect("connection ended")
    }

    /// Waits for `n` PUBACKs.
    async fn acked(mut self, n: usize) -> Self {
        let mut acks = 0;
        while acks < n {
            if let Packet::PubAck(_) = self.next().await {
                acks += 1;
            }
        }
        self
    }

    async fn subscribe(&mut self, filter: &str) -> Vec<rumqttc::SubscribeReasonCode> {
        self.client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .unwrap();
        loop {
            if let Packet::SubAck(ack) = self.next().await {
                return ack.return_codes;
            }
        }
    }

    /// Every publish delivered until one on `last` arrives (that one included).
    async fn delivered_until(&mut self, last: &str) -> Vec<String> {
        self.delivered_until_all(&[last]).await
    }

    /// Every publish delivered until one on each of `topics` arrived, in any order.
    async fn delivered_until_all(&mut self, topics: &[&str]) -> Vec<String> {
        let mut delivered = Vec::new();
        while !topics.iter().all(|t| delivered.iter().any(|d| d == t)) {
            if let Packet::Publish(p) = self.next().await {
                delivered.push(p.topic.clone());
            }
        }
        delivered
    }
}

/// DESE-S3: `dese acl` files on a real Mosquitto: each device reaches its own topics and nothing else;
/// the proof is what the broker delivers (MQTT 3.1.1 acknowledges a denied publish too).
#[test]
fn acl_confines_every_device_to_its_own_topics() {
    let dir = std::env::temp_dir().join(format!("dese-cli-acl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let registry = dir.join("registry.toml");
    std::fs::write(
        &registry,
        r#"
[[backend]]
username = "backend"
password = "backend-secret"

[[device]]
org = "acme"
device = "pool-1"
password = "one"

[[device]]
org = "acme"
device = "pool-2"
password = "two"

[[device]]
org = "other"
device = "pool-1"
password = "three"
"#,
    )
    .unwrap();
    let out: PathBuf = dir.join("mosquitto");
    let port = free_port();
    let acl = run(&[
        "acl",
        "--devices",
        registry.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
    ]);
    assert_eq!(acl.status.code(), Some(0), "{}", text(&acl.stderr));
    // The generated dese.conf as an operator includes it, with its listener: the broker must
    // accept every line.
    let broker = Mosquitto::start_with(MosquittoConfig {
        allow_anonymous: false,
        extra: vec![format!("include_dir {}", out.display())],
        listener_in_extra: Some(port),
        ..MosquittoConfig::default()
    })
    .unwrap();

    // A wrong password against the generated password file is a typed refusal (exit 4),
    // not a retry loop; the right ones are used by the clients below.
    let url = broker.url();
    let wrong = send(
        &url,
        "pool-1",
        &["--username", "backend", "--password", "nope", "reboot"],
    );
    assert_eq!(wrong.status.code(), Some(4), "{}", text(&wrong.stderr));
    assert!(
        text(&wrong.stderr).contains("refused"),
        "{}",
        text(&wrong.stderr)
    );

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let mut backend =
            Raw::connect(&broker, "backend", Some(("backend", "backend-secret"))).await;
        let mut one = Raw::connect(&broker, "acme:pool-1", Some(("acme/pool-1", "one"))).await;
        let mut two = Raw::connect(&broker, "acme:pool-2", Some(("acme/pool-2", "two"))).await;
        let mut other =
            Raw::connect(&broker, "other:pool-1", Some(("other/pool-1", "three"))).await;

        for filter in [
            "devices/+/+/telemetry",
            "devices/+/+/status",
            "devices/+/+/alert",
        ] {
            backend.subscribe(filter).await;
        }
        for (device, own) in [
            (&mut one, "acme/pool-1"),
            (&mut two, "acme/pool-2"),
            (&mut other, "other/pool-1"),
        ] {
            device.subscribe(&format!("devices/{own}/commands")).await;
            device.subscribe(&format!("devices/{own}/config")).await;
        }
        // pool-1 tries to read everything, its neighbour's commands and another org's.
        for filter in [
            "devices/#",
            "devices/acme/pool-2/commands",
            "devices/other/+/commands",
            "#",
        ] {
            one.subscribe(filter).await;
        }

        // pool-1 writes: its own telemetry (allowed), then a forged reading of its neighbour, a
        // forged status of another org's device, and a command to its neighbour (all denied).
        for topic in [
            "devices/acme/pool-2/telemetry",
            "devices/other/pool-1/status",
            "devices/acme/pool-2/commands",
            "devices/other/pool-1/commands",
            "devices/acme/pool-1/telemetry",
        ] {
            one.client
                .publish(topic, QoS::AtLeastOnce, false, "{}")
                .await
                .unwrap();
        }
        // another org's device forges acme's status, then sends its own.
        other
            .client
            .publish("devices/acme/pool-1/status", QoS::AtLeastOnce, false, "{}")
            .await
            .unwrap();
        other
            .client
            .publish("devices/other/pool-1/alert", QoS::AtLeastOnce, false, "{}")
            .await
            .unwrap();

        // The backend receives only what each device may write, in order.
        let mut got = backend
            .delivered_until_all(&[
                "devices/acme/pool-1/telemetry",
                "devices/other/pool-1/alert",
            ])
            .await;
        got.sort();
        assert_eq!(
            got,
            [
                "devices/acme/pool-1/telemetry",
                "devices/other/pool-1/alert"
            ]
        );

        // The backend commands every device; each gets its own command only. pool-1's own
        // command comes last, so everything it could have been given arrives before it.
        for topic in [
            "devices/acme/pool-2/commands",
            "devices/other/pool-1/commands",
            "devices/acme/pool-2/config",
            "devices/acme/pool-1/commands",
        ] {
            backend
                .client
                .publish(topic, QoS::AtLeastOnce, false, "{}")
                .await
                .unwrap();
        }
        assert_eq!(
            one.delivered_until("devices/acme/pool-1/commands").await,
            ["devices/acme/pool-1/commands"]
        );
        assert_eq!(
            two.delivered_until("devices/acme/pool-2/config").await,
            ["devices/acme/pool-2/commands", "devices/acme/pool-2/config"],
            "pool-2 gets the backend's command and config, and not pool-1's forged command"
        );
        assert_eq!(
            other.delivered_until("devices/other/pool-1/commands").await,
            ["devices/other/pool-1/commands"]
        );

        // A takeover attempt: pool-2's credentials with pool-1's client id. The broker takes
        // the client id from the username (use_username_as_clientid), so pool-1 stays
        // connected: its next reading is acknowledged and reaches the backend.
        let _intruder = Raw::connect(&broker, "acme:pool-1", Some(("acme/pool-2", "two"))).await;
        one.client
            .publish(
                "devices/acme/pool-1/telemetry",
                QoS::AtLeastOnce,
                false,
                "{}",
            )
            .await
            .unwrap_or_else(|e| panic!("{e}: {}", broker.log()));
        assert_eq!(
            backend
                .delivered_until("devices/acme/pool-1/telemetry")
                .await,
            ["devices/acme/pool-1/telemetry"]
        );
        // The intruder took the client id of its own username: it can only end its own
        // other connection (pool-2's), never pool-1's.
        assert!(
            !broker
                .log()
                .contains("Client acme/pool-1 already connected"),
            "{}",
            broker.log()
        );
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// `dese acl` run as root writes the password file and the ACL for the broker's group (0640,
/// group mosquitto): a stock Mosquitto started as root, which drops to the `mosquitto` user
/// before it reads them, starts with them and lets a device in with its password. A 0600 root
/// file stopped it ("Unable to open pwfile"). Needs root, as the machines of the test command
/// run it; said and skipped otherwise.
#[test]
fn a_stock_broker_that_drops_privileges_reads_the_files() {
    let root = std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .any(|line| line.starts_with("Uid:") && line.split_whitespace().nth(1) == Some("0"))
    });
    if !root {
        eprintln!("skipped: only root can start a broker that drops to the mosquitto user");
        return;
    }
    let dir = std::env::temp_dir().join(format!("dese-cli-acl-stock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let registry = dir.join("registry.toml");
    std::fs::write(
        &registry,
        "[[device]]\norg = \"acme\"\ndevice = \"pool-1\"\npassword = \"one\"\n",
    )
    .unwrap();
    let out = dir.join("mosquitto");
    let port = free_port();
    let acl = run(&[
        "acl",
        "--devices",
        registry.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--port",
        &port.to_string(),
        "--bind",
        "127.0.0.1",
    ]);
    assert_eq!(acl.status.code(), Some(0), "{}", text(&acl.stderr));
    use std::os::unix::fs::MetadataExt;
    let passwd = std::fs::metadata(out.join("passwd")).unwrap();
    assert_eq!(
        passwd.mode() & 0o777,
        0o640,
        "readable by the owner and the group only"
    );
    let broker = Mosquitto::start_with(MosquittoConfig {
        allow_anonymous: false,
        extra: vec![format!("include_dir {}", out.display())],
        run_as: Some("mosquitto".into()),
        listener_in_extra: Some(port),
        ..MosquittoConfig::default()
    })
    .unwrap_or_else(|e| panic!("the broker did not start: {e}"));
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let one = Raw::connect(&broker, "acme:pool-1", Some(("acme/pool-1", "one"))).await;
        one.client
            .publish(
                "devices/acme/pool-1/telemetry",
                QoS::AtLeastOnce,
                false,
                "{}",
            )
            .await
            .unwrap();
        one.acked(1).await;
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// `dese acl --auth certificate` with certificates from `scripts/certificates`, on a real
/// Mosquitto, proven by delivery: a device with its own certificate reaches the backend and
/// gets its commands; another device's certificate can neither read its telemetry nor command
/// it; a client without a certificate is refused (TLS), and so is a client that claims the
/// device's username on the broker's plain listener (the password file holds no one).
#[test]
fn certificates_confine_every_device_to_its_own_topics() {
    use dese_protocol::{Action, PumpState};
    use dese_rumqttc::{BrokerOptions, Rumqttc};
    use dese_transport::{BackendClient, DeviceClient, ErrorKind};

    let dir = std::env::temp_dir().join(format!("dese-cli-acl-certs-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let ca_dir = dir.join("ca");
    let issue = |args: &[&str]| {
        let out = Command::new(root().join("scripts/certificates"))
            .args(args)
            .args(["--ca-dir", ca_dir.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", text(&out.stderr));
        let paths: Vec<PathBuf> = text(&out.stdout).lines().map(PathBuf::from).collect();
        (paths[0].clone(), paths[1].clone())
    };
    let (ca, _) = issue(&["ca"]);
    let (broker_cert, broker_key) = issue(&["broker", "--host", "localhost", "--ip", "127.0.0.1"]);
    let one_cert = issue(&["device", "--org", "acme", "--device", "pool-1"]);
    let two_cert = issue(&["device", "--org", "acme", "--device", "pool-2"]);
    let ingest_cert = issue(&["backend", "--username", "ingest"]);
    let registry = dir.join("registry.toml");
    std::fs::write(
        &registry,
        "[[backend]]\nusername = \"ingest\"\n\n[[device]]\norg = \"acme\"\ndevice = \"pool-1\"\n\n\
         [[device]]\norg = \"acme\"\ndevice = \"pool-2\"\n",
    )
    .unwrap();
    let tls_port = free_port().to_string();
    let out = dir.join("mosquitto");
    let acl = run(&[
        "acl",
        "--devices",
        registry.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--auth",
        "certificate",
        "--tls-ca",
        ca.to_str().unwrap(),
        "--tls-cert",
        broker_cert.to_str().unwrap(),
        "--tls-key",
        broker_key.to_str().unwrap(),
        "--port",
        &tls_port,
        "--bind",
        "127.0.0.1",
    ]);
    assert_eq!(acl.status.code(), Some(0), "{}", text(&acl.stderr));
    let broker = Mosquitto::start_with(MosquittoConfig {
        allow_anonymous: false,
        extra: vec![format!("include_dir {}", out.display())],
        ..MosquittoConfig::default()
    })
    .unwrap();
    let tls = |cert: Option<&(PathBuf, PathBuf)>| {
        let options = BrokerOptions::parse(&format!("mqtts://127.0.0.1:{tls_port}"))
            .unwrap()
            .with_ca(&ca)
            .unwrap();
        match cert {
            Some((cert, key)) => options.with_client_cert(cert, key).unwrap(),
            None => options,
        }
    };
    let ran = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    tokio::runtime::Runtime::new().unwrap().block_on(async {
        let settings = dese_backend::Settings {
            rate_limit: None,
            command_timeout: Duration::from_secs(2),
            ..dese_backend::Settings::default()
        };
        let mut ingest = BackendClient::<Rumqttc>::spawn(
            &tls(Some(&ingest_cert)),
            "ingest",
            settings.clone(),
            None,
        )
        .unwrap();
        let mut snoop =
            BackendClient::<Rumqttc>::spawn(&tls(Some(&two_cert)), "snoop", settings, None)
                .unwrap();
        let mut device =
            dese_device::Settings::new("acme".parse().unwrap(), "pool-1".parse().unwrap(), "1.0.0");
        device.telemetry_interval = dese_protocol::TelemetryInterval::new(200).unwrap();
        let one = DeviceClient::<Rumqttc>::spawn(
            &tls(Some(&one_cert)),
            device.clone(),
            Probe,
            Pumps(std::sync::Arc::clone(&ran)),
        )
        .unwrap();
        // The backend hears pool-1, by its certificate.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        let mut readings = 0;
        while readings < 3 {
            let event = tokio::time::timeout_at(deadline, ingest.next_event())
                .await
                .expect("pool-1's readings reach the backend");
            if let Some(dese_backend::Event::Telemetry { device, .. }) = event {
                assert_eq!(
                    (device.org.as_str(), device.device.as_str()),
                    ("acme", "pool-1")
                );
                readings += 1;
            }
        }
        // pool-2's certificate: its commands to pool-1 are dropped by the broker (they time
        // out), and none of pool-1's readings reach it.
        let (org, id) = ("acme".parse().unwrap(), "pool-1".parse().unwrap());
        let pump = Action::SetPump {
            pump_id: 1,
            state: PumpState::On,
            duration: None,
        };
        let (_, forged) = snoop.send_command(org, id, pump.clone()).await.unwrap();
        assert!(
            matches!(forged, dese_backend::Outcome::TimedOut { .. }),
            "{forged:?}"
        );
        assert_eq!(
            ran.load(std::sync::atomic::Ordering::SeqCst),
            0,
            "pool-1 ran nothing"
        );
        while let Ok(Some(event)) =
            tokio::time::timeout(Duration::from_millis(100), snoop.next_event()).await
        {
            assert!(
                !matches!(event, dese_backend::Event::Telemetry { .. }),
                "pool-2's certificate read pool-1's telemetry: {event:?}"
            );
        }
        // The backend's command is delivered and run.
        let (org, id) = ("acme".parse().unwrap(), "pool-1".parse().unwrap());
        let (_, outcome) = ingest.send_command(org, id, pump).await.unwrap();
        assert!(
            matches!(outcome, dese_backend::Outcome::Completed(_)),
            "{outcome:?}"
        );
        assert_eq!(ran.load(std::sync::atomic::Ordering::SeqCst), 1);

        // No certificate: refused by TLS. The device's username on the plain listener, with
        // any password: refused.
        let refused = |options: BrokerOptions, kind: ErrorKind| {
            let device = device.clone();
            let ran = std::sync::Arc::clone(&ran);
            async move {
                let client =
                    DeviceClient::<Rumqttc>::spawn(&options, device, Probe, Pumps(ran)).unwrap();
                let error = tokio::time::timeout(Duration::from_secs(15), client.closed())
                    .await
                    .expect("refused for good")
                    .unwrap_err();
                assert_eq!(error.kind(), kind, "{error}");
            }
        };
        refused(tls(None), ErrorKind::Tls).await;
        let plain = BrokerOptions::parse(&broker.url())
            .unwrap()
            .with_credentials("acme/pool-1", "anything");
        refused(plain, ErrorKind::Auth).await;

        one.shutdown().await.unwrap();
        ingest.shutdown().await.unwrap();
        snoop.shutdown().await.unwrap();
    });
    let _ = std::fs::remove_dir_all(&dir);
}

/// A loopback port free a moment ago.
fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The repository's root, read at run time (a shared target dir reuses test binaries).
fn root() -> PathBuf {
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest.join("../..")
}

/// Constant readings.
struct Probe;

impl dese_device::SensorReader for Probe {
    fn read(&mut self, _now: dese_device::Instant) -> Option<dese_device::Readings> {
        Some(dese_device::Readings {
            ph: 7.2,
            chlorine: 2.5,
            temperature: 25.5,
            ..dese_device::Readings::default()
        })
    }
}

/// Runs every command, counting them.
struct Pumps(std::sync::Arc<std::sync::atomic::AtomicU32>);

impl dese_device::CommandHandler for Pumps {
    fn run(
        &mut self,
        _action: &dese_protocol::Action,
        _now: dese_device::Instant,
    ) -> Result<Option<dese_protocol::JsonObject>, String> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Ok(None)
    }
}
