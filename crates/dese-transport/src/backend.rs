//! The backend side: the backend engine driven over any [`Transport`].

use std::collections::{HashMap, VecDeque};
use std::marker::PhantomData;
use std::time::Duration;

use dese_backend::{
    Backend, Counters, DeviceKey, Event, Outcome, Outgoing, Presence, SendError, Settings,
};
use dese_device::Backoff;
use dese_protocol::{Action, CommandId, DeviceConfig, DeviceId, OrgId, ShareGroup};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::clock::{Jitter, sleep_until, utc_now};
use crate::device::shutdown;
use crate::error::{ConnectionFailure, Error};
use crate::link::{Link, LinkEvent, Session, Transport};
use crate::options::BrokerOptions;

/// How many events wait for [`BackendClient::next_event`] before new ones are dropped (and
/// counted in [`BackendClient::events_lost`]).
const EVENT_BUFFER: usize = 4096;

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
        reply: oneshot::Sender<Result<(), dese_protocol::EncodeError>>,
    },
    Query(Box<dyn FnOnce(&Backend) + Send>),
    Shutdown(oneshot::Sender<()>),
}

#[derive(Debug, Clone, Default)]
struct Status {
    counters: Counters,
    events_lost: u64,
    connected: bool,
}

/// A backend on a real broker: the [`Backend`] engine driven over the transport `T`, in a task
/// of its own.
///
/// It subscribes after every connection (to every organization, the allowed ones, or a
/// shared-subscription group), reconnects with backoff and jitter, and keeps what it publishes
/// (commands, retries, config) until the broker acknowledges it, publishing again after a
/// reconnection what was not acknowledged.
pub struct BackendClient<T> {
    handle: BackendHandle,
    events: mpsc::Receiver<Event>,
    status: watch::Receiver<Status>,
    failure: watch::Receiver<Option<ConnectionFailure>>,
    task: JoinHandle<Result<(), Error>>,
    transport: PhantomData<fn() -> T>,
}

