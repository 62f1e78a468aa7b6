//! The device engine.

use alloc::collections::{BTreeMap, VecDeque};
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::time::Duration;

use dese_protocol::{
    Action, Alert, Battery, Calibration, Celsius, Command, CommandId, CommandResponse, Decoder,
    DeviceConfig, DeviceId, DeviceState, Finite, FlowRate, JsonObject, Keepalive, Message,
    MessageKind, Metadata, OrgId, Ph, Ppm, QoS, Reason, Sensor, Sensors, Severity, SignalStrength,
    Status, Telemetry, TelemetryInterval, Threshold, Timestamp, Topic, TopicFilter, encode,
};

use crate::app::{CommandHandler, Readings, SensorReader};
use crate::backoff::Backoff;
use crate::dedup::Answered;
use crate::outbox::{MessageId, Outbox, Queued};
use crate::persist::{Journal, Persist, Saved};
use crate::settings::SettingsError;
use crate::time::Instant;

/// What the engine needs to know about the device, and its tuning.
#[derive(Debug, Clone, PartialEq)]
pub struct Settings {
    /// The device's organization.
    pub org: OrgId,
    /// The device.
    pub device: DeviceId,
    /// Reported in telemetry and status: 1 to 64 bytes.
    pub firmware_version: String,
    /// How many messages may wait for the broker (queued and in flight) before the oldest
    /// telemetry is dropped. Default 100.
    pub outbox_capacity: usize,
    /// How many messages may be in flight (handed to the transport, not yet acknowledged).
    /// Default 8.
    pub in_flight_window: usize,
    /// How many recent commands are remembered, to answer a duplicate without running it
    /// again. Default 32.
    pub answered_capacity: usize,
    /// How many commands may run at once: handed to the application as [`Event::Command`]
    /// and not yet answered with [`Device::handle_command_result`]. A command past it is
    /// refused as busy, and may be sent again later. Default 8.
    pub running_capacity: usize,
    /// Telemetry period until a config message changes it. Default 30 s.
    pub telemetry_interval: TelemetryInterval,
    /// Status period while connected. Default 60 s.
    pub status_interval: Duration,
    /// MQTT keepalive until a config message changes it. Default 60 s.
    pub keepalive: Keepalive,
    /// Reconnection policy.
    pub backoff: Backoff,
    /// Whether the engine reports the changes to its reboot-safe state (the outbox, the
    /// answered commands, the config) through [`Device::poll_persist`], for a firmware that
    /// keeps them in flash. Default false: nothing is kept for it.
    pub persist: bool,
}

impl Settings {
    /// The protocol's defaults for one device.
    pub fn new(org: OrgId, device: DeviceId, firmware_version: impl Into<String>) -> Self {
        Self {
            org,
            device,
            firmware_version: firmware_version.into(),
            outbox_capacity: 100,
            in_flight_window: 8,
            answered_capacity: 32,
            running_capacity: 8,
            telemetry_interval: TelemetryInterval::DEFAULT,
            status_interval: Duration::from_secs(60),
            keepalive: Keepalive::DEFAULT,
            backoff: Backoff::DEFAULT,
            persist: false,
        }
    }

    /// Refuses settings that cannot work, naming the setting: a `firmware_version` that is
    /// empty, over 64 bytes or holds control characters (the retained status and the
    /// last will would be empty, which the broker takes as "clear", and the device would
    /// silently disappear), a zero outbox, in-flight window or command memory, a
    /// `running_capacity` of zero or not below `answered_capacity`, a status
    /// interval of zero or over a day, an unusable backoff. The clients call it before they
    /// start; [`Device::new`] clamps what it is given instead of failing.
    ///
    /// ```
    /// use dese_device::Settings;
    ///
    /// let settings = Settings::new("org-1".parse()?, "dev-1".parse()?, "");
    /// assert_eq!(settings.check().unwrap_err().setting(), "firmware_version");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn check(&self) -> Result<(), SettingsError> {
        let status = Status {
            status: DeviceState::Online,
            battery: None,
            signal_strength: None,
            firmware_version: self.firmware_version.clone(),
            timestamp: Timestamp::UNIX_EPOCH,
        };
        if let Err(error) = encode(&Message::Status(status)) {
            return Err(SettingsError::new("firmware_version", error.to_string()));
        }
        // The protocol allows them; every log and screen that shows the version would not.
        if self.firmware_version.chars().any(char::is_control) {
            return Err(SettingsError::new(
                "firmware_version",
                "control characters (a newline, an escape) are not allowed",
            ));
        }
        SettingsError::count(
            "outbox_capacity",
            self.outbox_capacity,
            1 << 20,
            "would drop every message",
        )?;
        SettingsError::count(
            "in_flight_window",
            self.in_flight_window,
            u16::MAX as usize,
            "would never publish anything",
        )?;
        SettingsError::count(
            "answered_capacity",
            self.answered_capacity,
            1 << 16,
            "would run a command delivered twice twice",
        )?;
        SettingsError::count(
            "running_capacity",
            self.running_capacity,
            1 << 10,
            "would refuse every command",
        )?;
        if self.running_capacity >= self.answered_capacity {
            return Err(SettingsError::new(
                "running_capacity",
                alloc::format!(
                    "{} is not less than answered_capacity ({}): a running command's saved \
                     answer must stay among the remembered ones",
                    self.running_capacity,
                    self.answered_capacity
                ),
            ));
        }
        SettingsError::duration("status_interval", self.status_interval, true)?;
        self.backoff.check()
    }
}

/// One message for the transport to publish. When the broker acknowledges it, report
/// [`Transmit::id`] through [`Device::handle_acked`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Report this when the broker acknowledges the message.
    pub id: MessageId,
    /// The message kind.
    pub kind: MessageKind,
    /// The topic, always one of the device's own.
    pub topic: String,
    /// The JSON payload.
    pub payload: Vec<u8>,
    /// Always QoS 1.
    pub qos: QoS,
    /// True for status only.
    pub retain: bool,
}

