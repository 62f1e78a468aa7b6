//! The device side: the device engine driven over any [`Transport`].

use std::marker::PhantomData;
use std::time::Duration;

use dese_device::{
    CommandHandler, Device, Event, Instant, MessageId, Readings, SensorReader, Settings, Stats,
};
use dese_protocol::{Action, Alert, CommandId, JsonObject, Printable};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, warn};

use crate::clock::{Clock, Jitter, sleep_until, utc_now};
use crate::error::{ConnectionFailure, Error};
use crate::link::{Acknowledgement, Link, LinkEvent, Session, Transport, Will};
use crate::metrics::{self as meters, DeviceMeters, Side};
use crate::options::BrokerOptions;

/// How many events wait for [`DeviceClient::next_event`] before new ones are dropped (and
/// counted in [`DeviceClient::events_lost`]).
const EVENT_BUFFER: usize = 1024;

/// The tag of the goodbye status: the engine's message ids count up from zero.
const GOODBYE: u64 = u64::MAX;

enum Control {
    Alert(Alert),
    Readings(Readings),
    Shutdown(oneshot::Sender<()>),
}

/// A command for the application to carry out, from [`DeviceClient::next_command`] (a client
/// started with [`DeviceClient::spawn_deferred`]). Take the time it needs, then give the
/// outcome with [`DeviceCommand::finish`]; meanwhile the client goes on publishing readings and
/// answering other commands, and a copy of this one delivered again is not handed out again.
///
/// Dropped without [`DeviceCommand::finish`], it is answered as failed ("the application
/// dropped the command without an answer"), so that no command waits for ever; so is a
/// command nobody took from [`DeviceClient::next_command`] when the client shuts down or is
/// dropped. A command still running when the client ends is not answered by it: the
/// backend's timeout tells, and with [`Settings::persist`] the answer saved for it
/// ("interrupted") answers a copy delivered after the device restarts.
///
/// ```no_run
/// use std::time::Duration;
/// use dese_protocol::Action;
/// use dese_transport::{DeviceClient, Transport};
///
/// async fn pumps<T: Transport>(mut device: DeviceClient<T>) {
///     while let Some(command) = device.next_command().await {
///         tokio::spawn(async move {
///             if let Action::SetPump { duration: Some(secs), .. } = command.action() {
///                 tokio::time::sleep(Duration::from_secs(u64::from(*secs))).await;
///             }
///             command.finish(Ok(None));
///         });
///     }
/// }
/// ```
#[derive(Debug)]
#[must_use = "a command dropped unfinished is answered as failed"]
pub struct DeviceCommand {
    command_id: CommandId,
    action: Action,
    finish: mpsc::UnboundedSender<Finish>,
    finished: bool,
}

impl DeviceCommand {
    /// The command's id, chosen by the backend.
    pub fn command_id(&self) -> &CommandId {
        &self.command_id
    }

    /// What to do, already checked: parameters in range, addressed to this device, not
    /// retained, never run before.
    pub fn action(&self) -> &Action {
        &self.action
    }

    /// The outcome: `Ok` with the data of a `success: true` response, `Err` with the reason
    /// of a `success: false` one. The client answers, and remembers the answer for a copy
    /// delivered again. Given before [`DeviceClient::shutdown`], or while the shutdown
    /// delivers the outbox, it is sent; once the client has ended (shut down, dropped, or
    /// refused by the broker for good, [`DeviceClient::closed`]) nothing is.
    pub fn finish(mut self, result: Result<Option<JsonObject>, String>) {
        self.finished = true;
        let _ = self.finish.send(Finish {
            command_id: self.command_id.clone(),
            result,
        });
    }
}

impl Drop for DeviceCommand {
    fn drop(&mut self) {
        if !self.finished {
            let _ = self.finish.send(Finish {
                command_id: self.command_id.clone(),
                result: Err(String::from(
                    "the application dropped the command without an answer",
                )),
            });
        }
    }
}

