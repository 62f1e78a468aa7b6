//! The simulation.

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant as StdInstant};

use dese_backend::{
    Backend, Event as BackendEvent, Inbound, SendError, Settings as BackendSettings,
};
use dese_device::{CommandHandler, Device, Event as DeviceEvent, Instant, SensorReader, Settings};
use dese_protocol::{Action, CommandId, DeviceId, OrgId, Timestamp, Topic, TopicFilter};

/// How hostile the network and broker are. Probabilities are per message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Network {
    /// A delivery to the backend is made twice.
    pub duplicate: f64,
    /// A delivery to the backend swaps places with the one before it.
    pub reorder: f64,
    /// A device's link drops as it publishes: the message does not reach the broker, and the
    /// broker publishes the device's last will.
    pub link_drop: f64,
    /// The broker receives a publish but its acknowledgement is lost with the link: the device
    /// sends the message again after reconnecting (QoS 1 redelivery).
    pub ack_loss: f64,
}

impl Network {
    /// A perfect network.
    pub const PERFECT: Self = Self {
        duplicate: 0.0,
        reorder: 0.0,
        link_drop: 0.0,
        ack_loss: 0.0,
    };
}

/// What the simulation counted for one device, beside the engine's own counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceStats {
    /// Commands the device's handler ran.
    pub commands_run: u64,
    /// Times the link dropped.
    pub link_drops: u64,
    /// Connections made.
    pub connections: u64,
}

struct SimDevice {
    key: (OrgId, DeviceId),
    engine: Device,
    sensors: Box<dyn SensorReader>,
    handler: CountingHandler,
    connected: bool,
    killed: bool,
    will: Option<(String, Vec<u8>)>,
    stats: DeviceStats,
    events: Vec<DeviceEvent>,
}

struct CountingHandler {
    inner: Box<dyn CommandHandler>,
    runs: u64,
}

impl CommandHandler for CountingHandler {
    fn run(
        &mut self,
        action: &Action,
        now: Instant,
    ) -> Result<Option<dese_protocol::JsonObject>, String> {
        self.runs += 1;
        self.inner.run(action, now)
    }
}

/// A small deterministic generator (xorshift64*), so the harness needs no RNG crate.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && ((self.next() >> 11) as f64 / (1u64 << 53) as f64) < p
    }
}

/// Devices, a backend, and the broker between them.
pub struct Sim {
    now: Instant,
    origin: StdInstant,
    utc_origin: i64,
    rng: Rng,
    network: Network,
    retained: BTreeMap<String, Vec<u8>>,
    devices: Vec<SimDevice>,
    backend: Backend,
    backend_subscriptions: Vec<TopicFilter>,
    to_backend: VecDeque<(String, Vec<u8>)>,
    /// Names each delivery to the backend, as a transport would.
    deliveries: u64,
    backend_events: Vec<BackendEvent>,
}

impl Sim {
    /// A simulation starting at `2025-01-27T10:00:00Z`, with a backend and no devices yet.
    pub fn new(seed: u64, network: Network, backend: BackendSettings) -> Self {
        let mut backend = Backend::new(backend);
        let backend_subscriptions = backend.subscriptions(None);
        let origin = StdInstant::now();
        backend.handle_connected(origin);
        Self {
            now: Instant::ZERO,
            origin,
            utc_origin: 1_737_972_000_000,
            rng: Rng(seed | 1),
            network,
            retained: BTreeMap::new(),
            devices: Vec::new(),
            backend,
            backend_subscriptions,
            to_backend: VecDeque::new(),
            deliveries: 0,
            backend_events: Vec::new(),
        }
    }

    /// Adds a device; it connects at the next step. Returns its index.
    pub fn add_device(
        &mut self,
        settings: Settings,
        sensors: Box<dyn SensorReader>,
        handler: Box<dyn CommandHandler>,
    ) -> usize {
        self.devices.push(SimDevice {
            key: (settings.org.clone(), settings.device.clone()),
            engine: Device::new(settings, self.now),
            sensors,
            handler: CountingHandler {
                inner: handler,
                runs: 0,
            },
            connected: false,
            killed: false,
            will: None,
            stats: DeviceStats::default(),
            events: Vec::new(),
        });
        self.devices.len() - 1
    }