impl<T: Transport> BackendClient<T> {
    /// Connects as `client_id` and runs the engine; `group` makes the subscriptions shared, so
    /// that several instances split the messages.
    ///
    /// The session is persistent (MQTT clean session off): while the backend reconnects, the
    /// broker keeps the QoS 1 messages of its subscriptions for it, and a broker with
    /// persistence keeps them across its own restarts. Reuse the same `client_id` for that.
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
        let mut link = T::open(
            broker,
            Session {
                client_id: client_id.to_string(),
                keepalive: KEEPALIVE,
                clean_session,
                will: None,
            },
        )?;
        link.connect(KEEPALIVE, None);
        let engine = Backend::new(settings);
        let (control, control_rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::channel(EVENT_BUFFER);
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
            status: status_tx,
            failure: failure_tx,
            waiting: HashMap::new(),
            outbox: VecDeque::new(),
            next_tag: 0,
            connected: false,
            attempt: 0,
            jitter: Jitter::new(),
            events_lost: 0,
        };
        let task = tokio::spawn(driver.run());
        Ok(Self {
            handle: BackendHandle { control },
            events,
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
/// The client's task runs while the client or any handle exists, until
/// [`BackendClient::shutdown`].
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
    /// sent and tracked, and its outcome still appears among the events.
    pub async fn send_command(
        &self,
        org: OrgId,
        device: DeviceId,
        action: Action,
    ) -> Result<(CommandId, Outcome), Error> {
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
        let outcome = outcome.await.map_err(|_| Error::Closed)?;
        Ok((id, outcome))
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
            .map_err(|e| Error::Send(SendError::Encode(e)))
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

    /// The next event: telemetry, statuses, alerts, command outcomes, duplicates, drops.
    ///
    /// # Cancel safety
    ///
    /// Cancel safe: an event not returned stays for the next call.
    pub async fn next_event(&mut self) -> Option<Event> {
        self.events.recv().await
    }

    /// The engine's counters (accepted, dropped by reason, duplicates, commands), as of its
    /// last step.
    pub fn counters(&self) -> Counters {
        self.status.borrow().counters.clone()
    }

    /// Events dropped because nobody read them.
    pub fn events_lost(&self) -> u64 {
        self.status.borrow().events_lost
    }

    /// Whether the backend is connected to the broker.
    pub fn is_connected(&self) -> bool {
        self.status.borrow().connected
    }

    /// Why the last connection attempt failed (or the connection was lost), while the client
    /// retries. Cleared when a connection succeeds.
    pub fn last_failure(&self) -> Option<ConnectionFailure> {
        self.failure.borrow().clone()
    }

    /// Disconnects cleanly and waits for the client to end, at most 6 s.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: if cancelled, the client still ends but the result is lost.
    pub async fn shutdown(self) -> Result<(), Error> {
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

struct Driver<L> {
    engine: Backend,
    link: L,
    group: Option<ShareGroup>,
    control: mpsc::UnboundedReceiver<Control>,
    events: mpsc::Sender<Event>,
    status: watch::Sender<Status>,
    failure: watch::Sender<Option<ConnectionFailure>>,
    waiting: HashMap<CommandId, oneshot::Sender<Outcome>>,
    /// Published, not yet acknowledged, oldest first: published again after a reconnection.
    outbox: VecDeque<(u64, Outgoing)>,
    next_tag: u64,
    connected: bool,
    attempt: u32,
    jitter: Jitter,
    events_lost: u64,
}

impl<L: Link> Driver<L> {
    async fn run(mut self) -> Result<(), Error> {
        let mut reconnect_at: Option<tokio::time::Instant> = None;
        loop {
            while let Some(out) = self.engine.poll_transmit() {
                self.publish(out);
            }
            self.drain_events();
            let wake = self
                .engine
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            tokio::select! {
                event = self.link.next() => match event {
                    LinkEvent::Connected => {
                        self.connected = true;
                        self.attempt = 0;
                        self.failure.send_replace(None);
                        let filters: Vec<String> = self
                            .engine
                            .subscriptions(self.group.as_ref())
                            .iter()
                            .map(ToString::to_string)
                            .collect();
                        self.link.subscribe(&filters);
                        // What the broker never acknowledged goes out again, in order.
                        for (tag, out) in &self.outbox {
                            self.link.publish(*tag, &out.topic, &out.payload, out.retain);
                        }
                    }
                    LinkEvent::Message { topic, payload, .. } => {
                        self.engine.handle_message(std::time::Instant::now(), &topic, &payload);
                    }
                    LinkEvent::Acked(tag) => self.outbox.retain(|(queued, _)| *queued != tag),
                    LinkEvent::Lost(failure) => {
                        self.connected = false;
                        if failure.kind.is_final() {
                            self.failure.send_replace(Some(failure.clone()));
                            return Err(Error::Connection(failure));
                        }
                        self.failure.send_replace(Some(failure));
                        let delay = Backoff::DEFAULT.delay(self.attempt, self.jitter.next());
                        self.attempt = self.attempt.saturating_add(1);
                        reconnect_at = Some(tokio::time::Instant::now() + delay);
                    }
                    LinkEvent::Closed => return Err(Error::Closed),
                },
                () = sleep_until(reconnect_at) => {
                    reconnect_at = None;
                    self.link.connect(KEEPALIVE, None);
                }
                () = sleep_until(wake) => {
                    self.engine.handle_timeout(std::time::Instant::now());
                }
                control = self.control.recv() => match control {
                    Some(Control::Command { org, device, action, reply }) => {
                        let sent = self.engine.send_command(std::time::Instant::now(), utc_now(), org, device, action);
                        match sent {
                            Ok((id, out)) => {
                                let (tx, rx) = oneshot::channel();
                                self.waiting.insert(id.clone(), tx);
                                self.publish(out);
                                let _ = reply.send(Ok((id, rx)));
                            }
                            Err(error) => {
                                let _ = reply.send(Err(error));
                            }
                        }
                    }
                    Some(Control::Config { org, device, config, reply }) => {
                        match self.engine.config_message(utc_now(), org, device, config) {
                            Ok(out) => {
                                self.publish(out);
                                let _ = reply.send(Ok(()));
                            }
                            Err(error) => {
                                let _ = reply.send(Err(error));
                            }
                        }
                    }
                    Some(Control::Query(query)) => query(&self.engine),
                    Some(Control::Shutdown(done)) => {
                        self.link.disconnect().await;
                        let _ = done.send(());
                        return Ok(());
                    }
                    None => {
                        self.link.disconnect().await;
                        return Ok(());
                    }
                },
            }
        }
    }

    fn publish(&mut self, out: Outgoing) {
        self.next_tag += 1;
        if self.connected {
            self.link
                .publish(self.next_tag, &out.topic, &out.payload, out.retain);
        }
        self.outbox.push_back((self.next_tag, out));
    }

    fn drain_events(&mut self) {
        while let Some(event) = self.engine.poll_event() {
            if let Event::Command {
                command_id,
                outcome,
                ..
            } = &event
            {
                if let Some(waiter) = self.waiting.remove(command_id) {
                    let _ = waiter.send(outcome.clone());
                }
            }
            if self.events.try_send(event).is_err() {
                self.events_lost += 1;
            }
        }
        self.status.send_replace(Status {
            counters: self.engine.counters().clone(),
            events_lost: self.events_lost,
            connected: self.connected,
        });
    }
}
