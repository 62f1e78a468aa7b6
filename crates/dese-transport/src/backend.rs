//! The backend side: the backend engine driven over any [`Transport`].

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::time::Duration;

use dese_backend::{
    Ack, Backend, Counters, Delivered, DeviceKey, Event, MessageId, Outcome, Presence, SendError,
    Settings,
};
use dese_protocol::{
    Action, CommandId, DeviceConfig, DeviceId, DeviceState, OrgId, Printable, ShareGroup,
};
use tokio::sync::mpsc::error::TrySendError;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tracing::{Instrument, debug, info, trace, warn};

use crate::clock::{Jitter, sleep_until, utc_now};
use crate::device::shutdown;
use crate::error::{ConnectionFailure, Error};
use crate::link::{Acknowledgement, Link, LinkEvent, Session, Transport};
use crate::metrics::{self as meters, BackendMeters, Side};
use crate::options::BrokerOptions;

type Answer = Result<(CommandId, oneshot::Receiver<Outcome>), SendError>;

enum Control {
    Command {
        org: OrgId,
        device: DeviceId,
        action: Action,
        reply: oneshot::Sender<Answer>,
    },
    Config {
        org: OrgId,
        device: DeviceId,
        config: DeviceConfig,
        reply: oneshot::Sender<Result<(), SendError>>,
    },
    Acks(Vec<Ack>),
    Query(Box<dyn FnOnce(&Backend) + Send>),
    Shutdown(oneshot::Sender<()>),
}

#[derive(Debug, Clone, Default)]
struct Status {
    counters: Counters,
    backlog: Backlog,
    connected: bool,
    refused_subscriptions: Vec<String>,
}

/// What the backend holds, as of its last step: all of it bounded by the settings, so that a
/// slow application costs a known amount of memory and the broker keeps the rest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backlog {
    /// Events handed to the application (or waiting for it in the client) that it has not
    /// confirmed: at most [`Settings::receive_window`].
    pub unconfirmed: usize,
    /// Commands, retries and configs waiting for the broker, queued or in flight: at most
    /// [`Settings::outbox_capacity`], and a retry's copy per pending command.
    pub outbox: usize,
}

/// A backend on a real broker: the [`Backend`] engine driven over the transport `T`, in a task
/// of its own.
///
/// It subscribes after every connection (to every organization, the allowed ones, or a
/// shared-subscription group), reconnects when the engine says so (backoff with jitter),
/// publishes what the engine hands out and reports the broker's acknowledgements to it, so
/// that commands and config stay in the engine's outbox until the broker has them.
///
/// **Nothing the broker handed over is lost.** A received message is acknowledged to the broker
/// only once the application has confirmed its events: explicitly ([`BackendClient::next_delivery`]
/// and [`BackendClient::ack`], after a database commit), or by asking for the next event
/// ([`BackendClient::next_event`], for simple consumers). When the application falls behind the
/// client stops reading from the broker, which keeps the rest: no event is ever dropped to
/// make room. (The paho transport differs: its C library acknowledges on receipt; see
/// `dese_paho`.)
pub struct BackendClient<T> {
    handle: BackendHandle,
    events: mpsc::Receiver<Delivered>,
    /// The ack of the last event [`BackendClient::next_event`] returned: given back at the next
    /// call.
    auto: Option<Ack>,
    status: watch::Receiver<Status>,
    failure: watch::Receiver<Option<ConnectionFailure>>,
    task: JoinHandle<Result<(), Error>>,
    transport: PhantomData<fn() -> T>,
}

impl<T: Transport> BackendClient<T> {
    /// Connects as `client_id` and runs the engine; `group` makes the subscriptions shared, so
    /// that several instances split the messages.
    ///
    /// The session is persistent (MQTT clean session off): while the backend reconnects, or is
    /// stopped, the broker keeps the QoS 1 messages of its subscriptions for it (up to its
    /// `max_queued_messages`), and a broker with persistence keeps them across its own
    /// restarts. Reuse the same `client_id` for that.
    pub fn spawn(
        broker: &BrokerOptions,
        client_id: &str,
        settings: Settings,
        group: Option<ShareGroup>,
    ) -> Result<Self, Error> {
        Self::start(broker, client_id, settings, group, false)
    }

