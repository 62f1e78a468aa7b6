//! The [`Link`] over rumqttc: a task that polls rumqttc's event loop, and the translation of
//! its events into the driver's.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use dese_backend::Inbound;
use dese_transport::{
    Acknowledgement, BrokerOptions, ConnectionFailure, Error, ErrorKind, Link, LinkEvent, Session,
    Transport, Will,
};
use rumqttc::{
    AsyncClient, ConnectReturnCode, ConnectionError, EventLoop, LastWill, MqttOptions, Outgoing,
    Packet, PubAck, Publish, QoS, StateError,
};
use tokio::sync::mpsc;

/// The rumqttc transport: `DeviceClient<Rumqttc>` and `BackendClient<Rumqttc>`.
#[derive(Debug, Clone, Copy)]
pub struct Rumqttc;

impl Transport for Rumqttc {
    type Link = RumqttcLink;

    fn open(broker: &BrokerOptions, session: Session) -> Result<RumqttcLink, Error> {
        let options = mqtt_options(broker, &session)?;
        let requests = match session.acknowledgement {
            Acknowledgement::OnReceipt => REQUESTS,
            Acknowledgement::Manual { window } => REQUESTS.saturating_add(window),
        };
        Ok(RumqttcLink::spawn(broker, options, requests))
    }
}

/// The rumqttc options of a session: address, packet size, credentials, TLS, keepalive, will.
fn mqtt_options(broker: &BrokerOptions, session: &Session) -> Result<MqttOptions, Error> {
    let mut options = MqttOptions::new(&session.client_id, broker.host.clone(), broker.port);
    options
        .set_max_packet_size(broker.max_incoming_packet_size, broker.max_packet_size)
        .set_keep_alive(session.keepalive)
        .set_clean_session(session.clean_session)
        .set_manual_acks(matches!(
            session.acknowledgement,
            Acknowledgement::Manual { .. }
        ))
        // rumqttc's own in-flight limit, and a slot kept per in-flight message: the engine's
        // window and a margin, so it never waits for room. (At 1,024, the slots took 74 KiB of
        // every client: most of a simulated device's memory.)
        .set_inflight(in_flight(session.in_flight_window));
    if let Some(will) = &session.will {
        options.set_last_will(last_will(will));
    }
    if let Some((user, password)) = &broker.credentials {
        options.set_credentials(user.clone(), password.clone());
    }
    if let Some(files) = broker.tls()? {
        let config = crate::tls::client_config(files)?;
        options.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(config),
        ));
    }
    Ok(options)
}

/// How many requests rumqttc's channel holds at least: far more than the engines' in-flight
/// windows (64 by default) and the subscriptions together. A backend's channel also holds an
/// acknowledgement for each message of its receive window, so that `try_publish` and `try_ack`
/// never find it full.
const REQUESTS: usize = 4096;

/// How many of rumqttc's events wait for the driver. When the driver stops reading (its
/// application is behind) the poll task blocks on this channel and stops reading the socket:
/// the broker keeps the rest.
const INCOMING: usize = 64;

/// The acknowledgements (PUBACKs) the driver has released and rumqttc has not written yet,
/// shared by the link and its poll task.
///
/// rumqttc's event loop takes one request from its channel each time it picks the channel over
/// the socket, and reads up to ten packets from the socket each time it picks the socket: a
/// backend that acknowledges every message through the channel falls ten times behind a burst,
/// until the channel is full and PUBACKs are refused (a broker that then stops at its in-flight
/// limit, as Mosquitto does, sends nothing more). So an acknowledgement goes through the
/// channel only when nothing is ahead of it (that wakes the event loop when it idles); the rest
/// wait here, in arrival order, and the poll task writes them itself before it polls again,
/// once those in the channel are written.
#[derive(Debug, Default)]
struct Acks {
    /// Packet ids to acknowledge, oldest first, behind those in the channel.
    queued: VecDeque<u16>,
    /// Acknowledgements in rumqttc's channel, not written yet (rumqttc reports each it writes
    /// as an `Outgoing::PubAck`).
    in_channel: usize,
}

/// [`Acks`], shared by the link and its poll task.
#[derive(Debug, Clone, Default)]
struct SharedAcks {
    acks: Arc<Mutex<Acks>>,
    /// Notified each time the poll task has taken the waiting ones (or dropped them with a
    /// lost connection).
    taken: Arc<tokio::sync::Notify>,
}

