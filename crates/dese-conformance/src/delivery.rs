//! The backend's delivery promise on a real broker: a message is acknowledged only once the
//! application has it, a slow application slows the broker down instead of losing messages, an
//! oversized message is refused once and never again, a timed-out command is never run, and a
//! bulk send does not wait for a reconnection. Each names the statements of CONFORMANCE.md it
//! proves.

use std::collections::BTreeSet;
use std::fmt;
use std::time::{Duration, Instant as StdInstant};

use dese_backend::{DropReason, Event, Outcome, Settings as BackendSettings};
use dese_protocol::{Action, DeviceConfig, DeviceId, OrgId, PumpState, Reason, Timestamp};
use dese_sim::fleet;
use dese_testkit::raw::{Publisher, Subscriber};
use dese_testkit::{Mosquitto, MosquittoConfig};
use dese_transport::{BackendClient, BrokerOptions, DeviceClient, Transport};

use crate::fixtures::{Recorder, device_settings, eventually, wait_for};

fn org() -> OrgId {
    "org-1".parse().unwrap()
}

/// Settings for a backend fed by a fleet that is not rate limited (the scenarios measure the
/// delivery, not the limit).
fn unlimited() -> BackendSettings {
    BackendSettings {
        rate_limit: None,
        telemetry_window: 512,
        ..BackendSettings::default()
    }
}

async fn connected<T>(backend: &BackendClient<T>) {
    eventually(|| backend.is_connected(), || "backend connected".into()).await;
    // Its subscriptions are in place.
    tokio::time::sleep(Duration::from_millis(300)).await;
}

/// The message ids of the PUBACKs the broker received from `client`, in order (Mosquitto's
/// debug log: `Received PUBACK from {client} (Mid: {id}, RC:0)`).
fn pubacks(broker: &Mosquitto, client: &str) -> Vec<u32> {
    let prefix = format!("Received PUBACK from {client} (Mid: ");
    broker
        .log()
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find(&prefix)? + prefix.len()..];
            rest.split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
        .collect()
}

/// Publishes `count` readings of one device and waits for the broker's acknowledgements.
async fn publish_readings(broker: &Mosquitto, client_id: &str, count: u64) {
    let mut publisher = Publisher::connect(broker.addr(), client_id).await.unwrap();
    for seq in 0..count {
        let (topic, payload) = fleet::telemetry(&org(), &fleet::device(1), seq);
        publisher.publish(&topic, payload, false).await.unwrap();
    }
    assert!(publisher.flush(Duration::from_secs(10)).await);
}

fn debug_broker() -> Mosquitto {
    Mosquitto::start_with(MosquittoConfig {
        extra: vec!["log_type debug".to_string()],
        ..MosquittoConfig::default()
    })
    .unwrap()
}

/// A backend session that subscribed and went away, and `readings` readings of `devices`
/// devices (round robin) queued for it at the broker.
async fn queue_for_a_backend_away<B: Transport>(
    broker: &Mosquitto,
    client_id: &str,
    settings: BackendSettings,
    readings: u64,
    devices: u64,
    tag: &str,
) {
    let options = BrokerOptions::parse(&broker.url()).unwrap();
    let away = BackendClient::<B>::spawn(&options, client_id, settings, None).unwrap();
    connected(&away).await;
    away.shutdown().await.unwrap();
    let mut publisher = Publisher::connect(broker.addr(), &format!("fleet-{tag}"))
        .await
        .unwrap();
    for n in 0..readings {
        let (topic, payload) =
            fleet::telemetry(&org(), &fleet::device((n % devices) as usize), n / devices);
        publisher.publish(&topic, payload, false).await.unwrap();
    }
    assert!(publisher.flush(Duration::from_secs(60)).await, "queued");
    publisher.disconnect().await;
}

