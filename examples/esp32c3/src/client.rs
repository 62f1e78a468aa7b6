//! The device's MQTT loop: the engine from dese-device driven over one TCP connection with the
//! MQTT 3.1.1 packets of [`crate::mqtt`].
//!
//! Written once against two small traits, [`Network`] (open a connection) and [`Clock`]
//! (monotonic time, UTC, randomness, sleeping): the firmware implements them with embassy-net
//! and esp-hal, the host tests with tokio, so the loop that runs on the chip is the loop the
//! tests run against Mosquitto.

use alloc::collections::BTreeMap;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::future::Future;
use core::time::Duration;

use dese_device::{ConnectOptions, Device, Event, Instant, MessageId, Transmit};
use dese_protocol::Timestamp;
use embassy_futures::select::{Either3, select, select3};
use embedded_io_async::{Read, Write};

use crate::mqtt::{
    self, Connect, ConnectReturn, DecodeError, Frame, Incoming, PacketId, Will, encode_connect,
    encode_disconnect, encode_pingreq, encode_puback, encode_publish, encode_subscribe,
};
use crate::station::Application;
use crate::store::{Store, Volatile};

/// Opens connections to the broker.
#[allow(async_fn_in_trait)] // implemented and called within one executor
pub trait Network {
    /// An open connection.
    type Connection<'a>: Read + Write
    where
        Self: 'a;
    /// Why a connection could not be opened.
    type Error: fmt::Debug;

    /// Resolves the broker and opens a TCP connection (bounded by the implementation's own
    /// timeout).
    async fn connect(&mut self) -> Result<Self::Connection<'_>, Self::Error>;
}

/// Time and randomness.
#[allow(async_fn_in_trait)]
pub trait Clock {
    /// The monotonic clock.
    fn now(&self) -> Instant;
    /// The wall clock, for message timestamps.
    fn utc(&self) -> Timestamp;
    /// A uniformly random number, for the reconnection jitter.
    fn random(&mut self) -> u32;
    /// Returns at `at` on the monotonic clock (at once if it has passed).
    async fn sleep_until(&self, at: Instant);
}

/// A hardware watchdog the loop feeds: if the loop stops turning (a hang, a panic), the
/// watchdog resets the chip.
pub trait Watchdog {
    /// Restarts the watchdog's countdown.
    fn feed(&mut self);
}

/// What the loop needs besides the engine's own connect options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MqttOptions<'a> {
    /// User name, when the broker asks for one.
    pub username: Option<&'a str>,
    /// Password.
    pub password: Option<&'a str>,
    /// The largest packet kept from the broker; larger PUBLISHes are acknowledged, counted and
    /// discarded. Commands and config are far smaller than the default 4 KiB.
    pub max_incoming: usize,
    /// How long opening the connection may take: DNS, TCP, and the TLS handshake over TLS.
    pub connect_timeout: Duration,
    /// How long the broker has to answer CONNECT.
    pub connack_timeout: Duration,
    /// How long a goodbye may take: delivering the outbox, then the `offline` status.
    pub goodbye_timeout: Duration,
}

impl Default for MqttOptions<'_> {
    fn default() -> Self {
        Self {
            username: None,
            password: None,
            max_incoming: 4096,
            connect_timeout: Duration::from_secs(20),
            connack_timeout: Duration::from_secs(10),
            goodbye_timeout: Duration::from_secs(2),
        }
    }
}

/// Why a connection ended or never came up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkError {
    /// The connection could not be opened (DNS, refused, a TLS handshake that failed), or not
    /// within [`MqttOptions::connect_timeout`].
    Connect(String),
    /// The broker refused CONNECT.
    Refused(ConnectReturn),
    /// The broker did not answer CONNECT in time.
    ConnAckTimeout,
    /// The broker closed the connection.
    Closed,
    /// Reading or writing failed.
    Io(String),
    /// The broker sent bytes that are not an acceptable packet.
    Protocol(DecodeError),
    /// The broker did not answer a PINGREQ in time.
    PingTimeout,
}