impl SharedAcks {
    fn lock(&self) -> std::sync::MutexGuard<'_, Acks> {
        self.acks.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether no acknowledgement waits in the link: those in rumqttc's channel come before
    /// any request made from now on.
    fn none_waiting(&self) -> bool {
        self.lock().queued.is_empty()
    }
}

/// One rumqttc client and the task that polls its event loop.
///
/// The task polls the event loop and nothing else, so a full request channel can never block
/// it (rumqttc issue 1025). After a failure it waits for the driver's go (the engine's
/// backoff) before polling again, which reconnects.
#[derive(Debug)]
pub struct RumqttcLink {
    client: AsyncClient,
    acks: SharedAcks,
    incoming: mpsc::Receiver<Result<rumqttc::Event, ConnectionError>>,
    go: mpsc::Sender<Next>,
    /// Messages given to rumqttc, in order, not yet written (no packet id yet).
    sent: VecDeque<u64>,
    /// Messages written, by packet id, waiting for their PUBACK.
    pkids: HashMap<u16, u64>,
    /// Filters given to rumqttc, in order, not yet written; then by packet id, waiting for
    /// their SUBACK.
    subscribing: VecDeque<String>,
    subscribed: HashMap<u16, String>,
    /// Counts connections and losses: a received message is named by this and its packet id,
    /// so that an acknowledgement meant for an earlier connection (or released after its
    /// loss) is recognised and dropped.
    generation: u64,
}

impl RumqttcLink {
    fn spawn(broker: &BrokerOptions, options: MqttOptions, requests: usize) -> Self {
        let (client, mut eventloop) = AsyncClient::new(options, requests);
        let mut network = eventloop.network_options();
        // Without it a command round trip on loopback waits for Nagle's algorithm: 40 ms+.
        network.set_tcp_nodelay(broker.tcp_nodelay);
        eventloop.set_network_options(network);
        let (incoming_tx, incoming) = mpsc::channel(INCOMING);
        let (go, go_rx) = mpsc::channel(1);
        let limits = (broker.max_incoming_packet_size, broker.max_packet_size);
        let acks = SharedAcks::default();
        tokio::spawn(poll(eventloop, acks.clone(), incoming_tx, go_rx, limits));
        Self {
            client,
            acks,
            incoming,
            go,
            sent: VecDeque::new(),
            pkids: HashMap::new(),
            subscribing: VecDeque::new(),
            subscribed: HashMap::new(),
            generation: 0,
        }
    }
}

impl Link for RumqttcLink {
    async fn next(&mut self) -> LinkEvent {
        loop {
            // Cancel safe: the only await is the channel's receive.
            let Some(event) = self.incoming.recv().await else {
                return LinkEvent::Closed;
            };
            match event {
                Ok(rumqttc::Event::Incoming(Packet::ConnAck(_))) => {
                    self.generation += 1;
                    return LinkEvent::Connected;
                }
                Ok(rumqttc::Event::Incoming(Packet::Publish(p))) => {
                    return LinkEvent::Message {
                        delivery: Inbound(self.generation << 16 | u64::from(p.pkid)),
                        topic: p.topic,
                        payload: p.payload.to_vec(),
                        retain: p.retain,
                    };
                }
                Ok(rumqttc::Event::Outgoing(Outgoing::Publish(pkid))) => {
                    if let Some(tag) = self.sent.pop_front() {
                        self.pkids.insert(pkid, tag);
                    }
                }
                Ok(rumqttc::Event::Incoming(Packet::PubAck(ack))) => {
                    if let Some(tag) = self.pkids.remove(&ack.pkid) {
                        return LinkEvent::Acked(tag);
                    }
                }
                Ok(rumqttc::Event::Outgoing(Outgoing::Subscribe(pkid))) => {
                    if let Some(filter) = self.subscribing.pop_front() {
                        self.subscribed.insert(pkid, filter);
                    }
                }
                Ok(rumqttc::Event::Incoming(Packet::SubAck(ack))) => {
                    let refused = ack
                        .return_codes
                        .iter()
                        .any(|code| matches!(code, rumqttc::SubscribeReasonCode::Failure));
                    if let (Some(filter), true) = (self.subscribed.remove(&ack.pkid), refused) {
                        return LinkEvent::SubscriptionRefused { filter };
                    }
                }
                Ok(_) => {}
                Err(error) => {
                    // What this connection received can no longer be acknowledged: the
                    // broker delivers it again.
                    self.generation += 1;
                    self.sent.clear();
                    self.pkids.clear();
                    self.subscribing.clear();
                    self.subscribed.clear();
                    return LinkEvent::Lost(failure(error));
                }
            }
        }
    }

