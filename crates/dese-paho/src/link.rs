//! The [`Link`] over paho-mqtt: paho's callbacks and delivery tokens turned into the driver's
//! events.

use std::time::Duration;

use dese_transport::{
    BrokerOptions, ConnectionFailure, Error, ErrorKind, Link, LinkEvent, Session, TlsFiles,
    Transport, Will,
};
use paho_mqtt as paho;
use tokio::sync::mpsc;

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
/// Callbacks run on the C library's threads and only send into a channel, so they never block
/// it. The C library is the one this package's build script builds, with the fix for a double
/// free after a failed QoS 1 write (docs/transports.md).
pub struct PahoLink {
    client: paho::AsyncClient,
    recipe: Recipe,
    secure: bool,
    /// `host:port`, to tell a refused TLS handshake from an unreachable broker.
    address: String,
    events: mpsc::UnboundedSender<LinkEvent>,
    incoming: mpsc::UnboundedReceiver<LinkEvent>,
}

impl std::fmt::Debug for PahoLink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PahoLink")
            .field("server", &self.client.server_uri())
            .field("client_id", &self.recipe.session.client_id)
            .finish_non_exhaustive()
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
        let client = paho::CreateOptionsBuilder::new_v3()
            .server_uri(&uri)
            .client_id(&recipe.session.client_id)
            .persistence(paho::PersistenceType::None)
            .create_client()
            .map_err(|_| Error::BrokerUrl {
                url: uri.clone(),
                reason: "the paho client cannot be created for this address and client id",
            })?;
        let (events, incoming) = mpsc::unbounded_channel();
        let lost = events.clone();
        client.set_connection_lost_callback(move |_| {
            let failure = ConnectionFailure::new(ErrorKind::Io, "connection lost");
            let _ = lost.send(LinkEvent::Lost(failure));
        });
        let arrived = events.clone();
        client.set_message_callback(move |_, message| {
            if let Some(message) = message {
                let _ = arrived.send(LinkEvent::Message {
                    topic: message.topic().to_string(),
                    payload: message.payload().to_vec(),
                    retain: message.retained(),
                });
            }
        });
        Ok(Self {
            client,
            recipe,
            secure: broker.is_secure(),
            address: broker.address(),
            events,
            incoming,
        })
    }
}

impl Link for PahoLink {
    async fn next(&mut self) -> LinkEvent {
        // Cancel safe: the only await is the channel's receive.
        self.incoming.recv().await.unwrap_or(LinkEvent::Closed)
    }

    fn connect(&mut self, keepalive: Duration, will: Option<Will>) {
        if will.is_some() {
            self.recipe.session.will = will;
        }
        let options = match self.recipe.options(keepalive) {
            Ok(options) => options,
            Err(error) => {
                let failure = ConnectionFailure::new(error.kind(), error.to_string());
                let _ = self.events.send(LinkEvent::Lost(failure));
                return;
            }
        };
        let token = self.client.connect(options);
        let events = self.events.clone();
        let tls_address = self.secure.then(|| self.address.clone());
        tokio::spawn(async move {
            let event = match token.await {
                Ok(_) => LinkEvent::Connected,
                Err(error) => LinkEvent::Lost(failure(&error, tls_address).await),
            };
            let _ = events.send(event);
        });
    }

    fn subscribe(&mut self, filters: &[String]) {
        let qos = vec![1; filters.len()];
        // The outcome is not awaited: a refused subscription shows as messages that never come,
        // and a lost connection is reported by the callback.
        drop(self.client.subscribe_many(filters, &qos));
    }

    fn publish(&mut self, tag: u64, topic: &str, payload: &[u8], retain: bool) -> bool {
        let message = if retain {
            paho::Message::new_retained(topic, payload, 1)
        } else {
            paho::Message::new(topic, payload, 1)
        };
        let Ok(token) = self.client.try_publish(message) else {
            return false;
        };
        let events = self.events.clone();
        // The token completes on the broker's PUBACK; a failed one (the connection dropped)
        // is not an acknowledgement, and the driver replays the message.
        tokio::spawn(async move {
            if token.await.is_ok() {
                let _ = events.send(LinkEvent::Acked(tag));
            }
        });
        true
    }

    fn reconnect(&mut self) {
        let token = self.client.disconnect(None);
        let events = self.events.clone();
        tokio::spawn(async move {
            let _ = tokio::time::timeout(Duration::from_secs(2), token).await;
            let failure =
                ConnectionFailure::new(ErrorKind::Io, "closed to reconnect with a new keepalive");
            let _ = events.send(LinkEvent::Lost(failure));
        });
    }

    async fn disconnect(&mut self) {
        if !self.client.is_connected() {
            return;
        }
        // The C library sends the DISCONNECT once the publishes in flight are acknowledged, or
        // after 2 s, so that what was already written is not cut off by the goodbye.
        let options = paho::DisconnectOptionsBuilder::new()
            .timeout(Duration::from_secs(2))
            .finalize();
        let token = self.client.disconnect(options);
        let _ = tokio::time::timeout(Duration::from_secs(3), token).await;
    }
}

/// What every connection's options are made of: plain data, as paho's builders cannot move
/// between threads.
#[derive(Debug)]
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
/// so TLS was refused.
async fn failure(error: &paho::Error, tls_address: Option<String>) -> ConnectionFailure {
    use paho::ConnectReturnCode as Code;
    let kind = match error {
        paho::Error::ConnectReturn(
            Code::BadUserNameOrPassword | Code::NotAuthorized | Code::IdentifierRejected,
        ) => ErrorKind::Auth,
        paho::Error::SslNotSupported => ErrorKind::Tls,
        paho::Error::TcpTlsConnectFailure | paho::Error::Failure => match tls_address {
            Some(address) if reachable(&address).await => ErrorKind::Tls,
            _ => ErrorKind::Io,
        },
        _ => ErrorKind::Io,
    };
    ConnectionFailure::new(kind, error.to_string())
}

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