    /// Like [`BackendClient::spawn`], with a clean session: the broker forgets the
    /// subscriptions when the client disconnects and queues nothing for it while it is away.
    /// For tools and monitors that come and go (`dese monitor`, `dese send`), which would
    /// otherwise leave a session on the broker, collecting messages, after every run.
    pub fn spawn_ephemeral(
        broker: &BrokerOptions,
        client_id: &str,
        settings: Settings,
        group: Option<ShareGroup>,
    ) -> Result<Self, Error> {
        Self::start(broker, client_id, settings, group, true)
    }

    fn start(
        broker: &BrokerOptions,
        client_id: &str,
        settings: Settings,
        group: Option<ShareGroup>,
        clean_session: bool,
    ) -> Result<Self, Error> {
        settings.check().map_err(Error::Settings)?;
        let window = settings.receive_window.max(1);
        let link = T::open(
            broker,
            Session {
                client_id: client_id.to_string(),
                keepalive: KEEPALIVE,
                clean_session,
                will: None,
                acknowledgement: Acknowledgement::Manual { window },
                in_flight_window: settings.in_flight_window.max(1),
            },
        )?;
        let engine = Backend::new(settings);
        let (control, control_rx) = mpsc::unbounded_channel();
        // As many as the application may hold unconfirmed: the engine stops the reading before
        // the channel could hold more.
        let (events_tx, events) = mpsc::channel(window);
        let (status_tx, status) = watch::channel(Status {
            counters: engine.counters().clone(),
            ..Status::default()
        });
        let (failure_tx, failure) = watch::channel(None);
        let driver = Driver {
            engine,
            link,
            group,
            control: control_rx,
            events: events_tx,
            backlog: VecDeque::new(),
            status: status_tx,
            failure: failure_tx,
            waiting: HashMap::new(),
            jitter: Jitter::new(),
            reported: tokio::time::Instant::now(),
            stale: true,
            meters: BackendMeters::new(),
            counted: None,
            devices_changed: true,
            refused_subscriptions: Vec::new(),
        };
        // At the error level, so that the span (which client) shows with any filter, even
        // `warn`, where an info span would be disabled and its lines anonymous.
        let span = tracing::error_span!(
            "dese_backend",
            client_id = %Printable(client_id),
            broker = %broker.address()
        );
        let task = tokio::spawn(driver.run().instrument(span));
        Ok(Self {
            handle: BackendHandle { control },
            events,
            auto: None,
            status,
            failure,
            task,
            transport: PhantomData,
        })
    }
}

/// The backend's MQTT keepalive.
const KEEPALIVE: Duration = Duration::from_secs(60);

/// Sends commands and config and reads presence, from any task: a cheap clone of the
/// [`BackendClient`]'s control channel ([`BackendClient::handle`]). The event stream stays with
/// the client; a web handler or an alert reactor holds a handle.
///
/// The client's task runs until [`BackendClient::shutdown`], or until the [`BackendClient`] is
/// dropped: without it nobody reads or confirms the events, so the client stops rather than
/// receive what nobody would confirm. A handle then returns [`Error::Closed`].
#[derive(Clone)]
pub struct BackendHandle {
    control: mpsc::UnboundedSender<Control>,
}

impl core::fmt::Debug for BackendHandle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("BackendHandle")
            .field("closed", &self.control.is_closed())
            .finish()
    }
}

impl BackendHandle {
    /// Sends `action` to a device and waits for the outcome: completed, failed, or timed out
    /// (after the engine's timeout and retries, which reuse the command id).
    ///
    /// # Cancel safety
    ///
    /// Cancelling after the command was handed to the engine does not withdraw it: it is still
    /// sent and tracked, and its outcome still appears among the events. A command that times
    /// out is withdrawn: it is never published after its `TimedOut` outcome.
    pub async fn send_command(
        &self,
        org: OrgId,
        device: DeviceId,
        action: Action,
    ) -> Result<(CommandId, Outcome), Error> {
        let pending = self.start_command(org, device, action).await?;
        let id = pending.id().clone();
        Ok((id, pending.outcome().await?))
    }

