//! An in-process rumqttd broker: the embedded default, for the quickstart and for tests that
//! want a second broker implementation beside Mosquitto.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use rumqttd::{Broker, Config, ConnectionSettings, Notification, RouterConfig, ServerSettings};

/// A rumqttd broker running on threads of this process, on a free loopback port.
///
/// rumqttd has no way to stop a broker, so it runs until the process ends; each one takes a
/// few threads and little memory.
///
/// rumqttd refuses client ids that contain `/`, `+`, `#` or `$`, and a refused client id
/// breaks the broker for good: the next connection with the same id panics on a leftover will
/// handler and poisons a mutex every later connection needs. The DESE clients' ids never
/// contain those characters.
#[derive(Debug)]
pub struct EmbeddedBroker {
    addr: SocketAddr,
}

/// Why an embedded broker could not be started.
#[derive(Debug, thiserror::Error)]
#[error("the embedded rumqttd broker did not start: {0}")]
pub struct EmbeddedError(String);

impl EmbeddedBroker {
    /// Starts a broker on a free loopback port and proves the port is its own: a message
    /// published over TCP to that port reaches the broker's in-process link.
    pub fn start() -> Result<Self, EmbeddedError> {
        let mut last = String::new();
        for _ in 0..5 {
            match Self::try_start() {
                Ok(broker) => return Ok(broker),
                Err(e) => last = e,
            }
        }
        Err(EmbeddedError(last))
    }

    fn try_start() -> Result<Self, String> {
        let port = crate::mosquitto::free_port().map_err(|e| e.to_string())?;
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let mut broker = Broker::new(config(addr));
        let (mut probe_tx, mut probe_rx) = broker
            .link("dese-testkit-probe")
            .map_err(|e| e.to_string())?;
        let nonce = format!("dese-testkit/probe/{}-{port}", std::process::id());
        probe_tx.subscribe(&nonce).map_err(|e| e.to_string())?;
        std::thread::Builder::new()
            .name(format!("rumqttd-{port}"))
            .spawn(move || {
                if let Err(e) = broker.start() {
                    eprintln!("embedded rumqttd on {addr} stopped: {e}");
                }
            })
            .map_err(|e| e.to_string())?;

        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if publish_once(addr, &nonce).is_ok() {
                let wait = Instant::now() + Duration::from_millis(500);
                while let Ok(Some(notification)) = probe_rx.recv_deadline(wait) {
                    if let Notification::Forward(forward) = notification {
                        if forward.publish.topic == nonce.as_bytes() {
                            return Ok(Self { addr });
                        }
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        Err(format!("port {port} did not answer as this broker"))
    }

    /// Its address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Its port.
    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `mqtt://127.0.0.1:{port}`.
    pub fn url(&self) -> String {
        format!("mqtt://{}", self.addr)
    }
}

fn config(addr: SocketAddr) -> Config {
    let server = ServerSettings {
        name: "dese-v4".into(),
        listen: addr,
        tls: None,
        next_connection_delay_ms: 1,
        connections: ConnectionSettings {
            connection_timeout_ms: 10_000,
            max_payload_size: 64 * 1024,
            max_inflight_count: 500,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    Config {
        id: 0,
        router: RouterConfig {
            max_connections: 20_010,
            max_outgoing_packet_count: 500,
            max_segment_size: 100 * 1024 * 1024,
            max_segment_count: 10,
            ..RouterConfig::default()
        },
        v4: Some(HashMap::from([("dese".to_string(), server)])),
        ..Config::default()
    }
}

/// One MQTT 3.1.1 CONNECT, its CONNACK, a QoS 0 PUBLISH to `topic` and a DISCONNECT, written
/// by hand, with a client id of its own per attempt.
fn publish_once(addr: SocketAddr, topic: &str) -> std::io::Result<()> {
    static ATTEMPT: AtomicU32 = AtomicU32::new(0);
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(1))?;
    stream.set_read_timeout(Some(Duration::from_secs(2)))?;
    let id = format!(
        "dese-testkit-prober-{}-{}",
        std::process::id(),
        ATTEMPT.fetch_add(1, Ordering::Relaxed)
    );
    let id = id.as_bytes();
    let id_len = u8::try_from(id.len()).map_err(|_| std::io::Error::other("client id"))?;
    let mut connect = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 10, 0, id_len];
    connect.extend_from_slice(id);
    let connect_len = u8::try_from(connect.len()).map_err(|_| std::io::Error::other("connect"))?;
    let mut packet = vec![0x10, connect_len];
    packet.extend(connect);
    stream.write_all(&packet)?;
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack)?;
    if connack[0] != 0x20 || connack[3] != 0 {
        return Err(std::io::Error::other("not accepted"));
    }
    let topic = topic.as_bytes();
    let length = u16::try_from(topic.len()).map_err(|_| std::io::Error::other("topic"))?;
    let mut publish = length.to_be_bytes().to_vec();
    publish.extend_from_slice(topic);
    publish.extend_from_slice(b"probe");
    let remaining = u8::try_from(publish.len()).map_err(|_| std::io::Error::other("topic"))?;
    let mut packet = vec![0x30, remaining];
    packet.extend(publish);
    packet.extend([0xE0, 0]); // DISCONNECT
    stream.write_all(&packet)?;
    std::thread::sleep(Duration::from_millis(50));
    Ok(())
}