#[derive(Debug, Clone, Default)]
struct Status {
    stats: Stats,
    events_lost: u64,
    connected: bool,
    refused_subscriptions: Vec<String>,
}

/// A device on a real broker: the [`Device`] engine driven over the transport `T`, in a task
/// of its own.
///
/// The task owns the engine, the sensors and the command handler (if any). It connects when
/// the engine says so (at once, then after each loss with the engine's backoff and jitter),
/// subscribes after every connection, publishes what the engine hands out, and reports each broker
/// acknowledgement to the engine, so that a message leaves the engine's outbox only when the
/// broker has it; after a reconnection the engine replays what was not acknowledged, in order.
/// A keepalive changed by a config message takes effect at once: the task closes the
/// connection cleanly and reconnects with the new value.
///
/// Refused credentials and refused TLS end the client ([`DeviceClient::closed`]); every other
/// failure is retried, and the last one is kept in [`DeviceClient::last_failure`].
///
/// Spawn it inside a tokio runtime.
pub struct DeviceClient<T> {
    /// Before `control`, so that when the client is dropped, the commands nobody took are
    /// dropped (and so answered as failed) before the driver learns that the client is gone
    /// and says goodbye.
    commands: mpsc::UnboundedReceiver<DeviceCommand>,
    control: mpsc::UnboundedSender<Control>,
    events: mpsc::Receiver<Event>,
    status: watch::Receiver<Status>,
    failure: watch::Receiver<Option<ConnectionFailure>>,
    task: JoinHandle<Result<(), Error>>,
    transport: PhantomData<fn() -> T>,
}

impl<T: Transport> DeviceClient<T> {
    /// Connects the device described by `settings` to the broker and runs it: status, last
    /// will, subscriptions, telemetry from `sensors`, commands through `handler`.
    ///
    /// Fails at once only on options that cannot work (settings that
    /// [`Settings::check`](dese_device::Settings::check) refuses, TLS files, a broker URL); the
    /// broker being down is not an error here, it is retried.
    pub fn spawn(
        broker: &BrokerOptions,
        settings: Settings,
        sensors: impl SensorReader + Send + 'static,
        handler: impl CommandHandler + Send + 'static,
    ) -> Result<Self, Error> {
        Self::start(broker, settings, sensors, Some(handler))
    }

    /// Like [`DeviceClient::spawn`], for commands that take time (a pump that runs for
    /// seconds, a calibration that waits for the probe): each new command comes out of
    /// [`DeviceClient::next_command`] and is answered when the application calls
    /// [`DeviceCommand::finish`]. At most [`Settings::running_capacity`] run at once; past
    /// that a command is refused as busy.
    pub fn spawn_deferred(
        broker: &BrokerOptions,
        settings: Settings,
        sensors: impl SensorReader + Send + 'static,
    ) -> Result<Self, Error> {
        Self::start(broker, settings, sensors, None::<HandOut>)
    }