/// DESE-D9: the broker receives no acknowledgement of a message before the application
/// confirmed it, and receives them in the order the messages arrived although the application
/// confirmed them in the reverse order (MQTT 3.1.1). For a transport whose MQTT client
/// acknowledges when the message arrives (paho), see [`acknowledged_within_the_window`].
pub async fn acknowledged_after_confirmation<B: Transport>(tag: &str) {
    const MESSAGES: u64 = 5;
    let broker = debug_broker();
    let client_id = format!("acks-{tag}");
    let options = BrokerOptions::parse(&broker.url()).unwrap();
    let mut backend = BackendClient::<B>::spawn(&options, &client_id, unlimited(), None).unwrap();
    connected(&backend).await;
    publish_readings(&broker, &format!("pub-{tag}"), MESSAGES).await;
    let mut acks = Vec::new();
    while acks.len() < MESSAGES as usize {
        let delivered = tokio::time::timeout(Duration::from_secs(10), backend.next_delivery())
            .await
            .expect("the readings arrive")
            .unwrap();
        if let (Event::Telemetry { .. }, Some(ack)) = (&delivered.event, delivered.ack) {
            acks.push(ack);
        }
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        pubacks(&broker, &client_id),
        Vec::<u32>::new(),
        "nothing confirmed yet"
    );
    // The newest first: still nothing may be acknowledged while the oldest is not confirmed.
    for ack in acks.iter().skip(1).rev() {
        backend.ack(*ack).unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        pubacks(&broker, &client_id),
        Vec::<u32>::new(),
        "the oldest still held"
    );
    backend.ack(acks[0]).unwrap();
    eventually(
        || pubacks(&broker, &client_id).len() == MESSAGES as usize,
        || broker.log(),
    )
    .await;
    let ids = pubacks(&broker, &client_id);
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "arrival order: {ids:?}"
    );
    backend.shutdown().await.unwrap();
}

