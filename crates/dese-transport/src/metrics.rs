//! The metrics the clients publish through the [`metrics`] facade, and their
//! catalog.
//!
//! The clients never install a recorder: the application does (the reference backend installs
//! a Prometheus one for `--metrics`), **before** it spawns its clients, since a client takes
//! its handles when it starts. Then it calls [`describe`], so that each metric carries its help
//! text. Without a recorder every update is a no-op.
//!
//! The engines keep exact counters of their own ([`dese_backend::Counters`],
//! [`dese_device::Stats`]), with no facade underneath (`dese-device` runs on microcontrollers);
//! the clients add them to these metrics as they change, so the two always agree. Several
//! clients in one process add up: the gauges are sums over the clients (`dese_backend_connected`
//! counts the connected backend clients). No metric carries a device id: ten thousand devices
//! would make ten thousand series of each.
//!
//! [`CATALOG`] lists every metric with its type, labels and meaning; `docs/operations.md` in the
//! repository shows the same list, and a test fails when a metric is missing there.

use std::time::Duration;

use ::metrics::{Counter, Gauge, Histogram, counter, gauge, histogram};
use dese_backend::{Counters, DropReason};
use dese_device::Stats;
use dese_protocol::MessageKind;

/// What kind of metric it is, in Prometheus's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricType {
    /// Only goes up (its name ends in `_total`).
    Counter,
    /// Goes up and down (summed over the clients of a process; across the instances of a
    /// group, which all see every device, take the `max`).
    Gauge,
    /// Observations in buckets (seconds, or a count per batch).
    Histogram,
}

/// One metric: its name, type, labels and meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Metric {
    /// The name, as Prometheus shows it.
    pub name: &'static str,
    /// Its type.
    pub kind: MetricType,
    /// Its labels (bounded sets of values, never a device id).
    pub labels: &'static [&'static str],
    /// What it measures.
    pub help: &'static str,
}

const fn metric(
    name: &'static str,
    kind: MetricType,
    labels: &'static [&'static str],
    help: &'static str,
) -> Metric {
    Metric {
        name,
        kind,
        labels,
        help,
    }
}

use MetricType::{Counter as C, Gauge as G, Histogram as H};

