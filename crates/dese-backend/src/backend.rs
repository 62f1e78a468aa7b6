//! The backend engine.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::time::{Duration, Instant};

use dese_device::{Backoff, MessageId, SettingsError};
use dese_protocol::{
    Action, Alert, Command, CommandId, CommandResponse, Config, DecodeError, Decoder, DeviceConfig,
    DeviceId, DeviceState, Direction, Message, MessageKind, OrgId, QoS, Reason, ShareGroup, Status,
    Telemetry, Timestamp, Topic, TopicFilter, encode,
};

use crate::devices::Devices;
use crate::inbox::{Ack, Inbound, Inbox};
use crate::limit::{Bucket, RateLimit};
use crate::outbox::Outbox;

/// How often the device table is pruned.
const PRUNE_EVERY: Duration = Duration::from_secs(60);

/// The backend's tuning.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// When set, only these organizations are served; messages of others are dropped.
    pub allowed_orgs: Option<BTreeSet<OrgId>>,
    /// The decoder: size and depth limits, and whether organization ids must be UUIDs.
    pub decoder: Decoder,
    /// How long a command waits for its response. The protocol's default: 30 s.
    pub command_timeout: Duration,
    /// How many times a timed-out command is sent again, with the same `command_id`.
    /// Default 0.
    pub retries: u32,
    /// The wait before the first retry; it doubles for each further one. Default 1 s.
    pub retry_backoff: Duration,
    /// How many recent telemetry messages are remembered per device, to recognise the copies
    /// QoS 1 delivers again (the same bytes: distinct readings that share a timestamp are
    /// never taken for copies). Default 32, 1 to 65,536.
    pub telemetry_window: usize,
    /// How many finished commands are remembered, to report duplicate and late responses.
    /// Default 4096.
    pub finished_window: usize,
    /// Per-device rate limit; `None` turns it off. Default [`RateLimit::DEFAULT`].
    pub rate_limit: Option<RateLimit>,
    /// Names this backend instance in the command ids it generates, so that several instances
    /// never reuse each other's ids: a few id characters (no `/`, `+`, `#`, controls). Default
    /// `b`.
    pub instance: String,
    /// How many events the application may hold without acknowledging them
    /// ([`Backend::ack`]). When it holds that many, [`Backend::has_room`] is false and the
    /// transport stops reading from the broker, which keeps the rest. Default 1,024. An
    /// application that stores in batches wants it a few times its batch, so that one batch
    /// commits while the next arrives.
    pub receive_window: usize,
    /// How many commands and configs may wait for the broker's acknowledgement, queued or in
    /// flight; beyond it [`Backend::send_command`] and [`Backend::send_config`] refuse with
    /// [`SendError::OutboxFull`]. A retry may add one copy per pending command on top. Default
    /// 16,384 (a config for each of ten thousand devices fits).
    pub outbox_capacity: usize,
    /// How many of the backend's publishes may be in flight (handed to the transport, not yet
    /// acknowledged by the broker) at once. Default 64.
    pub in_flight_window: usize,
    /// When to connect again after a lost connection: the devices' rule (exponential, full
    /// jitter, the attempt count reset only after a connection stayed up).
    pub backoff: Backoff,
    /// How many devices the engine keeps state for (presence, telemetry window, rate-limit
    /// bucket). Device ids come from topics anyone with broker access may invent, so the table
    /// is bounded: when a new device would not fit, the longest silent are forgotten first
    /// (counted in [`Counters::devices_evicted`]; no event says so). Default 100,000: about
    /// 80 MB with a reading each (measured), up to 512 bytes more a device with full telemetry
    /// windows.
    pub max_devices: usize,
    /// How long a device stays silent, while the backend is connected, before the engine drops
    /// its telemetry window and the digests of its recent statuses; its presence is kept, and
    /// a device with neither presence nor a bucket that is not yet full again is forgotten.
    /// (A rate-limit bucket is dropped as soon as it is full again, silent or not.) Default 1
    /// hour.
    pub forget_after: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            allowed_orgs: None,
            decoder: Decoder::new(),
            command_timeout: Duration::from_secs(30),
            retries: 0,
            retry_backoff: Duration::from_secs(1),
            telemetry_window: 32,
            finished_window: 4096,
            rate_limit: Some(RateLimit::DEFAULT),
            instance: String::from("b"),
            receive_window: 1024,
            outbox_capacity: 16_384,
            in_flight_window: 64,
            backoff: Backoff::DEFAULT,
            max_devices: 100_000,
            forget_after: Duration::from_secs(3_600),
        }
    }
}

