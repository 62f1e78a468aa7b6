//! Chaos: the faults real networks produce, injected between a device and the broker by
//! `dese-testkit`'s proxy, while the device streams readings and the backend commands it. The
//! delivery promise is checked (every reading the device took reaches the backend; copies are
//! recognised; every command completes, fails or times out, and none runs twice), and the
//! figures are returned for the test, `scripts/chaos` and docs/reliability.md.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant as StdInstant};

use dese_backend::{Event, Outcome, Settings as BackendSettings};
use dese_device::{CommandHandler, Instant, Readings};
use dese_protocol::{Action, DeviceId, JsonObject, Keepalive, OrgId, PumpState};
use dese_testkit::{Mosquitto, Proxy};
use dese_transport::{BackendClient, BrokerOptions, DeviceClient, Transport};

use crate::fixtures::{NoSensors, device_settings, eventually, telemetry_duplicates};

/// The faults of one run: how many of each, spread over the readings in an order drawn from
/// the seed.
#[derive(Debug, Clone, Copy)]
pub struct Faults {
    /// Seeds the proxy's choices and the order of the faults: a failing run replays.
    pub seed: u64,
    /// Readings the device publishes.
    pub readings: u32,
    /// How many a second: the faults fall at even intervals of the readings, so this spreads
    /// them in time too.
    pub per_second: u32,
    /// Connections reset (RST) at once.
    pub resets: u32,
    /// Connections cut in the middle of a chunk (the receiver holds part of a packet), then
    /// reset.
    pub mid_packet_cuts: u32,
    /// Links gone silent (no FIN, no RST), until the device notices.
    pub silences: u32,
    /// Spells of 2 s in which the broker's bytes reach the device at 1 KiB a second, as a
    /// device that reads slowly would take them.
    pub slow_readers: u32,
    /// The device's MQTT keepalive, seconds: what notices a silent link.
    pub keepalive_secs: u16,
    /// Latency the proxy adds to every chunk either way, milliseconds, plus up to
    /// `jitter_ms` drawn from the seed, for the whole run.
    pub latency_ms: u16,
    /// See [`Faults::latency_ms`].
    pub jitter_ms: u16,
}

impl Faults {
    /// The short run of the test command.
    pub const SHORT: Self = Self {
        seed: 1,
        readings: 2_000,
        per_second: 400,
        resets: 10,
        mid_packet_cuts: 5,
        silences: 2,
        slow_readers: 2,
        keepalive_secs: 2,
        latency_ms: 2,
        jitter_ms: 8,
    };