/// DESE-D9 under a burst: 20,000 readings of 1,000 devices queued at the broker for a backend
/// session that is away, then drained by a backend that confirms each as it comes. The broker
/// receives a PUBACK for every one of them (rumqttc's event loop, which reads ten packets from
/// the socket for each request it takes from its channel, once fell so far behind that its
/// channel refused a quarter of the acknowledgements: the broker kept those messages in flight,
/// and with an in-flight limit stopped sending). Returns how long the drain took, and how long
/// until the last PUBACK reached the broker.
pub async fn acknowledged_after_a_burst<B: Transport>(tag: &str) -> (Duration, Duration) {
    const READINGS: u64 = 20_000;
    const DEVICES: u64 = 1_000;
    let broker = Mosquitto::start_with(MosquittoConfig {
        extra: vec!["log_type debug".to_string()],
        // Mosquitto's default in-flight limit: a lost PUBACK holds one of its 20 places.
        max_inflight_messages: 20,
        ..MosquittoConfig::default()
    })
    .unwrap();
    let client_id = format!("burst-{tag}");
    let options = BrokerOptions::parse(&broker.url()).unwrap();
    queue_for_a_backend_away::<B>(&broker, &client_id, unlimited(), READINGS, DEVICES, tag).await;

    let started = tokio::time::Instant::now();
    let mut backend = BackendClient::<B>::spawn(&options, &client_id, unlimited(), None).unwrap();
    let mut readings = 0;
    while readings < READINGS {
        let delivered = tokio::time::timeout(Duration::from_secs(20), backend.next_delivery())
            .await
            .unwrap_or_else(|_| panic!("{readings} of {READINGS} readings arrived"))
            .unwrap();
        if matches!(delivered.event, Event::Telemetry { .. }) {
            readings += 1;
        }
        if let Some(ack) = delivered.ack {
            backend.ack(ack).unwrap();
        }
    }
    let drained = started.elapsed();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut acknowledged = 0;
    while tokio::time::Instant::now() < deadline {
        acknowledged = pubacks(&broker, &client_id).len();
        if acknowledged >= READINGS as usize {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        acknowledged, READINGS as usize,
        "every reading the application confirmed is acknowledged to the broker"
    );
    let all_acked = started.elapsed();
    backend.shutdown().await.unwrap();
    (drained, all_acked)
}

/// DESE-D9, for a transport whose MQTT client acknowledges a message as it arrives (paho):
/// with a receive window of 4 and an application that confirms nothing, the broker gets 4
/// acknowledgements and no more, and the rest waits at the broker until the application
/// confirms. The window bounds what a crash can lose.
pub async fn acknowledged_within_the_window<B: Transport>(tag: &str) {
    const WINDOW: usize = 4;
    const MESSAGES: u64 = 12;
    let broker = debug_broker();
    let client_id = format!("window-{tag}");
    let options = BrokerOptions::parse(&broker.url()).unwrap();
    let settings = BackendSettings {
        receive_window: WINDOW,
        ..unlimited()
    };
    let mut backend = BackendClient::<B>::spawn(&options, &client_id, settings, None).unwrap();
    connected(&backend).await;
    publish_readings(&broker, &format!("pub-{tag}"), MESSAGES).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let early = pubacks(&broker, &client_id).len();
    assert_eq!(
        early, WINDOW,
        "acknowledged before any confirmation: the window, no more"
    );
    let mut received = 0;
    while received < MESSAGES {
        let delivered = tokio::time::timeout(Duration::from_secs(10), backend.next_delivery())
            .await
            .expect("the readings arrive")
            .unwrap();
        if let Some(ack) = delivered.ack {
            received += 1;
            backend.ack(ack).unwrap();
        }
    }
    eventually(
        || pubacks(&broker, &client_id).len() == MESSAGES as usize,
        || broker.log(),
    )
    .await;
    println!(
        "{tag}: {early} of {MESSAGES} acknowledged before the application confirmed any (window {WINDOW})"
    );
    backend.shutdown().await.unwrap();
}

/// What the in-flight probe saw (see [`in_flight_limit_and_the_window`]).
#[derive(Debug, Clone, Copy)]
pub struct InFlight {
    /// PUBLISHes the broker sent before the application confirmed anything.
    pub sent_before_confirming: usize,
    /// PUBLISHes the broker sent in all, after the first ones were confirmed.
    pub sent: usize,
    /// Events the application received in all.
    pub delivered: usize,
}

/// DESE-D9 with a broker whose in-flight limit is 20 (Mosquitto's default), a burst of 2,000
/// readings queued for a backend session that is away, and a receive window of 100: before the
/// application confirms anything, the broker has sent 20 and received no PUBACK; the
/// application then confirms those 20 and nothing more, and the broker receives exactly 20
/// PUBACKs. However many more the broker then sends (Mosquitto 2.0.11 sends hundreds: its
/// limit holds only until acknowledgements flow), the application is never handed more than
/// the window beyond what it confirmed: the client stops reading and TCP holds the rest.
pub async fn in_flight_limit_and_the_window<B: Transport>(tag: &str) -> InFlight {
    const READINGS: u64 = 2_000;
    const LIMIT: usize = 20;
    const WINDOW: usize = 100;
    let broker = Mosquitto::start_with(MosquittoConfig {
        extra: vec!["log_type debug".to_string()],
        max_inflight_messages: u32::try_from(LIMIT).unwrap(),
        ..MosquittoConfig::default()
    })
    .unwrap();
    let client_id = format!("in-flight-{tag}");
    let options = BrokerOptions::parse(&broker.url()).unwrap();
    let settings = || BackendSettings {
        receive_window: WINDOW,
        ..unlimited()
    };
    queue_for_a_backend_away::<B>(&broker, &client_id, settings(), READINGS, 100, tag).await;

    let sent = || {
        let line = format!("Sending PUBLISH to {client_id} ");
        broker.log().lines().filter(|l| l.contains(&line)).count()
    };
    let mut backend = BackendClient::<B>::spawn(&options, &client_id, settings(), None).unwrap();
    let mut held = Vec::new();
    while held.len() < LIMIT {
        let delivered = tokio::time::timeout(Duration::from_secs(10), backend.next_delivery())
            .await
            .expect("the broker's first messages arrive")
            .unwrap();
        held.extend(delivered.ack);
    }
    // Mosquitto's log is written as it goes: wait for the lines, then for any beyond them.
    eventually(|| sent() >= LIMIT, || broker.log()).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let sent_before_confirming = sent();
    assert_eq!(
        sent_before_confirming, LIMIT,
        "the broker's limit before any acknowledgement"
    );
    assert_eq!(
        pubacks(&broker, &client_id).len(),
        0,
        "nothing confirmed yet"
    );
    backend.handle().ack_all(held).unwrap();
    let mut delivered = LIMIT;
    // Whatever the broker sends in the next two seconds: the application takes all it is given.
    let until = tokio::time::Instant::now() + Duration::from_secs(2);
    while let Ok(Some(more)) = tokio::time::timeout_at(until, backend.next_delivery()).await {
        delivered += usize::from(more.ack.is_some());
    }
    eventually(
        || pubacks(&broker, &client_id).len() == LIMIT,
        || broker.log(),
    )
    .await;
    assert_eq!(
        pubacks(&broker, &client_id).len(),
        LIMIT,
        "exactly what was confirmed"
    );
    assert!(
        delivered <= LIMIT + WINDOW,
        "{delivered} events handed over: more than the confirmed {LIMIT} and the window {WINDOW}"
    );
    let figures = InFlight {
        sent_before_confirming,
        sent: sent(),
        delivered,
    };
    backend.shutdown().await.unwrap();
    figures
}

/// What the slow-consumer scenario measured.
#[derive(Debug, Clone, Default)]
pub struct SlowConsumer {
    /// Readings published.
    pub sent: u64,
    /// Distinct readings the backend received.
    pub received: u64,
    /// Readings the backend received more than once (flagged duplicates excluded).
    pub repeated: u64,
    /// Received while the devices were sending.
    pub received_while_sending: u64,
    /// The most events the client held unconfirmed at any sample.
    pub max_unconfirmed: usize,
    /// The process's resident memory: at the start, and the most at any sample, in KiB.
    pub rss_kib: (u64, u64),
    /// How long the devices sent.
    pub sending: Duration,
    /// The whole run.
    pub elapsed: Duration,
}

impl fmt::Display for SlowConsumer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {} in {:.0?}, received {} once each ({} while sending), lost {}, repeated {}, \
             at most {} unconfirmed, resident memory {} KiB at the start, {} KiB at most, time {:.1?}",
            self.sent,
            self.sending,
            self.received,
            self.received_while_sending,
            self.sent - self.received.min(self.sent),
            self.repeated,
            self.max_unconfirmed,
            self.rss_kib.0,
            self.rss_kib.1,
            self.elapsed
        )
    }
}