    /// Sends `action` to a device and returns as soon as the engine has taken it, with its id:
    /// for a caller that answers at once (a web request) and learns the outcome later, from
    /// [`PendingCommand::outcome`] or from the [`Event::Command`] among the events.
    ///
    /// # Cancel safety
    ///
    /// As [`BackendHandle::send_command`]: once handed over, the command is not withdrawn.
    pub async fn start_command(
        &self,
        org: OrgId,
        device: DeviceId,
        action: Action,
    ) -> Result<PendingCommand, Error> {
        let (reply, answer) = oneshot::channel();
        self.control
            .send(Control::Command {
                org,
                device,
                action,
                reply,
            })
            .map_err(|_| Error::Closed)?;
        let (id, outcome) = answer
            .await
            .map_err(|_| Error::Closed)?
            .map_err(Error::Send)?;
        Ok(PendingCommand { id, outcome })
    }

    /// Sends a config message to a device (the protocol does not acknowledge config).
    ///
    /// # Cancel safety
    ///
    /// Cancelling after the config was handed to the engine does not withdraw it: it is still
    /// published.
    pub async fn send_config(
        &self,
        org: OrgId,
        device: DeviceId,
        config: DeviceConfig,
    ) -> Result<(), Error> {
        let (reply, answer) = oneshot::channel();
        self.control
            .send(Control::Config {
                org,
                device,
                config,
                reply,
            })
            .map_err(|_| Error::Closed)?;
        answer
            .await
            .map_err(|_| Error::Closed)?
            .map_err(Error::Send)
    }

    /// Confirms an event of [`BackendClient::next_delivery`]: it is safe, and its message may be
    /// acknowledged to the broker (in arrival order, once every older one may be too).
    pub fn ack(&self, ack: Ack) -> Result<(), Error> {
        self.ack_all([ack])
    }

    /// Confirms several events at once ([`BackendHandle::ack`]), as after a database commit.
    pub fn ack_all(&self, acks: impl IntoIterator<Item = Ack>) -> Result<(), Error> {
        let acks: Vec<Ack> = acks.into_iter().collect();
        if acks.is_empty() {
            return Ok(());
        }
        self.control
            .send(Control::Acks(acks))
            .map_err(|_| Error::Closed)
    }

    /// What the engine knows of a device's presence.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a query only reads.
    pub async fn presence(&self, org: OrgId, device: DeviceId) -> Result<Option<Presence>, Error> {
        self.query(move |backend| backend.presence(&org, &device).cloned())
            .await
    }

    /// Every device the engine has heard of, with its presence.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a query only reads.
    pub async fn devices(&self) -> Result<Vec<(DeviceKey, Presence)>, Error> {
        self.query(|backend| {
            backend
                .devices()
                .map(|(key, presence)| (key.clone(), presence.clone()))
                .collect()
        })
        .await
    }

    /// The engine's counters, now (a query: [`BackendClient::counters`] reads the last ones
    /// published without waiting).
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a query only reads.
    pub async fn counters(&self) -> Result<Counters, Error> {
        self.query(|backend| backend.counters().clone()).await
    }

    async fn query<R: Send + 'static>(
        &self,
        read: impl FnOnce(&Backend) -> R + Send + 'static,
    ) -> Result<R, Error> {
        let (reply, answer) = oneshot::channel();
        let query = Box::new(move |backend: &Backend| {
            let _ = reply.send(read(backend));
        });
        self.control
            .send(Control::Query(query))
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)
    }
}

/// A command the engine has taken ([`BackendHandle::start_command`]), whose outcome is to come.
#[derive(Debug)]
pub struct PendingCommand {
    id: CommandId,
    outcome: oneshot::Receiver<Outcome>,
}

impl PendingCommand {
    /// The command's id, as the device and the events name it.
    pub fn id(&self) -> &CommandId {
        &self.id
    }

    /// Waits for the outcome: completed, failed, or timed out after the engine's timeout and
    /// retries. Dropping this instead does not withdraw the command.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: the outcome is lost if cancelled (it still appears among the events).
    pub async fn outcome(self) -> Result<Outcome, Error> {
        self.outcome.await.map_err(|_| Error::Closed)
    }
}

impl<T> BackendClient<T> {
    /// A handle that sends commands and config and reads presence from another task.
    pub fn handle(&self) -> BackendHandle {
        self.handle.clone()
    }