    /// The figures: 50 resets, 20 mid-packet cuts and 10 silent links during 10,000
    /// readings.
    pub const LONG: Self = Self {
        seed: 1,
        readings: 10_000,
        per_second: 200,
        resets: 50,
        mid_packet_cuts: 20,
        silences: 10,
        slow_readers: 10,
        keepalive_secs: 2,
        latency_ms: 2,
        jitter_ms: 8,
    };
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
pub struct ChaosFigures {
    /// Readings the device published.
    pub sent: u64,
    /// Distinct readings the backend received.
    pub received: u64,
    /// Copies that reached the backend's application (QoS 1 is at least once), and the copies
    /// the backend engine recognised and held back.
    pub duplicates_delivered: u64,
    /// Copies the backend engine recognised.
    pub duplicates_recognised: u64,
    /// Readings sent and never received.
    pub lost: u64,
    /// Faults injected: resets, mid-packet cuts, silent links.
    pub resets: u64,
    /// See [`ChaosFigures::resets`].
    pub mid_packet_cuts: u64,
    /// See [`ChaosFigures::resets`].
    pub silences: u64,
    /// See [`ChaosFigures::resets`].
    pub slow_readers: u64,
    /// The longest a silent link went unnoticed by the device.
    pub slowest_silence_detection: Duration,
    /// Commands sent, and how they ended.
    pub commands: BTreeMap<&'static str, u64>,
    /// Commands the device ran.
    pub commands_run: u64,
    /// Answers that came after their command had timed out.
    pub late_responses: u64,
    /// Command ids the device ran more than once (must be 0).
    pub commands_run_twice: u64,
    /// How long it took.
    pub elapsed: Duration,
}

impl fmt::Display for ChaosFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {}, received once {}, lost {}, copies delivered {} (recognised by the engine \
             {}); faults: {} resets, {} mid-packet cuts, {} silent links (slowest noticed after \
             {:.1?}), {} slow readers; commands {:?}, run by the device {}, answered late {}, run twice {}; time \
             {:.1?}",
            self.sent,
            self.received,
            self.lost,
            self.duplicates_delivered,
            self.duplicates_recognised,
            self.resets,
            self.mid_packet_cuts,
            self.silences,
            self.slowest_silence_detection,
            self.slow_readers,
            self.commands,
            self.commands_run,
            self.late_responses,
            self.commands_run_twice,
            self.elapsed
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fault {
    Reset,
    MidPacketCut,
    Silence,
    SlowReader,
}

/// How long the device's connection stays up, at least, before the next fault.
const SETTLE: Duration = Duration::from_millis(700);

/// The readings' sequence numbers travel as `tds`, so each reading is told apart.
fn numbered(n: u32) -> Readings {
    Readings {
        ph: 7.0,
        chlorine: 1.0,
        temperature: 20.0,
        tds: Some(f64::from(n)),
        ..Readings::default()
    }
}

/// Records which command ids ran, by the handler's count of each.
#[derive(Clone, Default)]
struct Runs(Arc<Mutex<Vec<Action>>>);

impl CommandHandler for Runs {
    fn run(&mut self, action: &Action, _now: Instant) -> Result<Option<JsonObject>, String> {
        self.0.lock().unwrap().push(action.clone());
        Ok(None)
    }
}

/// A device behind the faulty proxy (which also delays every chunk by the latency and its
/// jitter), the backend on the broker directly, `faults` spread over the stream. Each `set_pump` carries its own duration, which tells the device's runs apart.
pub async fn link_faults<D: Transport, B: Transport>(faults: Faults) -> ChaosFigures {
    let started = StdInstant::now();
    let broker = Mosquitto::start().unwrap();
    let proxy = Proxy::start_seeded(broker.addr(), faults.seed).unwrap();
    proxy.set_latency(
        Duration::from_millis(u64::from(faults.latency_ms)),
        Duration::from_millis(u64::from(faults.jitter_ms)),
    );
    let backend_settings = BackendSettings {
        rate_limit: None,
        telemetry_window: 4_096,
        command_timeout: Duration::from_secs(3),
        ..BackendSettings::default()
    };
    let options = BrokerOptions::parse(&broker.url()).unwrap();
    let mut backend = BackendClient::<B>::spawn(
        &options,
        &format!("chaos-backend-{}", faults.seed),
        backend_settings,
        None,
    )
    .unwrap();
    let handle = backend.handle();
    let readings = faults.readings;
    let (online_tx, online_rx) = tokio::sync::oneshot::channel();
    let reader = tokio::spawn(async move {
        let mut online = Some(online_tx);
        let mut seen: BTreeMap<u32, u64> = BTreeMap::new();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(180);
        while seen.len() < readings as usize {
            match tokio::time::timeout_at(deadline, backend.next_event()).await {
                Ok(Some(Event::Telemetry { telemetry, .. })) => {
                    if let Some(n) = telemetry.sensors.tds {
                        *seen.entry(n).or_default() += 1;
                    }
                }
                Ok(Some(Event::PresenceChanged { .. })) => {
                    if let Some(tx) = online.take() {
                        let _ = tx.send(());
                    }
                }
                Ok(Some(_)) => {}
                Ok(None) | Err(_) => break,
            }
        }
        (seen, backend)
    });

    let mut settings = device_settings("org-1", "dev-chaos", 86_400_000);
    settings.outbox_capacity = readings as usize + 64;
    settings.in_flight_window = 16;
    settings.keepalive = Keepalive::new(i64::from(faults.keepalive_secs)).unwrap();
    settings.backoff.base = Duration::from_millis(50);
    settings.backoff.cap = Duration::from_millis(500);
    let runs = Runs::default();
    let device = DeviceClient::<D>::spawn(
        &BrokerOptions::parse(&proxy.url()).unwrap(),
        settings,
        NoSensors,
        runs.clone(),
    )
    .unwrap();
    tokio::time::timeout(Duration::from_secs(15), online_rx)
        .await
        .expect("the device came online")
        .unwrap();

    // Commands throughout: one every 200 ms, each its own duration.
    let (org, id): (OrgId, DeviceId) = ("org-1".parse().unwrap(), "dev-chaos".parse().unwrap());
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let commander = tokio::spawn(async move {
        let mut outcomes: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut n = 0;
        let mut pending = tokio::task::JoinSet::new();
        while !*stop_rx.borrow() {
            n += 1;
            let action = Action::SetPump {
                pump_id: 1,
                state: PumpState::On,
                duration: Some(n),
            };
            let (handle, org, id) = (handle.clone(), org.clone(), id.clone());
            pending.spawn(async move { handle.send_command(org, id, action).await });
            tokio::select! {
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = stop_rx.changed() => {}
            }
        }
        while let Some(result) = pending.join_next().await {
            let kind = match result.unwrap() {
                Ok((_, Outcome::Completed(_))) => "completed",
                Ok((_, Outcome::Failed(_))) => "failed",
                Ok((_, Outcome::TimedOut { .. })) => "timed_out",
                Err(_) => "not_sent",
            };
            *outcomes.entry(kind).or_default() += 1;
        }
        *outcomes.entry("sent").or_default() += u64::from(n);
        outcomes
    });

    // The faults, in an order drawn from the seed, evenly spread over the readings.
    let mut plan: Vec<Fault> = std::iter::repeat_n(Fault::Reset, faults.resets as usize)
        .chain(std::iter::repeat_n(
            Fault::MidPacketCut,
            faults.mid_packet_cuts as usize,
        ))
        .chain(std::iter::repeat_n(
            Fault::Silence,
            faults.silences as usize,
        ))
        .chain(std::iter::repeat_n(
            Fault::SlowReader,
            faults.slow_readers as usize,
        ))
        .collect();
    dese_testkit::shuffle(&mut plan, faults.seed);
    let every = (readings as usize / (plan.len() + 1)).max(1);
    let mut figures = ChaosFigures::default();
    let mut next = plan.into_iter();
    let paced_from = tokio::time::Instant::now();
    let period = Duration::from_secs(1) / faults.per_second.max(1);
    for n in 0..readings {
        tokio::time::sleep_until(paced_from + period * n).await;
        device.publish_readings(numbered(n)).unwrap();
        if (n as usize + 1) % every != 0 {
            continue;
        }
        let Some(fault) = next.next() else { continue };
        // Each fault hits a live connection: one the proxy carries, which the broker has
        // acknowledged a message on since the last fault.
        let delivered = device.stats().delivered;
        eventually(
            || device.is_connected() && proxy.connections() > 0,
            || "the device did not reconnect".into(),
        )
        .await;
        eventually(
            || device.stats().delivered > delivered,
            || "nothing acknowledged on the new connection".into(),
        )
        .await;
        // Up for a while, as links are between faults: commands get through meanwhile.
        tokio::time::sleep(SETTLE).await;
        match fault {
            Fault::Reset => proxy.reset(),
            Fault::MidPacketCut => proxy.cut_mid_packet(),
            Fault::Silence => {
                proxy.silence();
                let silent_since = StdInstant::now();
                let limit = Duration::from_secs(u64::from(faults.keepalive_secs) * 5);
                while device.is_connected() && silent_since.elapsed() < limit {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                figures.slowest_silence_detection = figures
                    .slowest_silence_detection
                    .max(silent_since.elapsed());
                figures.silences += 1;
            }
            Fault::SlowReader => {
                proxy.set_to_client_rate(Some(1024));
                tokio::time::sleep(Duration::from_secs(2)).await;
                proxy.set_to_client_rate(None);
                figures.slow_readers += 1;
            }
        }
    }
    let (seen, backend) = reader.await.unwrap();
    // Every command sent ends before the backend does.
    let _ = stop_tx.send(true);
    figures.commands = commander.await.unwrap();
    let counters = backend.counters();
    backend.shutdown().await.unwrap();
    let stats = device.stats();
    device.shutdown().await.unwrap();
    let ran: Vec<Action> = runs.0.lock().unwrap().clone();
    figures.commands_run = ran.len() as u64;
    figures.late_responses = counters.late_responses;
    let mut durations = BTreeSet::new();
    figures.commands_run_twice = ran
        .iter()
        .filter(|a| match a {
            Action::SetPump { duration, .. } => !durations.insert(*duration),
            _ => false,
        })
        .count() as u64;
    let (resets, cuts) = proxy.faults();
    figures.resets = resets;
    figures.mid_packet_cuts = cuts;
    figures.sent = stats.telemetry;
    figures.received = seen.len() as u64;
    figures.duplicates_delivered = seen.values().map(|n| n - 1).sum();
    figures.duplicates_recognised = telemetry_duplicates(&counters);
    figures.lost = u64::from(readings).saturating_sub(figures.received);
    figures.elapsed = started.elapsed();
    assert_eq!(stats.telemetry_dropped, 0, "the outbox had room: {figures}");
    figures
}

/// How often Mosquitto saves its state (sessions, queued messages, retained messages) to disk:
/// what a broker killed with SIGKILL comes back with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Autosave {
    /// After every change (`autosave_on_changes true`, `autosave_interval 1`): the most a
    /// broker can keep, at the cost of a write per message.
    EveryChange,
    /// Every so many seconds (`autosave_interval N`; Mosquitto's default is 1800).
    Seconds(u32),
}

impl Autosave {
    fn lines(self) -> Vec<String> {
        match self {
            Self::EveryChange => vec![
                "autosave_on_changes true".to_string(),
                "autosave_interval 1".to_string(),
            ],
            Self::Seconds(n) => vec![format!("autosave_interval {n}")],
        }
    }
}

impl fmt::Display for Autosave {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EveryChange => f.write_str("autosave on every change"),
            Self::Seconds(n) => write!(f, "autosave every {n} s"),
        }
    }
}