/// The MQTT last will: a retained `offline` status on the device's status topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Will {
    /// The device's status topic.
    pub topic: String,
    /// An `offline` status.
    pub payload: Vec<u8>,
    /// QoS 1.
    pub qos: QoS,
    /// Retained, so that the backend sees the device offline even after it restarts.
    pub retain: bool,
}

/// How the transport connects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectOptions {
    /// `{organization_id}:{device_id}`, each part with `%`, `:` and `$` percent-encoded (so
    /// `org-1:dev-1` in practice): unique per broker, as device ids are unique only within an
    /// organization, and accepted by every broker (rumqttd refuses `/`, `+`, `#` and `$` in a
    /// client id).
    pub client_id: String,
    /// The keepalive in force (60 s unless a config message changed it).
    pub keepalive: Keepalive,
    /// The engine keeps its own outbox, so no broker session is needed.
    pub clean_session: bool,
    /// The last will.
    pub will: Will,
}

/// What happened, for the application (and its logs).
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// Time to open the connection: the first one, or the next after the backoff.
    Connect,
    /// A config message was applied; the device now runs with these settings.
    ConfigApplied(DeviceConfig),
    /// A `reset_config` command succeeded: the telemetry interval and the keepalive are back
    /// to the device's own settings, and the calibration and the thresholds that config
    /// messages set are gone ([`Device::config`] tells what is in force, to persist it).
    ConfigReset,
    /// [`Device::restore`] took back what was saved before a reboot.
    Restored {
        /// Messages put back in the outbox, to be published in their order (past the outbox's
        /// capacity, the oldest telemetry among them is dropped at once, and counted as a drop).
        messages: usize,
        /// Answered commands remembered again.
        answered: usize,
        /// Saved messages and answers refused: not one of this device's, not valid, or a
        /// status (counted in [`Stats::restore_refused`]).
        refused: usize,
    },
    /// A config message was refused; nothing of it was applied.
    ConfigRejected {
        /// Why.
        error: String,
    },
    /// The keepalive changed: reconnect with the new [`Device::connect_options`] when
    /// convenient.
    KeepaliveChanged(Keepalive),
    /// A new command for the application to carry out, now or later (a pump that runs for
    /// two seconds, a calibration that waits for the probe to settle): answer it with
    /// [`Device::handle_command_result`] when it is done. The engine has checked it (valid,
    /// addressed to this device, not retained, this id never run) and holds it as running
    /// until then: a copy delivered again is not handed out again, and gets the answer the
    /// result makes. [`Device::handle_message_with`] runs a [`CommandHandler`] instead, at
    /// once, and reports no such event.
    Command {
        /// Its id, to give back with the result.
        command_id: CommandId,
        /// What to do.
        action: Action,
    },
    /// A command ran.
    CommandRun {
        /// Its id.
        command_id: CommandId,
        /// Its name.
        command: String,
        /// Whether it succeeded: the handler's or [`Device::handle_command_result`]'s outcome.
        success: bool,
    },
    /// A command was delivered again and answered with the first response, without running.
    CommandDuplicate {
        /// Its id.
        command_id: CommandId,
    },
    /// A command was delivered again (or a copy of it, retained or not valid) while it still
    /// runs: neither handed out again nor answered; the result answers it.
    CommandStillRunning {
        /// Its id.
        command_id: CommandId,
    },
    /// A command was refused before reaching the handler.
    CommandRefused {
        /// Its id, when it could be read (then an error response was sent).
        command_id: Option<CommandId>,
        /// Why.
        error: String,
    },
    /// An incoming message was dropped: not for this device, or not a message at all.
    Dropped {
        /// The category.
        reason: Reason,
        /// The details.
        error: String,
    },
    /// The sensors gave no reading this period.
    ReadingMissed,
    /// The sensors gave a reading outside the protocol's ranges (after calibration): it was
    /// not sent.
    ReadingRejected {
        /// Why.
        error: String,
    },
}

/// [`Device::handle_command_result`] was given a command that is not running: never handed out
/// as [`Event::Command`], or answered already.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("command {command_id} is not running: it was never handed out, or it was answered already")]
#[non_exhaustive]
pub struct NotRunning {
    /// The id given.
    pub command_id: CommandId,
}

/// Counters since the engine started. Every message the engine accepted is delivered,
/// dropped (and counted here) or still in the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// Telemetry messages built and queued.
    pub telemetry: u64,
    /// Messages the broker acknowledged.
    pub delivered: u64,
    /// Telemetry dropped because the outbox was full.
    pub telemetry_dropped: u64,
    /// Other messages dropped because the outbox was full.
    pub other_dropped: u64,
    /// Messages waiting in the outbox, queued or in flight (statuses aside: a fresh one
    /// replaces them on every connection).
    pub pending: u64,
    /// Commands run: by the handler, or answered by [`Device::handle_command_result`].
    pub commands_run: u64,
    /// Duplicate deliveries answered from the cache.
    pub commands_duplicate: u64,
    /// Duplicate deliveries of a command still running: neither run nor answered (its result
    /// answers it).
    pub commands_duplicate_running: u64,
    /// Commands refused before the handler.
    pub commands_refused: u64,
    /// Config messages applied.
    pub configs_applied: u64,
    /// Config messages refused.
    pub configs_rejected: u64,
    /// Alerts raised (by thresholds and by the application).
    pub alerts: u64,
    /// Incoming messages dropped.
    pub dropped_incoming: u64,
    /// Periods without a usable reading.
    pub readings_missed: u64,
    /// Connections lost.
    pub disconnects: u64,
    /// Messages [`Device::restore`] put back in the outbox.
    pub restored: u64,
    /// Saved messages and answers [`Device::restore`] refused.
    pub restore_refused: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    /// Not connected; `retry_at` is when to ask for a connection (`None`: asked, waiting).
    Down {
        retry_at: Option<Instant>,
        attempt: u32,
    },
    Up {
        since: Instant,
        attempt: u32,
    },
    /// Deliberately disconnected.
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    Below,
    Above,
}