impl Settings {
    /// Refuses settings that cannot work, naming the setting: a timeout or backoff of zero or
    /// over a day (`1e19` seconds would overflow the clock), a rate limit of zero or not a
    /// number, a zero window, outbox or device table, an instance name that cannot be part of
    /// a command id. [`BackendClient`]s call it before they start; [`Backend::new`] clamps what
    /// it is given instead of failing.
    ///
    /// [`BackendClient`]: https://docs.rs/dese-transport
    ///
    /// ```
    /// use std::time::Duration;
    /// use dese_backend::{RateLimit, Settings};
    ///
    /// assert!(Settings::default().check().is_ok());
    /// let forever = Settings { command_timeout: Duration::from_secs(10_000_000_000_000_000_000), ..Settings::default() };
    /// assert_eq!(forever.check().unwrap_err().setting(), "command_timeout");
    /// let stuck = Settings { rate_limit: Some(RateLimit { burst: 10, per_second: 0.0 }), ..Settings::default() };
    /// assert_eq!(stuck.check().unwrap_err().setting(), "rate_limit.per_second");
    /// ```
    pub fn check(&self) -> Result<(), SettingsError> {
        SettingsError::duration("command_timeout", self.command_timeout, true)?;
        SettingsError::duration("retry_backoff", self.retry_backoff, false)?;
        SettingsError::duration("forget_after", self.forget_after, true)?;
        if self.retries > 100 {
            return Err(SettingsError::new(
                "retries",
                format!("{} is more than the largest, 100", self.retries),
            ));
        }
        SettingsError::count(
            "telemetry_window",
            self.telemetry_window,
            65_536,
            "would remember no reading to recognise its copies",
        )?;
        SettingsError::count(
            "finished_window",
            self.finished_window,
            1 << 20,
            "would forget every command as it finishes",
        )?;
        SettingsError::count(
            "receive_window",
            self.receive_window,
            1 << 16,
            "would never read a message",
        )?;
        SettingsError::count(
            "outbox_capacity",
            self.outbox_capacity,
            1 << 22,
            "would refuse every command",
        )?;
        SettingsError::count(
            "in_flight_window",
            self.in_flight_window,
            u16::MAX as usize,
            "would never publish anything",
        )?;
        SettingsError::count(
            "max_devices",
            self.max_devices,
            1 << 26,
            "would remember no device",
        )?;
        if let Some(limit) = self.rate_limit {
            limit.check()?;
        }
        let sample = format!("cmd-{}-0-0", self.instance);
        if let Err(error) = CommandId::from_string(sample.clone()) {
            return Err(SettingsError::new("instance", error.to_string()));
        }
        if instance_of(&sample) != Some(self.instance.as_str()) {
            return Err(SettingsError::new(
                "instance",
                "must not be empty: command ids carry it",
            ));
        }
        self.backoff.check()
    }
}

/// Why [`Backend::send_command`] or [`Backend::send_config`] could not queue a message.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SendError {
    /// The generated command id is not a valid id: [`Settings::instance`] holds a character
    /// ids cannot, or is too long.
    #[error("cannot make a command id from the instance name")]
    Id(#[source] dese_protocol::IdError),
    /// The command is not one a device would accept (an unknown action with an empty name, or
    /// parameters too large).
    #[error("cannot encode the command")]
    Encode(#[source] dese_protocol::EncodeError),
    /// [`Settings::outbox_capacity`] messages already wait for the broker (it is down, or slower
    /// than the sender): nothing was queued.
    ///
    /// Also returned by [`Backend::send_config`].
    #[error("the outbox is full: {capacity} messages already wait for the broker")]
    OutboxFull {
        /// The capacity.
        capacity: usize,
    },
}

/// A device: its organization and id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceKey {
    /// The organization.
    pub org: OrgId,
    /// The device.
    pub device: DeviceId,
}

/// `org/device`, as the topics name it.
impl core::fmt::Display for DeviceKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}/{}", self.org, self.device)
    }
}

impl DeviceKey {
    fn of(topic: &Topic) -> Self {
        Self {
            org: topic.org().clone(),
            device: topic.device().clone(),
        }
    }
}

/// What the backend knows of a device's presence, from its retained status and last will.
#[derive(Debug, Clone, PartialEq)]
pub struct Presence {
    /// The last reported state.
    pub state: DeviceState,
    /// When the device reported it.
    pub since: Timestamp,
    /// The firmware version it reported.
    pub firmware_version: String,
    /// When the backend last heard from the device, any message.
    pub last_seen: Instant,
}

/// A message for the transport to publish; report the broker's acknowledgement with
/// [`Backend::handle_acked`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Identifies it for [`Backend::handle_acked`].
    pub id: MessageId,
    /// The device's `commands` or `config` topic.
    pub topic: String,
    /// The JSON payload.
    pub payload: Vec<u8>,
    /// Always QoS 1.
    pub qos: QoS,
    /// Never retained.
    pub retain: bool,
}

/// How a command ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The device answered `success: true`.
    Completed(CommandResponse),
    /// The device answered `success: false`.
    Failed(CommandResponse),
    /// No answer within the timeout, after every retry.
    TimedOut {
        /// How many times the command was sent.
        attempts: u32,
    },
}

/// An event, and what the application gives back once the event is safe.
///
/// Events of a received message that the application must confirm carry an [`Ack`] (on the
/// last event of that message, when it produced several: a status's
/// [`Event::PresenceChanged`] comes before its [`Event::Status`], which carries it). Give it to
/// [`Backend::ack`] after storing what matters; the broker's acknowledgement waits for it.
/// Events without one need nothing: refusals and duplicates are acknowledged by the engine,
/// timeouts and retries come from no message.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivered {
    /// What happened.
    pub event: Event,
    /// What to give back to [`Backend::ack`] once the event is safe.
    pub ack: Option<Ack>,
}