    fn start(
        broker: &BrokerOptions,
        settings: Settings,
        sensors: impl SensorReader + Send + 'static,
        handler: Option<impl CommandHandler + Send + 'static>,
    ) -> Result<Self, Error> {
        settings.check().map_err(Error::Settings)?;
        let clock = Clock::new();
        let settings_window = settings.in_flight_window.max(1);
        let engine = Device::new(settings, clock.now());
        let connect = engine.connect_options(utc_now());
        let (keepalive, will) = session(&engine);
        // At the error level, so that the span (which client) shows with any filter, even
        // `warn`, where an info span would be disabled and its lines anonymous.
        let span = tracing::error_span!(
            "dese_device",
            client_id = %Printable(&connect.client_id),
            broker = %broker.address()
        );
        let link = T::open(
            broker,
            Session {
                client_id: connect.client_id,
                keepalive,
                clean_session: connect.clean_session,
                will: Some(will),
                // The device engine takes a command in as it handles it (its answer, given
                // now or when the command finishes, is the engine's to send): acknowledged
                // on receipt.
                acknowledgement: Acknowledgement::OnReceipt,
                // The window, and the goodbye status beside it.
                in_flight_window: settings_window + 1,
            },
        )?;
        let (control, control_rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::channel(EVENT_BUFFER);
        // Unbounded, yet never more than the engine's running capacity: it refuses more.
        let (commands_tx, commands) = mpsc::unbounded_channel();
        let (status_tx, status) = watch::channel(Status {
            stats: engine.stats(),
            ..Status::default()
        });
        let (failure_tx, failure) = watch::channel(None);
        let (finish, finishes) = mpsc::unbounded_channel();
        let driver = Driver {
            engine,
            link,
            control: control_rx,
            finish,
            finishes,
            commands: commands_tx,
            events: events_tx,
            status: status_tx,
            failure: failure_tx,
            clock,
            jitter: Jitter::new(),
            events_lost: 0,
            meters: DeviceMeters::new(),
            connections: 0,
            refused_subscriptions: Vec::new(),
            dropped: 0,
        };
        let task = tokio::spawn(driver.run(sensors, handler).instrument(span));
        Ok(Self {
            commands,
            control,
            events,
            status,
            failure,
            task,
            transport: PhantomData,
        })
    }
}

impl<T> DeviceClient<T> {
    /// The next event of the engine (connections, commands run, config applied, drops).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: an event not returned stays for the next call.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// The next command to carry out, for a client started with
    /// [`DeviceClient::spawn_deferred`]; `None` once the client has ended. A client started
    /// with a handler runs its commands itself: this waits until the client ends. Unlike
    /// events, commands are never dropped: the engine refuses new ones as busy while
    /// [`Settings::running_capacity`] are handed out and not finished.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a command not returned stays for the next call.
    pub async fn next_command(&mut self) -> Option<DeviceCommand> {
        self.commands.recv().await
    }

    /// The engine's counters, as of its last step.
    pub fn stats(&self) -> Stats {
        self.status.borrow().stats
    }

    /// Events dropped because nobody read them ([`DeviceClient::next_event`]).
    pub fn events_lost(&self) -> u64 {
        self.status.borrow().events_lost
    }

    /// Why the last connection attempt failed (or the connection was lost), while the client
    /// retries: an unreachable broker is [`ErrorKind::Io`](crate::ErrorKind::Io). Cleared when
    /// a connection succeeds.
    pub fn last_failure(&self) -> Option<ConnectionFailure> {
        self.failure.borrow().clone()
    }

    /// Whether the device is connected to the broker, as of the engine's last step.
    pub fn is_connected(&self) -> bool {
        self.status.borrow().connected
    }

    /// The filters the broker refused on the current connection (a SUBACK failure, such as an
    /// ACL that denies the device its `commands` topic): no message on them arrives. Each is
    /// also logged as an error and counted (`dese_device_subscriptions_refused_total`).
    pub fn refused_subscriptions(&self) -> Vec<String> {
        self.status.borrow().refused_subscriptions.clone()
    }

    /// Publishes telemetry from readings taken now, outside the periodic schedule.
    pub fn publish_readings(&self, readings: Readings) -> Result<(), Error> {
        self.control
            .send(Control::Readings(readings))
            .map_err(|_| Error::Closed)
    }

    /// Queues an alert of the application's own.
    pub fn raise_alert(&self, alert: Alert) -> Result<(), Error> {
        self.control
            .send(Control::Alert(alert))
            .map_err(|_| Error::Closed)
    }

    /// Delivers what waits in the outbox (for at most 2 s, while connected), says goodbye (a
    /// retained `offline` status, then a clean disconnection, which does not fire the last
    /// will), waits for the client to end (at most 6 s in all) and returns its final counters:
    /// [`Stats::pending`] is what was not delivered.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: if cancelled after the goodbye was queued, the client still ends but
    /// the result is lost.
    pub async fn shutdown(self) -> Result<Stats, Error> {
        // The commands nobody took are answered as failed, in the goodbye.
        drop(self.commands);
        let (control, status) = (self.control, self.status);
        shutdown(
            |done| control.send(Control::Shutdown(done)).is_ok(),
            self.task,
        )
        .await?;
        let stats = status.borrow().stats;
        Ok(stats)
    }