    fn connect(&mut self, keepalive: Duration, will: Option<Will>) {
        let _ = self.go.try_send(Next { keepalive, will });
    }

    fn subscribe(&mut self, filters: &[String]) {
        // One filter per SUBSCRIBE, so that a refusal names its filter.
        for filter in filters {
            match self.client.try_subscribe(filter, QoS::AtLeastOnce) {
                Ok(()) => self.subscribing.push_back(filter.clone()),
                // The request channel holds far more than the subscriptions: not expected.
                Err(e) => tracing::error!(
                    filter = %filter,
                    error = %e,
                    "cannot subscribe: rumqttc did not take the request"
                ),
            }
        }
    }

    fn ack(&mut self, delivery: Inbound) {
        let pkid = (delivery.0 & 0xffff) as u16;
        // QoS 0 (packet id 0) needs no acknowledgement; an earlier connection's is void.
        if pkid == 0 || delivery.0 >> 16 != self.generation {
            return;
        }
        // Through rumqttc's channel when nothing is ahead (see `Acks`), else behind the others
        // for the poll task. Either way a PUBACK still waiting when the connection drops is
        // discarded before the next one (see `poll`).
        let mut acks = self.acks.lock();
        if acks.queued.is_empty() && acks.in_channel == 0 {
            let mut publish = Publish::new("", QoS::AtLeastOnce, Vec::new());
            publish.pkid = pkid;
            if self.client.try_ack(&publish).is_ok() {
                acks.in_channel += 1;
                return;
            }
        }
        acks.queued.push_back(pkid);
    }

    fn publish(&mut self, tag: u64, topic: &str, payload: &[u8], retain: bool) -> bool {
        let queued = self
            .client
            .try_publish(topic, QoS::AtLeastOnce, retain, payload.to_vec())
            .is_ok();
        if queued {
            self.sent.push_back(tag);
        }
        queued
    }

    fn reconnect(&mut self) {
        // The broker closes the connection after the DISCONNECT; the poll task reports it.
        let _ = self.client.try_disconnect();
    }

    async fn disconnect(&mut self) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        // The DISCONNECT after the PUBACKs waiting in the link, or the broker would deliver
        // those messages again. Meanwhile the poll task's events are read (and dropped: the
        // driver is leaving), so that it never waits on a full channel instead of writing.
        loop {
            let notified = self.acks.taken.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if self.acks.none_waiting() {
                break;
            }
            tokio::select! {
                () = &mut notified => {}
                event = self.incoming.recv() => match event {
                    Some(Ok(_)) => {}
                    // The connection is gone, and what waited with it.
                    Some(Err(_)) | None => return,
                },
                () = tokio::time::sleep_until(deadline) => break,
            }
        }
        if self.client.try_disconnect().is_err() {
            return;
        }
        // Until the broker closes the connection, which it does once it has read the
        // DISCONNECT (and every PUBACK before it): closed earlier, with the broker's packets
        // unread, the socket would be reset, and a reset throws away what the broker had not
        // read yet. (Seen: the last 13 of 99 PUBACKs written just before the DISCONNECT lost,
        // their messages delivered again to the next session.)
        let closed_by = tokio::time::Instant::now() + Duration::from_secs(1);
        while let Ok(Some(Ok(_))) = tokio::time::timeout_at(closed_by, self.incoming.recv()).await {
        }
    }
}

fn last_will(will: &Will) -> LastWill {
    LastWill::new(
        &will.topic,
        will.payload.clone(),
        QoS::AtLeastOnce,
        will.retain,
    )
}