/// Every metric of the clients of this crate.
pub const CATALOG: &[Metric] = &[
    metric(
        "dese_backend_messages_received_total",
        C,
        &["kind"],
        "Messages from devices that the backend accepted, by message kind.",
    ),
    metric(
        "dese_backend_messages_refused_total",
        C,
        &["kind", "reason"],
        "Messages the backend refused and acknowledged without delivering, by message kind (unknown when the topic names none) and reason (the decoder's reason, org_not_allowed, wrong_direction, rate_limited).",
    ),
    metric(
        "dese_backend_duplicates_total",
        C,
        &["kind"],
        "Messages delivered again by the broker (QoS 1 is at least once) and recognised as copies, by message kind.",
    ),
    metric(
        "dese_backend_commands_sent_total",
        C,
        &[],
        "Commands sent (first sendings; retries are counted apart).",
    ),
    metric(
        "dese_backend_commands_total",
        C,
        &["outcome"],
        "Commands that ended, by outcome: completed, failed (the device answered success false), timed_out (after every retry).",
    ),
    metric(
        "dese_backend_command_retries_total",
        C,
        &[],
        "Commands sent again, with the same id, after their timeout.",
    ),
    metric(
        "dese_backend_command_responses_total",
        C,
        &["reason"],
        "Responses that finished no command of this instance: late (after the timeout), unknown (no such command), other_instance (another instance of the group sent it).",
    ),
    metric(
        "dese_backend_command_round_trip_seconds",
        H,
        &[],
        "From handing a command to the client until its response, for commands that completed or failed.",
    ),
    metric(
        "dese_backend_devices_online",
        G,
        &[],
        "Devices whose last status says online.",
    ),
    metric(
        "dese_backend_devices_tracked",
        G,
        &[],
        "Devices the backend keeps state for (presence, rate limit, deduplication).",
    ),
    metric(
        "dese_backend_devices_evicted_total",
        C,
        &[],
        "Devices forgotten to make room in a full device table.",
    ),
    metric(
        "dese_backend_connected",
        G,
        &[],
        "Backend clients connected to the broker (1 for one connected instance).",
    ),
    metric(
        "dese_backend_connections_total",
        C,
        &[],
        "Connections the broker accepted; all but the first are reconnections.",
    ),
    metric(
        "dese_backend_disconnects_total",
        C,
        &["reason"],
        "Connection attempts that failed and connections lost, by category: io, auth, tls, config, closed.",
    ),
    metric(
        "dese_backend_subscriptions_refused_total",
        C,
        &[],
        "Subscriptions the broker refused (SUBACK failure), at each connection.",
    ),
    metric(
        "dese_backend_refused_subscriptions",
        G,
        &[],
        "Filters the broker refuses on the current connections: messages on them never arrive.",
    ),
    metric(
        "dese_backend_unconfirmed_events",
        G,
        &[],
        "Events handed to the application and not yet confirmed; reading from the broker stops at the receive window.",
    ),
    metric(
        "dese_backend_outbox_messages",
        G,
        &[],
        "Commands, retries and configs waiting for the broker, queued or in flight.",
    ),
    metric(
        "dese_device_telemetry_total",
        C,
        &[],
        "Telemetry messages the device built and queued.",
    ),
    metric(
        "dese_device_delivered_total",
        C,
        &[],
        "Messages of the device that the broker acknowledged.",
    ),
    metric(
        "dese_device_outbox_dropped_total",
        C,
        &["kind"],
        "Messages dropped because the outbox was full: telemetry, or other (alerts, responses).",
    ),
    metric(
        "dese_device_outbox_messages",
        G,
        &[],
        "Messages waiting in the devices' outboxes, queued or in flight.",
    ),
    metric(
        "dese_device_commands_total",
        C,
        &["outcome"],
        "Commands received by the device: run (by the handler), duplicate (answered from the cache), refused (before the handler).",
    ),
    metric(
        "dese_device_configs_total",
        C,
        &["outcome"],
        "Config messages: applied, rejected.",
    ),
    metric(
        "dese_device_alerts_total",
        C,
        &[],
        "Alerts raised, by thresholds and by the application.",
    ),
    metric(
        "dese_device_incoming_dropped_total",
        C,
        &[],
        "Incoming messages the device dropped: not for it, or not a message at all.",
    ),
    metric(
        "dese_device_readings_missed_total",
        C,
        &[],
        "Telemetry periods without a usable reading.",
    ),
    metric(
        "dese_device_connected",
        G,
        &[],
        "Device clients connected to the broker.",
    ),
    metric(
        "dese_device_connections_total",
        C,
        &[],
        "Device connections the broker accepted.",
    ),
    metric(
        "dese_device_disconnects_total",
        C,
        &["reason"],
        "Device connection attempts that failed and connections lost, by category: io, auth, tls, config, closed.",
    ),
    metric(
        "dese_device_subscriptions_refused_total",
        C,
        &[],
        "Subscriptions of devices that the broker refused, at each connection.",
    ),
    metric(
        "dese_device_refused_subscriptions",
        G,
        &[],
        "Filters the broker refuses to the devices on their current connections: commands or config never arrive.",
    ),
];

/// Gives the installed recorder the help text of every metric in [`CATALOG`]. Call it once,
/// after installing the recorder.
pub fn describe() {
    describe_all(CATALOG);
}

/// Gives the installed recorder the help text of each of `metrics` (an application's own
/// catalog, in the same form as [`CATALOG`]).
pub fn describe_all(metrics: &[Metric]) {
    for m in metrics {
        match m.kind {
            MetricType::Counter => ::metrics::describe_counter!(m.name, m.help),
            MetricType::Gauge => ::metrics::describe_gauge!(m.name, m.help),
            MetricType::Histogram => ::metrics::describe_histogram!(m.name, m.help),
        }
    }
}

/// The label value of a failure's category.
pub(crate) fn failure_label(kind: crate::ErrorKind) -> &'static str {
    match kind {
        crate::ErrorKind::Config => "config",
        crate::ErrorKind::Auth => "auth",
        crate::ErrorKind::Tls => "tls",
        crate::ErrorKind::Io => "io",
        crate::ErrorKind::Closed => "closed",
    }
}

/// The message kind a topic names in its last level, for a refused message's label.
pub(crate) fn kind_label(topic: &str) -> &'static str {
    let last = topic.rsplit('/').next().unwrap_or_default();
    MessageKind::ALL
        .iter()
        .find(|kind| kind.as_str() == last)
        .map_or("unknown", |kind| kind.as_str())
}

/// A gauge that this client adds to: it remembers its own share, sets it by difference (so
/// clients in one process add up), and takes it back when the client ends.
#[derive(Debug)]
struct Share {
    gauge: Gauge,
    mine: f64,
}

impl Share {
    fn new(gauge: Gauge) -> Self {
        Self { gauge, mine: 0.0 }
    }

    fn set(&mut self, value: f64) {
        if value != self.mine {
            self.gauge.increment(value - self.mine);
            self.mine = value;
        }
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        self.gauge.decrement(self.mine);
    }
}

/// A counter fed from an engine counter: adds what it grew by since the last look.
#[derive(Debug)]
struct Follow {
    counter: Counter,
    seen: u64,
}