    /// Waits until the client ends by itself: only when the broker refuses it for good
    /// (credentials, TLS), as every other failure is retried with backoff.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: the client's result is consumed.
    pub async fn closed(self) -> Result<(), Error> {
        match self.task.await {
            Ok(result) => result,
            Err(_) => Err(Error::Closed),
        }
    }
}

/// The keepalive and the last will of the engine's next connection, the will stamped now.
fn session(engine: &Device) -> (Duration, Will) {
    let connect = engine.connect_options(utc_now());
    let will = Will {
        topic: connect.will.topic,
        payload: connect.will.payload,
        retain: connect.will.retain,
    };
    (
        Duration::from_secs(u64::from(connect.keepalive.get())),
        will,
    )
}

/// Asks a driver task to end (`request` carries the acknowledgement), waits at most 6 s, and
/// returns its result.
pub(crate) async fn shutdown(
    request: impl FnOnce(oneshot::Sender<()>) -> bool,
    task: JoinHandle<Result<(), Error>>,
) -> Result<(), Error> {
    let (done, finished) = oneshot::channel();
    if request(done) {
        let _ = tokio::time::timeout(Duration::from_secs(6), finished).await;
    }
    task.abort();
    match task.await {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}

/// A command's outcome, from its [`DeviceCommand`]. On a channel of its own: the driver holds a
/// sender of it (for the commands it hands out), so it never closes, where the control channel
/// closing tells the driver that the client is gone.
#[derive(Debug)]
struct Finish {
    command_id: CommandId,
    result: Result<Option<JsonObject>, String>,
}

/// The type of the handler a client started with [`DeviceClient::spawn_deferred`] does not
/// have: none can be made, so its driver cannot run a command itself; they all go to
/// [`DeviceClient::next_command`].
enum HandOut {}

impl CommandHandler for HandOut {
    fn run(&mut self, _: &Action, _: Instant) -> Result<Option<JsonObject>, String> {
        match *self {}
    }
}

struct Driver<L> {
    engine: Device,
    link: L,
    control: mpsc::UnboundedReceiver<Control>,
    /// Given to each [`DeviceCommand`], for its answer.
    finish: mpsc::UnboundedSender<Finish>,
    finishes: mpsc::UnboundedReceiver<Finish>,
    commands: mpsc::UnboundedSender<DeviceCommand>,
    events: mpsc::Sender<Event>,
    status: watch::Sender<Status>,
    failure: watch::Sender<Option<ConnectionFailure>>,
    clock: Clock,
    jitter: Jitter,
    events_lost: u64,
    meters: DeviceMeters,
    /// Connections the broker accepted.
    connections: u64,
    refused_subscriptions: Vec<String>,
    /// Messages the outbox dropped, as last logged.
    dropped: u64,
}

impl<L: Link> Driver<L> {
    async fn run(
        mut self,
        mut sensors: impl SensorReader,
        mut handler: Option<impl CommandHandler>,
    ) -> Result<(), Error> {
        loop {
            self.flush();
            let wake = self.engine.poll_timeout().map(|at| self.clock.deadline(at));
            tokio::select! {
                event = self.link.next() => self.on_link(event, &mut handler)?,
                () = sleep_until(wake) => {
                    self.engine.handle_timeout(self.clock.now(), utc_now(), &mut sensors);
                }
                Some(finish) = self.finishes.recv() => self.finished(finish),
                control = self.control.recv() => match control {
                    Some(Control::Alert(alert)) => self.engine.raise_alert(&alert),
                    Some(Control::Readings(readings)) => self.engine.handle_readings(readings, utc_now()),
                    Some(Control::Shutdown(done)) => {
                        self.goodbye().await;
                        let _ = done.send(());
                        return Ok(());
                    }
                    None => {
                        self.goodbye().await;
                        return Ok(());
                    }
                },
            }
        }
    }

    /// Hands out what the engine wants published, and its events.
    fn flush(&mut self) {
        while let Some(t) = self.engine.poll_transmit() {
            // A message the client would not take stays in flight in the engine and is
            // replayed after the next connection.
            let _ = self.link.publish(t.id.0, &t.topic, &t.payload, t.retain);
        }
        while let Some(event) = self.engine.poll_event() {
            match &event {
                Event::Connect => {
                    debug!("connecting");
                    let (keepalive, will) = session(&self.engine);
                    self.link.connect(keepalive, Some(will));
                }
                Event::KeepaliveChanged(keepalive) if self.engine.is_connected() => {
                    info!(
                        keepalive_s = keepalive.get(),
                        "keepalive changed by config: reconnecting"
                    );
                    self.link.reconnect();
                }
                Event::Command { command_id, action } => {
                    debug!(command_id = %command_id, command = action.name(), "command handed out");
                    let command = DeviceCommand {
                        command_id: command_id.clone(),
                        action: action.clone(),
                        finish: self.finish.clone(),
                        finished: false,
                    };
                    if let Err(unread) = self.commands.send(command) {
                        // The client is gone: answered by the drop, as failed.
                        drop(unread.0);
                    }
                    continue;
                }
                event => log_event(event),
            }
            if self.events.try_send(event).is_err() {
                self.events_lost += 1;
            }
        }
        self.report();
    }

    /// Publishes the engine's counters for [`DeviceClient::stats`], and to the metrics.
    fn report(&mut self) {
        let stats = self.engine.stats();
        let connected = self.engine.is_connected();
        let dropped = stats.telemetry_dropped + stats.other_dropped;
        if dropped > self.dropped {
            warn!(
                telemetry = stats.telemetry_dropped,
                other = stats.other_dropped,
                "outbox full: {} message(s) dropped ({dropped} in all)",
                dropped - self.dropped
            );
            self.dropped = dropped;
        }
        self.meters.follow(
            &stats,
            connected,
            self.connections,
            self.refused_subscriptions.len(),
        );
        self.status.send_replace(Status {
            stats,
            events_lost: self.events_lost,
            connected,
            refused_subscriptions: self.refused_subscriptions.clone(),
        });
    }

    fn on_link(
        &mut self,
        event: LinkEvent,
        handler: &mut Option<impl CommandHandler>,
    ) -> Result<(), Error> {
        match event {
            LinkEvent::Connected => {
                self.failure.send_replace(None);
                self.engine.handle_connected(self.clock.now(), utc_now());
                let filters: Vec<String> = self
                    .engine
                    .subscriptions()
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                self.connections += 1;
                info!(subscriptions = ?filters, "connected");
                self.refused_subscriptions.clear();
                self.link.subscribe(&filters);
            }
            LinkEvent::SubscriptionRefused { filter } => {
                meters::subscription_refused(Side::Device, &filter);
                self.refused_subscriptions.push(filter);
            }
            LinkEvent::Message {
                topic,
                payload,
                retain,
                ..
            } => {
                let (now, utc) = (self.clock.now(), utc_now());
                match handler {
                    Some(handler) => self
                        .engine
                        .handle_message_with(now, utc, &topic, &payload, retain, handler),
                    None => self
                        .engine
                        .handle_message(now, utc, &topic, &payload, retain),
                }
            }
            LinkEvent::Acked(tag) => self.engine.handle_acked(MessageId(tag)),
            LinkEvent::Lost(failure) => {
                let kind = failure.kind;
                self.failure.send_replace(Some(failure.clone()));
                let was_up = self.engine.is_connected();
                let now = self.clock.now();
                self.engine.handle_disconnected(now, self.jitter.next());
                meters::disconnect(Side::Device, kind);
                let retry_in = self.engine.reconnect_at().map(|at| {
                    std::time::Duration::from_millis(at.as_millis().saturating_sub(now.as_millis()))
                });
                failure.log(was_up, retry_in);
                if kind.is_final() {
                    return Err(Error::Connection(failure));
                }
            }
            LinkEvent::Closed => return Err(Error::Closed),
        }
        Ok(())
    }

    /// A command's result, to the engine, which answers it.
    fn finished(&mut self, Finish { command_id, result }: Finish) {
        let (now, utc) = (self.clock.now(), utc_now());
        if let Err(error) = self
            .engine
            .handle_command_result(now, utc, &command_id, result)
        {
            debug!(%error, "a command's result, not sent");
        }
    }

    /// Delivers the outbox while connected (at most 2 s), then the retained `offline` status
    /// and a clean disconnection; waits (at most 2 s) for the status to be acknowledged.
    /// The results given before the shutdown go out first, with the failures of the commands
    /// nobody took, and so do the results given while the outbox is delivered; commands that
    /// arrive meanwhile are not run: the device is leaving.
    async fn goodbye(&mut self) {
        while let Ok(finish) = self.finishes.try_recv() {
            self.finished(finish);
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        while self.engine.is_connected() && self.engine.stats().pending > 0 {
            self.flush();
            let event = tokio::select! {
                event = tokio::time::timeout_at(deadline, self.link.next()) => event,
                Some(finish) = self.finishes.recv() => {
                    self.finished(finish);
                    continue;
                }
            };
            match event {
                Ok(LinkEvent::Acked(tag)) => self.engine.handle_acked(MessageId(tag)),
                Ok(LinkEvent::Lost(_)) => {
                    self.engine
                        .handle_disconnected(self.clock.now(), self.jitter.next());
                }
                Ok(LinkEvent::Closed) | Err(_) => break,
                Ok(
                    LinkEvent::Connected
                    | LinkEvent::Message { .. }
                    | LinkEvent::SubscriptionRefused { .. },
                ) => {}
            }
        }
        let connected = self.engine.is_connected();
        let t = self.engine.disconnect(utc_now());
        if connected && self.link.publish(GOODBYE, &t.topic, &t.payload, true) {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
            while let Ok(event) = tokio::time::timeout_at(deadline, self.link.next()).await {
                match event {
                    LinkEvent::Acked(GOODBYE) | LinkEvent::Lost(_) | LinkEvent::Closed => break,
                    _ => {}
                }
            }
        }
        self.link.disconnect().await;
        info!("disconnected: shut down");
        self.report();
    }
}

/// The engine's events, at the level each deserves.
fn log_event(event: &Event) {
    match event {
        Event::ConfigApplied(_) => info!("config applied"),
        Event::ConfigReset => info!("reset_config: config back to the device's own settings"),
        Event::ConfigRejected { error } => {
            warn!(error = %Printable(error), "config refused: nothing of it applied")
        }
        Event::CommandRun {
            command_id,
            command,
            success,
        } => info!(
            command_id = %command_id,
            command = %Printable(command),
            success,
            "command run"
        ),
        Event::CommandDuplicate { command_id } => debug!(
            command_id = %command_id,
            "command delivered again: answered from the cache, not run"
        ),
        Event::CommandStillRunning { command_id } => debug!(
            command_id = %command_id,
            "command delivered again while it runs: its result will answer it"
        ),
        Event::CommandRefused { command_id, error } => warn!(
            command_id = command_id.as_ref().map(|id| id.as_str()),
            error = %Printable(error),
            "command refused before the handler"
        ),
        Event::Dropped { reason, error } => debug!(
            reason = reason.as_str(),
            error = %Printable(error),
            "incoming message dropped"
        ),
        Event::ReadingMissed => debug!("no usable reading this period"),
        Event::ReadingRejected { error } => {
            warn!(error = %Printable(error), "reading out of range: not sent")
        }
        _ => {}
    }
}