/// Writes the PUBACKs waiting in [`Acks`], once none is ahead of them in rumqttc's channel,
/// and flushes them; an error means that the connection is broken.
async fn write_acks(eventloop: &mut EventLoop, shared: &SharedAcks) -> Result<(), ConnectionError> {
    let batch: Vec<u16> = {
        let mut acks = shared.lock();
        if acks.in_channel > 0 || acks.queued.is_empty() {
            return Ok(());
        }
        acks.queued.drain(..).collect()
    };
    // Taken: a DISCONNECT requested from now on is written after them.
    shared.taken.notify_waiters();
    // Not connected: void, the broker delivers those messages again.
    let Some(network) = eventloop.network.as_mut() else {
        return Ok(());
    };
    let limit = Duration::from_secs(eventloop.network_options.connection_timeout().max(1));
    let write = async {
        for pkid in batch {
            network.write(Packet::PubAck(PubAck::new(pkid))).await?;
        }
        network.flush().await
    };
    match tokio::time::timeout(limit, write).await {
        Ok(written) => written.map_err(ConnectionError::MqttState),
        Err(_) => Err(ConnectionError::FlushTimeout),
    }
}

/// Whether the link needs to see `event`: the rest (pings, the acknowledgements the client
/// itself writes) would only cost the driver a wake-up per message.
fn wanted(event: &rumqttc::Event) -> bool {
    matches!(
        event,
        rumqttc::Event::Incoming(
            Packet::ConnAck(_) | Packet::Publish(_) | Packet::PubAck(_) | Packet::SubAck(_)
        ) | rumqttc::Event::Outgoing(
            Outgoing::Publish(_) | Outgoing::Subscribe(_) | Outgoing::Disconnect
        )
    )
}

/// The largest remaining length an MQTT 3.1.1 packet can declare (256 MiB).
const MQTT_MAX_PACKET: usize = 268_435_455;

/// rumqttc's in-flight limit for an engine that keeps `window` publishes in flight.
fn in_flight(window: usize) -> u16 {
    u16::try_from(window.saturating_add(8)).unwrap_or(u16::MAX - 1)
}

/// What the next connection uses.
#[derive(Debug)]
struct Next {
    keepalive: Duration,
    will: Option<Will>,
}

impl Next {
    fn apply(self, options: &mut MqttOptions) {
        options.set_keep_alive(self.keepalive);
        if let Some(will) = &self.will {
            options.set_last_will(last_will(will));
        }
    }
}

/// The size of a packet the broker sent that was over the client's limit.
fn oversized(error: &ConnectionError) -> Option<usize> {
    match error {
        ConnectionError::MqttState(StateError::Deserialization(
            rumqttc::mqttbytes::Error::PayloadSizeLimitExceeded(size),
        )) => Some(*size),
        _ => None,
    }
}

/// The shared category of a rumqttc failure, with rumqttc's error as its source.
fn failure(error: ConnectionError) -> ConnectionFailure {
    use ConnectReturnCode as Code;
    if let Some(size) = oversized(&error) {
        return ConnectionFailure::new(
            ErrorKind::Io,
            format!(
                "the broker sent a packet of {size} bytes, over the client's limit: the next \
                 connections take that size, to refuse the message (set the broker's \
                 message_size_limit)"
            ),
        );
    }
    let kind = match &error {
        ConnectionError::ConnectionRefused(
            Code::BadUserNamePassword | Code::NotAuthorized | Code::BadClientId,
        ) => ErrorKind::Auth,
        // An I/O error during the handshake that is not TLS's own (a reset, a timeout) is the
        // network's, retried; every other TLS error is a refusal.
        ConnectionError::Tls(rumqttc::TlsError::Io(io))
            if io
                .get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                .is_none() =>
        {
            ErrorKind::Io
        }
        ConnectionError::Tls(_) => ErrorKind::Tls,
        _ if tls_alert(&error) => ErrorKind::Tls,
        _ => ErrorKind::Io,
    };
    ConnectionFailure::caused_by(kind, error)
}

/// Whether the broker ended the connection with a TLS alert after the handshake. With TLS 1.3
/// a broker checks the client's certificate (a missing one, one it does not trust) once the
/// handshake is over from the client's side, so the refusal arrives as a read error on the
/// first packet, not as a handshake error: it is as final as one.
fn tls_alert(error: &ConnectionError) -> bool {
    let io = match error {
        ConnectionError::Io(e)
        | ConnectionError::MqttState(
            StateError::Io(e) | StateError::Deserialization(rumqttc::mqttbytes::Error::Io(e)),
        ) => e,
        _ => return false,
    };
    io.get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
        .is_some_and(|e| matches!(e, rustls::Error::AlertReceived(_)))
}

