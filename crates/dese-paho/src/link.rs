//! The [`Link`] over paho-mqtt: paho's callbacks and delivery tokens turned into the driver's
//! events.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::mpsc::RecvTimeoutError;
use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::Duration;

use dese_backend::Inbound;
use dese_transport::{
    Acknowledgement, BrokerOptions, ConnectionFailure, Error, ErrorKind, Link, LinkEvent, Session,
    TlsFiles, Transport, Will,
};
use paho_mqtt as paho;
use tokio::sync::{mpsc, oneshot};

/// The paho-mqtt transport: `DeviceClient<Paho>` and `BackendClient<Paho>`.
#[derive(Debug, Clone, Copy)]
pub struct Paho;

impl Transport for Paho {
    type Link = PahoLink;

    fn open(broker: &BrokerOptions, session: Session) -> Result<PahoLink, Error> {
        PahoLink::new(broker, session)
    }
}

/// The paho link: one C client, connected again after each loss.
///
/// Callbacks run on the C library's threads and send into a channel. The C library is the one
/// this package's build script builds, with the fix for a double free after a failed QoS 1
/// write (docs/transports.md).
///
/// The C library acknowledges a received QoS 1 message (PUBACK) as soon as its message callback
/// returns, and has no way to defer it. With [`Acknowledgement::Manual`] (a backend), the
/// callback therefore waits while its window of received messages are not yet acknowledged by the
/// driver ([`Link::ack`]): at most that many messages are acknowledged to the broker before the
/// application confirmed them, and reading stops there, as with rumqttc.
///
/// The callback waits holding the C library's one receive thread and its global lock, which
/// every paho client of the process needs for any call. So every call this link makes into the
/// C library runs on a thread of the link's own, never on the async runtime: a
/// waiting callback delays those calls, it never stalls the tasks that would give it room.
pub struct PahoLink {
    calls: Caller,
    recipe: Recipe,
    secure: bool,
    /// `host:port`, to tell a refused TLS handshake from an unreachable broker.
    address: String,
    /// Failed TLS connections in a row whose broker answered a plain TCP probe (see
    /// [`failure`]); back to 0 on every connection.
    tls_failures: Arc<AtomicU32>,
    /// Received messages not yet acknowledged by the driver (backends only).
    gate: Option<Arc<Gate>>,
    runtime: tokio::runtime::Handle,
    events: mpsc::UnboundedSender<LinkEvent>,
    incoming: mpsc::UnboundedReceiver<LinkEvent>,
}

impl std::fmt::Debug for PahoLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PahoLink")
            .field("address", &self.address)
            .field("client_id", &self.recipe.session.client_id)
            .finish_non_exhaustive()
    }
}

type Call = Box<dyn FnOnce(&mut Owned) + Send>;

/// Runs calls into the C client on a thread of its own, in order; the client is destroyed
/// there too, when the link is dropped.
#[derive(Debug)]
struct Caller(std::sync::mpsc::Sender<Call>);

/// What the thread of a [`Caller`] owns: the C client, and the connection attempts whose
/// outcome has not come yet.
///
/// The C library keeps a reference to the client in each attempt's token and drops it from its
/// own thread when the attempt ends, inside the callback, with its global lock held. Were that
/// the last reference, the client would be destroyed right there, and destroying takes the same
/// lock: every paho client of the process would hang (seen in the conformance suite, when a
/// link was dropped while its broker refused the connection). So the tokens are kept and
/// dropped on this thread, and the client outlives every attempt ([`Owned::release`]).
struct Owned {
    client: paho::AsyncClient,
    attempts: Vec<Attempt>,
}

/// A connection attempt in progress: its token, and what to do with the outcome.
struct Attempt {
    token: paho::Token,
    outcome: Box<dyn FnOnce(paho::Result<paho::ServerResponse>) + Send>,
}

impl Owned {
    /// How often the outcome of an attempt in progress is looked at: the latency it adds to
    /// a connection.
    const POLL: Duration = Duration::from_millis(10);

    /// Hands over the outcome of each attempt that has ended.
    fn finish_attempts(&mut self) {
        let mut index = 0;
        while index < self.attempts.len() {
            if let Some(result) = self.attempts[index].token.try_wait() {
                let attempt = self.attempts.swap_remove(index);
                (attempt.outcome)(result);
            } else {
                index += 1;
            }
        }
    }

