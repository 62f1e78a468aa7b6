//! A fleet on one machine: simulated devices (each its own MQTT connection and the SDK's device
//! engine over rumqttc, as `dese simulate` runs them) send telemetry through Mosquitto to three
//! reference backends in one group, storing into one PostgreSQL. Reports what the devices cost
//! (resident memory, CPU), what the backends, the broker and the database cost, and whether
//! every reading was stored once.
//!
//!     cargo bench -p dese-reference-backend --bench fleet     # 10,000 devices for 60 s
//!
//! Without `--bench` (as `cargo test --benches` runs it): 100 devices for 5 s.
//! `DESE_FLEET_DEVICES` and `DESE_FLEET_SECS` change the size and the time.

#![allow(missing_docs)]
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dese_device::Settings;
use dese_protocol::{OrgId, TelemetryInterval};
use dese_rumqttc::{BrokerOptions, DeviceClient};
use dese_sim::fleet;
use dese_sim::water::{Pool, PoolModel};
use dese_testkit::{Mosquitto, MosquittoConfig, Postgres};

/// CPU time used so far by every thread of a process, in nanoseconds (Linux's schedstat).
fn cpu_ns(pid: &str) -> u64 {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .filter_map(Result::ok)
        .filter_map(|task| std::fs::read_to_string(task.path().join("schedstat")).ok())
        .filter_map(|line| line.split_whitespace().next()?.parse::<u64>().ok())
        .sum()
}

/// The same, for a process and its children (PostgreSQL forks a backend per connection).
fn cpu_ns_tree(pid: u32) -> u64 {
    let children: u64 = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let child = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
            let ppid: u32 = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .nth(1)?
                .parse()
                .ok()?;
            (ppid == pid).then(|| cpu_ns(&child.to_string()))
        })
        .sum();
    cpu_ns(&pid.to_string()) + children
}

/// This process's resident memory, in MiB.
fn rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
        })
        .unwrap_or(0.0)
        / 1024.0
}

fn telemetry_rows(postgres: &Postgres) -> u64 {
    Command::new("psql")
        .args([
            &postgres.url(),
            "-At",
            "-c",
            "SELECT count(*) FROM telemetry",
        ])
        .output()
        .ok()
        .and_then(|out| String::from_utf8(out.stdout).ok()?.trim().parse().ok())
        .unwrap_or(0)
}

fn backend(
    broker: &Mosquitto,
    postgres: &Postgres,
    id: &str,
) -> (Child, std::sync::mpsc::Receiver<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dese-reference-backend"))
        .args(["--broker", &broker.url(), "--db", &postgres.url()])
        .args([
            "--client-id",
            id,
            "--group",
            "fleet",
            "--no-config",
            "--no-react",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("dese-reference-backend");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    (child, lines)
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let devices = env_or("DESE_FLEET_DEVICES", if bench { 10_000 } else { 100 });
    let seconds = env_or("DESE_FLEET_SECS", if bench { 60 } else { 5 });
    let interval_ms = if bench { 5_000 } else { 1_000 };
    let Ok(postgres) = Postgres::start() else {
        println!("fleet: skipped (no PostgreSQL server installed)");
        return;
    };
    let broker = Mosquitto::start_with(MosquittoConfig {
        max_queued_messages: 1_000_000,
        ..MosquittoConfig::default()
    })
    .expect("mosquitto");
    let ids = ["fleet-a", "fleet-b", "fleet-c"];
    let mut backends: Vec<_> = ids
        .iter()
        .map(|id| backend(&broker, &postgres, id))
        .collect();
    let deadline = Instant::now() + Duration::from_secs(30);
    while ids
        .iter()
        .any(|id| !broker.log().contains(&format!(" as {id} ")))
    {
        assert!(Instant::now() < deadline, "the backends did not connect");
        std::thread::sleep(Duration::from_millis(50));
    }
    std::thread::sleep(Duration::from_millis(500));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let base_rss = rss_mib();
    let broker_pid = broker.pid().map(|p| p.to_string()).unwrap_or_default();
    let backend_pids: Vec<String> = backends.iter().map(|(c, _)| c.id().to_string()).collect();
    let (sent, devices_rss, cpu) = runtime.block_on(async {
        let options = BrokerOptions::parse(&broker.url()).expect("url");
        let org: OrgId = "acme".parse().expect("org");
        let cpu_before = (
            cpu_ns("self"),
            backend_pids.iter().map(|p| cpu_ns(p)).sum::<u64>(),
            cpu_ns(&broker_pid),
            cpu_ns_tree(postgres.pid().unwrap_or(0)),
        );
        let mut clients = Vec::new();
        for index in 0..devices as usize {
            let mut settings = Settings::new(org.clone(), fleet::device(index), "fleet-1.0.0");
            settings.telemetry_interval = TelemetryInterval::new(interval_ms).expect("interval");
            let pool = Pool::new(PoolModel::default(), index as u64);
            clients.push(
                DeviceClient::spawn(&options, settings, pool.sensors(), pool.controller())
                    .expect("device"),
            );
        }
        let started = Instant::now();
        let mut most = 0.0_f64;
        while started.elapsed() < Duration::from_secs(seconds) {
            tokio::time::sleep(Duration::from_millis(500)).await;
            most = most.max(rss_mib());
        }
        let mut sent = 0;
        for client in clients {
            sent += client.shutdown().await.expect("shutdown").telemetry;
        }
        let cpu_after = (
            cpu_ns("self"),
            backend_pids.iter().map(|p| cpu_ns(p)).sum::<u64>(),
            cpu_ns(&broker_pid),
            cpu_ns_tree(postgres.pid().unwrap_or(0)),
        );
        let cores = |before: u64, after: u64| {
            (after - before) as f64 / 1e9 / started.elapsed().as_secs_f64()
        };
        let cpu = (
            cores(cpu_before.0, cpu_after.0),
            cores(cpu_before.1, cpu_after.1),
            cores(cpu_before.2, cpu_after.2),
            cores(cpu_before.3, cpu_after.3),
        );
        (sent, most - base_rss, cpu)
    });
    // Every reading the devices sent, stored (the backends catch up).
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut stored = telemetry_rows(&postgres);
    while stored < sent && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
        stored = telemetry_rows(&postgres);
    }
    let mut split = Vec::new();
    for (child, lines) in &mut backends {
        let _ = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status();
        let _ = child.wait();
        split.push(
            lines
                .try_iter()
                .find_map(|l| {
                    l.strip_prefix("dese-backend: this instance received ")?
                        .split_whitespace()
                        .next()?
                        .parse::<u64>()
                        .ok()
                })
                .unwrap_or(0),
        );
    }
    println!(
        "fleet: {devices} devices, a reading every {interval_ms} ms each, for {seconds} s: \
         the devices took {devices_rss:.0} MiB of resident memory ({:.0} KiB each) and {:.2} \
         cores; the three backends {:.2} cores, Mosquitto {:.2}, PostgreSQL {:.2}",
        devices_rss * 1024.0 / devices as f64,
        cpu.0,
        cpu.1,
        cpu.2,
        cpu.3
    );
    println!(
        "fleet: {sent} readings sent, {stored} stored, {} lost; the backends received {split:?}",
        sent.saturating_sub(stored)
    );
    assert_eq!(stored, sent, "every reading stored once");
}
