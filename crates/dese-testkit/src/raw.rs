//! Plain MQTT clients with no DESE logic (rumqttc), for what the SDK's own clients will not do:
//! publish anything (an oversized or malformed payload, on any topic, retained or not) and
//! measure a bare subscriber's rate beside the SDK's.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, MqttOptions, Packet, QoS};
use tokio::task::JoinHandle;

/// A QoS 1 publisher that counts the broker's acknowledgements.
#[derive(Debug)]
pub struct Publisher {
    client: AsyncClient,
    sent: u64,
    counts: Arc<Counts>,
    task: JoinHandle<()>,
}

/// A subscriber with a persistent session that acknowledges on receipt (rumqttc's default) and
/// counts what arrives: the raw rate a consumer can reach, with nothing done per message.
#[derive(Debug)]
pub struct Subscriber {
    client: AsyncClient,
    counts: Arc<Counts>,
    task: JoinHandle<()>,
}

#[derive(Debug, Default)]
struct Counts {
    connected: AtomicU64,
    acked: AtomicU64,
    received: AtomicU64,
    failures: AtomicU64,
    /// Whether to keep what arrives, in `messages`.
    record: bool,
    messages: Mutex<Vec<(String, Vec<u8>)>>,
}

/// Larger than any broker configuration of the tests accepts: the publisher never refuses.
const MAX_PACKET: usize = 64 * 1024 * 1024;

fn options(addr: SocketAddr, client_id: &str, clean_session: bool) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
    options
        .set_max_packet_size(MAX_PACKET, MAX_PACKET)
        .set_keep_alive(Duration::from_secs(60))
        .set_clean_session(clean_session)
        .set_inflight(200);
    options
}

/// Polls the event loop, counting CONNACKs, PUBACKs and PUBLISHes; reconnects after a second
/// when the connection fails.
fn poll(mut eventloop: EventLoop, counts: Arc<Counts>) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    counts.connected.fetch_add(1, Ordering::SeqCst);
                }
                Ok(Event::Incoming(Packet::PubAck(_))) => {
                    counts.acked.fetch_add(1, Ordering::SeqCst);
                }
                Ok(Event::Incoming(Packet::Publish(publish))) => {
                    if counts.record {
                        if let Ok(mut messages) = counts.messages.lock() {
                            messages.push((publish.topic, publish.payload.to_vec()));
                        }
                    }
                    counts.received.fetch_add(1, Ordering::SeqCst);
                }
                Ok(_) => {}
                Err(_) => {
                    counts.failures.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    })
}

async fn wait_for(counts: &Counts, within: Duration, done: impl Fn(&Counts) -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + within;
    while !done(counts) {
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// A client of `client_id` on a loopback broker, its event loop polled by a task; `subscribe`
/// is requested before the CONNACK is awaited (at most 10 s).
async fn start(
    addr: SocketAddr,
    client_id: &str,
    clean_session: bool,
    subscribe: Option<&str>,
    record: bool,
) -> std::io::Result<(AsyncClient, Arc<Counts>, JoinHandle<()>)> {
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::other(
            "the raw clients only talk to loopback",
        ));
    }
    let (client, eventloop) = AsyncClient::new(options(addr, client_id, clean_session), 1024);
    let counts = Arc::new(Counts {
        record,
        ..Counts::default()
    });
    let task = poll(eventloop, Arc::clone(&counts));
    if let Some(filter) = subscribe {
        client
            .subscribe(filter, QoS::AtLeastOnce)
            .await
            .map_err(std::io::Error::other)?;
    }
    let connected = wait_for(&counts, Duration::from_secs(10), |c| {
        c.connected.load(Ordering::SeqCst) > 0
    })
    .await;
    if !connected {
        task.abort();
        return Err(std::io::Error::other(format!(
            "no CONNACK from {addr} within 10 s"
        )));
    }
    Ok((client, counts, task))
}

impl Publisher {
    /// Connects (clean session) to a loopback broker and waits for its CONNACK, at most 10 s.
    pub async fn connect(addr: SocketAddr, client_id: &str) -> std::io::Result<Self> {
        let (client, counts, task) = start(addr, client_id, true, None, false).await?;
        Ok(Self {
            client,
            sent: 0,
            counts,
            task,
        })
    }

    /// Publishes with QoS 1, waiting while the client's queue is full.
    pub async fn publish(
        &mut self,
        topic: &str,
        payload: impl Into<Vec<u8>>,
        retain: bool,
    ) -> std::io::Result<()> {
        self.client
            .publish(topic, QoS::AtLeastOnce, retain, payload.into())
            .await
            .map_err(std::io::Error::other)?;
        self.sent += 1;
        Ok(())
    }

    /// Waits until the broker acknowledged everything published so far, at most `within`.
    pub async fn flush(&self, within: Duration) -> bool {
        let sent = self.sent;
        wait_for(&self.counts, within, |c| {
            c.acked.load(Ordering::SeqCst) >= sent
        })
        .await
    }

    /// How many messages the broker acknowledged.
    pub fn acked(&self) -> u64 {
        self.counts.acked.load(Ordering::SeqCst)
    }

    /// How many times the connection failed.
    pub fn failures(&self) -> u64 {
        self.counts.failures.load(Ordering::SeqCst)
    }

    /// Disconnects cleanly.
    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.task.abort();
    }
}

impl Subscriber {
    /// Connects to a loopback broker with a persistent session and subscribes to `filter` with
    /// QoS 1; waits for the CONNACK, at most 10 s.
    pub async fn connect(addr: SocketAddr, client_id: &str, filter: &str) -> std::io::Result<Self> {
        let (client, counts, task) = start(addr, client_id, false, Some(filter), false).await?;
        Ok(Self {
            client,
            counts,
            task,
        })
    }

    /// Like [`Subscriber::connect`], with a clean session, keeping every message that arrives
    /// for [`Subscriber::messages`].
    pub async fn recording(
        addr: SocketAddr,
        client_id: &str,
        filter: &str,
    ) -> std::io::Result<Self> {
        let (client, counts, task) = start(addr, client_id, true, Some(filter), true).await?;
        Ok(Self {
            client,
            counts,
            task,
        })
    }

    /// The topics and payloads received so far, in order (empty unless
    /// [`Subscriber::recording`]).
    pub fn messages(&self) -> Vec<(String, Vec<u8>)> {
        self.counts
            .messages
            .lock()
            .map(|messages| messages.clone())
            .unwrap_or_default()
    }

    /// Messages received so far.
    pub fn received(&self) -> u64 {
        self.counts.received.load(Ordering::SeqCst)
    }

    /// Waits until `count` messages arrived, at most `within`.
    pub async fn wait_for(&self, count: u64, within: Duration) -> bool {
        wait_for(&self.counts, within, |c| {
            c.received.load(Ordering::SeqCst) >= count
        })
        .await
    }

    /// Disconnects cleanly; the broker keeps the session (and queues for it).
    pub async fn disconnect(self) {
        let _ = self.client.disconnect().await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        self.task.abort();
    }
}