/// What happened, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// Time to open a connection again, after a loss and the backoff (the first connection the
    /// transport opens by itself).
    Connect,
    /// New readings.
    Telemetry {
        /// The device.
        device: DeviceKey,
        /// The readings.
        telemetry: Telemetry,
    },
    /// A status (including a last will).
    Status {
        /// The device.
        device: DeviceKey,
        /// The status.
        status: Status,
    },
    /// A device's state changed.
    PresenceChanged {
        /// The device.
        device: DeviceKey,
        /// The state before, if known.
        from: Option<DeviceState>,
        /// The state now.
        to: DeviceState,
    },
    /// A device's retained status was cleared (an empty retained message): it was removed.
    PresenceCleared {
        /// The device.
        device: DeviceKey,
    },
    /// An alert.
    Alert {
        /// The device.
        device: DeviceKey,
        /// The alert.
        alert: Alert,
    },
    /// A command finished.
    Command {
        /// The device.
        device: DeviceKey,
        /// Its id.
        command_id: CommandId,
        /// How it ended.
        outcome: Outcome,
    },
    /// A timed-out command was sent again, with the same id.
    CommandRetried {
        /// The device.
        device: DeviceKey,
        /// Its id.
        command_id: CommandId,
        /// This sending's number, from 2.
        attempt: u32,
    },
    /// A response arrived after its command had timed out (the device processed it anyway).
    LateResponse {
        /// The device.
        device: DeviceKey,
        /// The response.
        response: CommandResponse,
    },
    /// A response to a command of this instance that it does not know (forgotten: older than
    /// [`Settings::finished_window`]), or to a command id of no instance's form.
    UnknownResponse {
        /// The device.
        device: DeviceKey,
        /// The response.
        response: CommandResponse,
    },
    /// A response to a command another backend instance sent (its instance name is in the
    /// command id): that instance tracks it; this one only reports it. Every instance of a
    /// group sees every response, so that each sees the answers to its own commands.
    ResponseToAnotherInstance {
        /// The device.
        device: DeviceKey,
        /// The instance that sent the command, as its command id names it.
        instance: String,
        /// The response.
        response: CommandResponse,
    },
    /// A message delivered again (QoS 1 is at least once): reported, not processed as new.
    Duplicate {
        /// The device.
        device: DeviceKey,
        /// The message kind.
        kind: MessageKind,
    },
    /// A message refused: invalid, another tenant's, not for the backend, or over the rate.
    Dropped {
        /// The topic, shortened if long.
        topic: String,
        /// Why, as a category for counting: `error.reason()`.
        reason: DropReason,
        /// Why, in full: for a message the decoder refused, its [`DecodeError`] with the field
        /// path and the problem.
        error: DropError,
    },
}

/// Why the backend dropped a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum DropReason {
    /// The decoder refused it.
    Invalid(Reason),
    /// Its organization is not in the allow-list.
    OrgNotAllowed,
    /// A message the backend itself sends (commands, config).
    WrongDirection,
    /// The device exceeded its rate limit.
    RateLimited,
}

impl DropReason {
    /// A label for counters: the decoder's reason, or `org_not_allowed`, `wrong_direction`,
    /// `rate_limited`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Invalid(reason) => reason.as_str(),
            Self::OrgNotAllowed => "org_not_allowed",
            Self::WrongDirection => "wrong_direction",
            Self::RateLimited => "rate_limited",
        }
    }
}

/// What was wrong with a message the backend dropped.
///
/// ```
/// use dese_backend::{DropError, DropReason};
/// use dese_protocol::{Reason, decode};
///
/// let payload = br#"{"status":"asleep","firmware_version":"1.0","timestamp":"2025-01-27T10:00:00Z"}"#;
/// let refused = decode("devices/acme/pool-1/status", payload).unwrap_err();
/// let error = DropError::Decode(refused);
/// assert_eq!(error.reason(), DropReason::Invalid(Reason::NotOneOf));
/// assert_eq!(error.invalid().map(|i| i.path.as_str()), Some("status"));
/// ```
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum DropError {
    /// The decoder refused the topic or the payload.
    #[error(transparent)]
    Decode(DecodeError),
    /// The organization is not in [`Settings::allowed_orgs`].
    #[error("organization {0} is not served here")]
    OrgNotAllowed(OrgId),
    /// A kind of message that only the backend sends (commands, config).
    #[error("{0} messages go to devices")]
    WrongDirection(MessageKind),
    /// The device sent faster than [`Settings::rate_limit`] allows.
    #[error("device {0} is over its rate")]
    RateLimited(DeviceKey),
    /// A device answered a command that was sent to another device; counted as a tenant
    /// mismatch.
    #[error("command_id {command_id} was sent to {sent_to}")]
    NotItsCommand {
        /// The command's id.
        command_id: CommandId,
        /// The device it was sent to.
        sent_to: DeviceKey,
    },
}

impl DropError {
    /// The category, for counting.
    pub fn reason(&self) -> DropReason {
        match self {
            Self::Decode(error) => DropReason::Invalid(error.reason()),
            Self::OrgNotAllowed(_) => DropReason::OrgNotAllowed,
            Self::WrongDirection(_) => DropReason::WrongDirection,
            Self::RateLimited(_) => DropReason::RateLimited,
            Self::NotItsCommand { .. } => DropReason::Invalid(Reason::TenantMismatch),
        }
    }

    /// The field at fault and what is wrong with it, when the payload was JSON but not a valid
    /// message.
    pub fn invalid(&self) -> Option<&dese_protocol::Invalid> {
        match self {
            Self::Decode(error) => error.invalid(),
            _ => None,
        }
    }
}