    /// Changes the network's knobs from now on.
    pub fn set_network(&mut self, network: Network) {
        self.network = network;
    }

    /// The virtual time since the start.
    pub fn elapsed(&self) -> Duration {
        Duration::from_millis(self.now.as_millis())
    }

    /// The backend engine.
    pub fn backend(&self) -> &Backend {
        &self.backend
    }

    /// Every event the backend produced so far.
    pub fn backend_events(&self) -> &[BackendEvent] {
        &self.backend_events
    }

    /// A device's engine.
    pub fn device(&self, index: usize) -> &Device {
        &self.devices[index].engine
    }

    /// What the simulation counted for a device.
    pub fn device_stats(&self, index: usize) -> DeviceStats {
        let d = &self.devices[index];
        DeviceStats {
            commands_run: d.handler.runs,
            ..d.stats
        }
    }

    /// Every event a device produced so far.
    pub fn device_events(&self, index: usize) -> &[DeviceEvent] {
        &self.devices[index].events
    }

    /// The retained message on `topic`, as the broker holds it.
    pub fn retained(&self, topic: &str) -> Option<&[u8]> {
        self.retained.get(topic).map(Vec::as_slice)
    }

    /// Switches a device off without a goodbye: its link drops (the broker publishes its last
    /// will) and it never reconnects.
    pub fn kill(&mut self, index: usize) {
        self.devices[index].killed = true;
        self.drop_link(index);
    }

    /// The backend sends `action` to a device; returns the command id.
    pub fn send_command(&mut self, index: usize, action: Action) -> Result<CommandId, SendError> {
        let (org, device) = self.devices[index].key.clone();
        let (now, utc) = (self.backend_now(), self.utc());
        let id = self.backend.send_command(now, utc, org, device, action)?;
        self.drain_backend();
        Ok(id)
    }

    /// Replaces the backend by a new one, which subscribes and receives the retained statuses:
    /// presence survives a backend restart.
    pub fn restart_backend(&mut self, settings: BackendSettings) {
        self.backend = Backend::new(settings);
        self.backend_subscriptions = self.backend.subscriptions(None);
        let now = self.backend_now();
        self.backend.handle_connected(now);
        for (topic, payload) in self.retained.clone() {
            self.deliveries += 1;
            self.backend
                .handle_message(now, Inbound(self.deliveries), &topic, &payload);
        }
        self.drain_backend();
    }

    /// Runs the simulation for `duration`, in steps of 100 ms.
    pub fn run_for(&mut self, duration: Duration) {
        let end = self.now + duration;
        while self.now < end {
            self.now = self.now + Duration::from_millis(100);
            self.step();
        }
    }

    fn utc(&self) -> Timestamp {
        Timestamp::from_unix_millis(self.utc_origin + self.now.as_millis() as i64)
            .unwrap_or(Timestamp::UNIX_EPOCH)
    }

    fn backend_now(&self) -> StdInstant {
        self.origin + Duration::from_millis(self.now.as_millis())
    }

    fn step(&mut self) {
        let (now, utc) = (self.now, self.utc());
        for index in 0..self.devices.len() {
            let due = self.devices[index]
                .engine
                .poll_timeout()
                .is_some_and(|at| at <= now);
            if due {
                let d = &mut self.devices[index];
                d.engine.handle_timeout(now, utc, &mut *d.sensors);
            }
            self.drain_device(index);
        }
        self.deliver_to_backend();
        if self
            .backend
            .poll_timeout()
            .is_some_and(|at| at <= self.backend_now())
        {
            let now = self.backend_now();
            self.backend.handle_timeout(now);
        }
        self.drain_backend();
    }