/// This process's resident memory, in KiB (Linux).
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
}

/// DESE-D9: 250 devices send 1,000 readings a second for `sending` while the application takes
/// 200 events a second; then it takes them as fast as it can. Every reading arrives, once, and
/// less than half of them had arrived when the devices stopped: the broker held the rest, not
/// the client (which holds at most its receive window; the figures show the most it held, and
/// the process's memory).
pub async fn slow_consumer<B: Transport>(tag: &str, sending: Duration) -> SlowConsumer {
    const DEVICES: usize = 250;
    const PER_TICK: u64 = 10; // every 10 ms: 1,000 a second
    let started = StdInstant::now();
    let broker = Mosquitto::start().unwrap();
    let options = BrokerOptions::parse(&broker.url()).unwrap();
    let mut backend =
        BackendClient::<B>::spawn(&options, &format!("slow-{tag}"), unlimited(), None).unwrap();
    connected(&backend).await;
    let ticks = u64::try_from(sending.as_millis() / 10).unwrap_or(u64::MAX);
    let sent = ticks * PER_TICK;
    let addr = broker.addr();
    let tag_owned = tag.to_string();
    let devices = tokio::spawn(async move {
        let mut publisher = Publisher::connect(addr, &format!("fleet-{tag_owned}"))
            .await
            .unwrap();
        let begin = tokio::time::Instant::now();
        for tick in 0..ticks {
            for k in 0..PER_TICK {
                let n = tick * PER_TICK + k;
                let device = fleet::device((n % DEVICES as u64) as usize);
                let (topic, payload) = fleet::telemetry(&org(), &device, n / DEVICES as u64);
                publisher.publish(&topic, payload, false).await.unwrap();
            }
            tokio::time::sleep_until(begin + Duration::from_millis(10 * (tick + 1))).await;
        }
        assert!(publisher.flush(Duration::from_secs(30)).await);
        publisher.disconnect().await;
        begin.elapsed()
    });

    let mut seen: BTreeSet<(DeviceId, Timestamp)> = BTreeSet::new();
    let mut report = SlowConsumer {
        sent,
        rss_kib: (rss_kib(), 0),
        ..SlowConsumer::default()
    };
    let mut sampled = StdInstant::now();
    let deadline = tokio::time::Instant::now() + sending + Duration::from_secs(120);
    while (seen.len() as u64) < sent {
        let event = tokio::time::timeout_at(deadline, backend.next_event())
            .await
            .expect("every reading arrives in time")
            .unwrap();
        if let Event::Telemetry { device, telemetry } = event {
            if !seen.insert((device.device, telemetry.timestamp)) {
                report.repeated += 1;
            }
        }
        if sampled.elapsed() >= Duration::from_millis(100) {
            sampled = StdInstant::now();
            report.max_unconfirmed = report.max_unconfirmed.max(backend.backlog().unconfirmed);
            report.rss_kib.1 = report.rss_kib.1.max(rss_kib());
        }
        if !devices.is_finished() {
            report.received_while_sending = seen.len() as u64;
            // 200 events a second.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    report.sending = devices.await.unwrap();
    report.received = seen.len() as u64;
    report.elapsed = started.elapsed();
    assert_eq!(report.received, sent, "every reading arrived");
    assert_eq!(report.repeated, 0, "none twice as new data");
    assert!(
        report.received_while_sending < sent / 2,
        "the application was slow, the broker held the rest: {report}"
    );
    backend.shutdown().await.unwrap();
    report
}

/// What the oversized-message scenario measured.
#[derive(Debug, Clone, Default)]
pub struct Oversized {
    /// Oversized messages refused, counted by the engine (the retained ones again after a
    /// reconnection).
    pub refused: u64,
    /// Normal readings sent and received.
    pub readings: (u64, u64),
    /// Connections the backend made.
    pub connections: u64,
    /// What a second backend with the same session refused: only the retained messages again
    /// (twice each over rumqttc, which reconnects once to take the large one).
    pub redelivered_refused: u64,
}

impl fmt::Display for Oversized {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "oversized refused {}, readings sent {} received {}, connections {}, \
             refused again by the next session {} (the retained ones)",
            self.refused,
            self.readings.0,
            self.readings.1,
            self.connections,
            self.redelivered_refused
        )
    }
}