    /// Drops the client once no attempt can hold the last reference to it: each has ended
    /// and the callback that ended it has returned. An attempt that never ends (the connect
    /// timeout is 10 s) leaves the client to the C library, a leak rather than a hang.
    fn release(self) {
        let Self { client, attempts } = self;
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        let mut ended = true;
        for mut attempt in attempts {
            while attempt.token.try_wait().is_none() {
                if std::time::Instant::now() >= deadline {
                    ended = false;
                    break;
                }
                std::thread::sleep(Self::POLL);
            }
        }
        if ended {
            // Takes the library's lock, so waits for the callback that ended the last attempt.
            let _ = client.is_connected();
            drop(client);
        } else {
            std::mem::forget(client);
        }
    }
}

impl Caller {
    /// Starts the thread, which creates the client first: creating it takes the C library's
    /// lock too. A client that cannot be created is reported as a lost connection that cannot
    /// be retried, and the calls go nowhere.
    fn start(create: Create) -> Result<Self, Error> {
        let (calls, queue) = std::sync::mpsc::channel::<Call>();
        std::thread::Builder::new()
            .name(format!("paho-{}", create.client_id))
            .spawn(move || {
                let events = create.events.clone();
                let client = match create.client() {
                    Ok(client) => client,
                    Err(failure) => {
                        let _ = events.send(LinkEvent::Lost(failure));
                        return;
                    }
                };
                let mut owned = Owned {
                    client,
                    attempts: Vec::new(),
                };
                loop {
                    let call = if owned.attempts.is_empty() {
                        queue.recv().ok()
                    } else {
                        match queue.recv_timeout(Owned::POLL) {
                            Ok(call) => Some(call),
                            Err(RecvTimeoutError::Timeout) => {
                                owned.finish_attempts();
                                continue;
                            }
                            Err(RecvTimeoutError::Disconnected) => None,
                        }
                    };
                    let Some(call) = call else { break };
                    call(&mut owned);
                    owned.finish_attempts();
                }
                owned.release();
            })
            .map_err(|e| {
                Error::Connection(ConnectionFailure::new(
                    ErrorKind::Io,
                    format!("cannot start the paho client's thread: {e}"),
                ))
            })?;
        Ok(Self(calls))
    }

    fn call(&self, call: impl FnOnce(&mut Owned) + Send + 'static) {
        // The thread ends only when the link is dropped.
        let _ = self.0.send(Box::new(call));
    }
}

/// What the thread of a [`Caller`] creates its client from.
struct Create {
    uri: String,
    client_id: String,
    events: mpsc::UnboundedSender<LinkEvent>,
    gate: Option<Arc<Gate>>,
}

impl Create {
    /// The C client, with its callbacks: connection lost, and message arrived (which waits at
    /// the gate before it lets the C library acknowledge the message).
    fn client(self) -> Result<paho::AsyncClient, ConnectionFailure> {
        let client = paho::CreateOptionsBuilder::new_v3()
            .server_uri(&self.uri)
            .client_id(&self.client_id)
            .persistence(paho::PersistenceType::None)
            .create_client()
            .map_err(|e| {
                ConnectionFailure::new(
                    ErrorKind::Config,
                    format!(
                        "the paho client cannot be created for {} as {:?}: {e}",
                        self.uri, self.client_id
                    ),
                )
            })?;
        let lost = self.events.clone();
        client.set_connection_lost_callback(move |_| {
            let failure = ConnectionFailure::new(ErrorKind::Io, "connection lost");
            let _ = lost.send(LinkEvent::Lost(failure));
        });
        let (arrived, gate) = (self.events, self.gate);
        let count = AtomicU64::new(0);
        client.set_message_callback(move |_, message| {
            if let Some(message) = message {
                // Returning lets the C library send the PUBACK: first wait for room.
                if let Some(gate) = &gate {
                    gate.enter();
                }
                let _ = arrived.send(LinkEvent::Message {
                    topic: message.topic().to_string(),
                    payload: message.payload().to_vec(),
                    retain: message.retained(),
                    delivery: Inbound(count.fetch_add(1, Ordering::Relaxed)),
                });
            }
        });
        Ok(client)
    }
}