impl Follow {
    fn new(counter: Counter) -> Self {
        Self { counter, seen: 0 }
    }

    fn to(&mut self, now: u64) {
        if now > self.seen {
            self.counter.increment(now - self.seen);
            self.seen = now;
        }
    }
}

/// A backend client's metrics: handles taken once, when the client starts.
#[derive(Debug)]
pub(crate) struct BackendMeters {
    received: [Follow; 4],
    duplicates: [Follow; 4],
    sent: Follow,
    completed: Follow,
    failed: Follow,
    timed_out: Follow,
    retries: Follow,
    late: Follow,
    unknown: Follow,
    other_instance: Follow,
    evicted: Follow,
    connections: Follow,
    round_trip: Histogram,
    online: Share,
    tracked: Share,
    connected: Share,
    unconfirmed: Share,
    outbox: Share,
    refused_subscriptions: Share,
}

/// The four kinds a device sends, in the order of [`BackendMeters`]' arrays.
const INBOUND: [MessageKind; 4] = [
    MessageKind::Telemetry,
    MessageKind::Status,
    MessageKind::Alert,
    MessageKind::CommandResponse,
];

impl BackendMeters {
    pub(crate) fn new() -> Self {
        let by_kind = |name: &'static str| {
            INBOUND.map(|kind| Follow::new(counter!(name, "kind" => kind.as_str())))
        };
        let outcome =
            |o: &'static str| Follow::new(counter!("dese_backend_commands_total", "outcome" => o));
        let response = |r: &'static str| {
            Follow::new(counter!("dese_backend_command_responses_total", "reason" => r))
        };
        Self {
            received: by_kind("dese_backend_messages_received_total"),
            duplicates: by_kind("dese_backend_duplicates_total"),
            sent: Follow::new(counter!("dese_backend_commands_sent_total")),
            completed: outcome("completed"),
            failed: outcome("failed"),
            timed_out: outcome("timed_out"),
            retries: Follow::new(counter!("dese_backend_command_retries_total")),
            late: response("late"),
            unknown: response("unknown"),
            other_instance: response("other_instance"),
            evicted: Follow::new(counter!("dese_backend_devices_evicted_total")),
            connections: Follow::new(counter!("dese_backend_connections_total")),
            round_trip: histogram!("dese_backend_command_round_trip_seconds"),
            online: Share::new(gauge!("dese_backend_devices_online")),
            tracked: Share::new(gauge!("dese_backend_devices_tracked")),
            connected: Share::new(gauge!("dese_backend_connected")),
            unconfirmed: Share::new(gauge!("dese_backend_unconfirmed_events")),
            outbox: Share::new(gauge!("dese_backend_outbox_messages")),
            refused_subscriptions: Share::new(gauge!("dese_backend_refused_subscriptions")),
        }
    }

    /// Brings the counters up to the engine's.
    pub(crate) fn follow(&mut self, counters: &Counters) {
        for (i, kind) in INBOUND.iter().enumerate() {
            self.received[i].to(counters.accepted.get(kind).copied().unwrap_or(0));
            self.duplicates[i].to(counters.duplicates.get(kind).copied().unwrap_or(0));
        }
        self.sent.to(counters.commands_sent);
        self.completed.to(counters.commands_completed);
        self.failed.to(counters.commands_failed);
        self.timed_out.to(counters.commands_timed_out);
        self.retries.to(counters.retries);
        self.late.to(counters.late_responses);
        self.unknown.to(counters.unknown_responses);
        self.other_instance
            .to(counters.responses_to_other_instances);
        self.evicted.to(counters.devices_evicted);
        self.connections.to(counters.connections);
    }

    pub(crate) fn gauges(&mut self, connected: bool, backlog: crate::Backlog, refused: usize) {
        self.connected.set(f64::from(u8::from(connected)));
        self.unconfirmed.set(backlog.unconfirmed as f64);
        self.outbox.set(backlog.outbox as f64);
        self.refused_subscriptions.set(refused as f64);
    }

    pub(crate) fn devices(&mut self, online: usize, tracked: usize) {
        self.online.set(online as f64);
        self.tracked.set(tracked as f64);
    }

    pub(crate) fn round_trip(&self, took: Duration) {
        self.round_trip.record(took.as_secs_f64());
    }
}

/// A refused message, counted by kind and reason (rare: looked up each time).
pub(crate) fn refused(topic: &str, reason: DropReason) {
    counter!(
        "dese_backend_messages_refused_total",
        "kind" => kind_label(topic),
        "reason" => reason.as_str()
    )
    .increment(1);
}

/// A failed connection attempt or a lost connection.
pub(crate) fn disconnect(side: Side, kind: crate::ErrorKind) {
    let name = match side {
        Side::Backend => "dese_backend_disconnects_total",
        Side::Device => "dese_device_disconnects_total",
    };
    counter!(name, "reason" => failure_label(kind)).increment(1);
}

