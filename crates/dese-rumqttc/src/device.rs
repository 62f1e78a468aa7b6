//! The device side: the device engine driven over rumqttc.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dese_device::{
    CommandHandler, Device, Event, Instant, MessageId, Readings, SensorReader, Settings, Stats,
};
use dese_protocol::{Alert, Timestamp};
use rumqttc::{AsyncClient, ConnectionError, LastWill, Outgoing, Packet, QoS};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::error::{ConnectionFailure, Error};
use crate::link::Link;
use crate::options::BrokerOptions;

/// How many events wait for [`DeviceClient::next_event`] before new ones are dropped (and
/// counted in [`DeviceClient::events_lost`]).
const EVENT_BUFFER: usize = 1024;

enum Control {
    Alert(Alert),
    Readings(Readings),
    Shutdown(oneshot::Sender<()>),
}

/// A device on a real broker: the [`Device`] engine driven over rumqttc, in two tasks.
///
/// One task polls rumqttc's event loop and nothing else, so that a full request channel can
/// never block it; it reconnects only when the engine's backoff says so. The other owns the
/// engine, the sensors and the command handler: it publishes what the engine hands out (with
/// `try_publish` into a channel larger than the engine's in-flight window, so it never waits),
/// maps rumqttc's packet ids to the engine's message ids, and reports each PUBACK, so that a
/// message leaves the engine's outbox only when the broker acknowledged it. rumqttc clears its
/// own queue when it reconnects with a clean session; the engine replays what was in flight.
///
/// Spawn it inside a tokio runtime.
pub struct DeviceClient {
    control: mpsc::UnboundedSender<Control>,
    events: mpsc::Receiver<Event>,
    stats: watch::Receiver<(Stats, u64, bool)>,
    failure: watch::Receiver<Option<ConnectionFailure>>,
    task: JoinHandle<Result<(), Error>>,
}