/// Counters since the engine started.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    /// Messages accepted, by kind.
    pub accepted: BTreeMap<MessageKind, u64>,
    /// Messages dropped, by reason.
    pub dropped: BTreeMap<DropReason, u64>,
    /// Duplicates recognised, by kind.
    pub duplicates: BTreeMap<MessageKind, u64>,
    /// Commands sent (first sendings).
    pub commands_sent: u64,
    /// Commands the device answered with `success: true`.
    pub commands_completed: u64,
    /// Commands the device answered with `success: false`.
    pub commands_failed: u64,
    /// Commands that timed out after every retry.
    pub commands_timed_out: u64,
    /// Retries sent.
    pub retries: u64,
    /// Responses after the timeout.
    pub late_responses: u64,
    /// Responses to unknown commands.
    pub unknown_responses: u64,
    /// Responses to commands of other instances (in a group, every instance sees them all).
    pub responses_to_other_instances: u64,
    /// Copies of finished commands (timed out, or answered while a retry waited) taken back
    /// before they were ever handed to the transport.
    pub commands_withdrawn: u64,
    /// Connections the broker accepted.
    pub connections: u64,
    /// Connections lost.
    pub disconnects: u64,
    /// Devices forgotten to make room in a full table ([`Settings::max_devices`]).
    pub devices_evicted: u64,
}

#[derive(Debug, Clone)]
enum Wait {
    /// Sent; waiting for the answer until the deadline.
    Answer { deadline: Instant },
    /// Timed out; sending again at `at`.
    Retry { at: Instant },
}

#[derive(Debug, Clone)]
struct Pending {
    device: DeviceKey,
    topic: String,
    payload: Vec<u8>,
    attempts: u32,
    wait: Wait,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Finished {
    /// Answered by the response whose event carries this ack.
    Answered(Option<Ack>),
    TimedOut,
}

/// The connection, as the engine sees it.
#[derive(Debug, Clone, Copy)]
enum Link {
    /// Down; `retry_at` is when to ask for the next attempt (none while one is under way).
    Down {
        retry_at: Option<Instant>,
        attempt: u32,
    },
    Up {
        since: Instant,
        attempt: u32,
    },
}

/// What became of a received message.
enum Fate {
    /// The application must confirm its events.
    Accepted,
    /// Refused: the engine acknowledges it.
    Refused,
    /// A redelivery: acknowledged once the application has confirmed the original (its ack,
    /// if the original is still remembered).
    Duplicate(Option<Ack>),
}

/// The protocol's behaviour for a backend serving many devices of many organizations, without
/// IO and without a clock.
///
/// Feed it every message from the subscriptions ([`Backend::handle_message`]), the broker's
/// acknowledgements of what it publishes ([`Backend::handle_acked`]), the connection's ups and
/// downs ([`Backend::handle_connected`], [`Backend::handle_disconnected`]) and the time
/// ([`Backend::handle_timeout`]); send commands and config with [`Backend::send_command`] and
/// [`Backend::send_config`]; give back what the application confirmed with [`Backend::ack`].
/// After every input drain [`Backend::poll_transmit`] (publish), [`Backend::poll_ack`]
/// (acknowledge to the broker) and [`Backend::poll_event`], then ask
/// [`Backend::poll_timeout`] when to call `handle_timeout`. Read the next message from the
/// broker only while [`Backend::has_room`].
#[derive(Debug)]
pub struct Backend {
    settings: Settings,
    link: Link,
    devices: Devices,
    /// When to prune the device table next: set by the first message.
    next_prune: Option<Instant>,
    pending: HashMap<CommandId, Pending>,
    finished: HashMap<CommandId, Finished>,
    finished_order: VecDeque<CommandId>,
    next_command: u64,
    outbox: Outbox,
    inbox: Inbox,
    events: VecDeque<Delivered>,
    counters: Counters,
}

impl Backend {
    /// A backend with these settings, not connected. The transport opens the first connection
    /// when it is ready ([`Backend::handle_connected`] when it is up); after a loss the engine
    /// asks for the next one with [`Event::Connect`].
    ///
    /// Some settings that [`Settings::check`] refuses are made harmless, not refused: windows
    /// of at least 1, durations of at most a day. A rate limit or a backoff is used as given (a
    /// burst of 0 refuses every message): check the settings first.
    pub fn new(mut settings: Settings) -> Self {
        let longest = dese_device::LONGEST;
        settings.command_timeout = settings.command_timeout.min(longest);
        settings.retry_backoff = settings.retry_backoff.min(longest);
        settings.forget_after = settings.forget_after.clamp(Duration::from_secs(1), longest);
        settings.in_flight_window = settings.in_flight_window.max(1);
        settings.receive_window = settings.receive_window.max(1);
        settings.telemetry_window = settings.telemetry_window.clamp(1, 65_536);
        Self {
            link: Link::Down {
                retry_at: None,
                attempt: 0,
            },
            devices: Devices::new(settings.max_devices),
            next_prune: None,
            pending: HashMap::new(),
            finished: HashMap::new(),
            finished_order: VecDeque::new(),
            next_command: 0,
            outbox: Outbox::new(settings.outbox_capacity),
            inbox: Inbox::default(),
            events: VecDeque::new(),
            counters: Counters::default(),
            settings,
        }
    }