/// Bounds the received messages the driver has not acknowledged: the message callback waits
/// in [`Gate::enter`] while `window` are outstanding.
#[derive(Debug)]
struct Gate {
    state: Mutex<GateState>,
    room: Condvar,
}

#[derive(Debug)]
struct GateState {
    outstanding: usize,
    window: usize,
    /// Cleared when the link closes: nobody will acknowledge any more, and nothing may wait.
    open: bool,
}

impl Gate {
    fn new(window: usize) -> Self {
        Self {
            state: Mutex::new(GateState {
                outstanding: 0,
                window: window.max(1),
                open: true,
            }),
            room: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GateState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Waits for room, then counts one more outstanding message.
    fn enter(&self) {
        let mut state = self.lock();
        while state.open && state.outstanding >= state.window {
            state = self
                .room
                .wait(state)
                .unwrap_or_else(PoisonError::into_inner);
        }
        state.outstanding += 1;
    }

    /// One message acknowledged.
    fn leave(&self) {
        let mut state = self.lock();
        state.outstanding = state.outstanding.saturating_sub(1);
        self.room.notify_one();
    }

    /// The connection is gone: the driver acknowledges none of its messages any more (they
    /// were acknowledged to the broker on receipt).
    fn reset(&self) {
        self.lock().outstanding = 0;
        self.room.notify_all();
    }

    fn close(&self) {
        self.lock().open = false;
        self.room.notify_all();
    }
}

impl PahoLink {
    fn new(broker: &BrokerOptions, session: Session) -> Result<Self, Error> {
        let tls = broker.tls()?;
        let host = if broker.host.contains(':') {
            format!("[{}]", broker.host)
        } else {
            broker.host.clone()
        };
        let scheme = if tls.is_some() { "ssl" } else { "tcp" };
        let uri = format!("{scheme}://{host}:{}", broker.port);
        let recipe = Recipe {
            session,
            credentials: broker.credentials.clone(),
            tls: tls.cloned(),
        };
        // Built once here so that unusable TLS files fail now, not at the first connection.
        recipe.options(recipe.session.keepalive)?;
        let (events, incoming) = mpsc::unbounded_channel();
        let gate = match recipe.session.acknowledgement {
            Acknowledgement::OnReceipt => None,
            Acknowledgement::Manual { window } => Some(Arc::new(Gate::new(window))),
        };
        let create = Create {
            uri,
            client_id: recipe.session.client_id.clone(),
            events: events.clone(),
            gate: gate.clone(),
        };
        let calls = Caller::start(create)?;
        Ok(Self {
            calls,
            recipe,
            secure: broker.is_secure(),
            address: broker.address(),
            tls_failures: Arc::new(AtomicU32::new(0)),
            gate,
            runtime: tokio::runtime::Handle::current(),
            events,
            incoming,
        })
    }
}

impl Link for PahoLink {
    async fn next(&mut self) -> LinkEvent {
        // Cancel safe: the only await is the channel's receive.
        let event = self.incoming.recv().await.unwrap_or(LinkEvent::Closed);
        if let (LinkEvent::Lost(_), Some(gate)) = (&event, &self.gate) {
            gate.reset();
        }
        event
    }

    fn connect(&mut self, keepalive: Duration, will: Option<Will>) {
        if will.is_some() {
            self.recipe.session.will = will;
        }
        let recipe = self.recipe.clone();
        let events = self.events.clone();
        let tls_address = self.secure.then(|| self.address.clone());
        let runtime = self.runtime.clone();
        let tls_failures = Arc::clone(&self.tls_failures);
        self.calls.call(move |owned| {
            // Built here: paho's options cannot move between threads.
            let options = match recipe.options(keepalive) {
                Ok(options) => options,
                Err(error) => {
                    let failure = ConnectionFailure::new(error.kind(), error.to_string());
                    let _ = events.send(LinkEvent::Lost(failure));
                    return;
                }
            };
            // `Connected` is sent from the C library's own callback, before the library can
            // notice that connection's loss and call the connection-lost callback: the driver
            // always sees the two in that order. (Sent from the polled token, it could come
            // after the loss of a connection that a broker restart cut at once, and the driver
            // would wait on a dead link.) A failure comes from the token, which carries the error.
            let connected = events.clone();
            let reset = Arc::clone(&tls_failures);
            let token = owned.client.connect_with_callbacks(
                options,
                move |_, _| {
                    reset.store(0, Ordering::Relaxed);
                    let _ = connected.send(LinkEvent::Connected);
                },
                |_, _, _| {},
            );
            let outcome = move |result: paho::Result<paho::ServerResponse>| {
                if let Err(error) = result {
                    drop(runtime.spawn(async move {
                        let lost =
                            LinkEvent::Lost(failure(error, tls_address, &tls_failures).await);
                        let _ = events.send(lost);
                    }));
                }
            };
            owned.attempts.push(Attempt {
                token,
                outcome: Box::new(outcome),
            });
        });
    }

    fn subscribe(&mut self, filters: &[String]) {
        let filters = filters.to_vec();
        let events = self.events.clone();
        let runtime = self.runtime.clone();
        self.calls.call(move |Owned { client, .. }| {
            // One filter per SUBSCRIBE, so that a refusal names its filter.
            for filter in filters {
                let token = client.subscribe(&filter, 1);
                let events = events.clone();
                runtime.spawn(async move {
                    if refused(token.await) {
                        let _ = events.send(LinkEvent::SubscriptionRefused { filter });
                    }
                });
            }
        });
    }

    fn ack(&mut self, _delivery: Inbound) {
        // The C library acknowledged it when the callback returned; this makes room for the
        // next one.
        if let Some(gate) = &self.gate {
            gate.leave();
        }
    }

    fn publish(&mut self, tag: u64, topic: &str, payload: &[u8], retain: bool) -> bool {
        let (topic, payload) = (topic.to_string(), payload.to_vec());
        let events = self.events.clone();
        let runtime = self.runtime.clone();
        self.calls.call(move |Owned { client, .. }| {
            let message = if retain {
                paho::Message::new_retained(topic, payload, 1)
            } else {
                paho::Message::new(topic, payload, 1)
            };
            // Refused (not connected): no acknowledgement comes, and the driver publishes it
            // again after the next connection.
            let Ok(token) = client.try_publish(message) else {
                return;
            };
            // The token completes on the broker's PUBACK; a failed one (the connection dropped)
            // is not an acknowledgement, and the driver replays the message.
            runtime.spawn(async move {
                if token.await.is_ok() {
                    let _ = events.send(LinkEvent::Acked(tag));
                }
            });
        });
        true
    }

    fn reconnect(&mut self) {
        let events = self.events.clone();
        let runtime = self.runtime.clone();
        self.calls.call(move |Owned { client, .. }| {
            let token = client.disconnect(None);
            runtime.spawn(async move {
                let _ = tokio::time::timeout(Duration::from_secs(2), token).await;
                let failure = ConnectionFailure::new(
                    ErrorKind::Io,
                    "closed to reconnect with a new keepalive",
                );
                let _ = events.send(LinkEvent::Lost(failure));
            });
        });
    }

    async fn disconnect(&mut self) {
        if let Some(gate) = &self.gate {
            gate.close();
        }
        let (sent, token) = oneshot::channel();
        self.calls.call(move |Owned { client, .. }| {
            if !client.is_connected() {
                return;
            }
            // The C library sends the DISCONNECT once the publishes in flight are acknowledged,
            // or after 2 s, so that what was already written is not cut off by the goodbye.
            let options = paho::DisconnectOptionsBuilder::new()
                .timeout(Duration::from_secs(2))
                .finalize();
            let _ = sent.send(client.disconnect(options));
        });
        if let Ok(Ok(token)) = tokio::time::timeout(Duration::from_secs(3), token).await {
            let _ = tokio::time::timeout(Duration::from_secs(3), token).await;
        }
    }
}

impl Drop for PahoLink {
    fn drop(&mut self) {
        // A callback waiting for room must not hold the C library's thread after the link is
        // gone.
        if let Some(gate) = &self.gate {
            gate.close();
        }
    }
}

/// What every connection's options are made of: plain data, as paho's builders cannot move
/// between threads.
#[derive(Debug, Clone)]
struct Recipe {
    session: Session,
    credentials: Option<(String, String)>,
    tls: Option<TlsFiles>,
}

impl Recipe {
    fn options(&self, keepalive: Duration) -> Result<paho::ConnectOptions, Error> {
        let mut options = paho::ConnectOptionsBuilder::new_v3();
        options
            .clean_session(self.session.clean_session)
            .keep_alive_interval(keepalive)
            .connect_timeout(Duration::from_secs(10));
        if let Some(will) = &self.session.will {
            let message = if will.retain {
                paho::Message::new_retained(&will.topic, will.payload.clone(), 1)
            } else {
                paho::Message::new(&will.topic, will.payload.clone(), 1)
            };
            options.will_message(message);
        }
        if let Some((user, password)) = &self.credentials {
            options.user_name(user).password(password.as_str());
        }
        if let Some(files) = &self.tls {
            let mut ssl = paho::SslOptionsBuilder::new();
            // TLS 1.2 or later is also enforced inside the C library, which ignores this
            // option with OpenSSL 1.1 and later (crates/dese-paho/build.rs).
            ssl.ssl_version(paho::SslVersion::Tls_1_2);
            ssl.trust_store(&files.ca)
                .map_err(|e| Error::tls(format!("CA file {}: {e}", files.ca.display())))?
                .disable_default_trust_store(true)
                .enable_server_cert_auth(true)
                .verify(true);
            if let Some((cert, key)) = &files.client {
                ssl.key_store(cert)
                    .map_err(|e| Error::tls(format!("{}: {e}", cert.display())))?
                    .private_key(key)
                    .map_err(|e| Error::tls(format!("{}: {e}", key.display())))?;
            }
            options.ssl_options(ssl.finalize());
        }
        Ok(options.finalize())
    }
}

/// The shared category of a failed connection attempt. The C library reports a refused TLS
/// handshake and an unreachable broker alike ("TCP/TLS connect failure"); for a TLS link,
/// `tls_address` is probed with a plain TCP connection to tell them apart: the broker answered,
/// so TLS was refused. A handshake that timed out on an overloaded broker looks the same, so
/// only [`TLS_REFUSALS`] such failures in a row count as a refusal, which is final; the ones
/// before are retried.
async fn failure(
    error: paho::Error,
    tls_address: Option<String>,
    tls_failures: &AtomicU32,
) -> ConnectionFailure {
    use paho::ConnectReturnCode as Code;
    let kind = match &error {
        paho::Error::ConnectReturn(
            Code::BadUserNameOrPassword | Code::NotAuthorized | Code::IdentifierRejected,
        ) => ErrorKind::Auth,
        paho::Error::SslNotSupported => ErrorKind::Tls,
        paho::Error::TcpTlsConnectFailure | paho::Error::Failure => match tls_address {
            Some(address) if reachable(&address).await => {
                let n = tls_failures.fetch_add(1, Ordering::Relaxed) + 1;
                if n >= TLS_REFUSALS {
                    ErrorKind::Tls
                } else {
                    ErrorKind::Io
                }
            }
            _ => ErrorKind::Io,
        },
        _ => ErrorKind::Io,
    };
    ConnectionFailure::caused_by(kind, error)
}

/// How many failed TLS connections in a row, to a broker that answers plain TCP, make a TLS
/// refusal (see [`failure`]).
const TLS_REFUSALS: u32 = 3;

/// Whether a TCP connection to `address` opens within a second.
async fn reachable(address: &str) -> bool {
    let address = address.to_string();
    tokio::task::spawn_blocking(move || {
        use std::net::ToSocketAddrs;
        address
            .to_socket_addrs()
            .ok()
            .and_then(|mut all| all.next())
            .is_some_and(|addr| {
                std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
            })
    })
    .await
    .unwrap_or(false)
}

/// Whether a subscription failed for another reason than the connection dropping (after which
/// the next connection subscribes again). The broker's refusal (SUBACK 0x80) reaches the C
/// library's failure callback with the code 0x80, which the Rust layer reports as a general
/// [`paho::Error::Failure`]; the C library uses the same general failure for the rare request it
/// fails itself, which is reported as refused too.
fn refused(outcome: paho::Result<paho::ServerResponse>) -> bool {
    const FAILURE: i32 = 0x80;
    match outcome {
        Ok(response) => response
            .subscribe_response()
            .is_some_and(|qos| qos >= FAILURE),
        Err(paho::Error::Failure) => true,
        Err(paho::Error::ReasonCode(code, _)) => code as i32 >= FAILURE,
        Err(_) => false,
    }
}
