//! The backend side: the backend engine driven over rumqttc.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use dese_backend::{Backend, Counters, Event, Outcome, Outgoing, Presence, SendError, Settings};
use dese_protocol::{Action, CommandId, DeviceConfig, DeviceId, OrgId, ShareGroup};
use rumqttc::{AsyncClient, ConnectionError, Outgoing as MqttOutgoing, Packet, QoS};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::link::Link;
use crate::options::BrokerOptions;

const EVENT_BUFFER: usize = 4096;

enum Control {
    Command {
        org: OrgId,
        device: DeviceId,
        action: Action,
        reply: oneshot::Sender<Result<(CommandId, oneshot::Receiver<Outcome>), SendError>>,
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

/// A backend on a real broker: the [`Backend`] engine driven over rumqttc.
///
/// Like [`DeviceClient`](crate::DeviceClient), one task polls rumqttc's event loop and another
/// owns the engine. It subscribes after every connection (to every organization, the allowed
/// ones, or a shared-subscription group), and keeps what it publishes (commands, retries,
/// config) until the broker acknowledges it, publishing again after a reconnection what was
/// not acknowledged.
pub struct BackendClient {
    control: mpsc::UnboundedSender<Control>,
    events: mpsc::Receiver<Event>,
    counters: watch::Receiver<(Counters, u64)>,
    task: JoinHandle<Result<(), Error>>,
}

impl BackendClient {
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
        let mut options = crate::link::mqtt_options(broker, client_id)?;
        options
            .set_keep_alive(Duration::from_secs(60))
            .set_clean_session(false);
        let Link {
            client,
            incoming,
            go,
        } = crate::link::open(broker, options, 1024, 1024);
        let _ = go.try_send(());

        let engine = Backend::new(settings);
        let (control, control_rx) = mpsc::unbounded_channel();
        let (events_tx, events) = mpsc::channel(EVENT_BUFFER);
        let (counters_tx, counters) = watch::channel((engine.counters().clone(), 0));
        let driver = Driver {
            engine,
            client,
            group,
            incoming,
            go,
            control: control_rx,
            events: events_tx,
            counters: counters_tx,
            waiting: HashMap::new(),
            outbox: VecDeque::new(),
            sent: VecDeque::new(),
            pkids: HashMap::new(),
            connected: false,
            attempt: 0,
            events_lost: 0,
        };
        let task = tokio::spawn(driver.run());
        Ok(Self {
            control,
            events,
            counters,
            task,
        })
    }

    /// Sends `action` to a device and waits for the outcome: completed, failed, or timed out
    /// (after the engine's timeout and retries).
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
        let (reply, answer) = oneshot::channel();
        let query = Box::new(move |backend: &Backend| {
            let _ = reply.send(backend.presence(&org, &device).cloned());
        });
        self.control
            .send(Control::Query(query))
            .map_err(|_| Error::Closed)?;
        answer.await.map_err(|_| Error::Closed)
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
        self.counters.borrow().0.clone()
    }

    /// Events dropped because nobody read them.
    pub fn events_lost(&self) -> u64 {
        self.counters.borrow().1
    }

    /// Disconnects cleanly and waits for the client to end, at most 5 s.
    ///
    /// # Cancel safety
    ///
    /// Not cancel safe: if cancelled, the client still ends but the result is lost.
    pub async fn shutdown(self) -> Result<(), Error> {
        let control = self.control;
        crate::link::shutdown(
            |done| control.send(Control::Shutdown(done)).is_ok(),
            self.task,
        )
        .await
    }
}

struct Driver {
    engine: Backend,
    client: AsyncClient,
    group: Option<ShareGroup>,
    incoming: mpsc::Receiver<Result<rumqttc::Event, ConnectionError>>,
    go: mpsc::Sender<()>,
    control: mpsc::UnboundedReceiver<Control>,
    events: mpsc::Sender<Event>,
    counters: watch::Sender<(Counters, u64)>,
    waiting: HashMap<CommandId, oneshot::Sender<Outcome>>,
    /// Published, not yet acknowledged, oldest first: sent again after a reconnection.
    outbox: VecDeque<(u64, Outgoing)>,
    /// Messages handed to rumqttc, not yet written.
    sent: VecDeque<u64>,
    pkids: HashMap<u16, u64>,
    connected: bool,
    attempt: u32,
    events_lost: u64,
}

