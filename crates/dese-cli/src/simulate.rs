//! `dese simulate`: a fleet of simulated devices on a real broker.

use std::io::IsTerminal;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use dese_device::{Event, Settings, Stats};
use dese_protocol::{DeviceId, OrgId, TelemetryInterval};
use dese_sim::water::{Pool, PoolModel};
use dese_transport::{DeviceClient, Transport};
use serde_json::json;
use tokio::sync::watch;

use crate::broker::{ConnectArgs, TransportKind};
use crate::exit::{Exit, Failure};

/// Run simulated devices against a broker, each with its own connection and the SDK's device
/// engine: a pool whose pH rises and chlorine fades, an acid pump (1) and a chlorine pump (2)
/// that move them, probes with noise and a bias that calibration removes, and an answer to
/// every command.
///
/// Device ids are PREFIX001, PREFIX002, ... A progress line shows while it runs; at the end
/// (after --duration, or on Ctrl-C) every device says goodbye (a retained offline status) and
/// a summary follows: messages sent and acknowledged, commands answered, reconnects, drops.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Examples:
  dese simulate --org acme --devices 20 --interval-ms 1000 --duration 60
  dese simulate --org acme --devices 1 --prefix pool-     # runs until Ctrl-C
  dese send --org acme --device pool-001 set_pump pump_id=1 state=on duration=120")]
pub(crate) struct Args {
    #[command(flatten)]
    broker: ConnectArgs,

    /// The devices' organization
    #[arg(long)]
    org: OrgId,

    /// How many devices
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    devices: u32,

    /// Telemetry period, in milliseconds (the protocol allows 1,000 to 3,600,000)
    #[arg(long, value_name = "MS", default_value_t = 5000)]
    interval_ms: i64,

    /// Stop after this many seconds (default: run until Ctrl-C)
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,

    /// The start of every device id
    #[arg(long, default_value = "sim-")]
    prefix: String,

    /// Seeds the water models' noise, so that a run can be repeated
    #[arg(long, default_value_t = 1)]
    seed: u64,

    /// The summary as one JSON object on standard output
    #[arg(long)]
    json: bool,
}

/// What one device did, kept up to date while it runs.
#[derive(Debug, Clone, Copy, Default)]
struct Progress {
    stats: Stats,
    connected: bool,
    commands_answered: u64,
    events_lost: u64,
}

pub(crate) async fn run(args: Args) -> Result<Exit, Failure> {
    match args.broker.transport {
        TransportKind::Rumqttc => simulate::<dese_rumqttc::Rumqttc>(args).await,
        TransportKind::Paho => simulate::<dese_paho::Paho>(args).await,
    }
}

async fn simulate<T: Transport>(args: Args) -> Result<Exit, Failure> {
    let broker = args.broker.options()?;
    let org = args.org.clone();
    let interval = TelemetryInterval::new(args.interval_ms)
        .map_err(|e| Failure::usage(format!("--interval-ms: {e}")))?;
    let duration = args
        .duration
        .map(|d| crate::broker::seconds("--duration", d))
        .transpose()?;
    let width = args.devices.to_string().len().max(3);
    let (stop_tx, stop) = watch::channel(false);
    let progress = Arc::new(Mutex::new(vec![Progress::default(); args.devices as usize]));
    let mut tasks = Vec::new();
    for i in 0..args.devices {
        let id = format!("{}{:0width$}", args.prefix, i + 1);
        let device = DeviceId::parse(&id)
            .map_err(|e| Failure::usage(format!("device id {id:?} (--prefix): {e}")))?;
        let mut settings = Settings::new(org.clone(), device, "dese-sim-1.0.0");
        settings.telemetry_interval = interval;
        let pool = Pool::new(PoolModel::default(), args.seed.wrapping_add(u64::from(i)));
        let client =
            DeviceClient::<T>::spawn(&broker, settings, pool.sensors(), pool.controller())?;
        tasks.push(tokio::spawn(drive(
            client,
            stop.clone(),
            Arc::clone(&progress),
            i as usize,
        )));
    }
    eprintln!(
        "dese: {} device(s) of {org} on {} ({}{:0width$} to {}{:0width$}), telemetry every {} ms",
        args.devices,
        args.broker.url(),
        args.prefix,
        1,
        args.prefix,
        args.devices,
        args.interval_ms
    );

    let started = Instant::now();
    let connect_by = started + args.broker.connect_timeout()?;
    let terminal = std::io::stderr().is_terminal();
    let mut tick = tokio::time::interval(Duration::from_millis(500));
    let interrupted = tokio::signal::ctrl_c();
    tokio::pin!(interrupted);
    let mut last_line = Instant::now();
    let mut ever_connected = false;
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = &mut interrupted => break,
        }
        let total = total(&progress);
        ever_connected |= total.connected > 0;
        if !ever_connected && Instant::now() >= connect_by {
            let _ = stop_tx.send(true);
            let why = finish(tasks).await.1;
            return Err(Failure::new(
                Exit::Broker,
                format!(
                    "no device could connect to {} within {:?}: {}",
                    broker.address(),
                    args.broker.connect_timeout()?,
                    why.unwrap_or_else(|| "no answer".to_string())
                ),
            ));
        }
        if terminal {
            eprint!("\r{}   ", total.line(args.devices, started.elapsed()));
        } else if last_line.elapsed() >= Duration::from_secs(5) {
            eprintln!("{}", total.line(args.devices, started.elapsed()));
            last_line = Instant::now();
        }
        if duration.is_some_and(|d| started.elapsed() >= d) {
            break;
        }
    }
    if terminal {
        eprintln!();
    }
    let _ = stop_tx.send(true);
    let elapsed = started.elapsed();
    let (total, failure) = finish(tasks).await;
    let s = total.stats;
    if args.json {
        println!(
            "{}",
            json!({
                "devices": args.devices,
                "seconds": elapsed.as_secs_f64(),
                "telemetry": s.telemetry,
                "acknowledged": s.delivered,
                "pending": s.pending,
                "commands_answered": total.commands_answered,
                "configs_applied": s.configs_applied,
                "alerts": s.alerts,
                "reconnects": s.disconnects,
                "dropped": s.telemetry_dropped + s.other_dropped,
                "events_lost": total.events_lost,
            })
        );
    } else {
        println!(
            "{} device(s), {elapsed:.1?}: {} telemetry sent, {} messages acknowledged by the broker, \
             {} still in flight at the goodbye; {} command(s) answered, {} config(s) applied, {} alert(s); \
             {} reconnect(s); {} dropped (outbox full), {} events lost",
            args.devices,
            s.telemetry,
            s.delivered,
            s.pending,
            total.commands_answered,
            s.configs_applied,
            s.alerts,
            s.disconnects,
            s.telemetry_dropped + s.other_dropped,
            total.events_lost
        );
    }
    if s.delivered == 0 {
        return Err(Failure::new(
            Exit::Broker,
            format!(
                "the broker acknowledged nothing: {}",
                failure.unwrap_or_else(|| "no connection".to_string())
            ),
        ));
    }
    Ok(Exit::Ok)
}