    /// What to subscribe to: the four kinds devices send, for every organization (or each
    /// allowed one). With a `group`, several instances split what splits safely: telemetry and
    /// alerts go through the shared subscription (each message to one instance of the group),
    /// while statuses and command responses are subscribed by every instance on its own, so that
    /// each has the whole presence (brokers deliver retained statuses only to plain
    /// subscriptions) and sees the answers to its own commands.
    pub fn subscriptions(&self, group: Option<&ShareGroup>) -> Vec<TopicFilter> {
        let scopes: Vec<TopicFilter> = match &self.settings.allowed_orgs {
            Some(orgs) => orgs.iter().cloned().map(TopicFilter::org).collect(),
            None => vec![TopicFilter::all()],
        };
        let mut out = Vec::new();
        for scope in scopes {
            for kind in MessageKind::ALL
                .into_iter()
                .filter(|k| k.direction() == Direction::DeviceToBackend)
            {
                let filter = scope.clone().kind(kind);
                let splits = matches!(kind, MessageKind::Telemetry | MessageKind::Alert);
                out.push(match group {
                    Some(group) if splits => filter.shared(group.clone()),
                    _ => filter,
                });
            }
        }
        out
    }

    /// The counters.
    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// What the backend knows of a device's presence.
    pub fn presence(&self, org: &OrgId, device: &DeviceId) -> Option<&Presence> {
        self.devices
            .get(&DeviceKey {
                org: org.clone(),
                device: device.clone(),
            })?
            .presence
            .as_ref()
    }

    /// Every device whose presence is known.
    pub fn devices(&self) -> impl Iterator<Item = (&DeviceKey, &Presence)> {
        self.devices
            .iter()
            .filter_map(|(key, tracked)| Some((key, tracked.presence.as_ref()?)))
    }

    /// How many devices the engine keeps state for: at most [`Settings::max_devices`].
    pub fn tracked_devices(&self) -> usize {
        self.devices.len()
    }

    /// How many commands wait for their answer (or their retry).
    pub fn commands_pending(&self) -> usize {
        self.pending.len()
    }

    /// Whether the link is up.
    pub fn is_connected(&self) -> bool {
        matches!(self.link, Link::Up { .. })
    }

    /// When the next connection attempt is due, while the link is down and waiting out its
    /// backoff (`None` while connected, or while an attempt is under way): for a log line
    /// that says how long until the next try.
    pub fn reconnect_at(&self) -> Option<Instant> {
        match self.link {
            Link::Down { retry_at, .. } => retry_at,
            Link::Up { .. } => None,
        }
    }

    /// Whether the transport may read the next message from the broker: false while the
    /// application holds [`Settings::receive_window`] unconfirmed events, or as many received
    /// messages wait for their acknowledgement. Reading stops, the broker keeps the rest, and
    /// memory stays bounded.
    pub fn has_room(&self) -> bool {
        let window = self.settings.receive_window.max(1);
        self.inbox.held() < window && self.inbox.owed() < window
    }

    /// Events the application holds without having confirmed them.
    pub fn unconfirmed(&self) -> usize {
        self.inbox.held()
    }

    /// Messages of the backend's (commands, retries, config) waiting for the broker, queued or
    /// in flight.
    pub fn outbox_len(&self) -> usize {
        self.outbox.len()
    }

    /// Sends `action` to a device: queues the command and returns its `command_id`. The command
    /// then ends in an [`Event::Command`] (completed, failed or timed out); a command that timed
    /// out is withdrawn, never published afterwards.
    pub fn send_command(
        &mut self,
        now: Instant,
        utc: Timestamp,
        org: OrgId,
        device: DeviceId,
        action: Action,
    ) -> Result<CommandId, SendError> {
        self.check_room()?;
        self.next_command += 1;
        let id = format!(
            "cmd-{}-{}-{}",
            self.settings.instance,
            utc.unix_millis(),
            self.next_command
        );
        let command_id = CommandId::from_string(id).map_err(SendError::Id)?;
        let key = DeviceKey { org, device };
        let command = Command {
            command_id: command_id.clone(),
            device_id: key.device.clone(),
            action,
            timestamp: utc,
        };
        let payload = encode(&Message::Command(command)).map_err(SendError::Encode)?;
        let topic =
            Topic::new(key.org.clone(), key.device.clone(), MessageKind::Commands).to_string();
        self.outbox
            .push(topic.clone(), payload.clone(), Some(command_id.clone()));
        self.pending.insert(
            command_id.clone(),
            Pending {
                device: key,
                topic,
                payload,
                attempts: 1,
                wait: Wait::Answer {
                    deadline: now + self.settings.command_timeout,
                },
            },
        );
        self.counters.commands_sent += 1;
        Ok(command_id)
    }

    /// Sends a config to a device: queues it (config is not tracked: the protocol has no
    /// acknowledgement for it).
    pub fn send_config(
        &mut self,
        utc: Timestamp,
        org: OrgId,
        device: DeviceId,
        config: DeviceConfig,
    ) -> Result<(), SendError> {
        self.check_room()?;
        let topic = Topic::new(org, device.clone(), MessageKind::Config).to_string();
        let payload = encode(&Message::Config(Config {
            device_id: device,
            config,
            timestamp: utc,
        }))
        .map_err(SendError::Encode)?;
        self.outbox.push(topic, payload, None);
        Ok(())
    }

    fn check_room(&self) -> Result<(), SendError> {
        if self.outbox.is_full() {
            return Err(SendError::OutboxFull {
                capacity: self.outbox.capacity(),
            });
        }
        Ok(())
    }

    /// The broker accepted a connection: what waits in the outbox goes out, in order.
    pub fn handle_connected(&mut self, now: Instant) {
        let attempt = match self.link {
            Link::Down { attempt, .. } | Link::Up { attempt, .. } => attempt,
        };
        self.link = Link::Up {
            since: now,
            attempt,
        };
        self.counters.connections += 1;
    }