    fn drain_device(&mut self, index: usize) {
        loop {
            let mut progressed = false;
            while let Some(event) = self.devices[index].engine.poll_event() {
                progressed = true;
                if event == DeviceEvent::Connect {
                    self.connect(index);
                }
                self.devices[index].events.push(event);
            }
            while let Some(t) = self.devices[index].engine.poll_transmit() {
                progressed = true;
                if self.rng.chance(self.network.link_drop) {
                    self.drop_link(index);
                    break;
                }
                if self.rng.chance(self.network.ack_loss) {
                    self.publish_from_device(&t.topic, t.payload, t.retain);
                    self.drop_link(index);
                    break;
                }
                self.devices[index].engine.handle_acked(t.id);
                self.publish_from_device(&t.topic, t.payload, t.retain);
            }
            if !progressed {
                break;
            }
        }
    }

    fn connect(&mut self, index: usize) {
        let (now, utc) = (self.now, self.utc());
        let d = &mut self.devices[index];
        if d.killed {
            return;
        }
        let options = d.engine.connect_options(utc);
        d.will = Some((options.will.topic, options.will.payload));
        d.connected = true;
        d.stats.connections += 1;
        d.engine.handle_connected(now, utc);
    }

    fn drop_link(&mut self, index: usize) {
        let now = self.now;
        let random = self.rng.next() as u32;
        let d = &mut self.devices[index];
        if !d.connected {
            return;
        }
        d.connected = false;
        d.stats.link_drops += 1;
        d.engine.handle_disconnected(now, random);
        if let Some((topic, payload)) = d.will.take() {
            self.publish_from_device(&topic, payload, true);
        }
    }

    fn publish_from_device(&mut self, topic: &str, payload: Vec<u8>, retain: bool) {
        if retain {
            self.retained.insert(topic.to_string(), payload.clone());
        }
        let Ok(parsed) = Topic::parse(topic) else {
            return;
        };
        if !self
            .backend_subscriptions
            .iter()
            .any(|f| f.matches(&parsed))
        {
            return;
        }
        if self.rng.chance(self.network.duplicate) {
            self.to_backend
                .push_back((topic.to_string(), payload.clone()));
        }
        self.to_backend.push_back((topic.to_string(), payload));
        let len = self.to_backend.len();
        if len >= 2 && self.rng.chance(self.network.reorder) {
            self.to_backend.swap(len - 1, len - 2);
        }
    }

    fn deliver_to_backend(&mut self) {
        let now = self.backend_now();
        while let Some((topic, payload)) = self.to_backend.pop_front() {
            self.deliveries += 1;
            self.backend
                .handle_message(now, Inbound(self.deliveries), &topic, &payload);
        }
    }

    /// The backend's publishes reach the devices (the broker acknowledges each at once); its
    /// events are recorded and confirmed, as an application that stored them would; the
    /// broker's acknowledgements need no delivery here.
    fn drain_backend(&mut self) {
        while let Some(out) = self.backend.poll_transmit() {
            self.backend.handle_acked(out.id);
            self.publish_to_devices(&out.topic, &out.payload);
        }
        while let Some(delivered) = self.backend.poll_event() {
            if let Some(ack) = delivered.ack {
                self.backend.ack(ack);
            }
            self.backend_events.push(delivered.event);
        }
        while self.backend.poll_ack().is_some() {}
    }

    /// A message from the backend reaches the devices subscribed to its topic, if connected:
    /// with clean sessions, the broker keeps nothing for a disconnected device.
    fn publish_to_devices(&mut self, topic: &str, payload: &[u8]) {
        let Ok(parsed) = Topic::parse(topic) else {
            return;
        };
        let (now, utc) = (self.now, self.utc());
        for index in 0..self.devices.len() {
            let d = &mut self.devices[index];
            if !d.connected || !d.engine.subscriptions().iter().any(|f| f.matches(&parsed)) {
                continue;
            }
            let copies = if self.rng.chance(self.network.duplicate) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                d.engine
                    .handle_message_with(now, utc, topic, payload, false, &mut d.handler);
            }
            self.drain_device(index);
        }
    }
}