impl Driver {
    async fn run(mut self) -> Result<(), Error> {
        let mut next_id = 0u64;
        let mut reconnect_at: Option<tokio::time::Instant> = None;
        loop {
            while let Some(out) = self.engine.poll_transmit() {
                next_id += 1;
                self.publish(next_id, out);
            }
            self.drain_events();
            let wake = self
                .engine
                .poll_timeout()
                .map(tokio::time::Instant::from_std);
            tokio::select! {
                message = self.incoming.recv() => match message {
                    None => return Err(Error::Closed),
                    Some(Ok(event)) => self.on_event(event),
                    Some(Err(error)) => {
                        use rumqttc::ConnectReturnCode as Code;
                        if let ConnectionError::ConnectionRefused(code @ (Code::BadUserNamePassword | Code::NotAuthorized | Code::BadClientId)) = error {
                            return Err(Error::Refused(code));
                        }
                        if let ConnectionError::Tls(e) = error {
                            return Err(Error::tls(e.to_string()));
                        }
                        self.connected = false;
                        self.sent.clear();
                        self.pkids.clear();
                        let backoff = dese_device::Backoff::DEFAULT;
                        let delay = backoff.delay(self.attempt, jitter());
                        self.attempt = self.attempt.saturating_add(1);
                        reconnect_at = Some(tokio::time::Instant::now() + delay);
                    }
                },
                () = crate::link::sleep_until(reconnect_at) => {
                    reconnect_at = None;
                    let _ = self.go.try_send(());
                }
                () = crate::link::sleep_until(wake) => {
                    self.engine.handle_timeout(std::time::Instant::now());
                }
                control = self.control.recv() => match control {
                    Some(Control::Command { org, device, action, reply }) => {
                        match self.engine.send_command(std::time::Instant::now(), crate::link::utc_now(), org, device, action) {
                            Ok((id, out)) => {
                                let (tx, rx) = oneshot::channel();
                                self.waiting.insert(id.clone(), tx);
                                next_id += 1;
                                self.publish(next_id, out);
                                let _ = reply.send(Ok((id, rx)));
                            }
                            Err(error) => {
                                let _ = reply.send(Err(error));
                            }
                        }
                    }
                    Some(Control::Config { org, device, config, reply }) => {
                        match self.engine.config_message(crate::link::utc_now(), org, device, config) {
                            Ok(out) => {
                                next_id += 1;
                                self.publish(next_id, out);
                                let _ = reply.send(Ok(()));
                            }
                            Err(error) => {
                                let _ = reply.send(Err(error));
                            }
                        }
                    }
                    Some(Control::Query(query)) => query(&self.engine),
                    Some(Control::Shutdown(done)) => {
                        let _ = self.client.try_disconnect();
                        let _ = done.send(());
                        return Ok(());
                    }
                    None => {
                        let _ = self.client.try_disconnect();
                        return Ok(());
                    }
                },
            }
        }
    }

    fn publish(&mut self, id: u64, out: Outgoing) {
        if self.connected
            && self
                .client
                .try_publish(
                    out.topic.clone(),
                    QoS::AtLeastOnce,
                    out.retain,
                    out.payload.clone(),
                )
                .is_ok()
        {
            self.sent.push_back(id);
        }
        self.outbox.push_back((id, out));
    }

    fn on_event(&mut self, event: rumqttc::Event) {
        match event {
            rumqttc::Event::Incoming(Packet::ConnAck(_)) => {
                self.connected = true;
                self.attempt = 0;
                for filter in self.engine.subscriptions(self.group.as_ref()) {
                    let _ = self
                        .client
                        .try_subscribe(filter.to_string(), QoS::AtLeastOnce);
                }
                // What the broker never acknowledged goes out again, in order.
                for (id, out) in self.outbox.clone() {
                    if self
                        .client
                        .try_publish(out.topic, QoS::AtLeastOnce, out.retain, out.payload)
                        .is_ok()
                    {
                        self.sent.push_back(id);
                    }
                }
            }
            rumqttc::Event::Incoming(Packet::Publish(p)) => {
                self.engine
                    .handle_message(std::time::Instant::now(), &p.topic, &p.payload);
            }
            rumqttc::Event::Outgoing(MqttOutgoing::Publish(pkid)) => {
                if let Some(id) = self.sent.pop_front() {
                    self.pkids.insert(pkid, id);
                }
            }
            rumqttc::Event::Incoming(Packet::PubAck(ack)) => {
                if let Some(id) = self.pkids.remove(&ack.pkid) {
                    self.outbox.retain(|(queued, _)| *queued != id);
                }
            }
            _ => {}
        }
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
        self.counters
            .send_replace((self.engine.counters().clone(), self.events_lost));
    }
}

fn jitter() -> u32 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos())
}