    /// [`BackendHandle::send_command`].
    ///
    /// # Cancel safety
    ///
    /// As [`BackendHandle::send_command`]: the command is not withdrawn.
    pub async fn send_command(
        &self,
        org: OrgId,
        device: DeviceId,
        action: Action,
    ) -> Result<(CommandId, Outcome), Error> {
        self.handle.send_command(org, device, action).await
    }

    /// [`BackendHandle::send_config`].
    ///
    /// # Cancel safety
    ///
    /// As [`BackendHandle::send_config`]: the config is not withdrawn.
    pub async fn send_config(
        &self,
        org: OrgId,
        device: DeviceId,
        config: DeviceConfig,
    ) -> Result<(), Error> {
        self.handle.send_config(org, device, config).await
    }

    /// [`BackendHandle::presence`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a query only reads.
    pub async fn presence(&self, org: OrgId, device: DeviceId) -> Result<Option<Presence>, Error> {
        self.handle.presence(org, device).await
    }

    /// [`BackendHandle::devices`].
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: a query only reads.
    pub async fn devices(&self) -> Result<Vec<(DeviceKey, Presence)>, Error> {
        self.handle.devices().await
    }

    /// The next event: telemetry, statuses, alerts, command outcomes, duplicates, drops. The
    /// event returned by the previous call is confirmed now (its message acknowledged to the
    /// broker): for consumers that have handled an event by the time they ask for the next.
    /// Use [`BackendClient::next_delivery`] to confirm only after storing.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: an event not returned stays for the next call.
    pub async fn next_event(&mut self) -> Option<Event> {
        let delivered = self.next_delivery().await?;
        self.auto = delivered.ack;
        Some(delivered.event)
    }

    /// The next event, with the [`Ack`] to give back ([`BackendClient::ack`],
    /// [`BackendHandle::ack_all`]) once it is safe. Until then the broker keeps its message and
    /// delivers it again if this client goes away; the client holds at most
    /// [`Settings::receive_window`] unconfirmed events and stops reading from the broker there.
    /// Confirming in any order is fine: the client acknowledges to the broker in arrival order.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: an event not returned stays for the next call.
    pub async fn next_delivery(&mut self) -> Option<Delivered> {
        self.confirm_last_event();
        self.events.recv().await
    }

    /// The next event if one is waiting, without waiting: to fill a batch with what has
    /// arrived ([`BackendClient::next_delivery`] otherwise).
    pub fn try_next_delivery(&mut self) -> Option<Delivered> {
        self.confirm_last_event();
        self.events.try_recv().ok()
    }

    /// Confirms the event [`BackendClient::next_event`] returned last, if it is not yet.
    fn confirm_last_event(&mut self) {
        if let Some(ack) = self.auto.take() {
            let _ = self.handle.ack(ack);
        }
    }

    /// Confirms an event of [`BackendClient::next_delivery`] ([`BackendHandle::ack`]).
    pub fn ack(&self, ack: Ack) -> Result<(), Error> {
        self.handle.ack(ack)
    }

    /// The engine's counters (accepted, dropped by reason, duplicates, commands, connections),
    /// as of its last step.
    pub fn counters(&self) -> Counters {
        self.status.borrow().counters.clone()
    }

    /// What the client holds, as of its last step.
    pub fn backlog(&self) -> Backlog {
        self.status.borrow().backlog
    }

    /// Whether the backend is connected to the broker.
    pub fn is_connected(&self) -> bool {
        self.status.borrow().connected
    }

    /// The filters the broker refused on the current connection (a SUBACK failure, such as an
    /// ACL that denies them): no message on them arrives. Each is also logged as an error and
    /// counted (`dese_backend_subscriptions_refused_total`).
    pub fn refused_subscriptions(&self) -> Vec<String> {
        self.status.borrow().refused_subscriptions.clone()
    }

    /// Why the last connection attempt failed (or the connection was lost), while the client
    /// retries. Cleared when a connection succeeds.
    pub fn last_failure(&self) -> Option<ConnectionFailure> {
        self.failure.borrow().clone()
    }

    /// Disconnects cleanly and waits for the client to end, at most 6 s. The last event of
    /// [`BackendClient::next_event`] is confirmed first (the application asks for no more);
    /// events of [`BackendClient::next_delivery`] not confirmed by then are delivered again by
    /// the broker to the next session.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: if cancelled, the client still ends but the result is lost.
    pub async fn shutdown(mut self) -> Result<(), Error> {
        self.confirm_last_event();
        let control = self.handle.control;
        shutdown(
            |done| control.send(Control::Shutdown(done)).is_ok(),
            self.task,
        )
        .await
    }