impl fmt::Display for LinkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Connect(e) => write!(f, "cannot reach the broker: {e}"),
            Self::Refused(code) => write!(f, "the broker refused the connection: {code}"),
            Self::ConnAckTimeout => f.write_str("the broker did not answer CONNECT in time"),
            Self::Closed => f.write_str("the broker closed the connection"),
            Self::Io(e) => write!(f, "connection failed: {e}"),
            Self::Protocol(e) => write!(f, "protocol error from the broker: {e}"),
            Self::PingTimeout => f.write_str("the broker did not answer a ping in time"),
        }
    }
}

/// What the loop tells the application's log.
#[derive(Debug, Clone, PartialEq)]
pub enum Report {
    /// Opening a connection.
    Connecting,
    /// The broker accepted the connection; the `online` status goes first.
    Connected,
    /// A connection ended or could not be opened; the engine's backoff paces the next attempt.
    Disconnected(LinkError),
    /// The broker refused some of the subscriptions: commands or config will not arrive.
    SubscriptionRefused {
        /// How many of the two.
        refused: usize,
    },
    /// A PUBLISH larger than [`MqttOptions::max_incoming`] was acknowledged and discarded.
    Oversized {
        /// Its topic.
        topic: String,
        /// Its size.
        len: usize,
    },
    /// The engine reported something.
    Engine(Event),
    /// A change to the reboot-safe state could not be saved: it holds in RAM, and is lost if
    /// the power goes before the message it concerns is delivered.
    NotSaved {
        /// Why, from the store.
        error: String,
    },
    /// Stopped: the `offline` status was delivered (or the goodbye timed out) and the
    /// connection closed.
    Stopped,
}

/// Counters of the connection, beside the engine's [`Stats`](dese_device::Stats).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkStats {
    /// Connections the broker accepted.
    pub connections: u64,
    /// Attempts that failed: TCP, refused, no CONNACK.
    pub failed_attempts: u64,
    /// Accepted connections that were lost.
    pub lost: u64,
    /// Oversized PUBLISHes discarded.
    pub oversized: u64,
    /// PUBLISHes received.
    pub received: u64,
    /// Changes to the reboot-safe state the store could not save.
    pub unsaved: u64,
}

/// The loop's state: options, counters, the store of the engine's reboot-safe state, and the
/// watchdog it feeds.
pub struct Client<'o, S = Volatile> {
    options: MqttOptions<'o>,
    stats: LinkStats,
    store: S,
    watchdog: Option<(&'o mut (dyn Watchdog + Send + Sync), Duration)>,
}

impl<S: fmt::Debug> fmt::Debug for Client<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("options", &self.options)
            .field("stats", &self.stats)
            .field("store", &self.store)
            .field("feeds_watchdog_every", &self.watchdog.as_ref().map(|w| w.1))
            .finish()
    }
}

enum End {
    Stopped,
    Lost(LinkError),
}

/// Bytes read and not yet decoded.
struct Inbox {
    buf: Vec<u8>,
    filled: usize,
    /// Bytes still to skip of an oversized packet.
    discarding: usize,
}

impl Inbox {
    fn consume(&mut self, n: usize) {
        self.buf.copy_within(n..self.filled, 0);
        self.filled -= n;
    }
}

impl<'o> Client<'o> {
    /// A loop with these options, keeping the engine's state in RAM only.
    pub fn new(options: MqttOptions<'o>) -> Self {
        Self::with_store(options, Volatile)
    }
}

impl<'o, S: Store> Client<'o, S> {
    /// A loop with these options that writes every change the engine reports
    /// ([`Device::poll_persist`], with [`Settings::persist`](dese_device::Settings::persist)
    /// on) to `store` before it sends what the change concerns: a message before its PUBLISH,
    /// a command's answer before the command's PUBACK.
    pub fn with_store(options: MqttOptions<'o>, store: S) -> Self {
        Self {
            options,
            stats: LinkStats::default(),
            store,
            watchdog: None,
        }
    }

