//! The reference backend: a whole backend in one short crate, built on the SDK's public API.
//!
//! It ingests every organization's messages (or its share of a shared-subscription group, so
//! that several instances split the load) with [`dese_transport::BackendClient`], and:
//!
//! - stores telemetry, statuses (last wills included), presence, alerts and command outcomes
//!   in SQLite or PostgreSQL ([`Store`]), in batches of one transaction each, and confirms the events to the
//!   SDK only after the commit, so that the broker forgets a message only once it is stored; a
//!   copy delivered again (after a crash, a lost connection) is stored once;
//! - when a write fails, says so loudly, confirms nothing and writes the batch again until it
//!   succeeds: meanwhile the SDK stops reading and the broker keeps the rest;
//! - counts refused messages by reason and logs them, never storing them as data;
//! - sends each device its thresholds when it comes online ([`BackendOptions::config`]);
//! - reacts to a pH alert above the maximum with `set_pump` on the acid pump, and to chlorine
//!   below the minimum with the chlorine pump, and records each command's lifecycle:
//!   completed, failed, timed out, or late.
//!
//! [`ReferenceBackend::activity`] tells the application what happened, for its logs; the
//! optional live dashboard ([`BackendOptions::dashboard`], the binary's `--ui`) shows it in a
//! browser, and [`prometheus`] serves the metrics (`--metrics`).
#![forbid(unsafe_code)]
// A std crate: portability to no_std is not a goal here.
#![allow(clippy::std_instead_of_alloc, clippy::std_instead_of_core)]

pub mod dashboard;
pub mod prometheus;
mod refusals;
mod store;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dese_backend::{Delivered, DeviceKey, Event, Outcome, Settings};
use dese_protocol::{
    Action, CommandId, DeviceConfig, DeviceId, DeviceState, OrgId, PumpState, Sensor, ShareGroup,
};
use dese_transport::{BackendClient, BackendHandle, BrokerOptions, Error, Transport};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::dashboard::{DashboardOptions, LiveView};
use crate::refusals::RefusalLog;

/// How often the log sums up the refused messages it did not show one by one.
const REFUSAL_SUMMARY_EVERY: Duration = Duration::from_secs(10);

/// Sleeps until `at`, or forever when there is nothing to wait for.
async fn sleep_until_some(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

pub use store::{Database, Store, StoreError, Summary, Written};

/// The pumps of the reference device (and of `dese simulate`).
const ACID_PUMP: u32 = 1;
const CHLORINE_PUMP: u32 = 2;

/// How the backend runs.
#[derive(Debug, Clone)]
pub struct BackendOptions {
    /// The database: a SQLite file (created when missing) or a PostgreSQL server.
    pub db: Database,
    /// The MQTT client id; reuse it across restarts so that the broker keeps the session.
    pub client_id: String,
    /// A shared-subscription group, to split the load with other instances.
    pub group: Option<ShareGroup>,
    /// The engine's settings: allowed organizations, command timeout and retries, rate limit.
    pub settings: Settings,
    /// Sent to each device when it comes online; `None` sends nothing.
    pub config: Option<DeviceConfig>,
    /// Whether alerts start a pump.
    pub react_to_alerts: bool,
    /// How long a reaction runs the pump, in seconds.
    pub pump_seconds: u32,
    /// The most events one transaction stores. Default 2,048.
    pub batch_max: usize,
    /// How long a batch waits for more events once none is waiting. Default zero: a batch is
    /// written as soon as the events that have arrived are taken, which is fastest when the
    /// broker limits how many messages it sends before their acknowledgement (Mosquitto's
    /// `max_inflight_messages`; Mosquitto 2.0.11 keeps that limit only until the first
    /// acknowledgements, docs/backend.md).
    pub batch_linger: Duration,
    /// The live dashboard, when wanted (`None` by default).
    pub dashboard: Option<DashboardOptions>,
}

impl BackendOptions {
    /// Storage in `db`, every organization, reactions on, no config sent; batches of up to
    /// 2,048 events and a receive window of 4,096 (two batches: one commits while the next
    /// arrives; `docs/performance.md` has the figures).
    pub fn new(db: impl Into<Database>) -> Self {
        Self {
            db: db.into(),
            client_id: "dese-reference-backend".to_string(),
            group: None,
            settings: Settings {
                receive_window: 4096,
                ..Settings::default()
            },
            config: None,
            react_to_alerts: true,
            pump_seconds: 60,
            batch_max: 2048,
            batch_linger: Duration::ZERO,
            dashboard: None,
        }
    }
}

/// What the backend did, for the application's log.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Activity {
    /// An event of the engine, already stored.
    Event(Event),
    /// A command sent in reaction to an alert.
    Reaction {
        /// The device.
        device: DeviceKey,
        /// The command.
        action: Action,
        /// The alert's message.
        because: String,
    },
    /// Config sent to a device that came online.
    ConfigSent(DeviceKey),
    /// Writing a batch to the database failed: it is not confirmed (the broker keeps its
    /// messages) and is written again after a pause.
    StoreFailed {
        /// The database's error.
        error: String,
        /// Events in the batch.
        events: usize,
        /// Failed attempts so far for this batch.
        attempt: u32,
    },
}

