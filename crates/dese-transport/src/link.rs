//! What a transport implements: a [`Link`] to the broker that moves bytes and reports what
//! happened, and nothing else.

use std::future::Future;
use std::time::Duration;

use dese_backend::Inbound;

use crate::error::{ConnectionFailure, Error};
use crate::options::BrokerOptions;

/// An MQTT client library made into a DESE transport.
///
/// Implemented by `dese_rumqttc::Rumqttc` and `dese_paho::Paho`; the clients of this crate are
/// generic over it (`DeviceClient<Rumqttc>`), and each transport crate names its own aliases.
pub trait Transport: Send + 'static {
    /// The link this transport opens.
    type Link: Link;

    /// Creates the MQTT client for `session` without connecting: the driver calls
    /// [`Link::connect`] when the engine says so. Called inside a tokio runtime; it may spawn
    /// tasks. Errors are configuration or TLS-setup errors, found before any network traffic.
    fn open(broker: &BrokerOptions, session: Session) -> Result<Self::Link, Error>;
}

/// The MQTT session parameters of a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The MQTT client id.
    pub client_id: String,
    /// The keepalive of the first connection ([`Link::connect`] gives each one's).
    pub keepalive: Duration,
    /// MQTT clean session.
    pub clean_session: bool,
    /// The last will of the first connection ([`Link::connect`] gives each one's), published
    /// with QoS 1 by the broker when the connection dies unannounced.
    pub will: Option<Will>,
    /// When a received message is acknowledged to the broker.
    pub acknowledgement: Acknowledgement,
    /// The most publishes the engine keeps in flight (handed to the link, not yet
    /// acknowledged) at once: a link may size its own bookkeeping by it (rumqttc keeps a slot
    /// per in-flight message, for every connection).
    pub in_flight_window: usize,
}

/// When a link acknowledges a received message to the broker (PUBACK).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acknowledgement {
    /// As it arrives: the device's way (the device engine answers a command as it handles it).
    OnReceipt,
    /// When the driver says so ([`Link::ack`]): the backend's way, so that the broker keeps what
    /// the application has not confirmed. At most `window` received messages wait for it; a
    /// link whose MQTT client acknowledges on receipt anyway (paho) stops reading from the
    /// broker beyond it, so that what is acknowledged but not yet confirmed stays bounded.
    Manual {
        /// How many received messages may wait for [`Link::ack`].
        window: usize,
    },
}

/// A last will.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// Its topic.
    pub topic: String,
    /// Its payload.
    pub payload: Vec<u8>,
    /// Whether the broker retains it.
    pub retain: bool,
}

/// What a link reports to the driver, in the order it happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkEvent {
    /// The broker accepted a connection (CONNACK 0). The driver subscribes and publishes
    /// again what was never acknowledged.
    Connected,
    /// A message arrived on a subscription.
    Message {
        /// Its topic.
        topic: String,
        /// Its payload.
        payload: Vec<u8>,
        /// The retain flag as delivered.
        retain: bool,
        /// The link's name for it, for [`Link::ack`]: unique for the link's lifetime, so that an
        /// acknowledgement meant for an earlier connection is recognised and ignored.
        delivery: Inbound,
    },
    /// The broker acknowledged (PUBACK) the message published with this tag.
    Acked(u64),
    /// The broker refused a subscription of [`Link::subscribe`] (a SUBACK failure, such as an
    /// ACL that denies the filter): no message on it will arrive.
    SubscriptionRefused {
        /// The filter.
        filter: String,
    },
    /// A connection attempt failed or the connection was lost. Publishes not yet acknowledged
    /// are the driver's to replay; the link forgets them.
    Lost(ConnectionFailure),
    /// The MQTT client is gone for good.
    Closed,
}

/// One MQTT client under a driver task. Every method returns at once (none waits for the
/// network) except [`Link::next`] and [`Link::disconnect`].
pub trait Link: Send + 'static {
    /// The next thing that happened.
    ///
    /// # Cancel safety
    ///
    /// Must be cancel safe: the driver selects on it with timers and requests.
    fn next(&mut self) -> impl Future<Output = LinkEvent> + Send;

    /// Starts a connection attempt with this keepalive and last will (each connection's own:
    /// a device's will is stamped with the time its connection opens); its result arrives as
    /// [`LinkEvent::Connected`] or [`LinkEvent::Lost`].
    fn connect(&mut self, keepalive: Duration, will: Option<Will>);

    /// Subscribes to these filters with QoS 1; a filter the broker refuses is reported as
    /// [`LinkEvent::SubscriptionRefused`].
    fn subscribe(&mut self, filters: &[String]);

    /// Acknowledges a received message to the broker (PUBACK), with
    /// [`Acknowledgement::Manual`]. The driver
    /// calls it in the order the messages arrived. A delivery of an earlier connection is
    /// ignored: after a reconnection the broker delivers those messages again.
    fn ack(&mut self, delivery: Inbound);

    /// Publishes with QoS 1; the broker's acknowledgement arrives as [`LinkEvent::Acked`] with
    /// `tag`. Returns false when the message could not even be handed to the client (the
    /// driver keeps it and publishes it again after the next connection).
    fn publish(&mut self, tag: u64, topic: &str, payload: &[u8], retain: bool) -> bool;

    /// Closes the connection so that a new one can start (a [`LinkEvent::Lost`] follows):
    /// used when the keepalive changed. Closes cleanly, so the last will does not fire.
    fn reconnect(&mut self);

    /// Disconnects cleanly (the broker does not publish the last will), after the
    /// acknowledgements already released, waiting a bounded time for the DISCONNECT to reach
    /// the broker.
    fn disconnect(&mut self) -> impl Future<Output = ()> + Send;
}