    /// Feeds `watchdog` on every turn of the loop, and wakes at least every `period` to do so
    /// (while waiting for the broker, for the next reading, for the backoff): give the
    /// watchdog a timeout of a few periods. The longest the loop goes without a turn is one
    /// connection attempt: [`MqttOptions::connect_timeout`], then
    /// [`MqttOptions::connack_timeout`].
    #[must_use]
    pub fn with_watchdog(
        mut self,
        watchdog: &'o mut (dyn Watchdog + Send + Sync),
        period: Duration,
    ) -> Self {
        self.watchdog = Some((watchdog, period.max(Duration::from_millis(10))));
        self
    }

    /// The store back.
    pub fn into_store(self) -> S {
        self.store
    }

    /// The connection counters.
    pub fn stats(&self) -> LinkStats {
        self.stats
    }

    /// Runs the device until `stop` completes; then, within [`MqttOptions::goodbye_timeout`],
    /// delivers what the outbox holds, publishes the `offline` status and disconnects (see
    /// `goodbye` for a broker that does not acknowledge in time).
    ///
    /// Connection attempts follow the engine's [`Event::Connect`], so failures back off as the
    /// engine's policy says; a refused CONNECT is not retried any faster than a lost link.
    /// Cancel safety: dropping the future drops the connection without a goodbye (the broker
    /// then publishes the last will); the engine stays consistent and can be run again.
    pub async fn run<N, C, A, F>(
        &mut self,
        device: &mut Device,
        app: &mut A,
        net: &mut N,
        clock: &mut C,
        stop: &mut F,
        report: &mut impl FnMut(Report),
    ) where
        N: Network,
        C: Clock,
        A: Application,
        F: Future<Output = ()> + Unpin,
    {
        loop {
            let feed_by = self.feed(clock);
            let (connect, app_wake) = service(device, app, clock, report);
            // Saved before anything else: a connection attempt can take a while.
            self.persist(device, report).await;
            restart_if_due(app);
            if connect {
                match self.session(device, app, net, clock, stop, report).await {
                    End::Stopped => {
                        report(Report::Stopped);
                        return;
                    }
                    End::Lost(error) => {
                        report(Report::Disconnected(error));
                        device.handle_disconnected(clock.now(), clock.random());
                    }
                }
                continue;
            }
            let wake = earliest(earliest(device.poll_timeout(), app_wake), feed_by);
            let sleep = clock.sleep_until(wake.unwrap_or(clock.now() + Duration::from_secs(60)));
            if let embassy_futures::select::Either::Second(()) = select(sleep, &mut *stop).await {
                report(Report::Stopped);
                return;
            }
        }
    }

