//! What both clients share: the task that polls rumqttc's event loop, and time helpers.

use std::time::{SystemTime, UNIX_EPOCH};

use std::time::Duration;

use dese_protocol::Timestamp;
use rumqttc::{AsyncClient, ConnectionError, EventLoop, MqttOptions};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::Error;
use crate::options::BrokerOptions;

/// The rumqttc options every client shares: address, packet size, credentials, TLS.
pub(crate) fn mqtt_options(
    broker: &BrokerOptions,
    client_id: impl Into<String>,
) -> Result<MqttOptions, Error> {
    let tls = broker.tls_config()?;
    let mut options = MqttOptions::new(client_id, broker.host.clone(), broker.port);
    options.set_max_packet_size(broker.max_packet_size, broker.max_packet_size);
    if let Some((user, password)) = &broker.credentials {
        options.set_credentials(user.clone(), password.clone());
    }
    if let Some(config) = tls {
        options.set_transport(rumqttc::Transport::tls_with_config(
            rumqttc::TlsConfiguration::Rustls(config),
        ));
    }
    Ok(options)
}

/// The client handle, the channel of the event loop's events, and the go that lets the poll
/// task (re)connect.
pub(crate) struct Link {
    pub(crate) client: AsyncClient,
    pub(crate) incoming: mpsc::Receiver<Result<rumqttc::Event, ConnectionError>>,
    pub(crate) go: mpsc::Sender<()>,
}

/// Creates the client and spawns the task that polls its event loop. `requests` bounds
/// rumqttc's request channel, `events` the channel of its events.
pub(crate) fn open(
    broker: &BrokerOptions,
    options: MqttOptions,
    requests: usize,
    events: usize,
) -> Link {
    let (client, mut eventloop) = AsyncClient::new(options, requests);
    let mut network = eventloop.network_options();
    // Without it a command round trip on loopback waits for Nagle's algorithm: 40 ms+.
    network.set_tcp_nodelay(broker.tcp_nodelay);
    eventloop.set_network_options(network);
    let (incoming_tx, incoming) = mpsc::channel(events);
    let (go, go_rx) = mpsc::channel(1);
    tokio::spawn(poll(eventloop, incoming_tx, go_rx));
    Link {
        client,
        incoming,
        go,
    }
}

/// Asks the engine task to end (`request` carries the acknowledgement), waits at most 5 s, and
/// returns its result.
pub(crate) async fn shutdown(
    request: impl FnOnce(oneshot::Sender<()>) -> bool,
    task: JoinHandle<Result<(), Error>>,
) -> Result<(), Error> {
    let (done, finished) = oneshot::channel();
    if request(done) {
        let _ = tokio::time::timeout(Duration::from_secs(5), finished).await;
    }
    task.abort();
    match task.await {
        Ok(result) => result,
        Err(_) => Ok(()),
    }
}

/// Polls the event loop, and after a failure waits for the engine's go before polling again
/// (which reconnects).
async fn poll(
    mut eventloop: EventLoop,
    events: mpsc::Sender<Result<rumqttc::Event, ConnectionError>>,
    mut go: mpsc::Receiver<()>,
) {
    if go.recv().await.is_none() {
        return;
    }
    loop {
        let result = eventloop.poll().await;
        let failed = result.is_err();
        if events.send(result).await.is_err() {
            return;
        }
        if failed {
            if go.recv().await.is_none() {
                return;
            }
            // Requests made while the link was down (still in rumqttc's channel or pending)
            // would be written after the reconnection, ahead of the engine's replay, and shift
            // the order in which packet ids are matched to messages: a PUBACK would then be
            // credited to the wrong message. Drop rumqttc's copies; the engine replays what was
            // not acknowledged, in order.
            eventloop.clean();
            eventloop.pending.clear();
            // clean() keeps the events the failed connection had queued (an Outgoing::Publish,
            // a PubAck of an old packet id); delivered after the reconnection, a stale PubAck
            // would acknowledge whichever new message reuses that id (ids cycle 1..=inflight).
            eventloop.state.events.clear();
        }
    }
}

pub(crate) async fn sleep_until(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The system clock as a [`Timestamp`], to the nanosecond.
pub(crate) fn utc_now() -> Timestamp {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
    Timestamp::from_unix(secs, since.subsec_nanos()).unwrap_or(Timestamp::UNIX_EPOCH)
}