/// A command handed out and not answered yet.
#[derive(Debug)]
struct Running {
    command_id: CommandId,
    action: Action,
    /// With [`Settings::persist`], the failure saved as its answer until the result replaces
    /// it, written again after every other answer so that storage keeps it among the recent.
    interrupted: Option<Vec<u8>>,
}

/// The protocol's behaviour for one device, without IO and without a clock.
///
/// Feed it what happens (`handle_*`), then drain what it wants done, in this order after every
/// input: [`Device::poll_transmit`] until `None` (publish each message), [`Device::poll_event`]
/// until `None`, and [`Device::poll_timeout`] for when to call [`Device::handle_timeout`] next.
/// A new command comes out as [`Event::Command`]; its outcome goes back through
/// [`Device::handle_command_result`], whenever it is ready ([`Device::handle_message_with`]
/// runs a [`CommandHandler`] at once instead).
///
/// It publishes a retained `online` status as soon as the link is up and before anything
/// else, queues telemetry while the link is down and replays it in order, keeps every message
/// until the broker acknowledges it, runs each command id at most once, refuses retained
/// commands, applies config, raises threshold alerts once per crossing, and paces reconnection
/// with [`Backoff`].
#[derive(Debug)]
pub struct Device {
    settings: Settings,
    topics: BTreeMap<MessageKind, String>,
    own: [Topic; 2],
    decoder: Decoder,
    link: Link,
    outbox: Outbox,
    answered: Answered,
    /// The commands handed out and not answered, oldest first: at most
    /// [`Settings::running_capacity`] (8 by default), so a vector, searched in order, which
    /// costs the firmware less flash than a map.
    running: Vec<Running>,
    next_id: u64,
    next_telemetry: Instant,
    next_status: Instant,
    telemetry_interval: TelemetryInterval,
    keepalive: Keepalive,
    calibration: BTreeMap<Sensor, Calibration>,
    thresholds: BTreeMap<Sensor, Threshold>,
    crossed: BTreeMap<Sensor, Side>,
    last_metadata: (Option<Battery>, Option<SignalStrength>),
    events: VecDeque<Event>,
    journal: Option<Journal>,
    stats: Stats,
}

impl Device {
    /// A device engine that asks to connect at once and reads its sensors one period from now.
    pub fn new(mut settings: Settings, now: Instant) -> Self {
        // What `Settings::check` refuses, made harmless for a caller that did not check.
        settings.in_flight_window = settings.in_flight_window.max(1);
        settings.answered_capacity = settings.answered_capacity.max(1);
        settings.running_capacity = settings
            .running_capacity
            .min(settings.answered_capacity - 1)
            .max(1);
        settings.status_interval = settings
            .status_interval
            .clamp(Duration::from_secs(1), crate::LONGEST);
        let topic = |kind| Topic::new(settings.org.clone(), settings.device.clone(), kind);
        let topics = MessageKind::ALL
            .into_iter()
            .map(|kind| (kind, topic(kind).to_string()))
            .collect();
        Self {
            own: [topic(MessageKind::Commands), topic(MessageKind::Config)],
            topics,
            decoder: Decoder::new(),
            link: Link::Down {
                retry_at: Some(now),
                attempt: 0,
            },
            outbox: Outbox::new(settings.outbox_capacity),
            answered: Answered::new(settings.answered_capacity),
            running: Vec::new(),
            next_id: 0,
            next_telemetry: now + settings.telemetry_interval.as_duration(),
            next_status: now + settings.status_interval,
            telemetry_interval: settings.telemetry_interval,
            keepalive: settings.keepalive,
            calibration: BTreeMap::new(),
            thresholds: BTreeMap::new(),
            crossed: BTreeMap::new(),
            last_metadata: (None, None),
            events: VecDeque::new(),
            journal: settings
                .persist
                .then(|| Journal::new(settings.answered_capacity)),
            stats: Stats::default(),
            settings,
        }
    }

    /// The options for every connection: client id, keepalive, clean session, and the last
    /// will (a retained `offline` status stamped `utc`).
    pub fn connect_options(&self, utc: Timestamp) -> ConnectOptions {
        ConnectOptions {
            client_id: format!(
                "{}:{}",
                client_id_part(self.settings.org.as_str()),
                client_id_part(self.settings.device.as_str())
            ),
            keepalive: self.keepalive,
            clean_session: true,
            will: Will {
                topic: self.topic(MessageKind::Status).to_string(),
                payload: self.status_payload(DeviceState::Offline, utc),
                qos: QoS::AtLeastOnce,
                retain: true,
            },
        }
    }