    async fn session<N, C, A, F>(
        &mut self,
        device: &mut Device,
        app: &mut A,
        net: &mut N,
        clock: &mut C,
        stop: &mut F,
        report: &mut impl FnMut(Report),
    ) -> End
    where
        N: Network,
        C: Clock,
        A: Application,
        F: Future<Output = ()> + Unpin,
    {
        report(Report::Connecting);
        let mut inbox = Inbox {
            buf: vec![0; self.options.max_incoming],
            filled: 0,
            discarding: 0,
        };
        let connect = device.connect_options(clock.utc());
        let keepalive = Duration::from_secs(u64::from(connect.keepalive.get()));
        let mut conn = match self.open(net, &connect, clock, stop, &mut inbox).await {
            Ok(conn) => conn,
            Err(End::Stopped) => return End::Stopped,
            Err(lost) => {
                self.stats.failed_attempts += 1;
                return lost;
            }
        };
        self.stats.connections += 1;
        device.handle_connected(clock.now(), clock.utc());
        report(Report::Connected);

        let mut session = Session {
            next_id: PacketId::FIRST,
            in_flight: BTreeMap::new(),
            last_sent: clock.now(),
            last_received: clock.now(),
            ping_sent: None,
        };
        let mut tx = Vec::new();
        let filters = device.subscriptions().map(|f| f.to_string());
        let filters = [filters[0].as_str(), filters[1].as_str()];
        let id = session.take_id();
        if let Err(error) = encode_subscribe(id, &filters, &mut tx) {
            self.stats.lost += 1;
            return End::Lost(LinkError::Io(error.to_string()));
        }

        let end = loop {
            let feed_by = self.feed(clock);
            // Everything read so far (the first time, whatever arrived behind the CONNACK).
            if let Err(error) = self.receive(
                &mut inbox,
                &mut session,
                device,
                app,
                clock,
                &mut tx,
                report,
            ) {
                break End::Lost(LinkError::Protocol(error));
            }
            session.queue_transmits(device, &mut tx, report);
            let (_, app_wake) = service(device, app, clock, report);
            // Whatever `service` queued goes out in the same write.
            session.queue_transmits(device, &mut tx, report);
            // Saved before anything it concerns leaves.
            self.persist(device, report).await;
            if !tx.is_empty() {
                if let Err(error) = send(&mut conn, &mut tx).await {
                    break End::Lost(error);
                }
                session.last_sent = clock.now();
            }
            // A restart the application asked for happens only now, with this turn's changes
            // saved and its packets (a reboot's answer, a command's PUBACK) sent.
            restart_if_due(app);
            // A ping when either way was quiet for three quarters of the keepalive; its answer
            // due within as long again: a silent link is noticed 1.5 keepalive periods after
            // the broker last sent anything, even while the device keeps writing into it.
            let ping_at = match session.ping_sent {
                Some(sent) => sent + pong_timeout(keepalive),
                None => session.last_sent.min(session.last_received) + keepalive * 3 / 4,
            };
            let wake = earliest(earliest(device.poll_timeout(), app_wake), Some(ping_at))
                .unwrap_or(ping_at);
            let wake = earliest(Some(wake), feed_by).unwrap_or(wake);
            let spare = &mut inbox.buf[inbox.filled..];
            match select3(conn.read(spare), clock.sleep_until(wake), &mut *stop).await {
                Either3::First(Ok(0)) => break End::Lost(LinkError::Closed),
                Either3::First(Ok(n)) => {
                    inbox.filled += n;
                    session.last_received = clock.now();
                }
                Either3::First(Err(error)) => break End::Lost(LinkError::Io(format!("{error:?}"))),
                // Pinging is due, or the ping unanswered for too long (other wake-ups are the
                // engine's or the application's, served at the top of the loop).
                Either3::Second(()) if clock.now() >= ping_at => {
                    if session.ping_sent.is_some() {
                        break End::Lost(LinkError::PingTimeout);
                    }
                    encode_pingreq(&mut tx);
                    session.ping_sent = Some(clock.now());
                }
                Either3::Second(()) => {}
                Either3::Third(()) => {
                    self.goodbye(
                        &mut conn,
                        &mut inbox,
                        &mut session,
                        device,
                        app,
                        clock,
                        report,
                    )
                    .await;
                    break End::Stopped;
                }
            }
        };
        if matches!(end, End::Lost(_)) {
            self.stats.lost += 1;
        }
        end
    }

