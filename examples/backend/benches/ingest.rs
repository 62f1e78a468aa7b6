//! The reference backend's stored readings per second against a raw rumqttc subscriber's
//! received rate, in one run through one Mosquitto on loopback.
//!
//!     cargo bench -p dese-reference-backend --bench ingest     # 20,000 readings, 3 rounds
//!
//! Each round queues the same burst (1,000 devices, 20 readings each) at the broker for a
//! persistent session that is away, then starts the consumer and times how long it takes to
//! drain it: the raw subscriber counts what arrives (rumqttc acknowledges on receipt); the
//! reference backend decodes, checks and deduplicates every message, stores it in SQLite in
//! batches and acknowledges each message after its commit. Both on a broker that sends any
//! number of messages ahead of their acknowledgement, then on Mosquitto's default of 20; then
//! three instances of the reference backend in one shared-subscription group, storing into one
//! PostgreSQL, against the raw subscriber.
//!
//! Without `--bench` (as `cargo test --benches` runs it) it does 2,000 readings, one round;
//! `DESE_INGEST_READINGS=200000` sets the burst (the brokers queue all of it).
//! `DESE_INGEST_ONLY=sqlite` runs the SQLite comparison without the group; `backend` (or
//! `raw`) one side of it only, for a profiler; `group` runs only the three instances on
//! PostgreSQL (skipped when no PostgreSQL server is installed). `DESE_INGEST_BATCH=4096` sets
//! the backends' largest batch (and a receive window of two of them, or `DESE_INGEST_WINDOW`).

#![allow(missing_docs)]
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)]

use std::time::{Duration, Instant};

use dese_protocol::OrgId;
use dese_reference_backend::{BackendOptions, Database, ReferenceBackend};
use dese_rumqttc::{BrokerOptions, Rumqttc};
use dese_sim::fleet;
use dese_testkit::raw::{Publisher, Subscriber};
use dese_testkit::{Mosquitto, MosquittoConfig, Postgres};

const DEVICES: u64 = 1_000;

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