/// A subscription the broker refused: logged as an error (nothing on it will ever arrive) and
/// counted.
pub(crate) fn subscription_refused(side: Side, filter: &str) {
    tracing::error!(
        filter = %dese_protocol::Printable(filter),
        "the broker refused a subscription: no message on it will arrive (check the broker's ACL)"
    );
    let name = match side {
        Side::Backend => "dese_backend_subscriptions_refused_total",
        Side::Device => "dese_device_subscriptions_refused_total",
    };
    counter!(name).increment(1);
}

/// Which client a metric is about.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Side {
    Backend,
    Device,
}

/// A device client's metrics.
#[derive(Debug)]
pub(crate) struct DeviceMeters {
    telemetry: Follow,
    delivered: Follow,
    telemetry_dropped: Follow,
    other_dropped: Follow,
    run: Follow,
    duplicate: Follow,
    refused: Follow,
    applied: Follow,
    rejected: Follow,
    alerts: Follow,
    incoming_dropped: Follow,
    missed: Follow,
    connections: Follow,
    outbox: Share,
    connected: Share,
    refused_subscriptions: Share,
}

impl DeviceMeters {
    pub(crate) fn new() -> Self {
        let commands =
            |o: &'static str| Follow::new(counter!("dese_device_commands_total", "outcome" => o));
        let configs =
            |o: &'static str| Follow::new(counter!("dese_device_configs_total", "outcome" => o));
        let dropped = |k: &'static str| {
            Follow::new(counter!("dese_device_outbox_dropped_total", "kind" => k))
        };
        Self {
            telemetry: Follow::new(counter!("dese_device_telemetry_total")),
            delivered: Follow::new(counter!("dese_device_delivered_total")),
            telemetry_dropped: dropped("telemetry"),
            other_dropped: dropped("other"),
            run: commands("run"),
            duplicate: commands("duplicate"),
            refused: commands("refused"),
            applied: configs("applied"),
            rejected: configs("rejected"),
            alerts: Follow::new(counter!("dese_device_alerts_total")),
            incoming_dropped: Follow::new(counter!("dese_device_incoming_dropped_total")),
            missed: Follow::new(counter!("dese_device_readings_missed_total")),
            connections: Follow::new(counter!("dese_device_connections_total")),
            outbox: Share::new(gauge!("dese_device_outbox_messages")),
            connected: Share::new(gauge!("dese_device_connected")),
            refused_subscriptions: Share::new(gauge!("dese_device_refused_subscriptions")),
        }
    }

    /// Brings the metrics up to the engine's counters; `connections` and `refused` (filters the
    /// broker refused) are the client's own.
    pub(crate) fn follow(
        &mut self,
        stats: &Stats,
        connected: bool,
        connections: u64,
        refused: usize,
    ) {
        self.telemetry.to(stats.telemetry);
        self.delivered.to(stats.delivered);
        self.telemetry_dropped.to(stats.telemetry_dropped);
        self.other_dropped.to(stats.other_dropped);
        self.run.to(stats.commands_run);
        self.duplicate.to(stats.commands_duplicate);
        self.refused.to(stats.commands_refused);
        self.applied.to(stats.configs_applied);
        self.rejected.to(stats.configs_rejected);
        self.alerts.to(stats.alerts);
        self.incoming_dropped.to(stats.dropped_incoming);
        self.missed.to(stats.readings_missed);
        self.connections.to(connections);
        self.outbox.set(stats.pending as f64);
        self.connected.set(f64::from(u8::from(connected)));
        self.refused_subscriptions.set(refused as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_prometheus_conventions() {
        let mut seen = std::collections::BTreeSet::new();
        for m in CATALOG {
            assert!(seen.insert(m.name), "{} is listed twice", m.name);
            assert!(m.name.starts_with("dese_"), "{}", m.name);
            assert!(
                m.name
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                m.name
            );
            let total = m.name.ends_with("_total");
            assert_eq!(total, m.kind == MetricType::Counter, "{}", m.name);
            assert!(
                !m.labels
                    .iter()
                    .any(|l| l.contains("device") || l.contains("id")),
                "{} has a label per device",
                m.name
            );
            assert!(m.help.ends_with('.'), "{}", m.name);
        }
    }

    #[test]
    fn a_refused_message_is_labelled_by_the_kind_its_topic_names() {
        assert_eq!(kind_label("devices/acme/pool-1/telemetry"), "telemetry");
        assert_eq!(
            kind_label("devices/acme/pool-1/command_response"),
            "command_response"
        );
        assert_eq!(kind_label("devices/acme/pool-1/nonsense"), "unknown");
        assert_eq!(kind_label(""), "unknown");
    }
}