    /// The connection was lost, or an attempt failed. What was in flight is queued again (except
    /// withdrawn commands); the acknowledgements owed to the broker on that connection are void
    /// (the broker delivers those messages again, and they are recognised as duplicates); the
    /// next attempt waits for the backoff, jittered by `random` (uniform over `u32`).
    pub fn handle_disconnected(&mut self, now: Instant, random: u32) {
        let backoff = self.settings.backoff;
        let attempt = match self.link {
            Link::Up { since, attempt } => {
                self.counters.disconnects += 1;
                backoff.next_attempt(attempt, Some(now.saturating_duration_since(since)))
            }
            Link::Down { attempt, .. } => backoff.next_attempt(attempt, None),
        };
        self.outbox.requeue_in_flight();
        self.inbox.void();
        self.link = Link::Down {
            retry_at: Some(now + backoff.delay(attempt, random)),
            attempt,
        };
    }

    /// The broker acknowledged a message of [`Backend::poll_transmit`].
    pub fn handle_acked(&mut self, id: MessageId) {
        self.outbox.ack(id);
    }

    /// The application confirmed an event ([`Delivered::ack`]): it is safe, and the broker may
    /// forget the message (see [`Backend::poll_ack`]). False for an ack given back twice.
    pub fn ack(&mut self, ack: Ack) -> bool {
        self.inbox.release(ack)
    }

    /// A message arrived on one of the subscriptions; `inbound` is the transport's name for it,
    /// handed back by [`Backend::poll_ack`] when it may be acknowledged to the broker.
    ///
    /// Retained and live messages are treated alike: a retained status is how presence is
    /// recovered. Presence follows the order statuses arrive in; a status with the same bytes as
    /// one of the device's last few is a copy and changes nothing.
    pub fn handle_message(&mut self, now: Instant, inbound: Inbound, topic: &str, payload: &[u8]) {
        let ack = self.inbox.allocate();
        let before = self.events.len();
        match self.ingest(now, ack, topic, payload) {
            Fate::Accepted if self.events.len() > before => {
                self.inbox.hold(inbound, ack);
                if let Some(last) = self.events.back_mut() {
                    last.ack = Some(ack);
                }
            }
            Fate::Accepted | Fate::Refused => self.inbox.settle(inbound, None),
            Fate::Duplicate(original) => self.inbox.settle(inbound, original),
        }
    }

    fn ingest(&mut self, now: Instant, ack: Ack, topic: &str, payload: &[u8]) -> Fate {
        let parsed = match Topic::parse_with(topic, false) {
            Ok(parsed) => parsed,
            Err(error) => {
                return self.drop(topic, DropError::Decode(DecodeError::Topic(error)));
            }
        };
        if let Some(allowed) = &self.settings.allowed_orgs {
            if !allowed.contains(parsed.org()) {
                return self.drop(topic, DropError::OrgNotAllowed(parsed.org().clone()));
            }
        }
        if parsed.kind().direction() != Direction::DeviceToBackend {
            return self.drop(topic, DropError::WrongDirection(parsed.kind()));
        }
        let key = DeviceKey::of(&parsed);
        // The rate limit of a known device comes before any parsing of the payload: a flood
        // costs little. A device not seen yet gets its state (and its bucket) only once a
        // message of it decodes, so invented ids with garbage cost no memory. An answer from a
        // device this backend is waiting on is traffic it asked for: exempt.
        let awaited = parsed.kind() == MessageKind::CommandResponse
            && self.pending.values().any(|p| p.device == key);
        let limit = self.settings.rate_limit.filter(|_| !awaited);
        let known = self.devices.get(&key).is_some();
        if let (Some(limit), true) = (limit, known) {
            if !self.take_token(&key, limit, now) {
                return self.over_rate(topic, &key);
            }
        }
        let message = match self.settings.decoder.decode_message(&parsed, payload) {
            Ok(message) => message,
            Err(DecodeError::Empty) if parsed.kind() == MessageKind::Status => {
                let cleared = self
                    .devices
                    .get_mut(&key)
                    .and_then(|tracked| tracked.presence.take());
                if cleared.is_some() {
                    self.push(Event::PresenceCleared { device: key });
                }
                return Fate::Accepted;
            }
            Err(error) => return self.drop(topic, DropError::Decode(error)),
        };
        self.schedule_prune(now);
        let evicted = self.devices.evicted();
        let tracked = self.devices.entry(&key, now);
        tracked.heard = now;
        if let Some(presence) = &mut tracked.presence {
            presence.last_seen = now;
        }
        self.counters.devices_evicted += self.devices.evicted() - evicted;
        if let (Some(limit), false) = (limit, known) {
            if !self.take_token(&key, limit, now) {
                return self.over_rate(topic, &key);
            }
        }
        *self.counters.accepted.entry(parsed.kind()).or_default() += 1;
        match message {
            Message::Telemetry(telemetry) => self.telemetry(key, telemetry, digest(payload), ack),
            Message::Status(status) => self.status(now, key, status, digest(payload)),
            Message::CommandResponse(response) => self.response(key, response, ack),
            Message::Alert(alert) => self.push(Event::Alert { device: key, alert }),
            Message::Command(_) | Message::Config(_) => Fate::Refused,
        }
    }