/// Runs one device until told to stop: reads its events (counting answered commands) and
/// keeps its progress up to date; then says goodbye.
async fn drive<T>(
    mut client: DeviceClient<T>,
    mut stop: watch::Receiver<bool>,
    progress: Arc<Mutex<Vec<Progress>>>,
    index: usize,
) -> (Progress, Option<String>) {
    let mut answered = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(250));
    let publish = |client: &DeviceClient<T>, answered: u64| {
        let now = Progress {
            stats: client.stats(),
            connected: client.is_connected(),
            commands_answered: answered,
            events_lost: client.events_lost(),
        };
        progress.lock().unwrap_or_else(PoisonError::into_inner)[index] = now;
        now
    };
    loop {
        tokio::select! {
            event = client.next_event() => match event {
                Some(Event::CommandRun { .. } | Event::CommandDuplicate { .. }) => answered += 1,
                Some(Event::CommandRefused { command_id: Some(_), .. }) => answered += 1,
                Some(_) => {}
                // The client ended by itself: the broker refused it for good.
                None => break,
            },
            _ = tick.tick() => { publish(&client, answered); }
            _ = stop.changed() => break,
        }
    }
    let mut last = publish(&client, answered);
    let failure = client.last_failure().map(|f| crate::exit::chain(&f));
    // The final counters: the outbox delivered before the goodbye, `pending` what was not.
    if let Ok(stats) = client.shutdown().await {
        last.stats = stats;
    }
    (last, failure)
}

async fn finish(
    tasks: Vec<tokio::task::JoinHandle<(Progress, Option<String>)>>,
) -> (Progress, Option<String>) {
    let mut sum = Progress::default();
    let mut failure = None;
    for task in tasks {
        if let Ok((p, f)) = task.await {
            sum.add(&p);
            failure = failure.or(f);
        }
    }
    (sum, failure)
}

fn total(progress: &Mutex<Vec<Progress>>) -> Total {
    let all = progress.lock().unwrap_or_else(PoisonError::into_inner);
    let mut sum = Progress::default();
    let mut connected = 0;
    for p in all.iter() {
        sum.add(p);
        connected += u32::from(p.connected);
    }
    Total { sum, connected }
}

struct Total {
    sum: Progress,
    connected: u32,
}

impl Total {
    fn line(&self, devices: u32, elapsed: Duration) -> String {
        let s = self.sum.stats;
        format!(
            "[{:>6.1}s] {}/{devices} connected | telemetry {} | acked {} | pending {} | commands {} | reconnects {} | dropped {}",
            elapsed.as_secs_f64(),
            self.connected,
            s.telemetry,
            s.delivered,
            s.pending,
            self.sum.commands_answered,
            s.disconnects,
            s.telemetry_dropped + s.other_dropped
        )
    }
}

impl Progress {
    fn add(&mut self, other: &Self) {
        let (a, b) = (&mut self.stats, other.stats);
        a.telemetry += b.telemetry;
        a.delivered += b.delivered;
        a.telemetry_dropped += b.telemetry_dropped;
        a.other_dropped += b.other_dropped;
        a.pending += b.pending;
        a.commands_run += b.commands_run;
        a.configs_applied += b.configs_applied;
        a.alerts += b.alerts;
        a.disconnects += b.disconnects;
        self.commands_answered += other.commands_answered;
        self.events_lost += other.events_lost;
    }
}