    /// Opens the connection, sends CONNECT with `connect`, and waits for an accepting CONNACK;
    /// what arrives behind it stays in `inbox`.
    async fn open<'n, N, C, F>(
        &self,
        net: &'n mut N,
        connect: &ConnectOptions,
        clock: &C,
        stop: &mut F,
        inbox: &mut Inbox,
    ) -> Result<N::Connection<'n>, End>
    where
        N: Network,
        C: Clock,
        F: Future<Output = ()> + Unpin,
    {
        let deadline = clock.now() + self.options.connect_timeout;
        let mut conn = match select(net.connect(), clock.sleep_until(deadline)).await {
            embassy_futures::select::Either::First(Ok(conn)) => conn,
            embassy_futures::select::Either::First(Err(error)) => {
                return Err(End::Lost(LinkError::Connect(format!("{error:?}"))));
            }
            embassy_futures::select::Either::Second(()) => {
                return Err(End::Lost(LinkError::Connect(format!(
                    "not connected within {:?}",
                    self.options.connect_timeout
                ))));
            }
        };
        let packet = Connect {
            client_id: &connect.client_id,
            keepalive: connect.keepalive.get(),
            clean_session: connect.clean_session,
            will: Some(Will {
                topic: &connect.will.topic,
                payload: &connect.will.payload,
                retain: connect.will.retain,
            }),
            username: self.options.username,
            password: self.options.password.map(str::as_bytes),
        };
        let mut tx = Vec::new();
        encode_connect(&packet, &mut tx)
            .map_err(|error| End::Lost(LinkError::Connect(error.to_string())))?;
        send(&mut conn, &mut tx).await.map_err(End::Lost)?;

        // The broker's first packet is its CONNACK.
        let deadline = clock.now() + self.options.connack_timeout;
        loop {
            match mqtt::decode(&inbox.buf[..inbox.filled]) {
                Ok(Some((Incoming::ConnAck { code, .. }, used))) => {
                    inbox.consume(used);
                    return match code {
                        ConnectReturn::Accepted => Ok(conn),
                        refused => Err(End::Lost(LinkError::Refused(refused))),
                    };
                }
                Ok(Some(_)) => {
                    let header = inbox.buf[0];
                    return Err(End::Lost(LinkError::Protocol(DecodeError::Unexpected {
                        header,
                    })));
                }
                Ok(None) => {}
                Err(error) => return Err(End::Lost(LinkError::Protocol(error))),
            }
            let spare = &mut inbox.buf[inbox.filled..];
            match select3(conn.read(spare), clock.sleep_until(deadline), &mut *stop).await {
                Either3::First(Ok(0)) => return Err(End::Lost(LinkError::Closed)),
                Either3::First(Ok(n)) => inbox.filled += n,
                Either3::First(Err(error)) => {
                    return Err(End::Lost(LinkError::Io(format!("{error:?}"))));
                }
                Either3::Second(()) => return Err(End::Lost(LinkError::ConnAckTimeout)),
                Either3::Third(()) => return Err(End::Stopped),
            }
        }
    }

    /// Decodes and handles every complete packet in the inbox.
    #[allow(clippy::too_many_arguments)]
    fn receive<A: Application, C: Clock>(
        &mut self,
        inbox: &mut Inbox,
        session: &mut Session,
        device: &mut Device,
        app: &mut A,
        clock: &mut C,
        tx: &mut Vec<u8>,
        report: &mut impl FnMut(Report),
    ) -> Result<(), DecodeError> {
        loop {
            if inbox.discarding > 0 {
                let n = inbox.discarding.min(inbox.filled);
                inbox.consume(n);
                inbox.discarding -= n;
                if inbox.discarding > 0 {
                    return Ok(());
                }
            }
            let Some(frame) = Frame::read(&inbox.buf[..inbox.filled])? else {
                return Ok(());
            };
            if frame.len() > inbox.buf.len() {
                self.oversized(frame, inbox, tx, report)?;
                if inbox.discarding == 0 {
                    return Ok(()); // waiting for the PUBLISH's topic and id
                }
                continue;
            }
            let Some((packet, used)) = mqtt::decode(&inbox.buf[..inbox.filled])? else {
                return Ok(());
            };
            match packet {
                Incoming::Publish(publish) => {
                    self.stats.received += 1;
                    let now = clock.now();
                    let utc = clock.utc();
                    device.handle_message_with(
                        now,
                        utc,
                        publish.topic,
                        publish.payload,
                        publish.retain,
                        app,
                    );
                    if let Some(id) = publish.id {
                        encode_puback(id, tx);
                    }
                }
                Incoming::PubAck(id) => {
                    if let Some(message) = session.in_flight.remove(&id) {
                        device.handle_acked(message);
                    }
                }
                Incoming::SubAck { granted, .. } => {
                    if granted.refused() > 0 {
                        report(Report::SubscriptionRefused {
                            refused: granted.refused(),
                        });
                    }
                }
                Incoming::PingResp => session.ping_sent = None,
                Incoming::ConnAck { .. } => {
                    return Err(DecodeError::Unexpected { header: 0x20 });
                }
            }
            inbox.consume(used);
        }
    }

    /// A packet larger than the inbox: only a PUBLISH may be, and it is acknowledged (when its
    /// id has arrived) and skipped.
    fn oversized(
        &mut self,
        frame: Frame,
        inbox: &mut Inbox,
        tx: &mut Vec<u8>,
        report: &mut impl FnMut(Report),
    ) -> Result<(), DecodeError> {
        if frame.header >> 4 != 3 {
            return Err(DecodeError::BadLength {
                packet_type: frame.header >> 4,
                length: frame.remaining,
            });
        }
        let body = &inbox.buf[frame.header_len..inbox.filled];
        match mqtt::publish_prefix(frame.header, body) {
            Some((topic, id)) => {
                report(Report::Oversized {
                    topic: topic.into(),
                    len: frame.len(),
                });
                if let Some(id) = id {
                    encode_puback(id, tx);
                }
                self.stats.oversized += 1;
                inbox.discarding = frame.len();
                Ok(())
            }
            // A topic longer than the whole inbox cannot be one of the device's topics.
            None if inbox.filled == inbox.buf.len() => Err(DecodeError::BadLength {
                packet_type: 3,
                length: frame.remaining,
            }),
            None => Ok(()),
        }
    }

    /// Delivers what the outbox holds (for up to half of [`MqttOptions::goodbye_timeout`]),
    /// publishes the `offline` status, and disconnects once the broker acknowledged it. If it
    /// did not in time, the connection is dropped without DISCONNECT, so that the broker
    /// publishes the last will, the same `offline` status, instead.
    #[allow(clippy::too_many_arguments)]
    async fn goodbye<T: Read + Write, A: Application, C: Clock>(
        &mut self,
        conn: &mut T,
        inbox: &mut Inbox,
        session: &mut Session,
        device: &mut Device,
        app: &mut A,
        clock: &mut C,
        report: &mut impl FnMut(Report),
    ) {
        let start = clock.now();
        let drain_until = start + self.options.goodbye_timeout / 2;
        let deadline = start + self.options.goodbye_timeout;
        let mut tx = Vec::new();
        let mut offline = None;
        let acked = loop {
            session.queue_transmits(device, &mut tx, report);
            if offline.is_none() && (device.stats().pending == 0 || clock.now() >= drain_until) {
                // The offline status goes last.
                let status = device.disconnect(clock.utc());
                let id = session.take_id();
                if encode_publish(id, &status.topic, &status.payload, status.retain, &mut tx)
                    .is_err()
                {
                    break false;
                }
                session.in_flight.insert(id, status.id);
                offline = Some(id);
            }
            self.persist(device, report).await;
            if !tx.is_empty() && send(conn, &mut tx).await.is_err() {
                break false;
            }
            if offline.is_some_and(|id| !session.in_flight.contains_key(&id)) {
                break true;
            }
            let wait = if offline.is_some() {
                deadline
            } else {
                drain_until
            };
            let spare = &mut inbox.buf[inbox.filled..];
            match select(conn.read(spare), clock.sleep_until(wait)).await {
                embassy_futures::select::Either::First(Ok(n)) if n > 0 => {
                    inbox.filled += n;
                    if self
                        .receive(inbox, session, device, app, clock, &mut tx, report)
                        .is_err()
                    {
                        break false;
                    }
                }
                embassy_futures::select::Either::Second(()) if offline.is_none() => {}
                _ => break false,
            }
        };
        self.persist(device, report).await;
        if acked {
            encode_disconnect(&mut tx);
            let _ = send(conn, &mut tx).await;
        }
    }

    /// Feeds the watchdog, if there is one; when to wake to feed it again.
    fn feed<C: Clock>(&mut self, clock: &C) -> Option<Instant> {
        let (watchdog, period) = self.watchdog.as_mut()?;
        watchdog.feed();
        Some(clock.now() + *period)
    }

    /// Writes what the engine reports changed to the store; a failure is counted and
    /// reported, and the loop goes on (the state still holds in RAM).
    async fn persist(&mut self, device: &mut Device, report: &mut impl FnMut(Report)) {
        while let Some(change) = device.poll_persist() {
            if let Err(error) = self.store.save(&change).await {
                self.stats.unsaved += 1;
                report(Report::NotSaved {
                    error: error.to_string(),
                });
            }
        }
    }
}