    /// What to subscribe to after every (re)connection: the device's own `commands` and
    /// `config` topics, at QoS 1, and nothing else.
    pub fn subscriptions(&self) -> [TopicFilter; 2] {
        [
            TopicFilter::topic(&self.own[0]),
            TopicFilter::topic(&self.own[1]),
        ]
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
            Link::Up { .. } | Link::Closed => None,
        }
    }

    /// The counters.
    pub fn stats(&self) -> Stats {
        Stats {
            telemetry_dropped: self.outbox.dropped(MessageKind::Telemetry),
            other_dropped: self.outbox.dropped_total()
                - self.outbox.dropped(MessageKind::Telemetry),
            pending: self.outbox.held() as u64,
            ..self.stats
        }
    }

    /// The settings in force, as changed by config messages.
    pub fn telemetry_interval(&self) -> TelemetryInterval {
        self.telemetry_interval
    }

    /// The config in force, as config messages left it: every field present, an empty map for
    /// no calibration or no thresholds. A firmware that keeps its config across a reboot saves
    /// this after [`Event::ConfigApplied`] and [`Event::ConfigReset`], and applies it again at
    /// boot with [`Device::restore_config`].
    pub fn config(&self) -> DeviceConfig {
        DeviceConfig {
            telemetry_interval: Some(self.telemetry_interval),
            mqtt_keepalive: Some(self.keepalive),
            sensor_calibration: Some(self.calibration.clone()),
            alert_thresholds: Some(self.thresholds.clone()),
        }
    }

    /// Applies a config saved before a reboot ([`Device::config`]) without reporting it as a
    /// config message: no event, no counter. Call it before the first connection.
    pub fn restore_config(&mut self, now: Instant, config: &DeviceConfig) {
        if let Some(interval) = config.telemetry_interval {
            self.telemetry_interval = interval;
            self.next_telemetry = now + interval.as_duration();
        }
        if let Some(keepalive) = config.mqtt_keepalive {
            self.keepalive = keepalive;
        }
        if let Some(calibration) = &config.sensor_calibration {
            self.calibration = calibration.clone();
        }
        if let Some(thresholds) = &config.alert_thresholds {
            self.thresholds = thresholds.clone();
            self.crossed.clear();
        }
    }

    /// The link came up (the broker accepted the connection): publish the `online` status
    /// first, then what waited in the outbox, in order.
    pub fn handle_connected(&mut self, now: Instant, utc: Timestamp) {
        let attempt = match self.link {
            Link::Down { attempt, .. } | Link::Up { attempt, .. } => attempt,
            Link::Closed => 0,
        };
        self.link = Link::Up {
            since: now,
            attempt,
        };
        self.outbox.forget_statuses();
        let status = self.status_payload(DeviceState::Online, utc);
        let id = self.id();
        self.outbox.push_front(Queued {
            id,
            kind: MessageKind::Status,
            payload: status,
        });
        self.journal_evictions();
        self.next_status = now + self.settings.status_interval;
    }

    /// The link went down, or a connection attempt failed. What was in flight is queued again;
    /// the next attempt waits for the backoff, jittered by `random` (uniform over `u32`).
    pub fn handle_disconnected(&mut self, now: Instant, random: u32) {
        let backoff = self.settings.backoff;
        let attempt = match self.link {
            Link::Up { since, attempt } => {
                self.stats.disconnects += 1;
                backoff.next_attempt(attempt, Some(now.saturating_since(since)))
            }
            Link::Down { attempt, .. } => backoff.next_attempt(attempt, None),
            Link::Closed => return,
        };
        self.outbox.requeue_in_flight();
        self.journal_evictions();
        let delay = self.settings.backoff.delay(attempt, random);
        self.link = Link::Down {
            retry_at: Some(now + delay),
            attempt,
        };
    }

    /// The broker acknowledged a message.
    pub fn handle_acked(&mut self, id: MessageId) {
        if let Some(kind) = self.outbox.ack(id) {
            self.stats.delivered += 1;
            if kind != MessageKind::Status {
                if let Some(journal) = &mut self.journal {
                    journal.removed(id);
                }
            }
        }
    }

    /// Closes deliberately: returns the retained `offline` status to publish before the clean
    /// disconnection (which, unlike a lost link, does not fire the last will). The engine asks
    /// for no reconnection afterwards.
    pub fn disconnect(&mut self, utc: Timestamp) -> Transmit {
        self.link = Link::Closed;
        let id = self.id();
        self.transmit(Queued {
            id,
            kind: MessageKind::Status,
            payload: self.status_payload(DeviceState::Offline, utc),
        })
    }

    /// Queues telemetry from readings the application took itself, now, outside the periodic
    /// schedule (which goes on unchanged). The calibration, the ranges and the thresholds apply
    /// as to periodic readings.
    pub fn handle_readings(&mut self, readings: Readings, utc: Timestamp) {
        self.telemetry(readings, utc);
    }

    /// Raises an alert of the application's own (a leak detector, a pump fault).
    pub fn raise_alert(&mut self, alert: &Alert) {
        self.queue_alert(alert);
    }

    /// Time passed: ask for a connection when the backoff is over, read the sensors and queue
    /// telemetry when its period is due (connected or not), and publish the periodic status
    /// while connected. After [`Device::disconnect`] nothing is due until the link comes up
    /// again.
    pub fn handle_timeout(
        &mut self,
        now: Instant,
        utc: Timestamp,
        sensors: &mut (impl SensorReader + ?Sized),
    ) {
        if self.link == Link::Closed {
            return;
        }
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
                self.events.push_back(Event::Connect);
            }
        }
        if now >= self.next_telemetry {
            self.next_telemetry = next_after(
                self.next_telemetry,
                self.telemetry_interval.as_duration(),
                now,
            );
            match sensors.read(now) {
                Some(readings) => self.telemetry(readings, utc),
                None => {
                    self.stats.readings_missed += 1;
                    self.events.push_back(Event::ReadingMissed);
                }
            }
        }
        if self.is_connected() && now >= self.next_status {
            self.next_status = next_after(self.next_status, self.settings.status_interval, now);
            let payload = self.status_payload(DeviceState::Online, utc);
            self.queue(MessageKind::Status, payload);
        }
    }

    /// A message arrived on one of the subscriptions. A config is applied; a new command is
    /// handed to the application as [`Event::Command`], to be answered with
    /// [`Device::handle_command_result`] when it is done.
    pub fn handle_message(
        &mut self,
        now: Instant,
        utc: Timestamp,
        topic: &str,
        payload: &[u8],
        retained: bool,
    ) {
        if let Some(command) = self.incoming(now, utc, topic, payload, retained) {
            if let Some(journal) = &mut self.journal {
                // Kept until the result replaces it: a reboot before then answers a delivery
                // of the same id with this failure, rather than running the command again.
                let interrupted = CommandResponse::failed(
                    command.command_id.clone(),
                    "interrupted: the device restarted before the command finished",
                    utc,
                );
                if let Ok(payload) = encode(&Message::CommandResponse(interrupted)) {
                    journal.answered(command.command_id.clone(), payload.clone());
                    if let Some(at) = self.running_at(&command.command_id) {
                        self.running[at].interrupted = Some(payload);
                    }
                }
            }
            self.events.push_back(Event::Command {
                command_id: command.command_id,
                action: command.action,
            });
        }
    }

    /// [`Device::handle_message`] with the commands carried out at once by `handler`, for
    /// applications whose commands finish in the call: no [`Event::Command`] is reported, and
    /// the response is queued before this returns.
    pub fn handle_message_with(
        &mut self,
        now: Instant,
        utc: Timestamp,
        topic: &str,
        payload: &[u8],
        retained: bool,
        handler: &mut (impl CommandHandler + ?Sized),
    ) {
        if let Some(command) = self.incoming(now, utc, topic, payload, retained) {
            let result = handler.run(&command.action, now);
            self.finish(now, utc, command.command_id, command.action, result);
        }
    }

    /// The outcome of a command handed out as [`Event::Command`]: `Ok` with the data for a
    /// `success: true` response, or `Err` with the reason for `success: false`. The response
    /// is queued, and remembered so that a later delivery of the same id gets it again.
    ///
    /// # Errors
    ///
    /// [`NotRunning`] when no command of this id is running: never handed out, or answered
    /// already. Nothing is sent then.
    pub fn handle_command_result(
        &mut self,
        now: Instant,
        utc: Timestamp,
        command_id: &CommandId,
        result: Result<Option<JsonObject>, String>,
    ) -> Result<(), NotRunning> {
        let Some(at) = self.running_at(command_id) else {
            return Err(NotRunning {
                command_id: command_id.clone(),
            });
        };
        let running = self.running.remove(at);
        self.finish(now, utc, running.command_id, running.action, result);
        Ok(())
    }

    /// The commands handed out as [`Event::Command`] and not answered yet, oldest first.
    pub fn commands_running(&self) -> impl Iterator<Item = (&CommandId, &Action)> {
        self.running
            .iter()
            .map(|running| (&running.command_id, &running.action))
    }

    /// Where the running command `command_id` is in the list of running commands.
    fn running_at(&self, command_id: &CommandId) -> Option<usize> {
        self.running
            .iter()
            .position(|r| &r.command_id == command_id)
    }

    /// Routes a message; returns a new command to carry out, registered as running.
    fn incoming(
        &mut self,
        now: Instant,
        utc: Timestamp,
        topic: &str,
        payload: &[u8],
        retained: bool,
    ) -> Option<Command> {
        let own = [MessageKind::Commands, MessageKind::Config]
            .into_iter()
            .position(|kind| self.topic(kind) == topic)
            .map(|at| self.own[at].clone());
        let Some(own) = own else {
            self.drop_incoming(
                Reason::Topic,
                format!("not one of this device's topics: {topic:?}"),
            );
            return None;
        };
        let decoded = self.decoder.decode_message(&own, payload);
        match (own.kind(), decoded) {
            (MessageKind::Commands, Ok(Message::Command(command))) => {
                return self.command(utc, command, retained);
            }
            (MessageKind::Commands, Err(error)) => match error.command_id().cloned() {
                Some(command_id) => self.refuse(command_id, &error.to_string(), utc),
                None => self.drop_incoming(error.reason(), error.to_string()),
            },
            (MessageKind::Config, Ok(Message::Config(config))) => {
                self.apply_config(now, config.config)
            }
            (MessageKind::Config, Err(error)) => {
                self.stats.configs_rejected += 1;
                let error = error.to_string();
                self.queue_alert(&Alert {
                    severity: Severity::Warning,
                    message: truncate(
                        format!("config refused: {error}"),
                        dese_protocol::ALERT_MESSAGE_MAX,
                    ),
                    sensor: None,
                    value: None,
                    threshold: None,
                    timestamp: utc,
                });
                self.events.push_back(Event::ConfigRejected { error });
            }
            (kind, _) => self.drop_incoming(Reason::Topic, format!("unexpected {kind} message")),
        }
        None
    }

    /// The next message to publish, if the link is up and the in-flight window has room.
    #[must_use]
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        if !self.is_connected() {
            return None;
        }
        let message = self.outbox.next(self.settings.in_flight_window)?;
        Some(self.transmit(message))
    }

    /// The next event for the application.
    #[must_use]
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// The next change to the reboot-safe state, with [`Settings::persist`] on: write each to
    /// storage before sending what it concerns, that is, drain this after every input and
    /// before publishing what [`Device::poll_transmit`] gave or acknowledging the message just
    /// handled. Always `None` with [`Settings::persist`] off.
    #[must_use]
    pub fn poll_persist(&mut self) -> Option<Persist> {
        self.journal.as_mut()?.next()
    }

    /// Takes back what was saved before a reboot: the outbox, the answered commands and the
    /// config. Call it once, right after [`Device::new`], before anything is queued (an alert
    /// raised first could share an id with a saved message) and before the first connection.
    ///
    /// Every saved message and answer is checked as a peer would check it (this device's
    /// topic and ids, the protocol's rules); one that fails, or a status, is refused and
    /// counted, and a refused message is reported removed through [`Device::poll_persist`], so
    /// storage forgets it. Messages go back in the order of their ids, behind nothing, and new
    /// ones are numbered after them; past the outbox's capacity the oldest telemetry is
    /// dropped as always. Reports [`Event::Restored`].
    pub fn restore(&mut self, now: Instant, saved: Saved) {
        let Saved {
            mut messages,
            answered,
            config,
        } = saved;
        messages.sort_by_key(|message| message.id);
        let (mut restored, mut refused) = (0, 0);
        let mut last = None;
        for message in messages {
            self.next_id = self.next_id.max(message.id.0);
            let replayable = matches!(
                message.kind,
                MessageKind::Telemetry | MessageKind::Alert | MessageKind::CommandResponse
            );
            let topic = Topic::new(
                self.settings.org.clone(),
                self.settings.device.clone(),
                message.kind,
            );
            let valid = replayable
                && last != Some(message.id)
                && self
                    .decoder
                    .decode_message(&topic, &message.payload)
                    .is_ok();
            last = Some(message.id);
            if !valid {
                refused += 1;
                if let Some(journal) = &mut self.journal {
                    journal.removed(message.id);
                }
                continue;
            }
            self.outbox.push_back(Queued {
                id: message.id,
                kind: message.kind,
                payload: message.payload,
            });
            restored += 1;
        }
        self.journal_evictions();
        let responses = Topic::new(
            self.settings.org.clone(),
            self.settings.device.clone(),
            MessageKind::CommandResponse,
        );
        let mut remembered = 0;
        for (command_id, response) in answered {
            match self.decoder.decode_message(&responses, &response) {
                Ok(Message::CommandResponse(decoded)) if decoded.command_id == command_id => {
                    self.answered.insert(command_id, response);
                    remembered += 1;
                }
                _ => refused += 1,
            }
        }
        if let Some(config) = config {
            self.restore_config(now, &config);
        }
        self.stats.restored += restored as u64;
        self.stats.restore_refused += refused as u64;
        self.events.push_back(Event::Restored {
            messages: restored,
            answered: remembered,
            refused,
        });
    }

    /// When to call [`Device::handle_timeout`] next; `None` when nothing is scheduled, which
    /// is after [`Device::disconnect`] until the next [`Device::handle_connected`].
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let next = self.next_telemetry;
        match self.link {
            Link::Up { .. } => Some(next.min(self.next_status)),
            Link::Down {
                retry_at: Some(at), ..
            } => Some(next.min(at)),
            Link::Down { retry_at: None, .. } => Some(next),
            Link::Closed => None,
        }
    }

    /// A valid command: ignored while it runs, answered again when it was answered already,
    /// refused when retained or when too many run; otherwise registered as running and
    /// returned.
    fn command(&mut self, utc: Timestamp, command: Command, retained: bool) -> Option<Command> {
        if self.still_running(&command.command_id) {
            return None;
        }
        // An id answered already gets its first answer again, even from a retained copy: the
        // backend never hears "refused" after "done" for one command.
        if let Some(first) = self.answered.get(&command.command_id) {
            let payload = first.to_vec();
            self.stats.commands_duplicate += 1;
            self.events.push_back(Event::CommandDuplicate {
                command_id: command.command_id,
            });
            self.queue(MessageKind::CommandResponse, payload);
            return None;
        }
        if retained {
            // DESE-C6: a retained command would run again on every reconnection.
            self.refuse_uncached(
                command.command_id,
                "refused: the command was delivered as a retained message",
                utc,
            );
            return None;
        }
        if self.running.len() >= self.settings.running_capacity {
            // Remembered like any answer: a copy of this id delivered later gets the same
            // refusal, so the backend never hears both "failed" and "done" for one command.
            let busy = format!(
                "refused: the device is busy with {} commands; send it again later, under a \
                 new command id",
                self.running.len()
            );
            self.refused(command.command_id, &busy, utc, true);
            return None;
        }
        self.running.push(Running {
            command_id: command.command_id.clone(),
            action: command.action.clone(),
            interrupted: None,
        });
        Some(command)
    }

    /// Whether `command_id` is running: then a copy delivered again (valid, retained or not
    /// valid at all) is counted and reported, and its answer comes with the result.
    fn still_running(&mut self, command_id: &CommandId) -> bool {
        if self.running_at(command_id).is_none() {
            return false;
        }
        self.stats.commands_duplicate_running += 1;
        self.events.push_back(Event::CommandStillRunning {
            command_id: command_id.clone(),
        });
        true
    }

    /// A command's outcome: the response queued and remembered, `reset_config` applied.
    fn finish(
        &mut self,
        now: Instant,
        utc: Timestamp,
        command_id: CommandId,
        action: Action,
        outcome: Result<Option<JsonObject>, String>,
    ) {
        if let Some(at) = self.running_at(&command_id) {
            self.running.remove(at);
        }
        let success = outcome.is_ok();
        if success && action == Action::ResetConfig {
            self.reset_config(now);
        }
        let response = match outcome {
            Ok(data) => CommandResponse::ok(command_id.clone(), data, utc),
            Err(error) => CommandResponse::failed(command_id.clone(), error, utc),
        };
        self.stats.commands_run += 1;
        self.events.push_back(Event::CommandRun {
            command_id: command_id.clone(),
            command: action.name().to_string(),
            success,
        });
        self.respond(command_id, response, true);
    }

    /// Answers a command refused before the handler, and remembers the answer (a duplicate
    /// gets the same one).
    fn refuse(&mut self, command_id: CommandId, error: &str, utc: Timestamp) {
        if self.still_running(&command_id) {
            return;
        }
        if let Some(first) = self.answered.get(&command_id) {
            let payload = first.to_vec();
            self.stats.commands_duplicate += 1;
            self.queue(MessageKind::CommandResponse, payload);
            return;
        }
        self.refused(command_id, error, utc, true);
    }

    /// Answers a refused command without remembering it, so that a proper delivery of the same
    /// id can still run.
    fn refuse_uncached(&mut self, command_id: CommandId, error: &str, utc: Timestamp) {
        self.refused(command_id, error, utc, false);
    }

    fn refused(&mut self, command_id: CommandId, error: &str, utc: Timestamp, remember: bool) {
        self.stats.commands_refused += 1;
        self.events.push_back(Event::CommandRefused {
            command_id: Some(command_id.clone()),
            error: error.to_string(),
        });
        let response = CommandResponse::failed(command_id.clone(), error, utc);
        self.respond(command_id, response, remember);
    }

    /// Queues a response; when `remember`, a duplicate of the command gets the same bytes.
    fn respond(&mut self, command_id: CommandId, response: CommandResponse, remember: bool) {
        let utc = response.timestamp;
        let payload = match encode(&Message::CommandResponse(response)) {
            Ok(payload) => payload,
            // The handler's data is too large or too deep for a peer: say so instead.
            Err(error) => {
                let failed = CommandResponse::failed(
                    command_id.clone(),
                    format!("the response could not be sent: {error}"),
                    utc,
                );
                encode(&Message::CommandResponse(failed)).unwrap_or_default()
            }
        };
        if remember {
            if let Some(journal) = &mut self.journal {
                journal.answered(command_id.clone(), payload.clone());
                // Storage keeps the most recent answers: the commands still running are saved
                // again behind this one, so that a long command's "interrupted" never ages out.
                for running in &self.running {
                    if let Some(interrupted) = &running.interrupted {
                        journal.answered(running.command_id.clone(), interrupted.clone());
                    }
                }
            }
            self.answered.insert(command_id, payload.clone());
        }
        self.queue(MessageKind::CommandResponse, payload);
    }

    /// Puts a message behind the others in the outbox.
    fn queue(&mut self, kind: MessageKind, payload: Vec<u8>) {
        let id = self.id();
        if kind != MessageKind::Status {
            if let Some(journal) = &mut self.journal {
                journal.queued(id, kind, &payload);
            }
        }
        self.outbox.push_back(Queued { id, kind, payload });
        self.journal_evictions();
    }

    /// Reports the messages the outbox dropped for room as removed.
    fn journal_evictions(&mut self) {
        let evicted = self.outbox.take_evicted();
        if let Some(journal) = &mut self.journal {
            for id in evicted {
                journal.removed(id);
            }
        }
    }

    /// Reports the config in force, after it changed.
    fn journal_config(&mut self) {
        if self.journal.is_some() {
            let config = self.config();
            if let Some(journal) = &mut self.journal {
                journal.config(config);
            }
        }
    }

    /// `reset_config` means the protocol's config too: what config messages changed returns to
    /// the device's own settings.
    fn reset_config(&mut self, now: Instant) {
        let interval = self.settings.telemetry_interval;
        if interval != self.telemetry_interval {
            self.telemetry_interval = interval;
            self.next_telemetry = now + interval.as_duration();
        }
        if self.keepalive != self.settings.keepalive {
            self.keepalive = self.settings.keepalive;
            self.events
                .push_back(Event::KeepaliveChanged(self.keepalive));
        }
        self.calibration.clear();
        self.thresholds.clear();
        self.crossed.clear();
        self.journal_config();
        self.events.push_back(Event::ConfigReset);
    }

    fn apply_config(&mut self, now: Instant, config: DeviceConfig) {
        if let Some(interval) = config.telemetry_interval {
            self.telemetry_interval = interval;
            self.next_telemetry = now + interval.as_duration();
        }
        if let Some(keepalive) = config.mqtt_keepalive {
            if keepalive != self.keepalive {
                self.keepalive = keepalive;
                self.events.push_back(Event::KeepaliveChanged(keepalive));
            }
        }
        if let Some(calibration) = &config.sensor_calibration {
            self.calibration
                .extend(calibration.iter().map(|(s, c)| (s.clone(), *c)));
        }
        if let Some(thresholds) = &config.alert_thresholds {
            for sensor in thresholds.keys() {
                self.crossed.remove(sensor);
            }
            self.thresholds
                .extend(thresholds.iter().map(|(s, t)| (s.clone(), *t)));
        }
        self.stats.configs_applied += 1;
        self.journal_config();
        self.events.push_back(Event::ConfigApplied(config));
    }

    fn telemetry(&mut self, raw: Readings, utc: Timestamp) {
        let telemetry = match self.build_telemetry(&raw, utc) {
            Ok(telemetry) => telemetry,
            Err(error) => {
                self.stats.readings_missed += 1;
                self.events.push_back(Event::ReadingRejected { error });
                return;
            }
        };
        self.last_metadata = (raw.battery, raw.signal_strength);
        self.check_thresholds(&telemetry, utc);
        match encode(&Message::Telemetry(telemetry)) {
            Ok(payload) => {
                self.stats.telemetry += 1;
                self.queue(MessageKind::Telemetry, payload);
            }
            Err(error) => self.events.push_back(Event::ReadingRejected {
                error: error.to_string(),
            }),
        }
    }

    /// Applies the calibration to the raw readings and checks the protocol's ranges.
    fn build_telemetry(&self, raw: &Readings, utc: Timestamp) -> Result<Telemetry, String> {
        let cal = |sensor: Sensor, value: f64| match self.calibration.get(&sensor) {
            Some(c) => c.apply(value),
            None => value,
        };
        let range = |name: &str, e: dese_protocol::RangeError| format!("{name}: {e}");
        let int = |name: &str, v: f64, lo: f64, hi: f64| {
            if !v.is_finite() {
                return Err(format!("{name}: {v} is not a number"));
            }
            let rounded = libm_round(v);
            if (lo..=hi).contains(&rounded) {
                Ok(rounded)
            } else {
                Err(format!(
                    "{name}: {v} is out of range, expected {lo} to {hi}"
                ))
            }
        };
        Ok(Telemetry {
            device_id: self.settings.device.clone(),
            timestamp: utc,
            organization_id: self.settings.org.clone(),
            sensors: Sensors {
                ph: Ph::new(cal(Sensor::Ph, raw.ph)).map_err(|e| range("ph", e))?,
                chlorine: Ppm::new(cal(Sensor::Chlorine, raw.chlorine))
                    .map_err(|e| range("chlorine", e))?,
                temperature: Celsius::new(cal(Sensor::Temperature, raw.temperature))
                    .map_err(|e| range("temperature", e))?,
                orp: match raw.orp {
                    Some(v) => {
                        Some(
                            int("orp", cal(Sensor::Orp, v), i32::MIN.into(), i32::MAX.into())?
                                as i32,
                        )
                    }
                    None => None,
                },
                tds: match raw.tds {
                    Some(v) => Some(int("tds", cal(Sensor::Tds, v), 0.0, u32::MAX.into())? as u32),
                    None => None,
                },
                flow_rate: match raw.flow_rate {
                    Some(v) => Some(
                        FlowRate::new(cal(Sensor::FlowRate, v))
                            .map_err(|e| range("flow_rate", e))?,
                    ),
                    None => None,
                },
            },
            metadata: Metadata {
                battery: raw.battery,
                signal_strength: raw.signal_strength,
                firmware_version: self.settings.firmware_version.clone(),
            },
        })
    }

    /// Raises an alert when a reading crosses out of its band (warning) and when it comes back
    /// (info): once per crossing, not on every reading.
    fn check_thresholds(&mut self, t: &Telemetry, utc: Timestamp) {
        let s = &t.sensors;
        let values = [
            (Sensor::Ph, Some(s.ph.get())),
            (Sensor::Chlorine, Some(s.chlorine.get())),
            (Sensor::Temperature, Some(s.temperature.get())),
            (Sensor::Orp, s.orp.map(f64::from)),
            (Sensor::Tds, s.tds.map(f64::from)),
            (Sensor::FlowRate, s.flow_rate.map(FlowRate::get)),
        ];
        for (sensor, value) in values {
            let (Some(value), Some(threshold)) = (value, self.thresholds.get(&sensor).copied())
            else {
                continue;
            };
            let side = match (threshold.min, threshold.max) {
                (Some(min), _) if value < min.get() => Some((Side::Below, min)),
                (_, Some(max)) if value > max.get() => Some((Side::Above, max)),
                _ => None,
            };
            let before = self.crossed.get(&sensor).copied();
            let alert = match (before, side) {
                (None, Some((side, bound)))
                | (Some(Side::Below), Some((side @ Side::Above, bound)))
                | (Some(Side::Above), Some((side @ Side::Below, bound))) => {
                    self.crossed.insert(sensor.clone(), side);
                    let word = if side == Side::Below {
                        "below its minimum"
                    } else {
                        "above its maximum"
                    };
                    // Rounded to the bound itself, the reading is shown in full.
                    let mut reading = shown(&sensor, value);
                    if reading == shown(&sensor, bound.get()) {
                        reading = format!("{value}");
                    }
                    Some((
                        Severity::Warning,
                        format!("{sensor} {reading} is {word} {bound}"),
                        Some(bound),
                    ))
                }
                (Some(_), None) => {
                    self.crossed.remove(&sensor);
                    Some((
                        Severity::Info,
                        format!(
                            "{sensor} {} is back within its thresholds",
                            shown(&sensor, value)
                        ),
                        None,
                    ))
                }
                _ => None,
            };
            if let Some((severity, message, bound)) = alert {
                self.queue_alert(&Alert {
                    severity,
                    message,
                    sensor: Some(sensor),
                    value: Finite::new(value).ok(),
                    threshold: bound,
                    timestamp: utc,
                });
            }
        }
    }

    fn queue_alert(&mut self, alert: &Alert) {
        if let Ok(payload) = encode(&Message::Alert(alert.clone())) {
            self.stats.alerts += 1;
            self.queue(MessageKind::Alert, payload);
        }
    }

    fn drop_incoming(&mut self, reason: Reason, error: String) {
        self.stats.dropped_incoming += 1;
        self.events.push_back(Event::Dropped { reason, error });
    }

    fn status_payload(&self, state: DeviceState, utc: Timestamp) -> Vec<u8> {
        let (battery, signal_strength) = self.last_metadata;
        let status = Status {
            status: state,
            battery,
            signal_strength,
            firmware_version: self.settings.firmware_version.clone(),
            timestamp: utc,
        };
        encode(&Message::Status(status)).unwrap_or_default()
    }

    fn transmit(&self, message: Queued) -> Transmit {
        Transmit {
            id: message.id,
            kind: message.kind,
            topic: self.topic(message.kind).to_string(),
            payload: message.payload,
            qos: QoS::AtLeastOnce,
            retain: message.kind.retained(),
        }
    }

    fn topic(&self, kind: MessageKind) -> &str {
        self.topics.get(&kind).map_or("", String::as_str)
    }

    fn id(&mut self) -> MessageId {
        self.next_id += 1;
        MessageId(self.next_id)
    }
}