    /// Takes a token from the device's bucket (created full when it has none).
    fn take_token(&mut self, key: &DeviceKey, limit: RateLimit, now: Instant) -> bool {
        self.devices.get_mut(key).is_some_and(|tracked| {
            tracked
                .bucket
                .get_or_insert_with(|| Bucket::new(limit, now))
                .take(limit, now)
        })
    }

    fn over_rate(&mut self, topic: &str, key: &DeviceKey) -> Fate {
        self.drop(topic, DropError::RateLimited(key.clone()))
    }

    /// The first message starts the pruning schedule.
    fn schedule_prune(&mut self, now: Instant) {
        if self.next_prune.is_none() {
            self.next_prune = Some(now + PRUNE_EVERY);
        }
    }

    /// Time passed: the next connection attempt when the backoff is over; commands whose answer
    /// is overdue are retried or time out (and are withdrawn from the outbox); once a minute,
    /// what quiet devices no longer need is dropped ([`Settings::forget_after`]).
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Link::Down {
            retry_at: Some(at),
            attempt,
        } = self.link
        {
            if now >= at {
                self.link = Link::Down {
                    retry_at: None,
                    attempt,
                };
                self.push(Event::Connect);
            }
        }
        let due: Vec<CommandId> = self
            .pending
            .iter()
            .filter(|(_, p)| match p.wait {
                Wait::Answer { deadline } => now >= deadline,
                Wait::Retry { at } => now >= at,
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in due {
            let Some(mut pending) = self.pending.remove(&id) else {
                continue;
            };
            match pending.wait {
                Wait::Retry { .. } => {
                    pending.attempts += 1;
                    pending.wait = Wait::Answer {
                        deadline: now + self.settings.command_timeout,
                    };
                    self.counters.retries += 1;
                    // A copy still queued (the link is down) serves as this attempt too;
                    // otherwise a new copy replaces the one still in flight, if any, so that a
                    // command has one copy in the outbox at most.
                    if !self.outbox.has_queued(&id) {
                        self.outbox.withdraw(&id);
                        self.outbox.push(
                            pending.topic.clone(),
                            pending.payload.clone(),
                            Some(id.clone()),
                        );
                    }
                    self.push(Event::CommandRetried {
                        device: pending.device.clone(),
                        command_id: id.clone(),
                        attempt: pending.attempts,
                    });
                    self.pending.insert(id, pending);
                }
                Wait::Answer { .. } if pending.attempts <= self.settings.retries => {
                    let factor = 1u32.checked_shl(pending.attempts - 1).unwrap_or(u32::MAX);
                    pending.wait = Wait::Retry {
                        at: now + self.settings.retry_backoff.saturating_mul(factor),
                    };
                    self.pending.insert(id, pending);
                }
                Wait::Answer { .. } => {
                    self.counters.commands_timed_out += 1;
                    self.counters.commands_withdrawn += self.outbox.withdraw(&id) as u64;
                    self.finish(id.clone(), Finished::TimedOut);
                    self.push(Event::Command {
                        device: pending.device,
                        command_id: id,
                        outcome: Outcome::TimedOut {
                            attempts: pending.attempts,
                        },
                    });
                }
            }
        }
        if let (Some(at), Link::Up { since, .. }) = (self.next_prune, self.link) {
            if now >= at {
                // Silence is counted from the connection at the earliest: during an outage
                // nothing arrives, and the copies the broker delivers after it must still be
                // recognised.
                self.devices.prune(
                    now,
                    self.settings.rate_limit,
                    since,
                    self.settings.forget_after,
                );
                self.next_prune = (self.devices.len() > 0).then_some(now + PRUNE_EVERY);
            }
        }
    }

    /// The next message to publish (commands, retries, config), while the link is up, the
    /// in-flight window has room, and the transport reads from the broker
    /// ([`Backend::has_room`]): a message handed to a transport that does not read may wait in
    /// its buffers past its command's timeout, and the answer could not be read anyway.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if !self.is_connected() || !self.has_room() {
            return None;
        }
        let message = self.outbox.next(self.settings.in_flight_window)?;
        Some(Transmit {
            id: message.id,
            topic: message.topic.clone(),
            payload: message.payload.clone(),
            qos: QoS::AtLeastOnce,
            retain: false,
        })
    }

    /// The next received message the transport may acknowledge to the broker (PUBACK), in the
    /// order the messages arrived: a message the engine refused at once; one whose events the
    /// application confirmed, once every older message may be acknowledged too.
    #[must_use]
    pub fn poll_ack(&mut self) -> Option<Inbound> {
        self.inbox.next_puback()
    }