/// Sends commands and records them: cloneable, usable from any task.
#[derive(Debug, Clone)]
pub struct Commander {
    handle: BackendHandle,
    store: Arc<Store>,
    view: Option<Arc<LiveView>>,
}

impl Commander {
    /// Sends `action` and waits for its outcome (after the engine's timeout and retries); the
    /// command's name and outcome are stored.
    ///
    /// # Cancel safety
    ///
    /// Cancelling does not withdraw the command; its outcome is still stored by the event loop.
    pub async fn send(
        &self,
        org: OrgId,
        device: DeviceId,
        action: Action,
    ) -> Result<(CommandId, Outcome), Error> {
        let pending = self.started(org, device, action).await?;
        let id = pending.id().clone();
        Ok((id, pending.outcome().await?))
    }

    /// Sends `action` and returns its id as soon as the engine has taken it; the outcome is
    /// stored by the event loop (and shown on the dashboard) when it comes.
    ///
    /// # Cancel safety
    ///
    /// Cancelling does not withdraw the command once handed over.
    pub async fn start(
        &self,
        org: OrgId,
        device: DeviceId,
        action: Action,
    ) -> Result<CommandId, Error> {
        Ok(self.started(org, device, action).await?.id().clone())
    }

    async fn started(
        &self,
        org: OrgId,
        device: DeviceId,
        action: Action,
    ) -> Result<dese_transport::PendingCommand, Error> {
        let key = DeviceKey {
            org: org.clone(),
            device: device.clone(),
        };
        let name = action.name().to_string();
        let pending = self.handle.start_command(org, device, action).await?;
        let id = pending.id();
        if let Some(view) = &self.view {
            view.command_sent(id, &key, &name);
        }
        if let Err(e) = self.store.command_sent(id.as_str(), &key, &name).await {
            tracing::error!(command_id = %id, error = %e, "cannot record the command");
        }
        Ok(pending)
    }
}

/// A running reference backend.
pub struct ReferenceBackend {
    commander: Commander,
    store: Arc<Store>,
    stored: Arc<AtomicU64>,
    activity: mpsc::Receiver<Activity>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), Error>>,
    dashboard: Option<(std::net::SocketAddr, JoinHandle<()>)>,
}

impl ReferenceBackend {
    /// Opens the database, connects, and runs until [`ReferenceBackend::shutdown`].
    pub async fn spawn<T: Transport>(
        broker: &BrokerOptions,
        options: BackendOptions,
    ) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        if options.batch_max == 0 {
            return Err("batch_max must be at least 1".into());
        }
        if let Some(dashboard) = &options.dashboard {
            dashboard.check()?;
        }
        let store = Arc::new(Store::open(&options.db).await?);
        let client = BackendClient::<T>::spawn(
            broker,
            &options.client_id,
            options.settings.clone(),
            options.group.clone(),
        )?;
        let view = options
            .dashboard
            .as_ref()
            .map(|_| Arc::new(LiveView::new(options.settings.instance.clone())));
        let commander = Commander {
            handle: client.handle(),
            store: Arc::clone(&store),
            view: view.clone(),
        };
        let dashboard = match (&options.dashboard, &view) {
            (Some(dashboard), Some(view)) => {
                let (listener, router) =
                    dashboard::bind(dashboard, Arc::clone(view), commander.clone())
                        .await
                        .map_err(|e| {
                            format!("the dashboard cannot listen on {}: {e}", dashboard.addr)
                        })?;
                let addr = listener.local_addr()?;
                Some((addr, tokio::spawn(dashboard::serve(listener, router))))
            }
            _ => None,
        };
        let (activity_tx, activity) = mpsc::channel(1024);
        let stored = Arc::new(AtomicU64::new(0));
        let (stop, stopped) = oneshot::channel();
        let task = tokio::spawn(
            EventLoop {
                client,
                commander: commander.clone(),
                store: Arc::clone(&store),
                options,
                activity: activity_tx,
                reacted: HashMap::new(),
                stored: Arc::clone(&stored),
                refusals: RefusalLog::new(REFUSAL_SUMMARY_EVERY),
                view,
                meters: StoreMeters::new(),
            }
            .run(stopped),
        );
        Ok(Self {
            commander,
            store,
            stored,
            activity,
            stop: Some(stop),
            task,
            dashboard,
        })
    }

    /// Where the dashboard listens, when it was asked for.
    pub fn dashboard_addr(&self) -> Option<std::net::SocketAddr> {
        self.dashboard.as_ref().map(|(addr, _)| *addr)
    }

    /// Sends commands and records them.
    pub fn commander(&self) -> Commander {
        self.commander.clone()
    }

    /// The SDK's counters of this instance: what it received, refused, flagged as duplicate.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn counters(&self) -> Result<dese_backend::Counters, Error> {
        self.commander.handle.counters().await
    }

    /// Every device this instance knows, with its presence (in a group, every instance knows
    /// them all: statuses reach each instance).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn devices(&self) -> Result<Vec<(DeviceKey, dese_backend::Presence)>, Error> {
        self.commander.handle.devices().await
    }

    /// Readings this instance added to the database (copies another instance had stored
    /// already, or that were stored before a crash, not counted).
    pub fn stored(&self) -> u64 {
        self.stored.load(Ordering::Relaxed)
    }

    /// The database.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// What happened next. Activity not read is dropped once 1,024 wait (the database has
    /// it all).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe.
    pub async fn activity(&mut self) -> Option<Activity> {
        self.activity.recv().await
    }

    /// Disconnects and waits for the event loop to end.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: the result is lost if cancelled.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some((_, server)) = self.dashboard.take() {
            server.abort();
        }
        self.task.await.unwrap_or(Err(Error::Closed))
    }
}