    /// Waits until the client ends by itself: only when the broker refuses it for good
    /// (credentials, TLS).
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

/// What woke the driver.
enum Woke {
    Link(LinkEvent),
    /// The channel had room for an event of the backlog.
    Room,
    /// The counters are due to be published.
    Report,
    Timer,
    Control(Option<Control>),
}

struct Driver<L> {
    engine: Backend,
    link: L,
    group: Option<ShareGroup>,
    control: mpsc::UnboundedReceiver<Control>,
    events: mpsc::Sender<Delivered>,
    /// Events taken from the engine that the channel had no room for, oldest first. While it
    /// is not empty the driver reads nothing from the broker, so it holds at most what one
    /// message (or one timer) produced.
    backlog: VecDeque<Delivered>,
    status: watch::Sender<Status>,
    failure: watch::Sender<Option<ConnectionFailure>>,
    /// The callers waiting for their command's outcome, and when each command was handed over.
    waiting: HashMap<CommandId, (oneshot::Sender<Outcome>, tokio::time::Instant)>,
    jitter: Jitter,
    /// When the counters were last published, and whether they changed since.
    reported: tokio::time::Instant,
    stale: bool,
    meters: BackendMeters,
    /// When the devices were last counted for the gauges (a walk over the device table, so at
    /// most every [`COUNT_DEVICES_EVERY`]), and whether the table may have changed since.
    counted: Option<tokio::time::Instant>,
    devices_changed: bool,
    refused_subscriptions: Vec<String>,
}

impl<L: Link> Driver<L> {
    async fn run(mut self) -> Result<(), Error> {
        // The first connection; the engine asks for every later one (Event::Connect).
        debug!("connecting");
        self.link.connect(KEEPALIVE, None);
        loop {
            self.flush();
            if self.events.is_closed() {
                // The client is gone: nobody reads the events, nobody confirms them. Stop
                // before anything else is received, so that the broker keeps it all.
                self.link.disconnect().await;
                return Ok(());
            }
            let reading = self.backlog.is_empty() && self.engine.has_room();
            let wake = self
                .engine
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            let devices_due = self.devices_due();
            let woke = tokio::select! {
                event = self.link.next(), if reading => Woke::Link(event),
                permit = self.events.reserve(), if !self.backlog.is_empty() => {
                    if let (Ok(permit), Some(delivered)) = (permit, self.backlog.pop_front()) {
                        permit.send(delivered);
                    }
                    Woke::Room
                }
                () = sleep_until(wake) => Woke::Timer,
                () = sleep_until(self.stale.then_some(self.reported + REPORT_EVERY)) => Woke::Report,
                () = sleep_until(devices_due) => Woke::Report,
                control = self.control.recv() => Woke::Control(control),
            };
            match woke {
                Woke::Link(event) => self.on_link(event)?,
                Woke::Room => {}
                Woke::Report => self.report(tokio::time::Instant::now()),
                Woke::Timer => {
                    // Pruning and presence timers change the device table too.
                    self.devices_changed = true;
                    self.engine.handle_timeout(std::time::Instant::now());
                }
                Woke::Control(Some(Control::Shutdown(done))) => {
                    self.link.disconnect().await;
                    info!("disconnected: shut down");
                    let _ = done.send(());
                    return Ok(());
                }
                Woke::Control(Some(control)) => self.on_control(control),
                Woke::Control(None) => {
                    self.link.disconnect().await;
                    info!("disconnected: the client was dropped");
                    return Ok(());
                }
            }
        }
    }