    /// The next event.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Delivered> {
        self.events.pop_front()
    }

    /// When to call [`Backend::handle_timeout`] next.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let retry = match self.link {
            Link::Down {
                retry_at: Some(at), ..
            } => Some(at),
            Link::Down { .. } | Link::Up { .. } => None,
        };
        // Pruning waits for the connection (see handle_timeout).
        let prune = self.next_prune.filter(|_| self.is_connected());
        self.pending
            .values()
            .map(|p| match p.wait {
                Wait::Answer { deadline } => deadline,
                Wait::Retry { at } => at,
            })
            .chain(retry)
            .chain(prune)
            .min()
    }

    fn push(&mut self, event: Event) -> Fate {
        self.events.push_back(Delivered { event, ack: None });
        Fate::Accepted
    }

    fn telemetry(&mut self, key: DeviceKey, telemetry: Telemetry, digest: u64, ack: Ack) -> Fate {
        let window = self.settings.telemetry_window;
        // The same bytes (which include the timestamp): the broker or the device sent it again.
        // Distinct readings that share a timestamp (whole seconds, 100 ms intervals) differ in
        // their bytes and are both kept.
        let copy_of = self
            .devices
            .get_mut(&key)
            .and_then(|tracked| tracked.telemetry(digest, ack, window));
        if let Some(original) = copy_of {
            return self.duplicate(key, MessageKind::Telemetry, Some(original));
        }
        self.push(Event::Telemetry {
            device: key,
            telemetry,
        })
    }

    /// Presence follows the order statuses arrive in, not their timestamps: a device whose
    /// clock went back (the firmware falls back to its build time when SNTP fails) still comes
    /// online. A status delivered again (the same bytes as one of the device's last few) is a
    /// copy, and does not undo the newer ones that came between.
    fn status(&mut self, now: Instant, key: DeviceKey, status: Status, digest: u64) -> Fate {
        let Some(tracked) = self.devices.get_mut(&key) else {
            return Fate::Refused;
        };
        if tracked.status(digest) {
            return self.duplicate(key, MessageKind::Status, None);
        }
        let from = tracked.presence.as_ref().map(|p| p.state);
        tracked.presence = Some(Presence {
            state: status.status,
            since: status.timestamp,
            firmware_version: status.firmware_version.clone(),
            last_seen: now,
        });
        if from != Some(status.status) {
            self.push(Event::PresenceChanged {
                device: key.clone(),
                from,
                to: status.status,
            });
        }
        self.push(Event::Status {
            device: key,
            status,
        })
    }

    fn response(&mut self, key: DeviceKey, response: CommandResponse, ack: Ack) -> Fate {
        let id = response.command_id.clone();
        if let Some(pending) = self.pending.get(&id) {
            if pending.device != key {
                // Another device answering this command's id: not its command to answer.
                return self.drop(
                    &Topic::new(
                        key.org.clone(),
                        key.device.clone(),
                        MessageKind::CommandResponse,
                    )
                    .to_string(),
                    DropError::NotItsCommand {
                        command_id: id,
                        sent_to: pending.device.clone(),
                    },
                );
            }
            self.pending.remove(&id);
            // A retry still waiting for the link is not needed any more.
            self.counters.commands_withdrawn += self.outbox.withdraw(&id) as u64;
            self.finish(id.clone(), Finished::Answered(Some(ack)));
            let outcome = if response.success {
                self.counters.commands_completed += 1;
                Outcome::Completed(response)
            } else {
                self.counters.commands_failed += 1;
                Outcome::Failed(response)
            };
            return self.push(Event::Command {
                device: key,
                command_id: id,
                outcome,
            });
        }
        match self.finished.get(&id) {
            Some(Finished::Answered(original)) => {
                let original = *original;
                self.duplicate(key, MessageKind::CommandResponse, original)
            }
            Some(Finished::TimedOut) => {
                self.counters.late_responses += 1;
                // Reported once; a further copy is a duplicate.
                self.finished.insert(id, Finished::Answered(Some(ack)));
                self.push(Event::LateResponse {
                    device: key,
                    response,
                })
            }
            None => match instance_of(id.as_str()) {
                Some(instance) if instance != self.settings.instance => {
                    self.counters.responses_to_other_instances += 1;
                    let instance = instance.to_string();
                    self.events.push_back(Delivered {
                        event: Event::ResponseToAnotherInstance {
                            device: key,
                            instance,
                            response,
                        },
                        ack: None,
                    });
                    // Not this instance's to store: acknowledged by the engine.
                    Fate::Refused
                }
                _ => {
                    self.counters.unknown_responses += 1;
                    self.push(Event::UnknownResponse {
                        device: key,
                        response,
                    })
                }
            },
        }
    }

    fn finish(&mut self, id: CommandId, how: Finished) {
        if self.finished.insert(id.clone(), how).is_none() {
            self.finished_order.push_back(id);
        }
        while self.finished_order.len() > self.settings.finished_window.max(1) {
            if let Some(old) = self.finished_order.pop_front() {
                self.finished.remove(&old);
            }
        }
    }

    fn duplicate(&mut self, key: DeviceKey, kind: MessageKind, original: Option<Ack>) -> Fate {
        *self.counters.duplicates.entry(kind).or_default() += 1;
        self.events.push_back(Delivered {
            event: Event::Duplicate { device: key, kind },
            ack: None,
        });
        Fate::Duplicate(original)
    }

    fn drop(&mut self, topic: &str, error: DropError) -> Fate {
        let reason = error.reason();
        *self.counters.dropped.entry(reason).or_default() += 1;
        let shown = dese_protocol::shortened(topic, 160);
        self.events.push_back(Delivered {
            event: Event::Dropped {
                topic: shown,
                reason,
                error,
            },
            ack: None,
        });
        Fate::Refused
    }
}

/// The instance a command id of the form `cmd-{instance}-{millis}-{n}` names (what
/// [`Backend::send_command`] makes), if it has that form.
fn instance_of(id: &str) -> Option<&str> {
    let rest = id.strip_prefix("cmd-")?;
    let (rest, n) = rest.rsplit_once('-')?;
    let (instance, millis) = rest.rsplit_once('-')?;
    let numeric = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    (numeric(n) && numeric(millis) && !instance.is_empty()).then_some(instance)
}

/// FNV-1a over the payload: tells apart distinct readings that share a timestamp, and
/// recognises the byte-identical copies QoS 1 redelivers.
fn digest(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}