/// One connection's packet ids.
struct Session {
    next_id: PacketId,
    in_flight: BTreeMap<PacketId, MessageId>,
    last_sent: Instant,
    last_received: Instant,
    ping_sent: Option<Instant>,
}

impl Session {
    fn take_id(&mut self) -> PacketId {
        let id = self.next_id;
        self.next_id = id.next();
        id
    }

    /// Encodes every message the engine lets out (its in-flight window bounds them).
    fn queue_transmits(
        &mut self,
        device: &mut Device,
        tx: &mut Vec<u8>,
        report: &mut impl FnMut(Report),
    ) {
        while let Some(Transmit {
            id,
            topic,
            payload,
            retain,
            ..
        }) = device.poll_transmit()
        {
            let packet_id = self.take_id();
            match encode_publish(packet_id, &topic, &payload, retain, tx) {
                Ok(()) => {
                    self.in_flight.insert(packet_id, id);
                }
                // The engine bounds payloads far below MQTT's limit; should one ever be too
                // long, it is reported and released rather than retried forever.
                Err(error) => {
                    report(Report::Engine(Event::Dropped {
                        reason: dese_protocol::Reason::TooLarge,
                        error: error.to_string(),
                    }));
                    device.handle_acked(id);
                }
            }
        }
    }
}