/// The next deadline after `now` on a period that was due at `due`, skipping missed periods.
fn next_after(due: Instant, period: Duration, now: Instant) -> Instant {
    let next = due + period;
    if next > now { next } else { now + period }
}

/// A reading as people read it, with the precision of its sensor (pH and chlorine to two
/// decimals, temperature and flow to one, ORP and TDS whole), trailing zeros dropped: `7.63`,
/// not `7.634000666976282`. The alert's `value` field keeps the exact reading.
fn shown(sensor: &Sensor, value: f64) -> String {
    let decimals = match sensor {
        Sensor::Ph | Sensor::Chlorine => 2,
        Sensor::Temperature | Sensor::FlowRate => 1,
        Sensor::Orp | Sensor::Tds => 0,
        Sensor::Other(_) => 3,
    };
    let mut text = format!("{value:.decimals$}");
    if text.contains('.') {
        let kept = text.trim_end_matches('0').trim_end_matches('.').len();
        text.truncate(kept);
    }
    if text == "-0" {
        text = String::from("0");
    }
    text
}

/// Rounds half away from zero, without `std`.
fn libm_round(v: f64) -> f64 {
    let t = v as i64 as f64;
    let frac = v - t;
    if frac >= 0.5 {
        t + 1.0
    } else if frac <= -0.5 {
        t - 1.0
    } else {
        t
    }
}

fn truncate(mut text: String, max: usize) -> String {
    let kept = dese_protocol::head(&text, max).len();
    text.truncate(kept);
    text
}

/// An id as one part of the MQTT client id: `%`, `:` and `$` percent-encoded, so that the
/// `{org}:{device}` pair is unambiguous and every broker accepts it.
fn client_id_part(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for ch in id.chars() {
        match ch {
            '%' => out.push_str("%25"),
            ':' => out.push_str("%3A"),
            '$' => out.push_str("%24"),
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn readings_are_shown_with_their_sensors_precision() {
        assert_eq!(shown(&Sensor::Ph, 7.634_000_666_976_282), "7.63");
        assert_eq!(shown(&Sensor::Ph, 7.6), "7.6");
        assert_eq!(shown(&Sensor::Chlorine, 2.0), "2");
        assert_eq!(shown(&Sensor::Temperature, 25.55), "25.6");
        assert_eq!(shown(&Sensor::Orp, 649.7), "650");
        assert_eq!(shown(&Sensor::Temperature, -0.04), "0");
        let turbidity = Sensor::parse("turbidity").unwrap();
        assert_eq!(shown(&turbidity, 1.23456), "1.235");
    }
}