/// CPU time used so far by a process and its children (PostgreSQL's server and the backends it
/// forks for each connection), in nanoseconds.
fn cpu_ns_tree(pid: u32) -> u64 {
    let children: u64 = std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let child = entry.file_name().to_str()?.parse::<u32>().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{child}/stat")).ok()?;
            // The fields after the command name's closing parenthesis: state, then ppid.
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

/// What one consumer's drain measured.
#[derive(Debug, Clone, Copy)]
struct Drain {
    /// Readings per second.
    rate: f64,
    /// CPU per reading, microseconds: this process (the consumer) and the broker.
    cpu_us: (f64, f64),
}

impl Drain {
    /// Times `drain` and counts the CPU both processes spent meanwhile.
    async fn measure<F: std::future::Future<Output = ()>>(
        broker: &Mosquitto,
        readings: u64,
        drain: F,
    ) -> Self {
        let broker_pid = broker.pid().map(|p| p.to_string()).unwrap_or_default();
        let (ours, theirs) = (cpu_ns("self"), cpu_ns(&broker_pid));
        let started = Instant::now();
        drain.await;
        let elapsed = started.elapsed();
        let per = |ns: u64| ns as f64 / 1_000.0 / readings as f64;
        Self {
            rate: readings as f64 / elapsed.as_secs_f64(),
            cpu_us: (
                per(cpu_ns("self") - ours),
                per(cpu_ns(&broker_pid) - theirs),
            ),
        }
    }
}

async fn queue_burst(broker: &Mosquitto, readings: u64) {
    let org: OrgId = "acme".parse().expect("org");
    let mut publisher = Publisher::connect(broker.addr(), "fleet")
        .await
        .expect("publisher");
    for n in 0..readings {
        let device = fleet::device((n % DEVICES) as usize);
        let seq = n / DEVICES;
        let (topic, payload) = fleet::telemetry(&org, &device, seq);
        publisher
            .publish(&topic, payload, false)
            .await
            .expect("publish");
    }
    assert!(publisher.flush(Duration::from_secs(120)).await, "queued");
    publisher.disconnect().await;
}

/// The raw subscriber's drain.
async fn raw(broker: &Mosquitto, readings: u64) -> Drain {
    let filter = "devices/+/+/telemetry";
    Subscriber::connect(broker.addr(), "raw", filter)
        .await
        .expect("subscriber")
        .disconnect()
        .await;
    queue_burst(broker, readings).await;
    let mut done = None;
    let drain = Drain::measure(broker, readings, async {
        let subscriber = Subscriber::connect(broker.addr(), "raw", filter)
            .await
            .expect("subscriber");
        assert!(
            subscriber
                .wait_for(readings, Duration::from_secs(120))
                .await,
            "the raw subscriber got {} of {readings}",
            subscriber.received()
        );
        done = Some(subscriber);
    })
    .await;
    if let Some(subscriber) = done {
        subscriber.disconnect().await;
    }
    drain
}

/// The reference backend's drain: every reading stored.
async fn backend(broker: &Mosquitto, dir: &std::path::Path, readings: u64, round: usize) -> Drain {
    let db = dir.join(format!("ingest-{}-{round}.sqlite", broker.port()));
    let options = || {
        let mut options = BackendOptions::new(&db);
        options.client_id = "ingest".to_string();
        options.config = None;
        options.react_to_alerts = false;
        override_batches(&mut options);
        options
    };
    let broker_options = BrokerOptions::parse(&broker.url()).expect("url");
    let first = ReferenceBackend::spawn::<Rumqttc>(&broker_options, options())
        .await
        .expect("backend");
    tokio::time::sleep(Duration::from_millis(500)).await; // the session and its subscriptions
    first.shutdown().await.expect("shutdown");
    queue_burst(broker, readings).await;
    let mut done = None;
    let drain = Drain::measure(broker, readings, async {
        let backend = ReferenceBackend::spawn::<Rumqttc>(&broker_options, options())
            .await
            .expect("backend");
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            // What the backend says it stored: no query that would cost the database.
            let stored = backend.stored();
            if stored >= readings {
                break;
            }
            if Instant::now() >= deadline {
                let counters = backend.counters().await;
                panic!("stored {stored} of {readings}; the backend's counters: {counters:#?}");
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        done = Some(backend);
    })
    .await;
    if let Some(backend) = done {
        backend.shutdown().await.expect("shutdown");
    }
    drain
}

/// Three reference backends in one group on one PostgreSQL: their drain, and how many readings
/// each stored.
async fn group_on_postgres(broker: &Mosquitto, readings: u64) -> (Drain, f64, Vec<u64>) {
    let postgres = Postgres::start().expect("postgres");
    let db = Database::parse(&postgres.url());
    let options = |id: &str| {
        let mut options = BackendOptions::new(db.clone());
        options.client_id = format!("ingest-{id}");
        options.settings.instance = id.to_string();
        options.group = Some("ingest".parse().expect("group"));
        options.config = None;
        options.react_to_alerts = false;
        override_batches(&mut options);
        options
    };
    let broker_options = BrokerOptions::parse(&broker.url()).expect("url");
    let ids = ["a", "b", "c"];
    // The sessions and their shared subscriptions first; the broker queues the burst for them.
    for id in ids {
        let first = ReferenceBackend::spawn::<Rumqttc>(&broker_options, options(id))
            .await
            .expect("backend");
        tokio::time::sleep(Duration::from_millis(300)).await;
        first.shutdown().await.expect("shutdown");
    }
    queue_burst(broker, readings).await;
    let mut running = Vec::new();
    let server = postgres.pid().unwrap_or(0);
    let before = cpu_ns_tree(server);
    let drain = Drain::measure(broker, readings, async {
        for id in ids {
            running.push(
                ReferenceBackend::spawn::<Rumqttc>(&broker_options, options(id))
                    .await
                    .expect("backend"),
            );
        }
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            // What the instances say they stored: no query that would cost the database.
            let stored: u64 = running.iter().map(ReferenceBackend::stored).sum();
            if stored >= readings {
                break;
            }
            assert!(Instant::now() < deadline, "stored {stored} of {readings}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let database_us = (cpu_ns_tree(server) - before) as f64 / 1_000.0 / readings as f64;
    let mut split = Vec::new();
    for instance in running {
        let counters = instance.counters().await.expect("counters");
        split.push(
            counters
                .accepted
                .get(&dese_protocol::MessageKind::Telemetry)
                .copied()
                .unwrap_or(0),
        );
        instance.shutdown().await.expect("shutdown");
    }
    (drain, database_us, split)
}

async fn compare_group(readings: u64, rounds: usize) {
    if let Err(e) = Postgres::start() {
        println!("three instances on PostgreSQL: skipped ({e})");
        return;
    }
    let broker = || {
        Mosquitto::start_with(MosquittoConfig {
            max_queued_messages: queue_limit(readings),
            ..MosquittoConfig::default()
        })
        .expect("mosquitto")
    };
    let mut ratios = Vec::new();
    for _ in 0..rounds {
        let raw = raw(&broker(), readings).await;
        let (stored, database_us, split) = group_on_postgres(&broker(), readings).await;
        let ratio = stored.rate / raw.rate;
        println!(
            "three instances on PostgreSQL, {readings} readings: raw subscriber {:.0}/s \
             (CPU per reading {:.1} µs, broker {:.1} µs), the group stored {:.0}/s (CPU per \
             reading {:.1} µs in the three, PostgreSQL {database_us:.1} µs, broker {:.1} µs), \
             split {split:?}, ratio {ratio:.2}x",
            raw.rate, raw.cpu_us.0, raw.cpu_us.1, stored.rate, stored.cpu_us.0, stored.cpu_us.1
        );
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "three instances on PostgreSQL: median ratio stored / raw {:.2}x over {rounds} round(s)",
        ratios[ratios.len() / 2]
    );
}

async fn compare(inflight: u32, readings: u64, rounds: usize, dir: &std::path::Path) {
    // A broker per round: no session of an earlier round collects this round's burst.
    let broker = || {
        Mosquitto::start_with(MosquittoConfig {
            max_inflight_messages: inflight,
            max_queued_messages: queue_limit(readings),
            ..MosquittoConfig::default()
        })
        .expect("mosquitto")
    };
    let window = if inflight == 0 {
        "any number".to_string()
    } else {
        inflight.to_string()
    };
    let only = std::env::var("DESE_INGEST_ONLY").unwrap_or_default();
    let skipped = Drain {
        rate: f64::NAN,
        cpu_us: (f64::NAN, f64::NAN),
    };
    let mut ratios = Vec::new();
    for round in 0..rounds {
        let raw = match only.as_str() {
            "backend" => skipped,
            _ => raw(&broker(), readings).await,
        };
        let stored = match only.as_str() {
            "raw" => skipped,
            _ => backend(&broker(), dir, readings, round).await,
        };
        let ratio = stored.rate / raw.rate;
        println!(
            "broker sends {window} ahead of acks, {readings} readings: raw subscriber {:.0}/s \
             (CPU per reading {:.1} µs, broker {:.1} µs), reference backend stored {:.0}/s \
             (CPU {:.1} µs, broker {:.1} µs), ratio {ratio:.2}x",
            raw.rate, raw.cpu_us.0, raw.cpu_us.1, stored.rate, stored.cpu_us.0, stored.cpu_us.1
        );
        ratios.push(ratio);
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "broker sends {window} ahead of acks: median ratio stored / raw {:.2}x over {rounds} round(s)",
        ratios[ratios.len() / 2]
    );
}

/// `DESE_INGEST_BATCH=N`: the backends' batches of up to N events, with a receive window of
/// two batches, or of `DESE_INGEST_WINDOW` events (the defaults are 2,048 and 4,096).
fn override_batches(options: &mut BackendOptions) {
    let window = positive("DESE_INGEST_WINDOW");
    match positive("DESE_INGEST_BATCH") {
        Some(batch) => {
            options.batch_max = batch;
            options.settings.receive_window = window.unwrap_or(batch * 2);
        }
        None => assert!(
            window.is_none(),
            "DESE_INGEST_WINDOW is only read with DESE_INGEST_BATCH"
        ),
    }
}

/// A variable that, when set, must hold a positive integer.
fn positive(name: &str) -> Option<usize> {
    let text = std::env::var(name).ok()?;
    match text.parse() {
        Ok(n) if n > 0 => Some(n),
        _ => panic!("{name}: expected a positive integer, got {text:?}"),
    }
}

/// Room at the broker for the whole burst of a session that is away.
fn queue_limit(readings: u64) -> u32 {
    u32::try_from(readings).unwrap_or(u32::MAX).max(100_000)
}

fn main() {
    let bench = std::env::args().any(|a| a == "--bench");
    let (readings, rounds) = if bench { (20_000, 3) } else { (2_000, 1) };
    let readings = positive("DESE_INGEST_READINGS").map_or(readings, |n| n as u64);
    let dir = std::env::temp_dir().join(format!("dese-ingest-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let only = std::env::var("DESE_INGEST_ONLY").unwrap_or_default();
    runtime.block_on(async {
        if only != "group" {
            compare(0, readings, rounds, &dir).await;
            compare(20, readings, rounds, &dir).await;
        }
        // The SQLite comparison alone, or one side of it for a profiler: no PostgreSQL.
        if !matches!(only.as_str(), "backend" | "raw" | "sqlite") {
            compare_group(readings, rounds).await;
        }
    });
    let _ = std::fs::remove_dir_all(dir);
}