    fn on_link(&mut self, event: LinkEvent) -> Result<(), Error> {
        let now = std::time::Instant::now();
        match event {
            LinkEvent::Connected => {
                self.failure.send_replace(None);
                self.engine.handle_connected(now);
                let filters: Vec<String> = self
                    .engine
                    .subscriptions(self.group.as_ref())
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                info!(subscriptions = ?filters, "connected");
                self.refused_subscriptions.clear();
                self.link.subscribe(&filters);
            }
            LinkEvent::SubscriptionRefused { filter } => {
                meters::subscription_refused(Side::Backend, &filter);
                self.refused_subscriptions.push(filter);
                self.stale = true;
            }
            LinkEvent::Message {
                topic,
                payload,
                delivery,
                ..
            } => {
                self.devices_changed = true;
                self.engine.handle_message(now, delivery, &topic, &payload);
            }
            LinkEvent::Acked(tag) => self.engine.handle_acked(MessageId(tag)),
            LinkEvent::Lost(failure) => {
                let was_up = self.engine.is_connected();
                self.engine.handle_disconnected(now, self.jitter.next());
                let done = failure.kind.is_final();
                meters::disconnect(Side::Backend, failure.kind);
                failure.log(was_up, self.engine.reconnect_at().map(|at| at - now));
                self.failure.send_replace(Some(failure.clone()));
                if done {
                    return Err(Error::Connection(failure));
                }
            }
            LinkEvent::Closed => return Err(Error::Closed),
        }
        Ok(())
    }

    fn on_control(&mut self, control: Control) {
        match control {
            Control::Command {
                org,
                device,
                action,
                reply,
            } => {
                let now = std::time::Instant::now();
                let name = action.name().to_string();
                let answer = self
                    .engine
                    .send_command(now, utc_now(), org.clone(), device.clone(), action)
                    .map(|id| {
                        let (tx, rx) = oneshot::channel();
                        debug!(
                            device = %format_args!("{org}/{device}"),
                            command_id = %id,
                            command = %Printable(&name),
                            "command sent"
                        );
                        self.waiting
                            .insert(id.clone(), (tx, tokio::time::Instant::now()));
                        (id, rx)
                    });
                if let Err(e) = &answer {
                    warn!(command = %Printable(&name), error = %e, "command not sent");
                }
                let _ = reply.send(answer);
            }
            Control::Config {
                org,
                device,
                config,
                reply,
            } => {
                let _ = reply.send(self.engine.send_config(utc_now(), org, device, config));
            }
            Control::Acks(acks) => {
                for ack in acks {
                    self.engine.ack(ack);
                }
            }
            Control::Query(query) => query(&self.engine),
            Control::Shutdown(_) => {}
        }
    }

    /// Hands the engine's output on: publishes, acknowledgements to the broker, events (with
    /// command outcomes to their waiters at once, even while the application is behind), and
    /// the counters.
    fn flush(&mut self) {
        while let Some(t) = self.engine.poll_transmit() {
            // A message the client would not take stays in flight in the engine and is
            // published again after the next connection.
            let _ = self.link.publish(t.id.0, &t.topic, &t.payload, t.retain);
        }
        let mut outcomes = Vec::new();
        while let Some(delivered) = self.engine.poll_event() {
            match &delivered.event {
                Event::Connect => {
                    debug!("connecting");
                    self.link.connect(KEEPALIVE, None);
                }
                Event::Command {
                    command_id,
                    outcome,
                    device,
                } => {
                    let waited = self.waiting.remove(command_id);
                    let took = waited.as_ref().map(|(_, since)| since.elapsed());
                    if let (Some(took), false) = (took, matches!(outcome, Outcome::TimedOut { .. }))
                    {
                        self.meters.round_trip(took);
                    }
                    log_outcome(device, command_id, outcome, took);
                    if let Some((waiter, _)) = waited {
                        outcomes.push((waiter, outcome.clone()));
                    }
                }
                Event::Dropped { topic, reason, .. } => {
                    meters::refused(topic, *reason);
                    log_event(&delivered.event);
                }
                event => log_event(event),
            }
            self.backlog.push_back(delivered);
        }
        while let Some(delivered) = self.backlog.pop_front() {
            match self.events.try_send(delivered) {
                Ok(()) => {}
                Err(TrySendError::Full(delivered)) => {
                    self.backlog.push_front(delivered);
                    break;
                }
                // Nobody reads the events any more: the client is gone. Nothing is confirmed
                // for it; the run loop ends.
                Err(TrySendError::Closed(_)) => {
                    self.backlog.clear();
                    break;
                }
            }
        }
        while let Some(delivery) = self.engine.poll_ack() {
            self.link.ack(delivery);
        }
        // Before the outcomes: whoever a command wakes sees counters that include it.
        let now = tokio::time::Instant::now();
        let changed = self.engine.is_connected() != self.status.borrow().connected;
        if changed || !outcomes.is_empty() || now >= self.reported + REPORT_EVERY {
            self.report(now);
        } else {
            self.stale = true;
        }
        for (waiter, outcome) in outcomes {
            let _ = waiter.send(outcome);
        }
    }