/// What a run of broker kills measured.
#[derive(Debug, Clone, Default)]
pub struct KillFigures {
    /// Readings the device published.
    pub sent: u64,
    /// Distinct readings the backend received.
    pub received: u64,
    /// Readings the broker acknowledged and then lost: killed before it saved them or handed
    /// them to the backend. The operator's choice of autosave decides this.
    pub lost_by_the_broker: u64,
    /// Copies the backend engine recognised.
    pub duplicates_recognised: u64,
    /// SIGKILLs.
    pub kills: u64,
    /// How long it took.
    pub elapsed: Duration,
}

impl fmt::Display for KillFigures {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "sent {}, all acknowledged by the broker; received once {}, acknowledged then lost \
             by the broker {}, copies recognised {}, kills {}, time {:.1?}",
            self.sent,
            self.received,
            self.lost_by_the_broker,
            self.duplicates_recognised,
            self.kills,
            self.elapsed
        )
    }
}

/// Mosquitto killed with SIGKILL `kills` times while a device streams `readings`, and started
/// again with persistence on: every reading stays in the device's outbox until the broker
/// acknowledged it (sent again after each kill otherwise), and the backend, with its persistent
/// session, gets what the broker kept. What the broker acknowledged and then lost is counted
/// apart: it depends on `autosave`.
pub async fn broker_kills<D: Transport, B: Transport>(
    readings: u32,
    kills: u32,
    autosave: Autosave,
) -> KillFigures {
    let started = StdInstant::now();
    let mut broker = Mosquitto::start_with(dese_testkit::MosquittoConfig {
        persistence: true,
        extra: autosave.lines(),
        ..dese_testkit::MosquittoConfig::default()
    })
    .unwrap();
    let options = BrokerOptions::parse(&broker.url()).unwrap();
    let backend_settings = BackendSettings {
        rate_limit: None,
        telemetry_window: 4_096,
        backoff: dese_device::Backoff {
            base: Duration::from_millis(50),
            cap: Duration::from_millis(500),
            ..dese_device::Backoff::DEFAULT
        },
        ..BackendSettings::default()
    };
    let mut backend =
        BackendClient::<B>::spawn(&options, "kills-backend", backend_settings, None).unwrap();
    let (online_tx, online_rx) = tokio::sync::oneshot::channel();
    let (done_tx, mut done_rx) = tokio::sync::watch::channel(false);
    let reader = tokio::spawn(async move {
        let mut online = Some(online_tx);
        let mut seen = BTreeSet::new();
        loop {
            let event = tokio::select! {
                event = backend.next_event() => event,
                _ = done_rx.changed() => break,
            };
            match event {
                Some(Event::Telemetry { telemetry, .. }) => {
                    if let Some(n) = telemetry.sensors.tds {
                        seen.insert(n);
                        if seen.len() == readings as usize {
                            break;
                        }
                    }
                }
                Some(Event::PresenceChanged { .. }) => {
                    if let Some(tx) = online.take() {
                        let _ = tx.send(());
                    }
                }
                Some(_) => {}
                None => break,
            }
        }
        let counters = backend.counters();
        backend.shutdown().await.unwrap();
        (seen, counters)
    });
    let mut settings = device_settings("org-1", "dev-kills", 86_400_000);
    settings.outbox_capacity = readings as usize + 64;
    settings.in_flight_window = 16;
    settings.backoff.base = Duration::from_millis(50);
    settings.backoff.cap = Duration::from_millis(500);
    let device = DeviceClient::<D>::spawn(&options, settings, NoSensors, Runs::default()).unwrap();
    tokio::time::timeout(Duration::from_secs(15), online_rx)
        .await
        .expect("the device came online")
        .unwrap();
    let every = (readings / (kills + 1)).max(1);
    let mut killed = 0;
    for n in 0..readings {
        device.publish_readings(numbered(n)).unwrap();
        if n % 20 == 0 {
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        if (n + 1) % every == 0 && killed < kills {
            eventually(
                || device.is_connected(),
                || "the device did not reconnect".into(),
            )
            .await;
            tokio::task::block_in_place(|| {
                broker.kill();
                broker.start_again().unwrap();
            });
            killed += 1;
        }
    }
    // Every reading acknowledged by the broker (the outbox empties only so), then the backend
    // given time to get what the broker kept.
    eventually(
        || device.stats().pending == 0,
        || format!("the device's outbox never emptied: {:?}", device.stats()),
    )
    .await;
    let acknowledged_at = StdInstant::now();
    while !reader.is_finished() && acknowledged_at.elapsed() < Duration::from_secs(10) {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = done_tx.send(true);
    let (seen, counters) = reader.await.unwrap();
    let stats = device.stats();
    device.shutdown().await.unwrap();
    assert_eq!(stats.telemetry_dropped, 0, "the outbox had room");
    KillFigures {
        sent: stats.telemetry,
        received: seen.len() as u64,
        lost_by_the_broker: u64::from(readings).saturating_sub(seen.len() as u64),
        duplicates_recognised: telemetry_duplicates(&counters),
        kills: u64::from(killed),
        elapsed: started.elapsed(),
    }
}