impl DeviceClient {
    /// Connects the device described by `settings` to the broker and runs it: status, last
    /// will, subscriptions, telemetry from `sensors`, commands through `handler`.
    pub fn spawn(
        broker: &BrokerOptions,
        settings: Settings,
        sensors: impl SensorReader + Send + 'static,
        handler: impl CommandHandler + Send + 'static,
    ) -> Result<Self, Error> {
        let clock = Clock::new();
        let window = settings.in_flight_window;
        let engine = Device::new(settings, clock.now());
        let connect = engine.connect_options(clock.utc());
        let mut options = crate::link::mqtt_options(broker, connect.client_id)?;
        options
            .set_keep_alive(Duration::from_secs(u64::from(connect.keepalive.get())))
            .set_clean_session(connect.clean_session)
            .set_last_will(LastWill::new(
                connect.will.topic,
                connect.will.payload,
                QoS::AtLeastOnce,
                true,
            ));
        let Link {
            client,
            incoming,
            go,
        } = crate::link::open(broker, options, window + 16, window + 64);

        let (control, control_rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::channel(EVENT_BUFFER);
        let (stats_tx, stats) = watch::channel((engine.stats(), 0, false));
        let (failure_tx, failure) = watch::channel(None);
        let driver = Driver {
            engine,
            client,
            incoming,
            go,
            control: control_rx,
            events: events_tx,
            stats: stats_tx,
            failure: failure_tx,
            clock,
            sent: VecDeque::new(),
            pkids: HashMap::new(),
            random: seed(),
            events_lost: 0,
        };
        let task = tokio::spawn(driver.run(sensors, handler));
        Ok(Self {
            control,
            events,
            stats,
            failure,
            task,
        })
    }

    /// The next event of the engine (connections, commands run, config applied, drops).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: an event not returned stays for the next call.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// The engine's counters, as of its last step.
    pub fn stats(&self) -> Stats {
        self.stats.borrow().0
    }

    /// Events dropped because nobody read them ([`DeviceClient::next_event`]).
    pub fn events_lost(&self) -> u64 {
        self.stats.borrow().1
    }

    /// Why the last connection attempt failed, while the client retries (with the engine's
    /// backoff): an unreachable broker is [`ErrorKind::Io`](crate::ErrorKind::Io). Cleared
    /// when a connection succeeds.
    pub fn last_failure(&self) -> Option<ConnectionFailure> {
        self.failure.borrow().clone()
    }

    /// Whether the device is connected to the broker, as of the engine's last step.
    pub fn is_connected(&self) -> bool {
        self.stats.borrow().2
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

    /// Says goodbye (a retained `offline` status, then a clean disconnection, which does not
    /// fire the last will) and waits for the client to end, at most 5 s.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: if cancelled after the goodbye was queued, the client still ends but
    /// the result is lost.
    pub async fn shutdown(self) -> Result<(), Error> {
        let control = self.control;
        crate::link::shutdown(
            |done| control.send(Control::Shutdown(done)).is_ok(),
            self.task,
        )
        .await
    }

    /// Waits until the client ends by itself: only when the broker refuses it for good (bad
    /// credentials), as every other failure is retried with backoff.
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

struct Driver {
    engine: Device,
    client: AsyncClient,
    incoming: mpsc::Receiver<Result<rumqttc::Event, ConnectionError>>,
    go: mpsc::Sender<()>,
    control: mpsc::UnboundedReceiver<Control>,
    events: mpsc::Sender<Event>,
    stats: watch::Sender<(Stats, u64, bool)>,
    failure: watch::Sender<Option<ConnectionFailure>>,
    clock: Clock,
    /// Messages given to rumqttc, in order, not yet written (no packet id yet).
    sent: VecDeque<MessageId>,
    /// Messages written, by packet id, waiting for their PUBACK.
    pkids: HashMap<u16, MessageId>,
    random: u64,
    events_lost: u64,
}

impl Driver {
    async fn run(
        mut self,
        mut sensors: impl SensorReader,
        mut handler: impl CommandHandler,
    ) -> Result<(), Error> {
        loop {
            self.flush();
            let wake = self.engine.poll_timeout().map(|at| self.clock.deadline(at));
            tokio::select! {
                message = self.incoming.recv() => match message {
                    None => return Err(Error::Closed),
                    Some(Ok(event)) => self.on_event(event, &mut handler),
                    Some(Err(error)) => self.on_error(error)?,
                },
                () = crate::link::sleep_until(wake) => {
                    self.engine.handle_timeout(self.clock.now(), self.clock.utc(), &mut sensors);
                }
                control = self.control.recv() => match control {
                    Some(Control::Alert(alert)) => self.engine.raise_alert(&alert),
                    Some(Control::Readings(readings)) => self.engine.handle_readings(readings, self.clock.utc()),
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
            // The channel holds more than the engine's in-flight window, so this fails only
            // when the event loop is gone; the message then stays in flight in the engine and
            // is replayed after the next connection.
            if self
                .client
                .try_publish(t.topic, QoS::AtLeastOnce, t.retain, t.payload)
                .is_ok()
            {
                self.sent.push_back(t.id);
            }
        }
        while let Some(event) = self.engine.poll_event() {
            if event == Event::Connect {
                let _ = self.go.try_send(());
            }
            if self.events.try_send(event).is_err() {
                self.events_lost += 1;
            }
        }
        self.stats.send_replace((
            self.engine.stats(),
            self.events_lost,
            self.engine.is_connected(),
        ));
    }

    fn on_event(&mut self, event: rumqttc::Event, handler: &mut impl CommandHandler) {
        match event {
            rumqttc::Event::Incoming(Packet::ConnAck(_)) => {
                self.engine
                    .handle_connected(self.clock.now(), self.clock.utc());
                for filter in self.engine.subscriptions() {
                    let _ = self
                        .client
                        .try_subscribe(filter.to_string(), QoS::AtLeastOnce);
                }
            }
            rumqttc::Event::Incoming(Packet::Publish(p)) => {
                let (now, utc) = (self.clock.now(), self.clock.utc());
                self.engine
                    .handle_message(now, utc, &p.topic, &p.payload, p.retain, handler);
            }
            rumqttc::Event::Outgoing(Outgoing::Publish(pkid)) => {
                if let Some(id) = self.sent.pop_front() {
                    self.pkids.insert(pkid, id);
                }
            }
            rumqttc::Event::Incoming(Packet::PubAck(ack)) => {
                if let Some(id) = self.pkids.remove(&ack.pkid) {
                    self.engine.handle_acked(id);
                }
            }
            _ => {}
        }
    }

    fn on_error(&mut self, error: ConnectionError) -> Result<(), Error> {
        use rumqttc::ConnectReturnCode as Code;
        self.sent.clear();
        self.pkids.clear();
        self.failure
            .send_replace(Some(ConnectionFailure::of(&error)));
        self.random ^= self.random << 13;
        self.random ^= self.random >> 7;
        self.random ^= self.random << 17;
        self.engine
            .handle_disconnected(self.clock.now(), self.random as u32);
        match error {
            // Credentials will not get better by retrying: stop instead of a reconnect storm.
            ConnectionError::ConnectionRefused(
                code @ (Code::BadUserNamePassword | Code::NotAuthorized | Code::BadClientId),
            ) => Err(Error::Refused(code)),
            // A refused handshake (unknown CA, bad certificate) will not get better either.
            ConnectionError::Tls(e) => Err(Error::tls(e.to_string())),
            _ => Ok(()),
        }
    }

    /// The retained `offline` status, then a clean disconnection; waits (at most 2 s) for the
    /// status to be acknowledged.
    async fn goodbye(&mut self) {
        let t = self.engine.disconnect(self.clock.utc());
        if self
            .client
            .try_publish(t.topic, QoS::AtLeastOnce, true, t.payload)
            .is_err()
        {
            return;
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
        let mut written = None;
        while let Ok(Some(Ok(event))) =
            tokio::time::timeout_at(deadline, self.incoming.recv()).await
        {
            match event {
                rumqttc::Event::Outgoing(Outgoing::Publish(pkid))
                    if written.is_none() && self.sent.is_empty() =>
                {
                    written = Some(pkid);
                }
                rumqttc::Event::Outgoing(Outgoing::Publish(_)) => {
                    self.sent.pop_front();
                }
                rumqttc::Event::Incoming(Packet::PubAck(ack)) if Some(ack.pkid) == written => break,
                _ => {}
            }
        }
        let _ = self.client.try_disconnect();
    }
}

/// The engine's monotonic clock (milliseconds since the client started) and UTC.
struct Clock {
    origin: tokio::time::Instant,
}

impl Clock {
    fn new() -> Self {
        Self {
            origin: tokio::time::Instant::now(),
        }
    }

    fn now(&self) -> Instant {
        Instant::from_millis(u64::try_from(self.origin.elapsed().as_millis()).unwrap_or(u64::MAX))
    }

    fn deadline(&self, at: Instant) -> tokio::time::Instant {
        self.origin + Duration::from_millis(at.as_millis())
    }

    /// UTC with the clock's full precision, so that readings taken in the same millisecond
    /// keep distinct timestamps (the backend deduplicates by device and timestamp).
    fn utc(&self) -> Timestamp {
        crate::link::utc_now()
    }
}

/// A seed for the backoff jitter, from the clock (the engine needs uniform bits, not secrets).
fn seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    u64::from(nanos) | 1
}