/// DESE-V3: 25 KiB and 2 MiB messages, plain and retained, on a broker with no size limit,
/// then normal readings of other devices: every normal reading arrives, each oversized message
/// is refused as too large and acknowledged (the next session of the same client gets only the
/// retained ones again), and the client reconnects at most once.
pub async fn oversized<B: Transport>(tag: &str) -> Oversized {
    const READINGS: u64 = 100;
    let broker = Mosquitto::start().unwrap();
    let options = BrokerOptions::parse(&broker.url()).unwrap();
    let mut publisher = Publisher::connect(broker.addr(), &format!("pub-{tag}"))
        .await
        .unwrap();
    let big = |kib: usize| vec![b' '; kib * 1024];
    let topic = |device: &str, kind: &str| format!("devices/org-1/{device}/{kind}");
    // Retained before the backend comes: delivered as it subscribes, and at every resubscription.
    publisher
        .publish(&topic("big-2", "status"), big(25), true)
        .await
        .unwrap();
    publisher
        .publish(&topic("big-4", "status"), big(2048), true)
        .await
        .unwrap();
    assert!(publisher.flush(Duration::from_secs(10)).await);
    let client_id = format!("oversized-{tag}");
    let mut backend = BackendClient::<B>::spawn(&options, &client_id, unlimited(), None).unwrap();
    connected(&backend).await;
    publisher
        .publish(&topic("big-1", "telemetry"), big(25), false)
        .await
        .unwrap();
    publisher
        .publish(&topic("big-3", "telemetry"), big(2048), false)
        .await
        .unwrap();
    for seq in 0..READINGS {
        let (topic, payload) = fleet::telemetry(&org(), &fleet::device((seq % 10) as usize), seq);
        publisher.publish(&topic, payload, false).await.unwrap();
    }
    assert!(publisher.flush(Duration::from_secs(20)).await);
    let mut readings = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while (readings.len() as u64) < READINGS {
        match tokio::time::timeout_at(deadline, backend.next_event()).await {
            Ok(Some(Event::Telemetry { device, telemetry })) => {
                readings.insert((device.device, telemetry.timestamp));
            }
            Ok(Some(_)) => {}
            Ok(None) | Err(_) => break,
        }
    }
    let too_large = |backend: &BackendClient<B>| {
        backend
            .counters()
            .dropped
            .get(&DropReason::Invalid(Reason::TooLarge))
            .copied()
            .unwrap_or(0)
    };
    // The four oversized messages were all refused (the retained ones maybe twice).
    eventually(
        || too_large(&backend) >= 4,
        || format!("{:?}", backend.counters()),
    )
    .await;
    let report = Oversized {
        refused: too_large(&backend),
        readings: (READINGS, readings.len() as u64),
        connections: backend.counters().connections,
        ..Oversized::default()
    };
    backend.shutdown().await.unwrap();
    assert_eq!(
        report.readings.1, READINGS,
        "every normal reading: {report}"
    );
    assert!(
        report.connections <= 2,
        "at most one reconnection: {report}"
    );

    // The same session again: what was acknowledged is gone; only the retained two come back.
    let mut again = BackendClient::<B>::spawn(&options, &client_id, unlimited(), None).unwrap();
    let mut refused = BTreeSet::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while let Ok(Some(event)) = tokio::time::timeout_at(deadline, again.next_event()).await {
        match event {
            Event::Dropped { topic, .. } => {
                refused.insert(topic);
            }
            Event::Telemetry { .. } => panic!("acknowledged readings came back: {event:?}"),
            _ => {}
        }
    }
    let retained = BTreeSet::from([topic("big-2", "status"), topic("big-4", "status")]);
    assert_eq!(refused, retained, "only the retained ones came back");
    let report = Oversized {
        redelivered_refused: too_large(&again),
        ..report
    };
    again.shutdown().await.unwrap();
    report
}

