//! The firmware's MQTT loop, exactly as it runs on the chip, over host TCP against a real
//! Mosquitto, with a dese-rumqttc backend on the other side.
//!
//! Only the two small traits differ from the chip: [`Network`] opens a tokio `TcpStream`
//! instead of an embassy-net socket, and [`Clock`] reads tokio's clock instead of
//! embassy-time's.

#![allow(clippy::unwrap_used)] // test code: a panic is a test failure
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)] // tests run on std

mod support;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dese_backend::{Event, Outcome, Settings as BackendSettings};
use dese_device::{Backoff, Device, Instant, Settings};
use dese_esp32c3::client::{
    Client, Clock, LinkError, LinkStats, MqttOptions, Network, Report, Watchdog,
};
use dese_esp32c3::mqtt::ConnectReturn;
use dese_esp32c3::restart::Restart;
use dese_esp32c3::sensors::SimulatedProbes;
use dese_esp32c3::station::{ACID_PUMP, Outputs, Station};
use dese_esp32c3::store::{FlashStore, Store};
use dese_esp32c3::tls::Tls;
use dese_protocol::{Action, DeviceState, PumpState, TelemetryInterval, Timestamp};
use dese_rumqttc::{BackendClient, BrokerOptions};
use dese_testkit::raw::{Publisher, Subscriber};
use dese_testkit::{Mosquitto, MosquittoConfig, TestCa};
use embedded_io_adapters::tokio_1::FromTokio;
use support::flash::{PAGE as FLASH_PAGE, SimulatedFlash};
use tokio::net::TcpStream;

/// Host TCP in place of embassy-net.
struct HostTcp(SocketAddr);

impl Network for HostTcp {
    type Connection<'a> = FromTokio<TcpStream>;
    type Error = std::io::Error;

    async fn connect(&mut self) -> std::io::Result<FromTokio<TcpStream>> {
        let stream = tokio::time::timeout(Duration::from_secs(2), TcpStream::connect(self.0))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))??;
        stream.set_nodelay(true)?;
        Ok(FromTokio::new(stream))
    }
}

/// tokio's clock in place of embassy-time.
struct HostClock {
    start: tokio::time::Instant,
    rng: u32,
}

impl Clock for HostClock {
    fn now(&self) -> Instant {
        Instant::from_millis(self.start.elapsed().as_millis() as u64)
    }
    fn utc(&self) -> Timestamp {
        wall_time().unwrap()
    }
    fn random(&mut self) -> u32 {
        self.rng = self.rng.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        self.rng
    }
    async fn sleep_until(&self, at: Instant) {
        tokio::time::sleep_until(self.start + Duration::from_millis(at.as_millis())).await;
    }
}

/// The host's wall clock, as the device's SNTP time would give it.
fn wall_time() -> Option<Timestamp> {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    Timestamp::from_unix_millis(i64::try_from(since.as_millis()).ok()?)
}

/// Relays that record what they were told.
#[derive(Clone, Default)]
struct Relays(Arc<Mutex<Vec<(u32, bool)>>>);

impl Outputs for Relays {
    fn set_pump(&mut self, pump: u32, on: bool) {
        self.0.lock().unwrap().push((pump, on));
    }
    fn restart(&mut self) {}
}

fn settings(interval_ms: i64) -> Settings {
    let mut s = Settings::new(
        "org-1".parse().unwrap(),
        "esp32c3-1".parse().unwrap(),
        "0.1.0",
    );
    s.telemetry_interval = TelemetryInterval::new(interval_ms).unwrap();
    s.backoff = Backoff {
        base: Duration::from_millis(100),
        cap: Duration::from_secs(1),
        ..Backoff::DEFAULT
    };
    s
}

/// Everything the device loop produced, for the assertions after it stopped.
struct Run {
    device: Device,
    link: LinkStats,
    reports: Vec<Report>,
}

/// Runs the firmware loop until `stop` fires.
async fn run_device(
    addr: SocketAddr,
    settings: Settings,
    relays: Relays,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Run {
    let mut clock = HostClock {
        start: tokio::time::Instant::now(),
        rng: 7,
    };
    let mut device = Device::new(settings, clock.now());
    let mut station = Station::new(SimulatedProbes::new(3), relays);
    let mut client = Client::new(MqttOptions::default());
    let mut stop = Box::pin(async {
        let _ = stop.await;
    });
    let mut reports = Vec::new();
    client
        .run(
            &mut device,
            &mut station,
            &mut HostTcp(addr),
            &mut clock,
            &mut stop,
            &mut |report| reports.push(report),
        )
        .await;
    Run {
        link: client.stats(),
        device,
        reports,
    }
}

async fn next_event(
    backend: &mut BackendClient,
    what: &str,
    mut accept: impl FnMut(&Event) -> bool,
) -> Event {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        let event = tokio::time::timeout_at(deadline, backend.next_event())
            .await
            .unwrap_or_else(|_| panic!("no {what} within 15 s"))
            .expect("the backend closed");
        if accept(&event) {
            return event;
        }
    }
}