    /// Publishes the counters for [`BackendClient::counters`] and [`BackendClient::backlog`]:
    /// at most every [`REPORT_EVERY`] while messages stream (copying the counters for every
    /// message would cost more than handling it), at once when the connection or a command
    /// changed.
    fn report(&mut self, now: tokio::time::Instant) {
        let counters = self.engine.counters().clone();
        let backlog = Backlog {
            unconfirmed: self.engine.unconfirmed(),
            outbox: self.engine.outbox_len(),
        };
        let connected = self.engine.is_connected();
        self.meters.follow(&counters);
        self.meters
            .gauges(connected, backlog, self.refused_subscriptions.len());
        let due = self.counted.map(|at| at + COUNT_DEVICES_EVERY);
        if self.devices_changed && due.is_none_or(|due| now >= due) {
            let online = self
                .engine
                .devices()
                .filter(|(_, presence)| presence.state == DeviceState::Online)
                .count();
            self.meters.devices(online, self.engine.tracked_devices());
            self.counted = Some(now);
            self.devices_changed = false;
        }
        self.status.send_replace(Status {
            counters,
            backlog,
            connected,
            refused_subscriptions: self.refused_subscriptions.clone(),
        });
        self.reported = now;
        self.stale = false;
    }
}

impl<L> Driver<L> {
    /// When the device gauges are next due to be brought up to date: `None` when the table has
    /// not changed since they were.
    fn devices_due(&self) -> Option<tokio::time::Instant> {
        if !self.devices_changed {
            return None;
        }
        Some(
            self.counted
                .map_or_else(tokio::time::Instant::now, |at| at + COUNT_DEVICES_EVERY),
        )
    }
}

/// How often the devices online are counted for `dese_backend_devices_online`.
const COUNT_DEVICES_EVERY: Duration = Duration::from_secs(1);

/// A command's end, at the level it deserves.
fn log_outcome(device: &DeviceKey, id: &CommandId, outcome: &Outcome, took: Option<Duration>) {
    // Ids are checked when parsed: nothing in them needs escaping.
    let device = device.to_string();
    let took_ms = took.map(|t| t.as_secs_f64() * 1e3);
    match outcome {
        Outcome::Completed(_) => debug!(%device, command_id = %id, took_ms, "command completed"),
        Outcome::Failed(response) => warn!(
            %device,
            command_id = %id,
            took_ms,
            error = %Printable(response.error.as_deref().unwrap_or("no reason given")),
            "command failed"
        ),
        Outcome::TimedOut { attempts } => {
            warn!(%device, command_id = %id, attempts, "command timed out")
        }
    }
}

/// The other events of the engine: refusals and surprises at debug or warn, the stream at trace.
fn log_event(event: &Event) {
    match event {
        Event::Dropped {
            topic,
            reason,
            error,
        } => {
            debug!(
                topic = %Printable(topic),
                reason = reason.as_str(),
                path = error.invalid().map(|invalid| invalid.path.as_str()),
                error = %Printable(&error.to_string()),
                "message refused"
            );
        }
        Event::Duplicate { device, kind } => {
            trace!(device = %device, kind = kind.as_str(), "duplicate")
        }
        Event::CommandRetried {
            device,
            command_id,
            attempt,
        } => info!(
            device = %device,
            command_id = %command_id,
            attempt,
            "command timed out; sent again"
        ),
        Event::LateResponse { device, response } => warn!(
            device = %device,
            command_id = %response.command_id,
            "response after the command timed out (the device ran it)"
        ),
        Event::UnknownResponse { device, response } => warn!(
            device = %device,
            command_id = %Printable(response.command_id.as_str()),
            "response to a command this instance does not know"
        ),
        Event::PresenceChanged { device, from, to } => debug!(
            device = %device,
            from = from.map(|f| f.as_str()),
            to = to.as_str(),
            "presence"
        ),
        _ => trace!(event = ?event, "event"),
    }
}

/// How stale [`BackendClient::counters`] may be while messages stream.
const REPORT_EVERY: Duration = Duration::from_millis(5);