/// How long the broker may say nothing on a live connection: 1.5 keepalive periods. rumqttc
/// pings after a keepalive period without traffic, so a working broker answers well within it;
/// rumqttc itself notices an unanswered ping only when the next one is due, two periods after
/// the link went silent. `None` while connecting (the connection timeout applies) or without a
/// keepalive.
fn silence_limit(eventloop: &EventLoop) -> Option<Duration> {
    let keepalive = eventloop.mqtt_options.keep_alive();
    (eventloop.network.is_some() && !keepalive.is_zero()).then(|| keepalive.mul_f64(1.5))
}

/// Polls the event loop; after a failure, waits for the driver's go (with the keepalive and
/// will of the next connection) before polling again, which reconnects.
///
/// A packet over the client's size limit fails the connection before the client reads it, and
/// with a persistent session (or a retained message, at every subscription) the broker
/// delivers it again at once: one such message would stop the client for good. From the next
/// connection on the client therefore accepts packets of that size, rounded up to a power of
/// two (at most MQTT's own limit),
/// so the engine receives the message, refuses it and has it acknowledged: one reconnection per
/// larger size, never a loop.
async fn poll(
    mut eventloop: EventLoop,
    acks: SharedAcks,
    events: mpsc::Sender<Result<rumqttc::Event, ConnectionError>>,
    mut go: mpsc::Receiver<Next>,
    (mut incoming, outgoing): (usize, usize),
) {
    let Some(next) = go.recv().await else {
        return;
    };
    next.apply(&mut eventloop.mqtt_options);
    let mut heard = tokio::time::Instant::now();
    loop {
        let result = if let Err(error) = write_acks(&mut eventloop, &acks).await {
            // Dropping the connection makes the next poll connect again.
            eventloop.network = None;
            Err(error)
        } else {
            match silence_limit(&eventloop) {
                Some(limit) => tokio::select! {
                    // What the broker sent first: the watchdog only when nothing is there.
                    biased;
                    result = eventloop.poll() => result,
                    () = tokio::time::sleep_until(heard + limit) => {
                        // Dropping the connection makes the next poll connect again.
                        eventloop.network = None;
                        Err(ConnectionError::Io(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            format!(
                                "nothing from the broker for {:.1} s, 1.5 keepalive periods: the \
                                 link is silent",
                                limit.as_secs_f64()
                            ),
                        )))
                    }
                },
                None => eventloop.poll().await,
            }
        };
        match &result {
            Ok(rumqttc::Event::Incoming(_)) => heard = tokio::time::Instant::now(),
            Ok(rumqttc::Event::Outgoing(Outgoing::PubAck(_))) => {
                let mut acks = acks.lock();
                acks.in_channel = acks.in_channel.saturating_sub(1);
            }
            _ => {}
        }
        if result.as_ref().is_ok_and(|event| !wanted(event)) {
            continue;
        }
        let raise = result.as_ref().err().and_then(oversized);
        let failed = result.is_err();
        let handing = tokio::time::Instant::now();
        if events.send(result).await.is_err() {
            return;
        }
        // Time spent waiting for the driver (a backend behind its database) is time nothing
        // was read, not the broker's silence.
        heard += handing.elapsed();
        if failed {
            let Some(next) = go.recv().await else {
                return;
            };
            next.apply(&mut eventloop.mqtt_options);
            // The next power of two: the message's neighbours (a longer topic) fit too.
            if let Some(size) = raise {
                incoming = incoming.max(size.next_power_of_two().min(MQTT_MAX_PACKET));
            }
            eventloop
                .mqtt_options
                .set_max_packet_size(incoming, outgoing);
            // Requests made while the link was down (still in rumqttc's channel or pending)
            // would be written after the reconnection, ahead of the driver's replay, and shift
            // the order in which packet ids are matched to messages: a PUBACK would then be
            // credited to the wrong message. Drop rumqttc's copies; the driver replays what
            // was not acknowledged, in order.
            eventloop.clean();
            eventloop.pending.clear();
            // clean() dropped the PUBACKs in rumqttc's channel; those waiting here are void too.
            *acks.lock() = Acks::default();
            acks.taken.notify_waiters();
            // clean() keeps the events the failed connection had queued (an Outgoing::Publish,
            // a PubAck of an old packet id); delivered after the reconnection, a stale PubAck
            // would acknowledge whichever new message reuses that id.
            eventloop.state.events.clear();
        }
    }
}