/// The storage's metrics ([`prometheus::CATALOG`]).
struct StoreMeters {
    committed: metrics::Counter,
    failed: metrics::Counter,
    seconds: metrics::Histogram,
    batch: metrics::Histogram,
    readings: metrics::Counter,
}

impl StoreMeters {
    fn new() -> Self {
        Self {
            committed: metrics::counter!("dese_store_writes_total", "outcome" => "committed"),
            failed: metrics::counter!("dese_store_writes_total", "outcome" => "failed"),
            seconds: metrics::histogram!("dese_store_write_seconds"),
            batch: metrics::histogram!("dese_store_batch_events"),
            readings: metrics::counter!("dese_store_readings_total"),
        }
    }
}

struct EventLoop<T> {
    client: BackendClient<T>,
    commander: Commander,
    store: Arc<Store>,
    options: BackendOptions,
    activity: mpsc::Sender<Activity>,
    reacted: HashMap<DeviceKey, Instant>,
    stored: Arc<AtomicU64>,
    refusals: RefusalLog,
    view: Option<Arc<LiveView>>,
    meters: StoreMeters,
}

/// How often the dashboard's connection badge is brought up to date while nothing arrives.
const VIEW_TICK: Duration = Duration::from_secs(1);

impl<T> EventLoop<T> {
    async fn run(mut self, mut stopped: oneshot::Receiver<()>) -> Result<(), Error> {
        loop {
            let summary_due = self.refusals.due();
            let tick = self.view.as_ref().map(|view| {
                view.set_connected(self.client.is_connected());
                Instant::now() + VIEW_TICK
            });
            let first = tokio::select! {
                delivered = self.client.next_delivery() => match delivered {
                    Some(delivered) => delivered,
                    None => return Err(Error::Closed),
                },
                () = sleep_until_some(summary_due) => {
                    if let Some(summary) = self.refusals.flush() {
                        tracing::warn!("{summary}");
                    }
                    continue;
                }
                () = sleep_until_some(tick) => continue,
                _ = &mut stopped => {
                    if let Some(summary) = self.refusals.flush() {
                        tracing::warn!("{summary}");
                    }
                    return self.client.shutdown().await;
                }
            };
            let (events, acks): (Vec<Event>, Vec<_>) = self
                .fill(first)
                .await
                .into_iter()
                .map(|d| (d.event, d.ack))
                .unzip();
            let events = Arc::new(events);
            let Some(written) = self.write(Arc::clone(&events), &mut stopped).await else {
                // Stopped before the batch was stored: nothing confirmed, the broker keeps it.
                return self.client.shutdown().await;
            };
            // Stored: the broker may forget these messages now.
            self.client.handle().ack_all(acks.into_iter().flatten())?;
            let readings = events
                .iter()
                .zip(&written.new)
                .filter(|(event, new)| **new && matches!(event, Event::Telemetry { .. }))
                .count();
            self.stored.fetch_add(readings as u64, Ordering::Relaxed);
            self.meters.readings.increment(readings as u64);
            self.meters.batch.record(events.len() as f64);
            // The store let go of its share when the write ended.
            let events = Arc::try_unwrap(events).unwrap_or_else(|shared| (*shared).clone());
            for (event, new) in events.into_iter().zip(written.new) {
                self.after_commit(event, new).await;
            }
        }
    }