/// Runs the engine's timers and the application's tick; says whether the engine asked to
/// connect.
fn service<A: Application, C: Clock>(
    device: &mut Device,
    app: &mut A,
    clock: &mut C,
    report: &mut impl FnMut(Report),
) -> (bool, Option<Instant>) {
    let now = clock.now();
    if device.poll_timeout().is_some_and(|at| at <= now) {
        device.handle_timeout(now, clock.utc(), app);
    }
    let mut connect = false;
    while let Some(event) = device.poll_event() {
        if event == Event::Connect {
            connect = true;
        } else {
            report(Report::Engine(event));
        }
    }
    (connect, app.tick(now, &device.stats()))
}

/// Restarts the device if the application asks to: called once the turn's changes are saved
/// (and, while connected, its packets sent).
fn restart_if_due<A: Application>(app: &mut A) {
    if app.restart_due() {
        app.restart();
    }
}

async fn send<T: Write>(conn: &mut T, tx: &mut Vec<u8>) -> Result<(), LinkError> {
    let result = match conn.write_all(tx).await {
        Ok(()) => conn.flush().await,
        Err(error) => Err(error),
    };
    tx.clear();
    result.map_err(|error| LinkError::Io(format!("{error:?}")))
}

fn earliest(a: Option<Instant>, b: Option<Instant>) -> Option<Instant> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

/// How long a PINGREQ may wait for its PINGRESP: three quarters of the keepalive, so that with
/// the ping sent after as long a quiet spell, a dead link is noticed within 1.5 periods.
fn pong_timeout(keepalive: Duration) -> Duration {
    keepalive * 3 / 4
}