fn presence(to: DeviceState) -> impl Fn(&Event) -> bool {
    move |e| matches!(e, Event::PresenceChanged { to: state, .. } if *state == to)
}

#[tokio::test]
async fn the_firmware_loop_serves_a_backend_through_a_broker_outage() {
    // Persistence: the backend's session and its queued messages survive the restart, so that
    // every telemetry message the broker acknowledged reaches the backend.
    let mut broker = Mosquitto::start_with(MosquittoConfig {
        persistence: true,
        ..MosquittoConfig::default()
    })
    .unwrap();
    let options = BrokerOptions::parse(&broker.url()).unwrap();
    let backend_settings = BackendSettings {
        command_timeout: Duration::from_secs(5),
        retries: 0,
        // The device sends telemetry every 200 ms, the default limit's sustained rate: the
        // queue it replays after the outage would go over it.
        rate_limit: None,
        ..BackendSettings::default()
    };
    let mut backend =
        BackendClient::spawn(&options, "firmware-test-backend", backend_settings, None).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !backend.is_connected() {
        assert!(tokio::time::Instant::now() < deadline, "backend connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await; // its subscriptions are in place

    let relays = Relays::default();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let device = tokio::spawn(run_device(
        broker.addr(),
        settings(200),
        relays.clone(),
        stopped,
    ));
    let handle = backend.handle();
    let org: dese_protocol::OrgId = "org-1".parse().unwrap();
    let dev: dese_protocol::DeviceId = "esp32c3-1".parse().unwrap();
    let mut telemetry = BTreeSet::new();
    let mut count = |event: &Event| {
        if let Event::Telemetry { telemetry: t, .. } = event {
            telemetry.insert(t.timestamp);
        }
    };

    next_event(&mut backend, "online status", presence(DeviceState::Online)).await;
    for _ in 0..3 {
        let event = next_event(&mut backend, "telemetry", |e| {
            matches!(e, Event::Telemetry { .. })
        })
        .await;
        let Event::Telemetry {
            device,
            telemetry: t,
        } = &event
        else {
            unreachable!()
        };
        assert_eq!(device.device.as_str(), "esp32c3-1");
        assert_eq!(t.metadata.firmware_version, "0.1.0");
        count(&event);
    }

    // A command runs on the station and its response is correlated.
    let pump = Action::SetPump {
        pump_id: ACID_PUMP,
        state: PumpState::On,
        duration: Some(1),
    };
    let (_, outcome) = handle
        .send_command(org.clone(), dev.clone(), pump)
        .await
        .unwrap();
    let Outcome::Completed(response) = outcome else {
        panic!("set_pump: {outcome:?}")
    };
    assert_eq!(response.response.unwrap()["pump_id"], 1);
    assert!(relays.0.lock().unwrap().contains(&(1, true)));
    // A pump the station does not have: a failed response that says so.
    let (_, outcome) = handle
        .send_command(
            org.clone(),
            dev.clone(),
            Action::SetPump {
                pump_id: 9,
                state: PumpState::On,
                duration: None,
            },
        )
        .await
        .unwrap();
    let Outcome::Failed(response) = outcome else {
        panic!("pump 9: {outcome:?}")
    };
    assert!(response.error.unwrap().contains("pump 9 does not exist"));

    // The broker goes away for a second: the loop notices, queues telemetry meanwhile, backs
    // off, reconnects, says online again and replays the queue in order.
    broker.stop();
    tokio::time::sleep(Duration::from_secs(1)).await;
    broker.start_again().unwrap();
    next_event(&mut backend, "online status after the restart", |e| {
        count(e);
        matches!(e, Event::Status { status, .. } if status.status == DeviceState::Online)
    })
    .await;
    for _ in 0..5 {
        let event = next_event(&mut backend, "telemetry after the restart", |e| {
            matches!(e, Event::Telemetry { .. })
        })
        .await;
        count(&event);
    }
    // The timed pump run ended by itself, on the station's own tick.
    assert!(relays.0.lock().unwrap().contains(&(1, false)));

    stop.send(()).unwrap();
    next_event(&mut backend, "offline status", |e| {
        count(e);
        matches!(e, Event::Status { status, .. } if status.status == DeviceState::Offline)
    })
    .await;
    let run = device.await.unwrap();
    // Whatever telemetry is still arriving behind the offline status.
    while let Ok(Some(event)) =
        tokio::time::timeout(Duration::from_millis(500), backend.next_event()).await
    {
        count(&event);
    }

    let stats = run.device.stats();
    assert_eq!(run.link.connections, 2, "{:?}", run.reports);
    assert_eq!(run.link.lost, 1, "{:?}", run.reports);
    assert_eq!(stats.telemetry_dropped + stats.other_dropped, 0);
    assert_eq!(stats.pending, 0, "everything delivered before the goodbye");
    assert_eq!(stats.commands_run, 2);
    assert_eq!(
        telemetry.len() as u64,
        stats.telemetry,
        "every telemetry message the device built reached the backend"
    );
    assert!(run.reports.contains(&Report::Stopped));
    println!(
        "firmware loop: {} telemetry sent and received, {} connections, {} failed attempts",
        stats.telemetry, run.link.connections, run.link.failed_attempts
    );
    backend.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_refused_connection_is_typed_and_paced_by_the_backoff() {
    // No anonymous clients and no password file: Mosquitto refuses every CONNECT.
    let broker = Mosquitto::start_with(MosquittoConfig {
        allow_anonymous: false,
        ..MosquittoConfig::default()
    })
    .unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let device = tokio::spawn(run_device(
        broker.addr(),
        settings(1000),
        Relays::default(),
        stopped,
    ));
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.send(()).unwrap();
    let run = device.await.unwrap();
    let refusals = run
        .reports
        .iter()
        .filter(|r| **r == Report::Disconnected(LinkError::Refused(ConnectReturn::NotAuthorized)))
        .count();
    assert!(refusals >= 2, "{:?}", run.reports);
    // 100 ms doubling to a 1 s cap: about six attempts in 3 s, never a storm.
    assert!(run.link.failed_attempts <= 10, "{:?}", run.link);
    assert_eq!(run.link.connections, 0);
    assert!(!run.reports.contains(&Report::Connected));
    // The telemetry waits in the outbox, counted, for a connection that never came.
    assert!(run.device.stats().pending >= 2, "{:?}", run.device.stats());
}

/// Runs the firmware loop until `stop` fires, with every report timestamped into `reports`
/// as it happens, so that the test can follow the link.
async fn run_device_live(
    addr: SocketAddr,
    settings: Settings,
    reports: Arc<Mutex<Vec<(std::time::Instant, Report)>>>,
    stop: tokio::sync::oneshot::Receiver<()>,
) -> Run {
    let mut clock = HostClock {
        start: tokio::time::Instant::now(),
        rng: 11,
    };
    let mut device = Device::new(settings, clock.now());
    let mut station = Station::new(SimulatedProbes::new(3), Relays::default());
    let mut client = Client::new(MqttOptions::default());
    let mut stop = Box::pin(async {
        let _ = stop.await;
    });
    client
        .run(
            &mut device,
            &mut station,
            &mut HostTcp(addr),
            &mut clock,
            &mut stop,
            &mut |report| {
                reports
                    .lock()
                    .unwrap()
                    .push((std::time::Instant::now(), report));
            },
        )
        .await;
    Run {
        link: client.stats(),
        device,
        reports: Vec::new(),
    }
}

/// The firmware's MQTT loop behind `dese-testkit`'s seeded proxy, which resets its connection,
/// cuts it in the middle of a packet and silences it while the device sends a reading every
/// 100 ms: every reading the broker acknowledged reaches the backend once, the rest are still
/// in the outbox (none dropped), and each silent link is noticed within 1.5 keepalive periods.
/// `DESE_CHAOS=long` runs the long version (docs/reliability.md).
#[tokio::test]
async fn the_firmware_loop_through_resets_cuts_and_silent_links() {
    let long = std::env::var("DESE_CHAOS").as_deref() == Ok("long");
    let seed = std::env::var("DESE_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1u64);
    // (resets, mid-packet cuts, silent links), and how long each connection stays up before
    // the next fault: in the long run, long enough for about 10,000 readings in all (the
    // protocol's shortest interval is 100 ms, so that is a quarter of an hour).
    let (resets, cuts, silences) = if long { (50, 20, 10) } else { (4, 2, 2) };
    let settle = if long {
        Duration::from_millis(12_300)
    } else {
        Duration::from_millis(1_500)
    };
    let keepalive = Duration::from_secs(2);
    let broker = Mosquitto::start().unwrap();
    let proxy = dese_testkit::Proxy::start_seeded(broker.addr(), seed).unwrap();
    let options = BrokerOptions::parse(&broker.url()).unwrap();
    let backend_settings = BackendSettings {
        rate_limit: None,
        telemetry_window: 4_096,
        ..BackendSettings::default()
    };
    let mut backend =
        BackendClient::spawn(&options, "firmware-chaos-backend", backend_settings, None).unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !backend.is_connected() {
        assert!(tokio::time::Instant::now() < deadline, "backend connected");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let received = Arc::new(Mutex::new(BTreeSet::new()));
    let counted = Arc::clone(&received);
    let reader = tokio::spawn(async move {
        while let Some(event) = backend.next_event().await {
            if let Event::Telemetry { telemetry, .. } = event {
                counted.lock().unwrap().insert(telemetry.timestamp);
            }
        }
    });

    let mut device_settings = settings(100);
    device_settings.keepalive = dese_protocol::Keepalive::new(keepalive.as_secs() as i64).unwrap();
    device_settings.outbox_capacity = 100_000;
    device_settings.backoff = Backoff {
        base: Duration::from_millis(50),
        cap: Duration::from_millis(500),
        ..Backoff::DEFAULT
    };
    let reports = Arc::new(Mutex::new(Vec::new()));
    let (stop, stopped) = tokio::sync::oneshot::channel();
    let device = tokio::spawn(run_device_live(
        proxy.addr(),
        device_settings,
        Arc::clone(&reports),
        stopped,
    ));
    let connected = |reports: &Arc<Mutex<Vec<(std::time::Instant, Report)>>>| {
        reports
            .lock()
            .unwrap()
            .iter()
            .rev()
            .find_map(|(_, r)| match r {
                Report::Connected => Some(true),
                Report::Disconnected(_) => Some(false),
                _ => None,
            })
            .unwrap_or(false)
    };
    // The faults in an order drawn from the seed, each on a connection up for `settle`.
    let mut plan: Vec<u8> = std::iter::repeat_n(0, resets)
        .chain(std::iter::repeat_n(1, cuts))
        .chain(std::iter::repeat_n(2, silences))
        .collect();
    dese_testkit::shuffle(&mut plan, seed);
    let mut slowest = Duration::ZERO;
    for fault in plan {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while !(connected(&reports) && proxy.connections() > 0) {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the device reconnected"
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(settle).await;
        match fault {
            0 => proxy.reset(),
            1 => proxy.cut_mid_packet(),
            _ => {
                proxy.silence();
                let since = std::time::Instant::now();
                while connected(&reports) && since.elapsed() < keepalive * 5 {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
                slowest = slowest.max(since.elapsed());
            }
        }
    }
    // Time for the outbox to drain on a quiet link, then the goodbye.
    tokio::time::sleep(Duration::from_secs(3)).await;
    stop.send(()).unwrap();
    let run = device.await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    reader.abort();
    let stats = run.device.stats();
    let received = received.lock().unwrap().len() as u64;
    let (reset, cut) = proxy.faults();
    println!(
        "firmware loop, seed {seed}: readings {}, received once {received}, still in the outbox \
         {}, dropped {}; faults: {reset} resets, {cut} mid-packet cuts, {silences} silent links \
         (slowest noticed after {slowest:.1?}); connections {}",
        stats.telemetry, stats.pending, stats.telemetry_dropped, run.link.connections
    );
    assert_eq!(stats.telemetry_dropped, 0);
    assert!(
        received + stats.pending >= stats.telemetry && received <= stats.telemetry,
        "every reading received or still in the outbox: {received} + {} of {}",
        stats.pending,
        stats.telemetry
    );
    assert_eq!((reset, cut), (resets as u64, cuts as u64));
    assert!(
        slowest <= keepalive.mul_f64(1.5) + Duration::from_millis(500),
        "a silent link went unnoticed for {slowest:?}"
    );
}

/// One life of the device between power-ups: restored from `store`'s flash, run until the power
/// goes (`power` fires, and the loop is dropped where it stands: no goodbye, nothing more
/// written), then the engine and the store, as the flash holds it, handed back.
async fn live_until_power_cut(
    addr: SocketAddr,
    settings: Settings,
    relays: Relays,
    mut store: FlashStore<SimulatedFlash>,
    restart: Restart,
    power: tokio::sync::oneshot::Receiver<()>,
) -> (Device, FlashStore<SimulatedFlash>) {
    let clock = HostClock {
        start: tokio::time::Instant::now(),
        rng: 11,
    };
    let saved = store.load().await.unwrap();
    let mut device = Device::new(settings, clock.now());
    device.restore(clock.now(), saved);
    device.raise_alert(&restart.alert(clock.utc()));
    let mut station = Station::new(SimulatedProbes::new(5), relays);
    let mut client = Client::with_store(MqttOptions::default(), store);
    let mut never = Box::pin(core::future::pending::<()>());
    let (mut clock, mut net, mut report) = (clock, HostTcp(addr), |_| {});
    tokio::select! {
        () = client.run(
            &mut device,
            &mut station,
            &mut net,
            &mut clock,
            &mut never,
            &mut report,
        ) => panic!("the loop ended by itself"),
        _ = power => {}
    }
    (device, client.into_store())
}

/// Waits until `watch` has received a message for which `found` holds; returns its index.
async fn received(watch: &Subscriber, what: &str, found: impl Fn(&str, &[u8]) -> bool) -> usize {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    loop {
        if let Some(at) = watch.messages().iter().position(|(t, p)| found(t, p)) {
            return at;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no {what} within 15 s"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Publishes [`POWER_COMMAND`] as the backend `client_id`.
async fn send_command(addr: SocketAddr, client_id: &str) -> Publisher {
    let mut publisher = Publisher::connect(addr, client_id).await.unwrap();
    publisher
        .publish("devices/org-1/esp32c3-1/commands", POWER_COMMAND, false)
        .await
        .unwrap();
    publisher
}

/// An alert whose message holds `text`.
fn alert_with(text: &'static str) -> impl Fn(&str, &[u8]) -> bool {
    move |topic, payload| {
        topic.ends_with("/alert") && String::from_utf8_lossy(payload).contains(text)
    }
}

const POWER_COMMAND: &str = r#"{"command_id":"cmd-power-1","device_id":"esp32c3-1","command":"set_pump","parameters":{"pump_id":1,"state":"on","duration":60},"timestamp":"2026-12-01T00:00:00Z"}"#;

// Power lost in the middle of a stream, the broker away: the readings taken offline were saved
// to (simulated) flash, and after the boot they are published first, in order; the command
// delivered again is answered with the saved response, byte for byte, and its pump not run.
#[tokio::test]
async fn after_a_power_cut_the_boot_replays_the_saved_outbox_and_answers_from_flash() {
    let mut broker = Mosquitto::start().unwrap();
    let mut settings = settings(200);
    settings.persist = true;
    let range = 0..(16 * FLASH_PAGE) as u32;
    let store = FlashStore::new(SimulatedFlash::new(16), range.clone(), &settings).unwrap();
    let is_answer = |t: &str, p: &[u8]| {
        t.ends_with("/command_response") && String::from_utf8_lossy(p).contains("cmd-power-1")
    };

    // The first life: online, readings, one command run.
    let watch = Subscriber::recording(broker.addr(), "watch-1", "devices/org-1/esp32c3-1/+")
        .await
        .unwrap();
    let relays = Relays::default();
    let (cut, power) = tokio::sync::oneshot::channel();
    let life = tokio::spawn(live_until_power_cut(
        broker.addr(),
        settings.clone(),
        relays.clone(),
        store,
        Restart::PowerOn,
        power,
    ));
    received(&watch, "telemetry", |t, _| t.ends_with("/telemetry")).await;
    received(&watch, "the power-on alert", alert_with("power came on")).await;
    let publisher = send_command(broker.addr(), "backend-1").await;
    let at = received(&watch, "the command's response", is_answer).await;
    let first_answer = watch.messages()[at].1.clone();
    assert!(relays.0.lock().unwrap().contains(&(ACID_PUMP, true)));
    publisher.disconnect().await;

    // The broker goes; readings pile up in the outbox, and in flash; then the power goes.
    broker.stop();
    tokio::time::sleep(Duration::from_millis(1200)).await;
    cut.send(()).unwrap();
    let (device, store) = life.await.unwrap();
    let pending = device.stats().pending;
    assert!(pending >= 4, "{:?}", device.stats());
    drop(device);
    broker.start_again().unwrap();

    // The boot: the flash read back, the engine restored, a fresh station (pumps off).
    let mut flash = store.into_flash();
    flash.boot();
    let mut store = FlashStore::new(flash, range, &settings).unwrap();
    let saved = store.load().await.unwrap();
    assert_eq!(
        saved.messages.len() as u64,
        pending,
        "every pending message was saved"
    );
    assert_eq!(saved.answered.len(), 1);
    let offline: Vec<Vec<u8>> = saved.messages.iter().map(|m| m.payload.clone()).collect();

    let watch = Subscriber::recording(broker.addr(), "watch-2", "devices/org-1/esp32c3-1/+")
        .await
        .unwrap();
    let relays = Relays::default();
    let (cut, power) = tokio::sync::oneshot::channel();
    let life = tokio::spawn(live_until_power_cut(
        broker.addr(),
        settings.clone(),
        relays.clone(),
        store,
        Restart::Watchdog,
        power,
    ));
    let last = offline.last().unwrap().clone();
    received(&watch, "the last saved reading", |_, p| {
        p == last.as_slice()
    })
    .await;
    let messages = watch.messages();
    let online = messages
        .iter()
        .position(|(t, _)| t.ends_with("/status"))
        .unwrap();
    let replayed: Vec<Vec<u8>> = messages[online + 1..]
        .iter()
        .filter(|(t, _)| !t.ends_with("/status"))
        .map(|(_, p)| p.clone())
        .take(offline.len())
        .collect();
    assert_eq!(
        replayed, offline,
        "the saved outbox first, in order, after the online status"
    );
    // Then why it restarted, for the backend.
    received(
        &watch,
        "the restart alert",
        alert_with("restarted by the watchdog"),
    )
    .await;

    let publisher = send_command(broker.addr(), "backend-2").await;
    let at = received(&watch, "the command's second response", is_answer).await;
    assert_eq!(
        watch.messages()[at].1,
        first_answer,
        "the saved response, byte for byte"
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !relays.0.lock().unwrap().contains(&(ACID_PUMP, true)),
        "the pump did not run again: {:?}",
        relays.0.lock().unwrap()
    );
    cut.send(()).unwrap();
    let (device, _) = life.await.unwrap();
    assert_eq!(device.stats().commands_duplicate, 1);
    assert_eq!(device.stats().restored, pending);
    publisher.disconnect().await;
}

/// Counts its feeds.
struct CountingWatchdog(Arc<std::sync::atomic::AtomicU64>);

impl Watchdog for CountingWatchdog {
    fn feed(&mut self) {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

// Nothing wakes the loop for a minute (readings, statuses and pings are 60 s apart, the backoff
// 5 s), yet it feeds the watchdog every 100 ms: connected and idle, and with the broker gone.
#[tokio::test]
async fn the_loop_feeds_the_watchdog_connected_or_not() {
    let mut broker = Mosquitto::start().unwrap();
    let watch = Subscriber::recording(broker.addr(), "watch-wdt", "devices/org-1/esp32c3-1/+")
        .await
        .unwrap();
    let mut settings = settings(60_000);
    settings.backoff = Backoff {
        base: Duration::from_secs(5),
        cap: Duration::from_secs(5),
        ..Backoff::DEFAULT
    };
    let feeds = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let counted = Arc::clone(&feeds);
    let addr = broker.addr();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let device = tokio::spawn(async move {
        let mut clock = HostClock {
            start: tokio::time::Instant::now(),
            rng: 3,
        };
        let mut device = Device::new(settings, clock.now());
        let mut station = Station::new(SimulatedProbes::new(3), Relays::default());
        let mut watchdog = CountingWatchdog(counted);
        let mut client = Client::new(MqttOptions::default())
            .with_watchdog(&mut watchdog, Duration::from_millis(100));
        let mut stop = Box::pin(async {
            let _ = stopped.await;
        });
        client
            .run(
                &mut device,
                &mut station,
                &mut HostTcp(addr),
                &mut clock,
                &mut stop,
                &mut |_| {},
            )
            .await;
    });
    received(&watch, "the online status", |t, _| t.ends_with("/status")).await;
    let fed =
        |feeds: &std::sync::atomic::AtomicU64| feeds.load(std::sync::atomic::Ordering::SeqCst);
    let before = fed(&feeds);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let connected = fed(&feeds) - before;
    broker.stop();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before = fed(&feeds);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let away = fed(&feeds) - before;
    stop.send(()).unwrap();
    device.await.unwrap();
    assert!(
        connected >= 5 && away >= 5,
        "{connected} feeds connected, {away} away, in 1 s each"
    );
}

/// Runs the loop over TLS to `addr` for `run_for`, trusting `ca` (DER) for `server_name`.
async fn run_over_tls(addr: SocketAddr, ca: Vec<u8>, server_name: &str, run_for: Duration) -> Run {
    run_over_tls_with(addr, ca, server_name, run_for, MqttOptions::default()).await
}

/// [`run_over_tls`] with `options`.
async fn run_over_tls_with(
    addr: SocketAddr,
    ca: Vec<u8>,
    server_name: &str,
    run_for: Duration,
    options: MqttOptions<'static>,
) -> Run {
    let mut clock = HostClock {
        start: tokio::time::Instant::now(),
        rng: 9,
    };
    let mut device = Device::new(settings(200), clock.now());
    let mut station = Station::new(SimulatedProbes::new(3), Relays::default());
    let mut network = Tls::new(HostTcp(addr), &ca, server_name, rand_core::OsRng, wall_time);
    let mut client = Client::new(options);
    let mut stop = Box::pin(tokio::time::sleep(run_for));
    let mut reports = Vec::new();
    client
        .run(
            &mut device,
            &mut station,
            &mut network,
            &mut clock,
            &mut stop,
            &mut |report| reports.push(report),
        )
        .await;
    Run {
        link: client.stats(),
        device,
        reports,
    }
}

fn handshake_failures(run: &Run) -> Vec<String> {
    run.reports
        .iter()
        .filter_map(|r| match r {
            Report::Disconnected(LinkError::Connect(why)) if why.starts_with("Handshake(") => {
                Some(why.clone())
            }
            _ => None,
        })
        .collect()
}

/// A Mosquitto whose listener speaks TLS 1.3 only, with this certificate (and the chain in its
/// file) and key.
fn tls_broker(cert: &std::path::Path, key: &std::path::Path) -> Mosquitto {
    Mosquitto::start_with(MosquittoConfig {
        extra: vec![
            format!("certfile {}", cert.display()),
            format!("keyfile {}", key.display()),
            "tls_version tlsv1.3".into(),
        ],
        ..MosquittoConfig::default()
    })
    .unwrap()
}

// The firmware's own TLS (embedded-tls) against Mosquitto's TLS listener: with the CA that
// signed the broker's certificate and the name it carries, the device connects and the broker
// acknowledges its messages; with another CA, another name, or an expired certificate, every
// attempt fails in the handshake and nothing is sent.
#[tokio::test]
async fn over_tls_the_right_ca_connects_and_a_wrong_one_is_refused() {
    let dir = std::env::temp_dir().join(format!("dese-fw-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = TestCa::new(&dir, "fw-good");
    let other = TestCa::new(&dir, "fw-other");
    let (cert, key) = ca.server("fw-good-server", &["localhost"], false, false);
    let broker = tls_broker(&cert, &key);
    let second = Duration::from_millis(1500);

    let good = run_over_tls(broker.addr(), ca.der(), "localhost", second).await;
    assert!(good.link.connections >= 1, "{:?}", good.reports);
    assert!(
        good.device.stats().delivered >= 3,
        "the status and readings, acknowledged through TLS: {:?}",
        good.device.stats()
    );
    assert!(handshake_failures(&good).is_empty(), "{:?}", good.reports);

    let refused = [
        (
            "another CA",
            run_over_tls(broker.addr(), other.der(), "localhost", second).await,
        ),
        (
            "another name",
            run_over_tls(broker.addr(), ca.der(), "broker.example", second).await,
        ),
    ];
    let (cert, key) = ca.server("fw-expired-server", &["localhost"], false, true);
    let expired_broker = tls_broker(&cert, &key);
    let expired = run_over_tls(expired_broker.addr(), ca.der(), "localhost", second).await;
    for (what, run) in refused
        .iter()
        .chain([("an expired certificate", expired)].iter())
    {
        assert_eq!(run.link.connections, 0, "{what}: {:?}", run.reports);
        assert_eq!(run.device.stats().delivered, 0, "{what}");
        let failures = handshake_failures(run);
        assert!(!failures.is_empty(), "{what}: {:?}", run.reports);
        println!("{what}: {}", failures[0]);
    }
}

// A broker certificate signed through an intermediate: through an intermediate CA the device
// connects; through a certificate the CA issued that is not a CA (what anyone holding one of
// the CA's device or server certificates could use to sign a certificate for the broker's
// name), every attempt fails in the handshake and nothing is sent.
#[tokio::test]
async fn over_tls_a_chain_through_a_certificate_that_is_not_a_ca_is_refused() {
    let dir = std::env::temp_dir().join(format!("dese-fw-tls-chain-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let root = TestCa::new(&dir, "fw-root");
    let second = Duration::from_millis(1500);

    let intermediate = root.signer("fw-intermediate", true);
    let (cert, key) = intermediate.server("fw-via-intermediate", &["localhost"], false, false);
    let broker = tls_broker(&cert, &key);
    let good = run_over_tls(broker.addr(), root.der(), "localhost", second).await;
    assert!(good.link.connections >= 1, "{:?}", good.reports);
    assert!(
        good.device.stats().delivered >= 3,
        "{:?}",
        good.device.stats()
    );

    let not_a_ca = root.signer("fw-not-a-ca", false);
    let (cert, key) = not_a_ca.server("fw-via-not-a-ca", &["localhost"], false, false);
    let forged = tls_broker(&cert, &key);
    let run = run_over_tls(forged.addr(), root.der(), "localhost", second).await;
    assert_eq!(run.link.connections, 0, "{:?}", run.reports);
    assert_eq!(run.device.stats().delivered, 0);
    let failures = handshake_failures(&run);
    assert!(!failures.is_empty(), "{:?}", run.reports);
    println!("signed by a certificate that is not a CA: {}", failures[0]);
}

// TLS records that trickle in (3 KB/s through the proxy) while the loop wakes every 20 ms to
// feed its watchdog: every wake cancels a read half way through a record. The records still
// decrypt, a 1.5 KB command is answered, and the link is never lost.
#[tokio::test]
async fn over_tls_a_record_that_trickles_in_survives_the_loops_wakeups() {
    let dir = std::env::temp_dir().join(format!("dese-fw-tls-slow-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = TestCa::new(&dir, "fw-slow");
    let (cert, key) = ca.server("fw-slow-server", &["localhost"], false, false);
    let plain = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let broker = Mosquitto::start_with(MosquittoConfig {
        extra: vec![
            format!("certfile {}", cert.display()),
            format!("keyfile {}", key.display()),
            // A plaintext listener beside the TLS one, for the test's own clients.
            format!("listener {} 127.0.0.1", plain.port()),
        ],
        ..MosquittoConfig::default()
    })
    .unwrap();
    let proxy = dese_testkit::Proxy::start(broker.addr()).unwrap();
    proxy.set_to_client_rate(Some(3_000));
    let watch = Subscriber::recording(plain, "watch-slow", "devices/org-1/esp32c3-1/+")
        .await
        .unwrap();

    let addr = proxy.addr();
    let ca_der = ca.der();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    // embedded-tls's futures are not Send: the device runs in this task, beside the checks.
    let device = async move {
        let mut clock = HostClock {
            start: tokio::time::Instant::now(),
            rng: 5,
        };
        let mut device = Device::new(settings(60_000), clock.now());
        let mut station = Station::new(SimulatedProbes::new(3), Relays::default());
        let mut network = Tls::new(
            HostTcp(addr),
            &ca_der,
            "localhost",
            rand_core::OsRng,
            wall_time,
        );
        let mut watchdog = CountingWatchdog(Arc::new(std::sync::atomic::AtomicU64::new(0)));
        let mut client = Client::new(MqttOptions::default())
            .with_watchdog(&mut watchdog, Duration::from_millis(20));
        let mut reports = Vec::new();
        let mut stop = Box::pin(async {
            let _ = stopped.await;
        });
        client
            .run(
                &mut device,
                &mut station,
                &mut network,
                &mut clock,
                &mut stop,
                &mut |report| reports.push(report),
            )
            .await;
        (client.stats(), reports)
    };
    let checks = async {
        received(&watch, "the online status", |t, _| t.ends_with("/status")).await;
        let note = "x".repeat(1500);
        let command = format!(
            r#"{{"command_id":"cmd-slow-1","device_id":"esp32c3-1","command":"set_pump","parameters":{{"pump_id":1,"state":"on","note":"{note}"}},"timestamp":"2026-12-01T00:00:00Z"}}"#
        );
        let mut publisher = Publisher::connect(plain, "backend-slow").await.unwrap();
        publisher
            .publish("devices/org-1/esp32c3-1/commands", command, false)
            .await
            .unwrap();
        received(&watch, "the answer to the trickled command", |t, p| {
            t.ends_with("/command_response") && String::from_utf8_lossy(p).contains("cmd-slow-1")
        })
        .await;
        stop.send(()).unwrap();
        publisher.disconnect().await;
    };
    let ((link, reports), ()) = tokio::join!(device, checks);
    assert_eq!((link.connections, link.lost), (1, 0), "{reports:?}");
}

// A broker that takes the TCP connection and then says nothing: the TLS handshake would wait
// for ever; the connect deadline makes each attempt a failure the backoff paces.
#[tokio::test]
async fn a_silent_broker_is_a_failed_attempt_not_a_hang() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((stream, _)) = silent.accept().await {
            open.push(stream);
        }
    });
    let dir = std::env::temp_dir().join(format!("dese-fw-tls-silent-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = TestCa::new(&dir, "fw-silent");
    let options = MqttOptions {
        connect_timeout: Duration::from_millis(300),
        ..MqttOptions::default()
    };
    let run = run_over_tls_with(
        addr,
        ca.der(),
        "localhost",
        Duration::from_millis(1500),
        options,
    )
    .await;
    held.abort();
    let timed_out = run
        .reports
        .iter()
        .filter(|r| matches!(r, Report::Disconnected(LinkError::Connect(why)) if why == "not connected within 300ms"))
        .count();
    assert!(timed_out >= 2, "{:?}", run.reports);
    assert_eq!(run.link.connections, 0);
}