    /// A batch: `first`, then what else has arrived, up to `batch_max` events, waiting at most
    /// `batch_linger` for more.
    async fn fill(&mut self, first: Delivered) -> Vec<Delivered> {
        let mut batch = vec![first];
        let linger_until = tokio::time::Instant::now() + self.options.batch_linger;
        while batch.len() < self.options.batch_max {
            if let Some(delivered) = self.client.try_next_delivery() {
                batch.push(delivered);
                continue;
            }
            match tokio::time::timeout_at(linger_until, self.client.next_delivery()).await {
                Ok(Some(delivered)) => batch.push(delivered),
                Ok(None) | Err(_) => break,
            }
        }
        batch
    }

    /// Writes the batch in one transaction, again and again while it fails (the broker keeps
    /// the messages meanwhile); `None` if stopped first.
    async fn write(
        &mut self,
        events: Arc<Vec<Event>>,
        stopped: &mut oneshot::Receiver<()>,
    ) -> Option<Written> {
        let mut pause = Duration::from_millis(100);
        let mut attempt = 0;
        loop {
            let started = Instant::now();
            let result = self.store.write(Arc::clone(&events)).await;
            self.meters.seconds.record(started.elapsed().as_secs_f64());
            match result {
                Ok(written) => {
                    self.meters.committed.increment(1);
                    return Some(written);
                }
                Err(e) => {
                    attempt += 1;
                    self.meters.failed.increment(1);
                    tracing::error!(
                        attempt,
                        events = events.len(),
                        retry_in_ms = u64::try_from(pause.as_millis()).unwrap_or(u64::MAX),
                        error = %e,
                        "DATABASE WRITE FAILED: the batch is not confirmed (the broker keeps its \
                         messages) and is written again after a pause"
                    );
                    self.tell(Activity::StoreFailed {
                        error: e.to_string(),
                        events: events.len(),
                        attempt,
                    });
                }
            }
            tokio::select! {
                () = tokio::time::sleep(pause) => {}
                _ = &mut *stopped => return None,
            }
            pause = (pause * 2).min(Duration::from_secs(5));
        }
    }

    /// What follows a stored event: thresholds to a device that came online, a pump for a new
    /// alert (not for a copy delivered again), the log.
    async fn after_commit(&mut self, event: Event, new: bool) {
        match &event {
            Event::PresenceChanged {
                device,
                to: DeviceState::Online,
                ..
            } => self.configure(device).await,
            Event::Dropped {
                topic,
                reason,
                error,
            } => {
                let line = self.refusals.refused(
                    Instant::now(),
                    topic,
                    reason.as_str(),
                    &error.to_string(),
                );
                if let Some(line) = line {
                    tracing::warn!("{line}");
                }
            }
            _ => {}
        }
        if let Some(view) = &self.view {
            view.record(&event, new);
        }
        let alert = match &event {
            Event::Alert { device, alert } if new => Some((device.clone(), alert.clone())),
            _ => None,
        };
        self.tell(Activity::Event(event));
        if let Some((device, alert)) = alert {
            self.react(&device, &alert);
        }
    }

    async fn configure(&mut self, device: &DeviceKey) {
        if let Some(config) = self.options.config.clone() {
            let sent = self
                .client
                .send_config(device.org.clone(), device.device.clone(), config)
                .await;
            if sent.is_ok() {
                self.tell(Activity::ConfigSent(device.clone()));
            }
        }
    }

    /// pH above its maximum: acid. Chlorine below its minimum: chlorine. At most once a
    /// minute per device, so that a flapping sensor does not flood the device with commands.
    fn react(&mut self, device: &DeviceKey, alert: &dese_protocol::Alert) {
        if !self.options.react_to_alerts {
            return;
        }
        let (Some(sensor), Some(value), Some(threshold)) =
            (&alert.sensor, alert.value, alert.threshold)
        else {
            return;
        };
        let pump = match sensor {
            Sensor::Ph if value.get() > threshold.get() => ACID_PUMP,
            Sensor::Chlorine if value.get() < threshold.get() => CHLORINE_PUMP,
            _ => return,
        };
        let now = Instant::now();
        if self
            .reacted
            .get(device)
            .is_some_and(|last| now.duration_since(*last) < Duration::from_secs(60))
        {
            return;
        }
        self.reacted.insert(device.clone(), now);
        let action = Action::SetPump {
            pump_id: pump,
            state: PumpState::On,
            duration: Some(self.options.pump_seconds),
        };
        self.tell(Activity::Reaction {
            device: device.clone(),
            action: action.clone(),
            because: alert.message.clone(),
        });
        let commander = self.commander.clone();
        let (org, id) = (device.org.clone(), device.device.clone());
        // The outcome arrives as an event and is stored there.
        tokio::spawn(async move { commander.send(org, id, action).await });
    }

    fn tell(&self, activity: Activity) {
        let _ = self.activity.try_send(activity);
    }
}