/// DESE-C1, DESE-C5: a command that times out while the broker is down is withdrawn: the
/// device, back after the outage, never runs it; a command sent after the outage runs.
pub async fn timed_out_command_is_withdrawn<D: Transport, B: Transport>() {
    let mut broker = Mosquitto::start().unwrap();
    let options = BrokerOptions::parse(&broker.url()).unwrap();
    let settings = BackendSettings {
        command_timeout: Duration::from_secs(1),
        backoff: dese_backend::Backoff {
            base: Duration::from_millis(100),
            cap: Duration::from_millis(500),
            ..dese_backend::Backoff::DEFAULT
        },
        ..unlimited()
    };
    let mut backend = BackendClient::<B>::spawn(&options, "withdraw", settings, None).unwrap();
    let handler = Recorder::default();
    let device = DeviceClient::<D>::spawn(
        &options,
        device_settings("org-1", "dev-away", 60_000),
        crate::fixtures::NoSensors,
        handler.clone(),
    )
    .unwrap();
    wait_for(&mut backend, |e| matches!(e, Event::PresenceChanged { .. })).await;

    broker.stop();
    eventually(
        || !backend.is_connected(),
        || "backend saw the outage".into(),
    )
    .await;
    let dev: DeviceId = "dev-away".parse().unwrap();
    let (_, outcome) = backend
        .send_command(org(), dev.clone(), Action::Reboot)
        .await
        .unwrap();
    assert_eq!(outcome, Outcome::TimedOut { attempts: 1 });
    broker.start_again().unwrap();
    eventually(
        || backend.is_connected() && device.is_connected(),
        || "both back".into(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let pump = Action::SetPump {
        pump_id: 1,
        state: PumpState::On,
        duration: Some(5),
    };
    let (_, outcome) = backend.send_command(org(), dev, pump).await.unwrap();
    assert!(matches!(outcome, Outcome::Completed(_)), "{outcome:?}");
    assert_eq!(
        handler.names(),
        ["set_pump"],
        "the timed-out reboot never ran"
    );
    assert_eq!(backend.counters().commands_withdrawn, 1);
    device.shutdown().await.unwrap();
    backend.shutdown().await.unwrap();
}

/// What the bulk send measured.
#[derive(Debug, Clone, Default)]
pub struct Bulk {
    /// Configs sent.
    pub sent: u64,
    /// Configs a subscriber received.
    pub received: u64,
    /// Connections the backend made (1: no reconnection).
    pub connections: u64,
    /// How long until the last one arrived.
    pub elapsed: Duration,
}

impl fmt::Display for Bulk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "configs sent {}, received {}, connections {}, time {:.1?}",
            self.sent, self.received, self.connections, self.elapsed
        )
    }
}

/// A config to each of 10,000 devices, more than the MQTT client's request channel holds:
/// every one arrives, on the first connection.
pub async fn bulk_config<B: Transport>(tag: &str) -> Bulk {
    const DEVICES: usize = 10_000;
    let broker = Mosquitto::start().unwrap();
    let options = BrokerOptions::parse(&broker.url()).unwrap();
    let subscriber = Subscriber::connect(
        broker.addr(),
        &format!("devices-{tag}"),
        "devices/+/+/config",
    )
    .await
    .unwrap();
    let backend =
        BackendClient::<B>::spawn(&options, &format!("bulk-{tag}"), unlimited(), None).unwrap();
    connected(&backend).await;
    let started = StdInstant::now();
    for index in 0..DEVICES {
        backend
            .send_config(org(), fleet::device(index), DeviceConfig::default())
            .await
            .unwrap();
    }
    let arrived = subscriber
        .wait_for(DEVICES as u64, Duration::from_secs(60))
        .await;
    let report = Bulk {
        sent: DEVICES as u64,
        received: subscriber.received(),
        connections: backend.counters().connections,
        elapsed: started.elapsed(),
    };
    assert!(arrived, "{report}");
    assert_eq!(report.connections, 1, "no reconnection: {report}");
    eventually(
        || backend.backlog().outbox == 0,
        || format!("{:?}", backend.backlog()),
    )
    .await;
    backend.shutdown().await.unwrap();
    subscriber.disconnect().await;
    report
}
